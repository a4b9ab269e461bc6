//! The client level of a router: one [`Client`] per bound name (Linkerd 1's
//! per-`Dst.Bound` client), what Linkerd configures under `client:`.
//!
//! A client owns its endpoint set (followed from the namer), its connection
//! pool, and the per-endpoint state that endpoint choice reads. One call,
//! [`Client::call`], is one *attempt* as the service level sees it: choose an
//! endpoint, send, and — only when the request surely never reached the
//! application and its body can be sent again — requeue it, within the
//! requeue budget: on another endpoint when the connection was refused or an
//! h2 endpoint refused the stream (`REFUSED_STREAM`, or `GOAWAY` without
//! it); on a fresh connection when a kept-alive HTTP/1.1 connection turned
//! out to be stale (the endpoint reset the idle connection before any byte
//! of the response; see `pool`). Retries of responses (5xx, timeouts) are
//! the service level's business and wrap `call`.
//!
//! How a response counts for the endpoint (success or failure) is reported
//! through the [`Report`] that comes with it: by default a 5xx is a failure;
//! a response classifier can say otherwise with [`Report::classify`].

mod accrual;
mod backoff;
mod balance;
mod ewma;
pub(crate) mod h1;
mod heap;
mod params;
mod pool;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Method;
use http::uri::{Authority, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

pub use crate::service::RetryBudget;
pub use accrual::Health;
use balance::Shared;
pub use balance::{ClientStats, EndpointSet, EndpointState, Outstanding};
pub use params::{
    Backoff, Budget, ClientConfig, ClientParams, ClientPrefix, ClientSettings, FailureAccrual,
    LoadBalancer, PoolParams, PrefixElem, PrefixError, StaticClient,
};
use upstream::{Upstream, UpstreamError};

/// Headers a caller adds to a request whose map it lends
/// ([`Client::call_with_headers`]), kept out of the map: an HTTP/1.1 send
/// writes them after the map's (no insert, no hashing of their names), an
/// HTTP/2 send appends them to its copy. The caller makes sure none of
/// them is in the map already (the proxy's own headers on a request that
/// came without any: [`crate::proxy::headers::RoutingHeaders::Absent`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Added<'a>(pub &'a [(&'a http::HeaderName, &'a [u8])]);

impl Added<'_> {
    /// Nothing added.
    pub const NONE: Added<'static> = Added(&[]);
}

/// HTTP/1.1 response decoding from bytes alone, for the fuzz target
/// (`fuzz/fuzz_targets/h1_response.rs`); not an API.
#[doc(hidden)]
pub mod h1_decode {
    pub use super::h1::{Decoded, decode, decode_verbatim};
}

use crate::dtab::Path;
use crate::naming::{Addr, Bound};
use crate::proxy::{BoxError, ProxyBody};

/// How many endpoints one call may try when connections are refused
/// (Finagle's requeue filter stops at 25 too).
const MAX_CONNECT_ATTEMPTS: usize = 25;

/// A request body as a call sees it: whether it can be sent more than once
/// decides whether a refused request may be requeued on another endpoint.
pub enum CallBody {
    /// No body: always replayable.
    Empty,
    /// A body held in memory (the service level buffered it): replayable.
    Buffered(Bytes),
    /// A streamed body: sent once, never requeued.
    Stream(ProxyBody),
    /// A body the service level keeps up to its retry buffer: replayable
    /// while it fits (each send streams a fresh copy).
    Replay(crate::service::ReplayBody),
}

impl CallBody {
    /// Whether the body can be sent again.
    pub fn is_replayable(&self) -> bool {
        match self {
            CallBody::Stream(_) => false,
            CallBody::Replay(b) => b.can_replay(),
            _ => true,
        }
    }

    /// A copy for another attempt, when replayable (cheap: `Bytes` is shared).
    pub fn try_clone(&self) -> Option<CallBody> {
        match self {
            CallBody::Empty => Some(CallBody::Empty),
            CallBody::Buffered(b) => Some(CallBody::Buffered(b.clone())),
            CallBody::Replay(b) if b.can_replay() => Some(CallBody::Replay(b.replay())),
            CallBody::Replay(_) | CallBody::Stream(_) => None,
        }
    }

