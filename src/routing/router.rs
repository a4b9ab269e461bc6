//! The router: logical name → cached binding → bound client.
//!
//! Per request the proxy calls [`Router::route`] with the identified name and
//! the request's local dtab. Bindings are cached per (local dtab, name): each
//! holds the binder's watch and a small task that follows it and publishes the
//! bound tree, with its leaves already turned into [`BoundClient`]s, through
//! `arc-swap`. A request therefore does one lock-free map lookup and one
//! atomic load, and allocates nothing; it waits on the watch only while the
//! name is still pending, and at most `bindingTimeout`. What a request to a
//! name or a client always carries (its `l5d-dst-*` header values, its
//! service policy) is made once with the binding or the client.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use rand::Rng;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::Protocol;
use super::cache::{Map, ReadMap};
use super::identify::{Identifiers, Named, View};
use super::{Binder, Identified, RouterParams, Unidentified};
use super::{BoundClient, EndpointSet};
use crate::client::{ClientConfig, ClientParams};
use crate::dtab::{Dtab, NameTree, Path};
use crate::naming::{Activity, Bound};
use crate::proxy::headers::RequestLines;
use crate::service::Service;
use crate::telemetry::metrics::RouteSlot;

/// A bound tree whose leaves are ready-made clients.
type ClientTree = Activity<NameTree<Arc<Target>>>;

/// A header value for text the proxy produced (paths show as ASCII); `None`
/// if it somehow is not a valid value, and then the header is left out.
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// A bound client with the `l5d-dst-client` and `l5d-dst-residual` values
/// every request to it carries, made once with the client.
#[derive(Debug)]
pub struct Target {
    client: Arc<BoundClient>,
    dst_client: Option<HeaderValue>,
    dst_residual: Option<HeaderValue>,
}

impl Target {
    /// The client and its header values.
    pub fn new(client: Arc<BoundClient>) -> Target {
        Target {
            dst_client: header_value(&client.id().to_string()),
            dst_residual: header_value(&client.residual().to_string()),
            client,
        }
    }

    /// The client.
    pub fn client(&self) -> &Arc<BoundClient> {
        &self.client
    }

    /// `l5d-dst-client`: the bound name.
    pub fn dst_client(&self) -> Option<&HeaderValue> {
        self.dst_client.as_ref()
    }

    /// `l5d-dst-residual`: the residual path of the bound name.
    pub fn dst_residual(&self) -> Option<&HeaderValue> {
        self.dst_residual.as_ref()
    }
}

/// What a request to a routable name got: the client and its endpoints.
#[derive(Debug, Clone)]
pub struct Route {
    /// The client (with its header values).
    pub target: Arc<Target>,
    /// Its endpoint set, bound and not empty.
    pub endpoints: Arc<EndpointSet>,
}

/// A logical name under a local dtab, as the router keeps it: the handle
/// of its cached binding. Cheap to clone.
#[derive(Clone)]
pub struct Destination(Arc<Binding>);

impl Destination {
    /// The logical name.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The local dtab it is bound under.
    pub fn local(&self) -> &Dtab {
        &self.0.local
    }

    /// The name's service policy (retries, timeouts, budget).
    pub fn service(&self) -> &Arc<Service> {
        &self.0.service
    }

    /// The binding as telemetry notes it.
    pub fn routed(&self) -> Arc<dyn crate::telemetry::Routed> {
        self.0.clone()
    }

    /// `l5d-dst-service`: the logical name.
    pub fn dst_service(&self) -> Option<&HeaderValue> {
        self.0.dst_service.as_ref()
    }

    /// `l5d-ctx-dtab` for the next hop: the local dtab; `None` when empty.
    pub fn ctx_dtab(&self) -> Option<&HeaderValue> {
        self.0.ctx_dtab.as_ref()
    }
}

/// Why a logical name could not be turned into an endpoint.
#[derive(Debug, Clone)]
pub struct RouteError {
    /// The logical name (`/svc/web`).
    pub dst: Path,
    /// The router's base dtab at the time.
    pub base: Dtab,
    /// The request's local dtab (`l5d-ctx-dtab` ++ `l5d-dtab`).
    pub local: Dtab,
    /// What went wrong.
    pub kind: RouteFailure,
    /// The bound tree the name had (client ids at the leaves), when it bound.
    pub bound: Option<String>,
}

