//! The request path's hook: what a server does around each request.
//!
//! A server makes one [`ServerTelemetry`] when it starts. Per request:
//! [`ServerTelemetry::start`] puts a [`RequestContext`] in the request's
//! extensions (and, when tracing, the proxy's trace context in its headers);
//! the forwarder notes the logical name ([`note_service`]) and the bound name
//! ([`note_client`]) as it learns them and wraps the request body with
//! [`count_request_body`]; [`ServerTelemetry::finish`] counts the response,
//! records the latency and wraps the response body, which counts its bytes
//! and, once done, writes the access log line and reports the span.
//!
//! Cost when nothing but metrics is configured: one small allocation (the
//! context), one map lookup under a read lock per request for the
//! (service, client) handles, a few atomic adds, and one extra box around the
//! response body. Traces, access log and recent requests add work only when
//! configured, and spans only when sampled.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Extensions, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

use super::access_log::{self, AccessLog};
use super::metrics::{ResponseClass, RouteMetrics, ServerMetrics};
use super::recent::{RecentRequest, RecentRequests};
use super::trace::{self, SpanContext, Tracer};
use crate::dtab::Path;
use crate::proxy::{BoxError, ProxyBody};

/// One server's telemetry.
pub struct ServerTelemetry {
    router: Arc<str>,
    metrics: Arc<ServerMetrics>,
    clear_context: bool,
    tracer: Option<Arc<Tracer>>,
    recent: Option<Arc<RecentRequests>>,
    access_log: Option<AccessLog>,
}

/// What the forwarder learned about a request, shared with the server's hook
/// through the request's extensions.
#[derive(Clone)]
pub struct RequestContext(Arc<Shared>);

struct Shared {
    server: Arc<ServerMetrics>,
    state: Mutex<Routed>,
}

/// Unknown names are `None` rather than an empty path: an empty path is
/// an allocation, and most requests learn both names anyway.
#[derive(Default)]
struct Routed {
    service: Option<Path>,
    client: Option<Path>,
    route: Option<Arc<RouteMetrics>>,
    class: Option<ResponseClass>,
}

impl RequestContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routed> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The logical name the request was identified as (`/svc/web`).
pub fn note_service(ext: &Extensions, service: &Path) {
    if let Some(c) = ext.get::<RequestContext>() {
        c.lock().service = Some(service.clone());
    }
}

/// The bound name the request is sent to; resolves the route's metric handles.
pub fn note_client(ext: &Extensions, client: &Path) {
    if let Some(c) = ext.get::<RequestContext>() {
        let mut s = c.lock();
        s.client = Some(client.clone());
        s.route = Some(c.0.server.route(s.service.as_ref(), Some(client)));
    }
}

/// Override the response's class (the service's response classifier calls a
/// failure retryable, or a 200 a failure).
pub fn note_class(ext: &Extensions, class: ResponseClass) {
    if let Some(c) = ext.get::<RequestContext>() {
        c.lock().class = Some(class);
    }
}

/// The request body as forwarded, counting its bytes into
/// `request_body_bytes_total` of the route noted by [`note_client`].
pub fn count_request_body<B>(ext: &Extensions, body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let counter = ext
        .get::<RequestContext>()
        .and_then(|c| c.lock().route.as_ref().map(|r| r.request_bytes.clone()));
    match counter {
        Some(counter) => Counted {
            inner: body,
            on_frame: move |n: u64| counter.increment(n),
        }
        .map_err(Into::into)
        .boxed(),
        None => body.map_err(Into::into).boxed(),
    }
}

/// A request in flight, between [`ServerTelemetry::start`] and
/// [`ServerTelemetry::finish`].
pub struct Started {
    ctx: RequestContext,
    start: Instant,
    span: Option<SpanContext>,
    recent: bool,
    info: Option<Box<Info>>,
}

/// What the access log, the span and the recent list need to show.
struct Info {
    wall: SystemTime,
    peer: SocketAddr,
    method: String,
    uri: String,
    path: String,
    version: &'static str,
}

/// Counts the open connection until dropped.
pub struct ConnectionGuard(Arc<ServerMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.decrement(1.0);
    }
}

