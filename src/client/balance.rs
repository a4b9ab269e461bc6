//! Endpoint choice for one bound name: power of two choices, least outstanding.
//!
//! A [`Client`](super::Client) follows its bound name's endpoint watch with a small task
//! and publishes the current set with `arc-swap`, so a request reads it with
//! one atomic load and never waits on a lock. Each endpoint keeps a counter
//! of requests in flight; a request picks two endpoints at random (in
//! proportion to their weights) and takes the one with the lower
//! outstanding/weight, as Finagle's `p2c` balancer does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use crate::naming::Addr;

/// One endpoint of a bound name and its load.
#[derive(Debug)]
pub struct EndpointState {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its weight within the set (> 0 to receive traffic).
    pub weight: f64,
    outstanding: AtomicUsize,
}

impl EndpointState {
    fn new(addr: SocketAddr, weight: f64) -> EndpointState {
        EndpointState {
            addr,
            weight,
            outstanding: AtomicUsize::new(0),
        }
    }

    /// Requests sent to it whose response has not finished yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Count one response or failure of this endpoint (failure accrual).
    pub(crate) fn record(&self, class: super::ResponseClass) {
        let _ = class;
    }

    fn load(&self) -> f64 {
        (self.outstanding() as f64 + 1.0) / self.weight
    }
}

/// Counts one request against an endpoint until dropped (when the response
/// body has been fully sent, or the request failed).
#[derive(Debug)]
pub struct Outstanding(Arc<EndpointState>);

