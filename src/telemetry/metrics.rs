//! Metrics: the `metrics` facade, recorded by metrics-exporter-prometheus and
//! rendered at `/admin/metrics/prometheus` (text) and `/admin/metrics.json`.
//!
//! # Names and labels
//!
//! Names follow Prometheus conventions (snake_case, base units, `_total` on
//! counters); the configured `prefix` is prepended to every name. Labels are
//! bounded: `router` (a label from the config), `server` (a listening
//! address), `service` (the logical name the request was identified as),
//! `client` (the bound name it was sent to), `status_code` and `class`.
//! A server keeps at most [`MAX_ROUTES`] (service, client) pairs; further
//! pairs are counted under `service="overflow", client="overflow"`, so a
//! caller inventing host names cannot grow the exposition without bound.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `requests_total` | counter | router, server, service, client | requests received |
//! | `responses_total` | counter | + status_code, class | responses, by code and class (success, failure, retryable) |
//! | `request_duration_seconds` | histogram | router, server, service, client | time to the response headers |
//! | `request_body_bytes_total` | counter | router, server, service, client | request body bytes forwarded |
//! | `response_body_bytes_total` | counter | router, server, service, client | response body bytes sent back |
//! | `open_connections` | gauge | router, server | client connections open now |
//! | `connections_total` | counter | router, server | client connections accepted |
//! | `retries_total` | counter | router, service | retries ([`ServiceMetrics`]) |
//! | `retry_budget_exhausted_total` | counter | router, service | retries refused by the budget ([`ServiceMetrics`]) |
//! | `requeues_total` | counter | router, client | requests sent again after a connection failure ([`ClientMetrics`]) |
//! | `loadbalancer_endpoints` | gauge | router, client | endpoints in the balancer ([`ClientGauges`]) |
//! | `loadbalancer_available_endpoints` | gauge | router, client | endpoints not ejected ([`ClientGauges`]) |
//! | `failure_accrual_ejections_total` | counter | router, client | endpoints ejected ([`ClientMetrics`]) |
//! | `failure_accrual_revivals_total` | counter | router, client | endpoints revived ([`ClientMetrics`]) |
//! | `binding_updates_total` | counter | router | bound trees published by binding watches |
//! | `namer_updates_total` | counter | namer | address sets changed by a namer |
//! | `dtab_reloads_total` | counter | file | dtab file edits applied |
//! | `dtab_rejections_total` | counter | file | dtab file edits refused (last good dtab kept) |
//! | `zipkin_spans_sent_total`, `zipkin_spans_dropped_total` | counter | – | span export |
//! | `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds` | gauge, counter, gauge | – | read from /proc on each scrape |
//!
//! Histograms are true Prometheus histograms (buckets from 0.5 ms to 30 s), so
//! they aggregate across labels.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use foldhash::quality::RandomState;
use metrics::{Counter, Gauge, Label, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::dtab::Path;

/// Where the text exposition is served unless `io.l5d.prometheus` says otherwise.
pub const DEFAULT_PATH: &str = "/admin/metrics/prometheus";

/// (service, client) pairs a server labels before it counts the rest as `overflow`.
pub const MAX_ROUTES: usize = 1000;

/// Latency buckets, seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Base names (the configured prefix is prepended).
pub mod names {
    /// Requests received.
    pub const REQUESTS: &str = "requests_total";
    /// Responses by status code and class.
    pub const RESPONSES: &str = "responses_total";
    /// Time to the response headers.
    pub const REQUEST_DURATION: &str = "request_duration_seconds";
    /// Request body bytes.
    pub const REQUEST_BYTES: &str = "request_body_bytes_total";
    /// Response body bytes.
    pub const RESPONSE_BYTES: &str = "response_body_bytes_total";
    /// Open client connections.
    pub const OPEN_CONNECTIONS: &str = "open_connections";
    /// Accepted client connections.
    pub const CONNECTIONS: &str = "connections_total";
    /// Retries.
    pub const RETRIES: &str = "retries_total";
    /// Retries refused by the retry budget.
    pub const RETRY_BUDGET_EXHAUSTED: &str = "retry_budget_exhausted_total";
    /// Requeues after connection failures.
    pub const REQUEUES: &str = "requeues_total";
    /// Endpoints in a client's balancer.
    pub const LB_ENDPOINTS: &str = "loadbalancer_endpoints";
    /// Endpoints available (not ejected).
    pub const LB_AVAILABLE: &str = "loadbalancer_available_endpoints";
    /// Failure accrual ejections.
    pub const FA_EJECTIONS: &str = "failure_accrual_ejections_total";
    /// Failure accrual revivals.
    pub const FA_REVIVALS: &str = "failure_accrual_revivals_total";
    /// Bound trees published by binding watches.
    pub const BINDING_UPDATES: &str = "binding_updates_total";
    /// Address changes published by namers.
    pub const NAMER_UPDATES: &str = "namer_updates_total";
    /// Dtab file reloads.
    pub const DTAB_RELOADS: &str = "dtab_reloads_total";
    /// Dtab file rejections.
    pub const DTAB_REJECTIONS: &str = "dtab_rejections_total";
    /// Spans sent to Zipkin.
    pub const ZIPKIN_SENT: &str = "zipkin_spans_sent_total";
    /// Spans dropped (queue full or collector failure).
    pub const ZIPKIN_DROPPED: &str = "zipkin_spans_dropped_total";
}

struct Exporter {
    handle: PrometheusHandle,
    prefix: String,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// The prefixed name of a metric.
fn name(base: &'static str) -> SharedString {
    match EXPORTER.get() {
        Some(e) if !e.prefix.is_empty() => SharedString::from(format!("{}{base}", e.prefix)),
        _ => SharedString::const_str(base),
    }
}

/// Install the process-wide Prometheus recorder (once; later calls are
/// ignored) and describe every metric. Starts the upkeep task when a tokio
/// runtime is running. Returns false when another recorder was installed
/// first (the exposition then stays empty).
pub fn install(prefix: &str) -> bool {
    if EXPORTER.get().is_some() {
        return true;
    }
    // No bucket settings: the exporter holds no histogram (request
    // durations are counted per route, `Durations`).
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return false;
    }
    let _ = EXPORTER.set(Exporter {
        handle: handle.clone(),
        prefix: prefix.to_string(),
    });
    describe();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
    true
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    use names::*;
    describe_counter!(name(REQUESTS), Unit::Count, "Requests received");
    describe_counter!(
        name(RESPONSES),
        Unit::Count,
        "Responses by status code and class (success, failure, retryable)"
    );
    describe_counter!(
        name(REQUEST_BYTES),
        Unit::Bytes,
        "Request body bytes received"
    );
    describe_counter!(
        name(RESPONSE_BYTES),
        Unit::Bytes,
        "Response body bytes sent"
    );
    describe_gauge!(name(OPEN_CONNECTIONS), "Client connections open");
    describe_counter!(name(CONNECTIONS), "Client connections accepted");
    describe_counter!(name(RETRIES), "Requests retried");
    describe_counter!(
        name(RETRY_BUDGET_EXHAUSTED),
        "Retries not made because the retry budget was spent"
    );
    describe_counter!(
        name(REQUEUES),
        "Requests sent to another endpoint after a connection failure"
    );
    describe_gauge!(
        name(LB_ENDPOINTS),
        "Endpoints in the client's load balancer"
    );
    describe_gauge!(
        name(LB_AVAILABLE),
        "Endpoints of the client's load balancer not ejected"
    );
    describe_counter!(name(FA_EJECTIONS), "Endpoints ejected by failure accrual");
    describe_counter!(name(FA_REVIVALS), "Endpoints revived after ejection");
    describe_counter!(name(BINDING_UPDATES), "Bound trees published by bindings");
    describe_counter!(name(NAMER_UPDATES), "Address set changes from a namer");
    describe_counter!(name(DTAB_RELOADS), "Dtab file edits applied");
    describe_counter!(
        name(DTAB_REJECTIONS),
        "Dtab file edits rejected; the last good dtab kept serving"
    );
    describe_counter!(name(ZIPKIN_SENT), "Spans sent to the Zipkin collector");
    describe_counter!(
        name(ZIPKIN_DROPPED),
        "Spans dropped: export queue full or collector failing"
    );
}

/// The Prometheus text exposition, process metrics included. Empty
/// (but for process metrics) when no recorder is installed.
pub fn render_prometheus() -> String {
    flush_tallies();
    let mut out = EXPORTER
        .get()
        .map(|e| e.handle.render())
        .unwrap_or_default();
    let prefix = EXPORTER.get().map(|e| e.prefix.as_str()).unwrap_or("");
    if EXPORTER.get().is_some() {
        render_durations(&mut out, prefix);
    }
    super::process::render(&mut out, prefix);
    out
}

/// `/admin/metrics.json`: every sample of the exposition as a flat object,
/// keyed by the series as Prometheus writes it (`requests_total{router="http",…}`),
/// plus Linkerd-style aggregates: `rt/<router>/requests`,
/// `rt/<router>/{server,service,client}/<value>/{requests,success,failures}`
/// (the value without its leading `/`: `rt/out/service/svc/web/requests`)
/// and `.../request_latency_ms.{p50,p95,p99}` estimated from the histogram.
pub fn render_json() -> serde_json::Value {
    let text = render_prometheus();
    let prefix = EXPORTER.get().map(|e| e.prefix.as_str()).unwrap_or("");
    let bucket_name = format!("{}_bucket", names::REQUEST_DURATION);
    let mut out = serde_json::Map::new();
    let mut agg: std::collections::BTreeMap<String, f64> = Default::default();
    // Latency buckets (upper bound, cumulative count) per aggregate scope.
    let mut buckets: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for line in text.lines() {
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        if let Some(n) = serde_json::Number::from_f64(sample.value) {
            out.insert(sample.series.to_string(), serde_json::Value::Number(n));
        }
        let base = sample.name.strip_prefix(prefix).unwrap_or(sample.name);
        let Some(router) = sample.label("router") else {
            continue;
        };
        let mut scopes = vec![format!("rt/{router}")];
        for scope in ["server", "service", "client"] {
            if let Some(v) = sample.label(scope)
                && !v.is_empty()
            {
                let v = v.trim_start_matches('/');
                scopes.push(format!("rt/{router}/{scope}/{v}"));
            }
        }
        if base == bucket_name {
            let le = match sample.label("le") {
                Some("+Inf") => f64::INFINITY,
                Some(v) => match v.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                None => continue,
            };
            for scope in scopes {
                let b = buckets.entry(scope).or_default();
                match b.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, c)) => *c += sample.value,
                    None => b.push((le, sample.value)),
                }
            }
            continue;
        }
        let stat = match base {
            names::REQUESTS => "requests",
            names::RESPONSES => match sample.label("class") {
                Some("success") => "success",
                _ => "failures",
            },
            _ => continue,
        };
        for scope in scopes {
            *agg.entry(format!("{scope}/{stat}")).or_default() += sample.value;
        }
    }
    for (scope, mut b) in buckets {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            if let Some(v) = quantile(&b, q) {
                agg.insert(format!("{scope}/request_latency_ms.{name}"), v * 1000.0);
            }
        }
    }
    for (k, v) in agg {
        if let Some(n) = serde_json::Number::from_f64(v) {
            out.insert(k, serde_json::Value::Number(n));
        }
    }
    serde_json::Value::Object(out)
}