impl ServerTelemetry {
    /// The telemetry of `router`'s server on `local`, with whatever
    /// [`super::install`] set up (metrics only if nothing was).
    pub fn new(router: &str, local: SocketAddr, clear_context: bool) -> ServerTelemetry {
        let installed = super::installed();
        ServerTelemetry {
            router: router.into(),
            metrics: Arc::new(ServerMetrics::new(router, &local.to_string())),
            clear_context,
            tracer: installed.and_then(|t| t.tracer.clone()),
            recent: installed.and_then(|t| t.recent.clone()),
            access_log: installed.and_then(|t| t.access_logs.get(router).cloned()),
        }
    }

    /// A connection was accepted; it counts as open until the guard drops.
    pub fn connection(&self) -> ConnectionGuard {
        self.metrics.connections.increment(1);
        self.metrics.open_connections.increment(1.0);
        ConnectionGuard(self.metrics.clone())
    }

    /// A request arrived from `peer`.
    pub fn start<B>(&self, req: &mut Request<B>, peer: SocketAddr) -> Started {
        let ctx = RequestContext(Arc::new(Shared {
            server: self.metrics.clone(),
            state: Mutex::new(Routed::default()),
        }));
        req.extensions_mut().insert(ctx.clone());
        let mut span = None;
        if let Some(tracer) = &self.tracer {
            let h = req.headers();
            let (incoming, flag, l5d) = if self.clear_context {
                (None, None, None)
            } else {
                let (i, f) = trace::extract(h);
                let l5d = h
                    .get(trace::headers::L5D_SAMPLE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                (i, f, l5d)
            };
            let sampled = trace::decide(l5d, flag, tracer.sample_rate);
            let sc = trace::child(incoming.as_ref(), sampled);
            trace::inject(req.headers_mut(), &sc);
            span = sampled.then_some(sc);
        }
        let recent = self.recent.as_ref().is_some_and(|r| r.sample());
        let info = (span.is_some() || recent || self.access_log.is_some()).then(|| {
            Box::new(Info {
                wall: SystemTime::now(),
                peer,
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                path: req.uri().path().to_string(),
                version: match req.version() {
                    http::Version::HTTP_09 => "HTTP/0.9",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    http::Version::HTTP_2 => "HTTP/2.0",
                    http::Version::HTTP_3 => "HTTP/3.0",
                    _ => "HTTP/1.1",
                },
            })
        });
        Started {
            ctx,
            start: Instant::now(),
            span,
            recent,
            info,
        }
    }

    /// The response headers are ready: count the request and its response,
    /// record the latency, and wrap the body to follow it to its end.
    pub fn finish(&self, s: Started, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let elapsed = s.start.elapsed();
        let status = resp.status().as_u16();
        let (route, service, client, class, noted) = {
            let st = s.ctx.lock();
            let route = match &st.route {
                Some(r) => r.clone(),
                None => self.metrics.route(st.service.as_ref(), st.client.as_ref()),
            };
            (
                route,
                st.service.clone(),
                st.client.clone(),
                st.class.unwrap_or_else(|| ResponseClass::of_status(status)),
                st.class.is_some(),
            )
        };
        route.requests.increment(1);
        route.duration.record(elapsed.as_secs_f64());
        let resp = if !noted && classified_by_trailers(resp.headers()) {
            let pending = Pending {
                route: route.clone(),
                status,
                class,
            };
            resp.map(|inner| {
                ByTrailers {
                    inner,
                    pending: Some(pending),
                }
                .boxed()
            })
        } else {
            route.response(status, class);
            resp
        };
        let Some(info) = s.info else {
            let counter = route.response_bytes.clone();
            let (parts, body) = resp.into_parts();
            let body = Counted {
                inner: body,
                on_frame: move |n: u64| counter.increment(n),
            }
            .boxed();
            return Response::from_parts(parts, body);
        };
        if s.recent
            && let Some(r) = &self.recent
        {
            r.push(RecentRequest {
                timestamp_ms: info
                    .wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                router: self.router.to_string(),
                source: info.peer.to_string(),
                method: info.method.clone(),
                uri: info.uri.clone(),
                service: shown(service.as_ref()),
                client: shown(client.as_ref()),
                status,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
            });
        }
        let done = Done {
            route,
            bytes: 0,
            status,
            info,
            started: s.start,
            span: s.span.map(|sc| (sc, service, client)),
            tracer: self.tracer.clone(),
            access_log: self.access_log.clone(),
            router: self.router.clone(),
        };
        let (parts, body) = resp.into_parts();
        let body = Followed {
            inner: body,
            done: Some(done),
        }
        .boxed();
        Response::from_parts(parts, body)
    }
}

fn shown(p: Option<&Path>) -> String {
    match p {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => String::new(),
    }
}

/// The work left for when the response body is done (or dropped).
struct Done {
    route: Arc<RouteMetrics>,
    bytes: u64,
    status: u16,
    info: Box<Info>,
    started: Instant,
    span: Option<(SpanContext, Option<Path>, Option<Path>)>,
    tracer: Option<Arc<Tracer>>,
    access_log: Option<AccessLog>,
    router: Arc<str>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        if let Some(log) = &self.access_log {
            log.log(&access_log::Entry {
                peer: Some(self.info.peer),
                start: self.info.wall,
                method: &self.info.method,
                uri: &self.info.uri,
                version: self.info.version,
                status: self.status,
                bytes: self.bytes,
                duration,
            });
        }
        if let (Some((sc, service, client)), Some(tracer)) = (&self.span, &self.tracer) {
            let mut span = trace::Span::new(
                sc,
                self.info.method.to_ascii_lowercase(),
                self.info.wall,
                duration,
            );
            span.local_endpoint.service_name = self.router.to_string();
            let tags = &mut span.tags;
            tags.insert("http.method", self.info.method.clone());
            tags.insert("http.path", self.info.path.clone());
            tags.insert("http.status_code", self.status.to_string());
            tags.insert("l5d.router", self.router.to_string());
            if let Some(service) = service.as_ref().filter(|p| !p.is_empty()) {
                tags.insert("l5d.service", service.to_string());
            }
            if let Some(client) = client.as_ref().filter(|p| !p.is_empty()) {
                tags.insert("l5d.client", client.to_string());
            }
            if self.status >= 500 {
                tags.insert("error", self.status.to_string());
            }
            tracer.report(span);
        }
    }
}

