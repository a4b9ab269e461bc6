//! The client level through the real proxy: requeues when a backend dies
//! under load, latency-aware balancing, failure accrual (ejection, probe,
//! revival, failing open) and connection pool limits. Backends are hyper
//! servers on 127.0.0.1:0 whose behaviour the test switches at runtime.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use support::*;
use switchyard::client::{
    Backoff, ClientConfig, ClientSettings, FailureAccrual, LoadBalancer, PoolParams,
};
use switchyard::routing::{Protocol, RouterParams};

/// What a switchable backend does with the next requests.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// 200 with the backend's name.
    Ok,
    /// This status.
    Status(u16),
    /// 200 after this many milliseconds.
    Sleep(u64),
    /// Close each new connection at once, before reading anything.
    Reset,
}

/// A backend whose behaviour can be switched, and which can be killed
/// (stops listening and drops its connections).
struct Switch {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Switch {
    async fn start(name: &str) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (h, m, c, n) = (hits.clone(), mode.clone(), conns.clone(), name.to_string());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if *m.lock().unwrap() == Mode::Reset {
                    drop(stream);
                    continue;
                }
                let (h, m, n) = (h.clone(), m.clone(), n.clone());
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let (h, m, n) = (h.clone(), m.clone(), n.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mode = *m.lock().unwrap();
                        let mut resp = Response::new(Full::new(Bytes::from(n)));
                        match mode {
                            Mode::Ok | Mode::Reset => {}
                            Mode::Status(s) => {
                                *resp.status_mut() = StatusCode::from_u16(s).unwrap();
                            }
                            Mode::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let task = tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Switch {
            addr,
            hits,
            mode,
            conns,
            accept,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stop listening (new connections are refused) and drop every connection.
    fn kill(&self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.kill();
    }
}

fn params(settings: ClientSettings) -> RouterParams {
    let mut p = RouterParams::new(Protocol::Http);
    p.client = ClientConfig::Global(settings);
    p
}

fn consecutive(failures: u32, backoff_ms: u64) -> FailureAccrual {
    FailureAccrual::ConsecutiveFailures {
        failures,
        backoff: Backoff::Constant {
            ms: Duration::from_millis(backoff_ms),
        },
    }
}

/// The endpoints of `/#/test/<name>` in `/client_state.json`, by address.
fn endpoint_state(p: &Proxy, name: &str, addr: SocketAddr) -> serde_json::Value {
    let state = p.router.client_state();
    let client = &state[&format!("/#/test/{name}")];
    client["endpoints"]
        .as_array()
        .and_then(|eps| eps.iter().find(|e| e["addr"] == addr.to_string()).cloned())
        .unwrap_or_else(|| panic!("{addr} in {state:#}"))
}

async fn get_status(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        TestBody,
    >,
    proxy: SocketAddr,
    host: &str,
) -> (StatusCode, String, String) {
    let req = Request::builder()
        .uri(format!("http://{proxy}/"))
        .header("host", host)
        .body(empty())
        .unwrap();
    let (r, body) = send(client, req).await;
    (r.status(), body, l5d_err(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_costs_at_most_one_in_a_thousand() {
    let backends = [
        Switch::start("a").await,
        Switch::start("b").await,
        Switch::start("c").await,
    ];
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let eps: Vec<(SocketAddr, f64)> = backends.iter().map(|b| (b.addr, 1.0)).collect();
    let _web = binder.name("web", &eps);
    let p = Arc::new(start_proxy(params(ClientSettings::default()), binder).await);

    const WORKERS: usize = 2;
    const PER_WORKER: usize = 1500;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (p, done) = (p.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            let mut failures = Vec::new();
            for _ in 0..PER_WORKER {
                let (status, body, err) = get_status(&client, p.addr, "web").await;
                if status != StatusCode::OK {
                    failures.push(format!("{status} {err} {body}"));
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }
    // Kill one backend a third of the way through.
    for _ in 0..2000 {
        if done.load(Ordering::SeqCst) >= WORKERS * PER_WORKER / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backends[2].kill();
    // Let the aborted connection tasks finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed_at = backends[2].hits();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let total = WORKERS * PER_WORKER;
    eprintln!("{} of {total} failed: {failures:?}", failures.len());
    assert!(
        failures.len() * 1000 <= total,
        "{} of {total} failed: {failures:?}",
        failures.len()
    );
    // The dead backend got nothing more, the others took it all.
    assert_eq!(backends[2].hits(), killed_at);
    assert!(backends[0].hits() + backends[1].hits() + killed_at >= total - failures.len());
    // Failure accrual took it out of rotation.
    let dead = endpoint_state(&p, "web", backends[2].addr);
    assert_eq!(dead["state"], "ejected", "{dead:#}");
    let state = p.router.client_state();
    assert!(
        state["/#/test/web"]["requeues"].as_u64().unwrap() >= 1,
        "{state:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ewma_sends_little_to_a_slow_backend() {
    let backends = [
        Switch::start("a").await,
        Switch::start("b").await,
        Switch::start("c").await,
    ];
    backends[0].set(Mode::Sleep(100));
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let eps: Vec<(SocketAddr, f64)> = backends.iter().map(|b| (b.addr, 1.0)).collect();
    let _web = binder.name("web", &eps);
    let settings = ClientSettings {
        load_balancer: Some(LoadBalancer::Ewma {
            max_effort: 5,
            decay_time: Duration::from_secs(10),
        }),
        ..Default::default()
    };
    let p = Arc::new(start_proxy(params(settings), binder).await);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            for _ in 0..100 {
                let (status, _, err) = get_status(&client, p.addr, "web").await;
                assert_eq!(status, StatusCode::OK, "{err}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let slow = backends[0].hits();
    assert!(slow * 10 <= 400, "the slow backend got {slow} of 400");
    let st = endpoint_state(&p, "web", backends[0].addr);
    assert!(st["ewmaMs"].as_f64().unwrap() > 10.0, "{st:#}");
}

#[tokio::test]
async fn failure_accrual_ejects_after_consecutive_failures_and_a_probe_revives() {
    let good = Switch::start("good").await;
    let bad = Switch::start("bad").await;
    bad.set(Mode::Status(500));
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(good.addr, 1.0), (bad.addr, 1.0)]);
    let settings = ClientSettings {
        failure_accrual: Some(consecutive(3, 300)),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let client = h1_client();
    // Until the bad one has failed three times in a row.
    for _ in 0..200 {
        if bad.hits() >= 3 {
            break;
        }
        get_status(&client, p.addr, "web").await;
    }
    assert_eq!(bad.hits(), 3);
    let st = endpoint_state(&p, "web", bad.addr);
    assert_eq!(st["state"], "ejected", "{st:#}");
    assert!(st["ejectedForMs"].as_u64().unwrap() <= 300, "{st:#}");
    // Ejected: nothing goes there.
    for _ in 0..20 {
        let (status, body, _) = get_status(&client, p.addr, "web").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good"));
    }
    assert_eq!(bad.hits(), 3);
    // After the backoff one probe goes; it fails, so it is ejected again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..200 {
        if bad.hits() > 3 {
            break;
        }
        get_status(&client, p.addr, "web").await;
    }
    assert_eq!(bad.hits(), 4);
    assert_eq!(endpoint_state(&p, "web", bad.addr)["state"], "ejected");
    // It recovers; the next probe succeeds and it is back in rotation.
    bad.set(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..200 {
        if bad.hits() > 4 {
            break;
        }
        get_status(&client, p.addr, "web").await;
    }
    assert_eq!(endpoint_state(&p, "web", bad.addr)["state"], "available");
    let before = bad.hits();
    for _ in 0..40 {
        get_status(&client, p.addr, "web").await;
    }
    assert!(bad.hits() > before + 5, "{} after {before}", bad.hits());
    let state = p.router.client_state();
    assert_eq!(state["/#/test/web"]["ejections"], 2, "{state:#}");
    assert_eq!(state["/#/test/web"]["revivals"], 1, "{state:#}");
}

#[tokio::test]
async fn when_every_endpoint_is_ejected_requests_still_go_out() {
    let a = Switch::start("a").await;
    let b = Switch::start("b").await;
    a.set(Mode::Status(503));
    b.set(Mode::Status(503));
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(a.addr, 1.0), (b.addr, 1.0)]);
    let settings = ClientSettings {
        failure_accrual: Some(consecutive(1, 60_000)),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let client = h1_client();
    for _ in 0..20 {
        let (status, _, _) = get_status(&client, p.addr, "web").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let state = p.router.client_state();
    assert_eq!(state["/#/test/web"]["available"], 0, "{state:#}");
    // Failing open: the backends saw every request.
    assert_eq!(a.hits() + b.hits(), 20);
    // A success while failing open brings that endpoint back.
    a.set(Mode::Ok);
    b.set(Mode::Ok);
    for _ in 0..10 {
        let (status, _, _) = get_status(&client, p.addr, "web").await;
        assert_eq!(status, StatusCode::OK);
    }
    let state = p.router.client_state();
    assert!(
        state["/#/test/web"]["available"].as_u64().unwrap() >= 1,
        "{state:#}"
    );
}

#[tokio::test]
async fn refused_connections_are_requeued_within_the_budget() {
    let good = Switch::start("good").await;
    let dead = Switch::start("dead").await;
    dead.kill();
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(good.addr, 1.0), (dead.addr, 1.0)]);

    // With the default budget every request gets through.
    let p = start_proxy(params(ClientSettings::default()), binder.clone()).await;
    let client = h1_client();
    for _ in 0..30 {
        let (status, body, err) = get_status(&client, p.addr, "web").await;
        assert_eq!(status, StatusCode::OK, "{err}");
        assert_eq!(body, "good");
    }

    // With an empty budget (and no ejection) a refused request is not
    // requeued by the client. (The service level may still retry it within
    // its own retry budget, so the response can be a 200 or the 502.)
    let settings = ClientSettings {
        requeue_budget: Some(switchyard::client::Budget {
            min_retries_per_sec: 0,
            percent_can_retry: 0.0,
            ttl: Duration::from_secs(10),
        }),
        failure_accrual: Some(FailureAccrual::None {}),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    for _ in 0..30 {
        let (status, _, err) = get_status(&client, p.addr, "web").await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert!(err.contains("requeue budget exhausted"), "{err}");
        }
    }
    let state = p.router.client_state();
    let exhausted = state["/#/test/web"]["requeueBudgetExhausted"]
        .as_u64()
        .unwrap_or(0);
    assert!(exhausted > 0, "{state:#}");
}

#[tokio::test]
async fn pool_limits_queue_then_shed_with_503() {
    let slow = Switch::start("slow").await;
    slow.set(Mode::Sleep(400));
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(slow.addr, 1.0)]);
    let settings = ClientSettings {
        host_connection_pool: Some(PoolParams {
            max_size: Some(1),
            max_waiters: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = Arc::new(start_proxy(params(settings), binder).await);
    let spawn_get =
        |p: Arc<Proxy>| tokio::spawn(async move { get_status(&h1_client(), p.addr, "web").await });
    let first = spawn_get(p.clone());
    for _ in 0..500 {
        if slow.hits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slow.hits(), 1);
    // The second waits for the connection; the third finds the queue full.
    let second = spawn_get(p.clone());
    for _ in 0..500 {
        let st = endpoint_state(&p, "web", slow.addr);
        if st["poolWaiters"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _, err) = get_status(&h1_client(), p.addr, "web").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(err.contains("connection pool exhausted"), "{err}");
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    assert_eq!(second.await.unwrap().0, StatusCode::OK);
    assert_eq!(slow.hits(), 2);
}

#[tokio::test]
async fn attempt_timeout_from_client_config() {
    let slow = Switch::start("slow").await;
    slow.set(Mode::Sleep(2000));
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(slow.addr, 1.0)]);
    let settings = ClientSettings {
        request_attempt_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let (status, _, err) = get_status(&h1_client(), p.addr, "web").await;
    // As in Linkerd 1: a timeout is 503, with l5d-err naming the name, the
    // endpoint and the timeout.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.contains("within 100ms"), "{err}");
    assert!(err.contains("/svc/web"), "{err}");
    assert!(err.contains(&slow.addr.to_string()), "{err}");
}

#[tokio::test]
async fn reset_connections_fail_the_attempt_and_count_against_the_endpoint() {
    let rude = Switch::start("rude").await;
    rude.set(Mode::Reset);
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(rude.addr, 1.0)]);
    let settings = ClientSettings {
        failure_accrual: Some(consecutive(2, 60_000)),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    for _ in 0..3 {
        let (status, _, _) = get_status(&h1_client(), p.addr, "web").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(endpoint_state(&p, "web", rude.addr)["state"], "ejected");
}

// === the real binary: YAML client config, admin view and logs ===

/// `switchyard run -c <dir>/linkerd.yaml` with cwd `dir`, its announced
/// router and admin addresses, and its stderr so far.
struct Binary {
    child: std::process::Child,
    router: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Binary {
    fn start(dir: &std::path::Path, config: &str) -> Binary {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let cfg = dir.join("linkerd.yaml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "-c"])
            .arg(&cfg)
            .args(["--threads", "2"])
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let announced = |line: &str, what: &str| -> Option<SocketAddr> {
            if !line.contains(what) {
                return None;
            }
            line.split(|c: char| c.is_whitespace() || c == '=' || c == '"')
                .find_map(|w| w.parse::<SocketAddr>().ok())
        };
        let (mut router, mut admin) = (None, None);
        while router.is_none() || admin.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!("no listeners announced:\n{}", log.lock().unwrap());
            };
            router = router.or(announced(&line, "router listening"));
            admin = admin.or(announced(&line, "admin listening"));
        }
        Binary {
            child,
            router: router.unwrap(),
            admin: admin.unwrap(),
            log,
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn yaml_static_client_config_ejects_and_admin_shows_it() {
    let good = Switch::start("good").await;
    let bad = Switch::start("bad").await;
    bad.set(Mode::Status(500));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("disco")).unwrap();
    std::fs::write(
        dir.path().join("disco/web"),
        format!(
            "127.0.0.1 {}\n127.0.0.1 {}\n",
            good.addr.port(),
            bad.addr.port()
        ),
    )
    .unwrap();
    let config = "\
admin:
  ip: 127.0.0.1
  port: 0
namers:
- kind: io.l5d.fs
  rootDir: disco
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.fs
  client:
    kind: io.l5d.static
    configs:
    - prefix: /
      loadBalancer:
        kind: roundRobin
    - prefix: /#/io.l5d.fs/{service}
      failureAccrual:
        kind: io.l5d.consecutiveFailures
        failures: 2
        backoff:
          kind: constant
          ms: 60000
  servers:
  - ip: 127.0.0.1
    port: 0
";
    let bin = Binary::start(dir.path(), config);
    let client = h1_client();
    for _ in 0..10 {
        get_status(&client, bin.router, "web").await;
    }
    // Round robin alternates until the bad one is out after two failures.
    assert_eq!(bad.hits(), 2);
    assert_eq!(good.hits(), 8);
    let req = Request::builder()
        .uri(format!("http://{}/client_state.json", bin.admin))
        .body(empty())
        .unwrap();
    let (r, body) = send(&client, req).await;
    assert_eq!(r.status(), StatusCode::OK);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    let web = &state["http"]["/#/io.l5d.fs/web"];
    assert_eq!(web["loadBalancer"], "roundRobin", "{state:#}");
    assert_eq!(web["available"], 1, "{state:#}");
    assert_eq!(web["ejections"], 1, "{state:#}");
    let eps = web["endpoints"].as_array().unwrap();
    let bad_ep = eps
        .iter()
        .find(|e| e["addr"] == bad.addr.to_string())
        .unwrap();
    assert_eq!(bad_ep["state"], "ejected", "{state:#}");
    assert!(bad_ep["ejectedForMs"].as_u64().unwrap() > 50_000);
    assert_eq!(bad_ep["failures"], 2);
    let log = bin.log.lock().unwrap().clone();
    assert!(
        log.contains("endpoint ejected") && log.contains(&bad.addr.to_string()),
        "{log}"
    );
}

// === requeues of requests an endpoint surely did not process ===

/// An h2 endpoint that refuses every stream (`REFUSED_STREAM`), counting them.
async fn refusing_h2() -> (SocketAddr, Arc<AtomicUsize>, AbortHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    r.fetch_add(1, Ordering::SeqCst);
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    (addr, refused, task.abort_handle())
}

/// An h2 router over `good` and `bad` (failure accrual off, so that every
/// request may meet `bad`), and `n` POSTs through it, each of which must be
/// answered by `good`.
async fn posts_reach_the_good_one(good: &Switch, bad: SocketAddr, n: usize) -> Proxy {
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(good.addr, 1.0), (bad, 1.0)]);
    let mut p = RouterParams::new(Protocol::H2);
    p.identifiers = vec![switchyard::routing::Identifier::HeaderPath {
        header: ":path".into(),
        segments: Some(1),
    }];
    p.client = ClientConfig::Global(ClientSettings {
        failure_accrual: Some(FailureAccrual::None {}),
        ..Default::default()
    });
    let p = start_proxy(p, binder).await;
    let client = h2_client();
    for i in 0..n {
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://{}/web/{i}", p.addr))
            .body(full("x"))
            .unwrap();
        let (r, body) = send(&client, req).await;
        assert_eq!(
            (r.status(), body.as_str()),
            (StatusCode::OK, "good"),
            "{}",
            l5d_err(&r)
        );
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_refused_streams_are_requeued_on_another_endpoint() {
    let good = Switch::start("good").await;
    let (refusing, refused, task) = refusing_h2().await;
    // No ejection: every request may meet the refusing endpoint.
    let p = posts_reach_the_good_one(&good, refusing, 30).await;
    // Even POSTs under the default classifier: the client requeued them.
    let n = refused.load(Ordering::SeqCst);
    assert!(n > 0, "the refusing endpoint was tried");
    assert_eq!(good.hits(), 30);
    let state = p.router.client_state();
    assert_eq!(state["/#/test/web"]["requeues"], n as u64, "{state:#}");
    task.abort();
}

/// An HTTP/1.1 endpoint that answers the first request on each connection
/// and keeps it open, then drops it unread when the next request comes (a
/// keep-alive timeout racing the request): the connection is reset.
async fn one_per_connection() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>, AbortHandle) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepts, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, n) = (accepts.clone(), answered.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let n = n.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")
                    .await;
                // The next request arrives; it is not read: closing with
                // unread data resets the connection.
                let _ = stream.readable().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(stream);
            });
        }
    });
    (addr, accepts, answered, task.abort_handle())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connections_are_requeued() {
    let (addr, accepts, answered, task) = one_per_connection().await;
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(addr, 1.0)]);
    let settings = ClientSettings {
        failure_accrual: Some(consecutive(1, 60_000)),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let client = h1_client();
    for i in 0..10 {
        // POSTs: never retried by the service level under the default
        // classifier, so each success after the first is the client's requeue.
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://{}/{i}", p.addr))
            .header("host", "web")
            .body(full("x"))
            .unwrap();
        let (r, body) = send(&client, req).await;
        assert_eq!(
            (r.status(), body.as_str()),
            (StatusCode::OK, "once"),
            "{}",
            l5d_err(&r)
        );
    }
    assert_eq!(answered.load(Ordering::SeqCst), 10);
    assert_eq!(accepts.load(Ordering::SeqCst), 10);
    let state = p.router.client_state();
    let web = &state["/#/test/web"];
    // Every request but the first met the previous one's stale connection.
    assert_eq!(web["requeues"], 9, "{state:#}");
    // A stale connection is not the endpoint's failure (one failure would
    // eject it).
    assert_eq!(web["ejections"], 0, "{state:#}");
    task.abort();
}

// === hostConnectionPool.minSize ===

/// An HTTP/1.1 backend that counts the connections it accepted, those
/// still open, and the requests it answered.
struct Counting {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: AbortHandle,
}

impl Counting {
    async fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepts, open, requests) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (a, o, r) = (accepts.clone(), open.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r) = (o.clone(), r.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        r.fetch_add(1, Ordering::SeqCst);
                        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        })
        .abort_handle();
        Counting {
            addr,
            accepts,
            open,
            requests,
            task,
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Wait (at most 5 s) until `cond` holds.
    async fn until(&self, what: &str, cond: impl Fn(&Counting) -> bool) {
        for _ in 0..500 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{what}: accepts {}, open {}, requests {}",
            self.accepts(),
            self.open(),
            self.requests()
        );
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bound(addrs: &[SocketAddr]) -> switchyard::naming::Addr {
    let eps: Vec<switchyard::naming::Endpoint> = addrs
        .iter()
        .map(|&addr| switchyard::naming::Endpoint { addr, weight: 1.0 })
        .collect();
    switchyard::naming::Addr::Bound(eps.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_connections_are_opened_ahead_and_kept_past_idle_time() {
    let a = Counting::start().await;
    let b = Counting::start().await;
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let web = binder.name("web", &[(a.addr, 1.0)]);
    let settings = ClientSettings {
        host_connection_pool: Some(PoolParams {
            min_size: Some(2),
            idle_time: Some(Duration::from_millis(100)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let client = h1_client();
    // The first request makes the client; it opens two connections to A.
    let (status, _, err) = get_status(&client, p.addr, "web").await;
    assert_eq!(status, StatusCode::OK, "{err}");
    a.until("two open to A", |c| c.open() >= 2).await;

    // An endpoint added to the set gets its two connections before any
    // request is sent to it.
    web.send(bound(&[a.addr, b.addr])).unwrap();
    b.until("two open to B", |c| c.open() == 2).await;
    assert_eq!(b.requests(), 0);
    assert_eq!(b.accepts(), 2);

    // Well past idleTimeMs, they are still open, and no new ones were made.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!((b.open(), b.accepts()), (2, 2));
    assert!(a.open() >= 2, "A: {}", a.open());

    // Requests use them; connections the pool closes after idleTimeMs are
    // replaced, so at least two stay open.
    for _ in 0..10 {
        let (status, _, err) = get_status(&client, p.addr, "web").await;
        assert_eq!(status, StatusCode::OK, "{err}");
    }
    assert_eq!(a.requests() + b.requests(), 11);
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.until("A keeps two", |c| c.open() >= 2).await;
    b.until("B keeps two", |c| c.open() >= 2).await;

    // An endpoint removed from the set is no longer kept.
    web.send(bound(&[a.addr])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.until("B let go", |c| c.open() == 0).await;
}

/// An h2 endpoint that, on every connection, reads the client's preface
/// and says `GOAWAY` with last stream 0 — no stream of the client's was
/// taken — then keeps the connection open a while (raw frames: `h2`'s
/// server picks the last stream id itself).
async fn going_away_h2() -> (SocketAddr, Arc<AtomicUsize>, AbortHandle) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const SETTINGS_ACK: [u8; 9] = [0, 0, 0, 4, 1, 0, 0, 0, 0];
    const GOAWAY_0: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if stream.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let mut out = Vec::new();
                out.extend_from_slice(&SETTINGS);
                out.extend_from_slice(&SETTINGS_ACK);
                out.extend_from_slice(&GOAWAY_0);
                let _ = stream.write_all(&out).await;
                // Read (and drop) whatever comes, for at most 2 s.
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    });
    (addr, conns, task.abort_handle())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_goaway_before_the_stream_is_requeued_on_another_endpoint() {
    let good = Switch::start("good").await;
    let (leaving, conns, task) = going_away_h2().await;
    let p = posts_reach_the_good_one(&good, leaving, 20).await;
    assert!(
        conns.load(Ordering::SeqCst) > 0,
        "the leaving endpoint was tried"
    );
    assert_eq!(good.hits(), 20);
    let state = p.router.client_state();
    assert!(
        state["/#/test/web"]["requeues"].as_u64().unwrap() > 0,
        "{state:#}"
    );
    task.abort();
}

// === the HTTP/1.1 connection pool ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_connection_until_idle_time_closes_it() {
    let a = Counting::start().await;
    let binder = Arc::new(TestBinder::new("/svc/web=>/#/test/web"));
    let _web = binder.name("web", &[(a.addr, 1.0)]);
    let settings = ClientSettings {
        host_connection_pool: Some(PoolParams {
            idle_time: Some(Duration::from_millis(300)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = start_proxy(params(settings), binder).await;
    let client = h1_client();
    for _ in 0..20 {
        let (status, _, err) = get_status(&client, p.addr, "web").await;
        assert_eq!(status, StatusCode::OK, "{err}");
    }
    assert_eq!((a.accepts(), a.requests()), (1, 20));
    let ep = endpoint_state(&p, "web", a.addr);
    assert_eq!(
        (&ep["connections"], &ep["idleConnections"]),
        (&1.into(), &1.into()),
        "{ep:#}"
    );
    // Idle past idleTimeMs: the backend sees the close.
    a.until("closed after idleTimeMs", |c| c.open() == 0).await;
    let ep = endpoint_state(&p, "web", a.addr);
    assert_eq!(
        (&ep["connections"], &ep["idleConnections"]),
        (&0.into(), &0.into()),
        "{ep:#}"
    );
}

/// The coarse clock that the request path's bookkeeping reads (the real
/// one: integration tests build the crate without `cfg(test)`) agrees with
/// the precise clock to within a kernel tick, never goes back, and its
/// milliseconds advance with real time.
#[test]
fn coarse_clock_tracks_the_precise_one() {
    use std::time::Instant;
    use switchyard::clock::{coarse, coarse_ms};
    // A tick is at most 10 ms (HZ ≥ 100); the slack covers a preemption
    // between the two readings on a busy machine.
    let (tick, slack) = (Duration::from_millis(10), Duration::from_millis(200));
    let mut last = coarse();
    let ms0 = coarse_ms();
    for _ in 0..40 {
        let c = coarse();
        let p = Instant::now();
        let c_std = c.into_std();
        assert!(c_std <= p + tick, "coarse {c_std:?} ahead of precise {p:?}");
        assert!(
            p <= c_std + tick + slack,
            "coarse {c_std:?} behind precise {p:?}"
        );
        assert!(c >= last, "coarse clock went back");
        last = c;
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = coarse_ms() - ms0;
    assert!(elapsed >= 60, "40 sleeps of 2 ms, {elapsed} coarse ms");
}
