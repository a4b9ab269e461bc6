//! Endpoint choice for one bound name.
//!
//! A [`Client`](super::Client) follows its bound name's endpoint watch and
//! publishes the current [`EndpointSet`] with `arc-swap`, so a request reads
//! it with one atomic load and never waits on a lock. Each endpoint keeps
//! its load (requests in flight, an atomic), its latency average (peak
//! EWMA) and its failure accrual; both of the latter sit behind a short
//! lock that is never held across an await. Endpoint state survives
//! endpoint-set updates (matched by address and weight).
//!
//! Choosing is kind-specific (`p2c`, `ewma`, `aperture`, `heap` — a real
//! min-heap kept in order as loads change, see [`super::heap`] —,
//! `roundRobin`); every kind divides load by the endpoint's weight (or
//! samples in proportion to it), skips ejected endpoints for up to
//! `maxEffort` picks, then scans for any available endpoint, and finally
//! fails open: when every endpoint is ejected, it uses them anyway rather
//! than send nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::ResponseClass;
use super::accrual::{Accrual, Health, Transition};
use super::ewma::PeakEwma;
use super::heap::{Heap, NOWHERE};
use super::params::{ClientParams, LoadBalancer};
use super::pool::{Pool, Settings};
use crate::dtab::Path;
use crate::naming::Addr;
use crate::service::RetryBudget;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of one client, for the admin and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Endpoints taken out of rotation by failure accrual.
    pub ejections_total: AtomicU64,
    /// Endpoints brought back (a probe or other request succeeded).
    pub revivals_total: AtomicU64,
    /// Requests sent again because the endpoint surely did not process
    /// them: a refused connection, a stale pooled HTTP/1.1 connection, an
    /// h2 `REFUSED_STREAM` or `GOAWAY`.
    pub requeues_total: AtomicU64,
    /// Requeues refused because the requeue budget was spent.
    pub requeue_budget_exhausted_total: AtomicU64,
    /// Requests refused because an endpoint's pool had `maxWaiters` waiting.
    pub pool_rejections_total: AtomicU64,
}

/// The state every endpoint of a client shares: its name, parameters,
/// budget, counters and the balancer's own memory.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: Path,
    pub(crate) params: ClientParams,
    pub(crate) budget: RetryBudget,
    pub(crate) stats: ClientStats,
    /// Prometheus handles, made once per client.
    pub(crate) metrics: crate::telemetry::metrics::ClientMetrics,
    /// Requests in flight across all endpoints (aperture's load; counted
    /// only with that balancer).
    outstanding: AtomicUsize,
    /// Round robin's position.
    rr: AtomicUsize,
    aperture: Mutex<Aperture>,
    /// The `heap` balancer's min-heap of the endpoints by load (only for
    /// `heap`): kept in order as loads change.
    heap: Option<Mutex<Heap>>,
    /// HTTP/1.1: what each endpoint's connection pool is built with.
    pub(crate) h1: Option<Arc<Settings>>,
}

/// Aperture's current size and smoothed load.
#[derive(Debug)]
struct Aperture {
    size: usize,
    load: f64,
    stamp: Instant,
    /// Where this client's window starts in the endpoint list.
    offset: usize,
}

impl Shared {
    pub(crate) fn new(id: Path, params: ClientParams) -> Arc<Shared> {
        let min = match params.load_balancer {
            LoadBalancer::Aperture { min_aperture, .. } => min_aperture.max(1) as usize,
            _ => 1,
        };
        let heap = matches!(params.load_balancer, LoadBalancer::Heap {})
            .then(|| Mutex::new(Heap::default()));
        let h1 = (params.protocol == crate::routing::Protocol::Http).then(|| {
            Arc::new(Settings::new(
                &params.host_connection_pool,
                params.tls.as_ref(),
            ))
        });
        Arc::new(Shared {
            metrics: crate::telemetry::metrics::ClientMetrics::new(&params.router, &id),
            id,
            budget: RetryBudget::new(&params.requeue_budget),
            params,
            stats: ClientStats::default(),
            outstanding: AtomicUsize::new(0),
            rr: AtomicUsize::new(0),
            heap,
            h1,
            aperture: Mutex::new(Aperture {
                size: min,
                load: 0.0,
                stamp: crate::clock::coarse(),
                offset: rand::rng().random_range(0..1024),
            }),
        })
    }
}

