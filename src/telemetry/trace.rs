//! Distributed tracing: B3 (`x-b3-*` and the single `b3` header) and W3C
//! `traceparent` propagation, and export of sampled spans to a Zipkin v2
//! HTTP collector (`POST /api/v2/spans`).
//!
//! Each proxied request is one span: a child of the caller's span when the
//! request carries a trace context, else the root of a new trace. The
//! forwarded request carries the proxy's span as its context, so the next
//! hop's span is the proxy's child.
//!
//! Sampling: `l5d-sample` (a rate from 0 to 1) decides first, then the
//! caller's sampled flag, then the configured `sampleRate`. Spans go through
//! a bounded queue to a background task that posts them in batches; when the
//! queue is full spans are dropped and counted, never waited for.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;

use super::ZipkinConfig;

/// Spans waiting for export before new ones are dropped.
const QUEUE: usize = 10_000;
/// Spans per POST.
const BATCH: usize = 100;
/// How long a partial batch waits for company.
const LINGER: Duration = Duration::from_millis(200);

/// The B3 and W3C header names.
pub mod headers {
    /// B3 trace id (16 or 32 hex digits).
    pub const TRACE_ID: &str = "x-b3-traceid";
    /// B3 span id.
    pub const SPAN_ID: &str = "x-b3-spanid";
    /// B3 parent span id.
    pub const PARENT_ID: &str = "x-b3-parentspanid";
    /// B3 sampled flag (`1`, `0`, `true`, `false`).
    pub const SAMPLED: &str = "x-b3-sampled";
    /// B3 debug flag (`1`: sample).
    pub const FLAGS: &str = "x-b3-flags";
    /// B3 single header: `{trace}-{span}[-{sampled}[-{parent}]]` or `0`/`1`/`d`.
    pub const B3: &str = "b3";
    /// W3C trace context: `00-{trace:32}-{parent:16}-{flags:2}`.
    pub const TRACEPARENT: &str = "traceparent";
    /// Linkerd's per-request sample rate.
    pub const L5D_SAMPLE: &str = "l5d-sample";
}

/// A trace id: 128 bits (`high` is 0 for a 64-bit B3 id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId {
    /// Upper 64 bits.
    pub high: u64,
    /// Lower 64 bits.
    pub low: u64,
}

impl fmt::Display for TraceId {
    /// 32 hex digits (W3C and Zipkin accept them; B3 too).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.high, self.low)
    }
}

impl std::str::FromStr for TraceId {
    type Err = ();
    /// 16 or 32 hex digits, not all zero.
    fn from_str(s: &str) -> Result<TraceId, ()> {
        let id = match s.len() {
            16 => TraceId {
                high: 0,
                low: hex64(s)?,
            },
            32 => TraceId {
                high: hex64(s.get(..16).ok_or(())?)?,
                low: hex64(s.get(16..).ok_or(())?)?,
            },
            _ => return Err(()),
        };
        if id.high == 0 && id.low == 0 {
            return Err(());
        }
        Ok(id)
    }
}

fn hex64(s: &str) -> Result<u64, ()> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(());
    }
    u64::from_str_radix(s, 16).map_err(|_| ())
}

fn span_id(s: &str) -> Option<u64> {
    hex64(s).ok().filter(|v| *v != 0)
}

/// A caller's trace context, as read from the request headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: u64,
    /// The caller's sampling decision, if it made one.
    pub sampled: Option<bool>,
}

/// Read the trace context from `h`: B3 multi headers first, then the single
/// `b3` header, then `traceparent`. Malformed values are ignored (a new trace
/// starts), never an error for the request.
pub fn extract(h: &HeaderMap) -> (Option<Incoming>, Option<bool>) {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let b3_sampled = |s: &str| match s {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    };
    let mut flag = get(headers::SAMPLED).and_then(b3_sampled);
    if get(headers::FLAGS) == Some("1") {
        flag = Some(true);
    }
    if let (Some(t), Some(s)) = (get(headers::TRACE_ID), get(headers::SPAN_ID))
        && let (Ok(trace_id), Some(span_id)) = (t.parse::<TraceId>(), span_id(s))
    {
        return (
            Some(Incoming {
                trace_id,
                span_id,
                sampled: flag,
            }),
            flag,
        );
    }
    if let Some(b3) = get(headers::B3) {
        let parts: Vec<&str> = b3.split('-').collect();
        match parts.as_slice() {
            [only] => flag = b3_sampled(only).or(flag),
            [t, s, rest @ ..] => {
                let sampled = rest.first().and_then(|v| b3_sampled(v)).or(flag);
                if let (Ok(trace_id), Some(span_id)) = (t.parse::<TraceId>(), span_id(s)) {
                    return (
                        Some(Incoming {
                            trace_id,
                            span_id,
                            sampled,
                        }),
                        sampled,
                    );
                }
            }
            [] => {}
        }
    }
    if let Some(tp) = get(headers::TRACEPARENT) {
        let parts: Vec<&str> = tp.split('-').collect();
        if let [version, t, s, flags, ..] = parts.as_slice()
            && *version != "ff"
            && version.len() == 2
            && t.len() == 32
            && flags.len() == 2
            && let (Ok(trace_id), Some(span_id), Ok(flags)) = (
                t.parse::<TraceId>(),
                span_id(s),
                u8::from_str_radix(flags, 16),
            )
        {
            let sampled = Some(flags & 1 == 1);
            return (
                Some(Incoming {
                    trace_id,
                    span_id,
                    sampled,
                }),
                sampled,
            );
        }
    }
    (None, flag)
}