    /// The body for one send: a copy when replayable (cheap: `Bytes` is
    /// shared), else the stream itself (leaving `Empty` behind).
    fn for_send(&mut self) -> ProxyBody {
        match self {
            CallBody::Empty => Empty::new().map_err(|never| match never {}).boxed(),
            CallBody::Buffered(b) => Full::new(b.clone()).map_err(|never| match never {}).boxed(),
            CallBody::Replay(b) => b.replay().boxed(),
            CallBody::Stream(_) => match std::mem::replace(self, CallBody::Empty) {
                CallBody::Stream(s) => s,
                _ => Empty::new().map_err(|never| match never {}).boxed(),
            },
        }
    }
}

impl fmt::Debug for CallBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallBody::Empty => f.write_str("Empty"),
            CallBody::Buffered(b) => write!(f, "Buffered({} bytes)", b.len()),
            CallBody::Stream(_) => f.write_str("Stream"),
            CallBody::Replay(_) => f.write_str("Replay"),
        }
    }
}

/// What a call knows about the request beyond the request itself.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CallCtx<'a> {
    /// The logical name (`/svc/web`), for logs; lent by the caller (a
    /// clone is an atomic count up and down per request).
    pub dst: &'a Path,
    /// Whether an HTTP/1.1 response's headers may stay as the endpoint
    /// sent them ([`Reply::verbatim`]): only when the caller writes them
    /// out with our HTTP/1.1 server.
    pub verbatim: bool,
    /// The request's header lines as its caller sent them, when our
    /// HTTP/1.1 server kept them ([`crate::proxy::headers::RequestLines`]):
    /// written before the map's headers (an HTTP/2 send takes them apart
    /// into its map).
    pub lines: Option<crate::proxy::headers::RequestLines>,
}

impl<'a> CallCtx<'a> {
    /// The context of a call for the logical name `dst`.
    pub fn new(dst: &'a Path) -> CallCtx<'a> {
        CallCtx {
            dst,
            verbatim: false,
            lines: None,
        }
    }
}

/// Why a call failed. The caller adds the logical and bound names.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Every endpoint tried refused the connection: the request never left,
    /// so it is safe to retry.
    #[error("Unable to connect (tried {}): {cause}", fmt_addrs(tried))]
    Connect {
        /// The endpoints tried, in order.
        tried: Vec<SocketAddr>,
        /// The last connection error.
        cause: String,
    },
    /// `requestAttemptTimeoutMs` passed before the response headers came.
    #[error("{addr} did not respond within {}ms", timeout.as_millis())]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
        /// `requestAttemptTimeoutMs`.
        timeout: Duration,
    },
    /// The endpoint failed mid-exchange (reset, closed, protocol error): the
    /// request may have reached the application.
    #[error("{addr} failed: {cause}")]
    Upstream {
        /// The endpoint.
        addr: SocketAddr,
        /// The error chain.
        cause: String,
    },
    /// The endpoint's connection pool is full and `maxWaiters` requests
    /// already wait: the request never left.
    #[error("{addr}: connection pool exhausted ({max_size} in use, {max_waiters} waiting)")]
    PoolExhausted {
        /// The endpoint.
        addr: SocketAddr,
        /// `hostConnectionPool.maxSize`.
        max_size: u32,
        /// `hostConnectionPool.maxWaiters`.
        max_waiters: u32,
    },
    /// The request cannot be addressed to an endpoint (bad URI).
    #[error("Bad request: {0}")]
    BadRequest(String),
}

impl ClientError {
    /// Whether the request surely never reached an application.
    pub fn never_reached_app(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::PoolExhausted { .. }
        )
    }

    /// Whether this is the per-attempt timeout (retryable at the service level).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// Publish the endpoint set of `addr`, built from the set published last:
/// an endpoint's state (failure accrual, connections) carries over even
/// when the follower task and [`Client::ready`] publish at once (a set
/// built from an older one would start its endpoints afresh).
fn publish(set: &ArcSwap<EndpointSet>, addr: &Addr, shared: &Arc<Shared>) -> Arc<EndpointSet> {
    let mut built = None;
    set.rcu(|cur| {
        let next = Arc::new(EndpointSet::from_addr(addr, cur, shared));
        built = Some(next.clone());
        next
    });
    built.unwrap_or_else(|| set.load_full())
}

/// Keep `hostConnectionPool.minSize` connections open to each endpoint of
/// `set` (HTTP/1.1; a pool's keeper starts once and stops with it).
fn keep(set: &EndpointSet) {
    for ep in set.endpoints() {
        if let Some(pool) = &ep.conns {
            pool.keep();
        }
    }
}

