//! Response classifiers (`service.responseClassifier`): is a response a
//! success, a failure, or a failure that is safe to retry?
//!
//! Two headers from a downstream Linkerd or Switchyard come first, so that
//! every hop agrees: `l5d-retryable: true` (the request never reached the
//! application) makes a failure retryable whatever the method, and
//! `l5d-success-class` (`1.0` success … `0.0` failure) says how the hop that
//! saw the application classified it. Then the configured classifier decides,
//! by status and method (HTTP) or by `grpc-status` (gRPC). gRPC puts its
//! status in trailers unless the response is trailers-only; a classifier
//! that needs trailers says so ([`Classifier::classify_response`] returns
//! `None`) and the caller classifies at the end of the stream.

use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, Method, StatusCode};

/// The response header that carries a hop's classification upstream.
pub const L5D_SUCCESS_CLASS: &str = "l5d-success-class";
/// The response header that marks a failure as never having reached the app.
pub const L5D_RETRYABLE: &str = "l5d-retryable";

/// The headers read and written on every response, as names checked once
/// at compile time rather than parsed on each lookup.
pub mod names {
    use http::header::HeaderName;

    /// `l5d-success-class`.
    pub const L5D_SUCCESS_CLASS: HeaderName = HeaderName::from_static(super::L5D_SUCCESS_CLASS);
    /// `l5d-retryable`.
    pub const L5D_RETRYABLE: HeaderName = HeaderName::from_static(super::L5D_RETRYABLE);
    /// `grpc-status`.
    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
}

/// What a response means for stats and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseClass {
    /// It worked.
    Success,
    /// It failed and must not be sent again.
    Failure,
    /// It failed and may be sent again.
    RetryableFailure,
}

impl ResponseClass {
    /// Whether the request may be retried.
    pub fn is_retryable(self) -> bool {
        self == ResponseClass::RetryableFailure
    }

    /// Whether it is a success.
    pub fn is_success(self) -> bool {
        self == ResponseClass::Success
    }

    /// The `l5d-success-class` value.
    pub fn success_class(self) -> &'static str {
        if self.is_success() { "1.0" } else { "0.0" }
    }
}

/// Which methods an HTTP classifier retries after a 5xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Methods {
    None,
    Read,
    Idempotent,
    All,
}

impl Methods {
    fn allow(self, m: &Method) -> bool {
        let read = matches!(
            *m,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        match self {
            Methods::None => false,
            Methods::Read => read,
            Methods::Idempotent => read || matches!(*m, Method::PUT | Method::DELETE),
            Methods::All => true,
        }
    }
}

/// Which gRPC failures a gRPC classifier retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrpcRetry {
    /// `io.l5d.h2.grpc.default`: only 14 UNAVAILABLE.
    Default,
    /// `io.l5d.h2.grpc.compliant`: 14, and HTTP 429/502/503/504 without a gRPC status.
    Compliant,
    /// `io.l5d.h2.grpc.alwaysRetryable`.
    Always,
    /// `io.l5d.h2.grpc.neverRetryable`.
    Never,
    /// `io.l5d.h2.grpc.retryableStatusCodes {retryableStatusCodes}`.
    Codes(Vec<u32>),
}

/// `service.responseClassifier`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Classifier {
    /// `io.l5d.http.nonRetryable5XX` (the default; `io.l5d.h2.*` twin too).
    #[default]
    NonRetryable5XX,
    /// `io.l5d.http.retryableRead5XX`: 5xx on GET, HEAD, OPTIONS, TRACE retryable.
    RetryableRead5XX,
    /// `io.l5d.http.retryableIdempotent5XX`: also PUT and DELETE.
    RetryableIdempotent5XX,
    /// `io.l5d.http.retryableAll5XX`: every method.
    RetryableAll5XX,
    /// `io.l5d.http.allSuccessful`: nothing fails.
    AllSuccessful,
    /// `io.l5d.h2.grpc.*`: by `grpc-status`.
    Grpc {
        /// Which failures are retryable.
        retry: GrpcRetry,
        /// `successStatusCodes` (default `[0]`).
        success: Vec<u32>,
    },
}