/// The proxy's span for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: u64,
    /// The caller's span, if any.
    pub parent_id: Option<u64>,
    /// Whether the span is recorded (and the decision propagated).
    pub sampled: bool,
}

/// Decide sampling: `l5d-sample` first, then the caller's flag, then `rate`.
pub fn decide(l5d_sample: Option<f64>, caller: Option<bool>, rate: f64) -> bool {
    let roll = |r: f64| r >= 1.0 || (r > 0.0 && rand::rng().random::<f64>() < r);
    if let Some(r) = l5d_sample.filter(|r| r.is_finite()) {
        return roll(r);
    }
    caller.unwrap_or_else(|| roll(rate))
}

/// The proxy's span: a child of `incoming`, or a new root.
pub fn child(incoming: Option<&Incoming>, sampled: bool) -> SpanContext {
    let mut rng = rand::rng();
    let mut id = || loop {
        let v: u64 = rng.random();
        if v != 0 {
            return v;
        }
    };
    match incoming {
        Some(i) => SpanContext {
            trace_id: i.trace_id,
            span_id: id(),
            parent_id: Some(i.span_id),
            sampled,
        },
        None => SpanContext {
            trace_id: TraceId {
                high: id(),
                low: id(),
            },
            span_id: id(),
            parent_id: None,
            sampled,
        },
    }
}

/// Write `ctx` as the forwarded request's trace context: B3 multi headers
/// and `traceparent` (a caller's `b3` single header is replaced too).
pub fn inject(h: &mut HeaderMap, ctx: &SpanContext) {
    fn put(h: &mut HeaderMap, name: &'static str, v: String) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    }
    let flag = if ctx.sampled { "1" } else { "0" };
    put(h, headers::TRACE_ID, ctx.trace_id.to_string());
    put(h, headers::SPAN_ID, format!("{:016x}", ctx.span_id));
    match ctx.parent_id {
        Some(p) => put(h, headers::PARENT_ID, format!("{p:016x}")),
        None => {
            h.remove(headers::PARENT_ID);
        }
    }
    put(h, headers::SAMPLED, flag.to_string());
    let flags = if ctx.sampled { "01" } else { "00" };
    put(
        h,
        headers::TRACEPARENT,
        format!("00-{}-{:016x}-{flags}", ctx.trace_id, ctx.span_id),
    );
    if h.contains_key(headers::B3) {
        let b3 = format!("{}-{:016x}-{flag}", ctx.trace_id, ctx.span_id);
        put(h, headers::B3, b3);
    }
    h.remove(headers::FLAGS);
}

/// A finished span in Zipkin v2 JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub id: String,
    /// The caller's span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Lower-case method and logical name.
    pub name: String,
    /// `SERVER`: the proxy received the request.
    pub kind: &'static str,
    /// Start, microseconds since the epoch.
    pub timestamp: u64,
    /// Microseconds (at least 1).
    pub duration: u64,
    /// The router, as the service.
    pub local_endpoint: Endpoint,
    /// `http.method`, `http.path`, `http.status_code`, `l5d.service`, `l5d.client`.
    pub tags: std::collections::BTreeMap<&'static str, String>,
}

/// A Zipkin endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The service name.
    pub service_name: String,
}

impl Span {
    /// A span for `ctx` that started at `start` and lasted `duration`.
    pub fn new(ctx: &SpanContext, name: String, start: SystemTime, duration: Duration) -> Span {
        Span {
            trace_id: ctx.trace_id.to_string(),
            id: format!("{:016x}", ctx.span_id),
            parent_id: ctx.parent_id.map(|p| format!("{p:016x}")),
            name,
            kind: "SERVER",
            timestamp: start
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            duration: (duration.as_micros() as u64).max(1),
            local_endpoint: Endpoint {
                service_name: String::new(),
            },
            tags: Default::default(),
        }
    }
}

/// The Zipkin exporter and the sampling rate.
#[derive(Debug)]
pub struct Tracer {
    /// `sampleRate`.
    pub sample_rate: f64,
    tx: mpsc::Sender<Span>,
}

impl Tracer {
    /// Start the exporter task posting to `http://host:port/api/v2/spans`;
    /// needs a tokio runtime.
    pub fn start(cfg: &ZipkinConfig) -> Tracer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let url = format!("http://{}:{}/api/v2/spans", cfg.host, cfg.port);
        tokio::spawn(export(rx, url));
        Tracer {
            sample_rate: cfg.sample_rate,
            tx,
        }
    }

    /// Queue a finished span; dropped (and counted) when the queue is full.
    pub fn report(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            super::metrics::zipkin(false).increment(1);
        }
    }
}

