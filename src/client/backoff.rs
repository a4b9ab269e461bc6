//! The wait before an ejected endpoint is probed again.

use std::time::Duration;

use rand::Rng;

use super::params::Backoff;

/// Where a backoff schedule stands: the next wait, then the one after.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    schedule: Backoff,
    prev: Option<Duration>,
}

impl BackoffState {
    pub(crate) fn new(schedule: Backoff) -> BackoffState {
        BackoffState {
            schedule,
            prev: None,
        }
    }

    /// The next wait. `jittered` is decorrelated jitter: the first wait is
    /// `minMs`, each next one random between `minMs` and three times the
    /// previous, never above `maxMs`.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let d = match self.schedule {
            Backoff::Constant { ms } => ms,
            Backoff::Jittered { min, max } => {
                let (lo, hi) = (min.min(max), max.max(min));
                match self.prev {
                    None => lo,
                    Some(prev) => {
                        let top = prev.saturating_mul(3).min(hi).max(lo);
                        let (a, b) = (lo.as_millis() as u64, top.as_millis() as u64);
                        if b > a {
                            Duration::from_millis(rand::rng().random_range(a..=b))
                        } else {
                            lo
                        }
                    }
                }
            }
        };
        self.prev = Some(d);
        d
    }

    /// Start over (the endpoint came back).
    pub(crate) fn reset(&mut self) {
        self.prev = None;
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
