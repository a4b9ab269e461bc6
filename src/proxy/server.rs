//! Listeners and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::BoxError;
use super::conn::{ConnIo, Sniffed, TrackedBody, sniff};
use super::forward::Forwarder;
use super::headers::{RoutingHeaders, Writer};
use crate::routing::{Protocol, Router, ServerParams};
use crate::telemetry::ServerTelemetry;
use crate::tls::server::Negotiated;

/// A shutdown trigger shared by every server and the admin endpoint.
///
/// Cloning shares it; [`Shutdown::trigger`] wakes every [`Shutdown::wait`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<Trigger>,
}

#[derive(Debug)]
struct Trigger {
    tx: watch::Sender<bool>,
    /// Set before `tx` says so: what [`Stop`] checks on every poll.
    pulled: AtomicBool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A trigger not yet pulled.
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(Trigger {
                tx: watch::channel(false).0,
                pulled: AtomicBool::new(false),
            }),
        }
    }

    /// Start shutting down: servers stop accepting and drain.
    pub fn trigger(&self) {
        self.inner.pulled.store(true, Ordering::Release);
        self.inner.tx.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.pulled.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.inner.tx.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|v| *v).await;
    }

    /// [`Shutdown::wait`] for a connection's loop, polled on every wake of
    /// its task: polling the wait itself takes a lock shared by every
    /// connection each time, [`Stop`] only an atomic load once it is
    /// registered.
    pub(super) fn stop(&self) -> Stop<'_, impl Future<Output = ()> + '_> {
        Stop {
            shutdown: self,
            wait: self.wait(),
            waker: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`Shutdown::stop`]. The wait is polled again only when shutdown
    /// has started or the task's waker is not the one it registered.
    pub(super) struct Stop<'a, F> {
        shutdown: &'a Shutdown,
        #[pin]
        wait: F,
        waker: Option<Waker>,
    }
}

impl<F: Future<Output = ()>> Future for Stop<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Some(w) = this.waker.as_ref()
            && w.will_wake(cx.waker())
            && !this.shutdown.is_triggered()
        {
            return Poll::Pending;
        }
        let polled = this.wait.poll(cx);
        if polled.is_pending() {
            *this.waker = Some(cx.waker().clone());
        }
        polled
    }
}

/// Trigger `shutdown` on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_on_signals(shutdown: Shutdown) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = shutdown.wait() => return,
                }
            }
            _ => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = shutdown.wait() => return,
        }
    }
    tracing::info!("signal received, shutting down");
    shutdown.trigger();
}

/// What every connection of one server shares.
pub(super) struct ServerCtx {
    forwarder: Forwarder,
    telemetry: ServerTelemetry,
    protocol: Protocol,
    tls: Option<crate::tls::ServerTls>,
    /// HTTP/1 over TLS is hyper's, with its header read timeout bounding a
    /// slow head. (Plain HTTP/1 is our own: [`super::h1`].)
    h1_tls: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    pub(super) shutdown: Shutdown,
    /// Whether our HTTP/1.1 server may keep a request's header lines as
    /// sent ([`super::headers::RequestLines`]): not when a tracer reads
    /// them, nor on an h2 router (gRPC deadlines are read from them).
    pub(super) lines_ok: bool,
}

impl ServerCtx {
    /// Forward one request from `peer`, with its telemetry around it; the
    /// response is written by `writer` (see [`super::headers::Appended`]).
    ///
    /// The request's head is lent, not moved: every async layer a value is
    /// handed to copies it into its own state, and a head is 224 bytes.
    pub(super) async fn respond<B>(
        &self,
        req: &mut http::request::Parts,
        body: B,
        context: super::headers::RoutingHeaders,
        writer: super::headers::Writer,
        peer: SocketAddr,
    ) -> (Response<TrackedBody>, super::headers::Appended)
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let started = self.telemetry.start(req, peer);
        let mut noted = self.telemetry.noted();
        let (resp, appended) = self
            .forwarder
            .handle(req, body, context, writer, &mut noted)
            .await;
        let follow = self.telemetry.finish(started, noted, &resp);
        (resp.map(|body| TrackedBody::new(body, follow)), appended)
    }
}

