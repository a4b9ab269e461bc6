//! Connections to endpoints.
//!
//! HTTP/1.1 goes through each endpoint's own keep-alive pool (see `pool`),
//! in origin form (the `Host` header carries the name as sent). HTTP/2
//! keeps one multiplexed connection per endpoint, opened with hyper's
//! connection API so that the request's own `:authority` is sent unchanged:
//! a downstream Linkerd identifies h2 requests by it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::balance::EndpointState;
use super::h1::Outgoing;
use super::pool::PooledBody;
use crate::proxy::ProxyBody;
use crate::routing::Protocol;
use crate::tls::HandshakeFailure;
use crate::tls::client::UpstreamTls;

/// How long to wait for a TCP connection to an endpoint.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to an endpoint (`TCP_NODELAY`: requests and responses
/// are written whole), within [`CONNECT_TIMEOUT`]; a failure is a connect
/// error, so the request was never sent.
pub(crate) async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
    let connect_err = |cause: String| UpstreamError::new(true, cause);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_err(format!("connect to {addr}: {e}"))),
        Err(_) => return Err(connect_err(format!("connect to {addr}: timed out"))),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Why a request to an endpoint failed.
#[derive(Debug)]
pub(crate) struct UpstreamError {
    /// The connection could not be made: the request never left.
    pub(crate) connect: bool,
    /// The connection was made, but the request surely was not processed:
    /// it may be sent again (requeued).
    pub(crate) unprocessed: Option<Unprocessed>,
    /// What happened, with its causes.
    pub(crate) cause: String,
}

impl UpstreamError {
    pub(crate) fn new(connect: bool, cause: String) -> UpstreamError {
        UpstreamError {
            connect,
            unprocessed: None,
            cause,
        }
    }
}

/// How a request that reached an endpoint's connection is known not to
/// have been processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unprocessed {
    /// HTTP/1.1: a kept-alive (or pre-connected) connection the endpoint had
    /// already dropped; the request was not read. The endpoint itself is
    /// fine: another connection to it will do.
    Stale,
    /// HTTP/2: the endpoint refused the stream (`REFUSED_STREAM`).
    RefusedStream,
    /// HTTP/2: the endpoint went away (`GOAWAY`) before taking the stream.
    GoAway,
    /// HTTP/2: the connection closed while the request still waited in
    /// hyper's queue, before it became a stream.
    NotSent,
}

impl Unprocessed {
    /// Whether the endpoint should not be tried again for this request.
    pub(crate) fn excludes_endpoint(self) -> bool {
        self != Unprocessed::Stale
    }

    /// For logs and error texts.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unprocessed::Stale => "stale pooled connection",
            Unprocessed::RefusedStream => "stream refused (REFUSED_STREAM)",
            Unprocessed::GoAway => "endpoint going away (GOAWAY)",
            Unprocessed::NotSent => "connection closed before the request was sent",
        }
    }
}

/// Connections to endpoints, per router protocol.
pub(crate) enum Upstream {
    /// HTTP/1.1 (plain or TLS): each endpoint's state holds its pool.
    Http1,
    Http2(H2Pool),
}

#[derive(Default)]
pub(crate) struct H2Pool {
    conns: Mutex<HashMap<SocketAddr, http2::SendRequest<ProxyBody>>>,
    /// `client.tls`: originate TLS on each new connection.
    tls: Option<UpstreamTls>,
}

impl Upstream {
    /// Connections for `protocol`, over TLS when `tls` is given.
    pub(crate) fn new(protocol: Protocol, tls: Option<&UpstreamTls>) -> Upstream {
        match protocol {
            Protocol::Http => Upstream::Http1,
            Protocol::H2 => Upstream::Http2(H2Pool {
                conns: Mutex::default(),
                tls: tls.cloned(),
            }),
        }
    }

    /// Send an HTTP/1.1 request, its head borrowed, to the endpoint `ep`.
    pub(crate) async fn send_h1(
        &self,
        ep: &EndpointState,
        h1: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        match (self, &ep.conns) {
            (Upstream::Http1, Some(pool)) => pool.send(h1, body).await,
            _ => Err(UpstreamError::new(
                true,
                format!("{}: no HTTP/1.1 connection pool", ep.addr),
            )),
        }
    }

