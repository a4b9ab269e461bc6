//! `io.l5d.recentRequests`: a sample of recent requests kept in memory
//! (the last `capacity`), shown at `/requests` and `/requests.json`.

use std::collections::VecDeque;
use std::sync::Mutex;

use rand::Rng;
use serde::Serialize;

/// One kept request.
#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    /// When it arrived, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// The router label.
    pub router: String,
    /// The caller.
    pub source: String,
    /// Method.
    pub method: String,
    /// Request target as received.
    pub uri: String,
    /// The logical name, when identified.
    pub service: String,
    /// The bound name, when routed.
    pub client: String,
    /// Response status.
    pub status: u16,
    /// Until the response headers, milliseconds.
    pub duration_ms: f64,
}

/// The kept requests, newest last.
#[derive(Debug)]
pub struct RecentRequests {
    sample_rate: f64,
    capacity: usize,
    entries: Mutex<VecDeque<RecentRequest>>,
}

impl RecentRequests {
    /// Keep `sample_rate` of requests, the last `capacity` of them.
    pub fn new(sample_rate: f64, capacity: usize) -> RecentRequests {
        RecentRequests {
            sample_rate,
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    /// Whether to keep this request (decided when it arrives, so unsampled
    /// requests cost one random number).
    pub fn sample(&self) -> bool {
        self.capacity > 0
            && (self.sample_rate >= 1.0
                || (self.sample_rate > 0.0 && rand::rng().random::<f64>() < self.sample_rate))
    }

    /// Keep `r`, dropping the oldest beyond capacity.
    pub fn push(&self, r: RecentRequest) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while e.len() >= self.capacity.max(1) {
            e.pop_front();
        }
        e.push_back(r);
    }

    /// The kept requests, newest first.
    pub fn snapshot(&self) -> Vec<RecentRequest> {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().rev().cloned().collect()
    }
}

/// `/requests`: an HTML table of the kept requests.
pub fn html(list: &[RecentRequest]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Recent requests</title></head><body>\
         <h1>Recent requests</h1><table border=\"1\"><tr><th>time (ms)</th><th>router</th><th>source</th>\
         <th>method</th><th>uri</th><th>service</th><th>client</th><th>status</th><th>duration (ms)</th></tr>",
    );
    for r in list {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
            r.timestamp_ms,
            esc(&r.router),
            esc(&r.source),
            esc(&r.method),
            esc(&r.uri),
            esc(&r.service),
            esc(&r.client),
            r.status,
            r.duration_ms
        ));
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u64) -> RecentRequest {
        RecentRequest {
            timestamp_ms: n,
            router: "<r>".into(),
            source: String::new(),
            method: "GET".into(),
            uri: "/".into(),
            service: String::new(),
            client: String::new(),
            status: 200,
            duration_ms: 1.0,
        }
    }

    #[test]
    fn keeps_the_last_capacity_newest_first() {
        let k = RecentRequests::new(1.0, 2);
        assert!(k.sample());
        for n in 0..5 {
            k.push(r(n));
        }
        let s = k.snapshot();
        assert_eq!(
            s.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
            vec![4, 3]
        );
        assert!(html(&s).contains("&lt;r&gt;"));
        assert!(!RecentRequests::new(0.0, 2).sample());
    }
}