/// Serve one of `router`'s servers on `listener` until `shutdown` fires,
/// then stop accepting and let in-flight requests finish for up to `grace`.
///
/// `protocol: http` accepts HTTP/1.x and h2c prior knowledge on the same
/// port; `protocol: h2` accepts HTTP/2 only. A plain-text HTTP/1 connection
/// holds no buffer between requests (see [`super::h1`]): idle keep-alive
/// clients cost about a socket each.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: ServerParams,
    shutdown: Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let protocol = router.params().protocol;
    let label = router.label().to_string();
    let local = listener.local_addr()?;
    let mut h1_tls = http1::Builder::new();
    h1_tls.timer(TokioTimer::new());
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new());
    let telemetry = ServerTelemetry::new(&label, local, server.clear_context);
    let lines_ok = protocol == Protocol::Http && !telemetry.traces();
    let ctx = Arc::new(ServerCtx {
        telemetry,
        tls: server.tls.clone(),
        forwarder: Forwarder::new(router, server),
        protocol,
        h1_tls,
        h2,
        shutdown: shutdown.clone(),
        lines_ok,
    });
    // Every connection holds a receiver; draining waits for them all to go.
    let (drained, conn_token) = watch::channel(());
    tracing::info!(router = %label, addr = %local, "serving");
    let mut sized = false;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(router = %label, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = ctx.telemetry.connection();
        let token = conn_token.clone();
        let ctx = ctx.clone();
        let task = async move {
            let _open = open;
            let _token = token;
            // Boxed: its handshake state would otherwise size every
            // connection's task, plain ones included.
            let result = if ctx.tls.is_some() {
                Box::pin(serve_tls(&ctx, stream, peer)).await
            } else {
                serve_plain(&ctx, stream, peer).await
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        };
        if !sized {
            // What each connection costs at least (its task), for profiling.
            sized = true;
            tracing::debug!(router = %label, bytes = std::mem::size_of_val(&task), "connection task size");
        }
        tokio::spawn(task);
    }
    drop(listener);
    drop(conn_token);
    tracing::info!(router = %label, addr = %local, "draining");
    if tokio::time::timeout(grace, drained.closed()).await.is_err() {
        tracing::warn!(router = %label, "grace period over; dropping remaining connections");
    }
    Ok(())
}

/// The service hyper calls for each request on a connection from `peer`.
fn service(
    ctx: &Arc<ServerCtx>,
    peer: SocketAddr,
) -> impl Service<
    Request<Incoming>,
    Response = Response<TrackedBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ Unpin
+ 'static {
    let ctx = ctx.clone();
    service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let (resp, _) = ctx
                .respond(&mut parts, body, RoutingHeaders::Maybe, Writer::Hyper, peer)
                .await;
            Ok::<_, Infallible>(resp)
        }
    })
}

/// A plain-text connection: HTTP/1, or HTTP/2 (prior knowledge, or always
/// for `protocol: h2`).
async fn serve_plain(
    ctx: &Arc<ServerCtx>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), BoxError> {
    if ctx.protocol == Protocol::H2 {
        let conn = ctx
            .h2
            .serve_connection(TokioIo::new(stream), service(ctx, peer));
        return Ok(Box::pin(until_drained(conn, &ctx.shutdown)).await?);
    }
    // Nothing of hyper's exists until the client has said something.
    let first = tokio::select! {
        biased;
        _ = ctx.shutdown.wait() => return Ok(()),
        s = sniff(&mut stream) => s,
    };
    match first {
        Sniffed::Gone => Ok(()),
        Sniffed::H2(preface) => {
            let io = ConnIo::new(stream, preface);
            let conn = ctx
                .h2
                .serve_connection(TokioIo::new(io), service(ctx, peer));
            // Boxed, as HTTP/2's state is large and HTTP/1 is the common case.
            Ok(Box::pin(until_drained(conn, &ctx.shutdown)).await?)
        }
        Sniffed::Http1(read) => Ok(super::h1::serve(ctx, stream, peer, read).await?),
    }
}

/// A TLS connection: the handshake runs in the connection's task, never in
/// the accept loop (a slow client must not hold up the others); then the
/// protocol ALPN chose, or either when the client named none.
async fn serve_tls(
    ctx: &Arc<ServerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), BoxError> {
    let Some(tls) = &ctx.tls else {
        return Ok(());
    };
    let Ok(stream) = tls.accept(stream, peer).await else {
        return Ok(()); // counted and logged by accept
    };
    let svc = service(ctx, peer);
    let io = TokioIo::new(stream);
    match crate::tls::server::negotiated(io.inner()) {
        Negotiated::H2 => Ok(until_drained(ctx.h2.serve_connection(io, svc), &ctx.shutdown).await?),
        Negotiated::Http11 => {
            Ok(until_drained(ctx.h1_tls.serve_connection(io, svc), &ctx.shutdown).await?)
        }
        Negotiated::None => {
            let mut auto = auto::Builder::new(TokioExecutor::new());
            auto.http1().timer(TokioTimer::new());
            auto.http2().timer(TokioTimer::new());
            until_drained(auto.serve_connection(io, svc), &ctx.shutdown).await
        }
    }
}

/// Run a hyper connection; once `shutdown` fires, ask it to finish the
/// requests in progress and close.
async fn until_drained<C: GracefulConnection>(
    conn: C,
    shutdown: &Shutdown,
) -> Result<(), C::Error> {
    let mut conn = pin!(conn);
    tokio::select! {
        biased;
        r = conn.as_mut() => return r,
        _ = shutdown.stop() => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}
