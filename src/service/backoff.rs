//! Waits between retries: `retries.backoff` (`constant {ms}` or
//! `jittered {minMs, maxMs}`, Finagle's decorrelated jitter).

use std::time::Duration;

use rand::Rng;

/// `retries.backoff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind")]
pub enum Backoff {
    /// `kind: constant`, `ms` (default 0): the same wait before every retry.
    #[serde(rename = "constant")]
    Constant {
        /// `ms`.
        #[serde(serialize_with = "ser_ms")]
        ms: Duration,
    },
    /// `kind: jittered`: decorrelated jitter between `minMs` and `maxMs`.
    #[serde(rename = "jittered", rename_all = "camelCase")]
    Jittered {
        /// `minMs`: the first wait, and the least of any.
        #[serde(serialize_with = "ser_ms")]
        min_ms: Duration,
        /// `maxMs`: the most of any wait.
        #[serde(serialize_with = "ser_ms")]
        max_ms: Duration,
    },
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::Constant { ms: Duration::ZERO }
    }
}

impl Backoff {
    /// The waits of one request's retries, in order.
    pub fn waits(&self) -> Waits {
        Waits {
            backoff: *self,
            prev: None,
        }
    }
}

/// The successive waits of one request (an endless iterator: the caller
/// bounds the retries).
#[derive(Clone, Debug)]
pub struct Waits {
    backoff: Backoff,
    prev: Option<Duration>,
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let next = match self.backoff {
            Backoff::Constant { ms } => ms,
            Backoff::Jittered { min_ms, max_ms } => {
                let (lo, hi) = (min_ms.min(max_ms), max_ms.max(min_ms));
                match self.prev {
                    None => lo,
                    Some(p) => {
                        // Decorrelated jitter: uniform in [min, min(max, 3 × previous)].
                        let top = p.saturating_mul(3).min(hi).max(lo);
                        let (a, b) = (lo.as_nanos() as u64, top.as_nanos() as u64);
                        if a >= b {
                            lo
                        } else {
                            Duration::from_nanos(rand::rng().random_range(a..=b))
                        }
                    }
                }
            }
        };
        self.prev = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_waits_the_same() {
        let b = Backoff::Constant {
            ms: Duration::from_millis(7),
        };
        assert!(b.waits().take(5).all(|d| d == Duration::from_millis(7)));
        assert_eq!(Backoff::default().waits().next(), Some(Duration::ZERO));
    }

    #[test]
    fn jittered_starts_at_min_and_stays_within_bounds() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(100));
        let b = Backoff::Jittered {
            min_ms: min,
            max_ms: max,
        };
        for _ in 0..50 {
            let mut w = b.waits();
            assert_eq!(w.next(), Some(min));
            let mut prev = min;
            for d in w.take(20) {
                assert!(d >= min && d <= max, "{d:?}");
                assert!(d <= prev * 3, "{d:?} after {prev:?}");
                prev = d;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_pass_on_the_paused_clock() {
        let b = Backoff::Constant {
            ms: Duration::from_millis(250),
        };
        let start = tokio::time::Instant::now();
        for d in b.waits().take(4) {
            tokio::time::sleep(d).await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }
}
