//! HTTP/1.1 connections to one endpoint: Switchyard's own keep-alive pool.
//!
//! One [`Pool`] per endpoint, held in the endpoint's state, so a request
//! finds its connections without a map lookup or a hashed key. Connections
//! are made with hyper's connection API (`conn::http1`) over TCP (or TLS
//! for `client.tls`), each driven by its own task, and requests are sent in
//! origin form (`/path?query`) with their headers as given (the `Host`
//! header is the caller's).
//!
//! * **Reuse.** A connection goes back to the pool when its response body
//!   has been read to the end, and only if the response did not ask to
//!   close it; hyper marks it ready once it has finished with the exchange
//!   (usually before the body's end reaches the caller; when not, a small
//!   task waits for that and returns it). Checkout takes the most recently
//!   used connection that hyper says is ready, dropping the closed ones.
//! * **Limits.** At most `hostConnectionPool.maxSize` idle connections are
//!   kept (concurrency itself is limited by the endpoint's semaphore);
//!   connections idle for `idleTimeMs` are closed by a reaper task that
//!   runs while there are idle connections, except while no more than
//!   `minSize` connections are open: those stay as spares. A keeper task
//!   (only with `minSize`) opens connections ahead of need until `minSize`
//!   are open, and again when some close.
//! * **Stale connections.** A request that fails on a connection that sat
//!   idle before it (kept alive, or opened ahead), before any byte of its
//!   response, because the peer reset the connection, met a connection the
//!   endpoint had already dropped: the request was not read, and the client
//!   requeues it ([`Unprocessed::Stale`]). A clean close (EOF) is not
//!   enough: an application that read the request and then crashed closes
//!   the same way. A request hyper hands back unwritten (the connection
//!   closed just before it was sent) is sent again at once on another
//!   connection: nothing of it left, so it is not counted as a requeue.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::params::PoolParams;
use super::upstream::{Unprocessed, UpstreamError, connect_tcp, tls_error};
use crate::proxy::ProxyBody;
use crate::tls::client::UpstreamTls;

/// Idle connections are closed after this when `idleTimeMs` is unset.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// How often a keeper looks again after a failed connect, and checks that
/// its endpoint is still in the set.
const KEEPER_TICK: Duration = Duration::from_millis(500);

/// How many connections one request may try when hyper hands it back
/// unwritten (each time the connection closed just before it was sent).
const MAX_UNWRITTEN: usize = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every endpoint pool of one client shares: its `hostConnectionPool`
/// and TLS settings.
#[derive(Debug)]
pub(crate) struct Settings {
    idle_time: Duration,
    max_idle: usize,
    min_size: usize,
    tls: Option<UpstreamTls>,
}

impl Settings {
    /// The settings of a client's pools.
    pub(crate) fn new(pool: &PoolParams, tls: Option<&UpstreamTls>) -> Settings {
        Settings {
            idle_time: pool.idle_time.unwrap_or(DEFAULT_IDLE),
            // Spares (`minSize`) are idle connections too.
            max_idle: pool
                .max_size
                .map_or(usize::MAX, |n| n.max(pool.min_size.unwrap_or(0)) as usize),
            min_size: pool.min_size.unwrap_or(0) as usize,
            tls: tls.cloned(),
        }
    }
}

/// The keep-alive connections to one endpoint.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    settings: Arc<Settings>,
    idle: Mutex<Idle>,
    /// Connections open (idle or in use).
    open: AtomicUsize,
    /// A connection closed: the keeper may have to replace it.
    closed: Arc<Notify>,
    /// Whether the keeper (`minSize`) runs.
    keeping: AtomicBool,
}

#[derive(Debug, Default)]
struct Idle {
    /// Oldest first: returned connections are pushed, checkout pops.
    conns: Vec<IdleConn>,
    /// Whether the reaper task runs.
    reaping: bool,
}

#[derive(Debug)]
struct IdleConn {
    conn: Conn,
    since: Instant,
}

