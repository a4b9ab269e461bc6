//! What the client knows about each HTTP/1.1 connection, and the connections
//! it keeps open ahead of need (`hostConnectionPool.minSize`).
//!
//! hyper-util's pool hides its connections, so two things the client needs
//! are learned here, by wrapping the connector and the connections it makes:
//!
//! * **Was a failed request sent on a stale kept-alive connection?** Each
//!   connection counts its exchanges (a write after a read starts one) and
//!   the response bytes read in the current one. A request that fails on a
//!   connection that served an earlier exchange (or waited, pre-connected,
//!   for its first), before any byte of its response, because the peer
//!   reset the connection, met a connection the endpoint had already
//!   dropped: the request was not read, and is requeued (see
//!   [`stale`]). (An exchange begins with a write after a read; an
//!   endpoint that sent part of a response head early, while the request
//!   body was still being written, and then reset the connection would
//!   look the same. Servers write heads whole; a whole head ends the
//!   request's wait before any such error.)
//! * **How many connections to an endpoint are open?** Each connection
//!   holds a count of its endpoint's open connections while it lives; a
//!   keeper task per endpoint connects ahead (spare connections, handed to
//!   the pool when it next needs one) until `minSize` are open, and again
//!   when some close. Spares are not in hyper's pool, so `idleTimeMs` does
//!   not close them; pooled connections that it closes are replaced.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often a keeper checks its spares are still open, and how long it
/// waits after a failed connect.
const KEEPER_TICK: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection's history, shared with the errors and responses that
/// name it (through hyper-util's `Connected::extra`).
#[derive(Debug)]
pub(crate) struct Track {
    /// Exchanges begun (a write after a read, or the first write).
    exchanges: AtomicU64,
    /// Response bytes read in the current exchange.
    read_in_exchange: AtomicU64,
    /// Whether the last I/O was a read (the next write begins an exchange).
    reading: AtomicBool,
    /// Made ahead of need and kept idle before its first request.
    spare: bool,
}

impl Track {
    fn new(spare: bool) -> Track {
        Track {
            exchanges: AtomicU64::new(0),
            read_in_exchange: AtomicU64::new(0),
            reading: AtomicBool::new(true),
            spare,
        }
    }

    /// Whether the connection sat idle, open, before the current exchange
    /// (kept alive after an earlier one, or made ahead of need) and nothing
    /// of the current exchange's response has been read.
    pub(crate) fn idle_before_and_unanswered(&self) -> bool {
        let exchanges = self.exchanges.load(Ordering::Relaxed);
        let reused = exchanges >= 2 || (self.spare && exchanges >= 1);
        reused && self.read_in_exchange.load(Ordering::Relaxed) == 0
    }
}

/// The `Connected::extra` that carries a connection's [`Track`].
#[derive(Clone, Debug)]
pub(crate) struct ConnTrack(pub(crate) Arc<Track>);

