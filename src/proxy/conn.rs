//! One accepted plain-text connection, served so that it costs next to
//! nothing while it waits.
//!
//! hyper's HTTP/1 connection allocates an 8 KB write buffer and an 8 KB read
//! buffer (plus its dispatcher state) and keeps them for as long as it lives,
//! also between requests. With thousands of idle keep-alive clients that
//! dominates the proxy's memory. So a connection is handed to hyper only while
//! it has something to do:
//!
//! * a fresh connection waits for its first bytes on its own (which also
//!   tells HTTP/2 prior knowledge from HTTP/1);
//! * between requests, once hyper has flushed its last response and found
//!   the socket empty, the hyper connection is taken apart
//!   ([`http1::Connection::into_parts`]), which frees its buffers; the socket
//!   then waits for readability alone, and the next request builds a new
//!   hyper connection that starts with whatever hyper had read but not parsed.
//!
//! Whether hyper is between requests is observed from the outside: the
//! service counts requests whose response body hyper still holds, and the
//! socket wrapper ([`ConnIo`]) records whether hyper's last read found
//! nothing and whether its last write was flushed.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ProxyBody;
use super::server::Shutdown;
use crate::telemetry::Follow;

/// How long a connection may stay silent between requests (or before its
/// first one, or in the middle of a request head) before it is closed: the
/// 30 s hyper's header read timeout applied before connections were taken
/// apart between requests.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long hyper's connection is kept after it went idle (by default). Taking it apart
/// and building it again costs about as much as a quarter of a proxied
/// request (allocations, hyper's caches), so a client that sends requests
/// back to back keeps it; one that pauses longer than this gives it back.
pub(super) const LINGER: Duration = Duration::from_millis(50);

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's service and socket tell its serving loop.
#[derive(Debug)]
pub(super) struct ConnState {
    /// Requests handed to the service whose response hyper has not yet
    /// finished with (the future or the response body is alive).
    active: AtomicUsize,
    /// hyper's last read found the socket empty. hyper reads the socket only
    /// when what it holds is no complete request (it parses before reading),
    /// so with no request in progress its buffer holds at most the start of
    /// a head. (After a response hyper does not read again if its last read
    /// already found nothing: the socket's readiness will wake it.)
    read_empty: AtomicBool,
    /// hyper's last write was followed by a flush that completed: nothing is
    /// left in its write buffer.
    flushed: AtomicBool,
    /// The latest request had a body, which hyper may still be reading.
    body: AtomicBool,
    /// Requests so far: tells whether a connection stayed idle for a whole
    /// [`LINGER`].
    requests: AtomicUsize,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            active: AtomicUsize::new(0),
            read_empty: AtomicBool::new(false),
            flushed: AtomicBool::new(true),
            body: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
        }
    }
}

impl ConnState {
    /// A request arrived; the guard lives as long as its response.
    pub(super) fn begin(self: &Arc<Self>, has_body: bool) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.body.store(has_body, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// hyper is between requests: nothing to answer, nothing to write,
    /// nothing to read. Only true right after hyper's connection returned
    /// `Pending`, which is when it is checked.
    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0
            && self.read_empty.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && !self.body.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.read_empty.store(false, Ordering::Relaxed);
        self.flushed.store(true, Ordering::Relaxed);
    }
}