/// One connection: hyper's sender, and what the pool knows of its history.
#[derive(Debug)]
struct Conn {
    send: http1::SendRequest<ProxyBody>,
    /// Set when any byte is read; cleared when an exchange begins.
    answered: Arc<AtomicBool>,
    /// Exchanges begun on it.
    uses: u64,
    /// Opened ahead of need (`minSize`).
    spare: bool,
}

impl Conn {
    /// Whether it sat idle, open, before the current exchange: kept alive
    /// after an earlier one or opened ahead of need.
    fn was_idle(&self) -> bool {
        self.uses > 1 || (self.spare && self.uses == 1)
    }
}

impl Pool {
    /// The pool of the endpoint at `addr`.
    pub(crate) fn new(addr: SocketAddr, settings: Arc<Settings>) -> Pool {
        Pool {
            addr,
            settings,
            idle: Mutex::default(),
            open: AtomicUsize::new(0),
            closed: Arc::new(Notify::new()),
            keeping: AtomicBool::new(false),
        }
    }

    /// Connections open to the endpoint.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections idle in the pool.
    pub(crate) fn idle(&self) -> usize {
        lock(&self.idle).conns.len()
    }

    /// Send `req` (its URI in origin form) on an idle connection, or a new
    /// one. The response's body returns the connection when read to the end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = match self.take() {
                Some(c) => c,
                None => self.connect(false).await?,
            };
            conn.uses += 1;
            conn.answered.store(false, Ordering::Relaxed);
            match conn.send.try_send_request(req).await {
                Ok(resp) => {
                    let keep = reusable(&resp);
                    let lease = Lease {
                        pool: self.clone(),
                        conn: keep.then_some(conn),
                    };
                    return Ok(resp.map(|inner| PooledBody {
                        inner,
                        lease: Some(lease),
                        ended: false,
                    }));
                }
                Err(mut e) => {
                    if let Some(back) = e.take_message() {
                        // Never written: the connection closed just before.
                        if tries < MAX_UNWRITTEN {
                            req = back;
                            continue;
                        }
                        let mut u = tls_error(false, e.error());
                        u.unprocessed = Some(Unprocessed::Stale);
                        return Err(u);
                    }
                    let err = e.into_error();
                    let mut u = tls_error(false, &err);
                    if !u.connect
                        && conn.was_idle()
                        && !conn.answered.load(Ordering::Relaxed)
                        && reset_in_chain(&err)
                    {
                        u.unprocessed = Some(Unprocessed::Stale);
                    }
                    return Err(u);
                }
            }
        }
    }

    /// The most recently returned connection hyper says is ready; closed
    /// ones found on the way are dropped.
    fn take(&self) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        while let Some(c) = idle.conns.pop() {
            // An idle connection is ready until it closes.
            if c.conn.send.is_ready() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Back to the pool after a clean exchange: at once when hyper is done
    /// with it, else once it is (or never, if it closes).
    fn put(self: Arc<Self>, mut conn: Conn) {
        if conn.send.is_ready() {
            self.insert(conn);
        } else if !conn.send.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if conn.send.ready().await.is_ok() {
                    self.insert(conn);
                }
            });
        }
    }

    fn insert(self: &Arc<Self>, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.conns.len() >= self.settings.max_idle {
            drop(idle);
            drop(conn);
            return;
        }
        idle.conns.push(IdleConn {
            conn,
            since: Instant::now(),
        });
        if !idle.reaping
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            idle.reaping = true;
            rt.spawn(reaper(Arc::downgrade(self), self.settings.idle_time));
        }
    }

    /// Close the connections idle for `idleTimeMs`, keeping `minSize` open.
    /// When to look again, or `None` when nothing is idle (the reaper stops).
    fn reap(&self, now: Instant) -> Option<Instant> {
        let idle_time = self.settings.idle_time;
        let mut idle = lock(&self.idle);
        // Idle connections beyond `minSize` open may be closed.
        let closable = self.open().saturating_sub(self.settings.min_size);
        let n = idle
            .conns
            .iter()
            .take(closable)
            .take_while(|c| c.since + idle_time <= now)
            .count();
        let expired: Vec<IdleConn> = idle.conns.drain(..n).collect();
        let next = match idle.conns.first() {
            None => None,
            // Kept as spares: look again after a while.
            Some(c) if c.since + idle_time <= now => Some(now + idle_time),
            Some(c) => Some(c.since + idle_time),
        };
        idle.reaping = next.is_some();
        drop(idle);
        // Dropping hyper's sender closes the connection.
        drop(expired);
        next
    }

    /// A new connection to the endpoint, driven by its own task.
    async fn connect(self: &Arc<Self>, spare: bool) -> Result<Conn, UpstreamError> {
        let addr = self.addr;
        let stream = connect_tcp(addr).await?;
        let answered = Arc::new(AtomicBool::new(false));
        let send = match &self.settings.tls {
            None => self.handshake(stream, &answered).await?,
            Some(tls) => {
                let stream = tls
                    .connect(stream, addr)
                    .await
                    .map_err(|f| UpstreamError::new(true, f.to_string()))?;
                self.handshake(stream, &answered).await?
            }
        };
        Ok(Conn {
            send,
            answered,
            uses: 0,
            spare,
        })
    }

    async fn handshake<T>(
        self: &Arc<Self>,
        io: T,
        answered: &Arc<AtomicBool>,
    ) -> Result<http1::SendRequest<ProxyBody>, UpstreamError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(Watched {
            inner: io,
            answered: answered.clone(),
        });
        let (send, conn) = http1::Builder::new().handshake(io).await.map_err(|e| {
            let mut u = tls_error(true, &e);
            u.cause = format!("handshake with {}: {}", self.addr, u.cause);
            u
        })?;
        self.open.fetch_add(1, Ordering::AcqRel);
        let pool = Arc::downgrade(self);
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "connection ended");
            }
            if let Some(p) = pool.upgrade() {
                p.open.fetch_sub(1, Ordering::AcqRel);
                p.closed.notify_one();
            }
        });
        Ok(send)
    }

    /// Keep `minSize` connections open while the pool lives (its endpoint
    /// is in the set); started once.
    pub(crate) fn keep(self: &Arc<Self>) {
        if self.settings.min_size == 0 || self.keeping.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(keeper(Arc::downgrade(self), self.closed.clone()));
        } else {
            self.keeping.store(false, Ordering::Release);
        }
    }
}

