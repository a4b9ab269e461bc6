//! Errors the proxy answers itself, each turned into a response a user can
//! act on: a status, an `l5d-err` header with the URL-encoded message, and a
//! text/plain body with the full message. Never a panic, never a bare 500.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::ProxyBody;
use super::headers::{DtabHeaderError, L5D_ERR, L5D_RETRYABLE};
use crate::dtab::Path;
use crate::routing::{RouteError, Unidentified};

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No identifier could name the request.
    #[error(transparent)]
    Unidentified(#[from] Unidentified),
    /// `l5d-dtab` or `l5d-ctx-dtab` does not parse.
    #[error(transparent)]
    DtabHeader(#[from] DtabHeaderError),
    /// Too many `Via` entries: a proxy loop.
    #[error(
        "Maximum number of calls ({max}) has been exceeded: the request already passed {seen} proxies (Via). Please check for proxy loops."
    )]
    CallDepth {
        /// `maxCallDepth`.
        max: usize,
        /// `Via` entries seen.
        seen: usize,
    },
    /// `maxConcurrentRequests` reached.
    #[error("Too many concurrent requests: this server accepts at most {max}")]
    Overloaded {
        /// `maxConcurrentRequests`.
        max: usize,
    },
    /// The request could not be rebuilt for forwarding (bad URI after rewriting).
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// Routing failed (no route, negative name, no endpoints, binding timeout).
    #[error("{error}")]
    Route {
        /// What failed.
        error: Box<RouteError>,
        /// The delegation trace or bound tree, for the body.
        detail: Option<String>,
    },
    /// Every endpoint tried refused the connection; the request never left.
    #[error(
        "Unable to connect to any endpoint of {client} for {dst} (tried {}): {cause}",
        fmt_addrs(tried)
    )]
    Connect {
        /// The logical name.
        dst: Path,
        /// The bound name.
        client: Path,
        /// The endpoints tried.
        tried: Vec<SocketAddr>,
        /// The last connection error.
        cause: String,
    },
    /// The endpoint did not answer in time.
    #[error("{addr} ({client}) did not respond to {dst} within {}ms", timeout.as_millis())]
    Timeout {
        /// The logical name.
        dst: Path,
        /// The bound name.
        client: Path,
        /// The endpoint.
        addr: SocketAddr,
        /// `requestAttemptTimeoutMs`.
        timeout: Duration,
    },
    /// The endpoint's connection pool is full and enough requests wait
    /// (`hostConnectionPool.maxWaiters`); the request never left.
    #[error("{addr} ({client}) cannot take {dst}: {cause}")]
    PoolExhausted {
        /// The logical name.
        dst: Path,
        /// The bound name.
        client: Path,
        /// The endpoint.
        addr: SocketAddr,
        /// What is full.
        cause: String,
    },
    /// The service's `totalTimeoutMs` passed before a response (retries included).
    #[error(
        "{dst} did not respond within totalTimeoutMs={}ms ({attempts} attempt(s))",
        timeout.as_millis()
    )]
    TotalTimeout {
        /// The logical name.
        dst: Path,
        /// `totalTimeoutMs`.
        timeout: Duration,
        /// Attempts made.
        attempts: usize,
    },
    /// The deadline the caller propagated (`l5d-ctx-deadline`,
    /// `grpc-timeout`) passed; when `attempts` is 0 the request was never sent.
    #[error(
        "The deadline for {dst} passed ({attempts} attempt(s)); it was set upstream (l5d-ctx-deadline or grpc-timeout)"
    )]
    DeadlineExceeded {
        /// The logical name.
        dst: Path,
        /// Attempts made.
        attempts: usize,
    },
    /// A retryable failure the service level did not retry (again), and why:
    /// so a user can tell a spent budget from a body too big to replay.
    #[error("{last} [{attempts} attempt(s); not retried: {reason}]")]
    NotRetried {
        /// Attempts made.
        attempts: usize,
        /// Why no further attempt was made.
        reason: String,
        /// The last attempt's failure.
        last: Box<ProxyError>,
    },
    /// The endpoint failed mid-exchange (reset, closed, protocol error).
    #[error("{addr} ({client}) failed while serving {dst}: {cause}")]
    Upstream {
        /// The logical name.
        dst: Path,
        /// The bound name.
        client: Path,
        /// The endpoint.
        addr: SocketAddr,
        /// The error chain.
        cause: String,
    },
}

fn fmt_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Like Java's `URLEncoder` but with `%20`: keep only unreserved characters.
pub(super) const L5D_ERR_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl ProxyError {
    /// The status Linkerd 1 answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotRetried { last, .. } => last.status(),
            ProxyError::Unidentified(_)
            | ProxyError::DtabHeader(_)
            | ProxyError::CallDepth { .. }
            | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Overloaded { .. }
            | ProxyError::PoolExhausted { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::TotalTimeout { .. }
            | ProxyError::DeadlineExceeded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Route { error, .. } if error.is_timeout() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Route { .. } | ProxyError::Connect { .. } | ProxyError::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// Whether the request surely never reached an application.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProxyError::NotRetried { last, .. } => last.is_retryable(),
            _ => matches!(
                self,
                ProxyError::Connect { .. }
                    | ProxyError::Overloaded { .. }
                    | ProxyError::PoolExhausted { .. }
            ),
        }
    }

    /// The full text for the body: the message, then any detail.
    pub fn body_text(&self) -> String {
        let mut s = self.to_string();
        match self {
            ProxyError::DtabHeader(e) => {
                // The excerpt with its caret says it all; no need to repeat the summary.
                s = format!("Invalid {} header {:?}:\n{}", e.header, e.value, e.error);
            }
            ProxyError::Route { error, detail } => {
                if let Some(b) = &error.bound {
                    s.push_str("\nBound tree: ");
                    s.push_str(b);
                }
                if let Some(d) = detail {
                    s.push('\n');
                    s.push_str(d);
                }
            }
            _ => {}
        }
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    /// The response for this error.
    pub fn into_response(self) -> Response<ProxyBody> {
        let msg = self.to_string();
        let enc = utf8_percent_encode(&msg, L5D_ERR_SET).to_string();
        let body = Full::new(Bytes::from(self.body_text()))
            .map_err(|never| match never {})
            .boxed();
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&enc) {
            h.insert(L5D_ERR, v);
        }
        if self.is_retryable() {
            h.insert(L5D_RETRYABLE, HeaderValue::from_static("true"));
        }
        resp
    }
}
