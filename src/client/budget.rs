//! Finagle's retry budget: a token bucket whose deposits expire.
//!
//! Every request deposits `percentCanRetry` of a retry; a retry withdraws a
//! whole one. On top of the deposits stands a reserve of `minRetriesPerSec`
//! for each second of `ttlSecs`, so a quiet client can still retry. Deposits
//! and withdrawals are kept in ten time slices over the ttl, so old ones
//! expire a slice at a time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::params::Budget;

/// A request deposits this many units; `percentCanRetry` of a retry.
const SCALE: i64 = 1000;
/// Time slices over the ttl.
const SLICES: usize = 10;

/// A retry budget; cheap to share (one short lock per operation).
#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    withdrawal: i64,
    reserve: i64,
    slice: Duration,
    state: Mutex<Slices>,
}

#[derive(Debug)]
struct Slices {
    /// Net units per slice, a ring indexed by slice number.
    net: [i64; SLICES],
    /// The slice number (time since `start` / slice) of the newest entry.
    newest: u64,
    start: Instant,
}

impl RetryBudget {
    /// A budget with `params`, starting now.
    pub fn new(params: &Budget) -> RetryBudget {
        let pct = if params.percent_can_retry.is_finite() {
            params.percent_can_retry.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let (deposit, withdrawal) = if pct == 0.0 {
            (0, 1)
        } else {
            (SCALE, ((SCALE as f64 / pct) as i64).max(1))
        };
        let ttl = params
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let reserve = i64::from(params.min_retries_per_sec)
            .saturating_mul(ttl.as_secs() as i64)
            .saturating_mul(withdrawal);
        RetryBudget {
            deposit,
            withdrawal,
            reserve,
            slice: ttl / SLICES as u32,
            state: Mutex::new(Slices {
                net: [0; SLICES],
                newest: 0,
                start: Instant::now(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Slices, usize) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = (s.start.elapsed().as_nanos() / self.slice.as_nanos().max(1)) as u64;
        // Clear the slices that expired since the newest.
        let gap = now.saturating_sub(s.newest).min(SLICES as u64);
        for k in 1..=gap {
            let i = ((s.newest + k) % SLICES as u64) as usize;
            if let Some(v) = s.net.get_mut(i) {
                *v = 0;
            }
        }
        s.newest = s.newest.max(now);
        let i = (s.newest % SLICES as u64) as usize;
        f(&mut s, i)
    }

    fn units(&self, s: &Slices) -> i64 {
        self.reserve + s.net.iter().sum::<i64>()
    }

    /// A request was made: it earns its share of a retry.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        self.with(|s, i| {
            if let Some(v) = s.net.get_mut(i) {
                *v += self.deposit;
            }
        });
    }

    /// Take one retry if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        self.with(|s, i| {
            if self.units(s) < self.withdrawal {
                return false;
            }
            if let Some(v) = s.net.get_mut(i) {
                *v -= self.withdrawal;
            }
            true
        })
    }

    /// Retries available now.
    pub fn balance(&self) -> i64 {
        self.with(|s, _| self.units(s) / self.withdrawal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(min: u32, pct: f64, ttl: u64) -> RetryBudget {
        RetryBudget::new(&Budget {
            min_retries_per_sec: min,
            percent_can_retry: pct,
            ttl: Duration::from_secs(ttl),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_alone_allows_min_retries_per_sec_times_ttl() {
        let b = budget(2, 0.0, 10);
        assert_eq!(b.balance(), 20);
        for _ in 0..20 {
            assert!(b.try_withdraw());
        }
        assert!(!b.try_withdraw());
        // Withdrawals expire with the ttl, restoring the reserve.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.balance(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_earn_percent_can_retry_and_expire() {
        let b = budget(0, 0.2, 10);
        assert!(!b.try_withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.balance(), 2);
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.balance(), 20);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.balance(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn default_budget() {
        let b = RetryBudget::new(&Budget::default());
        assert_eq!(b.balance(), 100);
    }
}
