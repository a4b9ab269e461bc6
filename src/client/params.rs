//! What `client:` configures, as the runtime uses it: load balancer,
//! failure accrual, requeue budget, attempt timeout and connection pool,
//! resolved once per bound name.
//!
//! The types double as the config's (`/config.json` shows them with
//! Linkerd's key names): a router's [`ClientConfig`] is either one
//! [`ClientSettings`] for every client (`io.l5d.global`) or a list of them
//! under prefixes of bound names (`io.l5d.static`), where every matching
//! entry applies in order, key by key, the later winning.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dtab::{Label, Path};
use crate::routing::Protocol;

/// `loadBalancer:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum LoadBalancer {
    /// `p2c`: power of two choices, least outstanding requests.
    #[serde(rename = "p2c", rename_all = "camelCase")]
    P2c {
        /// `maxEffort` (5): picks tried to find an available endpoint.
        #[serde(default = "default_max_effort")]
        max_effort: u32,
    },
    /// `ewma`: power of two choices over peak-EWMA latency × load.
    #[serde(rename = "ewma", rename_all = "camelCase")]
    Ewma {
        /// `maxEffort` (5).
        #[serde(default = "default_max_effort")]
        max_effort: u32,
        /// `decayTimeMs` (10 s): how fast old latencies are forgotten.
        #[serde(rename = "decayTimeMs", with = "ms", default = "default_decay")]
        decay_time: Duration,
    },
    /// `aperture`: p2c within a subset of endpoints sized by load.
    #[serde(rename = "aperture", rename_all = "camelCase")]
    Aperture {
        /// `maxEffort` (5).
        #[serde(default = "default_max_effort")]
        max_effort: u32,
        /// `smoothWindowMs` (5 s): the load average's window.
        #[serde(
            rename = "smoothWindowMs",
            with = "ms",
            default = "default_smooth_window"
        )]
        smooth_window: Duration,
        /// `lowLoad` (0.5): below this load per endpoint the aperture narrows.
        #[serde(default = "default_low_load")]
        low_load: f64,
        /// `highLoad` (2.0): above this load per endpoint it widens.
        #[serde(default = "default_high_load")]
        high_load: f64,
        /// `minAperture` (1).
        #[serde(default = "default_min_aperture")]
        min_aperture: u32,
    },
    /// `heap`: the least loaded endpoint.
    #[serde(rename = "heap")]
    Heap {},
    /// `roundRobin`: each endpoint in turn, in proportion to its weight.
    #[serde(rename = "roundRobin", rename_all = "camelCase")]
    RoundRobin {
        /// `maxEffort` (5).
        #[serde(default = "default_max_effort")]
        max_effort: u32,
    },
}

fn default_max_effort() -> u32 {
    5
}
fn default_decay() -> Duration {
    Duration::from_secs(10)
}
fn default_smooth_window() -> Duration {
    Duration::from_secs(5)
}
fn default_low_load() -> f64 {
    0.5
}
fn default_high_load() -> f64 {
    2.0
}
fn default_min_aperture() -> u32 {
    1
}

impl Default for LoadBalancer {
    fn default() -> LoadBalancer {
        LoadBalancer::P2c {
            max_effort: default_max_effort(),
        }
    }
}

impl LoadBalancer {
    /// `maxEffort` (the heap balancer always finds the least loaded: 1).
    pub fn max_effort(&self) -> u32 {
        match *self {
            LoadBalancer::P2c { max_effort }
            | LoadBalancer::Ewma { max_effort, .. }
            | LoadBalancer::Aperture { max_effort, .. }
            | LoadBalancer::RoundRobin { max_effort } => max_effort.max(1),
            LoadBalancer::Heap {} => 1,
        }
    }

    /// The `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadBalancer::P2c { .. } => "p2c",
            LoadBalancer::Ewma { .. } => "ewma",
            LoadBalancer::Aperture { .. } => "aperture",
            LoadBalancer::Heap {} => "heap",
            LoadBalancer::RoundRobin { .. } => "roundRobin",
        }
    }
}

/// A backoff schedule (`backoff:` of failure accrual).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Backoff {
    /// `constant {ms}`: always the same wait.
    #[serde(rename = "constant")]
    Constant {
        /// `ms` (0).
        #[serde(with = "ms", default)]
        ms: Duration,
    },
    /// `jittered {minMs, maxMs}`: decorrelated jitter between the bounds.
    #[serde(rename = "jittered")]
    Jittered {
        /// `minMs`.
        #[serde(rename = "minMs", with = "ms")]
        min: Duration,
        /// `maxMs`.
        #[serde(rename = "maxMs", with = "ms")]
        max: Duration,
    },
}

