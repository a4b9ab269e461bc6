//! The typed config: what a Linkerd 1 file says, with Linkerd 1's defaults
//! filled in and values in the types the proxy uses (`SocketAddr`,
//! `Duration`, `Path`, `Dtab`).
//!
//! `Serialize` gives the admin's `/config.json`, with Linkerd's key names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::dtab::{Dtab, Path};
pub use crate::tls::{ClientTlsSettings, ServerTlsSettings, TlsVersion};

pub use crate::client::{
    Backoff, Budget, ClientConfig, ClientPrefix, ClientSettings, FailureAccrual, LoadBalancer,
    PoolParams, StaticClient,
};
/// The runtime types double as the config's: what the file says is what runs.
pub use crate::routing::{Identifier, Protocol};
pub use crate::service::ServiceConfig;

/// A whole config file.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The admin server.
    pub admin: Admin,
    /// Service discovery namers, addressed in dtabs as `/#/<prefix>`.
    pub namers: Vec<Namer>,
    /// The routers, in file order (at least one).
    pub routers: Vec<Router>,
    /// `telemetry:` (metrics exposition, tracing, recent requests).
    pub telemetry: Vec<Telemeter>,
    /// Where the config came from (a file name, `<stdin>`, `<default config>`),
    /// for messages.
    #[serde(skip)]
    pub source: String,
}

impl Config {
    /// The router with this label.
    pub fn router(&self, label: &str) -> Option<&Router> {
        self.routers.iter().find(|r| r.label == label)
    }
}

/// `admin:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Admin {
    /// `ip` + `port`; default 127.0.0.1:9990.
    #[serde(flatten, serialize_with = "ser_ip_port")]
    pub addr: SocketAddr,
    /// `shutdownGraceMs`; default 10 s.
    #[serde(rename = "shutdownGraceMs", serialize_with = "ser_ms")]
    pub shutdown_grace: Duration,
    /// `tls`: serve the admin endpoints over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
}

/// Default admin address, as Linkerd 1: loopback, port 9990.
pub const DEFAULT_ADMIN_PORT: u16 = 9990;
/// Default `shutdownGraceMs`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for Admin {
    fn default() -> Admin {
        Admin {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_ADMIN_PORT),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tls: None,
        }
    }
}

/// An entry of `namers:`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind")]
pub enum Namer {
    /// `io.l5d.fs`: one file per service under a directory.
    #[serde(rename = "io.l5d.fs")]
    Fs(FsNamer),
}

impl Namer {
    /// The prefix the namer is addressed by, `/#` excluded (`/io.l5d.fs`).
    pub fn prefix(&self) -> &Path {
        match self {
            Namer::Fs(n) => &n.prefix,
        }
    }

    /// The `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Namer::Fs(_) => "io.l5d.fs",
        }
    }
}

/// `kind: io.l5d.fs`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsNamer {
    /// `prefix`; default `/io.l5d.fs`.
    pub prefix: Path,
    /// `rootDir`, relative to the working directory as in Linkerd.
    pub root_dir: PathBuf,
}

/// An entry of `routers:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    /// `protocol`.
    pub protocol: Protocol,
    /// `label`; default the protocol name.
    pub label: String,
    /// `dtab`, parsed; empty by default.
    #[serde(serialize_with = "ser_display")]
    pub dtab: Dtab,
    /// `dstPrefix`; default `/svc`.
    pub dst_prefix: Path,
    /// `identifier` (one or a list), tried in order; never empty.
    #[serde(rename = "identifier")]
    pub identifiers: Vec<Identifier>,
    /// `interpreter`; default `default`.
    pub interpreter: Interpreter,
    /// `bindingTimeoutMs`; default 10 s.
    #[serde(rename = "bindingTimeoutMs", serialize_with = "ser_ms")]
    pub binding_timeout: Duration,
    /// `bindingCache`.
    pub binding_cache: BindingCache,
    /// `servers` (at least one).
    pub servers: Vec<Server>,
    /// `client`.
    pub client: Client,
    /// `service`: retries, classifier, timeouts per logical name.
    pub service: ServiceConfig,
    /// `maxCallDepth`: Via hops before a request is refused (http 1000, h2 10).
    pub max_call_depth: u32,
    /// `httpAccessLog` (`h2AccessLog` for h2): the access log file, if any.
    #[serde(rename = "httpAccessLog", skip_serializing_if = "Option::is_none")]
    pub access_log: Option<PathBuf>,
}

