//! Process metrics, read from `/proc/self` on each scrape (Linux; elsewhere
//! they are left out): resident memory, CPU time, open file descriptors.

use super::metrics::write_sample;

/// Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on
/// every Linux architecture Switchyard runs on).
const CLOCK_TICKS: f64 = 100.0;

/// The process's numbers, where readable.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub rss_bytes: Option<f64>,
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
}

/// Read the numbers now.
pub fn read() -> ProcessStats {
    ProcessStats {
        rss_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_from_status(&s)),
        cpu_seconds: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_from_stat(&s)),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64),
    }
}

/// `VmRSS:   1234 kB` → bytes.
fn rss_from_status(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Fields 14 and 15 (utime, stime) of `/proc/self/stat`, after the `(comm)`
/// field, which may itself hold spaces and parentheses.
fn cpu_from_stat(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

/// Append the process metrics to a Prometheus exposition.
pub(crate) fn render(out: &mut String, prefix: &str) {
    let s = read();
    if let Some(v) = s.rss_bytes {
        write_sample(
            out,
            prefix,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            v,
        );
    }
    if let Some(v) = s.cpu_seconds {
        write_sample(
            out,
            prefix,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            v,
        );
    }
    if let Some(v) = s.open_fds {
        write_sample(
            out,
            prefix,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            v,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            rss_from_status("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0";
        assert_eq!(cpu_from_stat(stat), Some(2.0));
        assert_eq!(cpu_from_stat("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = read();
        assert!(s.rss_bytes.unwrap() > 0.0);
        assert!(s.open_fds.unwrap() >= 1.0);
        assert!(s.cpu_seconds.is_some());
    }
}
