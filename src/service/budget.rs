//! Finagle's retry budget: a token bucket that every request fills a little
//! and every retry drains, so retries stay a bounded fraction of traffic
//! (plus a small reserve that lets a trickle of traffic retry at all).
//!
//! Semantics as Finagle's `RetryBudget(ttl, minRetriesPerSec, percentCanRetry)`:
//! a request deposits one unit, a retry withdraws `1 / percentCanRetry` units,
//! deposits and withdrawals expire after `ttl`, and a constant reserve of
//! `minRetriesPerSec × ttl` retries is always available on top. So over any
//! window of `ttl`, retries ≤ `percentCanRetry × requests + minRetriesPerSec × ttlSecs`.
//!
//! Time is tokio's clock, so tests can pause and advance it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `retries.budget` and `client.requeueBudget`: the one budget config
/// (missing keys take the defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BudgetConfig {
    /// `minRetriesPerSec` (default 10): the reserve, in retries per second.
    pub min_retries_per_sec: u32,
    /// `percentCanRetry` (default 0.2): retries allowed per request (0..1000).
    pub percent_can_retry: f64,
    /// `ttlSecs` (default 10): how long deposits count.
    #[serde(rename = "ttlSecs", with = "secs")]
    pub ttl: Duration,
}

/// `ttlSecs` as whole seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            min_retries_per_sec: 10,
            percent_can_retry: 0.2,
            ttl: Duration::from_secs(10),
        }
    }
}

/// Units are scaled so that fractional percentages stay exact enough.
const SCALE: i64 = 1000;
/// The window is kept in this many slices, each expiring as a whole.
const SLICES: u32 = 10;

/// A shared retry budget: one per logical name for service retries, one
/// per client for requeues.
#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    withdrawal: i64,
    reserve: i64,
    /// A slice's length in nanoseconds (at least 1): 64-bit arithmetic on
    /// every request, not 128-bit.
    slice_ns: u64,
    slices: u64,
    /// [`crate::clock::coarse_ns`] when the budget was made.
    epoch: u64,
    /// The current slice's deposits, counted without the lock: the slice
    /// number in the high 32 bits, the number of requests in the low 32.
    /// A deposit in a new slice moves the old count into `window`.
    fresh: AtomicU64,
    /// (slice number, sum of deposits and withdrawals in it), oldest first;
    /// the deposits of the slice in `fresh` are not in it.
    window: Mutex<VecDeque<(u64, i64)>>,
}