/// Whether a failed HTTP/1.1 request surely was not read by the endpoint:
/// hyper gave the request back unsent (`Canceled`), or the connection had
/// been idle (kept alive or pre-connected), nothing of the response came,
/// and the peer reset the connection (it closed it with our request unread).
/// A clean close (EOF) is not enough: an application that read the request
/// and then crashed closes the same way.
pub(crate) fn stale(e: &hyper_util::client::legacy::Error) -> bool {
    // hyper-util says `Canceled` only when hyper handed the request back
    // without writing it (its error kinds are not public; its text is).
    if e.to_string() == "client error (Canceled)" {
        return true;
    }
    let Some(info) = e.connect_info() else {
        return false;
    };
    let mut ext = http::Extensions::new();
    info.get_extras(&mut ext);
    let Some(ConnTrack(track)) = ext.get::<ConnTrack>() else {
        return false;
    };
    track.idle_before_and_unanswered() && reset_in_chain(e)
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

/// A connection the client made, tracked.
pub(crate) struct TrackedIo<T> {
    inner: T,
    track: Arc<Track>,
    /// Counts the connection as open to its endpoint while it lives.
    _open: Option<OpenGuard>,
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.track
                .read_in_exchange
                .fetch_add(n as u64, Ordering::Relaxed);
            self.track.reading.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> TrackedIo<T> {
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r
            && *n > 0
            && self.track.reading.swap(false, Ordering::Relaxed)
        {
            self.track.exchanges.fetch_add(1, Ordering::Relaxed);
            self.track.read_in_exchange.store(0, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
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

impl<T: Connection> Connection for TrackedIo<T> {
    /// Only what the pool needs (ALPN, proxying) and the track: the inner
    /// connection's extras (hyper-util's `HttpInfo` for TCP) would be cloned
    /// into every response's extensions, an allocation per request that
    /// nothing reads.
    fn connected(&self) -> Connected {
        let inner = self.inner.connected();
        let c = Connected::new()
            .proxy(inner.is_proxied())
            .extra(ConnTrack(self.track.clone()));
        if inner.is_negotiated_h2() {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

/// An endpoint's open connections and spares (`minSize`).
struct Endpoint<T> {
    /// Connections handed to the pool and still open.
    open: AtomicUsize,
    /// Connected ahead of need, not yet used.
    spares: Mutex<Vec<T>>,
    /// A connection closed or a spare was taken: the keeper may connect.
    changed: Notify,
    /// The endpoint left the set: its keeper stops.
    gone: AtomicBool,
}

/// Counts one open connection of an endpoint until dropped.
struct OpenGuard(Weak<dyn Opened>);

trait Opened: Send + Sync {
    fn closed(&self);
}

impl<T: Send> Opened for Endpoint<T> {
    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(e) = self.0.upgrade() {
            e.closed();
        }
    }
}

/// Whether an idle connection is still open: a read that would block says
/// yes; end of stream, an error or unasked-for bytes say no.
fn still_open<T: AsyncRead + Unpin>(io: &mut T) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(io).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// The keepers of one client's endpoints.
struct Keepers<T> {
    min: usize,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint<T>>>>,
}

/// A connector that tracks its connections, keeps `minSize` open per
/// endpoint, and hands out spares first.
pub(crate) struct Tracked<C, T> {
    inner: C,
    keepers: Option<Arc<Keepers<T>>>,
}

impl<C: Clone, T> Clone for Tracked<C, T> {
    fn clone(&self) -> Self {
        Tracked {
            inner: self.inner.clone(),
            keepers: self.keepers.clone(),
        }
    }
}

/// The endpoint a pool key's URI names (the client addresses endpoints by
/// `ip:port`).
fn addr_of(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port_u16()?))
}

impl<C, T> Tracked<C, T>
where
    C: Service<Uri, Response = TokioIo<T>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    T: AsyncRead + AsyncWrite + Connection + Unpin + Send + 'static,
{
    /// Connections made by `inner`; `min_size` kept open per endpoint that
    /// [`Tracked::keep`] is told about.
    pub(crate) fn new(inner: C, min_size: u32) -> Tracked<C, T> {
        Tracked {
            inner,
            keepers: (min_size > 0).then(|| {
                Arc::new(Keepers {
                    min: min_size as usize,
                    endpoints: Mutex::default(),
                })
            }),
        }
    }

    /// Keep `minSize` connections open to each of `addrs` (the current
    /// endpoint set); stop for endpoints no longer in it.
    pub(crate) fn keep(&self, addrs: &[SocketAddr]) {
        let Some(k) = &self.keepers else { return };
        let mut eps = lock(&k.endpoints);
        eps.retain(|a, e| {
            let keep = addrs.contains(a);
            if !keep {
                e.gone.store(true, Ordering::Release);
                e.changed.notify_one();
            }
            keep
        });
        for &addr in addrs {
            if eps.contains_key(&addr) {
                continue;
            }
            let ep = Arc::new(Endpoint {
                open: AtomicUsize::new(0),
                spares: Mutex::new(Vec::new()),
                changed: Notify::new(),
                gone: AtomicBool::new(false),
            });
            eps.insert(addr, ep.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(keeper(self.inner.clone(), addr, k.min, Arc::downgrade(&ep)));
            }
        }
    }
}

/// Keep `min` connections to `addr` open while the endpoint is in the set.
async fn keeper<C, T>(mut inner: C, addr: SocketAddr, min: usize, ep: Weak<Endpoint<T>>)
where
    C: Service<Uri, Response = TokioIo<T>> + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    T: AsyncRead + Unpin + Send + 'static,
{
    let Ok(uri) = format!("http://{addr}/").parse::<Uri>() else {
        return;
    };
    loop {
        let Some(e) = ep.upgrade() else { return };
        if e.gone.load(Ordering::Acquire) {
            return;
        }
        let have = {
            let mut spares = lock(&e.spares);
            spares.retain_mut(still_open);
            spares.len() + e.open.load(Ordering::Acquire)
        };
        if have < min {
            let ready: Result<(), BoxError> = std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into);
            let made: Result<TokioIo<T>, BoxError> = match ready {
                Ok(()) => {
                    let connecting = inner.call(uri.clone());
                    connecting.await.map_err(Into::into)
                }
                Err(err) => Err(err),
            };
            match made {
                Ok(io) => {
                    lock(&e.spares).push(io.into_inner());
                    continue;
                }
                Err(err) => {
                    tracing::debug!(%addr, error = %err, "minSize: connect failed");
                }
            }
        }
        // Wait for a change (a connection closed, a spare taken, the
        // endpoint gone) or the tick.
        let _ = tokio::time::timeout(KEEPER_TICK, e.changed.notified()).await;
    }
}

impl<C, T> Service<Uri> for Tracked<C, T>
where
    C: Service<Uri, Response = TokioIo<T>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    T: AsyncRead + AsyncWrite + Connection + Unpin + Send + 'static,
{
    type Response = TokioIo<TrackedIo<T>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let ep = self
            .keepers
            .as_ref()
            .zip(addr_of(&uri))
            .and_then(|(k, a)| lock(&k.endpoints).get(&a).cloned());
        let guard = |ep: &Arc<Endpoint<T>>| {
            ep.open.fetch_add(1, Ordering::AcqRel);
            let weak: Weak<dyn Opened> = Arc::downgrade(&(ep.clone() as Arc<dyn Opened>));
            OpenGuard(weak)
        };
        // A spare first, if one is still open.
        if let Some(ep) = &ep {
            let spare = {
                let mut spares = lock(&ep.spares);
                let mut found = None;
                while let Some(mut s) = spares.pop() {
                    if still_open(&mut s) {
                        found = Some(s);
                        break;
                    }
                }
                found
            };
            if let Some(io) = spare {
                let open = guard(ep);
                ep.changed.notify_one();
                return Box::pin(std::future::ready(Ok(TokioIo::new(TrackedIo {
                    inner: io,
                    track: Arc::new(Track::new(true)),
                    _open: Some(open),
                }))));
            }
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?.into_inner();
            let open = ep.as_ref().map(guard);
            Ok(TokioIo::new(TrackedIo {
                inner: io,
                track: Arc::new(Track::new(false)),
                _open: open,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_are_counted_and_reuse_needs_an_earlier_one() {
        let t = Track::new(false);
        let write = |t: &Track| {
            if t.reading.swap(false, Ordering::Relaxed) {
                t.exchanges.fetch_add(1, Ordering::Relaxed);
                t.read_in_exchange.store(0, Ordering::Relaxed);
            }
        };
        let read = |t: &Track, n: u64| {
            t.read_in_exchange.fetch_add(n, Ordering::Relaxed);
            t.reading.store(true, Ordering::Relaxed);
        };
        write(&t);
        // The first exchange on a fresh connection is never "stale".
        assert!(!t.idle_before_and_unanswered());
        read(&t, 10);
        write(&t);
        write(&t);
        assert_eq!(t.exchanges.load(Ordering::Relaxed), 2);
        assert!(t.idle_before_and_unanswered());
        read(&t, 1);
        assert!(!t.idle_before_and_unanswered(), "part of a response came");
        // A pre-connected spare is idle before its first exchange.
        let s = Track::new(true);
        write(&s);
        assert!(s.idle_before_and_unanswered());
    }

    #[test]
    fn only_resets_count() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(reset_in_chain(&reset));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(!reset_in_chain(&eof));
    }

    /// A connector over in-memory pipes; the test holds the far ends.
    #[derive(Clone, Default)]
    struct Pipes {
        made: Arc<AtomicUsize>,
        far: Arc<Mutex<Vec<tokio::io::DuplexStream>>>,
    }

    struct PipeIo(tokio::io::DuplexStream);

    impl AsyncRead for PipeIo {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for PipeIo {
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
    }

    impl Connection for PipeIo {
        fn connected(&self) -> Connected {
            Connected::new()
        }
    }

    impl Service<Uri> for Pipes {
        type Response = TokioIo<PipeIo>;
        type Error = io::Error;
        type Future = std::future::Ready<io::Result<TokioIo<PipeIo>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let (near, far) = tokio::io::duplex(64);
            self.made.fetch_add(1, Ordering::SeqCst);
            lock(&self.far).push(far);
            std::future::ready(Ok(TokioIo::new(PipeIo(near))))
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn min_size_opens_ahead_hands_out_spares_and_replaces_closed_ones() {
        let pipes = Pipes::default();
        let mut c = Tracked::new(pipes.clone(), 2);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let uri: Uri = "http://127.0.0.1:9/".parse().unwrap();
        c.keep(&[addr]);
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 2, "two opened ahead");
        // Idle for a long time: nothing closes, nothing more is opened.
        tokio::time::advance(Duration::from_secs(600)).await;
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 2);
        // The pool takes a spare (no new connection for it); one is open,
        // one spare: still two, nothing more.
        let used = c.call(uri.clone()).await.unwrap();
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 2);
        // The used one closes: replaced at once.
        drop(used);
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 3);
        // A spare the endpoint closed is found at the next tick and replaced.
        lock(&pipes.far).clear();
        tokio::time::advance(KEEPER_TICK).await;
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 5);
        // The endpoint leaves the set: its keeper stops.
        c.keep(&[]);
        lock(&pipes.far).clear();
        tokio::time::advance(KEEPER_TICK * 4).await;
        settle().await;
        assert_eq!(pipes.made.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn pool_keys_name_endpoints() {
        let u: Uri = "http://127.0.0.1:8080/".parse().unwrap();
        assert_eq!(addr_of(&u), Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        let u: Uri = "http://[::1]:80/".parse().unwrap();
        assert_eq!(addr_of(&u).map(|a| a.port()), Some(80));
        let u: Uri = "http://web/".parse().unwrap();
        assert_eq!(addr_of(&u), None);
    }
}