/// The step at which routing failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteFailure {
    /// The name (or, with `Some(client)`, that client's endpoints) stayed
    /// pending for the whole binding timeout.
    BindingTimeout(Duration, Option<Path>),
    /// The dtab has no route for the name (`~`).
    Neg,
    /// The name delegates to a failure (`!`).
    Fail,
    /// The name binds to an empty set (`$`).
    Empty,
    /// Binding failed (a namer error, too deep a delegation).
    BindFailed(Arc<str>),
    /// The bound name does not exist in its namer.
    ClientNeg(Path),
    /// The namer failed to resolve the bound name.
    ClientFailed(Path, Arc<str>),
    /// The bound name has no endpoints.
    NoEndpoints(Path),
}

impl RouteError {
    /// Whether this is a timeout (503) rather than a negative answer (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, RouteFailure::BindingTimeout(..))
    }
}

impl std::error::Error for RouteError {}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dst = &self.dst;
        match &self.kind {
            RouteFailure::BindingTimeout(t, None) => write!(
                f,
                "binding timeout for {dst}: the name did not bind within {}ms",
                t.as_millis()
            )?,
            RouteFailure::BindingTimeout(t, Some(c)) => write!(
                f,
                "binding timeout for {dst}: endpoints of {c} were not resolved within {}ms",
                t.as_millis()
            )?,
            RouteFailure::Neg => write!(
                f,
                "No route for {dst}: it binds to ~ (no dentry or namer leads it to an existing name)"
            )?,
            RouteFailure::Fail => write!(f, "No route for {dst}: it binds to a failure (!)")?,
            RouteFailure::Empty => write!(
                f,
                "No hosts are available for {dst}: it binds to an empty set ($)"
            )?,
            RouteFailure::BindFailed(m) => write!(f, "Binding {dst} failed: {m}")?,
            RouteFailure::ClientNeg(c) => write!(
                f,
                "No hosts are available for {dst}: it binds to {c}, which does not exist"
            )?,
            RouteFailure::ClientFailed(c, m) => write!(
                f,
                "No hosts are available for {dst}: resolving {c} failed: {m}"
            )?,
            RouteFailure::NoEndpoints(c) => write!(
                f,
                "No hosts are available for {dst}: it binds to {c}, which has no endpoints"
            )?,
        }
        write!(
            f,
            ", Dtab.base=[{}], Dtab.local=[{}]",
            self.base, self.local
        )
    }
}

/// One router's routing state; cheap to clone (shared).
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

/// Bindings by (local dtab as text, empty for none; logical name); shared
/// text, so that publishing a new map copies pointers, not strings.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindingKey {
    local: Arc<str>,
    path: Path,
}

/// A binding key as a lookup sees it: borrowed, so that finding a cached
/// binding clones nothing (two atomic counts and their drops a request).
/// Hashes and compares as [`BindingKey`]'s derived impls do: local, then path.
trait KeyView {
    fn local(&self) -> &str;
    fn path(&self) -> &Path;
}

impl KeyView for BindingKey {
    fn local(&self) -> &str {
        &self.local
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

impl KeyView for (&str, &Path) {
    fn local(&self) -> &str {
        self.0
    }
    fn path(&self) -> &Path {
        self.1
    }
}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for BindingKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl std::hash::Hash for dyn KeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.local().hash(state);
        self.path().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        // The empty local dtab (most requests) is compared by length: no
        // call of memcmp for nothing (`Arc<str>`'s own comparison, used
        // before, stopped at the shared pointer).
        let (a, b) = (self.local(), other.local());
        a.len() == b.len() && (a.is_empty() || a == b) && self.path() == other.path()
    }
}

impl Eq for dyn KeyView + '_ {}

/// The key text of the empty local dtab (most requests), made once.
static NO_LOCAL: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

struct Inner {
    params: RouterParams,
    binder: Arc<dyn Binder>,
    identifiers: Identifiers,
    bindings: ReadMap<BindingKey, Arc<Binding>>,
    clients: Arc<ClientCache>,
    services: crate::service::Services,
}