impl RetryBudget {
    /// A budget with `config`; its window starts now.
    pub fn new(config: &BudgetConfig) -> RetryBudget {
        let pct = if config.percent_can_retry.is_finite() {
            config.percent_can_retry.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        // A zero percentage: deposits are worthless, only the reserve pays.
        let zero = pct == 0.0;
        let withdrawal = if zero {
            SCALE
        } else {
            ((SCALE as f64) / pct).round().max(1.0) as i64
        };
        let ttl = config.ttl.max(Duration::from_secs(1));
        let reserve = i64::from(config.min_retries_per_sec)
            .saturating_mul(ttl.as_secs() as i64)
            .saturating_mul(withdrawal);
        RetryBudget {
            deposit: if zero { 0 } else { SCALE },
            withdrawal,
            reserve,
            slice_ns: u64::try_from((ttl / SLICES).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            slices: u64::from(SLICES),
            epoch: crate::clock::coarse_ns(),
            fresh: AtomicU64::new(0),
            window: Mutex::new(VecDeque::new()),
        }
    }

    fn now_slice(&self) -> u64 {
        // Slices are a second long by default: the coarse clock will do.
        crate::clock::coarse_ns().saturating_sub(self.epoch) / self.slice_ns
    }

    fn add(w: &mut VecDeque<(u64, i64)>, slice: u64, amount: i64) {
        match w.iter_mut().rev().find(|(s, _)| *s <= slice) {
            Some((s, sum)) if *s == slice => *sum = sum.saturating_add(amount),
            _ => {
                // Slices stay in order: a late one goes before newer ones.
                let at = w.partition_point(|(s, _)| *s < slice);
                w.insert(at, (slice, amount));
            }
        }
    }

    /// The window, its expired slices gone, and what `fresh` holds for a
    /// slice still in it (not moved: its deposits go on landing there).
    /// A count being moved at this moment (swapped out of `fresh`, waiting
    /// for the lock held here) is in neither: the budget reads low by one
    /// slice's deposits for that instant, never high.
    fn settled(&self, now: u64) -> (std::sync::MutexGuard<'_, VecDeque<(u64, i64)>>, i64) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        expire(&mut w, now, self.slices);
        let fresh = self.fresh.load(Ordering::Acquire);
        let (slice, count) = (fresh >> 32, fresh & u64::from(u32::MAX));
        let pending = if now.saturating_sub(slice) < self.slices {
            self.deposit.saturating_mul(count as i64)
        } else {
            0
        };
        (w, pending)
    }

    /// Record a request (call once per request, not per attempt).
    ///
    /// Every request pays in, so this takes no lock: within a slice it is
    /// one atomic add; the first deposit of a new slice moves the previous
    /// slice's count into the window.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        // Slice numbers fit 32 bits for centuries (slices are ≥ 100 ms).
        let now = self.now_slice() & u64::from(u32::MAX);
        let fresh = self.fresh.load(Ordering::Relaxed);
        if fresh >> 32 == now && fresh & u64::from(u32::MAX) < u64::from(u32::MAX) {
            // A racing move to a newer slice can take this unit with it:
            // it then counts in that slice, a slice late at worst.
            self.fresh.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let old = self.fresh.swap((now << 32) | 1, Ordering::AcqRel);
        let (slice, count) = (old >> 32, old & u64::from(u32::MAX));
        if count > 0 {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            Self::add(&mut w, slice, self.deposit.saturating_mul(count as i64));
            expire(&mut w, now, self.slices);
        }
    }

    /// Take one retry from the budget; `false` when it is exhausted.
    pub fn try_withdraw(&self) -> bool {
        let now = self.now_slice();
        let (mut w, pending) = self.settled(now);
        let sum: i64 = w.iter().map(|(_, v)| *v).sum();
        if self.reserve.saturating_add(sum).saturating_add(pending) < self.withdrawal {
            return false;
        }
        Self::add(&mut w, now, -self.withdrawal);
        true
    }

    /// Retries that could be taken right now (for admin views and tests).
    pub fn balance(&self) -> i64 {
        let now = self.now_slice();
        let (w, pending) = self.settled(now);
        let sum: i64 = w.iter().map(|(_, v)| *v).sum();
        (self.reserve.saturating_add(sum).saturating_add(pending) / self.withdrawal).max(0)
    }
}

fn expire(w: &mut VecDeque<(u64, i64)>, now: u64, slices: u64) {
    while let Some((s, _)) = w.front() {
        if now.saturating_sub(*s) >= slices {
            w.pop_front();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: u32, pct: f64, ttl: u64) -> BudgetConfig {
        BudgetConfig {
            min_retries_per_sec: min,
            percent_can_retry: pct,
            ttl: Duration::from_secs(ttl),
        }
    }

    fn drain(b: &RetryBudget) -> usize {
        (0..100_000).take_while(|_| b.try_withdraw()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_alone_allows_min_retries_per_sec_times_ttl() {
        let b = RetryBudget::new(&cfg(10, 0.2, 10));
        assert_eq!(b.balance(), 100);
        assert_eq!(drain(&b), 100);
        assert!(!b.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_pays_for_a_fraction_of_a_retry() {
        let b = RetryBudget::new(&cfg(0, 0.2, 10));
        assert!(!b.try_withdraw());
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(drain(&b), 20);
        // Deposits and withdrawals both expire after the ttl.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.balance(), 0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(drain(&b), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_refills_after_the_window() {
        let b = RetryBudget::new(&cfg(1, 0.2, 2));
        assert_eq!(drain(&b), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(drain(&b), 0);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(drain(&b), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_percent_means_only_the_reserve() {
        let b = RetryBudget::new(&cfg(1, 0.0, 1));
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(drain(&b), 1);
        let none = RetryBudget::new(&cfg(0, 0.0, 1));
        assert!(!none.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn bound_holds_over_many_requests() {
        let b = RetryBudget::new(&cfg(10, 0.2, 10));
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.try_withdraw() {
                retries += 1;
            }
        }
        assert!(retries <= 200 + 100, "{retries}");
        assert!(retries >= 200, "{retries}");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_percent_reserve_is_restored_when_withdrawals_expire() {
        let b = RetryBudget::new(&cfg(2, 0.0, 10));
        assert_eq!(b.balance(), 20);
        assert_eq!(drain(&b), 20);
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.balance(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_earn_percent_can_retry_and_expire() {
        let b = RetryBudget::new(&cfg(0, 0.2, 10));
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

    #[test]
    fn deposits_from_many_threads_all_count() {
        let b = std::sync::Arc::new(RetryBudget::new(&cfg(0, 0.2, 10)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| b.deposit()))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.balance(), 8_000);
        assert_eq!(drain(&b), 8_000);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_move_between_slices_and_expire_in_order() {
        let b = RetryBudget::new(&cfg(0, 1.0, 10));
        // One deposit in each of 12 one-second slices, a withdrawal in the
        // sixth.
        for i in 0..12 {
            b.deposit();
            if i == 5 {
                assert!(b.try_withdraw());
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Now is slice 12: slices 3..=11 hold 9 deposits, and the
        // withdrawal of slice 5.
        assert_eq!(b.balance(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn default_budget() {
        let b = RetryBudget::new(&BudgetConfig::default());
        assert_eq!(b.balance(), 100);
    }

    #[test]
    fn config_keys_take_defaults() {
        let c: BudgetConfig = serde_json::from_str(r#"{"ttlSecs": 3}"#).unwrap();
        assert_eq!(c, cfg(10, 0.2, 3));
        let c: BudgetConfig =
            serde_json::from_str(r#"{"minRetriesPerSec": 1, "percentCanRetry": 0.5}"#).unwrap();
        assert_eq!(c, cfg(1, 0.5, 10));
        assert_eq!(
            serde_json::to_value(cfg(1, 0.5, 10)).unwrap(),
            serde_json::json!({"minRetriesPerSec": 1, "percentCanRetry": 0.5, "ttlSecs": 10})
        );
    }
}