/// An unknown `responseClassifier` kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown response classifier '{name}'; expected one of: {}", Classifier::KINDS.join(", "), name = .0)]
pub struct UnknownClassifier(pub String);

impl Classifier {
    /// Every kind name accepted (the `io.l5d.h2.*` twins of the HTTP ones too).
    pub const KINDS: &'static [&'static str] = &[
        "io.l5d.http.nonRetryable5XX",
        "io.l5d.http.retryableRead5XX",
        "io.l5d.http.retryableIdempotent5XX",
        "io.l5d.http.retryableAll5XX",
        "io.l5d.http.allSuccessful",
        "io.l5d.h2.nonRetryable5XX",
        "io.l5d.h2.retryableRead5XX",
        "io.l5d.h2.retryableIdempotent5XX",
        "io.l5d.h2.retryableAll5XX",
        "io.l5d.h2.allSuccessful",
        "io.l5d.h2.grpc.default",
        "io.l5d.h2.grpc.compliant",
        "io.l5d.h2.grpc.alwaysRetryable",
        "io.l5d.h2.grpc.neverRetryable",
        "io.l5d.h2.grpc.retryableStatusCodes",
    ];

    /// The kind name (the `io.l5d.http.*` spelling for status classifiers).
    pub fn kind(&self) -> &'static str {
        match self {
            Classifier::NonRetryable5XX => "io.l5d.http.nonRetryable5XX",
            Classifier::RetryableRead5XX => "io.l5d.http.retryableRead5XX",
            Classifier::RetryableIdempotent5XX => "io.l5d.http.retryableIdempotent5XX",
            Classifier::RetryableAll5XX => "io.l5d.http.retryableAll5XX",
            Classifier::AllSuccessful => "io.l5d.http.allSuccessful",
            Classifier::Grpc { retry, .. } => match retry {
                GrpcRetry::Default => "io.l5d.h2.grpc.default",
                GrpcRetry::Compliant => "io.l5d.h2.grpc.compliant",
                GrpcRetry::Always => "io.l5d.h2.grpc.alwaysRetryable",
                GrpcRetry::Never => "io.l5d.h2.grpc.neverRetryable",
                GrpcRetry::Codes(_) => "io.l5d.h2.grpc.retryableStatusCodes",
            },
        }
    }

    /// Build from a kind and its parameters (`retryableStatusCodes`,
    /// `successStatusCodes`; ignored by the HTTP kinds).
    pub fn from_kind(
        kind: &str,
        retryable_codes: Option<Vec<u32>>,
        success_codes: Option<Vec<u32>>,
    ) -> Result<Classifier, UnknownClassifier> {
        let status = kind
            .strip_prefix("io.l5d.http.")
            .or_else(|| kind.strip_prefix("io.l5d.h2."));
        let c = match status {
            Some("nonRetryable5XX") => Classifier::NonRetryable5XX,
            Some("retryableRead5XX") => Classifier::RetryableRead5XX,
            Some("retryableIdempotent5XX") => Classifier::RetryableIdempotent5XX,
            Some("retryableAll5XX") => Classifier::RetryableAll5XX,
            Some("allSuccessful") => Classifier::AllSuccessful,
            _ => {
                let retry = match kind.strip_prefix("io.l5d.h2.grpc.") {
                    Some("default") => GrpcRetry::Default,
                    Some("compliant") => GrpcRetry::Compliant,
                    Some("alwaysRetryable") => GrpcRetry::Always,
                    Some("neverRetryable") => GrpcRetry::Never,
                    Some("retryableStatusCodes") => {
                        GrpcRetry::Codes(retryable_codes.unwrap_or_default())
                    }
                    _ => return Err(UnknownClassifier(kind.to_string())),
                };
                Classifier::Grpc {
                    retry,
                    success: success_codes.unwrap_or_else(|| vec![0]),
                }
            }
        };
        Ok(c)
    }

    fn methods(&self) -> Methods {
        match self {
            Classifier::NonRetryable5XX | Classifier::AllSuccessful => Methods::None,
            Classifier::RetryableRead5XX => Methods::Read,
            Classifier::RetryableIdempotent5XX => Methods::Idempotent,
            Classifier::RetryableAll5XX => Methods::All,
            Classifier::Grpc { retry, .. } => match retry {
                GrpcRetry::Never => Methods::None,
                _ => Methods::All,
            },
        }
    }

    /// Whether this classifier reads `grpc-status` (possibly in trailers).
    pub fn is_grpc(&self) -> bool {
        matches!(self, Classifier::Grpc { .. })
    }

    /// Classify a response by its head. `None`: a gRPC classifier needs the
    /// trailers (see [`Classifier::classify_trailers`]).
    pub fn classify_response(
        &self,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<ResponseClass> {
        // Most responses carry neither: their three lookups (hashes of
        // custom names) are skipped.
        let said = downstream_said(headers);
        if said && let Some(c) = from_headers(status, headers) {
            return Some(c);
        }
        let grpc_status = |h| if said { grpc_status(h) } else { None };
        match self {
            Classifier::AllSuccessful => Some(ResponseClass::Success),
            Classifier::Grpc { .. } => match grpc_status(headers) {
                Some(code) => Some(self.grpc(code)),
                // No gRPC status and an HTTP error: a proxy or server failed
                // before any gRPC handler ran.
                None if !status.is_success() => Some(self.grpc_http(status)),
                None => None,
            },
            _ => {
                if status.is_server_error() {
                    Some(if self.methods().allow(method) {
                        ResponseClass::RetryableFailure
                    } else {
                        ResponseClass::Failure
                    })
                } else if grpc_status(headers).is_some_and(|c| c != 0) {
                    // A trailers-only gRPC failure is a failure for stats.
                    Some(ResponseClass::Failure)
                } else {
                    Some(ResponseClass::Success)
                }
            }
        }
    }

    /// Classify a gRPC response by its trailers (`grpc-status` missing: a
    /// success only for non-gRPC classifiers). A downstream hop's
    /// `l5d-success-class` (or `l5d-retryable`) trailer wins, as it would
    /// in the head.
    pub fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> ResponseClass {
        if let Some(c) = trailers.and_then(|t| from_headers(StatusCode::OK, t)) {
            return c;
        }
        let code = trailers.and_then(grpc_status);
        match (self, code) {
            (Classifier::Grpc { .. }, Some(c)) => self.grpc(c),
            // A gRPC stream that ended without a status is broken.
            (Classifier::Grpc { .. }, None) => self.grpc(2),
            (Classifier::AllSuccessful, _) | (_, None) | (_, Some(0)) => ResponseClass::Success,
            (_, Some(_)) => ResponseClass::Failure,
        }
    }

    /// Classify a failed attempt (no response). `reached_app`: the request
    /// may have been seen by the application (sent, then the connection
    /// failed or the attempt timed out); if it surely was not, it is always
    /// retryable. Otherwise it is retryable when this classifier retries the
    /// method's failures, as Linkerd's classifiers do with exceptions.
    pub fn classify_error(&self, method: &Method, reached_app: bool) -> ResponseClass {
        if !reached_app || self.methods().allow(method) {
            ResponseClass::RetryableFailure
        } else {
            ResponseClass::Failure
        }
    }

    fn grpc(&self, code: u32) -> ResponseClass {
        let Classifier::Grpc { retry, success } = self else {
            return if code == 0 {
                ResponseClass::Success
            } else {
                ResponseClass::Failure
            };
        };
        if success.contains(&code) {
            return ResponseClass::Success;
        }
        let retryable = match retry {
            GrpcRetry::Default | GrpcRetry::Compliant => code == 14,
            GrpcRetry::Always => true,
            GrpcRetry::Never => false,
            GrpcRetry::Codes(codes) => codes.contains(&code),
        };
        if retryable {
            ResponseClass::RetryableFailure
        } else {
            ResponseClass::Failure
        }
    }

    fn grpc_http(&self, status: StatusCode) -> ResponseClass {
        let Classifier::Grpc { retry, .. } = self else {
            return ResponseClass::Failure;
        };
        let retryable = match retry {
            GrpcRetry::Compliant => matches!(status.as_u16(), 429 | 502 | 503 | 504),
            GrpcRetry::Always => true,
            _ => false,
        };
        if retryable {
            ResponseClass::RetryableFailure
        } else {
            ResponseClass::Failure
        }
    }
}