async fn export(mut rx: mpsc::Receiver<Span>, url: String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let sent = super::metrics::zipkin(true);
    let dropped = super::metrics::zipkin(false);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(_) => {
                batch.clear();
                continue;
            }
        };
        batch.clear();
        let req = http::Request::post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            dropped.increment(n);
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => sent.increment(n),
            Ok(Ok(resp)) => {
                dropped.increment(n);
                tracing::warn!(%url, status = %resp.status(), "zipkin collector refused spans");
            }
            Ok(Err(e)) => {
                dropped.increment(n);
                tracing::warn!(%url, error = %e, "zipkin export failed");
            }
            Err(_) => {
                dropped.increment(n);
                tracing::warn!(%url, "zipkin export timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn b3_multi() {
        let h = hm(&[
            (headers::TRACE_ID, "463ac35c9f6413ad48485a3953bb6124"),
            (headers::SPAN_ID, "a2fb4a1d1a96d312"),
            (headers::SAMPLED, "1"),
        ]);
        let (i, s) = extract(&h);
        let i = i.unwrap();
        assert_eq!(i.trace_id.to_string(), "463ac35c9f6413ad48485a3953bb6124");
        assert_eq!(i.span_id, 0xa2fb4a1d1a96d312);
        assert_eq!(s, Some(true));
    }

    #[test]
    fn b3_single_and_traceparent() {
        let (i, s) = extract(&hm(&[(
            headers::B3,
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
        )]));
        assert_eq!(i.unwrap().span_id, 0xe457b5a2e4d86bd1);
        assert_eq!(s, Some(false));
        let (i, s) = extract(&hm(&[(
            headers::TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )]));
        assert_eq!(
            i.unwrap().trace_id.to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(s, Some(true));
        // Malformed: ignored.
        let (i, _) = extract(&hm(&[(headers::TRACEPARENT, "00-zz-b7ad-01")]));
        assert!(i.is_none());
        let (i, _) = extract(&hm(&[
            (headers::TRACE_ID, "0000000000000000"),
            (headers::SPAN_ID, "a2fb4a1d1a96d312"),
        ]));
        assert!(i.is_none());
    }

    #[test]
    fn child_and_inject_round_trip() {
        let (i, _) = extract(&hm(&[
            (headers::TRACE_ID, "48485a3953bb6124"),
            (headers::SPAN_ID, "a2fb4a1d1a96d312"),
        ]));
        let i = i.unwrap();
        let c = child(Some(&i), true);
        assert_eq!(c.parent_id, Some(0xa2fb4a1d1a96d312));
        let mut h = HeaderMap::new();
        inject(&mut h, &c);
        let (next, s) = extract(&h);
        assert_eq!(next.unwrap().span_id, c.span_id);
        assert_eq!(next.unwrap().trace_id, i.trace_id);
        assert_eq!(s, Some(true));
        assert!(h.get(headers::TRACEPARENT).is_some());
    }

    proptest::proptest! {
        #[test]
        fn extract_never_panics(a in "\\PC*", b in "\\PC*", c in "[0-9a-f-]{0,80}") {
            let mut h = HeaderMap::new();
            for (name, v) in [(headers::TRACE_ID, &a), (headers::SPAN_ID, &b), (headers::B3, &c), (headers::TRACEPARENT, &c)] {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(name, v);
                }
            }
            let _ = extract(&h);
        }

        #[test]
        fn inject_then_extract_round_trips(high: u64, low in 1u64.., span in 1u64.., parent: Option<u64>, sampled: bool) {
            let ctx = SpanContext {
                trace_id: TraceId { high, low },
                span_id: span,
                parent_id: parent.filter(|p| *p != 0),
                sampled,
            };
            let mut h = HeaderMap::new();
            inject(&mut h, &ctx);
            let (i, s) = extract(&h);
            let i = i.unwrap();
            proptest::prop_assert_eq!(i.trace_id, ctx.trace_id);
            proptest::prop_assert_eq!(i.span_id, span);
            proptest::prop_assert_eq!(s, Some(sampled));
            // traceparent alone says the same.
            let mut tp = HeaderMap::new();
            tp.insert(headers::TRACEPARENT, h.get(headers::TRACEPARENT).unwrap().clone());
            let (j, s2) = extract(&tp);
            proptest::prop_assert_eq!(j.unwrap().span_id, span);
            proptest::prop_assert_eq!(s2, Some(sampled));
        }
    }

    #[test]
    fn sampling_order() {
        assert!(decide(Some(1.0), Some(false), 0.0));
        assert!(!decide(Some(0.0), Some(true), 1.0));
        assert!(decide(None, Some(true), 0.0));
        assert!(!decide(None, Some(false), 1.0));
        assert!(decide(None, None, 1.0));
        assert!(!decide(None, None, 0.0));
    }
}