fn fmt_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a response counts for the endpoint that gave it (failure accrual).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseClass {
    /// The endpoint did its job.
    Success,
    /// The endpoint failed (a 5xx by default).
    Failure,
}

impl ResponseClass {
    /// The default classification: 5xx is a failure.
    pub fn of_status(status: StatusCode) -> ResponseClass {
        if status.is_server_error() {
            ResponseClass::Failure
        } else {
            ResponseClass::Success
        }
    }
}

/// A response and the handle that reports how it counts for its endpoint.
#[derive(Debug)]
pub struct Reply {
    /// The endpoint's response; its body holds the endpoint's load until done.
    pub response: Response<ProxyBody>,
    /// The response's header lines as the endpoint sent them, when
    /// [`CallCtx::verbatim`] allowed it and the proxy has nothing to do
    /// with them: the response's map is then empty.
    pub verbatim: Option<crate::proxy::headers::Verbatim>,
    /// Reports the response's class when classified or dropped.
    pub report: Report,
}

/// Reports one response's class to its endpoint's state exactly once: when
/// [`Report::classify`] is called, or at drop with the class of the status.
#[derive(Debug)]
pub struct Report {
    endpoint: Arc<EndpointState>,
    status: StatusCode,
    done: bool,
}

impl Report {
    fn new(endpoint: Arc<EndpointState>, status: StatusCode) -> Report {
        Report {
            endpoint,
            status,
            done: false,
        }
    }

    /// The endpoint that answered.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// Count the response as `class` (overriding the status-based default).
    pub fn classify(mut self, class: ResponseClass) {
        self.done = true;
        self.endpoint.record(class);
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.done {
            self.endpoint.record(ResponseClass::of_status(self.status));
        }
    }
}