/// Closes idle connections after `idleTimeMs` while any are idle.
async fn reaper(pool: Weak<Pool>, idle_time: Duration) {
    let mut next = Instant::now() + idle_time;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(p) = pool.upgrade() else { return };
        match p.reap(Instant::now()) {
            Some(n) => next = n,
            None => return,
        }
    }
}

/// Opens connections ahead of need until `minSize` are open.
async fn keeper(pool: Weak<Pool>, closed: Arc<Notify>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        if p.open() < p.settings.min_size {
            match p.connect(true).await {
                Ok(conn) => {
                    p.insert(conn);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(addr = %p.addr, error = %e.cause, "minSize: connect failed");
                }
            }
        }
        drop(p);
        // A connection closed, or the tick (the pool may be gone, or a
        // connect failed).
        let _ = tokio::time::timeout(KEEPER_TICK, closed.notified()).await;
    }
}

/// Whether the connection may carry another exchange after this response.
fn reusable(resp: &Response<Incoming>) -> bool {
    let (status, version, headers) = (resp.status(), resp.version(), resp.headers());
    reusable_head(status, version, headers)
}

#[cfg(test)]
fn reusable_parts(p: &http::response::Parts) -> bool {
    reusable_head(p.status, p.version, &p.headers)
}

fn reusable_head(status: StatusCode, version: Version, headers: &http::HeaderMap) -> bool {
    if status == StatusCode::SWITCHING_PROTOCOLS || version == Version::HTTP_10 {
        return false;
    }
    !headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// Whether an I/O error in `e`'s causes says the peer reset the connection.
fn reset_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A connection in use: returned to its pool by [`PooledBody`] when the
/// response has been read to the end.
#[derive(Debug)]
struct Lease {
    pool: Arc<Pool>,
    /// `None` when the response closes the connection.
    conn: Option<Conn>,
}

impl Lease {
    fn release(self) {
        if let Some(conn) = self.conn {
            self.pool.put(conn);
        }
    }
}

/// A response body from an endpoint; an HTTP/1.1 one gives its connection
/// back to the pool once read to the end (dropped before, the connection
/// is closed).
#[derive(Debug)]
pub(crate) struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
    ended: bool,
}