/// The `q` quantile of cumulative histogram buckets sorted by upper bound,
/// interpolated linearly within its bucket (as PromQL's
/// `histogram_quantile`); `None` without observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

/// One line of the exposition.
struct Sample<'a> {
    series: &'a str,
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `name{a="x",b="y\"z"} 12.5` (our own exposition, so no timestamps).
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        series,
        name,
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        out.push((k.trim_start_matches(','), value));
        rest = after.get(end + 1..)?;
    }
    Some(out)
}

// ------------------------------------------------------------ request path

/// How a response counts: Linkerd's response classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    /// Not a 5xx.
    Success,
    /// A 5xx (or a proxy error) that may not be retried.
    Failure,
    /// A failure the service's classifier calls retryable.
    Retryable,
}

impl ResponseClass {
    /// The default classification (Linkerd's `nonRetryable5XX`): 5xx fail.
    pub fn of_status(status: u16) -> ResponseClass {
        if status >= 500 {
            ResponseClass::Failure
        } else {
            ResponseClass::Success
        }
    }

    /// The `class` label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResponseClass::Success => "success",
            ResponseClass::Failure => "failure",
            ResponseClass::Retryable => "retryable",
        }
    }
}

/// The handles of one (router, server, service, client), created once and
/// reused by every request that takes that route.
///
/// Laid out in declaration order (`repr(C)`), what every request touches
/// first: the tally, the first response's class and the duration sum (64
/// bytes, right after the `Arc`'s counts), then the duration buckets, the
/// fastest first. The compiler's order spread them over the allocation's
/// five lines; with a thousand routes in rotation each was a cache miss.
#[repr(C)]
pub struct RouteMetrics {
    /// The per-request counts, added to their handles when the exposition
    /// is rendered ([`flush_tallies`]).
    tally: Tally,
    /// The (code, class) of the route's first response, read without a
    /// lock: most of a route's responses are alike (the read lock of
    /// `responses` is two atomic read-modify-writes).
    first_response: OnceLock<(u16, ResponseClass, Counter)>,
    /// `request_duration_seconds`, rendered by [`render_durations`].
    durations: Durations,
    labels: Vec<Label>,
    /// `requests_total`.
    requests: Counter,
    /// `request_body_bytes_total`.
    pub request_bytes: Counter,
    /// `response_body_bytes_total`.
    response_bytes: Counter,
    /// Other codes and classes.
    responses: RwLock<Vec<(u16, ResponseClass, Counter)>>,
}

