//! `switchyard run --threads 1` runs everything on one current-thread
//! runtime: routing, a live dtab edit, the admin server, metrics and a
//! SIGTERM drain must all work there as they do on the multi-thread one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

mod support;

use support::Backend;
use support::process::Switchyard;

const CONFIG: &str = "admin:\n  ip: 127.0.0.1\n  port: 0\n\
     namers:\n- kind: io.l5d.fs\n  rootDir: disco\n\
     routers:\n- protocol: http\n  label: out\n  interpreter:\n    kind: io.l5d.fs\n    dtabFile: routing.dtab\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n";

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET with `Host: host`; (status, body), bounded in time.
async fn get(
    c: &Client<HttpConnector, Full<Bytes>>,
    to: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> (u16, String) {
    let req = Request::builder()
        .uri(format!("http://{to}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let rsp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = rsp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(10), rsp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Replace a file atomically, as editors do.
fn replace(dir: &std::path::Path, rel: &str, text: &str) {
    let tmp = dir.join(format!(".{}.tmp", rel.replace('/', "_")));
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, dir.join(rel)).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thread_routes_reloads_serves_admin_and_drains_on_sigterm() {
    let (a, b) = (Backend::start("A").await, Backend::start("B").await);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("disco")).expect("disco");
    let line = |be: &Backend| format!("127.0.0.1 {}\n", be.addr.port());
    replace(dir.path(), "disco/web", &line(&a));
    replace(dir.path(), "disco/web-v2", &line(&b));
    replace(dir.path(), "routing.dtab", "/svc => /#/io.l5d.fs;\n");
    let mut proxy = Switchyard::start_threads(dir.path(), "linkerd", CONFIG, "info", 1);
    let c = client();

    // Routing, and several connections at once on the one thread.
    assert_eq!(get(&c, proxy.router, "web", "/").await, (200, "A".into()));
    let mut many = Vec::new();
    for _ in 0..20 {
        let (c, to) = (client(), proxy.router);
        many.push(tokio::spawn(async move { get(&c, to, "web", "/").await }));
    }
    for m in many {
        assert_eq!(m.await.expect("request task"), (200, "A".into()));
    }
    let (status, _) = get(&c, proxy.router, "nowhere", "/").await;
    assert_eq!(status, 502, "an unknown name is still refused");

    // A dtab edit is picked up by the watcher (its own thread) and applied.
    replace(
        dir.path(),
        "routing.dtab",
        "/svc => /#/io.l5d.fs;\n/svc/web => /svc/web-v2;\n",
    );
    let start = Instant::now();
    loop {
        if get(&c, proxy.router, "web", "/").await.1 == "B" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "dtab edit not in effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The admin server shares the thread.
    assert_eq!(
        get(&c, proxy.admin, "admin", "/admin/ping").await,
        (200, "pong".into())
    );
    let (status, metrics) = get(&c, proxy.admin, "admin", "/admin/metrics/prometheus").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"router="out""#),
        "router metrics exported:\n{metrics}"
    );

    // SIGTERM: the in-flight slow request (500 ms at the backend) finishes,
    // then the process exits 0.
    let to = proxy.router;
    // Counted before the request goes: it may reach B before this task
    // looks again.
    let before = b.count();
    let slow = tokio::spawn(async move { get(&client(), to, "web", "/slow").await });
    b.wait_for_requests(before + 1).await;
    proxy.signal("TERM");
    assert_eq!(slow.await.expect("slow request"), (200, "B".into()));
    let status = proxy.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
}