impl PooledBody {
    /// A body with no connection to return (HTTP/2).
    pub(crate) fn unpooled(inner: Incoming) -> PooledBody {
        PooledBody {
            inner,
            lease: None,
            ended: false,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                self.ended = true;
                if let Some(l) = self.lease.take() {
                    l.release();
                }
            }
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // The server stops polling once the body says it has ended.
        if let Some(l) = self.lease.take()
            && (self.ended || self.inner.is_end_stream())
        {
            l.release();
        }
    }
}

/// A connection's I/O, noting when response bytes arrive.
struct Watched<T> {
    inner: T,
    answered: Arc<AtomicBool>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.answered.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test backend saw.
    #[derive(Default)]
    struct Seen {
        accepts: AtomicUsize,
        closed: AtomicUsize,
        targets: Mutex<Vec<(String, String)>>,
    }

    /// A hyper HTTP/1.1 backend on 127.0.0.1:0 answering "ok", with
    /// `Connection: close` when `close`.
    async fn backend(close: bool) -> (SocketAddr, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.accepts.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let s2 = s.clone();
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        lock(&s2.targets).push((req.uri().to_string(), host));
                        async move {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                            if close {
                                r.headers_mut()
                                    .insert(CONNECTION, http::HeaderValue::from_static("close"));
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    s.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, seen)
    }

    fn pool(addr: SocketAddr, params: PoolParams) -> Arc<Pool> {
        Arc::new(Pool::new(addr, Arc::new(Settings::new(&params, None))))
    }

    fn request(path: &str) -> Request<ProxyBody> {
        let mut req = Request::new(Empty::new().map_err(|never| match never {}).boxed());
        *req.uri_mut() = path.parse().unwrap();
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("web"));
        req
    }

    async fn get(pool: &Arc<Pool>, path: &str) -> Result<String, UpstreamError> {
        let resp = pool.send(request(path)).await?;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Wait (at most 5 s) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}");
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection_in_origin_form() {
        let (addr, seen) = backend(false).await;
        let p = pool(addr, PoolParams::default());
        for i in 0..10 {
            assert_eq!(get(&p, &format!("/a/{i}?q=1")).await.unwrap(), "ok");
        }
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
        assert_eq!((p.open(), p.idle()), (1, 1));
        let targets = lock(&seen.targets).clone();
        assert_eq!(targets.len(), 10);
        assert_eq!(targets[3], ("/a/3?q=1".to_string(), "web".to_string()));
    }

