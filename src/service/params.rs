//! The `service:` config of a router and the parameters it gives each
//! logical name.
//!
//! `kind: io.l5d.global` applies one set of keys to every name;
//! `kind: io.l5d.static` has `configs: [{prefix, ...}]` whose prefixes match
//! logical names (`/svc/users`, `*` one segment, `{capture}`); every matching
//! entry applies in order, so later ones win key by key.

use std::time::Duration;

use serde::Serialize;

use super::backoff::Backoff;
use super::budget::BudgetConfig;
use super::classify::Classifier;
use crate::config::prefix::PrefixPattern;
use crate::dtab::Path;

/// Default `retryBufferSize.requestBytes` and `.responseBytes`.
pub const DEFAULT_RETRY_BUFFER_BYTES: usize = 16383;
/// Default `classificationTimeoutMs`.
pub const DEFAULT_CLASSIFICATION_TIMEOUT: Duration = Duration::from_millis(100);

/// `retryBufferSize`: how much of a request body is kept so it can be sent
/// again, and how much of a response is held to classify it by its trailers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBufferSize {
    /// `requestBytes` (default 16383).
    pub request_bytes: usize,
    /// `responseBytes` (default 16383).
    pub response_bytes: usize,
}

impl Default for RetryBufferSize {
    fn default() -> RetryBufferSize {
        RetryBufferSize {
            request_bytes: DEFAULT_RETRY_BUFFER_BYTES,
            response_bytes: DEFAULT_RETRY_BUFFER_BYTES,
        }
    }
}

/// `retries:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Retries {
    /// `budget`, when given (its missing keys take the defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// `backoff`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// The keys one `service` entry sets; unset keys leave earlier values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOverrides {
    /// `responseClassifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_classifier: Option<Classifier>,
    /// `retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// `totalTimeoutMs`.
    #[serde(
        rename = "totalTimeoutMs",
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_ms"
    )]
    pub total_timeout: Option<Duration>,
    /// `retryBufferSize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_buffer_size: Option<RetryBufferSize>,
    /// `classificationTimeoutMs`: how long to wait for a gRPC response's
    /// trailers before it is classified (and possibly retried).
    #[serde(
        rename = "classificationTimeoutMs",
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_ms"
    )]
    pub classification_timeout: Option<Duration>,
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// One `configs[]` entry of `io.l5d.static` (or the whole `io.l5d.global`,
/// with prefix `/`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceRule {
    /// `prefix`.
    pub prefix: PrefixPattern,
    /// The keys it sets.
    #[serde(flatten)]
    pub overrides: ServiceOverrides,
}

/// A router's `service:`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum ServiceConfig {
    /// `io.l5d.global` (the default): the same keys for every name.
    #[serde(rename = "io.l5d.global")]
    Global(ServiceOverrides),
    /// `io.l5d.static`: per-prefix entries, later ones winning.
    #[serde(rename = "io.l5d.static")]
    Static {
        /// `configs`.
        configs: Vec<ServiceRule>,
    },
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig::global(ServiceOverrides::default())
    }
}

impl ServiceConfig {
    /// `kind: io.l5d.global` with these keys.
    pub fn global(o: ServiceOverrides) -> ServiceConfig {
        ServiceConfig::Global(o)
    }

    /// The parameters of `name`: defaults, then every matching entry in order.
    pub fn resolve(&self, name: &Path) -> ServiceParams {
        let mut p = ServiceParams::default();
        match self {
            ServiceConfig::Global(o) => p.apply(o),
            ServiceConfig::Static { configs } => {
                for rule in configs {
                    if rule.prefix.matches(name).is_some() {
                        p.apply(&rule.overrides);
                    }
                }
            }
        }
        p
    }
}

/// The effective parameters of one logical name.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceParams {
    /// `responseClassifier`.
    pub response_classifier: Classifier,
    /// `retries.budget`.
    pub budget: BudgetConfig,
    /// `retries.backoff`.
    pub backoff: Backoff,
    /// `totalTimeoutMs`.
    #[serde(rename = "totalTimeoutMs", serialize_with = "ser_opt_ms")]
    pub total_timeout: Option<Duration>,
    /// `retryBufferSize`.
    pub retry_buffer_size: RetryBufferSize,
    /// `classificationTimeoutMs`.
    #[serde(skip)]
    pub classification_timeout: Duration,
}

impl Default for ServiceParams {
    fn default() -> ServiceParams {
        ServiceParams {
            response_classifier: Classifier::default(),
            budget: BudgetConfig::default(),
            backoff: Backoff::default(),
            total_timeout: None,
            retry_buffer_size: RetryBufferSize::default(),
            classification_timeout: DEFAULT_CLASSIFICATION_TIMEOUT,
        }
    }
}

impl ServiceParams {
    fn apply(&mut self, o: &ServiceOverrides) {
        if let Some(c) = &o.response_classifier {
            self.response_classifier = c.clone();
        }
        if let Some(r) = &o.retries {
            if let Some(b) = r.budget {
                self.budget = b;
            }
            if let Some(b) = r.backoff {
                self.backoff = b;
            }
        }
        if let Some(t) = o.total_timeout {
            self.total_timeout = Some(t);
        }
        if let Some(r) = o.retry_buffer_size {
            self.retry_buffer_size = r;
        }
        if let Some(t) = o.classification_timeout {
            self.classification_timeout = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, o: ServiceOverrides) -> ServiceRule {
        ServiceRule {
            prefix: prefix.parse().unwrap(),
            overrides: o,
        }
    }

    #[test]
    fn static_entries_merge_in_order() {
        let cfg = ServiceConfig::Static {
            configs: vec![
                rule(
                    "/svc",
                    ServiceOverrides {
                        response_classifier: Some(Classifier::RetryableRead5XX),
                        total_timeout: Some(Duration::from_secs(1)),
                        ..Default::default()
                    },
                ),
                rule(
                    "/svc/{name}/v2",
                    ServiceOverrides {
                        total_timeout: Some(Duration::from_millis(50)),
                        ..Default::default()
                    },
                ),
                rule(
                    "/svc/users",
                    ServiceOverrides {
                        response_classifier: Some(Classifier::RetryableAll5XX),
                        ..Default::default()
                    },
                ),
            ],
        };
        let users = cfg.resolve(&"/svc/users".parse().unwrap());
        assert_eq!(users.response_classifier, Classifier::RetryableAll5XX);
        assert_eq!(users.total_timeout, Some(Duration::from_secs(1)));
        let v2 = cfg.resolve(&"/svc/web/v2".parse().unwrap());
        assert_eq!(v2.response_classifier, Classifier::RetryableRead5XX);
        assert_eq!(v2.total_timeout, Some(Duration::from_millis(50)));
        let other = cfg.resolve(&"/other".parse().unwrap());
        assert_eq!(other, ServiceParams::default());
    }
}