/// A client for one bound name: its live endpoint set, their state, and its
/// connections.
pub struct Client {
    id: Path,
    residual: Path,
    addr: watch::Receiver<Addr>,
    set: Arc<ArcSwap<EndpointSet>>,
    shared: Arc<Shared>,
    upstream: Arc<Upstream>,
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("residual", &self.residual)
            .field("params", &self.shared.params)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client following `bound`'s endpoint watch until it is dropped.
    pub fn new(bound: &Bound, params: ClientParams) -> Arc<Client> {
        let upstream = Arc::new(Upstream::new(params.protocol, params.tls.as_ref()));
        let shared = Shared::new(bound.id.clone(), params);
        let mut rx = bound.addr.clone();
        let initial =
            EndpointSet::from_addr(&rx.borrow_and_update(), &EndpointSet::Pending, &shared);
        initial.publish_gauges(&shared);
        keep(&initial);
        let set = Arc::new(ArcSwap::from_pointee(initial));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let set = set.clone();
            let shared = shared.clone();
            rt.spawn(async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        changed = rx.changed() => {
                            if changed.is_err() {
                                break;
                            }
                            let addr = rx.borrow_and_update().clone();
                            let next = publish(&set, &addr, &shared);
                            next.publish_gauges(&shared);
                            keep(&next);
                        }
                    }
                }
            });
        }
        Arc::new(Client {
            id: bound.id.clone(),
            residual: bound.residual.clone(),
            addr: bound.addr.clone(),
            set,
            upstream,
            shared,
            _stop: stop_tx,
        })
    }

    /// The client name (`/$/inet/127.0.0.1/8080`, `/#/io.l5d.fs/web`).
    pub fn id(&self) -> &Path {
        &self.id
    }

    /// The residual path of the bound name.
    pub fn residual(&self) -> &Path {
        &self.residual
    }

    /// The parameters this client was built with.
    pub fn params(&self) -> &ClientParams {
        &self.shared.params
    }

    /// The client's counters (ejections, revivals, requeues, ...).
    pub fn stats(&self) -> &ClientStats {
        &self.shared.stats
    }

    /// The requeue budget.
    pub fn requeue_budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> Arc<EndpointSet> {
        self.set.load_full()
    }

    /// The endpoint set once it is no longer pending, waiting at most `wait`.
    /// `None` if it is still pending after that.
    pub async fn ready(&self, wait: Duration) -> Option<Arc<EndpointSet>> {
        let cur = self.set.load_full();
        if !matches!(*cur, EndpointSet::Pending) {
            return Some(cur);
        }
        let mut rx = self.addr.clone();
        let addr =
            match tokio::time::timeout(wait, rx.wait_for(|a| !matches!(a, Addr::Pending))).await {
                Ok(Ok(a)) => a.clone(),
                // The namer went away while pending: report the last state.
                Ok(Err(_)) => return Some(self.set.load_full()),
                Err(_) => return None,
            };
        // Publish now rather than wait for the follower task to run.
        let next = publish(&self.set, &addr, &self.shared);
        keep(&next);
        Some(next)
    }

    /// One attempt: choose an endpoint, send `req`, and requeue it, when
    /// the body is replayable and the requeue budget allows, if the endpoint
    /// surely did not process it (connection refused, h2 stream refused or
    /// cut by `GOAWAY`: another endpoint; stale kept-alive HTTP/1.1
    /// connection: a fresh one).
    ///
    /// `req`'s URI gives the path and query (and, for h2, the `:authority`
    /// to send); its version is set from the protocol. Headers are sent as
    /// given: the caller has already rewritten them.
    ///
    /// A service-level retry loop wraps it, reporting each response's class
    /// (the default, when the report is just dropped, is 5xx = failure):
    ///
    /// ```text
    /// let body = CallBody::Buffered(bytes);          // replayable
    /// match client.call(req_with(body.try_clone()?), &CallCtx::new(&dst)).await {
    ///     Ok(Reply { response, report, .. }) => {
    ///         report.classify(if retryable_failure { ResponseClass::Failure } else { ResponseClass::Success });
    ///         ...
    ///     }
    ///     Err(e) if e.never_reached_app() || e.is_timeout() => /* retry within the budget */,
    ///     Err(e) => /* answer 502 */,
    /// }
    /// ```
    pub async fn call(
        &self,
        req: Request<CallBody>,
        ctx: &CallCtx<'_>,
    ) -> Result<Reply, ClientError> {
        let (parts, body) = req.into_parts();
        self.call_with_headers(
            &parts.method,
            &parts.uri,
            &parts.headers,
            Added::NONE,
            body,
            ctx,
            None,
        )
        .await
    }

    /// [`Client::call`] with the request head lent by the caller, which
    /// keeps it for its own retries: an HTTP/1.1 send only reads it (no
    /// copy at all), an HTTP/2 send copies the headers once. `added` go
    /// out after the headers (see [`Added`]). Lent rather than handed over
    /// as a `Request`: every async layer copies what it is handed into its
    /// own state, and a request head is 224 bytes (empty maps included).
    ///
    /// `uri` gives the path and query (and, for h2, the `:authority` to
    /// send). `endpoints`: the client's endpoint set as the caller's route
    /// found it ([`crate::routing::Route::endpoints`]), read again when
    /// `None`.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_with_headers(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &http::HeaderMap,
        added: Added<'_>,
        mut body: CallBody,
        ctx: &CallCtx<'_>,
        endpoints: Option<Arc<EndpointSet>>,
    ) -> Result<Reply, ClientError> {
        let replayable = body.is_replayable();
        let set = endpoints.unwrap_or_else(|| self.endpoints());
        let params = &self.shared.params;
        let budget = &self.shared.budget;
        budget.deposit();
        // Borrowed: a clone is an atomic count on the caller's request
        // head, and its drop another, after the response came back.
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut sent = 0usize;
        loop {
            let Some(ep) = set.pick(&tried) else {
                return Err(ClientError::Connect {
                    tried,
                    cause: "no endpoint left to try".into(),
                });
            };
            let addr = ep.addr;
            // HTTP/2 gets a request head of its own, keeping the caller's
            // :authority; HTTP/1.1 goes in origin form (Host carries the
            // name) with the headers lent, not copied.
            let h2 = if self.upstream.is_h2() {
                let authority = match (uri.authority(), &ep.authority) {
                    (Some(a), _) | (None, Some(a)) => a.clone(),
                    _ => Authority::try_from(addr.to_string())
                        .map_err(|e| ClientError::BadRequest(e.to_string()))?,
                };
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(authority)
                    .path_and_query(target)
                    .build()
                    .map_err(|e| ClientError::BadRequest(e.to_string()))?;
                let mut out = Request::new(());
                *out.method_mut() = method.clone();
                *out.uri_mut() = uri;
                *out.version_mut() = Version::HTTP_2;
                *out.headers_mut() = headers.clone();
                if let Some(lines) = &ctx.lines {
                    // Before the map's own (a deadline), as HTTP/1.1 has them.
                    let map = out.headers_mut();
                    let own =
                        std::mem::replace(map, lines.to_map().map_err(ClientError::BadRequest)?);
                    for (name, value) in &own {
                        map.append(name.clone(), value.clone());
                    }
                }
                for (name, value) in added.0 {
                    let value = http::HeaderValue::from_bytes(value)
                        .map_err(|e| ClientError::BadRequest(format!("header {name}: {e}")))?;
                    out.headers_mut().append((*name).clone(), value);
                }
                Some(out)
            } else {
                None
            };
            let h1 = h1::Outgoing {
                method,
                target,
                headers,
                added: added.0,
                verbatim: ctx.verbatim,
                lines: ctx.lines.as_ref(),
            };
            let send_body = body.for_send();

            let start = crate::clock::Precise::now();
            sent += 1;
            let attempt = async {
                let permit = self.permit(&ep).await?;
                let outstanding = Outstanding::new(ep.clone());
                let resp = match h2 {
                    Some(head) => self.upstream.send_h2(&ep, head, send_body).await,
                    None => self.upstream.send_h1(&ep, h1, send_body).await,
                };
                Ok::<_, ClientError>((resp, outstanding, permit))
            };
            let result = match params.request_attempt_timeout {
                Some(t) => match tokio::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        ep.record(ResponseClass::Failure);
                        return Err(ClientError::Timeout { addr, timeout: t });
                    }
                },
                None => attempt.await,
            };
            let (result, outstanding, permit) = result?;
            match result {
                Ok(resp) => {
                    ep.observe_latency(start.elapsed());
                    let (rparts, mut rbody) = resp.into_parts();
                    let verbatim = rbody.take_verbatim();
                    let report = Report::new(ep, rparts.status);
                    let rbody = Guarded {
                        inner: rbody,
                        _guard: (outstanding, permit),
                    }
                    .map_err(BoxError::from)
                    .boxed();
                    return Ok(Reply {
                        response: Response::from_parts(rparts, rbody),
                        verbatim,
                        report,
                    });
                }
                Err(e) if e.connect => {
                    ep.record(ResponseClass::Failure);
                    drop((outstanding, permit));
                    tried.push(addr);
                    let mut cause = e.cause;
                    tracing::debug!(dst = %ctx.dst, client = %self.id, %addr, %cause, "connect failed");
                    if !replayable
                        || !body.is_replayable()
                        || tried.len() >= MAX_CONNECT_ATTEMPTS
                        || tried.len() >= set.endpoints().len()
                    {
                        return Err(ClientError::Connect { tried, cause });
                    }
                    if !budget.try_withdraw() {
                        self.shared
                            .stats
                            .requeue_budget_exhausted_total
                            .fetch_add(1, Ordering::Relaxed);
                        cause.push_str(" (requeue budget exhausted)");
                        return Err(ClientError::Connect { tried, cause });
                    }
                    self.shared
                        .stats
                        .requeues_total
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.metrics.requeues.increment(1);
                }
                Err(UpstreamError {
                    unprocessed: Some(why),
                    cause,
                    ..
                }) => {
                    // Not processed: sent again, on another endpoint if this
                    // one refused it, on a fresh connection if the pooled one
                    // was stale.
                    drop((outstanding, permit));
                    if why.excludes_endpoint() {
                        ep.record(ResponseClass::Failure);
                        tried.push(addr);
                    }
                    tracing::debug!(dst = %ctx.dst, client = %self.id, %addr, why = why.as_str(), %cause, "request not processed");
                    let fail = |more: &str| ClientError::Upstream {
                        addr,
                        cause: format!("{cause} (not processed: {}{more})", why.as_str()),
                    };
                    if !replayable || !body.is_replayable() || sent >= MAX_CONNECT_ATTEMPTS {
                        return Err(fail(""));
                    }
                    if set.endpoints().iter().all(|e| tried.contains(&e.addr)) {
                        return Err(fail("; no other endpoint"));
                    }
                    if !budget.try_withdraw() {
                        self.shared
                            .stats
                            .requeue_budget_exhausted_total
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(fail("; requeue budget exhausted"));
                    }
                    self.shared
                        .stats
                        .requeues_total
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.metrics.requeues.increment(1);
                }
                Err(e) => {
                    ep.record(ResponseClass::Failure);
                    return Err(ClientError::Upstream {
                        addr,
                        cause: e.cause,
                    });
                }
            }
        }
    }

    /// A slot in `ep`'s connection pool (`hostConnectionPool.maxSize`):
    /// at once if free, after waiting if fewer than `maxWaiters` wait, else
    /// an error at once.
    async fn permit(
        &self,
        ep: &Arc<EndpointState>,
    ) -> Result<Option<OwnedSemaphorePermit>, ClientError> {
        let Some(sem) = &ep.pool else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let pool = &self.shared.params.host_connection_pool;
        let waiting = Waiting::new(ep);
        if let Some(max) = pool.max_waiters
            && waiting.before >= max as usize
        {
            self.shared
                .stats
                .pool_rejections_total
                .fetch_add(1, Ordering::Relaxed);
            return Err(ClientError::PoolExhausted {
                addr: ep.addr,
                max_size: pool.max_size.unwrap_or(u32::MAX),
                max_waiters: max,
            });
        }
        let p = sem.clone().acquire_owned().await.ok();
        drop(waiting);
        Ok(p)
    }

    /// Admin view: id, residual, state, balancer, counters and each
    /// endpoint's state (available, ejected for how long, probing), load
    /// and latency average.
    pub fn state_json(&self) -> serde_json::Value {
        let set = self.endpoints();
        let now = crate::clock::coarse();
        let (state, message) = match &*set {
            EndpointSet::Pending => ("pending", None),
            EndpointSet::Neg => ("neg", None),
            EndpointSet::Failed(m) => ("failed", Some(m.to_string())),
            EndpointSet::Bound { .. } => ("bound", None),
        };
        let eps: Vec<serde_json::Value> =
            set.endpoints().iter().map(|e| e.state_json(now)).collect();
        let st = &self.shared.stats;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut v = serde_json::json!({
            "id": self.id.to_string(),
            "residual": self.residual.to_string(),
            "state": state,
            "loadBalancer": self.shared.params.load_balancer.kind(),
            "available": set.available(),
            "ejections": n(&st.ejections_total),
            "revivals": n(&st.revivals_total),
            "requeues": n(&st.requeues_total),
            "requeueBudgetExhausted": n(&st.requeue_budget_exhausted_total),
            "requeueBudget": self.shared.budget.balance(),
            "poolRejections": n(&st.pool_rejections_total),
            "endpoints": eps,
        });
        if let (Some(m), Some(obj)) = (message, v.as_object_mut()) {
            obj.insert("message".into(), serde_json::Value::String(m));
        }
        v
    }
}