/// A gRPC response whose head carries neither `grpc-status` nor
/// `l5d-success-class`: its class is only known from its trailers.
pub fn classified_by_trailers(h: &http::HeaderMap) -> bool {
    !h.contains_key(crate::service::classify::names::L5D_SUCCESS_CLASS)
        && !h.contains_key("grpc-status")
        && h.get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A response class waiting for the trailers; counted when dropped.
struct Pending {
    route: Arc<RouteMetrics>,
    status: u16,
    class: ResponseClass,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.route.response(self.status, self.class);
    }
}

pin_project_lite::pin_project! {
    /// A body whose response is counted once its trailers say how it went
    /// (their `l5d-success-class`, as the service's classifier wrote it), or
    /// by its status when it ends or is dropped without them.
    struct ByTrailers<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B: Body<Data = Bytes>> Body for ByTrailers<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(t), Some(p)) = (f.trailers_ref(), this.pending.as_mut())
                    && let Some(v) = t.get(crate::service::classify::names::L5D_SUCCESS_CLASS)
                {
                    p.class = if v.as_bytes() == b"1.0" {
                        ResponseClass::Success
                    } else {
                        ResponseClass::Failure
                    };
                    this.pending.take();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.pending.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A body that reports the size of each data frame.
    struct Counted<B, F> {
        #[pin]
        inner: B,
        on_frame: F,
    }
}

impl<B: Body<Data = Bytes>, F: FnMut(u64)> Body for Counted<B, F> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled
            && let Some(d) = f.data_ref()
        {
            (this.on_frame)(d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its bytes and finishes the request's
    /// telemetry when it ends or is dropped.
    struct Followed<B> {
        #[pin]
        inner: B,
        done: Option<Done>,
    }
}

impl<B: Body<Data = Bytes>> Body for Followed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(d), Some(done)) = (f.data_ref(), this.done.as_mut()) {
                    let n = d.len() as u64;
                    done.bytes += n;
                    done.route.response_bytes.increment(n);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                // Finished: log and report now, not when hyper drops us.
                this.done.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