/// What every request adds to its route: counted here, in one cache line
/// inside the route's own allocation, and added to the exporter's handles
/// only when the exposition is rendered. A handle's increment is two atomic
/// read-modify-writes (its value and its generation) on a line of its own,
/// often gone cold at 10k req/s while the request waited for its endpoint;
/// this is one, on a line the request just touched (its `Arc` count).
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    /// Responses of `first_response`'s code and class.
    first_responses: AtomicU64,
    response_bytes: AtomicU64,
}

/// A route's `request_duration_seconds`, counted in place: a bucket's
/// count and the sum, one atomic add each. The exporter's histogram took
/// four atomic read-modify-writes a record (its lock-free bucket and an
/// epoch pin), on lines of its own, and its upkeep drained every route's
/// samples every 5 s (2.6M instructions a tick with one route, 14.0M with
/// 1,000).
#[repr(C)]
struct Durations {
    /// Their sum, in nanoseconds (584 years before it wraps).
    sum_ns: AtomicU64,
    /// Observations in each bucket of [`DURATION_BUCKETS`] (at most its
    /// bound, above the one before), and above the last (`+Inf`).
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
}

impl Default for Durations {
    fn default() -> Durations {
        Durations {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Durations {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS.partition_point(|&b| b < secs);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Add this histogram's counts to `into` (bucket counts, then the sum
    /// in nanoseconds).
    fn add_to(&self, into: &mut [u64; DURATION_BUCKETS.len() + 2]) {
        for (i, b) in self.buckets.iter().enumerate() {
            into[i] += b.load(Ordering::Relaxed);
        }
        into[DURATION_BUCKETS.len() + 1] += self.sum_ns.load(Ordering::Relaxed);
    }
}

/// A route's labels as the exposition writes them (`k="v",`…), values
/// escaped as the text format requires.
fn label_text(labels: &[Label]) -> String {
    let mut out = String::new();
    for l in labels {
        let _ = write!(out, "{}=\"", l.key());
        for c in l.value().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\",");
    }
    out
}

/// Every route's `request_duration_seconds`, as one metric family; routes
/// with the same labels (none, but for a server made twice on one address)
/// are one series, as the exporter would have them.
fn render_durations(out: &mut String, prefix: &str) {
    let mut series: std::collections::BTreeMap<String, [u64; DURATION_BUCKETS.len() + 2]> =
        Default::default();
    for r in TALLIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
    {
        let counts = series
            .entry(label_text(&r.labels))
            .or_insert([0; DURATION_BUCKETS.len() + 2]);
        r.durations.add_to(counts);
    }
    if series.is_empty() {
        return;
    }
    let name = format!("{prefix}{}", names::REQUEST_DURATION);
    let _ = writeln!(
        out,
        "# HELP {name} Time from receiving a request to sending its response headers"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, counts) in series {
        let mut cumulative = 0u64;
        let bounds = DURATION_BUCKETS.iter().map(|b| b.to_string());
        for (n, le) in counts.iter().zip(bounds.chain(["+Inf".to_string()])) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let labels = labels.trim_end_matches(',');
        let sum = counts[DURATION_BUCKETS.len() + 1] as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
    out.push('\n');
}

/// Every route with a tally, for [`flush_tallies`]. Routes are made once
/// per (server, service, client), at most [`MAX_ROUTES`] a server.
static TALLIED: Mutex<Vec<Weak<RouteMetrics>>> = Mutex::new(Vec::new());

/// Add every route's tally to its handles: before the exposition is read.
pub fn flush_tallies() {
    let mut routes = TALLIED.lock().unwrap_or_else(|e| e.into_inner());
    routes.retain(|w| match w.upgrade() {
        Some(r) => {
            r.flush();
            true
        }
        None => false,
    });
}

impl Drop for RouteMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

impl RouteMetrics {
    fn new(labels: Vec<Label>) -> Arc<RouteMetrics> {
        let r = Arc::new(RouteMetrics {
            tally: Tally::default(),
            requests: metrics::counter!(name(names::REQUESTS), labels.clone()),
            durations: Durations::default(),
            request_bytes: metrics::counter!(name(names::REQUEST_BYTES), labels.clone()),
            response_bytes: metrics::counter!(name(names::RESPONSE_BYTES), labels.clone()),
            first_response: OnceLock::new(),
            responses: RwLock::new(Vec::new()),
            labels,
        });
        TALLIED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&r));
        r
    }

    /// Count a request (`requests_total`).
    #[inline]
    pub fn count_request(&self) {
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Record a request's duration (`request_duration_seconds`).
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.durations.observe(d);
    }

    /// Count `n` bytes of response body (`response_body_bytes_total`).
    #[inline]
    pub fn count_response_bytes(&self, n: u64) {
        self.tally.response_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Add the tally to the handles.
    fn flush(&self) {
        let t = &self.tally;
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let n = take(&t.requests);
        if n > 0 {
            self.requests.increment(n);
        }
        let n = take(&t.response_bytes);
        if n > 0 {
            self.response_bytes.increment(n);
        }
        let n = take(&t.first_responses);
        if n > 0
            && let Some((_, _, c)) = self.first_response.get()
        {
            c.increment(n);
        }
    }

    /// Count a response (the handle per code and class is made once).
    pub fn response(&self, status: u16, class: ResponseClass) {
        if let Some((s, k, _)) = self.first_response.get()
            && *s == status
            && *k == class
        {
            self.tally.first_responses.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(v) = self.responses.read()
            && let Some((_, _, c)) = v.iter().find(|(s, k, _)| *s == status && *k == class)
        {
            c.increment(1);
            return;
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("status_code", status.to_string()));
        labels.push(Label::from_static_parts("class", class.as_str()));
        let c = metrics::counter!(name(names::RESPONSES), labels);
        c.increment(1);
        if self.first_response.set((status, class, c.clone())).is_ok() {
            return;
        }
        if let Ok(mut v) = self.responses.write()
            && v.len() < 64
        {
            v.push((status, class, c));
        }
    }
}

/// Route handles by service, then client (two levels so that a lookup
/// borrows both names instead of building a key).
/// Hashing is foldhash's, seeded: a fraction of SipHash's cost on paths,
/// and the names come from requests.
type Routes =
    HashMap<Option<Path>, HashMap<Option<Path>, Arc<RouteMetrics>, RandomState>, RandomState>;

/// A route a thread looked up, with the paths it was looked up by (held,
/// so that their labels' addresses cannot be reused while they identify it).
struct SeenRoute {
    _service: Option<Path>,
    _client: Option<Path>,
    route: Arc<RouteMetrics>,
}

/// Which route a (server, service, client) is, by the addresses and
/// lengths of the paths' labels: the routing cache hands out the very same
/// paths for a name every time, so these identify it without hashing its
/// labels.
type SeenKey = (u64, usize, usize, usize, usize);

/// Routes a thread has looked up: the last one, for a run of requests to
/// one name, then every one, for many names in rotation (where two lookups
/// by labels in the shared map cost about 750 instructions a request).
#[derive(Default)]
struct Seen {
    last: Option<(SeenKey, Arc<RouteMetrics>)>,
    all: HashMap<SeenKey, SeenRoute, RandomState>,
}

/// Entries a thread's [`Seen`] holds before it starts again: routes come
/// and go with bindings, and a forgotten one only costs a lookup by labels.
const SEEN_MAX: usize = 4 * MAX_ROUTES;

thread_local! {
    static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
}

/// The identity of a path for [`SeenKey`]: where its labels are, and how
/// many (0, 0 for none).
fn identity(p: Option<&Path>) -> (usize, usize) {
    p.map_or((0, 0), |p| (p.elems().as_ptr() as usize, p.elems().len()))
}

/// A route's handles kept where requests reach the route through (a
/// binding), for the first server and client that use it, so that their
/// requests find the handles without a lookup: with a thousand routes in
/// rotation, the per-thread map of routes cost about three cache misses a
/// request (callgrind's cache simulation). Others look them up as before.
#[derive(Default)]
pub struct RouteSlot(OnceLock<(u64, Path, Arc<RouteMetrics>)>);

/// One server's metrics: its connection gauges and its routes' handles.
pub struct ServerMetrics {
    /// Tells this server's entry in [`SEEN`] from another's (an
    /// address could be reused by a later server).
    id: u64,
    router: Arc<str>,
    server: Arc<str>,
    routes: RwLock<Routes>,
    overflow: OnceLock<Arc<RouteMetrics>>,
    /// `open_connections`.
    pub open_connections: Gauge,
    /// `connections_total`.
    pub connections: Counter,
}

impl ServerMetrics {
    /// Handles for the server of `router` listening on `server`.
    pub fn new(router: &str, server: &str) -> ServerMetrics {
        let labels = vec![
            Label::new("router", router.to_string()),
            Label::new("server", server.to_string()),
        ];
        static IDS: AtomicU64 = AtomicU64::new(0);
        ServerMetrics {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            router: router.into(),
            server: server.into(),
            routes: RwLock::new(Routes::default()),
            overflow: OnceLock::new(),
            open_connections: metrics::gauge!(name(names::OPEN_CONNECTIONS), labels.clone()),
            connections: metrics::counter!(name(names::CONNECTIONS), labels),
        }
    }

    fn make(&self, service: &str, client: &str) -> Arc<RouteMetrics> {
        RouteMetrics::new(vec![
            Label::new("router", self.router.to_string()),
            Label::new("server", self.server.to_string()),
            Label::new("service", service.to_string()),
            Label::new("client", client.to_string()),
        ])
    }

    /// [`ServerMetrics::route`] of `service` (whose binding keeps `slot`)
    /// and `client`, from `slot` when it holds that route.
    pub fn route_in(
        &self,
        slot: &RouteSlot,
        service: Option<&Path>,
        client: &Path,
    ) -> Arc<RouteMetrics> {
        if let Some((id, c, r)) = slot.0.get()
            && *id == self.id
            && c == client
        {
            return r.clone();
        }
        let r = self.route(service, Some(client));
        // Taken by another server or client first: they keep it.
        let _ = slot.0.set((self.id, client.clone(), r.clone()));
        r
    }

    /// The handles of (service, client); `None` (or an empty path) means
    /// "not known" (the request failed before identification or routing)
    /// and labels as "". Looked up without allocating.
    pub fn route(&self, service: Option<&Path>, client: Option<&Path>) -> Arc<RouteMetrics> {
        let (service, client) = (
            service.filter(|p| !p.is_empty()),
            client.filter(|p| !p.is_empty()),
        );
        let ((s, sl), (c, cl)) = (identity(service), identity(client));
        let key = (self.id, s, sl, c, cl);
        // Requests come with the very paths the routing cache handed out:
        // recognised by address, without hashing their labels.
        let hit = SEEN.with_borrow_mut(|seen| {
            if let Some((k, r)) = &seen.last
                && *k == key
            {
                return Some(r.clone());
            }
            let r = seen.all.get(&key)?.route.clone();
            seen.last = Some((key, r.clone()));
            Some(r)
        });
        if let Some(r) = hit {
            return r;
        }
        // Only now are the paths kept: a hit borrows them.
        let (service, client) = (service.cloned(), client.cloned());
        let r = self.lookup(service.clone(), client.clone());
        SEEN.with_borrow_mut(|seen| {
            if seen.all.len() >= SEEN_MAX {
                seen.all.clear();
            }
            seen.all.insert(
                key,
                SeenRoute {
                    _service: service,
                    _client: client,
                    route: r.clone(),
                },
            );
            seen.last = Some((key, r.clone()));
        });
        r
    }

    fn lookup(&self, service: Option<Path>, client: Option<Path>) -> Arc<RouteMetrics> {
        if let Ok(m) = self.routes.read()
            && let Some(r) = m.get(&service).and_then(|by_client| by_client.get(&client))
        {
            return r.clone();
        }
        let Ok(mut m) = self.routes.write() else {
            return self.make("", "");
        };
        if let Some(r) = m.get(&service).and_then(|by_client| by_client.get(&client)) {
            return r.clone();
        }
        if self.route_count(&m) >= MAX_ROUTES {
            return self
                .overflow
                .get_or_init(|| self.make("overflow", "overflow"))
                .clone();
        }
        let show = |p: &Option<Path>| p.as_ref().map(|p| p.to_string()).unwrap_or_default();
        let r = self.make(&show(&service), &show(&client));
        m.entry(service).or_default().insert(client, r.clone());
        r
    }

    fn route_count(&self, m: &Routes) -> usize {
        m.values().map(HashMap::len).sum()
    }
}

// ------------------------------------------- helpers for the other layers

fn router_labels(router: &str, k: &'static str, v: &str) -> Vec<Label> {
    vec![
        Label::new("router", router.to_string()),
        Label::new(k, v.to_string()),
    ]
}

/// The retry counters of one (router, service), made once with the service
/// and reused by every request to it.
pub struct ServiceMetrics {
    /// `retries_total`.
    pub retries: Counter,
    /// `retry_budget_exhausted_total`.
    pub budget_exhausted: Counter,
}

impl ServiceMetrics {
    /// The counters of `service` in `router`.
    pub fn new(router: &str, service: &Path) -> ServiceMetrics {
        let labels = router_labels(router, "service", &service.to_string());
        ServiceMetrics {
            retries: metrics::counter!(name(names::RETRIES), labels.clone()),
            budget_exhausted: metrics::counter!(name(names::RETRY_BUDGET_EXHAUSTED), labels),
        }
    }
}

impl std::fmt::Debug for ServiceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMetrics").finish_non_exhaustive()
    }
}

/// The metrics of one (router, client), made once with the client and
/// shared by its endpoints: requeues, failure accrual, balancer gauges.
pub struct ClientMetrics {
    /// `requeues_total`.
    pub requeues: Counter,
    /// `failure_accrual_ejections_total`.
    pub ejections: Counter,
    /// `failure_accrual_revivals_total`.
    pub revivals: Counter,
    /// `loadbalancer_endpoints` and `loadbalancer_available_endpoints`.
    pub gauges: ClientGauges,
}

impl ClientMetrics {
    /// The metrics of `client` in `router`.
    pub fn new(router: &str, client: &Path) -> ClientMetrics {
        let labels = router_labels(router, "client", &client.to_string());
        ClientMetrics {
            requeues: metrics::counter!(name(names::REQUEUES), labels.clone()),
            ejections: metrics::counter!(name(names::FA_EJECTIONS), labels.clone()),
            revivals: metrics::counter!(name(names::FA_REVIVALS), labels),
            gauges: ClientGauges::new(router, client),
        }
    }
}

impl std::fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetrics").finish_non_exhaustive()
    }
}