impl Default for Backoff {
    /// Linkerd's failure accrual default: jittered 5 s .. 300 s.
    fn default() -> Backoff {
        Backoff::Jittered {
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

/// `failureAccrual:`: when an endpoint is taken out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum FailureAccrual {
    /// `io.l5d.consecutiveFailures {failures}`.
    #[serde(rename = "io.l5d.consecutiveFailures")]
    ConsecutiveFailures {
        /// `failures`: how many in a row eject the endpoint.
        failures: u32,
        /// `backoff` (jittered 5 s .. 300 s).
        #[serde(default)]
        backoff: Backoff,
    },
    /// `io.l5d.successRate {successRate, requests}`: the success rate over
    /// about the last `requests` responses falls below `successRate`.
    #[serde(rename = "io.l5d.successRate", rename_all = "camelCase")]
    SuccessRate {
        /// `successRate` (0..1).
        success_rate: f64,
        /// `requests`.
        requests: u32,
        /// `backoff`.
        #[serde(default)]
        backoff: Backoff,
    },
    /// `io.l5d.successRateWindowed {successRate, window}`: the same over the
    /// last `window` seconds.
    #[serde(rename = "io.l5d.successRateWindowed", rename_all = "camelCase")]
    SuccessRateWindowed {
        /// `successRate` (0..1).
        success_rate: f64,
        /// `window` (seconds).
        #[serde(with = "secs")]
        window: Duration,
        /// `backoff`.
        #[serde(default)]
        backoff: Backoff,
    },
    /// `none`: endpoints are never ejected.
    #[serde(rename = "none")]
    None {},
}

impl Default for FailureAccrual {
    /// Linkerd's default: 5 consecutive failures, jittered 5 s .. 300 s.
    fn default() -> FailureAccrual {
        FailureAccrual::ConsecutiveFailures {
            failures: 5,
            backoff: Backoff::default(),
        }
    }
}

impl FailureAccrual {
    /// The backoff between probes of an ejected endpoint.
    pub fn backoff(&self) -> Backoff {
        match *self {
            FailureAccrual::ConsecutiveFailures { backoff, .. }
            | FailureAccrual::SuccessRate { backoff, .. }
            | FailureAccrual::SuccessRateWindowed { backoff, .. } => backoff,
            FailureAccrual::None {} => Backoff::default(),
        }
    }
}

/// A retry budget (`requeueBudget:`; Finagle's `RetryBudget`): the same
/// config as a service's `retries.budget`.
pub use crate::service::budget::BudgetConfig as Budget;

/// `hostConnectionPool:`, per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolParams {
    /// `minSize` (0): HTTP/1.1 connections kept open per endpoint whatever
    /// `idleTimeMs` says: opened when the endpoint joins the set, opened
    /// again when some close, taken first when a request needs a new one.
    /// (An h2 client keeps one multiplexed connection per endpoint and
    /// ignores it.)
    pub min_size: Option<u32>,
    /// `maxSize` (unbounded): requests in flight to one endpoint (one
    /// connection each for HTTP/1.1); more wait.
    pub max_size: Option<u32>,
    /// `idleTimeMs` (forever): idle connections are closed after this.
    #[serde(rename = "idleTimeMs", with = "opt_ms", default)]
    pub idle_time: Option<Duration>,
    /// `maxWaiters` (unbounded): requests waiting for a connection; more
    /// fail at once with 503.
    pub max_waiters: Option<u32>,
}

/// The keys one `client:` entry sets; unset keys leave earlier ones (or the
/// defaults) alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    /// `loadBalancer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// `failureAccrual`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_accrual: Option<FailureAccrual>,
    /// `requeueBudget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requeue_budget: Option<Budget>,
    /// `requestAttemptTimeoutMs`.
    #[serde(
        rename = "requestAttemptTimeoutMs",
        with = "opt_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_attempt_timeout: Option<Duration>,
    /// `hostConnectionPool`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_connection_pool: Option<PoolParams>,
    /// `tls`: loaded and resolved per bound name by the router's
    /// `tls::ClientTlsRules` (the last matching entry with `tls` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<crate::tls::ClientTlsSettings>>,
}

