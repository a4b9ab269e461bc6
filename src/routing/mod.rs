//! The request → client decision: identifiers, cached bindings, endpoint choice.
//!
//! A [`Router`] owns one Linkerd 1 router's runtime state: its parameters,
//! the binder it asks for bound trees, a cache of bindings keyed by
//! (local dtab, logical name) and a cache of clients keyed by bound name.
//! The proxy asks it, per request, for the client to call; the admin server
//! asks it for its cached state.
//!
//! The router never depends on the config types: the integrator builds a
//! [`RouterParams`] from the config and an implementation of [`Binder`]
//! (the naming `Interpreter`) and hands both to [`Router::new`].

mod cache;
mod identify;
mod router;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::ClientConfig;
use crate::dtab::{Dtab, NameTree, Path};
use crate::naming::{Activity, Bound};

/// The client of one bound name lives in [`crate::client`]; routing hands it out.
pub use crate::client::{Client as BoundClient, EndpointSet, EndpointState, Outstanding};
pub use identify::{Identified, Identifier, Unidentified, identify, strip_segments};
pub use router::{Destination, Route, RouteError, Router, Target};

/// The protocol a router speaks, which sets its server and client flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    /// `protocol: http`: HTTP/1.x and h2c prior knowledge in; HTTP/1.1 out.
    #[serde(rename = "http")]
    Http,
    /// `protocol: h2`: HTTP/2 (h2c prior knowledge) in and out, trailers kept (gRPC).
    #[serde(rename = "h2")]
    H2,
}

impl Protocol {
    /// Linkerd's name for it (and the default router label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::H2 => "h2",
        }
    }

    /// Linkerd's default server port for the protocol.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Http => 4140,
            Protocol::H2 => 4142,
        }
    }

    /// Default `maxCallDepth` (Via hops before a request is refused).
    pub fn default_max_call_depth(self) -> u32 {
        match self {
            Protocol::Http => 1000,
            Protocol::H2 => 10,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a router needs at runtime, built by the integrator from the config.
#[derive(Clone, Debug)]
pub struct RouterParams {
    /// `label` (default: the protocol name); names the router in admin views.
    pub label: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// `dstPrefix` (default `/svc`).
    pub dst_prefix: Path,
    /// `identifier`, tried in order.
    pub identifiers: Vec<Identifier>,
    /// `bindingTimeoutMs` (default 10 s): how long a request waits for a
    /// pending name or endpoint set before failing with 503.
    pub binding_timeout: Duration,
    /// `maxCallDepth` (http 1000, h2 10): more `Via` entries than this is a loop.
    pub max_call_depth: usize,
    /// A default attempt timeout for clients whose config sets no
    /// `requestAttemptTimeoutMs`.
    pub request_timeout: Option<Duration>,
    /// `client`: the parameters of each bound name's client.
    pub client: ClientConfig,
    /// `bindingCache.trees`: cached (local dtab, name) bindings (default 1000).
    pub binding_cache_capacity: usize,
    /// `bindingCache.clients`: cached clients per bound name (default 1000);
    /// beyond it, clients no binding refers to are dropped.
    pub client_cache_capacity: usize,
    /// `bindingCache.idleTtlSecs` (default 600 s).
    pub binding_idle_ttl: Duration,
    /// `service`: retries, classifier and timeouts per logical name.
    pub service: crate::service::ServiceConfig,
    /// `client.tls`: which bound clients' endpoints get TLS; `None` for plaintext.
    pub client_tls: Option<std::sync::Arc<crate::tls::ClientTlsRules>>,
}

impl RouterParams {
    /// Linkerd 1's defaults for a router of `protocol`.
    pub fn new(protocol: Protocol) -> RouterParams {
        RouterParams {
            label: protocol.as_str().to_string(),
            protocol,
            dst_prefix: Path::from_strs(&["svc"]).unwrap_or_default(),
            identifiers: vec![Identifier::default_for(protocol)],
            binding_timeout: Duration::from_secs(10),
            max_call_depth: protocol.default_max_call_depth() as usize,
            request_timeout: None,
            client: ClientConfig::default(),
            binding_cache_capacity: 1000,
            client_cache_capacity: 1000,
            binding_idle_ttl: Duration::from_secs(600),
            service: crate::service::ServiceConfig::default(),
            client_tls: None,
        }
    }
}

/// One `routers[].servers` entry, as the proxy needs it.
#[derive(Clone, Debug)]
pub struct ServerParams {
    /// Where to listen (`ip`:`port`); the integrator binds it.
    pub addr: SocketAddr,
    /// `maxConcurrentRequests`: requests beyond this get 503.
    pub max_concurrent_requests: Option<usize>,
    /// `clearContext`: drop inbound `l5d-ctx-*`, `l5d-dtab` and `l5d-sample`.
    pub clear_context: bool,
    /// `tls`: terminate TLS with this (loaded, reloading) config.
    pub tls: Option<crate::tls::ServerTls>,
}

impl ServerParams {
    /// A server on `addr` with Linkerd's defaults.
    pub fn new(addr: SocketAddr) -> ServerParams {
        ServerParams {
            addr,
            max_concurrent_requests: None,
            clear_context: false,
            tls: None,
        }
    }
}

/// What the router binds names with: the naming `Interpreter` in production,
/// an in-memory table in tests.
pub trait Binder: Send + Sync + 'static {
    /// A shared watch of the bound tree of `path` under `base ++ local`.
    fn bind(&self, local: &Dtab, path: &Path) -> watch::Receiver<Activity<NameTree<Bound>>>;

    /// The router's current base dtab, for error messages and the delegator.
    fn base_dtab(&self) -> Dtab {
        Dtab::empty()
    }

    /// The delegation trace of `path` under `base ++ local`, as
    /// `/delegator.json` shows it; `None` when the binder cannot trace.
    fn delegate(&self, local: &Dtab, path: &Path) -> Option<serde_json::Value> {
        let _ = (local, path);
        None
    }

    /// The delegation trace for people, led by its first failing step, for
    /// the body of a "no route" error; `None` when the binder cannot trace.
    fn explain(&self, local: &Dtab, path: &Path) -> Option<String> {
        let _ = (local, path);
        None
    }
}

/// The naming interpreter is the production binder.
impl Binder for crate::naming::Interpreter {
    fn bind(&self, local: &Dtab, path: &Path) -> watch::Receiver<Activity<NameTree<Bound>>> {
        crate::naming::Interpreter::bind(self, local, path)
    }

    fn base_dtab(&self) -> Dtab {
        self.dtab()
    }

    fn delegate(&self, local: &Dtab, path: &Path) -> Option<serde_json::Value> {
        serde_json::to_value(crate::naming::Interpreter::delegate(self, local, path)).ok()
    }

    fn explain(&self, local: &Dtab, path: &Path) -> Option<String> {
        let trace = crate::naming::Interpreter::delegate(self, local, path);
        let first = trace
            .first_failure()
            .map_or_else(|| "none".to_string(), |n| n.step());
        Some(format!(
            "First failing step: {first}\nDelegation trace:\n{}",
            trace.render()
        ))
    }
}
