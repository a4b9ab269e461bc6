//! HTTP/1.1 connections to one endpoint: Switchyard's own keep-alive pool.
//!
//! One [`Pool`] per endpoint, held in the endpoint's state, so a request
//! finds its connections without a map lookup or a hashed key. Connections
//! run over TCP (or TLS for `client.tls`) and speak HTTP/1.1 through
//! [`super::h1`]: no task of their own; the request that uses one writes on
//! it and reads its response head, and the response body reads the rest.
//! Requests go in origin form (`/path?query`) with their headers as given
//! (the `Host` header is the caller's).
//!
//! * **Reuse.** A connection goes back to the pool in the poll that reads
//!   the end of its response body (at once for a response without one),
//!   and only if the response did not ask to close it and nothing stray
//!   follows it; a body dropped before its end closes the connection.
//!   Checkout takes the most recently used connection, after a look at its
//!   socket (no syscall unless it has an event): one the endpoint closed,
//!   or that has bytes nobody asked for, is dropped, and the next is tried.
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
//!   the same way. (A close that arrived while the connection sat idle is
//!   seen at checkout, before anything is written.)

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::h1::{Answer, Connection, Decoder, Io, Outgoing};
use super::params::PoolParams;
use super::upstream::{Unprocessed, UpstreamError, connect_tcp, tls_error};
use crate::proxy::headers::Verbatim;
use crate::proxy::{BoxError, ProxyBody};
use crate::tls::client::UpstreamTls;

/// Idle connections are closed after this when `idleTimeMs` is unset.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// How often a keeper looks again after a failed connect, and checks that
/// its endpoint is still in the set.
const KEEPER_TICK: Duration = Duration::from_millis(500);

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

/// One connection, and what the pool knows of its history.
#[derive(Debug)]
struct Conn {
    h1: Connection,
    /// Exchanges begun on it.
    uses: u64,
    /// Opened ahead of need (`minSize`).
    spare: bool,
    /// Counts it as open until it is dropped (closed).
    pool: Weak<Pool>,
}

