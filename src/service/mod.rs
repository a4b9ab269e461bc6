//! The service level of a request: policy per **logical name** (`/svc/users`),
//! around the client level (per bound name: endpoint choice, requeues,
//! per-attempt timeout).
//!
//! ```text
//! deadline (l5d-ctx-deadline, grpc-timeout, totalTimeoutMs; expired → 503, not sent)
//!   └─ for each attempt: replayable body → client call → classify
//!        └─ retryable, body replayable, budget allows → backoff, again
//! ```
//!
//! * [`params`]: the router's `service:` config and each name's effective
//!   [`ServiceParams`], resolved once per name and cached in [`Services`].
//! * [`classify`]: response classifiers, `l5d-retryable`, `l5d-success-class`.
//! * [`budget`]: Finagle's retry budget, for retries and for the clients' requeues.
//! * [`backoff`]: constant and decorrelated-jitter waits.
//! * [`deadline`]: `l5d-ctx-deadline` and `grpc-timeout`.
//! * [`body`]: request bodies kept up to `retryBufferSize.requestBytes`.
//! * [`retry`]: the loop that ties them together.
//! * [`trailers`]: `l5d-success-class` in the trailers of gRPC responses.

pub mod backoff;
pub mod body;
pub mod budget;
pub mod classify;
pub mod deadline;
pub mod params;
pub mod retry;
pub mod trailers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use backoff::Backoff;
pub use body::ReplayBody;
pub use budget::{BudgetConfig, RetryBudget};
pub use classify::{Classifier, ResponseClass};
pub use deadline::Deadline;
pub use params::{
    Retries, RetryBufferSize, ServiceConfig, ServiceOverrides, ServiceParams, ServiceRule,
};

use crate::dtab::Path;

/// One logical name's policy and shared state (its retry budget, counters).
#[derive(Debug)]
pub struct Service {
    /// The logical name.
    pub name: Path,
    /// Its effective parameters.
    pub params: ServiceParams,
    /// Its retry budget, shared by every request to the name.
    pub budget: RetryBudget,
    /// Counters, for the admin and for tests.
    pub stats: ServiceStats,
    /// Its Prometheus counters (retries, budget exhaustion).
    pub metrics: crate::telemetry::metrics::ServiceMetrics,
}

/// What a service has done.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Retries sent (attempts beyond each request's first: counting only
    /// those saves an atomic add on every request).
    pub retries: AtomicU64,
    /// Retries the budget refused.
    pub budget_exhausted: AtomicU64,
    /// Requests answered with a timeout or an expired deadline.
    pub timeouts: AtomicU64,
}

impl ServiceStats {
    /// As JSON (`requests`, `attempts`, `retries`, `budgetExhausted`, `timeouts`).
    pub fn json(&self) -> serde_json::Value {
        let r = self.requests.load(Ordering::Relaxed);
        let retries = self.retries.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": r,
            "attempts": r + retries,
            "retries": retries,
            "budgetExhausted": self.budget_exhausted.load(Ordering::Relaxed),
            "timeouts": self.timeouts.load(Ordering::Relaxed),
        })
    }
}

impl Service {
    /// The service `name` with `params`, its budget starting now.
    pub fn new(name: Path, params: ServiceParams) -> Service {
        Service::in_router("", name, params)
    }

    /// The service `name` of the router labelled `router` (its metrics
    /// carry the label).
    pub fn in_router(router: &str, name: Path, params: ServiceParams) -> Service {
        Service {
            budget: RetryBudget::new(&params.budget),
            metrics: crate::telemetry::metrics::ServiceMetrics::new(router, &name),
            name,
            params,
            stats: ServiceStats::default(),
        }
    }
}

/// A router's services by logical name, each resolved once from the
/// `service:` config; bounded, dropping services no request holds.
pub struct Services {
    router: String,
    config: ServiceConfig,
    capacity: usize,
    map: Mutex<HashMap<Path, Arc<Service>>>,
}

impl Services {
    /// Services for `config`, at most `capacity` of them cached.
    pub fn new(config: ServiceConfig, capacity: usize) -> Services {
        Services {
            router: String::new(),
            config,
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Label the services' metrics with `router`.
    pub fn for_router(mut self, router: &str) -> Services {
        self.router = router.to_string();
        self
    }

    /// The router's `service:` config.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The service of logical name `name`.
    pub fn get(&self, name: &Path) -> Arc<Service> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        if map.len() >= self.capacity {
            map.retain(|_, s| Arc::strong_count(s) > 1);
            if map.len() >= self.capacity
                && let Some(k) = map.keys().next().cloned()
            {
                map.remove(&k);
            }
        }
        let s = Arc::new(Service::in_router(
            &self.router,
            name.clone(),
            self.config.resolve(name),
        ));
        map.insert(name.clone(), s.clone());
        s
    }

    /// Admin view: each cached service's parameters and counters.
    pub fn json(&self) -> serde_json::Value {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for (name, s) in map.iter() {
            out.insert(
                name.to_string(),
                serde_json::json!({
                    "params": serde_json::to_value(&s.params).unwrap_or_default(),
                    "stats": s.stats.json(),
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("config", &self.config)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn services_resolve_once_and_stay_bounded() {
        let s = Services::new(ServiceConfig::default(), 2);
        let a1 = s.get(&"/svc/a".parse().unwrap());
        let a2 = s.get(&"/svc/a".parse().unwrap());
        assert!(Arc::ptr_eq(&a1, &a2));
        drop(a2);
        for n in ["/svc/b", "/svc/c", "/svc/d"] {
            s.get(&n.parse().unwrap());
        }
        let len = s.map.lock().unwrap().len();
        assert!(len <= 2, "{len}");
        // A held service survives eviction.
        assert!(Arc::ptr_eq(&a1, &s.get(&"/svc/a".parse().unwrap())));
    }
}