/// An entry of `telemetry:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Telemeter {
    /// `io.l5d.prometheus`: the text exposition on the admin server.
    #[serde(rename = "io.l5d.prometheus")]
    Prometheus {
        /// `path`; default `/admin/metrics/prometheus`.
        path: String,
        /// `prefix` prepended to metric names; default none.
        prefix: String,
    },
    /// `io.l5d.zipkin`: spans to a Zipkin v2 HTTP collector.
    #[serde(rename = "io.l5d.zipkin", rename_all = "camelCase")]
    Zipkin {
        /// `host`; default `localhost`.
        host: String,
        /// `port`; default 9411 (the HTTP collector's; Linkerd's 9410 was Scribe).
        port: u16,
        /// `sampleRate`; default 0.001.
        sample_rate: f64,
    },
    /// `io.l5d.recentRequests`: `/requests`.
    #[serde(rename = "io.l5d.recentRequests", rename_all = "camelCase")]
    RecentRequests {
        /// `sampleRate` (required).
        sample_rate: f64,
        /// `capacity`; default 10.
        capacity: usize,
    },
}

/// Default `dstPrefix`.
pub const DEFAULT_DST_PREFIX: &str = "/svc";
/// Default `bindingTimeoutMs`.
pub const DEFAULT_BINDING_TIMEOUT: Duration = Duration::from_secs(10);

/// `interpreter:`: where the base dtab comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Interpreter {
    /// `default`: the router's `dtab` and the configured namers.
    #[serde(rename = "default")]
    Default,
    /// `io.l5d.fs {dtabFile}`: the dtab is read from a file, watched.
    #[serde(rename = "io.l5d.fs", rename_all = "camelCase")]
    Fs {
        /// `dtabFile`, relative to the working directory as in Linkerd.
        dtab_file: PathBuf,
    },
}

/// `bindingCache:` sizes and idle expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingCache {
    /// `paths`; default 1000.
    pub paths: usize,
    /// `trees`; default 1000.
    pub trees: usize,
    /// `bounds`; default 1000.
    pub bounds: usize,
    /// `clients`; default 1000.
    pub clients: usize,
    /// `idleTtlSecs`; default 600 s.
    #[serde(rename = "idleTtlSecs", serialize_with = "ser_secs")]
    pub idle_ttl: Duration,
}

impl Default for BindingCache {
    fn default() -> BindingCache {
        BindingCache {
            paths: 1000,
            trees: 1000,
            bounds: 1000,
            clients: 1000,
            idle_ttl: Duration::from_secs(600),
        }
    }
}

/// An entry of a router's `servers:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// `ip` + `port`; default loopback and the protocol's port.
    #[serde(flatten, serialize_with = "ser_ip_port")]
    pub addr: SocketAddr,
    /// `maxConcurrentRequests`; unlimited when `None`.
    pub max_concurrent_requests: Option<u32>,
    /// `clearContext`: strip `l5d-*` headers from inbound requests; default false.
    pub clear_context: bool,
    /// `tls`: terminate TLS on this server (absent, or `enabled: false`: plaintext).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
}

/// A router's `client:`; `kind: io.l5d.global` (the default) or
/// `io.l5d.static` with `configs` by bound-name prefix.
pub type Client = ClientConfig;

fn ser_display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An address as Linkerd writes it: `ip` and `port` keys.
fn ser_ip_port<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry("ip", &a.ip().to_string())?;
    m.serialize_entry("port", &a.port())?;
    m.end()
}

fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The file as written: the supported keys only, every one optional where
/// Linkerd has a default. The schema walk has already refused anything
/// else, so `deny_unknown_fields` here is only a guard against the tables
/// and these types drifting apart.
pub(crate) mod raw {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub admin: Option<Admin>,
        pub namers: Option<Vec<Namer>>,
        pub routers: Vec<Router>,
        #[allow(dead_code)]
        pub usage: Option<serde_json::Value>,
        pub telemetry: Option<Vec<Telemeter>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Telemeter {
        #[serde(rename = "io.l5d.prometheus")]
        Prometheus {
            path: Option<String>,
            prefix: Option<String>,
        },
        #[serde(rename = "io.l5d.zipkin", rename_all = "camelCase")]
        Zipkin {
            host: Option<String>,
            port: Option<u16>,
            sample_rate: Option<serde_json::Value>,
        },
        #[serde(rename = "io.l5d.recentRequests", rename_all = "camelCase")]
        RecentRequests {
            sample_rate: serde_json::Value,
            capacity: Option<usize>,
        },
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Admin {
        pub ip: Option<String>,
        pub port: Option<u16>,
        pub shutdown_grace_ms: Option<u64>,
        pub tls: Option<ServerTls>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Namer {
        #[serde(rename = "io.l5d.fs", rename_all = "camelCase")]
        Fs {
            prefix: Option<String>,
            root_dir: String,
            #[allow(dead_code)]
            experimental: Option<bool>,
        },
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Router {
        pub protocol: Protocol,
        pub label: Option<String>,
        pub dtab: Option<String>,
        pub dst_prefix: Option<String>,
        pub identifier: Option<Vec<Identifier>>,
        pub interpreter: Option<Interpreter>,
        pub binding_timeout_ms: Option<u64>,
        pub binding_cache: Option<BindingCache>,
        pub servers: Vec<Server>,
        pub client: Option<Client>,
        pub service: Option<Service>,
        pub max_call_depth: Option<u32>,
        #[allow(dead_code)]
        pub experimental: Option<bool>,
        pub http_access_log: Option<String>,
        pub h2_access_log: Option<String>,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    pub enum Protocol {
        #[serde(rename = "http")]
        Http,
        #[serde(rename = "h2")]
        H2,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Identifier {
        #[serde(rename = "io.l5d.header.token")]
        HeaderToken { header: Option<String> },
        #[serde(rename = "io.l5d.methodAndHost", rename_all = "camelCase")]
        MethodAndHost { http_uri_in_dst: Option<bool> },
        #[serde(rename = "io.l5d.path")]
        Path {
            segments: Option<usize>,
            consume: Option<bool>,
        },
        #[serde(rename = "io.l5d.header")]
        Header { header: Option<String> },
        #[serde(rename = "io.l5d.static")]
        Static { path: String },
        #[serde(rename = "io.l5d.header.path")]
        HeaderPath {
            header: Option<String>,
            segments: Option<usize>,
        },
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Interpreter {
        #[serde(rename = "default")]
        Default {},
        #[serde(rename = "io.l5d.fs", rename_all = "camelCase")]
        Fs { dtab_file: String },
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct BindingCache {
        pub paths: Option<usize>,
        pub trees: Option<usize>,
        pub bounds: Option<usize>,
        pub clients: Option<usize>,
        pub idle_ttl_secs: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Server {
        pub ip: Option<String>,
        pub port: Option<u16>,
        pub max_concurrent_requests: Option<u32>,
        pub clear_context: Option<bool>,
        pub tls: Option<ServerTls>,
        /// h2 only (the schema walk refuses it on http servers).
        pub max_call_depth: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ServerTls {
        pub enabled: Option<bool>,
        pub cert_path: String,
        pub key_path: String,
        pub intermediate_certs_path: Option<String>,
        pub ca_cert_path: Option<String>,
        pub require_client_auth: Option<bool>,
        pub protocols: Option<Vec<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Client {
        #[serde(rename = "io.l5d.global")]
        Global(crate::client::ClientSettings),
        #[serde(rename = "io.l5d.static")]
        Static { configs: Vec<StaticClient> },
    }

    #[derive(Debug, Deserialize)]
    pub struct StaticClient {
        pub prefix: String,
        #[serde(flatten)]
        pub settings: crate::client::ClientSettings,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Service {
        #[serde(rename = "io.l5d.global")]
        Global(ServiceKeys),
        #[serde(rename = "io.l5d.static")]
        Static { configs: Vec<ServiceEntry> },
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceKeys {
        pub response_classifier: Option<ResponseClassifier>,
        pub retries: Option<ServiceRetries>,
        pub total_timeout_ms: Option<u64>,
        pub retry_buffer_size: Option<RetryBufferSize>,
        pub classification_timeout_ms: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ServiceEntry {
        pub prefix: String,
        #[serde(flatten)]
        pub keys: ServiceKeys,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ResponseClassifier {
        pub kind: String,
        pub retryable_status_codes: Option<Vec<u32>>,
        pub success_status_codes: Option<Vec<u32>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ServiceRetries {
        pub budget: Option<RetryBudget>,
        pub backoff: Option<RetryBackoff>,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct RetryBudget {
        pub min_retries_per_sec: Option<u32>,
        pub percent_can_retry: Option<f64>,
        pub ttl_secs: Option<u64>,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(tag = "kind")]
    pub enum RetryBackoff {
        #[serde(rename = "constant")]
        Constant { ms: Option<u64> },
        #[serde(rename = "jittered", rename_all = "camelCase")]
        Jittered { min_ms: u64, max_ms: u64 },
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct RetryBufferSize {
        pub request_bytes: Option<usize>,
        pub response_bytes: Option<usize>,
    }
}
