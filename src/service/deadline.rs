//! Request deadlines: Finagle's `Deadline` context as Linkerd carries it in
//! `l5d-ctx-deadline` (`<timestamp_ns> <deadline_ns>`, wall-clock nanoseconds
//! since the Unix epoch: when the deadline was set, and when it passes), and
//! gRPC's `grpc-timeout` (`<digits><unit>`, a time left).
//!
//! Each hop reads what it is given, combines it with its own
//! `totalTimeoutMs` keeping the strictest, refuses to send a request whose
//! deadline has passed, and writes the result downstream.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// The propagated deadline header.
pub const L5D_CTX_DEADLINE: &str = "l5d-ctx-deadline";
/// gRPC's timeout header (h2).
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// [`L5D_CTX_DEADLINE`] as a name checked at compile time: read on every request.
const CTX_DEADLINE: HeaderName = HeaderName::from_static(L5D_CTX_DEADLINE);

/// A deadline: when it was set and when it passes (ns since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// When the deadline was set.
    pub timestamp: u64,
    /// When it passes.
    pub deadline: u64,
}

/// The wall clock in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Deadline {
    /// A deadline `timeout` after `now` (ns since the epoch).
    pub fn after(now: u64, timeout: Duration) -> Deadline {
        Deadline {
            timestamp: now,
            deadline: now.saturating_add(nanos(timeout)),
        }
    }

    /// The strictest of two: the later timestamp, the earlier deadline
    /// (Finagle's `Deadline.combined`).
    pub fn combine(self, other: Deadline) -> Deadline {
        Deadline {
            timestamp: self.timestamp.max(other.timestamp),
            deadline: self.deadline.min(other.deadline),
        }
    }

    /// The strictest of any number (`None` when there are none).
    pub fn strictest(all: impl IntoIterator<Item = Deadline>) -> Option<Deadline> {
        all.into_iter().reduce(Deadline::combine)
    }

    /// Time left at `now`; `None` once it has passed.
    pub fn remaining(&self, now: u64) -> Option<Duration> {
        (self.deadline > now).then(|| Duration::from_nanos(self.deadline - now))
    }

    /// Read `l5d-ctx-deadline` (the strictest of its values; malformed ones
    /// are ignored, as Linkerd ignores a context it cannot decode).
    pub fn read(headers: &HeaderMap) -> Option<Deadline> {
        Deadline::strictest(
            headers
                .get_all(CTX_DEADLINE)
                .iter()
                .filter_map(|v| v.to_str().ok()?.parse().ok()),
        )
    }

    /// Replace `l5d-ctx-deadline` with this deadline.
    pub fn write(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.to_string()) {
            headers.insert(L5D_CTX_DEADLINE, v);
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.timestamp, self.deadline)
    }
}

/// A malformed deadline or timeout header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} value {value:?}: expected {expected}")]
pub struct BadDeadline {
    /// Which header.
    pub header: &'static str,
    /// What it said.
    pub value: String,
    /// What it should look like.
    pub expected: &'static str,
}

impl FromStr for Deadline {
    type Err = BadDeadline;

    fn from_str(s: &str) -> Result<Deadline, BadDeadline> {
        let bad = || BadDeadline {
            header: L5D_CTX_DEADLINE,
            value: s.to_string(),
            expected: "'<timestamp_ns> <deadline_ns>'",
        };
        let mut it = s.split_whitespace();
        let (Some(t), Some(d), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(Deadline {
            timestamp: t.parse().map_err(|_| bad())?,
            deadline: d.parse().map_err(|_| bad())?,
        })
    }
}

/// Parse a `grpc-timeout` value (`1S`, `100m`, at most 8 digits).
pub fn parse_grpc_timeout(s: &str) -> Result<Duration, BadDeadline> {
    let bad = || BadDeadline {
        header: GRPC_TIMEOUT,
        value: s.to_string(),
        expected: "1 to 8 digits and a unit of H, M, S, m, u or n",
    };
    let s = s.trim();
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = (
        s.get(..split).ok_or_else(bad)?,
        s.get(split..).ok_or_else(bad)?,
    );
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// Write a time left as `grpc-timeout`: the finest unit that fits 8 digits,
/// rounded up so that the downstream never gives up before we do.
pub fn fmt_grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let ns = d.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        let v = ns.div_ceil(per);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX}H")
}

