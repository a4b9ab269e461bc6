//! The admin server: the dashboard (`/`) and dtab playground (`/delegator`)
//! pages, health, config, the playground's JSON, client state, the routers'
//! dtabs with their reload results, and graceful shutdown. It runs on its own listener and never sits
//! on the request path; it reads the routers' caches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::dtab::{Dtab, Path};
use crate::naming::DtabFileHandle;
use crate::proxy::Shutdown;
use crate::routing::Router;
use crate::tls::ServerTls;

/// What the admin server serves, built by the integrator.
#[derive(Clone)]
pub struct AdminState {
    /// Every router, for `/client_state.json`, `/bound-names.json` and `/delegator.json`.
    pub routers: Vec<Router>,
    /// The effective config, served as `/config.json`.
    pub config: serde_json::Value,
    /// Pulled by `POST /admin/shutdown`.
    pub shutdown: Shutdown,
    /// The dtab file watch of each router whose interpreter reads one
    /// (router label → handle), so `/dtabs.json` can show the last reload.
    pub dtab_files: HashMap<String, DtabFileHandle>,
}

/// `admin` parameters that matter at runtime.
#[derive(Clone, Debug)]
pub struct AdminParams {
    /// `shutdownGraceMs` (default 10 s): how long in-flight requests may
    /// take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for AdminParams {
    fn default() -> Self {
        AdminParams {
            shutdown_grace: Duration::from_millis(10_000),
        }
    }
}

mod ui;

type AdminBody = Full<Bytes>;

/// Serve the admin endpoints on `listener` until `state.shutdown` fires.
pub async fn serve(listener: TcpListener, state: AdminState) -> std::io::Result<()> {
    serve_with_tls(listener, state, None).await
}

/// [`serve`], over TLS when `tls` is given (`admin.tls`).
pub async fn serve_with_tls(
    listener: TcpListener,
    state: AdminState,
    tls: Option<ServerTls>,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    let shutdown = state.shutdown.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let st = state.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(handle(&st, req).await) }
        });
        if let Some(tls) = &tls {
            let tls = tls.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream, peer).await else {
                    return; // counted and logged by accept
                };
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let _ = watcher.watch(conn.into_owned()).await;
            });
            continue;
        }
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    Ok(())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(v: &serde_json::Value) -> Response<AdminBody> {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

const INDEX: &str = "/ (dashboard)\n/delegator (dtab playground)\n/dtabs.json\n/admin/ping\n/config.json\n/delegator.json?router=&path=&dtab=\n/client_state.json\n/bound-names.json\n/tls.json\nPOST /admin/shutdown\n";

async fn handle(st: &AdminState, req: Request<Incoming>) -> Response<AdminBody> {
    // Metrics, logging level, recent requests.
    let req = match crate::telemetry::admin::handle(req).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    let query = parse_query(req.uri().query().unwrap_or(""));
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/admin/ping") => text(StatusCode::OK, "pong"),
        (&Method::GET, "/" | "/index.html") => ui::page(ui::DASHBOARD),
        (&Method::GET, "/delegator" | "/delegator.html") => ui::page(ui::DELEGATOR),
        (&Method::GET, "/admin/ui/app.js") => {
            ui::asset(ui::APP_JS, "text/javascript; charset=utf-8")
        }
        (&Method::GET, "/admin/ui/style.css") => {
            ui::asset(ui::STYLE_CSS, "text/css; charset=utf-8")
        }
        (&Method::GET, "/dtabs.json") => json(&dtabs_json(st)),
        (&Method::GET, "/admin") => text(
            StatusCode::OK,
            format!("{INDEX}{}", crate::telemetry::admin::INDEX),
        ),
        (&Method::GET, "/config.json") => json(&st.config),
        (&Method::GET, "/client_state.json") => {
            let mut out = serde_json::Map::new();
            for r in &st.routers {
                out.insert(r.label().to_string(), r.client_state());
            }
            json(&serde_json::Value::Object(out))
        }
        (&Method::GET, "/bound-names.json") => {
            let mut out = serde_json::Map::new();
            for r in &st.routers {
                out.insert(r.label().to_string(), r.bound_names().into());
            }
            json(&serde_json::Value::Object(out))
        }
        (&Method::GET, "/delegator.json") => delegator(st, &query).await,
        // Handshakes, failures by reason and certificate reloads of every
        // TLS listener and client config.
        (&Method::GET, "/tls.json") => json(&crate::tls::stats_json()),
        (&Method::POST, "/admin/shutdown") => {
            tracing::info!("shutdown requested through the admin endpoint");
            st.shutdown.trigger();
            text(StatusCode::OK, "shutting down\n")
        }
        (_, "/admin/shutdown") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use POST /admin/shutdown\n")
        }
        (_, path) => text(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint at {path}; try:\n{INDEX}"),
        ),
    }
}

async fn delegator(st: &AdminState, q: &HashMap<String, String>) -> Response<AdminBody> {
    let router = match q.get("router") {
        Some(label) => st.routers.iter().find(|r| r.label() == label),
        None if st.routers.len() == 1 => st.routers.first(),
        None => None,
    };
    let Some(router) = router else {
        let labels: Vec<&str> = st.routers.iter().map(|r| r.label()).collect();
        return text(
            StatusCode::BAD_REQUEST,
            format!("router: expected one of {labels:?}\n"),
        );
    };
    let Some(path_text) = q.get("path") else {
        return text(StatusCode::BAD_REQUEST, "path: required (e.g. /svc/web)\n");
    };
    let path = match Path::from_str(path_text) {
        Ok(p) => p,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{}\n", e.with_source("path")),
            );
        }
    };
    let parsed = q.get("dtab").map(|d| Dtab::from_str(d).map_err(Box::new));
    let local = match parsed {
        None => Dtab::empty(),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{}\n", e.with_source("dtab")),
            );
        }
    };
    json(&router.delegate_json(&local, &path).await)
}

/// Each router's base dtab as it is served now, with its file's reload
/// counters and last outcome when the interpreter reads a dtab file.
fn dtabs_json(st: &AdminState) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in &st.routers {
        let label = r.label();
        let mut v = serde_json::json!({ "dtab": r.binder().base_dtab().to_string() });
        if let Some(h) = st.dtab_files.get(label) {
            let stats = h.stats();
            let last = stats.last.map(|l| {
                let at_ms =
                    l.at.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                match l.result {
                    Ok(()) => serde_json::json!({ "atMs": at_ms, "ok": true }),
                    Err(e) => serde_json::json!({ "atMs": at_ms, "ok": false, "error": e }),
                }
            });
            v["file"] = serde_json::json!({
                "path": h.path().display().to_string(),
                "reloads": stats.reloads,
                "rejections": stats.rejections,
                "last": last,
            });
        }
        out.insert(label.to_string(), v);
    }
    serde_json::Value::Object(out)
}

/// `a=1&b=x%2Fy+z` → {a: 1, b: "x/y z"}.
fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("path=%2Fsvc%2Fweb&dtab=/a=>/b;+/c=>/d&x");
        assert_eq!(q.get("path").unwrap(), "/svc/web");
        assert_eq!(q.get("dtab").unwrap(), "/a=>/b; /c=>/d");
        assert_eq!(q.get("x").unwrap(), "");
    }
}