/// A cached binding of (local dtab, name), followed by a task until evicted.
///
/// Laid out in declaration order (`repr(C)`): what every request reads
/// comes first, next to the `Arc`'s counts (64 bytes with them), then the
/// route's metric handles, then what only the admin, errors and requests
/// with routing headers read. With a thousand names in rotation every line
/// of a binding a request touches is a cache miss.
#[repr(C)]
pub(crate) struct Binding {
    last_used: AtomicU64,
    /// Let go by the cache: a remembered link to it is no longer followed.
    evicted: AtomicBool,
    service: Arc<Service>,
    path: Path,
    /// The bound tree as clients, swapped by the task following the binder.
    current: ArcSwap<ClientTree>,
    /// The route's metric handles, for the first server and client to use
    /// the binding: found without a lookup.
    metrics: RouteSlot,
    local: Dtab,
    dst_service: Option<HeaderValue>,
    ctx_dtab: Option<HeaderValue>,
    rx: watch::Receiver<Activity<NameTree<Bound>>>,
    _stop: oneshot::Sender<()>,
}

/// Clients per bound name (id, residual), shared by every binding that
/// reaches them, so their endpoint counters are shared too.
struct ClientCache {
    map: Mutex<HashMap<(Path, Path), Arc<Target>>>,
    capacity: usize,
    /// The router's label, for the clients' metrics.
    router: String,
    protocol: Protocol,
    config: ClientConfig,
    /// The router-level attempt timeout, when the client config sets none.
    attempt_timeout: Option<Duration>,
    /// `client.tls`, by bound name.
    tls: Option<Arc<crate::tls::ClientTlsRules>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take routing down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// === impl ClientCache ===

impl ClientCache {
    fn get(&self, bound: &Bound) -> Arc<Target> {
        let key = (bound.id.clone(), bound.residual.clone());
        let mut map = lock(&self.map);
        if let Some(c) = map.get(&key) {
            return c.clone();
        }
        if map.len() >= self.capacity {
            // Drop clients no cached binding refers to any more.
            map.retain(|_, c| Arc::strong_count(c) > 1);
        }
        let c = Arc::new(Target::new(BoundClient::new(
            bound,
            self.params_for(&bound.id),
        )));
        map.insert(key, c.clone());
        c
    }

    /// The parameters of the client for the bound name `id`, resolved once
    /// when the client is made.
    fn params_for(&self, id: &Path) -> ClientParams {
        let mut p = self.config.resolve(self.protocol, id);
        p.router.clone_from(&self.router);
        if p.request_attempt_timeout.is_none() {
            p.request_attempt_timeout = self.attempt_timeout;
        }
        if let Some(rules) = &self.tls {
            p.tls = rules.for_client(id);
        }
        p
    }

    fn resolve(&self, act: &Activity<NameTree<Bound>>) -> ClientTree {
        match act {
            Activity::Pending => Activity::Pending,
            Activity::Failed(m) => Activity::Failed(m.clone()),
            Activity::Ok(t) => Activity::Ok(t.map(&mut |b: &Bound| self.get(b))),
        }
    }

    fn all(&self) -> Vec<Arc<BoundClient>> {
        lock(&self.map).values().map(|t| t.client.clone()).collect()
    }
}

// === impl Binding ===

impl Binding {
    fn new(
        local: Dtab,
        path: Path,
        service: Arc<Service>,
        rx: watch::Receiver<Activity<NameTree<Bound>>>,
        clients: Arc<ClientCache>,
        now_ms: u64,
        updates: ::metrics::Counter,
    ) -> Arc<Binding> {
        let mut follow = rx.clone();
        let initial = {
            let snapshot = follow.borrow_and_update().clone();
            clients.resolve(&snapshot)
        };
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let binding = Arc::new(Binding {
            dst_service: header_value(&path.to_string()),
            ctx_dtab: if local.is_empty() {
                None
            } else {
                header_value(&local.to_string())
            },
            local,
            path,
            service,
            rx,
            current: ArcSwap::from_pointee(initial),
            last_used: AtomicU64::new(now_ms),
            evicted: AtomicBool::new(false),
            metrics: RouteSlot::default(),
            _stop: stop_tx,
        });
        // The task holds the binding weakly, made before it starts: dropping
        // the binding's last handle drops `_stop`, which ends the task.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = Arc::downgrade(&binding);
            rt.spawn(async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        changed = follow.changed() => {
                            if changed.is_err() {
                                break;
                            }
                            let snapshot = follow.borrow_and_update().clone();
                            let Some(b) = me.upgrade() else { break };
                            b.current.store(Arc::new(clients.resolve(&snapshot)));
                            updates.increment(1);
                        }
                    }
                }
            });
        }
        binding
    }

    /// The logical name.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Still the cache's binding for its key.
    pub(crate) fn is_current(&self) -> bool {
        !self.evicted.load(Ordering::Relaxed)
    }

    /// Stamp a use, written only when it changes: workers sharing a hot
    /// binding do not bounce its cache line on every request.
    fn used(&self, now: u64) {
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }
}

