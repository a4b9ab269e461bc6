//! Failure accrual: per endpoint, when to take it out of rotation and when
//! to try it again (Finagle's `FailureAccrualFactory`).
//!
//! An endpoint is `Available` until its policy says it failed too often;
//! then it is `Ejected` for the next backoff. When that has passed, the
//! next pick may send it one probe (`Probing`, no other request meanwhile):
//! a success brings it back, a failure ejects it again for the next, longer
//! backoff. A success at any time while out of rotation (the balancer
//! failed open) brings it back too.

use std::time::Duration;

use tokio::time::Instant;

use super::backoff::BackoffState;
use super::params::FailureAccrual;

/// Minimum responses before a success-rate policy may eject.
const MIN_REQUESTS: u32 = 5;

/// A probe whose outcome never came (its caller gave up and dropped it)
/// stops blocking the next probe after this long.
const PROBE_STALE: Duration = Duration::from_secs(30);

/// An endpoint's health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// In rotation.
    Available,
    /// Out of rotation until `until` (then one probe may go).
    Ejected {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe request is in flight.
    Probing,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transition {
    /// Nothing to report.
    None,
    /// The endpoint was ejected for `for_`, because of `reason`.
    Ejected { for_: Duration, reason: String },
    /// The endpoint came back.
    Revived,
}

/// The policy's memory of recent outcomes.
#[derive(Debug, Clone)]
enum Memory {
    Consecutive {
        failures: u32,
        limit: u32,
    },
    Rate {
        ema: f64,
        seen: u32,
        alpha: f64,
        min: f64,
        requests: u32,
    },
    Windowed {
        buckets: Vec<(u64, u32, u32)>,
        window: Duration,
        min: f64,
        start: Instant,
    },
    Never,
}

/// One endpoint's failure accrual.
#[derive(Debug, Clone)]
pub(crate) struct Accrual {
    health: Health,
    /// When the current probe went out.
    probe_since: Option<Instant>,
    memory: Memory,
    backoff: BackoffState,
}

impl Accrual {
    pub(crate) fn new(policy: &FailureAccrual, now: Instant) -> Accrual {
        let memory = match *policy {
            FailureAccrual::ConsecutiveFailures { failures, .. } => Memory::Consecutive {
                failures: 0,
                limit: failures.max(1),
            },
            FailureAccrual::SuccessRate {
                success_rate,
                requests,
                ..
            } => Memory::Rate {
                ema: 1.0,
                seen: 0,
                alpha: 2.0 / (f64::from(requests.max(1)) + 1.0),
                min: success_rate,
                requests: requests.max(1),
            },
            FailureAccrual::SuccessRateWindowed {
                success_rate,
                window,
                ..
            } => Memory::Windowed {
                buckets: Vec::new(),
                window: window.max(Duration::from_secs(1)),
                min: success_rate,
                start: now,
            },
            FailureAccrual::None {} => Memory::Never,
        };
        Accrual {
            health: Health::Available,
            probe_since: None,
            memory,
            backoff: BackoffState::new(policy.backoff()),
        }
    }

    /// The health at `now` (an expired ejection still shows as ejected
    /// until a pick takes the probe).
    pub(crate) fn health(&self) -> Health {
        self.health
    }

    /// Whether a pick at `now` may use the endpoint; takes the probe slot
    /// when the ejection has expired.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> bool {
        match self.health {
            Health::Available => true,
            Health::Ejected { until } if now >= until => {
                self.health = Health::Probing;
                self.probe_since = Some(now);
                true
            }
            Health::Probing if self.probe_is_stale(now) => {
                self.probe_since = Some(now);
                true
            }
            Health::Ejected { .. } | Health::Probing => false,
        }
    }

    /// Whether a pick at `now` could use it (without taking anything).
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        match self.health {
            Health::Available => true,
            Health::Ejected { until } => now >= until,
            Health::Probing => self.probe_is_stale(now),
        }
    }

    fn probe_is_stale(&self, now: Instant) -> bool {
        self.probe_since
            .is_some_and(|t| now.saturating_duration_since(t) >= PROBE_STALE)
    }

    /// Record one outcome at `now`.
    pub(crate) fn record(&mut self, success: bool, now: Instant) -> Transition {
        if success {
            self.remember(true, now);
            if self.health != Health::Available {
                self.health = Health::Available;
                self.backoff.reset();
                self.forget(now);
                return Transition::Revived;
            }
            return Transition::None;
        }
        match self.health {
            Health::Probing => {
                let wait = self.backoff.next_wait();
                self.health = Health::Ejected { until: now + wait };
                Transition::Ejected {
                    for_: wait,
                    reason: "the probe failed".into(),
                }
            }
            // Already out: failures sent while failing open change nothing.
            Health::Ejected { .. } => Transition::None,
            Health::Available => match self.remember(false, now) {
                Some(reason) => {
                    let wait = self.backoff.next_wait();
                    self.health = Health::Ejected { until: now + wait };
                    Transition::Ejected { for_: wait, reason }
                }
                None => Transition::None,
            },
        }
    }

    /// Add an outcome to the policy's memory; `Some(reason)` when it says
    /// the endpoint should go.
    fn remember(&mut self, success: bool, now: Instant) -> Option<String> {
        match &mut self.memory {
            Memory::Never => None,
            Memory::Consecutive { failures, limit } => {
                if success {
                    *failures = 0;
                    return None;
                }
                *failures += 1;
                (*failures >= *limit).then(|| format!("{failures} consecutive failures"))
            }
            Memory::Rate {
                ema,
                seen,
                alpha,
                min,
                requests,
            } => {
                let x = if success { 1.0 } else { 0.0 };
                *ema += *alpha * (x - *ema);
                *seen = seen.saturating_add(1);
                (*seen >= (*requests).clamp(1, MIN_REQUESTS) && *ema < *min).then(|| {
                    format!(
                        "success rate {:.3} below {} over about {requests} requests",
                        *ema, *min
                    )
                })
            }
            Memory::Windowed {
                buckets,
                window,
                min,
                start,
            } => {
                let sec = now.saturating_duration_since(*start).as_secs();
                let oldest = sec.saturating_sub(window.as_secs().saturating_sub(1));
                buckets.retain(|b| b.0 >= oldest);
                match buckets.last_mut() {
                    Some(b) if b.0 == sec => {
                        b.1 += u32::from(success);
                        b.2 += 1;
                    }
                    _ => buckets.push((sec, u32::from(success), 1)),
                }
                let (ok, all) = buckets.iter().fold((0u64, 0u64), |(o, a), b| {
                    (o + u64::from(b.1), a + u64::from(b.2))
                });
                let rate = ok as f64 / all.max(1) as f64;
                (all >= u64::from(MIN_REQUESTS) && rate < *min).then(|| {
                    format!(
                        "success rate {rate:.3} below {} over the last {}s",
                        *min,
                        window.as_secs()
                    )
                })
            }
        }
    }

    /// Start the policy's memory afresh (after a revival).
    fn forget(&mut self, _now: Instant) {
        match &mut self.memory {
            Memory::Consecutive { failures, .. } => *failures = 0,
            Memory::Rate { ema, seen, .. } => {
                *ema = 1.0;
                *seen = 0;
            }
            Memory::Windowed { buckets, .. } => buckets.clear(),
            Memory::Never => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::params::Backoff;

    fn consecutive(n: u32, ms: u64) -> FailureAccrual {
        FailureAccrual::ConsecutiveFailures {
            failures: n,
            backoff: Backoff::Constant {
                ms: Duration::from_millis(ms),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_then_one_probe_revives() {
        let mut a = Accrual::new(&consecutive(3, 1000), Instant::now());
        let now = Instant::now();
        assert_eq!(a.record(false, now), Transition::None);
        assert_eq!(a.record(true, now), Transition::None);
        assert_eq!(a.record(false, now), Transition::None);
        assert_eq!(a.record(false, now), Transition::None);
        assert!(matches!(a.record(false, now), Transition::Ejected { .. }));
        assert!(!a.try_acquire(Instant::now()));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!a.is_available(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(a.is_available(Instant::now()));
        // One probe only.
        assert!(a.try_acquire(Instant::now()));
        assert_eq!(a.health(), Health::Probing);
        assert!(!a.try_acquire(Instant::now()));
        // A probe whose outcome never comes does not block the next forever.
        tokio::time::advance(PROBE_STALE).await;
        assert!(a.try_acquire(Instant::now()));
        assert!(!a.try_acquire(Instant::now()));
        assert_eq!(a.record(true, Instant::now()), Transition::Revived);
        assert_eq!(a.health(), Health::Available);
        assert!(a.try_acquire(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_ejects_again_with_the_next_backoff() {
        let policy = FailureAccrual::ConsecutiveFailures {
            failures: 1,
            backoff: Backoff::Jittered {
                min: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
        };
        let mut a = Accrual::new(&policy, Instant::now());
        match a.record(false, Instant::now()) {
            Transition::Ejected { for_, .. } => assert_eq!(for_, Duration::from_secs(5)),
            t => panic!("{t:?}"),
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(a.try_acquire(Instant::now()));
        match a.record(false, Instant::now()) {
            Transition::Ejected { for_, reason } => {
                assert!(for_ >= Duration::from_secs(5) && for_ <= Duration::from_secs(15));
                assert_eq!(reason, "the probe failed");
            }
            t => panic!("{t:?}"),
        }
        // Failures while ejected (failing open) change nothing.
        assert_eq!(a.record(false, Instant::now()), Transition::None);
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_over_requests() {
        let policy = FailureAccrual::SuccessRate {
            success_rate: 0.7,
            requests: 10,
            backoff: Backoff::default(),
        };
        let mut a = Accrual::new(&policy, Instant::now());
        // 9 in 10 succeed: stays.
        for i in 0..100 {
            assert_eq!(a.record(i % 10 != 0, Instant::now()), Transition::None);
        }
        // Half fail: goes.
        let mut ejected = false;
        for i in 0..20 {
            if matches!(
                a.record(i % 2 == 0, Instant::now()),
                Transition::Ejected { .. }
            ) {
                ejected = true;
                break;
            }
        }
        assert!(ejected);
    }

    #[tokio::test(start_paused = true)]
    async fn windowed_success_rate_forgets_old_failures() {
        let policy = FailureAccrual::SuccessRateWindowed {
            success_rate: 0.5,
            window: Duration::from_secs(2),
            backoff: Backoff::default(),
        };
        let mut a = Accrual::new(&policy, Instant::now());
        for _ in 0..4 {
            assert_eq!(a.record(false, Instant::now()), Transition::None);
        }
        // Old failures leave the window before the fifth.
        tokio::time::advance(Duration::from_secs(3)).await;
        for _ in 0..4 {
            assert_eq!(a.record(true, Instant::now()), Transition::None);
        }
        assert_eq!(a.record(false, Instant::now()), Transition::None);
        for _ in 0..4 {
            a.record(false, Instant::now());
        }
        assert!(matches!(a.health(), Health::Ejected { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn none_never_ejects() {
        let mut a = Accrual::new(&FailureAccrual::None {}, Instant::now());
        for _ in 0..100 {
            assert_eq!(a.record(false, Instant::now()), Transition::None);
        }
        assert_eq!(a.health(), Health::Available);
    }
}
