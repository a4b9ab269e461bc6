//! The real `switchyard` binary as a child process: started with a config
//! written to a temporary directory (ports 0), its listener addresses read
//! from its log, its log kept for assertions; killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `switchyard run -c`.
pub struct Switchyard {
    child: Child,
    /// The first router's first server.
    pub router: SocketAddr,
    /// The admin server.
    pub admin: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The temporary directory it runs in, when it owns one.
    _dir: Option<tempfile::TempDir>,
}

impl Switchyard {
    /// Start with `config` (YAML) and `RUST_LOG=rust_log`.
    pub fn start(config: &str, rust_log: &str) -> Switchyard {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Switchyard::start_in(dir.path(), config, rust_log);
        s._dir = Some(dir);
        s
    }

    /// Start in `dir` (its working directory, where the config is written),
    /// for tests that lay out namer and dtab files there themselves.
    pub fn start_in(dir: &std::path::Path, config: &str, rust_log: &str) -> Switchyard {
        Switchyard::start_named(dir, "linkerd", config, rust_log)
    }

    /// Start in `dir` with the config written to `NAME.yaml`, so that several
    /// switchyards (two hops, say) can share one directory.
    pub fn start_named(
        dir: &std::path::Path,
        name: &str,
        config: &str,
        rust_log: &str,
    ) -> Switchyard {
        // SWITCHYARD_TEST_THREADS=1 runs a whole suite on the single-thread runtime.
        let threads = std::env::var("SWITCHYARD_TEST_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(2);
        Switchyard::start_threads(dir, name, config, rust_log, threads)
    }

    /// [`Switchyard::start_named`] with `--threads threads`.
    pub fn start_threads(
        dir: &std::path::Path,
        name: &str,
        config: &str,
        rust_log: &str,
        threads: usize,
    ) -> Switchyard {
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "-c"])
            .arg(&cfg)
            .args(["--threads", &threads.to_string()])
            .current_dir(dir)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        let (mut router, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while router.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "switchyard did not announce its listeners:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            };
            if router.is_none() {
                router = announced(&line, "router listening");
            }
            if admin.is_none() {
                admin = announced(&line, "admin listening");
            }
        }
        Switchyard {
            child,
            router: router.expect("router"),
            admin: admin.expect("admin"),
            log,
            _dir: None,
        }
    }

    /// Send a signal (`TERM`, `INT`) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Its exit status, waiting at most `limit` for it to exit (panics
    /// after that).
    pub async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            assert!(start.elapsed() < limit, "did not exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait (at most `limit`) until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `... router listening ... addr=127.0.0.1:4140` → the address.
fn announced(line: &str, what: &str) -> Option<SocketAddr> {
    if !line.contains(what) {
        return None;
    }
    line.split(|c: char| c.is_whitespace() || c == '=' || c == '"')
        .find_map(|w| w.parse::<SocketAddr>().ok())
}
