//! One request through the proxy: admission, loop guard, per-request dtab,
//! identification, routing, endpoint choice, forwarding and the response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rand::Rng;

use super::ProxyBody;
use super::error::ProxyError;
use super::headers::{
    self, L5D_CTX_DTAB, L5D_DST_CLIENT, L5D_DST_RESIDUAL, L5D_DST_SERVICE, L5D_REQID,
};
use crate::client::{CallBody, CallCtx, ClientError, Reply};
use crate::dtab::Path;
use crate::routing::{Protocol, Router, ServerParams, identify, strip_segments};
use crate::telemetry;

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

    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let admitted = match self.admit() {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        match self.forward(req, admitted).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(router = %self.router.label(), error = %e, "request failed");
                e.into_response()
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

    async fn forward(
        &self,
        req: Request<Incoming>,
        admitted: Option<Inflight>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let params = self.router.params();
        let (mut parts, body) = req.into_parts();
        if self.server.clear_context {
            headers::clear_context(&mut parts.headers);
        }
        let seen = headers::via_count(&parts.headers);
        if seen > params.max_call_depth {
            return Err(ProxyError::CallDepth {
                max: params.max_call_depth,
                seen,
            });
        }
        let local = headers::take_local_dtab(&mut parts.headers)?;
        let probe = Request::from_parts(parts, ());
        let identified = identify(&params.identifiers, &params.dst_prefix, &probe)?;
        let (mut parts, ()) = probe.into_parts();
        telemetry::note_service(&parts.extensions, &identified.path);

        let (client, _set) = match self.router.route(&local, &identified.path).await {
            Ok(r) => r,
            Err(error) => {
                let detail = self.router.binder().explain(&local, &identified.path);
                return Err(ProxyError::Route { error, detail });
            }
        };

        telemetry::note_client(&parts.extensions, client.id());

        // The request as the upstream sees it.
        let original_authority = parts.uri.authority().cloned();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let pq: PathAndQuery = strip_segments(pq, identified.consume_segments)
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("rewritten path: {e}")))?;
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::append_via(&mut parts.headers);
        let h = &mut parts.headers;
        put(h, L5D_DST_SERVICE, &identified.path.to_string());
        put(h, L5D_DST_CLIENT, &client.id().to_string());
        put(h, L5D_DST_RESIDUAL, &client.residual().to_string());
        if !h.contains_key(L5D_REQID) {
            let id: u64 = rand::rng().random();
            put(h, L5D_REQID, &format!("{id:016x}"));
        }
        if !local.is_empty() {
            put(h, L5D_CTX_DTAB, &local.to_string());
        }
        let version = match params.protocol {
            Protocol::Http => {
                // Keep the host as sent; an h2 caller sent it as :authority.
                if !h.contains_key(HOST)
                    && let Some(a) = &original_authority
                    && let Ok(v) = HeaderValue::from_str(a.as_str())
                {
                    h.insert(HOST, v);
                }
                Version::HTTP_11
            }
            Protocol::H2 => Version::HTTP_2,
        };

        // A request with no body can be sent again when a connection is refused.
        let body = if body.is_end_stream() {
            CallBody::Empty
        } else {
            CallBody::Stream(telemetry::count_request_body(&parts.extensions, body))
        };
        // HTTP/1.1 is addressed to the endpoint (Host carries the name);
        // HTTP/2 keeps the caller's :authority.
        let mut uri = Uri::builder();
        if version == Version::HTTP_2
            && let Some(a) = original_authority
        {
            uri = uri.scheme("http").authority(a);
        }
        let uri = uri
            .path_and_query(pq)
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        let mut out = Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers;
        let dst = &identified.path;
        let ctx = CallCtx::new(dst.clone());
        match client.call(out, &ctx).await {
            Ok(Reply { response, report }) => {
                drop(report);
                let (mut rparts, rbody) = response.into_parts();
                headers::strip_hop_by_hop(&mut rparts.headers);
                headers::append_via(&mut rparts.headers);
                let rbody = match admitted {
                    Some(slot) => Guarded {
                        inner: rbody,
                        _guard: slot,
                    }
                    .boxed(),
                    None => rbody,
                };
                Ok(Response::from_parts(rparts, rbody))
            }
            Err(e) => Err(client_error(e, dst, client.id())),
        }
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

/// Set a header from text the proxy produced (paths show as ASCII).
fn put(h: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds the server's admission slot until it is
    /// finished or dropped.
    struct Guarded<B, G> {
        #[pin]
        inner: B,
        _guard: G,
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
