//! Connections to endpoints: a keep-alive pool per endpoint.
//!
//! HTTP/1.1 goes through hyper-util's pooled client, addressed by the
//! endpoint's `ip:port` (the `Host` header carries the name as sent). HTTP/2
//! keeps one multiplexed connection per endpoint, opened with hyper's
//! connection API so that the request's own `:authority` is sent unchanged:
//! a downstream Linkerd identifies h2 requests by it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::proxy::ProxyBody;
use crate::routing::Protocol;

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
    Http1(Box<Client<HttpConnector, ProxyBody>>),
    Http2(H2Pool),
}

#[derive(Default)]
pub(crate) struct H2Pool {
    conns: Mutex<HashMap<SocketAddr, http2::SendRequest<ProxyBody>>>,
}

impl Upstream {
    pub(crate) fn new(protocol: Protocol) -> Upstream {
        match protocol {
            Protocol::Http => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                let client = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .set_host(false)
                    .build(connector);
                Upstream::Http1(Box::new(client))
            }
            Protocol::H2 => Upstream::Http2(H2Pool::default()),
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
            Upstream::Http2(pool) => pool.send(addr, req).await,
        }
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
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_err(format!("h2 handshake with {addr}: {}", error_chain(&e))))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "h2 connection ended");
            }
        });
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
            return Err(UpstreamError {
                connect: true,
                cause: error_chain(&e),
            });
        }
        send.send_request(req).await.map_err(|e| UpstreamError {
            connect: false,
            cause: error_chain(&e),
        })
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