/// A client's load-balancer gauges; make one when the client is made and set
/// it when its endpoint set or ejections change.
pub struct ClientGauges {
    /// `loadbalancer_endpoints`.
    pub size: Gauge,
    /// `loadbalancer_available_endpoints`.
    pub available: Gauge,
}

impl ClientGauges {
    /// The gauges of `client` in `router`.
    pub fn new(router: &str, client: &Path) -> ClientGauges {
        let labels = router_labels(router, "client", &client.to_string());
        ClientGauges {
            size: metrics::gauge!(name(names::LB_ENDPOINTS), labels.clone()),
            available: metrics::gauge!(name(names::LB_AVAILABLE), labels),
        }
    }

    /// Publish the balancer's size and how many endpoints are available.
    pub fn set(&self, size: usize, available: usize) {
        self.size.set(size as f64);
        self.available.set(available as f64);
    }
}

/// A binding of `router` published a new bound tree.
pub fn binding_updates(router: &str) -> Counter {
    metrics::counter!(
        name(names::BINDING_UPDATES),
        vec![Label::new("router", router.to_string())]
    )
}

/// The counter of address changes published by the namer at `prefix`.
pub fn namer_updates(prefix: &Path) -> Counter {
    metrics::counter!(
        name(names::NAMER_UPDATES),
        vec![Label::new("namer", prefix.to_string())]
    )
}