    #[tokio::test]
    async fn a_connection_close_response_is_not_reused() {
        let (addr, seen) = backend(true).await;
        let p = pool(addr, PoolParams::default());
        for _ in 0..3 {
            assert_eq!(get(&p, "/").await.unwrap(), "ok");
        }
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 3);
        assert_eq!(p.idle(), 0);
        until("all closed", || p.open() == 0).await;
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (addr, seen) = backend(false).await;
        let p = pool(addr, PoolParams::default());
        let resp = p.send(request("/")).await.unwrap();
        // The body was not read: the connection cannot carry another.
        drop(resp);
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
        until("the first closed", || {
            seen.closed.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_idle_time() {
        let (addr, seen) = backend(false).await;
        let p = pool(
            addr,
            PoolParams {
                idle_time: Some(Duration::from_millis(100)),
                ..Default::default()
            },
        );
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(p.idle(), 1);
        // The backend sees the close.
        until("closed at the backend", || {
            seen.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        until("closed in the pool", || p.open() == 0 && p.idle() == 0).await;
        // The next request opens a new one, and it is kept again.
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
        assert_eq!(p.idle(), 1);
    }

    #[tokio::test]
    async fn at_most_max_size_connections_are_kept_idle() {
        let (addr, seen) = backend(false).await;
        let p = pool(
            addr,
            PoolParams {
                max_size: Some(1),
                ..Default::default()
            },
        );
        // Three responses in flight at once: three connections.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(p.send(request("/")).await.unwrap());
        }
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 3);
        for r in held {
            let _ = r.into_body().collect().await.unwrap();
        }
        // One kept, two closed.
        assert_eq!(p.idle(), 1);
        until("two closed", || seen.closed.load(Ordering::SeqCst) == 2).await;
        assert_eq!(p.open(), 1);
    }

    #[tokio::test]
    async fn min_size_spares_are_opened_ahead_and_outlive_idle_time() {
        let (addr, seen) = backend(false).await;
        let p = pool(
            addr,
            PoolParams {
                min_size: Some(2),
                idle_time: Some(Duration::from_millis(50)),
                ..Default::default()
            },
        );
        p.keep();
        until("two opened ahead", || p.idle() == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((p.open(), p.idle()), (2, 2));
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
        // Dropped: its connections close, its keeper stops.
        drop(p);
        until("spares closed", || seen.closed.load(Ordering::SeqCst) == 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
    }

    /// Answers the first request of each connection and keeps it open; when
    /// the next request arrives, drops the connection unread (a reset).
    async fn one_per_connection() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let a = accepts.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")
                        .await;
                    let _ = stream.readable().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    drop(stream);
                });
            }
        });
        (addr, accepts)
    }

    #[tokio::test]
    async fn a_kept_alive_connection_reset_before_answering_is_stale() {
        let (addr, accepts) = one_per_connection().await;
        let p = pool(addr, PoolParams::default());
        assert_eq!(get(&p, "/").await.unwrap(), "once");
        let e = get(&p, "/").await.unwrap_err();
        assert_eq!(e.unprocessed, Some(Unprocessed::Stale), "{}", e.cause);
        assert!(!e.connect);
        // A fresh connection: answered.
        assert_eq!(get(&p, "/").await.unwrap(), "once");
        assert_eq!(accepts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_fresh_connection_reset_is_not_stale() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.readable().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(stream);
            }
        });
        let p = pool(addr, PoolParams::default());
        let e = get(&p, "/").await.unwrap_err();
        assert_eq!(e.unprocessed, None, "{}", e.cause);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let p = pool(addr, PoolParams::default());
        let e = get(&p, "/").await.unwrap_err();
        assert!(e.connect, "{}", e.cause);
        assert!(e.cause.contains(&addr.to_string()), "{}", e.cause);
        assert_eq!(p.open(), 0);
    }

    #[test]
    fn close_upgrade_and_http10_responses_are_not_reused() {
        let resp = |f: &dyn Fn(&mut Response<()>)| {
            let mut r = Response::new(());
            f(&mut r);
            r
        };
        let ok = |r: Response<()>| {
            let (parts, ()) = r.into_parts();
            reusable_parts(&parts)
        };
        assert!(ok(resp(&|_| {})));
        assert!(!ok(resp(&|r| {
            r.headers_mut().insert(
                CONNECTION,
                http::HeaderValue::from_static("Keep-Alive, Close"),
            );
        })));
        assert!(!ok(resp(
            &|r| *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS
        )));
        assert!(!ok(resp(&|r| *r.version_mut() = Version::HTTP_10)));
    }

    #[test]
    fn only_resets_count() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(reset_in_chain(&reset));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(!reset_in_chain(&eof));
    }
}
