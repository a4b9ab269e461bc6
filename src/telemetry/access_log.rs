//! A router's access log (`httpAccessLog`): one line per request in the
//! common log format, plus the duration in milliseconds:
//!
//! ```text
//! 127.0.0.1 - - [27/Nov/2026:08:30:00 +0000] "GET /index.html HTTP/1.1" 200 512 3.214
//! ```
//!
//! Lines are written by a background task from a bounded queue, so a slow
//! disk never holds up a request; when the queue is full a line is dropped
//! (and counted in the log file's own task as a warning).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// Lines waiting to be written before new ones are dropped.
const QUEUE: usize = 4096;

/// An open access log.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

/// What one line says.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The caller.
    pub peer: Option<SocketAddr>,
    /// When the request arrived.
    pub start: SystemTime,
    /// Method.
    pub method: &'a str,
    /// Request target as received.
    pub uri: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'a str,
    /// Response status.
    pub status: u16,
    /// Response body bytes.
    pub bytes: u64,
    /// Until the response body was done.
    pub duration: Duration,
}

impl AccessLog {
    /// Open (create or append to) `path` and start its writer task; needs a
    /// tokio runtime.
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let shown = path.display().to_string();
        let drops = dropped.clone();
        // Blocking writes stay off the async workers.
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::new(file);
                while let Some(line) = rx.blocking_recv() {
                    let mut ok = w.write_all(line.as_bytes()).is_ok();
                    // Drain what is queued, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        ok &= w.write_all(line.as_bytes()).is_ok();
                    }
                    ok &= w.flush().is_ok();
                    if !ok {
                        tracing::warn!(file = %shown, "access log write failed");
                    }
                    let d = drops.swap(0, Ordering::Relaxed);
                    if d > 0 {
                        tracing::warn!(file = %shown, dropped = d, "access log lines dropped (queue full)");
                    }
                }
            })?;
        Ok(AccessLog { tx, dropped })
    }

    /// Queue a line; never blocks.
    pub fn log(&self, e: &Entry<'_>) {
        if self.tx.try_send(format_line(e)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The line for `e`, newline included.
pub fn format_line(e: &Entry<'_>) -> String {
    let host = e
        .peer
        .map_or_else(|| "-".to_string(), |p| p.ip().to_string());
    let bytes = if e.bytes == 0 {
        "-".to_string()
    } else {
        e.bytes.to_string()
    };
    let secs = e
        .start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{host} - - [{}] \"{} {} {}\" {} {bytes} {:.3}\n",
        clf_time(secs),
        e.method,
        e.uri.escape_default(),
        e.version,
        e.status,
        e.duration.as_secs_f64() * 1000.0,
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `10/Oct/2000:13:55:36 +0000` for seconds since the epoch (UTC).
pub fn clf_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS.get((m as usize).saturating_sub(1)).unwrap_or(&"Jan");
    format!(
        "{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(971_193_336), "10/Oct/2000:15:55:36 +0000");
        assert_eq!(clf_time(1_709_210_096), "29/Feb/2024:12:34:56 +0000");
    }

    #[test]
    fn line() {
        let e = Entry {
            peer: Some("10.0.0.1:5555".parse().unwrap()),
            start: UNIX_EPOCH + Duration::from_secs(971_193_336),
            method: "GET",
            uri: "/a b\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1500),
        };
        assert_eq!(
            format_line(&e),
            "10.0.0.1 - - [10/Oct/2000:15:55:36 +0000] \"GET /a b\\\" HTTP/1.1\" 200 12 1.500\n"
        );
    }
}