/// A dtab file edit was applied (`ok`) or rejected.
pub fn dtab_reload(file: &str, ok: bool) {
    let n = if ok {
        names::DTAB_RELOADS
    } else {
        names::DTAB_REJECTIONS
    };
    metrics::counter!(name(n), vec![Label::new("file", file.to_string())]).increment(1);
}

/// Zipkin export counters.
pub(crate) fn zipkin(sent: bool) -> Counter {
    metrics::counter!(name(if sent {
        names::ZIPKIN_SENT
    } else {
        names::ZIPKIN_DROPPED
    }))
}

/// Write a gauge or counter sample by hand (process metrics, read on scrape).
pub(crate) fn write_sample(
    out: &mut String,
    prefix: &str,
    base: &str,
    kind: &str,
    help: &str,
    v: f64,
) {
    let _ = writeln!(out, "# HELP {prefix}{base} {help}");
    let _ = writeln!(out, "# TYPE {prefix}{base} {kind}");
    let _ = writeln!(out, "{prefix}{base} {v}");
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_kept_by_a_binding_is_the_route_looked_up() {
        let path = |s: &str| -> Path { s.parse().unwrap() };
        let (one, two) = (
            ServerMetrics::new("slot-rt", "127.0.0.1:1"),
            ServerMetrics::new("slot-rt", "127.0.0.1:2"),
        );
        let (svc, v1, v2) = (
            path("/svc/web"),
            path("/#/io.l5d.fs/v1"),
            path("/#/io.l5d.fs/v2"),
        );
        let slot = RouteSlot::default();
        let first = one.route_in(&slot, Some(&svc), &v1);
        assert!(Arc::ptr_eq(&first, &one.route(Some(&svc), Some(&v1))));
        assert!(Arc::ptr_eq(&first, &one.route_in(&slot, Some(&svc), &v1)));
        // An equal client path from elsewhere is the same client.
        assert!(Arc::ptr_eq(
            &first,
            &one.route_in(&slot, Some(&svc), &path("/#/io.l5d.fs/v1"))
        ));
        // The binding's other branch, and another server of its router:
        // their own routes, each time.
        for _ in 0..2 {
            let other = one.route_in(&slot, Some(&svc), &v2);
            assert!(Arc::ptr_eq(&other, &one.route(Some(&svc), Some(&v2))));
            assert!(!Arc::ptr_eq(&other, &first));
            let elsewhere = two.route_in(&slot, Some(&svc), &v1);
            assert!(Arc::ptr_eq(&elsewhere, &two.route(Some(&svc), Some(&v1))));
            assert!(!Arc::ptr_eq(&elsewhere, &first));
        }
    }

    #[test]
    fn what_a_request_touches_of_its_route_fits_one_cache_line() {
        use std::mem::{offset_of, size_of};
        // The tally, the first response and the duration sum: 64 bytes
        // from the start, then the buckets.
        let hot = offset_of!(RouteMetrics, durations) + offset_of!(Durations, buckets);
        assert_eq!(offset_of!(RouteMetrics, tally), 0);
        assert!(
            hot <= 64,
            "the hot fields take {hot} bytes (first response {} bytes)",
            size_of::<OnceLock<(u16, ResponseClass, Counter)>>()
        );
    }

    /// The value of the sample `name{...router="<router>"...}`.
    fn rendered(name: &str, router: &str) -> Option<f64> {
        render_prometheus()
            .lines()
            .filter_map(parse_sample)
            .find(|s| s.name == name && s.label("router") == Some(router))
            .map(|s| s.value)
    }

    /// The value of the sample `name` of `router` whose label `k` is `v`.
    fn labelled(text: &str, name: &str, router: &str, (k, v): (&str, &str)) -> Option<f64> {
        text.lines()
            .filter_map(parse_sample)
            .find(|s| s.name == name && s.label("router") == Some(router) && s.label(k) == Some(v))
            .map(|s| s.value)
    }

    #[test]
    fn a_routes_tally_is_in_the_exposition_and_survives_the_route() {
        // Whatever recorder the crate's tests installed first is the one.
        assert!(install(""));
        let router = "tally-test";
        let server = Arc::new(ServerMetrics::new(router, "127.0.0.1:1"));
        let service = Path::from_strs(&["svc", "web"]).expect("a path");
        let route = server.route(Some(&service), None);
        for _ in 0..3 {
            route.count_request();
            route.response(200, ResponseClass::Success);
        }
        route.response(503, ResponseClass::Failure);
        route.count_response_bytes(10);
        route.count_response_bytes(5);
        // A bound is inclusive (le); past the last is only in +Inf.
        route.observe_duration(Duration::from_micros(500));
        route.observe_duration(Duration::from_millis(3));
        route.observe_duration(Duration::from_secs(40));
        assert_eq!(rendered("requests_total", router), Some(3.0));
        let text = render_prometheus();
        let bucket = |le| labelled(&text, "request_duration_seconds_bucket", router, ("le", le));
        assert_eq!(bucket("0.0005"), Some(1.0));
        assert_eq!(bucket("0.0025"), Some(1.0));
        assert_eq!(bucket("0.005"), Some(2.0));
        assert_eq!(bucket("30"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        assert_eq!(
            rendered("request_duration_seconds_count", router),
            Some(3.0)
        );
        assert_eq!(
            rendered("request_duration_seconds_sum", router),
            Some(40.0035)
        );
        assert_eq!(
            text.matches("# TYPE request_duration_seconds histogram")
                .count(),
            1,
            "one family"
        );
        assert_eq!(rendered("response_body_bytes_total", router), Some(15.0));
        let text = render_prometheus();
        let code = |c| labelled(&text, "responses_total", router, ("status_code", c));
        assert_eq!((code("200"), code("503")), (Some(3.0), Some(1.0)));
        // Counted again, then the route goes (its server with it): the
        // counts are kept.
        route.count_request();
        drop((route, server));
        SEEN.with_borrow_mut(|s| *s = Seen::default());
        assert_eq!(rendered("requests_total", router), Some(4.0));
    }

    #[test]
    fn samples_parse() {
        let s = parse_sample(r#"requests_total{router="h\"t",service="/svc/a"} 3"#).unwrap();
        assert_eq!(s.name, "requests_total");
        assert_eq!(s.label("router"), Some("h\"t"));
        assert_eq!(s.label("service"), Some("/svc/a"));
        assert_eq!(s.value, 3.0);
        let s = parse_sample("up 1").unwrap();
        assert!(s.labels.is_empty());
        assert!(parse_sample("# HELP x y").is_none());
        assert!(parse_sample(r#"x{a="unterminated} 1"#).is_none());
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&b, 0.5), Some(0.1));
        assert!((quantile(&b, 0.75).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(
            quantile(&[(0.1, 0.0), (f64::INFINITY, 4.0)], 0.5),
            Some(0.1)
        );
    }

    #[test]
    fn route_handles_are_one_per_server_and_names_whoever_asks() {
        let (a, b) = (ServerMetrics::new("r", "a"), ServerMetrics::new("r", "b"));
        let svc = Path::from_strs(&["svc", "web"]);
        let client = Path::from_strs(&["#", "io.l5d.fs", "web"]);
        let first = a.route(svc.as_ref(), client.as_ref());
        // The same path objects (found by address), equal ones made
        // anew (the map), and no names at all.
        assert!(Arc::ptr_eq(&first, &a.route(svc.as_ref(), client.as_ref())));
        let (svc2, client2) = (
            Path::from_strs(&["svc", "web"]),
            Path::from_strs(&["#", "io.l5d.fs", "web"]),
        );
        assert!(Arc::ptr_eq(
            &first,
            &a.route(svc2.as_ref(), client2.as_ref())
        ));
        assert!(Arc::ptr_eq(&first, &a.route(svc.as_ref(), client.as_ref())));
        let none = a.route(None, None);
        assert!(!Arc::ptr_eq(&first, &none));
        assert!(Arc::ptr_eq(&none, &a.route(None, Some(&Path::empty()))));
        // Another server never gets this one's handles.
        let other = b.route(svc.as_ref(), client.as_ref());
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(Arc::ptr_eq(&other, &b.route(svc.as_ref(), client.as_ref())));
        let svc_only = a.route(svc.as_ref(), None);
        assert!(!Arc::ptr_eq(&first, &svc_only));
    }

    /// Names in rotation: each keeps its own handles, whether found by the
    /// paths' addresses or, for equal paths made anew, by their labels.
    #[test]
    fn route_handles_in_rotation_stay_apart() {
        let a = ServerMetrics::new("r", "rot");
        let names: Vec<(Option<Path>, Option<Path>)> = (0..3)
            .map(|i| {
                let n = format!("n{i}");
                (
                    Path::from_strs(&["svc", n.as_str()]),
                    Path::from_strs(&["#", "io.l5d.fs", n.as_str()]),
                )
            })
            .collect();
        let firsts: Vec<_> = names
            .iter()
            .map(|(s, c)| a.route(s.as_ref(), c.as_ref()))
            .collect();
        for round in 0..3 {
            for (i, (s, c)) in names.iter().enumerate() {
                let r = if round == 1 {
                    let n = format!("n{i}");
                    let s2 = Path::from_strs(&["svc", n.as_str()]);
                    let c2 = Path::from_strs(&["#", "io.l5d.fs", n.as_str()]);
                    a.route(s2.as_ref(), c2.as_ref())
                } else {
                    a.route(s.as_ref(), c.as_ref())
                };
                assert!(Arc::ptr_eq(&r, &firsts[i]), "round {round}, name {i}");
                for (j, f) in firsts.iter().enumerate() {
                    assert_eq!(Arc::ptr_eq(&r, f), i == j);
                }
            }
        }
    }

    #[test]
    fn classes() {
        assert_eq!(ResponseClass::of_status(200), ResponseClass::Success);
        assert_eq!(ResponseClass::of_status(404), ResponseClass::Success);
        assert_eq!(ResponseClass::of_status(503), ResponseClass::Failure);
    }
}