impl ClientSettings {
    /// Apply `self` over `params`, key by key.
    pub fn apply(&self, params: &mut ClientParams) {
        if let Some(lb) = self.load_balancer {
            params.load_balancer = lb;
        }
        if let Some(fa) = self.failure_accrual {
            params.failure_accrual = fa;
        }
        if let Some(b) = self.requeue_budget {
            params.requeue_budget = b;
        }
        if let Some(t) = self.request_attempt_timeout {
            params.request_attempt_timeout = Some(t);
        }
        if let Some(p) = self.host_connection_pool {
            params.host_connection_pool = p;
        }
    }
}

/// One element of a client prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixElem {
    /// A label that must match exactly.
    Label(Label),
    /// `*`: any one element.
    Any,
    /// `{name}`: any one element, captured as `name`.
    Capture(String),
}

/// A prefix of bound (client) names, as `io.l5d.static` client configs
/// write it: `/#/io.l5d.fs/{service}`, `/$/inet/*/8080`. The default, `/`,
/// matches every name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientPrefix(Vec<PrefixElem>);

/// Why a client prefix does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a path starting with '/' such as /#/io.l5d.fs/{{service}}, found '{0}'")]
pub struct PrefixError(String);

impl FromStr for ClientPrefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<ClientPrefix, PrefixError> {
        let bad = || PrefixError(s.to_string());
        let rest = s.strip_prefix('/').ok_or_else(bad)?;
        let mut elems = Vec::new();
        if rest.is_empty() {
            return Ok(ClientPrefix(elems));
        }
        for seg in rest.split('/') {
            let e = if seg == "*" {
                PrefixElem::Any
            } else if let Some(name) = seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(bad());
                }
                PrefixElem::Capture(name.to_string())
            } else {
                // One element as a dtab path writes it (escapes included).
                let p: Path = format!("/{seg}").parse().map_err(|_| bad())?;
                match p.elems() {
                    [l] => PrefixElem::Label(l.clone()),
                    _ => return Err(bad()),
                }
            };
            elems.push(e);
        }
        Ok(ClientPrefix(elems))
    }
}

impl fmt::Display for ClientPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for e in &self.0 {
            match e {
                PrefixElem::Label(l) => write!(f, "/{l}")?,
                PrefixElem::Any => f.write_str("/*")?,
                PrefixElem::Capture(n) => write!(f, "/{{{n}}}")?,
            }
        }
        Ok(())
    }
}

impl ClientPrefix {
    /// The captured variables when `path` starts with this prefix.
    pub fn captures(&self, path: &Path) -> Option<Vec<(String, String)>> {
        let elems = path.elems();
        if elems.len() < self.0.len() {
            return None;
        }
        let mut caps = Vec::new();
        for (p, l) in self.0.iter().zip(elems) {
            match p {
                PrefixElem::Label(x) if x != l => return None,
                PrefixElem::Label(_) | PrefixElem::Any => {}
                PrefixElem::Capture(n) => caps.push((n.clone(), l.to_string())),
            }
        }
        Some(caps)
    }

    /// Whether `path` starts with this prefix.
    pub fn matches(&self, path: &Path) -> bool {
        self.captures(path).is_some()
    }
}

impl Serialize for ClientPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One `io.l5d.static` entry: a prefix and the keys it sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaticClient {
    /// `prefix`, matched against bound names.
    pub prefix: ClientPrefix,
    /// The keys.
    #[serde(flatten)]
    pub settings: ClientSettings,
}

/// A router's `client:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum ClientConfig {
    /// `io.l5d.global` (or no `kind`): one config for every client.
    #[serde(rename = "io.l5d.global")]
    Global(ClientSettings),
    /// `io.l5d.static {configs}`: configs by bound-name prefix.
    #[serde(rename = "io.l5d.static")]
    Static {
        /// `configs`, in file order.
        configs: Vec<StaticClient>,
    },
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig::Global(ClientSettings::default())
    }
}

impl ClientConfig {
    /// The parameters of the client for the bound name `id`: the defaults,
    /// then every matching entry in order.
    pub fn resolve(&self, protocol: Protocol, id: &Path) -> ClientParams {
        let mut p = ClientParams::new(protocol);
        match self {
            ClientConfig::Global(s) => s.apply(&mut p),
            ClientConfig::Static { configs } => {
                for c in configs.iter().filter(|c| c.prefix.matches(id)) {
                    c.settings.apply(&mut p);
                }
            }
        }
        p
    }

