//! The request path's hook: what a server does around each request.
//!
//! A server makes one [`ServerTelemetry`] when it starts. Per request:
//! [`ServerTelemetry::start`] starts the clock (and, when tracing, puts the
//! proxy's trace context in the request's headers); the forwarder is lent a
//! [`Noted`] from [`ServerTelemetry::noted`] and notes on it the logical name
//! ([`Noted::service`]) and the bound name ([`Noted::client`]) as it learns
//! them, and wraps the request body with [`Noted::count_request_body`];
//! [`ServerTelemetry::finish`] counts the response, records the latency and
//! returns the [`Follow`] the server's response body polls with each frame:
//! it counts the body's bytes and, once done, writes the access log line and
//! reports the span.
//!
//! Cost when nothing but metrics is configured: no allocation (the noted
//! state lives in the request's future, the response body is followed by
//! the server's own body wrapper), the route's handles found where the
//! request's binding keeps them (else in a per-thread map), and a few
//! atomic adds on the route's own cache line. Traces,
//! access log and recent requests add work only when configured, and spans
//! only when sampled.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

use super::access_log::{self, AccessLog};
use super::metrics::{ResponseClass, RouteMetrics, RouteSlot, ServerMetrics};
use super::recent::{RecentRequest, RecentRequests};
use super::trace::{self, SpanContext, Tracer};
use crate::clock::Precise;
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

/// What a request was routed by, as its telemetry sees it: the logical
/// name, and where the handles of its route are kept (the routing cache's
/// binding). Noting the binding itself costs a count on a line the request
/// just read, where a copy of the name was a count on a line of its own.
pub trait Routed: Send + Sync {
    /// The logical name (`/svc/web`).
    fn service(&self) -> &Path;
    /// Where the route's handles are kept for the first server and client.
    fn route_slot(&self) -> &RouteSlot;
}

/// What the forwarder learned about a request, noted as it learns it and
/// read by [`ServerTelemetry::finish`].
///
/// It lives in the request's own future (made by [`ServerTelemetry::noted`],
/// lent to the forwarder), so noting costs no allocation, and the forwarder
/// notes through `&mut`: plain writes, no lock. Only a retry's new route is
/// noted by the attempt, which holds `&self` ([`Noted::rerouted`]); that
/// takes a lock, on retries only.
pub struct Noted<'a> {
    server: &'a ServerMetrics,
    /// Unknown names are `None` rather than an empty path: an empty path is
    /// an allocation, and most requests learn both names anyway.
    service: Option<Arc<dyn Routed>>,
    client: Option<Path>,
    route: Option<Arc<RouteMetrics>>,
    class: Option<ResponseClass>,
    /// Whether [`ServerTelemetry::finish`] may need the bound name (an
    /// access log, recent requests or a tracer is configured).
    names_kept: bool,
    /// The bound name a retry was routed to, when it was routed again.
    rerouted: Mutex<Option<Path>>,
}

impl Noted<'_> {
    /// The logical name the request was identified as (`/svc/web`), by
    /// what routes it.
    pub fn service(&mut self, routed: Arc<dyn Routed>) {
        self.service = Some(routed);
    }

    /// The bound name the request is sent to; resolves the route's metric
    /// handles (kept by what routed it, found there again).
    pub fn client(&mut self, client: &Path) {
        self.route = Some(match &self.service {
            Some(r) => self
                .server
                .route_in(r.route_slot(), Some(r.service()), client),
            None => self.server.route(None, Some(client)),
        });
        // Only the access log, recent requests and spans name the client
        // again; the metrics have their handles.
        if self.names_kept {
            self.client = Some(client.clone());
        }
    }

    /// The bound name a retry was routed to (a union may pick another
    /// branch); it replaces the first one's when the request is counted.
    pub fn rerouted(&self, client: &Path) {
        *self.rerouted.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
    }

    /// Override the response's class (the service's response classifier
    /// calls a failure retryable, or a 200 a failure).
    pub fn class(&mut self, class: ResponseClass) {
        self.class = Some(class);
    }

    /// The request body as forwarded, counting its bytes into
    /// `request_body_bytes_total` of the route noted by [`Noted::client`].
    pub fn count_request_body<B>(&self, body: B) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let counter = self.route.as_ref().map(|r| r.request_bytes.clone());
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
}

/// A request in flight, between [`ServerTelemetry::start`] and
/// [`ServerTelemetry::finish`].
pub struct Started {
    start: Precise,
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

    /// Whether requests are traced: the tracer reads and writes their
    /// headers.
    pub fn traces(&self) -> bool {
        self.tracer.is_some()
    }

