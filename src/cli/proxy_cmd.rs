//! `switchyard run` and `switchyard check`.

use anyhow::Context as _;
use clap::Args;

use crate::config::{self, Config};
use crate::telemetry::{self, LogFormat};

/// `switchyard run [-c FILE] [--threads N]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON); the embedded default when absent.
    #[arg(short, long)]
    pub config: Option<std::path::PathBuf>,
    /// Tokio worker threads (default: the number of cores); 1 runs
    /// everything on the main thread.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log lines as text or JSON (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `switchyard check -c FILE`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to validate.
    #[arg(short, long)]
    pub config: std::path::PathBuf,
}

/// Load and validate the config (every problem is listed before anything
/// starts), then serve it on a tokio runtime of `--threads` workers.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let config = match &args.config {
        Some(path) => {
            let config = config::load(path).map_err(|e| report(&e.0))?;
            validated(config)?
        }
        None => default_config()?,
    };
    // One thread asked for: a current-thread runtime runs everything on the
    // main thread, with no worker to hand tasks to and no cross-thread
    // wake-ups (nothing here blocks a runtime thread waiting on another
    // task: blocking work goes to its own threads or spawn_blocking).
    let mut runtime = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(crate::app::run(config, crate::proxy::Shutdown::new()))
}

/// The embedded default config. Its namer directory (`./disco`) is created
/// when missing, so the quick start works on a fresh checkout.
fn default_config() -> anyhow::Result<Config> {
    let config = config::default_config();
    for n in &config.namers {
        let config::Namer::Fs(fs) = n;
        if !fs.root_dir.exists() {
            std::fs::create_dir_all(&fs.root_dir)
                .with_context(|| format!("cannot create {}", fs.root_dir.display()))?;
            tracing::info!(dir = %fs.root_dir.display(), "created the io.l5d.fs directory");
        }
    }
    validated(config)
}

fn validated(config: Config) -> anyhow::Result<Config> {
    let problems = config::validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(report(&problems))
    }
}

/// Print every problem on stderr; the returned error carries no more text.
fn report(problems: &[config::Problem]) -> anyhow::Error {
    for p in problems {
        eprintln!("{p}");
    }
    anyhow::anyhow!("")
}

/// Validate the config and everything it references; print `FILE: ok`, or
/// every problem on stderr (one per line) and fail.
pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let problems = crate::config::check(&args.config);
    if problems.is_empty() {
        // The config is sound; now the files its TLS settings name.
        let tls = match config::load(&args.config) {
            Ok(c) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(async { crate::app::check_tls(&c) }))
                .unwrap_or_else(|e| vec![format!("cannot start a runtime: {e}")]),
            Err(_) => Vec::new(),
        };
        if !tls.is_empty() {
            for p in &tls {
                eprintln!("{}: {p}", args.config.display());
            }
            return Err(anyhow::anyhow!(""));
        }
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    // The problems are the message; main prints nothing more.
    Err(report(&problems))
}
