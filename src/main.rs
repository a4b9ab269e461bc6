//! The `switchyard` binary: all of it lives in the library's `cli` module.

/// Feature `mimalloc` (off by default) swaps glibc's malloc for mimalloc.
/// Measured on the proxy path (README "Benchmarks"): about 17 % fewer
/// instructions per proxied request, but more resident memory: +0.7 MB at
/// idle, and +10 MB where transparent huge pages are `always` unless the
/// process runs with `MIMALLOC_ALLOW_THP=0`. The memory targets decide the
/// default.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