/// Counts a request waiting for a pool slot until dropped.
struct Waiting<'a> {
    ep: &'a EndpointState,
    before: usize,
}

impl<'a> Waiting<'a> {
    fn new(ep: &'a EndpointState) -> Waiting<'a> {
        let before = ep.waiters.fetch_add(1, Ordering::AcqRel);
        Waiting { ep, before }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.ep.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A body that holds a guard (an endpoint's outstanding count, a
    /// server's admission slot) until it is finished or dropped, so load is
    /// counted for as long as the response streams.
    pub(crate) struct Guarded<B, G> {
        #[pin]
        pub(crate) inner: B,
        pub(crate) _guard: G,
    }
}

impl<B: Body<Data = Bytes>, G> Body for Guarded<B, G> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_and_buffered_bodies_replay() {
        assert!(CallBody::Empty.is_replayable());
        let b = CallBody::Buffered(Bytes::from_static(b"x"));
        assert!(matches!(b.try_clone(), Some(CallBody::Buffered(x)) if x == "x"));
        let s = CallBody::Stream(Empty::new().map_err(|never| match never {}).boxed());
        assert!(!s.is_replayable());
        assert!(s.try_clone().is_none());
    }

    #[test]
    fn default_class_is_by_status_and_errors_say_if_they_reached_the_app() {
        assert_eq!(
            ResponseClass::of_status(StatusCode::BAD_GATEWAY),
            ResponseClass::Failure
        );
        assert_eq!(
            ResponseClass::of_status(StatusCode::NOT_FOUND),
            ResponseClass::Success
        );
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let refused = ClientError::Connect {
            tried: vec![addr],
            cause: "refused".into(),
        };
        assert!(refused.never_reached_app() && !refused.is_timeout());
        let t = ClientError::Timeout {
            addr,
            timeout: Duration::from_millis(5),
        };
        assert!(t.is_timeout() && !t.never_reached_app());
        let up = ClientError::Upstream {
            addr,
            cause: "reset".into(),
        };
        assert!(!up.never_reached_app());
    }
}