impl Outstanding {
    /// Count a request against `ep`.
    pub fn new(ep: Arc<EndpointState>) -> Outstanding {
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(ep)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The current state of a bound name's endpoints, ready for choosing.
#[derive(Debug)]
pub enum EndpointSet {
    /// The namer has not answered yet.
    Pending,
    /// The name does not exist.
    Neg,
    /// Resolution failed.
    Failed(Arc<str>),
    /// The endpoints (possibly none), with cumulative weights for sampling.
    Bound {
        /// The endpoints, in the namer's order.
        endpoints: Vec<Arc<EndpointState>>,
        /// Running sums of the usable weights, parallel to `endpoints`.
        cumulative: Vec<f64>,
    },
}

impl EndpointSet {
    /// Build from an `Addr`, keeping the counters of endpoints already known.
    pub(crate) fn from_addr(addr: &Addr, prev: &EndpointSet) -> EndpointSet {
        match addr {
            Addr::Pending => EndpointSet::Pending,
            Addr::Neg => EndpointSet::Neg,
            Addr::Failed(m) => EndpointSet::Failed(m.clone()),
            Addr::Bound(eps) => {
                let old: &[Arc<EndpointState>] = match prev {
                    EndpointSet::Bound { endpoints, .. } => endpoints,
                    _ => &[],
                };
                let endpoints: Vec<Arc<EndpointState>> = eps
                    .iter()
                    .map(|e| {
                        old.iter()
                            .find(|o| o.addr == e.addr && o.weight == e.weight)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(EndpointState::new(e.addr, e.weight)))
                    })
                    .collect();
                let usable = |w: f64| w.is_finite() && w > 0.0;
                let any_usable = endpoints.iter().any(|e| usable(e.weight));
                let mut sum = 0.0;
                let cumulative = endpoints
                    .iter()
                    .map(|e| {
                        // All weights zero: treat them as equal rather than refuse.
                        sum += if !any_usable {
                            1.0
                        } else if usable(e.weight) {
                            e.weight
                        } else {
                            0.0
                        };
                        sum
                    })
                    .collect();
                EndpointSet::Bound {
                    endpoints,
                    cumulative,
                }
            }
        }
    }

    /// The endpoints, if bound.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        match self {
            EndpointSet::Bound { endpoints, .. } => endpoints,
            _ => &[],
        }
    }

    /// Choose an endpoint not in `exclude`: two weighted random candidates,
    /// the less loaded (outstanding / weight) wins.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Arc<EndpointState>> {
        let EndpointSet::Bound {
            endpoints,
            cumulative,
        } = self
        else {
            return None;
        };
        let mut rng = rand::rng();
        let total = cumulative.last().copied().unwrap_or(0.0);
        let sample = |rng: &mut rand::rngs::ThreadRng| -> Option<usize> {
            if total.is_nan() || total <= 0.0 {
                return None;
            }
            // A product, not a range: no panic even if the weights sum to infinity.
            let x = rng.random::<f64>() * total;
            let i = cumulative.partition_point(|&c| c <= x);
            Some(i.min(endpoints.len().saturating_sub(1)))
        };
        if exclude.is_empty() {
            let a = sample(&mut rng)?;
            let b = sample(&mut rng)?;
            let ea = endpoints.get(a)?;
            let eb = endpoints.get(b)?;
            return Some(if eb.load() < ea.load() { eb } else { ea }.clone());
        }
        // A retry after a refused connection: least loaded among the rest.
        endpoints
            .iter()
            .filter(|e| !exclude.contains(&e.addr))
            .min_by(|x, y| x.load().total_cmp(&y.load()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::Endpoint;

    fn set(weights: &[f64]) -> EndpointSet {
        let eps: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                weight: *w,
            })
            .collect();
        EndpointSet::from_addr(&Addr::Bound(eps.into()), &EndpointSet::Pending)
    }

    #[test]
    fn weights_shape_the_choice() {
        let s = set(&[1.0, 3.0]);
        let mut heavy = 0;
        for _ in 0..4000 {
            let e = s.pick(&[]).unwrap();
            if e.addr.port() == 1001 {
                heavy += 1;
            }
        }
        // p2c over weighted samples favours the heavy endpoint strongly.
        assert!(heavy > 2500, "{heavy}");
    }

    #[test]
    fn zero_weight_is_skipped_unless_all_zero() {
        let s = set(&[0.0, 1.0]);
        for _ in 0..200 {
            assert_eq!(s.pick(&[]).unwrap().addr.port(), 1001);
        }
        let s = set(&[0.0, 0.0]);
        assert!(s.pick(&[]).is_some());
    }

    #[test]
    fn least_outstanding_wins() {
        let s = set(&[1.0, 1.0]);
        let busy = s.endpoints()[0].clone();
        let _g: Vec<Outstanding> = (0..10).map(|_| Outstanding::new(busy.clone())).collect();
        let mut idle = 0;
        for _ in 0..1000 {
            if s.pick(&[]).unwrap().addr.port() == 1001 {
                idle += 1;
            }
        }
        // Only when both samples hit the busy one does it get chosen (~25%).
        assert!(idle > 650, "{idle}");
        drop(_g);
        assert_eq!(busy.outstanding(), 0);
    }

    #[test]
    fn counters_survive_updates() {
        let s = set(&[1.0, 1.0]);
        let g = Outstanding::new(s.endpoints()[0].clone());
        let eps = vec![Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], 1000)),
            weight: 1.0,
        }];
        let s2 = EndpointSet::from_addr(&Addr::Bound(eps.into()), &s);
        assert_eq!(s2.endpoints()[0].outstanding(), 1);
        drop(g);
    }

    #[test]
    fn absurd_weights_do_not_panic() {
        let s = set(&[f64::MAX, f64::MAX, f64::INFINITY, f64::NAN, -1.0]);
        for _ in 0..100 {
            assert!(s.pick(&[]).is_some());
        }
    }

    #[test]
    fn exclude_picks_another() {
        let s = set(&[1.0, 1.0]);
        let a = SocketAddr::from(([127, 0, 0, 1], 1000));
        assert_eq!(s.pick(&[a]).unwrap().addr.port(), 1001);
        let b = SocketAddr::from(([127, 0, 0, 1], 1001));
        assert!(s.pick(&[a, b]).is_none());
    }
}