/// One endpoint of a bound name and its state.
#[derive(Debug)]
pub struct EndpointState {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: requests are addressed to it.
    pub(crate) authority: Option<http::uri::Authority>,
    /// Its weight within the set (> 0 to receive traffic).
    pub weight: f64,
    outstanding: AtomicUsize,
    /// Fast path: `true` while failure accrual has it in rotation.
    available: AtomicBool,
    accrual: Mutex<Accrual>,
    ewma: Mutex<PeakEwma>,
    requests: AtomicU64,
    failures: AtomicU64,
    /// `hostConnectionPool.maxSize` permits, when bounded.
    pub(crate) pool: Option<Arc<Semaphore>>,
    /// Requests waiting for a permit.
    pub(crate) waiters: AtomicUsize,
    /// HTTP/1.1: its keep-alive connections (kept across a weight change).
    pub(crate) conns: Option<Arc<Pool>>,
    /// Where it sits in its client's load heap (`heap` balancer).
    pub(crate) heap_index: AtomicUsize,
    pub(crate) shared: Arc<Shared>,
}

impl EndpointState {
    /// A state for `addr`, taking over the connections of `prev` (the
    /// same endpoint under another weight).
    fn new(
        addr: SocketAddr,
        weight: f64,
        shared: Arc<Shared>,
        prev: Option<&EndpointState>,
    ) -> EndpointState {
        let now = crate::clock::coarse();
        let conns = match prev.and_then(|p| p.conns.clone()) {
            Some(c) => Some(c),
            None => shared
                .h1
                .as_ref()
                .map(|s| Arc::new(Pool::new(addr, s.clone()))),
        };
        let pool = shared.params.host_connection_pool.max_size.map(|n| {
            Arc::new(Semaphore::new(
                (n as usize).clamp(1, Semaphore::MAX_PERMITS),
            ))
        });
        EndpointState {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string()).ok(),
            weight,
            outstanding: AtomicUsize::new(0),
            available: AtomicBool::new(true),
            accrual: Mutex::new(Accrual::new(&shared.params.failure_accrual, now)),
            ewma: Mutex::new(PeakEwma::new(crate::clock::coarse_ns())),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            pool,
            waiters: AtomicUsize::new(0),
            conns,
            heap_index: AtomicUsize::new(NOWHERE),
            shared,
        }
    }

    /// Requests sent to it whose response has not finished yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Its failure-accrual health.
    pub fn health(&self) -> Health {
        lock(&self.accrual).health()
    }

    /// Its latency average (peak EWMA), decayed to now.
    pub fn ewma(&self) -> Duration {
        let tau = self.decay();
        let ns = lock(&self.ewma).get(crate::clock::coarse_ns(), tau);
        Duration::from_nanos(ns as u64)
    }

    fn decay(&self) -> Duration {
        match self.shared.params.load_balancer {
            LoadBalancer::Ewma { decay_time, .. } => decay_time,
            _ => Duration::from_secs(10),
        }
    }

    pub(crate) fn usable(&self) -> bool {
        self.weight.is_finite() && self.weight > 0.0
    }

    fn divisor(&self) -> f64 {
        if self.usable() { self.weight } else { 1.0 }
    }

    /// The balancer's load of this endpoint (lower is better).
    pub fn load(&self) -> f64 {
        let outstanding = self.outstanding();
        match self.shared.params.load_balancer {
            LoadBalancer::Ewma { decay_time, .. } => {
                let now = crate::clock::coarse_ns();
                lock(&self.ewma).cost(now, decay_time, outstanding) / self.divisor()
            }
            _ => (outstanding as f64 + 1.0) / self.divisor(),
        }
    }

    fn is_available(&self, now: Instant) -> bool {
        self.available.load(Ordering::Relaxed) || lock(&self.accrual).is_available(now)
    }

    /// Take the endpoint for one request: always when in rotation; once (the
    /// probe) when its ejection has expired.
    fn try_acquire(&self, now: Instant) -> bool {
        if self.available.load(Ordering::Relaxed) {
            return true;
        }
        let mut a = lock(&self.accrual);
        let ok = a.try_acquire(now);
        if ok && a.health() == Health::Probing {
            tracing::info!(client = %self.shared.id, endpoint = %self.addr, "probing ejected endpoint");
        }
        ok
    }

    /// Count one response or failure of this endpoint (failure accrual).
    pub(crate) fn record(&self, class: ResponseClass) {
        let success = class == ResponseClass::Success;
        let now = crate::clock::coarse();
        let mut a = lock(&self.accrual);
        // Written only under the accrual lock, so loads and stores do
        // (readers see the counts and the flag without it): no atomic
        // read-modify-write of their own.
        let bump = |n: &AtomicU64| n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        bump(&self.requests);
        if !success {
            bump(&self.failures);
        }
        let t = a.record(success, now);
        let now_available = a.health() == Health::Available;
        let was_available = self.available.load(Ordering::Relaxed);
        if was_available != now_available {
            self.available.store(now_available, Ordering::Relaxed);
        }
        drop(a);
        let gauges = &self.shared.metrics.gauges;
        match (was_available, now_available) {
            (true, false) => gauges.available.decrement(1.0),
            (false, true) => gauges.available.increment(1.0),
            _ => {}
        }
        let stats = &self.shared.stats;
        match t {
            Transition::None => {}
            Transition::Ejected { for_, reason } => {
                stats.ejections_total.fetch_add(1, Ordering::Relaxed);
                self.shared.metrics.ejections.increment(1);
                tracing::info!(
                    client = %self.shared.id,
                    endpoint = %self.addr,
                    %reason,
                    backoff_ms = for_.as_millis() as u64,
                    "endpoint ejected"
                );
            }
            Transition::Revived => {
                stats.revivals_total.fetch_add(1, Ordering::Relaxed);
                self.shared.metrics.revivals.increment(1);
                tracing::info!(client = %self.shared.id, endpoint = %self.addr, "endpoint revived");
            }
        }
    }

    /// Whether requests are counted client-wide too: only the aperture
    /// balancer reads that count (an atomic add and subtract a request
    /// saved for the others).
    fn counts_client_wide(&self) -> bool {
        matches!(
            self.shared.params.load_balancer,
            LoadBalancer::Aperture { .. }
        )
    }

    /// Record the time a response took to start.
    pub(crate) fn observe_latency(&self, rtt: Duration) {
        let tau = self.decay();
        lock(&self.ewma).observe(rtt, crate::clock::coarse_ns(), tau);
    }

    /// Admin view of the endpoint.
    pub fn state_json(&self, now: Instant) -> serde_json::Value {
        let (state, ejected_for) = match self.health() {
            Health::Available => ("available", None),
            Health::Ejected { until } => (
                "ejected",
                Some(until.saturating_duration_since(now).as_millis() as u64),
            ),
            Health::Probing => ("probing", None),
        };
        let mut v = serde_json::json!({
            "addr": self.addr.to_string(),
            "weight": self.weight,
            "state": state,
            "outstanding": self.outstanding(),
            "load": self.load(),
            "ewmaMs": self.ewma().as_secs_f64() * 1000.0,
            "requests": self.requests.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
        });
        if let (Some(ms), Some(o)) = (ejected_for, v.as_object_mut()) {
            o.insert("ejectedForMs".into(), ms.into());
        }
        if let (Some(sem), Some(o)) = (&self.pool, v.as_object_mut()) {
            o.insert("poolAvailable".into(), sem.available_permits().into());
            o.insert(
                "poolWaiters".into(),
                self.waiters.load(Ordering::Relaxed).into(),
            );
        }
        if let (Some(pool), Some(o)) = (&self.conns, v.as_object_mut()) {
            o.insert("connections".into(), pool.open().into());
            o.insert("idleConnections".into(), pool.idle().into());
        }
        v
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
        if ep.counts_client_wide() {
            ep.shared.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = &ep.shared.heap {
            lock(h).update(&ep);
        }
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
        if self.0.counts_client_wide() {
            self.0.shared.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(h) = &self.0.shared.heap {
            lock(h).update(&self.0);
        }
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

/// How a candidate ranks: not excluded first, then available, then least loaded.
fn rank(e: &EndpointState, exclude: &[SocketAddr], now: Instant) -> (bool, bool, f64) {
    (exclude.contains(&e.addr), !e.is_available(now), e.load())
}

fn better<'a>(
    a: &'a Arc<EndpointState>,
    b: &'a Arc<EndpointState>,
    exclude: &[SocketAddr],
    now: Instant,
) -> &'a Arc<EndpointState> {
    let (ra, rb) = (rank(a, exclude, now), rank(b, exclude, now));
    let a_first = (ra.0, ra.1) < (rb.0, rb.1) || ((ra.0, ra.1) == (rb.0, rb.1) && ra.2 <= rb.2);
    if a_first { a } else { b }
}

impl EndpointSet {
    /// Build from an `Addr`, keeping the state of endpoints already known.
    pub(crate) fn from_addr(addr: &Addr, prev: &EndpointSet, shared: &Arc<Shared>) -> EndpointSet {
        let set = EndpointSet::build(addr, prev, shared);
        if let Some(h) = &shared.heap {
            lock(h).rebuild(set.endpoints());
        }
        set
    }

    fn build(addr: &Addr, prev: &EndpointSet, shared: &Arc<Shared>) -> EndpointSet {
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
                            .unwrap_or_else(|| {
                                let prev = old.iter().find(|o| o.addr == e.addr);
                                Arc::new(EndpointState::new(
                                    e.addr,
                                    e.weight,
                                    shared.clone(),
                                    prev.map(|p| &**p),
                                ))
                            })
                    })
                    .collect();
                let any_usable = endpoints.iter().any(|e| e.usable());
                let mut sum = 0.0;
                let cumulative = endpoints
                    .iter()
                    .map(|e| {
                        // All weights zero: treat them as equal rather than refuse.
                        sum += if !any_usable {
                            1.0
                        } else if e.usable() {
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

    /// Set the client's balancer gauges from this set: its size and the
    /// endpoints failure accrual has in rotation (ejections and revivals
    /// then move the second one).
    pub(crate) fn publish_gauges(&self, shared: &Shared) {
        let endpoints = self.endpoints();
        let in_rotation = endpoints
            .iter()
            .filter(|e| e.available.load(Ordering::Relaxed))
            .count();
        shared.metrics.gauges.set(endpoints.len(), in_rotation);
    }

    /// Endpoints in rotation now.
    pub fn available(&self) -> usize {
        let now = crate::clock::coarse();
        self.endpoints()
            .iter()
            .filter(|e| e.is_available(now))
            .count()
    }

    /// Choose an endpoint not in `exclude` for one request, as the client's
    /// balancer does; `None` only when every endpoint is excluded.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Arc<EndpointState>> {
        let EndpointSet::Bound {
            endpoints,
            cumulative,
        } = self
        else {
            return None;
        };
        let first = endpoints.first()?;
        let shared = &first.shared;
        let lb = shared.params.load_balancer;
        let now = crate::clock::coarse();
        let mut rng = rand::rng();
        let mut last: Option<&Arc<EndpointState>> = None;
        if let Some(heap) = &shared.heap {
            // The top of the heap, or the best below it that may be used.
            let found = lock(heap)
                .best(|e| !exclude.contains(&e.addr) && e.is_available(now))
                .cloned();
            if let Some(c) = found
                && c.try_acquire(now)
            {
                return Some(c);
            }
        }
        let effort = if shared.heap.is_some() {
            0
        } else {
            lb.max_effort()
        };
        for _ in 0..effort {
            let Some(c) = self.choose(&mut rng, endpoints, cumulative, shared, exclude, now) else {
                break;
            };
            if exclude.contains(&c.addr) {
                continue;
            }
            if c.try_acquire(now) {
                return Some(c.clone());
            }
            last = Some(c);
        }
        // Still nothing: any endpoint in rotation, least loaded.
        let any_usable = endpoints.iter().any(|e| e.usable());
        let candidates = || {
            endpoints
                .iter()
                .filter(|e| !exclude.contains(&e.addr) && (!any_usable || e.usable()))
        };
        let mut avail: Vec<&Arc<EndpointState>> =
            candidates().filter(|e| e.is_available(now)).collect();
        avail.sort_by(|x, y| x.load().total_cmp(&y.load()));
        for c in avail {
            if c.try_acquire(now) {
                return Some(c.clone());
            }
        }
        // Fail open: every endpoint is ejected; use one anyway.
        last.cloned().or_else(|| {
            candidates()
                .min_by(|x, y| x.load().total_cmp(&y.load()))
                .cloned()
        })
    }

    /// One kind-specific choice (which may be excluded or unavailable).
    fn choose<'a>(
        &self,
        rng: &mut rand::rngs::ThreadRng,
        endpoints: &'a [Arc<EndpointState>],
        cumulative: &[f64],
        shared: &Shared,
        exclude: &[SocketAddr],
        now: Instant,
    ) -> Option<&'a Arc<EndpointState>> {
        let n = endpoints.len();
        let total = cumulative.last().copied().unwrap_or(0.0);
        let sample = |rng: &mut rand::rngs::ThreadRng| -> Option<usize> {
            if total.is_nan() || total <= 0.0 {
                return None;
            }
            // A product, not a range: no panic even if the weights sum to infinity.
            let x = rng.random::<f64>() * total;
            Some(
                cumulative
                    .partition_point(|&c| c <= x)
                    .min(n.saturating_sub(1)),
            )
        };
        match shared.params.load_balancer {
            LoadBalancer::P2c { .. } | LoadBalancer::Ewma { .. } => {
                // Two distinct candidates when there are (as Finagle's p2c):
                // the second is sampled by weight among the others.
                let ia = sample(rng)?;
                let hi = cumulative.get(ia).copied().unwrap_or(0.0);
                let lo = match ia.checked_sub(1) {
                    Some(i) => cumulative.get(i).copied().unwrap_or(0.0),
                    None => 0.0,
                };
                let rest = total - (hi - lo);
                let ib = if rest.is_finite() && rest > 0.0 {
                    let mut x = rng.random::<f64>() * rest;
                    if x >= lo {
                        x += hi - lo;
                    }
                    cumulative
                        .partition_point(|&c| c <= x)
                        .min(n.saturating_sub(1))
                } else {
                    sample(rng)?
                };
                let a = endpoints.get(ia)?;
                let b = endpoints.get(ib)?;
                Some(better(a, b, exclude, now))
            }
            LoadBalancer::Aperture {
                smooth_window,
                low_load,
                high_load,
                min_aperture,
                ..
            } => {
                let (size, offset) = {
                    let mut ap = lock(&shared.aperture);
                    let dt = now.saturating_duration_since(ap.stamp).as_secs_f64();
                    let w = smooth_window.as_secs_f64().max(1e-3);
                    let per = shared.outstanding.load(Ordering::Relaxed) as f64 / ap.size as f64;
                    ap.load += (1.0 - (-dt / w).exp()) * (per - ap.load);
                    ap.stamp = ap.stamp.max(now);
                    let min = (min_aperture.max(1) as usize).min(n);
                    if ap.load > high_load && ap.size < n {
                        ap.size += 1;
                    } else if ap.load < low_load && ap.size > min {
                        ap.size -= 1;
                    }
                    ap.size = ap.size.clamp(min.max(1), n.max(1));
                    (ap.size, ap.offset)
                };
                let at = |i: usize| endpoints.get((offset + i) % n);
                let i = rng.random_range(0..size);
                let mut j = rng.random_range(0..size);
                if size > 1 && j == i {
                    j = (i + 1 + rng.random_range(0..size - 1)) % size;
                }
                let a = at(i)?;
                let b = at(j)?;
                Some(better(a, b, exclude, now))
            }
            // Chosen from the client's heap (see `pick`).
            LoadBalancer::Heap {} => None,
            LoadBalancer::RoundRobin { .. } => {
                let k = shared.rr.fetch_add(1, Ordering::Relaxed);
                let equal = endpoints
                    .iter()
                    .all(|e| e.weight == first_weight(endpoints));
                if equal {
                    return endpoints.get(k % n);
                }
                if total.is_nan() || total <= 0.0 {
                    return endpoints.get(k % n);
                }
                // Weighted: a low-discrepancy walk over the cumulative weights,
                // so each endpoint gets its share, evenly spread.
                const PHI: f64 = 0.618_033_988_749_895;
                let x = ((k as f64) * PHI).fract() * total;
                let i = cumulative.partition_point(|&c| c <= x);
                endpoints.get(i.min(n - 1))
            }
        }
    }
}

