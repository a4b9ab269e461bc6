//! Telemetry: logs, metrics, access logs, distributed traces and the recent
//! requests list.
//!
//! * Logs: `tracing` with a `RUST_LOG`-style filter, as text or JSON; the
//!   filter can be changed at runtime (`/logging.json`), see [`log_filter`]
//!   and [`set_log_filter`].
//! * [`metrics`]: the `metrics` facade with the Prometheus recorder; names,
//!   labels and the helpers the request path calls.
//! * [`process`]: RSS, CPU and open file descriptors, read on each scrape.
//! * [`access_log`]: a router's `httpAccessLog` (common log format plus duration).
//! * [`trace`]: B3 and W3C `traceparent` propagation and the Zipkin v2 exporter.
//! * [`recent`]: `io.l5d.recentRequests`, shown at `/requests`.
//! * [`request`]: the per-server hook the proxy wraps each request with.
//! * [`admin`]: the admin endpoints for all of the above.
//!
//! What the config asks for (`telemetry:` and each router's `httpAccessLog`)
//! is installed once per process with [`install`]; servers pick it up when
//! they start. Without it (library use, tests) metrics go to the `metrics`
//! no-op recorder and nothing is traced, logged per request or kept.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

pub mod access_log;
pub mod admin;
pub mod metrics;
pub mod process;
pub mod recent;
pub mod request;
pub mod trace;

pub use request::{Follow, Noted, Routed, ServerTelemetry};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Install the global subscriber. The filter comes from `RUST_LOG`
/// (default `info`) and can be replaced later with [`set_log_filter`].
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Why a log filter was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// The text is not a `RUST_LOG`-style filter.
    #[error("invalid log filter '{text}': {reason}")]
    Invalid {
        /// What was given.
        text: String,
        /// The parser's word.
        reason: String,
    },
    /// [`init`] was not called (or another subscriber was installed first).
    #[error("logging was not set up by switchyard; the filter cannot be changed")]
    NotInstalled,
}

/// The current log filter, as `RUST_LOG` would write it (`info`,
/// `switchyard=debug,info`); `None` before [`init`].
pub fn log_filter() -> Option<String> {
    FILTER.get()?.with_current(|f| f.to_string()).ok()
}

/// Replace the log filter at runtime: a level (`debug`) or any
/// `RUST_LOG`-style directive list. A bad filter keeps the current one.
pub fn set_log_filter(text: &str) -> Result<String, LogFilterError> {
    let handle = FILTER.get().ok_or(LogFilterError::NotInstalled)?;
    let filter = EnvFilter::builder()
        .parse(text.trim())
        .map_err(|e| LogFilterError::Invalid {
            text: text.to_string(),
            reason: e.to_string(),
        })?;
    handle
        .reload(filter)
        .map_err(|_| LogFilterError::NotInstalled)?;
    tracing::info!(filter = %text.trim(), "log filter changed");
    Ok(log_filter().unwrap_or_default())
}

/// `telemetry:` entry `io.l5d.prometheus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Admin path of the text exposition (default `/admin/metrics/prometheus`).
    pub path: String,
    /// Prepended to every metric name (default none).
    pub prefix: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            path: metrics::DEFAULT_PATH.to_string(),
            prefix: String::new(),
        }
    }
}

/// `telemetry:` entry `io.l5d.zipkin`.
#[derive(Clone, Debug, PartialEq)]
pub struct ZipkinConfig {
    /// Collector host (default `localhost`).
    pub host: String,
    /// Collector port (default 9411, the Zipkin HTTP collector's).
    pub port: u16,
    /// Share of requests traced when the caller did not decide (default 0.001).
    pub sample_rate: f64,
}

/// `telemetry:` entry `io.l5d.recentRequests`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentConfig {
    /// Share of requests kept.
    pub sample_rate: f64,
    /// How many are kept (default 10).
    pub capacity: usize,
}

/// Everything telemetry needs from the config.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// Prometheus exposition; served with defaults when `None`.
    pub prometheus: Option<PrometheusConfig>,
    /// Zipkin export.
    pub zipkin: Option<ZipkinConfig>,
    /// Recent requests.
    pub recent: Option<RecentConfig>,
    /// Access log file per router label (`httpAccessLog`).
    pub access_logs: HashMap<String, PathBuf>,
}

/// The installed telemetry of the process.
pub struct Telemetry {
    /// The Prometheus settings in force.
    pub prometheus: PrometheusConfig,
    /// The Zipkin tracer, when configured.
    pub tracer: Option<Arc<trace::Tracer>>,
    /// The recent requests, when configured.
    pub recent: Option<Arc<recent::RecentRequests>>,
    /// Open access logs by router label.
    pub access_logs: HashMap<String, access_log::AccessLog>,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Install the process's telemetry from `config`: the Prometheus recorder,
/// the Zipkin exporter task, the recent requests buffer and the access logs.
/// Must run inside a tokio runtime (it starts background tasks). Only the
/// first call counts; later calls return the installed telemetry.
pub fn install(config: &TelemetryConfig) -> std::io::Result<&'static Telemetry> {
    if let Some(t) = TELEMETRY.get() {
        return Ok(t);
    }
    let prometheus = config.prometheus.clone().unwrap_or_default();
    metrics::install(&prometheus.prefix);
    let tracer = config
        .zipkin
        .as_ref()
        .map(|z| Arc::new(trace::Tracer::start(z)));
    let recent = config
        .recent
        .as_ref()
        .map(|r| Arc::new(recent::RecentRequests::new(r.sample_rate, r.capacity)));
    let mut access_logs = HashMap::new();
    for (router, path) in &config.access_logs {
        access_logs.insert(router.clone(), access_log::AccessLog::open(path)?);
    }
    Ok(TELEMETRY.get_or_init(|| Telemetry {
        prometheus,
        tracer,
        recent,
        access_logs,
    }))
}

/// The installed telemetry, if any.
pub fn installed() -> Option<&'static Telemetry> {
    TELEMETRY.get()
}