impl fmt::Display for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl FromStr for Classifier {
    type Err = UnknownClassifier;

    fn from_str(s: &str) -> Result<Classifier, UnknownClassifier> {
        Classifier::from_kind(s, None, None)
    }
}

impl serde::Serialize for Classifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", self.kind())?;
        if let Classifier::Grpc { retry, success } = self {
            if let GrpcRetry::Codes(c) = retry {
                m.serialize_entry("retryableStatusCodes", c)?;
            }
            m.serialize_entry("successStatusCodes", success)?;
        }
        m.end()
    }
}

/// Whether a response head may hold what [`from_headers`] or
/// [`grpc_status`] read: any `l5d-` or `grpc-` header. A walk over a short
/// head's names (already lower case) costs less than the lookups.
pub(crate) fn downstream_said(headers: &HeaderMap) -> bool {
    headers.keys_len() > 12
        || headers.keys().any(|k| {
            let k = k.as_str().as_bytes();
            k.starts_with(b"l5d-") || k.starts_with(b"grpc-")
        })
}

/// What a downstream hop said: `l5d-retryable: true` on a failure, or its
/// `l5d-success-class`.
fn from_headers(status: StatusCode, headers: &HeaderMap) -> Option<ResponseClass> {
    let retryable = headers
        .get(names::L5D_RETRYABLE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let class = headers
        .get(names::L5D_SUCCESS_CLASS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    match (retryable, class) {
        (true, Some(c)) if c >= 0.5 => Some(ResponseClass::Success),
        (true, _) if !status.is_success() => Some(ResponseClass::RetryableFailure),
        (_, Some(c)) if c >= 0.5 => Some(ResponseClass::Success),
        (_, Some(_)) => Some(ResponseClass::Failure),
        _ => None,
    }
}

/// `grpc-status` as a number, if present and well formed.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(names::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResponseClass::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    fn http(c: &Classifier, m: Method, s: u16) -> ResponseClass {
        c.classify_response(&m, StatusCode::from_u16(s).unwrap(), &HeaderMap::new())
            .unwrap()
    }

    #[test]
    fn http_classifiers_by_method() {
        let none = Classifier::NonRetryable5XX;
        let read: Classifier = "io.l5d.http.retryableRead5XX".parse().unwrap();
        let idem: Classifier = "io.l5d.h2.retryableIdempotent5XX".parse().unwrap();
        let all: Classifier = "io.l5d.http.retryableAll5XX".parse().unwrap();
        let ok: Classifier = "io.l5d.http.allSuccessful".parse().unwrap();
        assert_eq!(http(&none, Method::GET, 200), Success);
        assert_eq!(http(&none, Method::GET, 404), Success);
        assert_eq!(http(&none, Method::GET, 503), Failure);
        assert_eq!(http(&read, Method::GET, 503), RetryableFailure);
        assert_eq!(http(&read, Method::HEAD, 500), RetryableFailure);
        assert_eq!(http(&read, Method::PUT, 503), Failure);
        assert_eq!(http(&idem, Method::PUT, 503), RetryableFailure);
        assert_eq!(http(&idem, Method::DELETE, 503), RetryableFailure);
        assert_eq!(http(&idem, Method::POST, 503), Failure);
        assert_eq!(http(&all, Method::POST, 503), RetryableFailure);
        assert_eq!(http(&all, Method::PATCH, 502), RetryableFailure);
        assert_eq!(http(&ok, Method::GET, 500), Success);
        assert_eq!(read.kind(), "io.l5d.http.retryableRead5XX");
        assert!("io.l5d.nope".parse::<Classifier>().is_err());
    }

    #[test]
    fn downstream_headers_are_found_among_many_or_few() {
        let none = Classifier::NonRetryable5XX;
        let grpc: Classifier = "io.l5d.h2.grpc.default".parse().unwrap();
        let others: Vec<String> = (0..20).map(|i| format!("x-other-{i}")).collect();
        for n in [0, 3, 12, 13, 20] {
            let mut m = HeaderMap::new();
            for name in &others[..n] {
                m.insert(
                    http::HeaderName::try_from(name.as_str()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            let plain = m.clone();
            assert_eq!(
                none.classify_response(&Method::GET, StatusCode::OK, &plain),
                Some(Success),
                "{n} others"
            );
            assert_eq!(
                grpc.classify_response(&Method::POST, StatusCode::OK, &plain),
                None,
                "{n} others"
            );
            let mut said = m.clone();
            said.insert("l5d-success-class", "0.0".parse().unwrap());
            assert_eq!(
                none.classify_response(&Method::GET, StatusCode::OK, &said),
                Some(Failure),
                "{n} others"
            );
            let mut status = m;
            status.insert("grpc-status", "14".parse().unwrap());
            assert_eq!(
                none.classify_response(&Method::GET, StatusCode::OK, &status),
                Some(Failure),
                "{n} others"
            );
            assert!(
                grpc.classify_response(&Method::POST, StatusCode::OK, &status)
                    .is_some_and(|c| !c.is_success()),
                "{n} others"
            );
        }
    }

    #[test]
    fn downstream_headers_win() {
        let none = Classifier::NonRetryable5XX;
        let s = StatusCode::BAD_GATEWAY;
        let r = none.classify_response(&Method::POST, s, &h(&[("l5d-retryable", "true")]));
        assert_eq!(r, Some(RetryableFailure));
        let r = none.classify_response(&Method::GET, s, &h(&[("l5d-success-class", "1.0")]));
        assert_eq!(r, Some(Success));
        let r = none.classify_response(
            &Method::GET,
            StatusCode::OK,
            &h(&[("l5d-success-class", "0.0")]),
        );
        assert_eq!(r, Some(Failure));
    }

    #[test]
    fn errors_retry_when_the_app_never_saw_them() {
        let none = Classifier::NonRetryable5XX;
        let read = Classifier::RetryableRead5XX;
        assert_eq!(none.classify_error(&Method::POST, false), RetryableFailure);
        assert_eq!(none.classify_error(&Method::GET, true), Failure);
        assert_eq!(read.classify_error(&Method::GET, true), RetryableFailure);
        assert_eq!(read.classify_error(&Method::POST, true), Failure);
    }

    #[test]
    fn grpc_classifiers() {
        let def: Classifier = "io.l5d.h2.grpc.default".parse().unwrap();
        let comp: Classifier = "io.l5d.h2.grpc.compliant".parse().unwrap();
        let never: Classifier = "io.l5d.h2.grpc.neverRetryable".parse().unwrap();
        let always: Classifier = "io.l5d.h2.grpc.alwaysRetryable".parse().unwrap();
        let codes = Classifier::from_kind(
            "io.l5d.h2.grpc.retryableStatusCodes",
            Some(vec![4, 8]),
            None,
        )
        .unwrap();
        let ok = StatusCode::OK;
        let g = |c: &Classifier, code: &'static str| {
            c.classify_response(&Method::POST, ok, &h(&[("grpc-status", code)]))
        };
        assert_eq!(g(&def, "0"), Some(Success));
        assert_eq!(g(&def, "14"), Some(RetryableFailure));
        assert_eq!(g(&def, "2"), Some(Failure));
        assert_eq!(g(&never, "14"), Some(Failure));
        assert_eq!(g(&always, "2"), Some(RetryableFailure));
        assert_eq!(g(&codes, "8"), Some(RetryableFailure));
        assert_eq!(g(&codes, "14"), Some(Failure));
        // Status in trailers: the head cannot tell.
        assert_eq!(
            def.classify_response(&Method::POST, ok, &HeaderMap::new()),
            None
        );
        assert_eq!(
            def.classify_trailers(Some(&h(&[("grpc-status", "14")]))),
            RetryableFailure
        );
        assert_eq!(
            def.classify_trailers(Some(&h(&[("grpc-status", "0")]))),
            Success
        );
        assert_eq!(def.classify_trailers(None), Failure);
        // HTTP errors before gRPC.
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            comp.classify_response(&Method::POST, unavailable, &HeaderMap::new()),
            Some(RetryableFailure)
        );
        assert_eq!(
            def.classify_response(&Method::POST, unavailable, &HeaderMap::new()),
            Some(Failure)
        );
        let with_success =
            Classifier::from_kind("io.l5d.h2.grpc.default", None, Some(vec![0, 5])).unwrap();
        assert_eq!(g(&with_success, "5"), Some(Success));
    }
}