/// Held by a request's future, then by its response body.
#[derive(Debug)]
pub(super) struct ActiveGuard(Arc<ConnState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body as hyper sends it: followed frame by frame for the
/// request's telemetry, and telling the connection when hyper is done with
/// it.
pub(super) struct TrackedBody {
    inner: ProxyBody,
    follow: Option<Follow>,
    _guard: Option<ActiveGuard>,
}

impl TrackedBody {
    pub(super) fn new(
        inner: ProxyBody,
        follow: impl Into<Option<Follow>>,
        guard: Option<ActiveGuard>,
    ) -> TrackedBody {
        TrackedBody {
            inner,
            follow: follow.into(),
            _guard: guard,
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
/// then the socket, with every read and flush outcome recorded.
#[derive(Debug)]
pub(super) struct ConnIo {
    prefix: Bytes,
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl ConnIo {
    pub(super) fn new(stream: TcpStream, prefix: Bytes, state: Arc<ConnState>) -> ConnIo {
        ConnIo {
            prefix,
            stream,
            state,
        }
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
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &r {
            Poll::Pending => this.state.read_empty.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.state.read_empty.store(false, Ordering::Relaxed)
            }
            Poll::Ready(_) => {}
        }
        r
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            this.state.flushed.store(true, Ordering::Relaxed);
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a fresh connection's first bytes say.
pub(super) enum Sniffed {
    /// The HTTP/2 connection preface (all of it, to be replayed to hyper).
    H2(Bytes),
    /// Anything else: HTTP/1 (the bytes read so far).
    Http1(Bytes),
    /// Closed (or failed) before sending anything, or silent too long.
    Gone,
}

/// Wait for a fresh connection's first bytes and read just enough of them
/// to tell HTTP/2 prior knowledge from HTTP/1.
pub(super) async fn sniff(stream: &mut TcpStream) -> Sniffed {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    let deadline = Instant::now() + IDLE_TIMEOUT;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        let read = match tokio::time::timeout_at(deadline, stream.read(rest)).await {
            Ok(Ok(read)) => read,
            Ok(Err(_)) | Err(_) => return Sniffed::Gone,
        };
        if read == 0 {
            break;
        }
        n += read;
        if buf.get(..n) != H2_PREFACE.get(..n) {
            break;
        }
    }
    let seen = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
    if n == 0 {
        Sniffed::Gone
    } else if seen.as_ref() == H2_PREFACE {
        Sniffed::H2(seen)
    } else {
        Sniffed::Http1(seen)
    }
}

/// Serve HTTP/1 on `stream` (whose first bytes, already read, are `pending`)
/// until the client closes, stays silent for `idle` ([`IDLE_TIMEOUT`]), or
/// `shutdown` fires (then the request in progress is finished first). hyper
/// holds the connection only while a request is in progress, and for
/// `linger` after (see [`LINGER`] and the module docs).
///
/// A request head must be complete within about `linger + idle` of its
/// first bytes, even trickled: hyper lets go of a connection `linger` after
/// its last request whatever bytes arrive meanwhile, and the head's deadline
/// carries over from one hyper connection to the next. So hyper's own header
/// read timer (armed for every request) is not needed here.
pub(super) async fn serve_http1<S>(
    builder: &http1::Builder,
    mut stream: TcpStream,
    mut pending: Bytes,
    state: Arc<ConnState>,
    service: S,
    shutdown: &Shutdown,
    (linger, idle): (Duration, Duration),
) -> Result<(), hyper::Error>
where
    S: HttpService<Incoming, ResBody = TrackedBody> + Clone + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // When a request head started arriving and is still incomplete: its
    // time limit carries over from one hyper connection to the next.
    let mut head_deadline: Option<Instant> = None;
    let mut needs_read = pending.is_empty();
    loop {
        if needs_read {
            let deadline = head_deadline.unwrap_or_else(|| Instant::now() + idle);
            tokio::select! {
                biased;
                _ = shutdown.wait() => return Ok(()),
                r = tokio::time::timeout_at(deadline, stream.readable()) => match r {
                    Ok(Ok(())) => {}
                    // Silent too long, or the socket failed: close.
                    Ok(Err(_)) | Err(_) => return Ok(()),
                },
            }
        }
        state.reset();
        let io = ConnIo::new(stream, std::mem::take(&mut pending), state.clone());
        // Boxed: the state of an idle connection's task stays small.
        let mut conn = Box::new(builder.serve_connection(TokioIo::new(io), service.clone()));
        let mut stop = pin!(shutdown.stop());
        let mut draining = false;
        // Armed when hyper first goes idle, with the request count then; when
        // it fires, hyper is let go if no request came in the meantime, else
        // it is armed again. So a busy connection costs one timer per
        // `linger`, not one per request.
        let mut timer = pin!(tokio::time::sleep(linger));
        let mut armed: Option<usize> = None;
        let done = poll_fn(|cx| {
            if !draining && stop.as_mut().poll(cx).is_ready() {
                draining = true;
                Pin::new(&mut *conn).graceful_shutdown();
            }
            match Pin::new(&mut *conn).poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if !draining && state.is_idle() => {
                    let seen = state.requests.load(Ordering::Relaxed);
                    if armed.is_none() {
                        armed = Some(seen);
                        timer.as_mut().reset(Instant::now() + linger);
                    }
                    while timer.as_mut().poll(cx).is_ready() {
                        if armed == Some(seen) {
                            return Poll::Ready(None);
                        }
                        armed = Some(seen);
                        timer.as_mut().reset(Instant::now() + linger);
                    }
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if let Some(result) = done {
            return result;
        }
        // Between requests: keep the socket and any unparsed bytes, drop
        // hyper's buffers.
        let parts = conn.into_parts();
        let io = parts.io.into_inner();
        stream = io.stream;
        pending = join(parts.read_buf, io.prefix);
        // hyper has already tried to parse what it read: more bytes must
        // come before anything can happen, within the head's time limit.
        needs_read = true;
        head_deadline = if pending.is_empty() {
            None
        } else {
            Some(head_deadline.unwrap_or_else(|| Instant::now() + idle))
        };
    }
}

/// `a` then `b`, in a buffer of their size: `a` is hyper's frozen read
/// buffer, which would keep all of its 8 KB alive even when empty.
fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() && b.is_empty() {
        return Bytes::new();
    }
    let mut both = BytesMut::with_capacity(a.len() + b.len());
    both.extend_from_slice(&a);
    both.extend_from_slice(&b);
    both.freeze()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A service answering `ok <n>` (n counts requests), counting its clones:
    /// one per hyper connection built.
    #[derive(Debug)]
    struct Echo {
        state: Arc<ConnState>,
        clones: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
    }

    impl Clone for Echo {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Echo {
                state: self.state.clone(),
                clones: self.clones.clone(),
                requests: self.requests.clone(),
            }
        }
    }

    impl hyper::service::Service<Request<Incoming>> for Echo {
        type Response = Response<TrackedBody>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn call(&self, req: Request<Incoming>) -> Self::Future {
            let guard = self.state.begin(!req.body().is_end_stream());
            let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                // Read the whole request body, as a proxy forwarding it would.
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let len = body.map(|b| b.len()).unwrap_or_default();
                let text = format!("ok {n} {len}");
                let body = Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed();
                Ok(Response::new(TrackedBody::new(body, None, Some(guard))))
            })
        }
    }

    /// What the tests let hyper linger: short, so that they see it go.
    const SHORT: Duration = Duration::from_millis(10);
    /// Long enough to wait for well past [`SHORT`], whatever the load.
    const WAIT: Duration = Duration::from_millis(200);

    /// A server on 127.0.0.1:0 serving one connection with `serve_http1`;
    /// returns its address and the hyper-connection count.
    async fn server(linger: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>, Shutdown) {
        server_idle(linger, IDLE_TIMEOUT).await
    }

    /// [`server`] closing connections silent (or with a head incomplete)
    /// for `idle`.
    async fn server_idle(
        linger: Duration,
        idle: Duration,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>, Shutdown) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clones = Arc::new(AtomicUsize::new(0));
        let shutdown = Shutdown::new();
        let (c, s) = (clones.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let Sniffed::Http1(head) = sniff(&mut stream).await else {
                return;
            };
            let state = Arc::new(ConnState::default());
            let svc = Echo {
                state: state.clone(),
                clones: c,
                requests: Arc::default(),
            };
            // As the proxy's: no header read timer of hyper's.
            let mut builder = http1::Builder::new();
            builder.header_read_timeout(None);
            let _ = serve_http1(&builder, stream, head, state, svc, &s, (linger, idle)).await;
        });
        (addr, clones, shutdown)
    }

    /// Read until `n` complete `ok ...` responses arrived (bounded).
    async fn read_responses(s: &mut TcpStream, n: usize) -> String {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while String::from_utf8_lossy(&got)
            .matches("HTTP/1.1 200")
            .count()
            < n
            || !String::from_utf8_lossy(&got).ends_with(|c: char| c.is_ascii_digit())
        {
            let mut buf = [0u8; 1024];
            let r = tokio::time::timeout_at(deadline, s.read(&mut buf)).await;
            let n = r.expect("responses in time").unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn keep_alive_requests_each_get_a_fresh_hyper_connection() {
        let (addr, clones, _shutdown) = server(SHORT).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        for i in 1..=3 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let r = read_responses(&mut s, 1).await;
            assert!(r.ends_with(&format!("ok {i} 0")), "{r}");
            // The connection goes idle: hyper is dropped before the next request.
            tokio::time::sleep(WAIT).await;
        }
        assert_eq!(clones.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn back_to_back_requests_keep_the_hyper_connection() {
        let (addr, clones, _shutdown) = server(Duration::from_secs(30)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        for i in 1..=5 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let r = read_responses(&mut s, 1).await;
            assert!(r.ends_with(&format!("ok {i} 0")), "{r}");
        }
        // Well within the linger of each other: one hyper connection for all.
        assert_eq!(clones.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn pipelined_and_split_requests_survive_the_hand_back() {
        let (addr, _clones, _shutdown) = server(SHORT).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Two requests in one write, and the head of a third.
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let r = read_responses(&mut s, 2).await;
        assert!(r.contains("ok 1 0") && r.ends_with("ok 2 0"), "{r}");
        // The rest of the third head comes later, after hyper let go.
        tokio::time::sleep(WAIT).await;
        s.write_all(b"st: x\r\n\r\n").await.unwrap();
        let r = read_responses(&mut s, 1).await;
        assert!(r.ends_with("ok 3 0"), "{r}");
    }

    #[tokio::test]
    async fn requests_with_bodies_then_without() {
        let (addr, clones, _shutdown) = server(SHORT).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.write_all(b"56789").await.unwrap();
        let r = read_responses(&mut s, 1).await;
        assert!(r.ends_with("ok 1 10"), "{r}");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1).await;
        assert!(r.ends_with("ok 2 0"), "{r}");
        // After a body-less request the connection lets go of hyper again.
        tokio::time::sleep(WAIT).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1).await;
        assert!(r.ends_with("ok 3 0"), "{r}");
        assert!(clones.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_connection() {
        let (addr, _clones, shutdown) = server(SHORT).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_responses(&mut s, 1).await;
        tokio::time::sleep(WAIT).await;
        shutdown.trigger();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    /// A head trickled byte by byte, slower and faster than hyper lingers,
    /// never completed: the connection is closed within `linger + idle` of
    /// its first byte, not kept open by the trickle.
    #[tokio::test]
    async fn a_trickled_head_is_closed_in_bounded_time() {
        let idle = Duration::from_millis(400);
        for (linger, every) in [(SHORT, Duration::from_millis(40)), (WAIT, SHORT)] {
            let (addr, _clones, _shutdown) = server_idle(linger, idle).await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            // A first request, answered, then a head that never ends.
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            read_responses(&mut s, 1).await;
            let start = Instant::now();
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
            let mut closed = false;
            for b in head.iter().cycle().take(500) {
                if s.write_all(&[*b]).await.is_err() {
                    closed = true;
                    break;
                }
                // A closed socket reads as end of stream (or reset).
                let mut buf = [0u8; 64];
                match tokio::time::timeout(every, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        closed = true;
                        break;
                    }
                    Ok(Ok(_)) => panic!("a response to an incomplete head"),
                    Err(_) => {}
                }
                if start.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
            let took = start.elapsed();
            assert!(closed, "still open after {took:?} (linger {linger:?})");
            assert!(
                took >= idle && took < Duration::from_secs(3),
                "closed after {took:?}, idle {idle:?}"
            );
        }
    }

    #[tokio::test]
    async fn sniff_tells_h2_prior_knowledge_from_http1() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, h2) in [(&H2_PREFACE[..], true), (&b"GET / HTTP/1.1\r\n"[..], false)] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            // In two pieces: the sniffer must wait for enough bytes.
            let (a, b) = sent.split_at(3);
            c.write_all(a).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            c.write_all(b).await.unwrap();
            match sniff(&mut s).await {
                Sniffed::H2(p) => assert!(h2 && p.as_ref() == H2_PREFACE),
                Sniffed::Http1(p) => assert!(!h2 && sent.starts_with(&p)),
                Sniffed::Gone => panic!("gone"),
            }
        }
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        drop(c);
        assert!(matches!(sniff(&mut s).await, Sniffed::Gone));
    }
}