    /// The load balancer of the global config (for a quick look).
    pub fn global(&self) -> Option<&ClientSettings> {
        match self {
            ClientConfig::Global(s) => Some(s),
            ClientConfig::Static { .. } => None,
        }
    }
}

/// What a client needs to know, resolved once per bound name.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientParams {
    /// The label of the router the client belongs to (for metrics and logs).
    pub router: String,
    /// The router's protocol: the upstream flavour (HTTP/1.1 or h2c).
    pub protocol: Protocol,
    /// `loadBalancer`.
    pub load_balancer: LoadBalancer,
    /// `failureAccrual`.
    pub failure_accrual: FailureAccrual,
    /// `requeueBudget`.
    pub requeue_budget: Budget,
    /// `requestAttemptTimeoutMs`: time allowed for each attempt's response headers.
    pub request_attempt_timeout: Option<Duration>,
    /// `hostConnectionPool`.
    pub host_connection_pool: PoolParams,
    /// `tls`: originate TLS to the endpoints with this config and name
    /// (resolved per bound name from the router's client TLS rules).
    pub tls: Option<crate::tls::client::UpstreamTls>,
}

impl ClientParams {
    /// Linkerd 1's defaults for a client of `protocol`.
    pub fn new(protocol: Protocol) -> ClientParams {
        ClientParams {
            router: protocol.as_str().to_string(),
            protocol,
            load_balancer: LoadBalancer::default(),
            failure_accrual: FailureAccrual::default(),
            requeue_budget: Budget::default(),
            request_attempt_timeout: None,
            host_connection_pool: PoolParams::default(),
            tls: None,
        }
    }
}

/// Durations written as milliseconds.
mod ms {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Optional durations written as milliseconds.
mod opt_ms {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

/// Durations written as seconds.
mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_match_bound_names_with_wildcards_and_captures() {
        let pre: ClientPrefix = "/#/io.l5d.fs/{service}".parse().unwrap();
        assert_eq!(pre.to_string(), "/#/io.l5d.fs/{service}");
        assert_eq!(
            pre.captures(&p("/#/io.l5d.fs/web")),
            Some(vec![("service".to_string(), "web".to_string())])
        );
        assert!(!pre.matches(&p("/#/io.l5d.fs")));
        assert!(!pre.matches(&p("/#/other/web")));
        let any: ClientPrefix = "/$/inet/*/8080".parse().unwrap();
        assert!(any.matches(&p("/$/inet/127.0.0.1/8080")));
        assert!(!any.matches(&p("/$/inet/127.0.0.1/8081")));
        assert!("/".parse::<ClientPrefix>().unwrap().matches(&p("/a")));
        assert!("web".parse::<ClientPrefix>().is_err());
        assert!("/{}".parse::<ClientPrefix>().is_err());
    }

    #[test]
    fn every_matching_static_entry_applies_key_by_key_later_wins() {
        let entry = |prefix: &str, s: ClientSettings| StaticClient {
            prefix: prefix.parse().unwrap(),
            settings: s,
        };
        let cfg = ClientConfig::Static {
            configs: vec![
                entry(
                    "/",
                    ClientSettings {
                        load_balancer: Some(LoadBalancer::Heap {}),
                        request_attempt_timeout: Some(Duration::from_millis(100)),
                        ..Default::default()
                    },
                ),
                entry(
                    "/#/io.l5d.fs/*",
                    ClientSettings {
                        request_attempt_timeout: Some(Duration::from_millis(200)),
                        ..Default::default()
                    },
                ),
                entry(
                    "/$/inet",
                    ClientSettings {
                        load_balancer: Some(LoadBalancer::RoundRobin { max_effort: 2 }),
                        ..Default::default()
                    },
                ),
            ],
        };
        let fs = cfg.resolve(Protocol::Http, &p("/#/io.l5d.fs/web"));
        assert_eq!(fs.load_balancer, LoadBalancer::Heap {});
        assert_eq!(fs.request_attempt_timeout, Some(Duration::from_millis(200)));
        let inet = cfg.resolve(Protocol::Http, &p("/$/inet/127.0.0.1/1"));
        assert_eq!(
            inet.load_balancer,
            LoadBalancer::RoundRobin { max_effort: 2 }
        );
        assert_eq!(
            inet.request_attempt_timeout,
            Some(Duration::from_millis(100))
        );
        assert_eq!(inet.failure_accrual, FailureAccrual::default());
    }
}
