//! End to end: the real `switchyard` binary, a real config file, the io.l5d.fs
//! namer and dtab file on disk, and real HTTP backends on 127.0.0.1.
//!
//! Each test writes its own config into a temporary directory, starts the
//! binary with ports 0 and reads the addresses it announces on stderr.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

// === backends ===

/// A backend that answers every request with its name; `/slow` waits 1 s.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async move {
                            if req.uri().path() == "/slow" {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            let ctx = req
                                .headers()
                                .get("l5d-ctx-dtab")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let mut rsp = Response::new(Full::new(Bytes::from(name)));
                            if let Ok(v) = ctx.parse() {
                                rsp.headers_mut().insert("x-seen-ctx-dtab", v);
                            }
                            Ok::<_, Infallible>(rsp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend { addr, hits, task }
    }

    fn line(&self) -> String {
        format!("127.0.0.1 {}\n", self.addr.port())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the proxy process ===

mod support;

/// The real binary, run in a test's own directory.
type Proxy = support::process::Switchyard;

fn start(dir: &Path, config: &str) -> Proxy {
    Proxy::start_in(dir, config, "info")
}

/// A temporary directory with `disco/` and a dtab file, plus a config using them.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(dtab: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("disco")).expect("disco");
        let site = Site { dir };
        site.write_dtab(dtab);
        site
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> &'static str {
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: disco\n\
         routers:\n- protocol: http\n  label: out\n  interpreter:\n    kind: io.l5d.fs\n    dtabFile: routing.dtab\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n"
    }

    fn dtab_path(&self) -> PathBuf {
        self.path().join("routing.dtab")
    }

    /// Replace a file atomically, as editors and config management do.
    fn replace(&self, rel: &str, text: &str) {
        let dst = self.path().join(rel);
        let tmp = self.path().join(format!(".{}.tmp", rel.replace('/', "_")));
        std::fs::write(&tmp, text).expect("write tmp");
        std::fs::rename(&tmp, &dst).expect("rename");
    }

    fn write_dtab(&self, dtab: &str) {
        self.replace("routing.dtab", dtab);
    }

    fn write_service(&self, name: &str, lines: &str) {
        self.replace(&format!("disco/{name}"), lines);
    }
}

// === client ===

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: u16,
    body: String,
    headers: http::HeaderMap,
}

async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder()
        .uri(format!("http://{proxy}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = client
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response from switchyard");
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
    }
}

