//! Connections to endpoints: a keep-alive pool per endpoint.
//!
//! HTTP/1.1 goes through hyper-util's pooled client, addressed by the
//! endpoint's `ip:port` (the `Host` header carries the name as sent). HTTP/2
//! keeps one multiplexed connection per endpoint, opened with hyper's
//! connection API so that the request's own `:authority` is sent unchanged:
//! a downstream Linkerd identifies h2 requests by it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::rt::ReadBufCursor;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::params::PoolParams;
use crate::proxy::ProxyBody;
use crate::routing::Protocol;
use crate::tls::HandshakeFailure;
use crate::tls::client::UpstreamTls;
use crate::tls::connect::TlsConnector;

/// Idle connections are closed after this when `idleTimeMs` is unset.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// How long to wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to an endpoint failed.
#[derive(Debug)]
pub(crate) struct UpstreamError {
    /// The connection could not be made: the request never left.
    pub(crate) connect: bool,
    /// What happened, with its causes.
    pub(crate) cause: String,
}

/// Keep-alive connections to endpoints, per router protocol.
pub(crate) enum Upstream {
    Http1(Box<Client<PlainConnector, ProxyBody>>),
    /// HTTP/1.1 over TLS (`client.tls`).
    Http1Tls(Box<Client<TlsConnector, ProxyBody>>),
    Http2(H2Pool),
}

#[derive(Default)]
pub(crate) struct H2Pool {
    conns: Mutex<HashMap<SocketAddr, http2::SendRequest<ProxyBody>>>,
    /// `client.tls`: originate TLS on each new connection.
    tls: Option<UpstreamTls>,
}

impl Upstream {
    /// Connections for `protocol`, over TLS when `tls` is given; HTTP/1.1
    /// keeps at most `hostConnectionPool.maxSize` idle connections per
    /// endpoint and closes them after `idleTimeMs` (60 s when unset).
    pub(crate) fn new(
        protocol: Protocol,
        pool: &PoolParams,
        tls: Option<&UpstreamTls>,
    ) -> Upstream {
        match protocol {
            Protocol::Http => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .pool_idle_timeout(pool.idle_time.unwrap_or(DEFAULT_IDLE))
                    .set_host(false);
                if let Some(max) = pool.max_size {
                    builder.pool_max_idle_per_host(max as usize);
                }
                match tls {
                    None => Upstream::Http1(Box::new(builder.build(PlainConnector(connector)))),
                    Some(tls) => Upstream::Http1Tls(Box::new(
                        builder.build(TlsConnector::new(connector, tls.clone())),
                    )),
                }
            }
            Protocol::H2 => Upstream::Http2(H2Pool {
                conns: Mutex::default(),
                tls: tls.cloned(),
            }),
        }
    }

    /// Send `req` to `addr`. For HTTP/1.1 the URI must be `http://addr/...`;
    /// for HTTP/2 it is sent as it is (its authority becomes `:authority`).
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match self {
            Upstream::Http1(client) => client.request(req).await.map_err(|e| UpstreamError {
                connect: e.is_connect(),
                cause: error_chain(&e),
            }),
            Upstream::Http1Tls(client) => client
                .request(req)
                .await
                .map_err(|e| tls_error(e.is_connect(), &e)),
            Upstream::Http2(pool) => pool.send(addr, req).await,
        }
    }
}

/// Plain TCP connections as [`HttpConnector`] makes them, but without the
/// `HttpInfo` (the connection's addresses) it has the pool put in every
/// response's extensions: three allocations per response that nothing reads.
#[derive(Clone)]
pub(crate) struct PlainConnector(HttpConnector);

/// A connection of [`PlainConnector`].
pub(crate) struct PlainConn(TokioIo<TcpStream>);

impl hyper::rt::Read for PlainConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PlainConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

impl Connection for PlainConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for PlainConnector {
    type Response = PlainConn;
    type Error = BoxError;
    // Boxed once per connection, not per request.
    type Future = Pin<Box<dyn Future<Output = Result<PlainConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.0, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower_service::Service::<Uri>::call(&mut self.0, uri);
        Box::pin(async move { Ok(PlainConn(connecting.await?)) })
    }
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
        let connect_err = |cause: String| UpstreamError {
            connect: true,
            cause,
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(format!("connect to {addr}: {e}"))),
            Err(_) => return Err(connect_err(format!("connect to {addr}: timed out"))),
        };
        let _ = stream.set_nodelay(true);
        let send = match &self.tls {
            None => h2_handshake(stream, addr).await?,
            Some(tls) => {
                let stream = tls.connect(stream, addr).await.map_err(|f| UpstreamError {
                    connect: true,
                    cause: format!("{addr}: {f}"),
                })?;
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
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut send = self.connection(addr).await?;
        if let Err(e) = send.ready().await {
            self.lock().remove(&addr);
            return Err(tls_error(true, &e));
        }
        send.send_request(req)
            .await
            .map_err(|e| tls_error(false, &e))
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
fn tls_error(connect: bool, e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    match HandshakeFailure::find_in(e) {
        Some(f) => UpstreamError {
            connect: connect || f.before_request(),
            cause: f.to_string(),
        },
        None => UpstreamError {
            connect,
            cause: error_chain(e),
        },
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