fn first_weight(endpoints: &[Arc<EndpointState>]) -> f64 {
    endpoints.first().map_or(1.0, |e| e.weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::params::{Backoff, FailureAccrual};
    use crate::naming::Endpoint;
    use crate::routing::Protocol;

    fn shared_with(lb: LoadBalancer, fa: FailureAccrual) -> Arc<Shared> {
        let mut p = ClientParams::new(Protocol::Http);
        p.load_balancer = lb;
        p.failure_accrual = fa;
        Shared::new("/test".parse().unwrap(), p)
    }

    fn set_with(weights: &[f64], shared: &Arc<Shared>) -> EndpointSet {
        let eps: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                weight: *w,
            })
            .collect();
        EndpointSet::from_addr(&Addr::Bound(eps.into()), &EndpointSet::Pending, shared)
    }

    fn set(weights: &[f64]) -> EndpointSet {
        set_with(
            weights,
            &shared_with(LoadBalancer::default(), FailureAccrual::default()),
        )
    }

    fn counts(s: &EndpointSet, n: usize) -> Vec<usize> {
        let mut c = vec![0; s.endpoints().len()];
        for _ in 0..n {
            let e = s.pick(&[]).unwrap();
            c[(e.addr.port() - 1000) as usize] += 1;
        }
        c
    }

    fn eject(e: &EndpointState) {
        for _ in 0..10 {
            e.record(ResponseClass::Failure);
        }
    }

    #[tokio::test]
    async fn weights_shape_the_choice() {
        let c = counts(&set(&[1.0, 3.0]), 4000);
        // p2c over weighted samples favours the heavy endpoint strongly.
        assert!(c[1] > 2500, "{c:?}");
    }

    #[tokio::test]
    async fn zero_weight_is_skipped_unless_all_zero() {
        let s = set(&[0.0, 1.0]);
        for _ in 0..200 {
            assert_eq!(s.pick(&[]).unwrap().addr.port(), 1001);
        }
        let s = set(&[0.0, 0.0]);
        assert!(s.pick(&[]).is_some());
    }

    #[tokio::test]
    async fn least_outstanding_wins() {
        let s = set(&[1.0, 1.0]);
        let busy = s.endpoints()[0].clone();
        let g: Vec<Outstanding> = (0..10).map(|_| Outstanding::new(busy.clone())).collect();
        let c = counts(&s, 1000);
        // Two distinct candidates: the idle one always wins.
        assert_eq!(c[1], 1000, "{c:?}");
        drop(g);
        assert_eq!(busy.outstanding(), 0);
    }

    #[tokio::test]
    async fn state_survives_updates() {
        let sh = shared_with(LoadBalancer::default(), FailureAccrual::default());
        let s = set_with(&[1.0, 1.0], &sh);
        let g = Outstanding::new(s.endpoints()[0].clone());
        let eps = vec![Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], 1000)),
            weight: 1.0,
        }];
        let s2 = EndpointSet::from_addr(&Addr::Bound(eps.into()), &s, &sh);
        assert_eq!(s2.endpoints()[0].outstanding(), 1);
        drop(g);
    }

    #[tokio::test]
    async fn absurd_weights_do_not_panic() {
        for lb in [
            LoadBalancer::default(),
            LoadBalancer::Heap {},
            LoadBalancer::RoundRobin { max_effort: 5 },
        ] {
            let sh = shared_with(lb, FailureAccrual::default());
            let s = set_with(&[f64::MAX, f64::MAX, f64::INFINITY, f64::NAN, -1.0], &sh);
            for _ in 0..100 {
                assert!(s.pick(&[]).is_some());
            }
        }
    }

    #[tokio::test]
    async fn exclude_picks_another() {
        let s = set(&[1.0, 1.0]);
        let a = SocketAddr::from(([127, 0, 0, 1], 1000));
        assert_eq!(s.pick(&[a]).unwrap().addr.port(), 1001);
        let b = SocketAddr::from(([127, 0, 0, 1], 1001));
        assert!(s.pick(&[a, b]).is_none());
    }

    #[tokio::test]
    async fn ejected_endpoints_are_skipped_and_all_ejected_fails_open() {
        let fa = FailureAccrual::ConsecutiveFailures {
            failures: 2,
            backoff: Backoff::Constant {
                ms: Duration::from_secs(60),
            },
        };
        for lb in [
            LoadBalancer::default(),
            LoadBalancer::Heap {},
            LoadBalancer::RoundRobin { max_effort: 1 },
            LoadBalancer::Ewma {
                max_effort: 5,
                decay_time: Duration::from_secs(10),
            },
        ] {
            let sh = shared_with(lb, fa);
            let s = set_with(&[1.0, 1.0, 1.0], &sh);
            eject(&s.endpoints()[0]);
            assert_eq!(s.available(), 2);
            let c = counts(&s, 300);
            assert_eq!(c[0], 0, "{lb:?} {c:?}");
            eject(&s.endpoints()[1]);
            eject(&s.endpoints()[2]);
            assert_eq!(s.available(), 0);
            assert_eq!(counts(&s, 30).iter().sum::<usize>(), 30);
            assert_eq!(sh.stats.ejections_total.load(Ordering::Relaxed), 3);
        }
    }

    #[tokio::test]
    async fn round_robin_rotates_and_follows_weights() {
        let sh = shared_with(
            LoadBalancer::RoundRobin { max_effort: 5 },
            FailureAccrual::default(),
        );
        let s = set_with(&[1.0, 1.0, 1.0], &sh);
        assert_eq!(counts(&s, 300), vec![100, 100, 100]);
        let sh = shared_with(
            LoadBalancer::RoundRobin { max_effort: 5 },
            FailureAccrual::default(),
        );
        let s = set_with(&[1.0, 3.0], &sh);
        let c = counts(&s, 400);
        assert!((90..=110).contains(&c[0]), "{c:?}");
    }

    #[tokio::test]
    async fn heap_takes_the_least_loaded() {
        let sh = shared_with(LoadBalancer::Heap {}, FailureAccrual::default());
        let s = set_with(&[1.0, 1.0, 1.0], &sh);
        let _g0 = Outstanding::new(s.endpoints()[0].clone());
        let _g2 = Outstanding::new(s.endpoints()[2].clone());
        for _ in 0..50 {
            assert_eq!(s.pick(&[]).unwrap().addr.port(), 1001);
        }
    }

    #[tokio::test]
    async fn ewma_avoids_the_slow_endpoint() {
        let sh = shared_with(
            LoadBalancer::Ewma {
                max_effort: 5,
                decay_time: Duration::from_secs(10),
            },
            FailureAccrual::default(),
        );
        let s = set_with(&[1.0, 1.0], &sh);
        s.endpoints()[0].observe_latency(Duration::from_millis(100));
        s.endpoints()[1].observe_latency(Duration::from_millis(1));
        let c = counts(&s, 1000);
        // Two distinct candidates: the fast one always wins.
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn aperture_grows_with_load_and_shrinks_when_idle() {
        let sh = shared_with(
            LoadBalancer::Aperture {
                max_effort: 5,
                smooth_window: Duration::from_secs(1),
                low_load: 0.5,
                high_load: 2.0,
                min_aperture: 1,
            },
            FailureAccrual::default(),
        );
        let s = set_with(&[1.0; 10], &sh);
        // Idle: one endpoint.
        let c = counts(&s, 100);
        assert_eq!(c.iter().filter(|&&n| n > 0).count(), 1, "{c:?}");
        // Loaded: 40 in flight, the aperture widens.
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(Outstanding::new(s.pick(&[]).unwrap()));
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        let wide = lock(&sh.aperture).size;
        assert!(wide > 3, "{wide}");
        drop(held);
        for _ in 0..40 {
            s.pick(&[]);
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        assert!(lock(&sh.aperture).size < wide);
    }
}

#[cfg(test)]
mod heap_tests {
    use super::*;
    use crate::client::params::FailureAccrual;
    use crate::naming::Endpoint;
    use crate::routing::Protocol;

    fn heap_shared() -> Arc<Shared> {
        let mut p = ClientParams::new(Protocol::Http);
        p.load_balancer = LoadBalancer::Heap {};
        p.failure_accrual = FailureAccrual::ConsecutiveFailures {
            failures: 1,
            backoff: super::super::params::Backoff::Constant {
                ms: Duration::from_secs(60),
            },
        };
        Shared::new("/heap".parse().unwrap(), p)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn bound(ports: &[(u16, f64)], prev: &EndpointSet, sh: &Arc<Shared>) -> EndpointSet {
        let eps: Vec<Endpoint> = ports
            .iter()
            .map(|&(p, weight)| Endpoint {
                addr: addr(p),
                weight,
            })
            .collect();
        EndpointSet::from_addr(&Addr::Bound(eps.into()), prev, sh)
    }

    fn valid(sh: &Shared) -> bool {
        sh.heap.as_ref().is_some_and(|h| lock(h).is_valid())
    }

    fn top(sh: &Shared) -> u16 {
        let h = sh.heap.as_ref().unwrap();
        lock(h).top().unwrap().addr.port()
    }

    #[tokio::test]
    async fn picks_follow_the_least_loaded_as_load_changes() {
        let sh = heap_shared();
        let s = bound(
            &[(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)],
            &EndpointSet::Pending,
            &sh,
        );
        assert!(valid(&sh));
        // Each request taken and held goes to an endpoint with the least
        // load: four requests, one on each.
        let mut held: Vec<Outstanding> = (0..4)
            .map(|_| Outstanding::new(s.pick(&[]).unwrap()))
            .collect();
        assert!(valid(&sh));
        let mut ports: Vec<u16> = held.iter().map(|o| o.endpoint().addr.port()).collect();
        ports.sort();
        assert_eq!(ports, vec![1, 2, 3, 4]);
        // Two more on whichever; then releasing one endpoint's requests
        // brings it to the top.
        held.push(Outstanding::new(s.pick(&[]).unwrap()));
        held.push(Outstanding::new(s.pick(&[]).unwrap()));
        let free = held[0].endpoint().addr.port();
        held.retain(|o| o.endpoint().addr.port() != free);
        assert!(valid(&sh));
        assert_eq!(top(&sh), free);
        assert_eq!(s.pick(&[]).unwrap().addr.port(), free);
        drop(held);
        assert!(valid(&sh));
    }

    #[tokio::test]
    async fn weights_divide_the_load() {
        let sh = heap_shared();
        let s = bound(&[(1, 1.0), (2, 3.0)], &EndpointSet::Pending, &sh);
        let held: Vec<Outstanding> = (0..8)
            .map(|_| Outstanding::new(s.pick(&[]).unwrap()))
            .collect();
        let on = |p: u16| {
            held.iter()
                .filter(|o| o.endpoint().addr.port() == p)
                .count()
        };
        // Load (outstanding + 1) / weight evens out at 2 : 6.
        assert_eq!((on(1), on(2)), (2, 6));
        assert!(valid(&sh));
    }

    #[tokio::test]
    async fn excluded_and_ejected_endpoints_are_passed_over_best_first() {
        let sh = heap_shared();
        let s = bound(&[(1, 1.0), (2, 1.0), (3, 1.0)], &EndpointSet::Pending, &sh);
        let e = s.endpoints();
        let _g2 = [
            Outstanding::new(e[1].clone()),
            Outstanding::new(e[1].clone()),
        ];
        let _g3 = Outstanding::new(e[2].clone());
        assert_eq!(top(&sh), 1);
        // Excluding the least loaded gives the next least loaded.
        assert_eq!(s.pick(&[addr(1)]).unwrap().addr.port(), 3);
        assert_eq!(s.pick(&[addr(1), addr(3)]).unwrap().addr.port(), 2);
        assert!(s.pick(&[addr(1), addr(2), addr(3)]).is_none());
        // Ejected: passed over while others are available...
        e[0].record(ResponseClass::Failure);
        assert_eq!(s.pick(&[]).unwrap().addr.port(), 3);
        // ...and used anyway when every endpoint is ejected.
        e[1].record(ResponseClass::Failure);
        e[2].record(ResponseClass::Failure);
        assert!(s.pick(&[]).is_some());
    }

    #[tokio::test]
    async fn updates_add_and_remove_endpoints_and_keep_loads() {
        let sh = heap_shared();
        let s = bound(&[(1, 1.0), (2, 1.0)], &EndpointSet::Pending, &sh);
        let g1 = Outstanding::new(s.endpoints()[0].clone());
        let g2 = Outstanding::new(s.endpoints()[1].clone());
        // A new, idle endpoint goes to the top.
        let s2 = bound(&[(1, 1.0), (2, 1.0), (3, 1.0)], &s, &sh);
        assert!(valid(&sh));
        assert_eq!(top(&sh), 3);
        assert_eq!(s2.pick(&[]).unwrap().addr.port(), 3);
        // A removed endpoint leaves the heap; its outstanding request's end
        // does not disturb it.
        let g3 = Outstanding::new(s2.endpoints()[2].clone());
        let g3b = Outstanding::new(s2.endpoints()[2].clone());
        let s3 = bound(&[(2, 1.0), (3, 1.0)], &s2, &sh);
        drop(g1);
        assert!(valid(&sh));
        assert_eq!(top(&sh), 2);
        assert_eq!(s3.pick(&[]).unwrap().addr.port(), 2);
        drop((g2, g3, g3b));
        assert!(valid(&sh));
        // Back to nothing bound: an empty heap.
        let s4 = EndpointSet::from_addr(&Addr::Neg, &s3, &sh);
        assert!(s4.pick(&[]).is_none());
        assert!(lock(sh.heap.as_ref().unwrap()).top().is_none());
    }

    #[tokio::test]
    async fn unusable_weights_only_when_nothing_else() {
        let sh = heap_shared();
        let s = bound(&[(1, 0.0), (2, 1.0)], &EndpointSet::Pending, &sh);
        let _held: Vec<Outstanding> = (0..5)
            .map(|_| Outstanding::new(s.endpoints()[1].clone()))
            .collect();
        assert_eq!(s.pick(&[]).unwrap().addr.port(), 2);
        assert!(s.pick(&[addr(2)]).is_none());
        let s = bound(&[(1, 0.0), (2, 0.0)], &EndpointSet::Pending, &sh);
        assert!(s.pick(&[]).is_some());
    }
}
