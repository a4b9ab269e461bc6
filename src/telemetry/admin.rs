//! Telemetry's admin endpoints:
//!
//! * `GET /admin/metrics/prometheus` (or the configured `path`): the text exposition;
//! * `GET /admin/metrics.json`: the same samples as flat JSON, plus
//!   Linkerd-style `rt/<router>/...` aggregates;
//! * `GET /logging.json`: the log filter; `POST`/`PUT` with `{"level": "debug"}`,
//!   `{"filter": "switchyard=debug,info"}` or a bare filter text changes it;
//! * `GET /requests` (HTML) and `/requests.json`: recent requests
//!   (`io.l5d.recentRequests`).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};

/// Largest `/logging.json` body read.
const MAX_BODY: usize = 64 * 1024;

/// The paths this module serves, for the admin index.
pub const INDEX: &str = "/admin/metrics/prometheus\n/admin/metrics.json\n/logging.json (GET; POST {\"level\": \"debug\"})\n/requests\n/requests.json\n";

fn respond(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    respond(status, "application/json", body)
}

/// Serve `req` if it is one of telemetry's endpoints; give it back otherwise.
pub async fn handle<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Request<B>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let prom_path = super::installed()
        .map(|t| t.prometheus.path.as_str())
        .unwrap_or(super::metrics::DEFAULT_PATH);
    let path = req.uri().path();
    let method = req.method().clone();
    if path == prom_path || path == super::metrics::DEFAULT_PATH {
        return Ok(respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::render_prometheus(),
        ));
    }
    match (&method, path) {
        (&Method::GET, "/admin/metrics.json") => {
            Ok(json(StatusCode::OK, &super::metrics::render_json()))
        }
        (&Method::GET, "/logging.json" | "/logging") => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "filter": super::log_filter() }),
        )),
        (&Method::POST | &Method::PUT, "/logging.json" | "/logging") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Ok(respond(
                        StatusCode::BAD_REQUEST,
                        "text/plain; charset=utf-8",
                        format!("cannot read the body: {e}\n"),
                    ));
                }
            };
            Ok(set_filter(&body))
        }
        (&Method::GET, "/requests.json") => {
            let list = super::installed()
                .and_then(|t| t.recent.as_ref())
                .map(|r| r.snapshot())
                .unwrap_or_default();
            Ok(json(
                StatusCode::OK,
                &serde_json::to_value(list).unwrap_or_default(),
            ))
        }
        (&Method::GET, "/requests") => {
            let list = super::installed()
                .and_then(|t| t.recent.as_ref())
                .map(|r| r.snapshot())
                .unwrap_or_default();
            Ok(respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                super::recent::html(&list),
            ))
        }
        _ => Err(req),
    }
}

/// `{"level": "debug"}`, `{"filter": "..."}`, or the filter as plain text.
fn set_filter(body: &[u8]) -> Response<Full<Bytes>> {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => match m.get("level").or_else(|| m.get("filter")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": "expected {\"level\": \"debug\"} or {\"filter\": \"switchyard=debug,info\"}"}),
                );
            }
        },
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    match super::set_log_filter(&text) {
        Ok(now) => json(StatusCode::OK, &serde_json::json!({ "filter": now })),
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": e.to_string(), "filter": super::log_filter()}),
        ),
    }
}