/// The deadline of a request: `l5d-ctx-deadline`, and on h2 `grpc-timeout`
/// (taken as starting `now`), the strictest.
pub fn read_request(headers: &HeaderMap, grpc: bool, now: u64) -> Option<Deadline> {
    let ctx = Deadline::read(headers);
    let g = grpc
        .then(|| headers.get(GRPC_TIMEOUT))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_grpc_timeout(v).ok())
        .map(|t| Deadline::after(now, t));
    Deadline::strictest(ctx.into_iter().chain(g))
}

/// Write the deadline downstream: `l5d-ctx-deadline`, and on h2 the time
/// left as `grpc-timeout`.
pub fn write_request(headers: &mut HeaderMap, deadline: &Deadline, grpc: bool, now: u64) {
    deadline.write(headers);
    if grpc
        && let Some(left) = deadline.remaining(now)
        && let Ok(v) = HeaderValue::from_str(&fmt_grpc_timeout(left))
    {
        headers.insert(GRPC_TIMEOUT, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let d = Deadline {
            timestamp: 1_490_000_000_000_000_000,
            deadline: 1_490_000_001_000_000_000,
        };
        assert_eq!(d.to_string(), "1490000000000000000 1490000001000000000");
        assert_eq!(d.to_string().parse::<Deadline>(), Ok(d));
        for bad in ["", "1", "1 2 3", "a b", "-1 2"] {
            assert!(bad.parse::<Deadline>().is_err(), "{bad}");
        }
    }

    #[test]
    fn strictest_wins() {
        let a = Deadline::after(100, Duration::from_nanos(50));
        let b = Deadline::after(120, Duration::from_nanos(100));
        let c = a.combine(b);
        assert_eq!(
            c,
            Deadline {
                timestamp: 120,
                deadline: 150
            }
        );
        assert_eq!(c.remaining(149), Some(Duration::from_nanos(1)));
        assert_eq!(c.remaining(150), None);
        let mut h = HeaderMap::new();
        h.append(L5D_CTX_DEADLINE, "100 150".parse().unwrap());
        h.append(L5D_CTX_DEADLINE, "120 220".parse().unwrap());
        h.append(L5D_CTX_DEADLINE, "junk".parse().unwrap());
        assert_eq!(Deadline::read(&h), Some(c));
    }

    #[test]
    fn grpc_timeout() {
        assert_eq!(parse_grpc_timeout("100m"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "10x", "1.5S", "-1S"] {
            assert!(parse_grpc_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(fmt_grpc_timeout(Duration::from_secs(5000)), "5000000m");
        assert_eq!(fmt_grpc_timeout(Duration::from_nanos(5)), "5n");
        let d = Duration::from_millis(1234);
        assert!(parse_grpc_timeout(&fmt_grpc_timeout(d)).unwrap() >= d);
    }

    #[test]
    fn request_deadline_takes_grpc_timeout_on_h2_only() {
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, "100m".parse().unwrap());
        let now = 1_000_000_000;
        assert_eq!(read_request(&h, false, now), None);
        let d = read_request(&h, true, now).unwrap();
        assert_eq!(d.remaining(now), Some(Duration::from_millis(100)));
        h.insert(
            L5D_CTX_DEADLINE,
            format!("{now} {}", now + 50_000_000).parse().unwrap(),
        );
        let d = read_request(&h, true, now).unwrap();
        assert_eq!(d.remaining(now), Some(Duration::from_millis(50)));
        let mut out = HeaderMap::new();
        write_request(&mut out, &d, true, now + 10_000_000);
        assert_eq!(out.get(GRPC_TIMEOUT).unwrap(), "40000000n");
        assert_eq!(Deadline::read(&out), Some(d));
    }
}
