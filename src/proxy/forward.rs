//! One request through the proxy: admission, loop guard, per-request dtab,
//! identification, routing, endpoint choice, forwarding and the response.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Response;
use http::header::{HOST, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http_body::Body;
use http_body_util::BodyExt;

use super::ProxyBody;
use super::error::ProxyError;
use super::headers::{self, names};
use crate::client::{Added, CallBody, CallCtx, ClientError, Guarded, Reply};
use crate::dtab::Path;
use crate::routing::{Protocol, Route, Router, ServerParams, Target, strip_segments};
use crate::service::retry::{self, Attempted, Expiry, Limit};
use crate::service::{Deadline, ReplayBody, deadline};
use crate::telemetry::{self, Noted};

/// Forwards the requests of one server.
pub(crate) struct Forwarder {
    router: Router,
    server: ServerParams,
    inflight: Arc<AtomicUsize>,
}

/// Releases an admission slot when the response body is done.
struct Inflight(Arc<AtomicUsize>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Forwarder {
    pub(crate) fn new(router: Router, server: ServerParams) -> Forwarder {
        Forwarder {
            router,
            server,
            inflight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Forward `req`, noting on `noted` what telemetry needs to know. The
    /// proxy's response headers are in the response, or for `Writer::Ours`
    /// possibly left to the writer ([`headers::Appended`]).
    pub(crate) async fn handle<B>(
        &self,
        parts: &mut http::request::Parts,
        body: B,
        context: headers::RoutingHeaders,
        writer: headers::Writer,
        noted: &mut Noted<'_>,
    ) -> (Response<ProxyBody>, headers::Appended)
    where
        B: Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<super::BoxError>,
    {
        let admitted = match self.admit() {
            Ok(a) => a,
            Err(e) => return (e.into_response(), headers::Appended::default()),
        };
        match self
            .forward(parts, body, context, writer, admitted, noted)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(router = %self.router.label(), error = %e, "request failed");
                (e.into_response(), headers::Appended::default())
            }
        }
    }

    fn admit(&self) -> Result<Option<Inflight>, ProxyError> {
        let Some(max) = self.server.max_concurrent_requests else {
            return Ok(None);
        };
        let prev = self.inflight.fetch_add(1, Ordering::AcqRel);
        let slot = Inflight(self.inflight.clone());
        if prev >= max {
            drop(slot);
            return Err(ProxyError::Overloaded { max });
        }
        Ok(Some(slot))
    }

    async fn forward<B>(
        &self,
        parts: &mut http::request::Parts,
        body: B,
        context: headers::RoutingHeaders,
        writer: headers::Writer,
        admitted: Option<Inflight>,
        noted: &mut Noted<'_>,
    ) -> Result<(Response<ProxyBody>, headers::Appended), ProxyError>
    where
        B: Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<super::BoxError>,
    {
        let params = self.router.params();
        // The request's headers are these lines when our server kept them
        // as sent: its map is then empty (but for what a layer adds).
        let (ours, lines) = match writer {
            headers::Writer::Ours(lines) => (true, lines),
            headers::Writer::Hyper => (false, None),
        };
        debug_assert!(lines.is_none() || context == headers::RoutingHeaders::Absent);
        if self.server.clear_context {
            headers::clear_context(&mut parts.headers);
        }
        // Most requests carry none of the headers read before routing.
        let maybe = context == headers::RoutingHeaders::Maybe;
        let seen = if maybe {
            headers::via_count(&parts.headers)
        } else {
            0
        };
        if seen > params.max_call_depth {
            return Err(ProxyError::CallDepth {
                max: params.max_call_depth,
                seen,
            });
        }
        let local = if maybe {
            headers::take_local_dtab(&mut parts.headers)?
        } else {
            headers::no_local_dtab()
        };
        // The name and its cached binding (one lookup for a name seen
        // before): the name's service policy and header values come with it.
        let (dst, consume_segments) = self.router.destination_of(parts, lines.as_ref(), &local)?;
        let svc = dst.service();
        noted.service(dst.routed());

        // The deadline: the caller's (l5d-ctx-deadline, grpc-timeout on h2)
        // and this service's totalTimeoutMs, the strictest. Past it, the
        // request is not sent.
        // The clock is read only when a deadline needs it (most requests
        // have none).
        let grpc = params.protocol == Protocol::H2;
        let mut clock = None;
        let mut now = || *clock.get_or_insert_with(deadline::now_ns);
        // Only grpc-timeout is relative to now.
        let propagated = if maybe || grpc {
            deadline::read_request(&parts.headers, grpc, if grpc { now() } else { 0 })
        } else {
            None
        };
        let total = svc.params.total_timeout.map(|t| Deadline::after(now(), t));
        let effective = Deadline::strictest(propagated.into_iter().chain(total));
        let limit = match (effective, svc.params.total_timeout) {
            (None, _) => None,
            (Some(d), timeout) => {
                let why = match (total, timeout) {
                    (Some(t), Some(timeout)) if t.deadline <= d.deadline => {
                        Expiry::TotalTimeout(timeout)
                    }
                    _ => Expiry::Propagated,
                };
                let Some(left) = d.remaining(now()) else {
                    svc.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(retry::expired(svc, why, 0));
                };
                Some(Limit {
                    at: tokio::time::Instant::now() + left,
                    why,
                })
            }
        };

        // The request as the upstream sees it; the caller's URI is taken
        // apart rather than copied.
        let original = std::mem::take(&mut parts.uri).into_parts();
        let pq = match (original.path_and_query, consume_segments) {
            (Some(pq), 0) => pq,
            (None, 0) => PathAndQuery::from_static("/"),
            (pq, n) => {
                let pq = pq.as_ref().map_or("/", |p| p.as_str());
                strip_segments(pq, n)
                    .parse()
                    .map_err(|e| ProxyError::BadRequest(format!("rewritten path: {e}")))?
            }
        };
        let original_authority = original.authority;
        headers::strip_hop_by_hop(&mut parts.headers);
        // A request with no via or l5d- header of its own (most): the
        // proxy's headers replace nothing and go to the client as a list
        // (headers::Own), not into the map.
        let lean = !maybe;
        let reqid = if lean {
            Some(headers::request_id_text())
        } else {
            let h = &mut parts.headers;
            headers::append_via(h);
            // Room for what is added below, made once.
            h.reserve(6);
            if let Some(v) = dst.dst_service() {
                h.insert(names::L5D_DST_SERVICE, v.clone());
            }
            // One lookup: kept when the caller sent one, else made.
            h.entry(names::L5D_REQID)
                .or_insert_with(headers::request_id);
            if let Some(v) = dst.ctx_dtab() {
                h.insert(names::L5D_CTX_DTAB, v.clone());
            }
            None
        };
        let h = &mut parts.headers;
        // Origin-form requests (most) carry no authority: no Host lookup.
        if params.protocol == Protocol::Http
            && let Some(a) = &original_authority
            && !h.contains_key(HOST)
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            // Keep the host as sent; an h2 caller sent it as :authority.
            h.insert(HOST, v);
        }
        // HTTP/1.1 is addressed to the endpoint (Host carries the name);
        // HTTP/2 keeps the caller's :authority.
        let mut up = http::uri::Parts::default();
        if params.protocol == Protocol::H2
            && let Some(a) = original_authority
        {
            up.scheme = Some(http::uri::Scheme::HTTP);
            up.authority = Some(a);
        }
        up.path_and_query = Some(pq);
        let uri = Uri::from_parts(up).map_err(|e| ProxyError::BadRequest(e.to_string()))?;

        // The first attempt's route, before the body: telemetry counts the
        // body's bytes (once, as received) against it.
        let first = match self.router.route_to(&dst).await {
            Ok(route) => route,
            Err(error) => {
                let detail = self.router.binder().explain(&local, dst.path());
                return Err(ProxyError::Route { error, detail });
            }
        };
        noted.client(first.target.client().id());
        // The first attempt's client headers go in once, before any copy;
        // an attempt routed elsewhere overwrites them.
        if !lean {
            put_client(&mut parts.headers, &first.target);
        }
        let mut first = Some(first);

        // Kept up to retryBufferSize.requestBytes so it can be sent again;
        // an empty body (most requests) needs no keeping and no counting.
        let empty = body.is_end_stream();
        let body = if empty {
            ReplayBody::empty()
        } else {
            ReplayBody::new(
                noted.count_request_body(body),
                svc.params.retry_buffer_size.request_bytes,
            )
        };
        let (request, router, dst) = (&mut *parts, &self.router, &dst);
        let parts = &*request;
        let ctx = CallCtx {
            // Our server writes header lines as they came; hyper needs a map.
            verbatim: ours,
            lines,
            ..CallCtx::new(dst.path())
        };
        let ctx = &ctx;
        let reqid = reqid.as_ref();
        let reroutes = &*noted;
        let uri = &uri;
        let attempt = |body: ReplayBody, n: usize| {
            let routed = first.take();
            async move {
                // The caller's headers as they are (the first attempt's
                // client headers are in), or a copy this attempt changes.
                let mut own: Option<http::HeaderMap> = None;
                // A retry routes again: a union may pick another branch.
                let Route { target, endpoints } = match routed {
                    Some(r) => r,
                    None => match router.route_to(dst).await {
                        Ok(route) => {
                            reroutes.rerouted(route.target.client().id());
                            if !lean {
                                put_client(own.insert(parts.headers.clone()), &route.target);
                            }
                            route
                        }
                        Err(error) => {
                            let detail = router.binder().explain(dst.local(), dst.path());
                            return Err(ProxyError::Route { error, detail });
                        }
                    },
                };
                let client = target.client();
                let mut added = headers::Own::new();
                if let Some(reqid) = reqid {
                    use headers::names::statics as n;
                    if let Some(v) = dst.dst_service() {
                        added.push(&n::L5D_DST_SERVICE, v.as_bytes());
                    }
                    added.push(&n::L5D_REQID, reqid);
                    if let Some(v) = dst.ctx_dtab() {
                        added.push(&n::L5D_CTX_DTAB, v.as_bytes());
                    }
                    if let Some(v) = target.dst_client() {
                        added.push(&n::L5D_DST_CLIENT, v.as_bytes());
                    }
                    if let Some(v) = target.dst_residual() {
                        added.push(&n::L5D_DST_RESIDUAL, v.as_bytes());
                    }
                }
                let added = if lean { added.added() } else { Added::NONE };
                if let Some(d) = effective {
                    let h = own.get_or_insert_with(|| parts.headers.clone());
                    deadline::write_request(h, &d, grpc, deadline::now_ns());
                }
                let body = if empty {
                    CallBody::Empty
                } else {
                    CallBody::Replay(body)
                };
                tracing::trace!(dst = %ctx.dst, attempt = n, client = %client.id(), "attempt");
                // The client only reads the head for an HTTP/1.1 send (and
                // copies the headers for HTTP/2): no copy is needed here.
                let headers = own.as_ref().unwrap_or(&parts.headers);
                let called = client
                    .call_with_headers(
                        &parts.method,
                        uri,
                        headers,
                        added,
                        body,
                        ctx,
                        Some(endpoints),
                    )
                    .await;
                match called {
                    Ok(Reply {
                        response,
                        report,
                        verbatim,
                    }) => Ok(Attempted {
                        response,
                        report: Some(report),
                        verbatim,
                    }),
                    Err(e) => Err(client_error(e, ctx.dst, client.id())),
                }
            }
        };
        let mark = if ours {
            retry::Mark::Caller
        } else {
            retry::Mark::Head
        };
        let retry::Answer {
            response,
            class,
            in_head,
            verbatim,
        } = retry::call_marking(svc, &parts.method, body, limit, mark, attempt).await?;
        // The request's map is done with: kept for another message.
        headers::spare_maps::give(std::mem::take(&mut request.headers));
        // Stats agree with the service's classifier (and downstream hops),
        // whose verdict is in l5d-success-class; a gRPC response classified
        // only in its trailers is counted when they arrive
        // (telemetry::request::classified_by_trailers).
        let success = match class {
            Some(c) => Some(c.is_success()),
            None if telemetry::request::classified_by_trailers(response.headers()) => None,
            None => Some(true),
        };
        if let Some(success) = success {
            noted.class(if success {
                telemetry::metrics::ResponseClass::Success
            } else {
                telemetry::metrics::ResponseClass::Failure
            });
        }
        let (mut rparts, rbody) = response.into_parts();
        headers::strip_hop_by_hop(&mut rparts.headers);
        let appended = if ours {
            headers::Appended {
                verbatim,
                via: true,
                success_class: class.filter(|_| !in_head).map(|c| c.success_class()),
            }
        } else {
            headers::append_via(&mut rparts.headers);
            headers::Appended::default()
        };
        let rbody = match admitted {
            Some(slot) => Guarded {
                inner: rbody,
                _guard: slot,
            }
            .boxed(),
            None => rbody,
        };
        Ok((Response::from_parts(rparts, rbody), appended))
    }
}

/// The `l5d-dst-client` and `l5d-dst-residual` of the client a request is sent to.
fn put_client(h: &mut http::HeaderMap, target: &Target) {
    if let Some(v) = target.dst_client() {
        h.insert(names::L5D_DST_CLIENT, v.clone());
    }
    if let Some(v) = target.dst_residual() {
        h.insert(names::L5D_DST_RESIDUAL, v.clone());
    }
}

/// The proxy's error for a failed call, naming the logical and bound names.
fn client_error(e: ClientError, dst: &Path, client: &Path) -> ProxyError {
    let (dst, client) = (dst.clone(), client.clone());
    match e {
        ClientError::Connect { tried, cause } => ProxyError::Connect {
            dst,
            client,
            tried,
            cause,
        },
        ClientError::Timeout { addr, timeout } => ProxyError::Timeout {
            dst,
            client,
            addr,
            timeout,
        },
        ClientError::Upstream { addr, cause } => ProxyError::Upstream {
            dst,
            client,
            addr,
            cause,
        },
        ClientError::PoolExhausted {
            addr,
            max_size,
            max_waiters,
        } => ProxyError::PoolExhausted {
            dst,
            client,
            addr,
            cause: format!("connection pool exhausted ({max_size} in use, {max_waiters} waiting)"),
        },
        ClientError::BadRequest(m) => ProxyError::BadRequest(m),
    }
}