/// Poll until `f` returns true or `limit` passes; returns the time it took.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_through_fs_namer_and_reports_unknown_names() {
    let a = Backend::start("A").await;
    let site = Site::new("/svc => /#/io.l5d.fs;\n");
    site.write_service("web", &a.line());
    let proxy = start(site.path(), site.config());
    let c = client();

    let ok = get(&c, proxy.router, "web", "/", &[]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "A"));

    let unknown = get(&c, proxy.router, "nosuch", "/", &[]).await;
    assert_eq!(unknown.status, 502, "body: {}", unknown.body);
    let err = unknown.headers.get("l5d-err").expect("l5d-err header");
    assert!(err.to_str().unwrap_or("").contains("svc"), "{err:?}");
    assert!(unknown.body.contains("/svc/nosuch"), "{}", unknown.body);
    assert!(
        unknown
            .body
            .contains("First failing step: neg /#/io.l5d.fs/nosuch"),
        "the body leads with the failing step of the trace: {}",
        unknown.body
    );

    let ping = get(&c, proxy.admin, "admin", "/admin/ping", &[]).await;
    assert_eq!((ping.status, ping.body.trim()), (200, "pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_and_failover() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let site = Site::new(
        "/svc => /#/io.l5d.fs;\n\
         /svc/users => 3 * /#/io.l5d.fs/users-v1 & 1 * /#/io.l5d.fs/users-v2;\n\
         /svc/shop => /#/io.l5d.fs/shop-staging | /#/io.l5d.fs/shop;\n",
    );
    site.write_service("users-v1", &v1.line());
    site.write_service("users-v2", &v2.line());
    site.write_service("shop", &v1.line());
    let proxy = start(site.path(), site.config());
    let c = client();

    let n = 1000;
    let mut to_v2 = 0;
    for _ in 0..n {
        let a = get(&c, proxy.router, "users", "/", &[]).await;
        assert_eq!(a.status, 200);
        if a.body == "v2" {
            to_v2 += 1;
        }
    }
    let share = to_v2 as f64 / n as f64;
    assert!(
        (share - 0.25).abs() <= 0.05,
        "v2 got {share:.3} of traffic, want 0.25 ± 0.05"
    );

    // shop-staging does not exist (negative), so `|` falls back to shop.
    assert_eq!(get(&c, proxy.router, "shop", "/", &[]).await.body, "v1");
    site.write_service("shop-staging", &v2.line());
    let took = eventually(Duration::from_secs(2), || async {
        get(&c, proxy.router, "shop", "/", &[]).await.body == "v2"
    })
    .await;
    assert!(took.is_some(), "staging did not take over once it existed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5d_dtab_overrides_one_request_only_and_bad_header_is_400() {
    let (a, b) = (Backend::start("A").await, Backend::start("B").await);
    let site = Site::new("/svc => /#/io.l5d.fs;\n");
    site.write_service("web", &a.line());
    site.write_service("web-v2", &b.line());
    let proxy = start(site.path(), site.config());
    let c = client();

    let over = get(
        &c,
        proxy.router,
        "web",
        "/",
        &[("l5d-dtab", "/svc/web => /svc/web-v2")],
    )
    .await;
    assert_eq!((over.status, over.body.as_str()), (200, "B"));
    let ctx = over
        .headers
        .get("x-seen-ctx-dtab")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        ctx,
        Some("/svc/web=>/svc/web-v2"),
        "downstream sees the override as l5d-ctx-dtab"
    );
    assert_eq!(get(&c, proxy.router, "web", "/", &[]).await.body, "A");

    let bad = get(
        &c,
        proxy.router,
        "web",
        "/",
        &[("l5d-dtab", "/svc/web => ")],
    )
    .await;
    assert_eq!(bad.status, 400);
    let err = bad
        .headers
        .get("l5d-err")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(err.contains("l5d-dtab"), "l5d-err names the header: {err}");
    assert!(
        bad.body.contains("expected"),
        "body says what was expected: {}",
        bad.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_dtab_is_carried_through_two_chained_switchyards() {
    let (a, b) = (Backend::start("A").await, Backend::start("B").await);
    // The second hop routes /svc by the fs namer.
    let second = Site::new("/svc => /#/io.l5d.fs;\n");
    second.write_service("web", &a.line());
    second.write_service("web-v2", &b.line());
    let hop2 = start(second.path(), second.config());
    // The first hop sends everything to the second hop.
    let first = Site::new(&format!(
        "/svc => /$/inet/127.0.0.1/{};\n",
        hop2.router.port()
    ));
    let hop1 = start(first.path(), first.config());
    let c = client();

    assert_eq!(get(&c, hop1.router, "web", "/", &[]).await.body, "A");
    // The override given at the first hop is applied at the second.
    let over = get(
        &c,
        hop1.router,
        "web",
        "/",
        &[("l5d-dtab", "/svc/web => /svc/web-v2")],
    )
    .await;
    assert_eq!((over.status, over.body.as_str()), (200, "B"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtab_and_endpoint_edits_take_effect_live_and_bad_dtab_is_rejected() {
    let (a, b) = (Backend::start("A").await, Backend::start("B").await);
    let site = Site::new("/svc => /#/io.l5d.fs;\n");
    site.write_service("web", &a.line());
    site.write_service("web-v2", &b.line());
    let proxy = start(site.path(), site.config());
    let c = client();
    assert_eq!(get(&c, proxy.router, "web", "/", &[]).await.body, "A");

    // A dtab edit is in effect within 1 s, in the same process.
    site.write_dtab("/svc => /#/io.l5d.fs;\n/svc/web => /svc/web-v2;\n");
    let took = eventually(Duration::from_secs(1), || async {
        get(&c, proxy.router, "web", "/", &[]).await.body == "B"
    })
    .await;
    assert!(took.is_some(), "dtab edit not in effect within 1 s");

    // A bad edit keeps the last good dtab and says where the error is.
    std::fs::write(site.dtab_path(), "/svc => /#/io.l5d.fs;\n/svc/web => ;\n").expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        assert_eq!(get(&c, proxy.router, "web", "/", &[]).await.body, "B");
    }
    let log = proxy.log();
    assert!(
        log.contains("routing.dtab:2:"),
        "rejection logged with file:line:col:\n{log}"
    );

    // Endpoint edits: add A to web-v2, then remove B.
    site.write_service("web-v2", &format!("{}{}", a.line(), b.line()));
    let both = eventually(Duration::from_secs(2), || async {
        get(&c, proxy.router, "web", "/", &[]).await.body == "A"
    })
    .await;
    assert!(both.is_some(), "added endpoint never used");
    site.write_service("web-v2", &a.line());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.hits.load(Ordering::Relaxed);
    for _ in 0..50 {
        assert_eq!(get(&c, proxy.router, "web", "/", &[]).await.body, "A");
    }
    assert_eq!(
        b.hits.load(Ordering::Relaxed),
        before,
        "removed endpoint still used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_dtab_and_endpoints_churn() {
    let (a, b) = (Backend::start("A").await, Backend::start("B").await);
    let site = Arc::new(Site::new("/svc => /#/io.l5d.fs;\n"));
    site.write_service("web", &a.line());
    site.write_service("web-v2", &b.line());
    let proxy = start(site.path(), site.config());
    let router = proxy.router;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (site, done) = (site.clone(), done.clone());
        let (la, lb) = (a.line(), b.line());
        tokio::spawn(async move {
            for i in 0..100 {
                if i % 2 == 0 {
                    site.write_dtab("/svc => /#/io.l5d.fs;\n/svc/web => /svc/web-v2;\n");
                    site.write_service("web", &format!("{la}{lb}"));
                } else {
                    site.write_dtab("/svc => /#/io.l5d.fs;\n");
                    site.write_service("web", &la);
                }
                site.write_service("web-v2", if i % 3 == 0 { &la } else { &lb });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    let total = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (total, failed, done) = (total.clone(), failed.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let n = total.fetch_add(1, Ordering::Relaxed);
                let finished = done.load(Ordering::Relaxed);
                if (finished && n >= 5000) || n >= 50_000 || Instant::now() > deadline {
                    break;
                }
                let a = get(&c, router, "web", "/", &[]).await;
                if a.status != 200
                    && let Ok(mut f) = failed.lock()
                {
                    f.push(format!("{} {}", a.status, a.body));
                }
            }
        }));
    }
    churn.await.expect("churn");
    for w in workers {
        w.await.expect("worker");
    }
    let failed = failed.lock().map(|f| f.clone()).unwrap_or_default();
    let total = total.load(Ordering::Relaxed);
    assert!(total >= 5000, "only {total} requests sent");
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed, first: {:?}",
        failed.len(),
        failed.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let a = Backend::start("A").await;
    let site = Site::new("/svc => /#/io.l5d.fs;\n");
    site.write_service("web", &a.line());
    let mut proxy = start(site.path(), site.config());
    let router = proxy.router;

    let slow = tokio::spawn(async move { get(&client(), router, "web", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    let answer = slow.await.expect("slow request");
    assert_eq!((answer.status, answer.body.as_str()), (200, "A"));

    let status = proxy.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
}