    /// What the forwarder notes about one request, for [`Self::finish`].
    pub fn noted(&self) -> Noted<'_> {
        Noted {
            server: &self.metrics,
            service: None,
            client: None,
            route: None,
            class: None,
            names_kept: self.tracer.is_some() || self.recent.is_some() || self.access_log.is_some(),
            rerouted: Mutex::new(None),
        }
    }

    /// A request arrived from `peer`.
    pub fn start(&self, req: &mut http::request::Parts, peer: SocketAddr) -> Started {
        let mut span = None;
        if let Some(tracer) = &self.tracer {
            let h = &req.headers;
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
            trace::inject(&mut req.headers, &sc);
            span = sampled.then_some(sc);
        }
        let recent = self.recent.as_ref().is_some_and(|r| r.sample());
        let info = (span.is_some() || recent || self.access_log.is_some()).then(|| {
            Box::new(Info {
                wall: SystemTime::now(),
                peer,
                method: req.method.to_string(),
                uri: req.uri.to_string(),
                path: req.uri.path().to_string(),
                version: match req.version {
                    http::Version::HTTP_09 => "HTTP/0.9",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    http::Version::HTTP_2 => "HTTP/2.0",
                    http::Version::HTTP_3 => "HTTP/3.0",
                    _ => "HTTP/1.1",
                },
            })
        });
        Started {
            start: Precise::now(),
            span,
            recent,
            info,
        }
    }

    /// The response headers are ready: count the request and its response,
    /// record the latency, and say what the response body must do as it is
    /// sent ([`Follow::on_poll`]): count its bytes, count a response whose
    /// class is in its trailers, and finish the access log line and span.
    pub fn finish(&self, s: Started, noted: Noted<'_>, resp: &Response<ProxyBody>) -> Follow {
        let elapsed = s.start.elapsed();
        let status = resp.status().as_u16();
        let Noted {
            service: routed,
            mut client,
            mut route,
            class: noted_class,
            names_kept,
            rerouted,
            ..
        } = noted;
        let service = routed.as_ref().map(|r| r.service());
        if let Some(c) = rerouted.into_inner().unwrap_or_else(|e| e.into_inner()) {
            route = Some(self.metrics.route(service, Some(&c)));
            if names_kept {
                client = Some(c);
            }
        }
        let route = match route {
            Some(r) => r,
            None => self.metrics.route(service, client.as_ref()),
        };
        let class = noted_class.unwrap_or_else(|| ResponseClass::of_status(status));
        route.count_request();
        route.observe_duration(elapsed);
        let pending = if noted_class.is_none() && classified_by_trailers(resp.headers()) {
            Some(Pending {
                route: route.clone(),
                status,
                class,
            })
        } else {
            route.response(status, class);
            None
        };
        let Some(info) = s.info else {
            return Follow {
                route,
                pending,
                done: None,
            };
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
                service: shown(service),
                client: shown(client.as_ref()),
                status,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
            });
        }
        let done = Box::new(Done {
            bytes: 0,
            status,
            info,
            started: s.start,
            span: s.span.map(|sc| (sc, service.cloned(), client)),
            tracer: self.tracer.clone(),
            access_log: self.access_log.clone(),
            router: self.router.clone(),
        });
        Follow {
            route,
            pending,
            done: Some(done),
        }
    }
}

/// What a response body does as it is sent, polled with each of its frames
/// by the server's body wrapper (no box of its own around the body).
pub struct Follow {
    /// Its `response_body_bytes_total`.
    route: Arc<RouteMetrics>,
    /// A response counted by its trailers' `l5d-success-class`, or by its
    /// status when it ends or is dropped without them.
    pending: Option<Pending>,
    /// The access log line and span, finished when the body ends or is
    /// dropped. Boxed: a response's body wrapper is moved up through every
    /// layer of the request's future, and most requests have none.
    done: Option<Box<Done>>,
}

impl Follow {
    /// The body's inner poll gave `polled`.
    pub fn on_poll<E>(&mut self, polled: &Poll<Option<Result<Frame<Bytes>, E>>>) {
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    self.route.count_response_bytes(n);
                    if let Some(done) = self.done.as_mut() {
                        done.bytes += n;
                    }
                } else if let (Some(t), Some(p)) = (f.trailers_ref(), self.pending.as_mut())
                    && let Some(v) = t.get(crate::service::classify::names::L5D_SUCCESS_CLASS)
                {
                    p.class = if v.as_bytes() == b"1.0" {
                        ResponseClass::Success
                    } else {
                        ResponseClass::Failure
                    };
                    self.pending.take();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                // Finished: count, log and report now, not when hyper drops
                // the body.
                self.pending.take();
                self.done.take();
            }
            Poll::Pending => {}
        }
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
    bytes: u64,
    status: u16,
    info: Box<Info>,
    started: Precise,
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
