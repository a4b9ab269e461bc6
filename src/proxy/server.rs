//! Listeners and graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::forward::Forwarder;
use crate::routing::{Protocol, Router, ServerParams};
use crate::telemetry::ServerTelemetry;
use crate::tls::server::Negotiated;

/// A shutdown trigger shared by every server and the admin endpoint.
///
/// Cloning shares it; [`Shutdown::trigger`] wakes every [`Shutdown::wait`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
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
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Start shutting down: servers stop accepting and drain.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|v| *v).await;
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

/// Serve one of `router`'s servers on `listener` until `shutdown` fires,
/// then stop accepting and let in-flight requests finish for up to `grace`.
///
/// `protocol: http` accepts HTTP/1.x and h2c prior knowledge on the same
/// port; `protocol: h2` accepts HTTP/2 only.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: ServerParams,
    shutdown: Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let protocol = router.params().protocol;
    let label = router.label().to_string();
    let server_tls = server.tls.clone();
    let clear_context = server.clear_context;
    let forwarder = Arc::new(Forwarder::new(router, server));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    if protocol == Protocol::H2 {
        builder = builder.http2_only();
    }
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr()?;
    let telemetry = Arc::new(ServerTelemetry::new(&label, local, clear_context));
    tracing::info!(router = %label, addr = %local, "serving");
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
        let fw = forwarder.clone();
        let tel = telemetry.clone();
        let open = telemetry.connection();
        let svc = service_fn(move |mut req: hyper::Request<Incoming>| {
            let (fw, tel) = (fw.clone(), tel.clone());
            async move {
                let started = tel.start(&mut req, peer);
                Ok::<_, Infallible>(tel.finish(started, fw.handle(req).await))
            }
        });
        if let Some(tls) = &server_tls {
            // The handshake runs in the connection's task, never in the
            // accept loop: a slow client must not hold up the others.
            let tls = tls.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _open = open;
                let Ok(stream) = tls.accept(stream, peer).await else {
                    return; // counted and logged by accept
                };
                let builder = match crate::tls::server::negotiated(&stream) {
                    Negotiated::H2 => builder.http2_only(),
                    Negotiated::Http11 => builder.http1_only(),
                    Negotiated::None => builder,
                };
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
            continue;
        }
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(router = %label, addr = %local, "draining");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(router = %label, "grace period over; dropping remaining connections");
    }
    Ok(())
}
