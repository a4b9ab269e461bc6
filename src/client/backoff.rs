//! The wait before an ejected endpoint is probed again: the failure
//! accrual `backoff:` schedule, walked by the same decorrelated-jitter
//! logic as service retries ([`crate::service::backoff`]).

use std::time::Duration;

use super::params::Backoff;
use crate::service::backoff::{Backoff as Schedule, Waits};

/// Where a backoff schedule stands: the next wait, then the one after.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    schedule: Schedule,
    waits: Waits,
}

impl BackoffState {
    pub(crate) fn new(schedule: Backoff) -> BackoffState {
        let schedule = match schedule {
            Backoff::Constant { ms } => Schedule::Constant { ms },
            Backoff::Jittered { min, max } => Schedule::Jittered {
                min_ms: min,
                max_ms: max,
            },
        };
        BackoffState {
            waits: schedule.waits(),
            schedule,
        }
    }

    /// The next wait. `jittered` is decorrelated jitter: the first wait is
    /// `minMs`, each next one random between `minMs` and three times the
    /// previous, never above `maxMs`.
    pub(crate) fn next_wait(&mut self) -> Duration {
        self.waits.next().unwrap_or_default()
    }

    /// Start over (the endpoint came back).
    pub(crate) fn reset(&mut self) {
        self.waits = self.schedule.waits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_constant() {
        let mut b = BackoffState::new(Backoff::Constant {
            ms: Duration::from_millis(7),
        });
        for _ in 0..5 {
            assert_eq!(b.next_wait(), Duration::from_millis(7));
        }
    }

    #[test]
    fn jittered_starts_at_min_grows_within_bounds_and_resets() {
        let (min, max) = (Duration::from_secs(5), Duration::from_secs(300));
        let mut b = BackoffState::new(Backoff::Jittered { min, max });
        assert_eq!(b.next_wait(), min);
        let mut prev = min;
        for _ in 0..50 {
            let d = b.next_wait();
            assert!(
                d >= min && d <= max && d <= prev * 3,
                "{d:?} after {prev:?}"
            );
            prev = d;
        }
        b.reset();
        assert_eq!(b.next_wait(), min);
    }
}
