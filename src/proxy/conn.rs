//! One accepted plain-text connection: which protocol it speaks, and the
//! pieces its server shares.
//!
//! A fresh connection waits for its first bytes on its own (nothing of any
//! protocol's exists until the client says something), which also tells
//! HTTP/2 prior knowledge from HTTP/1. HTTP/1 connections are served by
//! [`super::h1`]; HTTP/2 ones by hyper, behind [`ConnIo`], which hands it
//! the bytes already read first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ProxyBody;
use crate::telemetry::Follow;

/// How long a connection may stay silent between requests (or before its
/// first one, or in the middle of a request head) before it is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first read's buffer: most request heads fit.
const FIRST_READ: usize = 8 * 1024;

/// A response body as it is written to the client: followed frame by
/// frame for the request's telemetry.
pub(super) struct TrackedBody {
    inner: ProxyBody,
    follow: Option<Follow>,
}

impl TrackedBody {
    pub(super) fn new(inner: ProxyBody, follow: impl Into<Option<Follow>>) -> TrackedBody {
        TrackedBody {
            inner,
            follow: follow.into(),
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(f) = this.follow.as_mut() {
            f.on_poll(&polled);
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

/// The socket as hyper sees it: first the bytes read before hyper got it,
/// then the socket.
#[derive(Debug)]
pub(super) struct ConnIo {
    prefix: Bytes,
    stream: TcpStream,
}

impl ConnIo {
    pub(super) fn new(stream: TcpStream, prefix: Bytes) -> ConnIo {
        ConnIo { prefix, stream }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a connection's first bytes say it speaks.
pub(super) enum Sniffed {
    /// HTTP/2 prior knowledge: the preface, read.
    H2(Bytes),
    /// Anything else is HTTP/1: what was read (in the buffer the
    /// connection goes on reading into).
    Http1(BytesMut),
    /// Closed, failed or silent for [`IDLE_TIMEOUT`] before a byte came.
    Gone,
}

/// Read until the first bytes tell HTTP/2's preface from anything else.
pub(super) async fn sniff(stream: &mut TcpStream) -> Sniffed {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let deadline = Instant::now() + IDLE_TIMEOUT;
    loop {
        let read = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read_buf(stream, &mut buf),
        );
        match read.await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf.get(..n) != H2_PREFACE.get(..n) {
            return Sniffed::Http1(buf);
        }
        if n == H2_PREFACE.len() {
            return Sniffed::H2(buf.freeze());
        }
    }
    if buf.is_empty() {
        Sniffed::Gone
    } else {
        Sniffed::Http1(buf)
    }
}