impl crate::telemetry::Routed for Binding {
    fn service(&self) -> &Path {
        &self.path
    }

    fn route_slot(&self) -> &RouteSlot {
        &self.metrics
    }
}

// === impl Router ===

impl Router {
    /// A router binding names with `binder`.
    pub fn new(params: RouterParams, binder: Arc<dyn Binder>) -> Router {
        let services =
            crate::service::Services::new(params.service.clone(), params.binding_cache_capacity)
                .for_router(&params.label);
        let clients = Arc::new(ClientCache {
            map: Mutex::new(HashMap::new()),
            capacity: params.client_cache_capacity.max(1),
            router: params.label.clone(),
            protocol: params.protocol,
            config: params.client.clone(),
            attempt_timeout: params.request_timeout,
            tls: params.client_tls.clone(),
        });
        Router {
            inner: Arc::new(Inner {
                services,
                identifiers: Identifiers::new(
                    &params.identifiers,
                    &params.dst_prefix,
                    params.binding_cache_capacity,
                ),
                params,
                binder,
                bindings: ReadMap::new(),
                clients,
            }),
        }
    }

    /// The router's parameters.
    pub fn params(&self) -> &RouterParams {
        &self.inner.params
    }

    /// The router's label.
    pub fn label(&self) -> &str {
        &self.inner.params.label
    }

    /// The router's services (policy per logical name), resolved once per name.
    pub fn services(&self) -> &crate::service::Services {
        &self.inner.services
    }

    /// The binder.
    pub fn binder(&self) -> &Arc<dyn Binder> {
        &self.inner.binder
    }

    fn now_ms(&self) -> u64 {
        // Stamps of last use, compared with each other: the coarse clock will do.
        crate::clock::coarse_ms()
    }

    /// Name a request with the router's identifiers, in order (the first
    /// name wins); a request like an earlier one is named from memory.
    pub fn identify<B>(&self, req: &http::Request<B>) -> Result<Identified, Unidentified> {
        self.inner.identifiers.identify(View::of(req))
    }

    /// [`Router::identify`] for a request taken apart, whose headers are
    /// `lines` when our HTTP/1.1 server kept them as sent.
    pub fn identify_parts(
        &self,
        parts: &http::request::Parts,
        lines: Option<&RequestLines>,
    ) -> Result<Identified, Unidentified> {
        self.inner
            .identifiers
            .identify(View::of_parts(parts, lines))
    }

    /// The request's destination under `local`, and the URI path segments
    /// to strip: identified (a remembered name from memory), then bound (a
    /// cached binding). With no local dtab, a remembered name brings its
    /// binding along: one lookup in all.
    pub fn destination_of(
        &self,
        parts: &http::request::Parts,
        lines: Option<&RequestLines>,
        local: &Dtab,
    ) -> Result<(Destination, usize), Unidentified> {
        let ids = &self.inner.identifiers;
        let view = View::of_parts(parts, lines);
        if !local.is_empty() {
            let identified = ids.identify(view)?;
            let dst = self.destination(local, &identified.path);
            return Ok((dst, identified.consume_segments));
        }
        let now = self.now_ms();
        let mut bind = |path: &Path| self.binding(local, path, now);
        match ids.identify_bound(view, Some(&mut bind))? {
            Named::Bound(b, consume) => {
                b.used(now);
                Ok((Destination(b), consume))
            }
            // Not given without `bind`; bound here all the same.
            Named::Only(identified) => Ok((
                self.destination(local, &identified.path),
                identified.consume_segments,
            )),
        }
    }

    /// The cached binding of `path` under `local`, made (and followed)
    /// on first use. Never fails: what the name binds to is
    /// [`Router::route_to`]'s business.
    pub fn destination(&self, local: &Dtab, path: &Path) -> Destination {
        Destination(self.binding(local, path, self.now_ms()))
    }