    /// Send an HTTP/2 request to the endpoint `ep`: `head` is its own
    /// (its URI's authority becomes `:authority`). Apart from
    /// [`Upstream::send_h1`] so that an HTTP/1.1 request's future neither
    /// holds nor moves an HTTP/2 head.
    pub(crate) async fn send_h2(
        &self,
        ep: &EndpointState,
        head: Request<()>,
        body: ProxyBody,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let Upstream::Http2(pool) = self else {
            return Err(UpstreamError::new(true, "no HTTP/2 connection pool".into()));
        };
        let req = head.map(|()| body);
        // Boxed: hyper's HTTP/2 send is most of the size of every
        // request's future otherwise (about 6 KB of 12), HTTP/1.1
        // ones included, and that size is copied per request.
        let sent = Box::pin(pool.send(ep.addr, req)).await?;
        Ok(sent.map(PooledBody::unpooled))
    }

    /// Whether requests go out as HTTP/2.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Upstream::Http2(_))
    }
}

/// Whether an HTTP/2 failure says the endpoint did not process the stream:
/// it refused it (`REFUSED_STREAM`), or went away (`GOAWAY`) without it.
/// `h2` fails a stream with the remote GOAWAY only when the stream's id is
/// above the GOAWAY's last stream id, or when the stream was opened after
/// it (never sent); streams the endpoint kept and then lost when the
/// connection closed fail with an I/O error instead, and are not requeued.
fn h2_unprocessed(e: &(dyn std::error::Error + 'static)) -> Option<Unprocessed> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() {
                return Some(Unprocessed::GoAway);
            }
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(Unprocessed::RefusedStream);
            }
            return None;
        }
        cur = c.source();
    }
    None
}

impl H2Pool {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, http2::SendRequest<ProxyBody>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connection(
        &self,
        addr: SocketAddr,
    ) -> Result<http2::SendRequest<ProxyBody>, UpstreamError> {
        let existing = self.lock().get(&addr).filter(|s| !s.is_closed()).cloned();
        if let Some(s) = existing {
            return Ok(s);
        }
        let stream = connect_tcp(addr).await?;
        let send = match &self.tls {
            None => h2_handshake(stream, addr).await?,
            Some(tls) => {
                let stream = tls
                    .connect(stream, addr)
                    .await
                    .map_err(|f| UpstreamError::new(true, format!("{addr}: {f}")))?;
                h2_handshake(stream, addr).await?
            }
        };
        self.lock().insert(addr, send.clone());
        Ok(send)
    }

    async fn send(
        &self,
        addr: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let mut send = self.connection(addr).await?;
        if let Err(e) = send.ready().await {
            self.lock().remove(&addr);
            return Err(tls_error(true, &e));
        }
        send.send_request(req).await.map_err(|e| {
            let mut u = tls_error(false, &e);
            u.unprocessed = h2_unprocessed(&e).or_else(|| {
                // hyper hands back a request it never gave to h2 as
                // "canceled: connection closed".
                (e.is_canceled() && u.cause.ends_with("connection closed"))
                    .then_some(Unprocessed::NotSent)
            });
            u
        })
    }
}

/// The HTTP/2 handshake on a fresh connection (plain or TLS); the
/// connection is driven by its own task.
async fn h2_handshake<T>(
    io: T,
    addr: SocketAddr,
) -> Result<http2::SendRequest<ProxyBody>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| {
            let mut u = tls_error(true, &e);
            u.cause = format!("h2 handshake with {addr}: {}", u.cause);
            u
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "h2 connection ended");
        }
    });
    Ok(send)
}

/// An upstream error, told as a TLS failure when one is in its chain. A
/// certificate refused by the endpoint shows only once the client sends
/// (TLS 1.3 checks the client's certificate after the client's side of the
/// handshake is done): such a request never reached the application.
pub(crate) fn tls_error(connect: bool, e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    match HandshakeFailure::find_in(e) {
        Some(f) => UpstreamError::new(connect || f.before_request(), f.to_string()),
        None => UpstreamError::new(connect, error_chain(e)),
    }
}

/// An error and its causes, joined, so the message says what really happened.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
