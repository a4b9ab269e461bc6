//! The request path's clocks.
//!
//! A latency is measured with the precise clock ([`Precise`]): the CPU's
//! invariant time-stamp counter, read with one `rdtsc` and scaled to
//! nanoseconds by a ratio calibrated against `CLOCK_MONOTONIC` when the
//! process starts ([`calibrate`], through the `quanta` crate, which falls
//! back to `CLOCK_MONOTONIC` where the counter is not invariant).
//! Everything else on the request path that needs "now" works in
//! milliseconds to seconds: a binding's last use, the retry budget's
//! one-second slices, failure accrual's backoffs, the balancer's decaying
//! latency averages (τ = 10 s), a pooled connection's idle time. Those read
//! the kernel's tick-grained monotonic clock (`CLOCK_MONOTONIC_COARSE`),
//! which the vDSO answers from memory without reading the time-stamp
//! counter: as an `Instant` ([`coarse`]), where it meets tokio's timers
//! (accrual, pools), or as plain nanoseconds ([`coarse_ns`]) where stamps
//! only meet each other (the budget, a binding's last use, the latency
//! averages).
//!
//! Why: on this project's VM a `CLOCK_MONOTONIC` reading through the vDSO
//! costs 21.6 ns, the counter 9.0 ns and a coarse reading 4.1 ns (`cargo
//! bench --bench request -- clock`), and `perf record` at 10k req/s had the
//! vDSO's `clock_gettime` at 0.75% of the proxy's CPU against nginx's
//! 0.08%. A proxied request takes 4 precise readings (the request's and
//! the attempt's start and end) and a few coarse ones.
//!
//! A coarse reading is within one tick (4 ms at `HZ=250`) of the precise
//! clock, on either side, so code that mixes the two compares them with
//! saturating operations only.

use std::time::Duration;

use tokio::time::Instant;

/// A precise instant, for latencies: the time-stamp counter scaled to
/// nanoseconds (see the module's doc).
///
/// In the crate's unit tests it is tokio's clock, so that tests on tokio's
/// paused clock see the latencies they make.
#[derive(Clone, Copy, Debug)]
pub struct Precise(#[cfg(not(test))] quanta::Instant, #[cfg(test)] Instant);

impl Precise {
    /// Now.
    #[inline]
    pub fn now() -> Precise {
        #[cfg(not(test))]
        return Precise(quanta::Instant::now());
        #[cfg(test)]
        return Precise(Instant::now());
    }

    /// The time since this instant (zero if the clock went back).
    #[inline]
    pub fn elapsed(&self) -> Duration {
        Precise::now().since(*self)
    }

    /// The time from `earlier` to this instant (zero if `earlier` is later).
    #[inline]
    pub fn since(&self, earlier: Precise) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

/// Calibrate the precise clock now (about 0.6 ms here) rather than on the
/// first request.
pub fn calibrate() {
    let _ = Precise::now();
}

/// Now, to within a kernel tick.
///
/// In the crate's unit tests this is tokio's clock, so that tests on
/// tokio's paused clock (accrual, budget, balancer) still control time.
#[cfg(not(test))]
#[inline]
pub fn coarse() -> Instant {
    use std::sync::OnceLock;
    // The coarse clock's reading is a Duration since boot; an Instant is
    // opaque, so one pair of readings taken together maps one onto the
    // other for the life of the process.
    static ANCHOR: OnceLock<(std::time::Instant, Duration)> = OnceLock::new();
    let &(at, base) = ANCHOR.get_or_init(|| {
        let base = monotonic_coarse();
        (std::time::Instant::now(), base)
    });
    Instant::from_std(at + monotonic_coarse().saturating_sub(base))
}

/// Now, to within a kernel tick (tokio's clock in unit tests).
#[cfg(test)]
pub fn coarse() -> Instant {
    Instant::now()
}

/// Nanoseconds on the coarse clock, from a fixed point in the past, to
/// within a tick: for stamps compared only with each other (the retry
/// budget's slices, the balancer's latency averages). Plain integers, so
/// neither the reading nor its arithmetic goes through `Instant` and
/// `Duration` (about 100 instructions a use, on the request path 4 times).
///
/// In the crate's unit tests this follows tokio's clock too.
#[cfg(not(test))]
#[inline]
pub fn coarse_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // The kernel's monotonic clock is never negative: since boot.
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Nanoseconds on tokio's clock (paused in tests) since a day before the
/// first reading: every test's clock starts later than that.
#[cfg(test)]
pub fn coarse_ns() -> u64 {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        let now = std::time::Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    });
    let since = Instant::now().into_std().saturating_duration_since(epoch);
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds on the coarse clock ([`coarse_ns`]): for stamps compared
/// only with each other (last use of a binding).
#[inline]
pub fn coarse_ms() -> u64 {
    coarse_ns() / 1_000_000
}

#[cfg(not(test))]
#[inline]
fn monotonic_coarse() -> Duration {
    Duration::from_nanos(coarse_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn precise_readings_follow_tokios_clock_in_unit_tests() {
        let a = Precise::now();
        tokio::time::advance(Duration::from_millis(7)).await;
        let b = Precise::now();
        assert_eq!(b.since(a), Duration::from_millis(7));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn unit_tests_see_tokios_clock() {
        let a = coarse();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(coarse() - a, Duration::from_secs(3));
    }
}