    fn binding(&self, local: &Dtab, path: &Path, now: u64) -> Arc<Binding> {
        // The text of an empty dtab is empty: no formatting, no allocation.
        let text = if local.is_empty() {
            None
        } else {
            Some(local.to_string())
        };
        let lookup = (text.as_deref().unwrap_or(""), path);
        if let Some(b) = self.inner.bindings.get(&lookup as &dyn KeyView) {
            b.used(now);
            return b;
        }
        // Ask the binder outside our lock: it may take its own.
        let rx = self.inner.binder.bind(local, path);
        let fresh = Binding::new(
            local.clone(),
            path.clone(),
            self.inner.services.get(path),
            rx,
            self.inner.clients.clone(),
            now,
            crate::telemetry::metrics::binding_updates(self.label()),
        );
        let key = BindingKey {
            local: match text {
                None => NO_LOCAL.clone(),
                Some(t) => Arc::from(t),
            },
            path: path.clone(),
        };
        self.inner.bindings.update(|map| {
            if let Some(b) = map.get(&key) {
                return b.clone();
            }
            self.evict(map, now);
            map.insert(key, fresh.clone());
            fresh
        })
    }

    /// Drop idle bindings, then the least recently used if still full.
    fn evict(&self, map: &mut Map<BindingKey, Arc<Binding>>, now: u64) {
        let ttl = self.inner.params.binding_idle_ttl.as_millis() as u64;
        map.retain(|_, b| {
            let keep = now.saturating_sub(b.last_used.load(Ordering::Relaxed)) <= ttl;
            b.evicted.store(!keep, Ordering::Relaxed);
            keep
        });
        let cap = self.inner.params.binding_cache_capacity.max(1);
        while map.len() >= cap {
            let oldest = map
                .iter()
                .min_by_key(|(_, b)| b.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    if let Some(b) = map.remove(&k) {
                        b.evicted.store(true, Ordering::Relaxed);
                    }
                }
                None => break,
            }
        }
    }

    /// The client and endpoint set for `path` under the request's `local` dtab.
    pub async fn route(&self, local: &Dtab, path: &Path) -> Result<Route, Box<RouteError>> {
        self.route_to(&self.destination(local, path)).await
    }

    /// The client and endpoint set for a destination: a client chosen from
    /// its bound tree, once that is no longer pending and the client's
    /// endpoints are known (waiting at most `bindingTimeout` for both).
    ///
    /// The error is boxed: it is big (names, dtabs, the bound tree) and rare,
    /// and the result travels through every request's future.
    pub async fn route_to(&self, dst: &Destination) -> Result<Route, Box<RouteError>> {
        let (binding, local, path) = (&dst.0, &dst.0.local, &dst.0.path);
        let timeout = self.inner.params.binding_timeout;
        // The clock is read only when something must be waited for.
        let mut deadline: Option<Instant> = None;
        let err = |kind| {
            Box::new(RouteError {
                dst: path.clone(),
                base: self.inner.binder.base_dtab(),
                local: local.clone(),
                kind,
                bound: None,
            })
        };
        // The bound tree as a client is chosen from it. Read under a guard
        // (no count taken on it, none dropped after the response: two fewer
        // atomic read-modify-writes a request than a full load), dropped
        // before anything is awaited; an error later names the tree again.
        let pick = |state: &ClientTree| -> Result<Arc<Target>, Box<RouteError>> {
            let tree = match state {
                Activity::Ok(t) => t,
                Activity::Failed(m) => return Err(err(RouteFailure::BindFailed(m.clone()))),
                Activity::Pending => return Err(err(RouteFailure::BindingTimeout(timeout, None))),
            };
            choose(tree).cloned().map_err(|kind| {
                let mut e = err(kind);
                e.bound = shown(state);
                e
            })
        };
        let picked = {
            let state = binding.current.load();
            (!matches!(**state, Activity::Pending)).then(|| pick(&state))
        };
        // Resolved here when the binding was pending, and kept for errors.
        let mut waited: Option<ClientTree> = None;
        let target = match picked {
            Some(picked) => picked?,
            None => {
                let until = *deadline.insert(Instant::now() + timeout);
                let mut rx = binding.rx.clone();
                let ready = tokio::time::timeout_at(
                    until,
                    rx.wait_for(|a| !matches!(a, Activity::Pending)),
                )
                .await;
                let snapshot = match ready {
                    Ok(Ok(v)) => v.clone(),
                    Ok(Err(_)) => Activity::Failed("the binder stopped".into()),
                    Err(_) => return Err(err(RouteFailure::BindingTimeout(timeout, None))),
                };
                let state = waited.insert(self.inner.clients.resolve(&snapshot));
                pick(state)?
            }
        };
        let err = |kind| {
            let mut e = err(kind);
            e.bound = match &waited {
                Some(state) => shown(state),
                None => shown(&binding.current.load()),
            };
            e
        };
        let client = &target.client;
        let remaining = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        let Some(set) = client.ready(remaining).await else {
            return Err(err(RouteFailure::BindingTimeout(
                timeout,
                Some(client.id().clone()),
            )));
        };
        match &*set {
            EndpointSet::Pending => Err(err(RouteFailure::BindingTimeout(
                timeout,
                Some(client.id().clone()),
            ))),
            EndpointSet::Neg => Err(err(RouteFailure::ClientNeg(client.id().clone()))),
            EndpointSet::Failed(m) => Err(err(RouteFailure::ClientFailed(
                client.id().clone(),
                m.clone(),
            ))),
            EndpointSet::Bound { endpoints, .. } if endpoints.is_empty() => {
                Err(err(RouteFailure::NoEndpoints(client.id().clone())))
            }
            EndpointSet::Bound { .. } => Ok(Route {
                target,
                endpoints: set,
            }),
        }
    }

    /// Admin view: every cached client with its endpoints and their load.
    pub fn client_state(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut clients = self.inner.clients.all();
        clients.sort_by(|a, b| (a.id(), a.residual()).cmp(&(b.id(), b.residual())));
        for c in clients {
            let key = if c.residual().is_empty() {
                c.id().to_string()
            } else {
                format!("{}{}", c.id(), c.residual())
            };
            out.insert(key, c.state_json());
        }
        serde_json::Value::Object(out)
    }

    /// Admin view: the cached bindings, each logical name with its local dtab
    /// and current bound tree.
    pub fn bound_names(&self) -> Vec<serde_json::Value> {
        let bindings: Vec<Arc<Binding>> = self.inner.bindings.values();
        let mut out: Vec<serde_json::Value> = bindings
            .iter()
            .map(|b| {
                let tree = match &*b.current.load_full() {
                    Activity::Pending => "pending".to_string(),
                    Activity::Failed(m) => format!("failed: {m}"),
                    Activity::Ok(t) => t
                        .map(&mut |t: &Arc<Target>| t.client.id().clone())
                        .to_string(),
                };
                serde_json::json!({
                    "path": b.path.to_string(),
                    "local": b.local.to_string(),
                    "bound": tree,
                })
            })
            .collect();
        out.sort_by_key(|v| v.to_string());
        out
    }

    /// The delegation of `path` under `local`, as `/delegator.json` shows it:
    /// the binder's trace when it has one, else the bound tree (waiting at
    /// most the binding timeout for it).
    pub async fn delegate_json(&self, local: &Dtab, path: &Path) -> serde_json::Value {
        if let Some(v) = self.inner.binder.delegate(local, path) {
            return v;
        }
        let mut rx = self.inner.binder.bind(local, path);
        let waited = tokio::time::timeout(
            self.inner.params.binding_timeout,
            rx.wait_for(|a| !matches!(a, Activity::Pending)),
        )
        .await;
        let act = match waited {
            Ok(Ok(v)) => v.clone(),
            Ok(Err(_)) => Activity::Failed("the binder stopped".into()),
            Err(_) => Activity::Pending,
        };
        let tree = match act {
            Activity::Ok(t) => tree_json(&t),
            Activity::Pending => serde_json::json!({"type": "pending"}),
            Activity::Failed(m) => {
                serde_json::json!({"type": "exception", "message": m.to_string()})
            }
        };
        serde_json::json!({
            "path": path.to_string(),
            "dtab": {
                "base": self.inner.binder.base_dtab().to_string(),
                "local": local.to_string(),
            },
            "bound": tree,
        })
    }
}