impl Conn {
    /// Whether it sat idle, open, before the current exchange: kept alive
    /// after an earlier one or opened ahead of need.
    fn was_idle(&self) -> bool {
        self.uses > 1 || (self.spare && self.uses == 1)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the socket closes the connection.
        if let Some(p) = self.pool.upgrade() {
            p.open.fetch_sub(1, Ordering::AcqRel);
            p.closed.notify_one();
        }
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

    /// Send a request on an idle connection, or a new one. The response's
    /// body returns the connection when read to the end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut conn = match self.take() {
            Some(c) => c,
            // Boxed: connecting (TLS included) is rare and its state large;
            // inline, it would size every request's future.
            None => Box::pin(self.connect(false)).await?,
        };
        conn.uses += 1;
        match conn.h1.send(req, body).await {
            Ok(Answer {
                head,
                verbatim,
                body,
                reusable,
            }) => {
                let mut pooled = PooledBody {
                    kind: Kind::H1 {
                        conn: Some(conn),
                        dec: body,
                        reusable,
                        pool: self.clone(),
                    },
                    verbatim,
                };
                // A response without a body gives its connection back now.
                pooled.release_if_done();
                Ok(head.map(|()| pooled))
            }
            Err(err) => {
                let mut u = tls_error(false, &err);
                if !u.connect && conn.was_idle() && !conn.h1.answered() && reset_in_chain(&err) {
                    u.unprocessed = Some(Unprocessed::Stale);
                }
                Err(u)
            }
        }
    }

    /// The most recently returned connection that is still open; closed
    /// ones found on the way are dropped.
    fn take(&self) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        while let Some(mut c) = idle.conns.pop() {
            if c.conn.h1.is_idle_open() {
                return Some(c.conn);
            }
        }
        None
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
            since: crate::clock::coarse(),
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
        // Dropping a connection closes it.
        drop(expired);
        next
    }

    /// A new connection to the endpoint.
    async fn connect(self: &Arc<Self>, spare: bool) -> Result<Conn, UpstreamError> {
        let addr = self.addr;
        let stream = connect_tcp(addr).await?;
        let io = match &self.settings.tls {
            None => Io::Plain(stream),
            Some(tls) => Io::Tls(Box::new(
                tls.connect(stream, addr)
                    .await
                    .map_err(|f| UpstreamError::new(true, f.to_string()))?,
            )),
        };
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Conn {
            h1: Connection::new(io),
            uses: 0,
            spare,
            pool: Arc::downgrade(self),
        })
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
    let mut next = crate::clock::coarse() + idle_time;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(p) = pool.upgrade() else { return };
        match p.reap(crate::clock::coarse()) {
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

/// A response body from an endpoint; an HTTP/1.1 one gives its connection
/// back to the pool once read to the end (dropped before, the connection
/// is closed).
#[derive(Debug)]
pub(crate) struct PooledBody {
    kind: Kind,
    /// The response's header lines, until the client takes them
    /// ([`PooledBody::take_verbatim`]): carried here so that the
    /// response's type is the same whichever way its headers came.
    verbatim: Option<Verbatim>,
}

#[derive(Debug)]
enum Kind {
    H1 {
        /// `None` once the body has ended.
        conn: Option<Conn>,
        dec: Decoder,
        /// Whether the response lets the connection carry another exchange.
        reusable: bool,
        pool: Arc<Pool>,
    },
    H2(Incoming),
}

impl PooledBody {
    /// A body with no connection to return (HTTP/2).
    pub(crate) fn unpooled(inner: Incoming) -> PooledBody {
        PooledBody {
            kind: Kind::H2(inner),
            verbatim: None,
        }
    }

    /// The response's header lines when they were kept as the endpoint
    /// sent them ([`super::h1::Outgoing::verbatim`]).
    pub(crate) fn take_verbatim(&mut self) -> Option<Verbatim> {
        self.verbatim.take()
    }

    /// Once the body has ended: its connection back to the pool, when the
    /// response allows and nothing stray follows it; else closed.
    fn release_if_done(&mut self) {
        if let Kind::H1 {
            conn,
            dec,
            reusable,
            pool,
        } = &mut self.kind
            && dec.is_done()
            && let Some(c) = conn.take()
            && *reusable
            && !c.h1.has_leftover()
        {
            pool.insert(c);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::H2(inner) => Pin::new(inner).poll_frame(cx).map_err(BoxError::from),
            Kind::H1 { conn, dec, .. } => {
                let Some(c) = conn else {
                    return Poll::Ready(None);
                };
                let r = c.h1.poll_body(cx, dec);
                match &r {
                    Poll::Ready(Some(Err(_))) => {
                        // Closed: the connection cannot carry another.
                        *conn = None;
                        *dec = Decoder::Done;
                    }
                    Poll::Ready(_) => self.release_if_done(),
                    Poll::Pending => {}
                }
                r.map_err(BoxError::from)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::H2(inner) => inner.is_end_stream(),
            Kind::H1 { dec, .. } => dec.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::H2(inner) => inner.size_hint(),
            Kind::H1 { dec, .. } => match dec.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::header::CONNECTION;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

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

    impl Pool {
        /// [`Pool::send`] for a whole request (its URI in origin form).
        async fn send_req(
            self: &Arc<Self>,
            req: Request<ProxyBody>,
        ) -> Result<Response<PooledBody>, UpstreamError> {
            let (parts, body) = req.into_parts();
            let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let out = Outgoing {
                method: &parts.method,
                target,
                headers: &parts.headers,
                added: &[],
                verbatim: false,
                lines: None,
            };
            self.send(out, body).await
        }
    }

    async fn get(pool: &Arc<Pool>, path: &str) -> Result<String, UpstreamError> {
        let resp = pool.send_req(request(path)).await?;
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
        let resp = p.send_req(request("/")).await.unwrap();
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
            held.push(p.send_req(request("/")).await.unwrap());
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
                    if !read_head(&mut stream).await {
                        return;
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

    /// Read up to the end of a request head (and maybe beyond); `false`
    /// when the connection ended first.
    async fn read_head(stream: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => head.extend_from_slice(&buf[..k]),
            }
        }
        true
    }

    /// One raw request (head and body) off `stream`, or `None` at its end.
    async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let body_end = if let Some(cl) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                {
                    let n: usize = cl.trim().parse().unwrap();
                    (buf.len() >= end + 4 + n).then_some(end + 4 + n)
                } else if head.contains("transfer-encoding: chunked") {
                    buf[end..]
                        .windows(5)
                        .position(|w| w == b"0\r\n\r\n")
                        .map(|p| end + p + 5)
                        .or_else(|| {
                            // Trailers after the last chunk.
                            let tail = &buf[end + 4..];
                            let last = tail.windows(3).position(|w| w == b"\n0\r")?;
                            let rest = &tail[last..];
                            rest.windows(4)
                                .position(|w| w == b"\r\n\r\n")
                                .map(|p| end + 4 + last + p + 4)
                        })
                } else {
                    Some(end + 4)
                };
                if let Some(e) = body_end {
                    return Some(buf.drain(..e).collect());
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// A backend on 127.0.0.1:0 that answers the n-th request of each
    /// connection with `answers[n]` (closing after the last), and records
    /// every request as it came.
    async fn scripted(answers: Vec<&'static str>) -> (SocketAddr, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                s.accepts.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for a in &answers {
                        let Some(req) = read_request(&mut stream, &mut buf).await else {
                            break;
                        };
                        lock(&s.targets)
                            .push((String::from_utf8_lossy(&req).into_owned(), String::new()));
                        if stream.write_all(a.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    drop(stream);
                    s.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn responses_that_end_their_connection_are_not_reused() {
        // The backend would answer a second request on the connection
        // (except after a body framed by the end of the connection).
        for (answer, per_conn) in [
            ("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", 2),
            (
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\nok",
                2,
            ),
            ("HTTP/1.1 200 OK\r\n\r\nok", 1),
        ] {
            let (addr, seen) = scripted(vec![answer; per_conn]).await;
            let p = pool(addr, PoolParams::default());
            assert_eq!(get(&p, "/").await.unwrap(), "ok", "{answer:?}");
            assert_eq!(get(&p, "/").await.unwrap(), "ok", "{answer:?}");
            assert_eq!(seen.accepts.load(Ordering::SeqCst), 2, "{answer:?}");
            assert_eq!(p.idle(), 0);
        }
    }

    #[tokio::test]
    async fn chunked_interim_and_bodiless_responses_keep_their_connection() {
        let (addr, seen) = scripted(vec![
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-a: 1\r\n\r\nnext",
            "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ])
        .await;
        let p = pool(addr, PoolParams::default());
        let resp = p.send_req(request("/chunked")).await.unwrap();
        let body = resp.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(body.to_bytes(), "hello world");
        let resp = p.send_req(request("/interim")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-a"], "1");
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "next");
        let resp = p.send_req(request("/empty")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(resp.body().is_end_stream());
        // Given back at once: nothing to read.
        assert_eq!(p.idle(), 1);
        assert_eq!(get(&p, "/last").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_head_response_has_no_body() {
        let (addr, seen) = scripted(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ])
        .await;
        let p = pool(addr, PoolParams::default());
        let mut req = request("/");
        *req.method_mut() = http::Method::HEAD;
        let resp = p.send_req(req).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "10");
        assert!(resp.body().is_end_stream());
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bad_responses_are_errors_and_close_the_connection() {
        for answer in [
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
            "NOT HTTP\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nok",
        ] {
            let (addr, seen) = scripted(vec![answer]).await;
            let p = pool(addr, PoolParams::default());
            let got = match p.send_req(request("/")).await {
                Ok(resp) => resp
                    .into_body()
                    .collect()
                    .await
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(e.cause),
            };
            assert!(got.is_some(), "{answer:?} was accepted");
            until("closed", || p.open() == 0).await;
            assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn request_bodies_are_framed_by_their_length_or_chunked() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, seen) = scripted(vec![ok, ok, ok, ok, ok]).await;
        let p = pool(addr, PoolParams::default());
        let send = |method: http::Method, body: ProxyBody| {
            let mut req = request("/up");
            *req.method_mut() = method;
            *req.body_mut() = body;
            p.send_req(req)
        };
        let full = |b: &'static str| {
            Full::new(Bytes::from_static(b.as_bytes()))
                .map_err(|never| match never {})
                .boxed()
        };
        for (method, body) in [
            (http::Method::POST, full("hello")),
            (
                http::Method::POST,
                Empty::new().map_err(|never| match never {}).boxed(),
            ),
            (
                http::Method::GET,
                Empty::new().map_err(|never| match never {}).boxed(),
            ),
        ] {
            let resp = send(method, body).await.unwrap();
            let _ = resp.into_body().collect().await.unwrap();
        }
        // A body of unknown length, in two chunks, with trailers.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let streamed = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed();
        let sending = tokio::spawn({
            let p = p.clone();
            async move {
                let mut req = request("/up");
                *req.method_mut() = http::Method::PUT;
                *req.body_mut() = streamed;
                let resp = p.send_req(req).await.unwrap();
                resp.into_body().collect().await.unwrap().to_bytes()
            }
        });
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"defgh"))))
            .await
            .unwrap();
        let mut t = http::HeaderMap::new();
        t.insert("x-sum", http::HeaderValue::from_static("7"));
        tx.send(Ok(Frame::trailers(t))).await.unwrap();
        drop(tx);
        assert_eq!(sending.await.unwrap(), "ok");
        let got: Vec<String> = lock(&seen.targets).iter().map(|t| t.0.clone()).collect();
        assert_eq!(
            got[0],
            "POST /up HTTP/1.1\r\nhost: web\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert_eq!(
            got[1],
            "POST /up HTTP/1.1\r\nhost: web\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(got[2], "GET /up HTTP/1.1\r\nhost: web\r\n\r\n");
        assert_eq!(
            got[3],
            "PUT /up HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n\
             3\r\nabc\r\n5\r\ndefgh\r\n0\r\nx-sum: 7\r\n\r\n"
        );
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn large_pieces_of_a_body_are_framed_like_small_ones() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, seen) = scripted(vec![ok, ok]).await;
        let p = pool(addr, PoolParams::default());
        let big = Bytes::from(vec![b'a'; 20_000]);
        for declared in [None, Some("20003")] {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            let mut req = request("/up");
            *req.method_mut() = http::Method::PUT;
            if let Some(n) = declared {
                req.headers_mut()
                    .insert("content-length", http::HeaderValue::from_static(n));
            }
            *req.body_mut() = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed();
            tx.send(Ok(Frame::data(big.clone()))).await.unwrap();
            tx.send(Ok(Frame::data(Bytes::from_static(b"bcd"))))
                .await
                .unwrap();
            drop(tx);
            let resp = p.send_req(req).await.unwrap();
            let _ = resp.into_body().collect().await.unwrap();
        }
        let got: Vec<String> = lock(&seen.targets).iter().map(|t| t.0.clone()).collect();
        let a = "a".repeat(20_000);
        assert_eq!(
            got[0],
            format!(
                "PUT /up HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n\
                 4e20\r\n{a}\r\n3\r\nbcd\r\n0\r\n\r\n"
            )
        );
        assert_eq!(
            got[1],
            format!("PUT /up HTTP/1.1\r\nhost: web\r\ncontent-length: 20003\r\n\r\n{a}bcd")
        );
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 1);
    }

    /// A body stream out of a channel's receiver.
    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_body_longer_than_its_content_length_is_an_error() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, _seen) = scripted(vec![ok]).await;
        let p = pool(addr, PoolParams::default());
        let mut req = request("/up");
        *req.method_mut() = http::Method::POST;
        req.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("2"));
        *req.body_mut() = Full::new(Bytes::from_static(b"too long"))
            .map_err(|never| match never {})
            .boxed();
        let e = p.send_req(req).await.unwrap_err();
        assert!(
            e.cause.contains("longer than its content-length"),
            "{}",
            e.cause
        );
        until("closed", || p.open() == 0).await;
    }

    #[tokio::test]
    async fn an_early_answer_stops_the_upload() {
        // Answers 413 as soon as the head is in, reads nothing more, and
        // keeps the connection open.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if !read_head(&mut stream).await {
                        return;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 413 Too Large\r\ncontent-length: 3\r\n\r\nbig")
                        .await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        let p = pool(addr, PoolParams::default());
        // 64 MB in 64 KB chunks: far more than the socket buffers hold.
        let chunks =
            (0..1024).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; 65536]))));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed();
        let mut req = request("/up");
        *req.method_mut() = http::Method::POST;
        *req.body_mut() = body;
        let resp = tokio::time::timeout(Duration::from_secs(5), p.send_req(req))
            .await
            .expect("the early answer was not seen")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "big");
        // The rest of the body was never sent: not reused.
        assert_eq!(p.idle(), 0);
    }

    #[tokio::test]
    async fn an_idle_connection_the_endpoint_closed_is_not_used() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        // Answers one request per connection, then closes it.
        let (addr, seen) = scripted(vec![ok]).await;
        let p = pool(addr, PoolParams::default());
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        until("closed by the backend", || {
            seen.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Not an error: the closed one is noticed before the request is written.
        assert_eq!(get(&p, "/").await.unwrap(), "ok");
        assert_eq!(seen.accepts.load(Ordering::SeqCst), 2);
        assert_eq!(lock(&seen.targets).len(), 2);
    }

    #[test]
    fn only_resets_count() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(reset_in_chain(&reset));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(!reset_in_chain(&eof));
    }
}
