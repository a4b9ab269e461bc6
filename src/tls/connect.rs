//! TLS towards endpoints for hyper-util's pooled HTTP/1.1 client: a
//! connector that makes the TCP connection with the plain `HttpConnector`
//! (its timeouts and `TCP_NODELAY`) and then originates TLS with the
//! client's [`UpstreamTls`].
//!
//! The pool keys connections by the URI's authority, the endpoint's
//! `ip:port`; since one pooled client is built per bound client (one TLS
//! config, one server name), a connection is never reused under another
//! name.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::client::UpstreamTls;

/// A TLS connection to an endpoint, as hyper-util's pool wants it.
#[derive(Debug)]
pub struct TlsConn(pub TlsStream<TcpStream>);

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
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

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.0.get_ref();
        let c = tcp.connected();
        if session.alpn_protocol() == Some(super::ALPN_H2) {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

/// Connects over TCP, then originates TLS.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    http: HttpConnector,
    tls: UpstreamTls,
}

impl TlsConnector {
    /// TLS with `tls` over the connections `http` makes.
    pub fn new(http: HttpConnector, tls: UpstreamTls) -> TlsConnector {
        TlsConnector { http, tls }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let peer = tcp.peer_addr()?;
            let stream = tls.connect(tcp, peer).await?;
            Ok(TokioIo::new(TlsConn(stream)))
        })
    }
}