/// JSON for a bound tree, in the shape of Linkerd's delegator nodes.
pub(crate) fn tree_json(t: &NameTree<Bound>) -> serde_json::Value {
    use serde_json::json;
    match t {
        NameTree::Leaf(b) => json!({"type": "leaf", "bound": b}),
        NameTree::Alt(ts) => {
            json!({"type": "alt", "alt": ts.iter().map(tree_json).collect::<Vec<_>>()})
        }
        NameTree::Union(ws) => json!({
            "type": "union",
            "union": ws.iter().map(|w| json!({"weight": w.weight, "tree": tree_json(&w.tree)})).collect::<Vec<_>>(),
        }),
        NameTree::Neg => json!({"type": "neg"}),
        NameTree::Fail => json!({"type": "fail"}),
        NameTree::Empty => json!({"type": "empty"}),
    }
}

/// Pick one client from a bound tree: a Union branch at random by weight
/// (branches that are `~`, `!` or `$` keep their share and fail it, as
/// Finagle's `retainUnreachableUnionBranches` does); an Alt, which binding
/// should already have removed, falls through to its first non-`~` branch.
/// A bound tree as an error shows it: its clients' names.
fn shown(state: &ClientTree) -> Option<String> {
    match state {
        Activity::Ok(tree) => Some(
            tree.map(&mut |t: &Arc<Target>| t.client.id().clone())
                .to_string(),
        ),
        _ => None,
    }
}

