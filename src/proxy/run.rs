//! Running a whole proxy: every router's servers plus the admin server,
//! one shutdown for all of them.

use std::time::Duration;

use tokio::net::TcpListener;

use super::server::{Shutdown, serve, shutdown_on_signals};
use crate::admin::{self, AdminState};
use crate::routing::{Router, ServerParams};
use crate::tls::ServerTls;

/// One router and its already-bound server listeners.
pub struct RouterServers {
    /// The router.
    pub router: Router,
    /// Each `servers` entry with the listener bound for it.
    pub servers: Vec<(TcpListener, ServerParams)>,
}

/// Serve every router and the admin server until `shutdown` fires (SIGTERM,
/// SIGINT, `POST /admin/shutdown`, or the caller), then drain in-flight
/// requests for up to `grace` (`admin.shutdownGraceMs`) and return.
///
/// The admin server's [`AdminState::shutdown`] should be `shutdown` (or a
/// clone of it) so that `POST /admin/shutdown` stops everything.
pub async fn run(
    routers: Vec<RouterServers>,
    admin: Option<(TcpListener, AdminState)>,
    shutdown: Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let admin = admin.map(|(l, s)| (l, s, None));
    run_with_admin_tls(routers, admin, shutdown, grace).await
}

/// [`run`], with the admin server over TLS when its `ServerTls` is given
/// (`admin.tls`).
pub async fn run_with_admin_tls(
    routers: Vec<RouterServers>,
    admin: Option<(TcpListener, AdminState, Option<ServerTls>)>,
    shutdown: Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let signals = tokio::spawn(shutdown_on_signals(shutdown.clone()));
    let mut tasks = Vec::new();
    for rs in routers {
        for (listener, params) in rs.servers {
            tasks.push(tokio::spawn(serve(
                listener,
                rs.router.clone(),
                params,
                shutdown.clone(),
                grace,
            )));
        }
    }
    if let Some((listener, state, tls)) = admin {
        tasks.push(tokio::spawn(admin::serve_with_tls(listener, state, tls)));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(std::io::Error::other(join.to_string()));
            }
        }
    }
    // Every server stopped, perhaps on its own: release the signal handler.
    shutdown.trigger();
    let _ = signals.await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
