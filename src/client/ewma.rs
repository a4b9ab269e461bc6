//! Peak EWMA of latency (Finagle's `PeakEwma`): jumps up to a slower
//! response at once, decays towards faster ones with time constant
//! `decayTimeMs`.

use std::time::Duration;

/// The cost an endpoint with requests in flight but no latency yet gets, so
/// a new endpoint is tried but not flooded.
const PENALTY: f64 = 1e9;

/// A latency average in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeakEwma {
    cost: f64,
    /// When `cost` was last brought up to date ([`crate::clock::coarse_ns`]).
    stamp: u64,
}

/// A duration in nanoseconds as a float, without going through `u128`
/// (its conversion to float is a slow library call); exact below 2^53 ns.
fn nanos(d: Duration) -> f64 {
    d.as_secs() as f64 * 1e9 + f64::from(d.subsec_nanos())
}

impl PeakEwma {
    pub(crate) fn new(now: u64) -> PeakEwma {
        PeakEwma {
            cost: 0.0,
            stamp: now,
        }
    }

    fn decay(&mut self, now: u64, tau: Duration) {
        let dt = now.saturating_sub(self.stamp) as f64;
        let tau = nanos(tau).max(1.0);
        self.cost *= (-dt / tau).exp();
        self.stamp = self.stamp.max(now);
    }

    /// Record one latency observed at `now`.
    pub(crate) fn observe(&mut self, rtt: Duration, now: u64, tau: Duration) {
        let rtt = nanos(rtt);
        let dt = now.saturating_sub(self.stamp) as f64;
        let w = (-dt / nanos(tau).max(1.0)).exp();
        self.cost = if rtt > self.cost {
            rtt
        } else {
            self.cost * w + rtt * (1.0 - w)
        };
        self.stamp = self.stamp.max(now);
    }

    /// The current average (decayed to `now`).
    pub(crate) fn get(&mut self, now: u64, tau: Duration) -> f64 {
        self.decay(now, tau);
        self.cost
    }

    /// The balancer's cost: latency × (outstanding + 1).
    pub(crate) fn cost(&mut self, now: u64, tau: Duration, outstanding: usize) -> f64 {
        let c = self.get(now, tau);
        if c == 0.0 && outstanding > 0 {
            return PENALTY + outstanding as f64;
        }
        c * (outstanding as f64 + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn peaks_at_once_and_decays_with_time() {
        let mut e = PeakEwma::new(crate::clock::coarse_ns());
        e.observe(Duration::from_millis(10), crate::clock::coarse_ns(), TAU);
        assert_eq!(e.get(crate::clock::coarse_ns(), TAU), 10e6);
        // A slow response counts in full at once.
        e.observe(Duration::from_millis(100), crate::clock::coarse_ns(), TAU);
        assert_eq!(e.get(crate::clock::coarse_ns(), TAU), 100e6);
        // One time constant later, a fast response pulls it down by 1/e.
        tokio::time::advance(TAU).await;
        e.observe(Duration::from_millis(10), crate::clock::coarse_ns(), TAU);
        let v = e.get(crate::clock::coarse_ns(), TAU);
        let want = 100e6 / std::f64::consts::E + 10e6 * (1.0 - 1.0 / std::f64::consts::E);
        assert!((v - want).abs() < 1e3, "{v} vs {want}");
        // With nothing observed, it fades.
        tokio::time::advance(TAU * 10).await;
        assert!(e.get(crate::clock::coarse_ns(), TAU) < 3e3);
    }

    #[tokio::test(start_paused = true)]
    async fn cost_grows_with_load_and_penalizes_unknown_busy() {
        let mut e = PeakEwma::new(crate::clock::coarse_ns());
        assert_eq!(e.cost(crate::clock::coarse_ns(), TAU, 0), 0.0);
        assert!(e.cost(crate::clock::coarse_ns(), TAU, 1) >= PENALTY);
        e.observe(Duration::from_millis(1), crate::clock::coarse_ns(), TAU);
        assert_eq!(e.cost(crate::clock::coarse_ns(), TAU, 3), 4e6);
    }
}