fn choose(tree: &NameTree<Arc<Target>>) -> Result<&Arc<Target>, RouteFailure> {
    match tree {
        NameTree::Leaf(c) => Ok(c),
        NameTree::Neg => Err(RouteFailure::Neg),
        NameTree::Fail => Err(RouteFailure::Fail),
        NameTree::Empty => Err(RouteFailure::Empty),
        NameTree::Alt(ts) => match ts.iter().find(|t| !matches!(t, NameTree::Neg)) {
            Some(t) => choose(t),
            None => Err(RouteFailure::Neg),
        },
        NameTree::Union(ws) => {
            let usable = |w: f64| w.is_finite() && w > 0.0;
            let total: f64 = ws.iter().map(|w| w.weight).filter(|w| usable(*w)).sum();
            if total <= 0.0 {
                return Err(RouteFailure::Empty);
            }
            let mut x = rand::rng().random::<f64>() * total;
            let mut last = None;
            for w in ws.iter().filter(|w| usable(w.weight)) {
                last = Some(w);
                if x < w.weight {
                    return choose(&w.tree);
                }
                x -= w.weight;
            }
            // Rounding left x just past the end: the last branch takes it.
            match last {
                Some(w) => choose(&w.tree),
                None => Err(RouteFailure::Empty),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtab::Weighted;
    use crate::naming::{Addr, Endpoint};

    struct Static;

    impl Binder for Static {
        fn bind(&self, _: &Dtab, path: &Path) -> watch::Receiver<Activity<NameTree<Bound>>> {
            let (_a, addr) = watch::channel(Addr::Bound(
                vec![Endpoint {
                    addr: ([127, 0, 0, 1], 1).into(),
                    weight: 1.0,
                }]
                .into(),
            ));
            let b = Bound {
                id: path.clone(),
                residual: Path::empty(),
                addr,
            };
            watch::channel(Activity::Ok(NameTree::Leaf(b))).1
        }
    }

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn binding_cache_is_bounded_and_expires_idle_entries() {
        let mut params = RouterParams::new(super::super::Protocol::Http);
        params.binding_cache_capacity = 2;
        params.binding_idle_ttl = Duration::from_millis(20);
        let r = Router::new(params, Arc::new(Static));
        for n in ["/svc/a", "/svc/b", "/svc/c"] {
            r.route(&Dtab::empty(), &p(n)).await.unwrap();
        }
        assert_eq!(r.inner.bindings.len(), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        r.route(&Dtab::empty(), &p("/svc/d")).await.unwrap();
        assert_eq!(r.inner.bindings.len(), 1);
        // The same name under another local dtab is another binding.
        let local: Dtab = "/x=>/y".parse().unwrap();
        r.route(&local, &p("/svc/d")).await.unwrap();
        assert_eq!(r.inner.bindings.len(), 2);
    }

    #[tokio::test]
    async fn a_cached_binding_is_found_again_by_its_borrowed_key() {
        // The borrowed key must hash and compare as the owned one, or every
        // request would bind its name anew.
        let r = Router::new(
            RouterParams::new(super::super::Protocol::Http),
            Arc::new(Static),
        );
        let local: Dtab = "/x=>/y".parse().unwrap();
        for (dtab, name) in [
            (Dtab::empty(), "/svc/a"),
            (local.clone(), "/svc/a"),
            (Dtab::empty(), "/"),
        ] {
            let first = r.destination(&dtab, &p(name));
            let again = r.destination(&dtab, &p(name));
            assert!(Arc::ptr_eq(&first.0, &again.0), "{dtab} {name}");
        }
        assert_eq!(r.inner.bindings.len(), 3);
        use std::hash::BuildHasher;
        let state = foldhash::quality::RandomState::default();
        let key = BindingKey {
            local: Arc::from("/x=>/y"),
            path: p("/svc/a"),
        };
        let path = p("/svc/a");
        let view: &dyn KeyView = &("/x=>/y", &path);
        assert_eq!(state.hash_one(&key), state.hash_one(view));
    }

    #[tokio::test]
    async fn a_remembered_name_brings_its_binding_until_the_cache_lets_it_go() {
        let mut params = RouterParams::new(super::super::Protocol::Http);
        params.binding_idle_ttl = Duration::from_millis(20);
        let r = Router::new(params, Arc::new(Static));
        let request = |host: &str| {
            http::Request::builder()
                .uri("/")
                .header("host", host)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let (a, b) = (request("a"), request("b"));
        let none = Dtab::empty();
        let (first, consume) = r.destination_of(&a, None, &none).unwrap();
        assert_eq!((first.path(), consume), (&p("/svc/a"), 0));
        // Found again through the name's link: the cache's own binding.
        let (again, _) = r.destination_of(&a, None, &none).unwrap();
        assert!(Arc::ptr_eq(&first.0, &again.0));
        assert!(Arc::ptr_eq(&first.0, &r.destination(&none, &p("/svc/a")).0));
        // Idle past its time, `a` is let go when `b` is bound, though a
        // request still holds it (and so the name's link still reaches it).
        tokio::time::sleep(Duration::from_millis(60)).await;
        r.destination_of(&b, None, &none).unwrap();
        assert_eq!(r.inner.bindings.len(), 1);
        assert!(!first.0.is_current());
        assert!(Arc::ptr_eq(&again.0, &first.0));
        let (rebound, _) = r.destination_of(&a, None, &none).unwrap();
        assert!(
            !Arc::ptr_eq(&rebound.0, &first.0),
            "an evicted binding was followed"
        );
        assert!(rebound.0.is_current());
        assert!(Arc::ptr_eq(
            &rebound.0,
            &r.destination(&none, &p("/svc/a")).0
        ));
        // Linked again: the next request finds that one.
        let (next, _) = r.destination_of(&a, None, &none).unwrap();
        assert!(Arc::ptr_eq(&next.0, &rebound.0));
        // Under a local dtab the name is bound apart, with its own binding.
        let local: Dtab = "/x=>/y".parse().unwrap();
        let (other, _) = r.destination_of(&a, None, &local).unwrap();
        assert!(!Arc::ptr_eq(&other.0, &next.0));
        assert_eq!(other.local(), &local);
        // An unidentifiable request is still explained.
        let no_host = http::Request::builder()
            .uri("/")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(r.destination_of(&no_host, None, &none).is_err());
    }

    #[tokio::test]
    async fn a_binding_let_go_by_the_cache_frees_its_watch() {
        // The remembered link is weak: the name's entry keeps no binding
        // (nor the namer watch in it) alive.
        let r = Router::new(
            RouterParams::new(super::super::Protocol::Http),
            Arc::new(Static),
        );
        let req = http::Request::builder()
            .uri("/")
            .header("host", "a")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let (dst, _) = r.destination_of(&req, None, &Dtab::empty()).unwrap();
        let weak = Arc::downgrade(&dst.0);
        drop(dst);
        r.inner.bindings.update(|m| m.clear());
        assert!(
            weak.upgrade().is_none(),
            "the identification cache kept the binding"
        );
    }

    #[test]
    fn union_choice_follows_weights_and_keeps_failing_shares() {
        let (_a, addr) = watch::channel(Addr::Pending);
        let b = Bound {
            id: p("/a"),
            residual: Path::empty(),
            addr,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = rt.block_on(async {
            Arc::new(Target::new(BoundClient::new(
                &b,
                ClientParams::new(super::super::Protocol::Http),
            )))
        });
        let t = NameTree::Union(vec![
            Weighted::new(1.0, NameTree::Leaf(c)),
            Weighted::new(1.0, NameTree::Neg),
            Weighted::new(0.0, NameTree::Fail),
        ]);
        let mut ok = 0;
        for _ in 0..1000 {
            match choose(&t) {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e, RouteFailure::Neg),
            }
        }
        assert!((400..600).contains(&ok), "{ok}");
    }
}
