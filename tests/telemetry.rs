//! Telemetry, end to end with the real binary: the Prometheus exposition
//! (checked by `promtool check metrics`, scraped by a real Prometheus server),
//! counters after known traffic, `/admin/metrics.json`, the access log, the
//! runtime log filter, recent requests, and spans of two chained switchyards
//! received by a test Zipkin collector.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package
//! (`apt-get install -y prometheus`); the tests that need them fail with that
//! advice when they are missing.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

// === helpers ===

/// Serve `handler` on 127.0.0.1:0 until the returned task is aborted.
async fn serve<F>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(http::request::Parts, Bytes) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(handler(parts, body))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A backend answering `hello` and echoing the B3 span id it received.
async fn backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    serve(|parts, _| {
        let mut rsp = Response::new(Full::new(Bytes::from_static(b"hello")));
        if let Some(v) = parts.headers.get("x-b3-spanid") {
            rsp.headers_mut().insert("x-seen-spanid", v.clone());
        }
        if let Some(v) = parts.headers.get("traceparent") {
            rsp.headers_mut().insert("x-seen-traceparent", v.clone());
        }
        rsp
    })
    .await
}

mod support;

/// The real binary, run in a test's own directory.
type Proxy = support::process::Switchyard;

fn start(dir: &Path, config: &str) -> Proxy {
    Proxy::start_in(dir, config, "info")
}

/// A temp dir with `disco/<name>` files and a router `out` using them.
fn site(services: &[(&str, SocketAddr)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("disco")).expect("disco");
    for (name, addr) in services {
        std::fs::write(
            dir.path().join("disco").join(name),
            format!("127.0.0.1 {}\n", addr.port()),
        )
        .expect("service file");
    }
    dir
}

fn config(extra_router: &str, telemetry: &str) -> String {
    format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: disco\n\
         routers:\n- protocol: http\n  label: out\n  dtab: /svc => /#/io.l5d.fs\n{extra_router}  servers:\n  - ip: 127.0.0.1\n    port: 0\n\
         {telemetry}"
    )
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn call(
    c: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = c
        .request(
            req.body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn need(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is not installed: it comes with Debian's `prometheus` package \
         (apt-get install -y prometheus); CI installs it in .ci/run"
    );
}

/// `promtool check metrics` on `text`; its complaints on failure.
fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("promtool stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_exposition_access_log_and_admin_endpoints() {
    need("promtool");
    let (web, _web_task) = backend().await;
    let dir = site(&[("web", web)]);
    let proxy = start(
        dir.path(),
        &config(
            "  httpAccessLog: access.log\n",
            "telemetry:\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n  capacity: 5\n",
        ),
    );
    let c = client();
    let url = format!("http://{}/hi", proxy.router);
    for _ in 0..5 {
        let (status, _, body) = call(&c, "POST", &url, &[("host", "web")], "ping!").await;
        assert_eq!((status, body.as_str()), (200, "hello"), "{}", proxy.log());
    }
    for _ in 0..2 {
        let (status, _, _) = call(&c, "GET", &url, &[("host", "nowhere")], "").await;
        assert!(status >= 500, "{status}");
    }

    let prom_url = format!("http://{}/admin/metrics/prometheus", proxy.admin);
    let labels = format!(
        "router=\"out\",server=\"{}\",service=\"/svc/web\",client=\"/#/io.l5d.fs/web\"",
        proxy.router
    );
    // Counters are updated as responses finish; wait until all five count.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, _, text) = call(&c, "GET", &prom_url, &[], "").await;
        assert_eq!(status, 200);
        if sample(&text, &format!("response_body_bytes_total{{{labels}}}")) == Some(25.0)
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&text, &format!("requests_total{{{labels}}}")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("responses_total{{{labels},status_code=\"200\",class=\"success\"}}")
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("request_body_bytes_total{{{labels}}}")),
        Some(25.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("response_body_bytes_total{{{labels}}}")),
        Some(25.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("request_duration_seconds_count{{{labels}}}")
        ),
        Some(5.0),
        "{text}"
    );
    let failed: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("responses_total{")
                && l.contains("service=\"/svc/nowhere\"")
                && l.contains("class=\"failure\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 2.0, "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_open_fds "), "{text}");
    assert!(text.contains("process_cpu_seconds_total "), "{text}");
    assert!(
        sample(
            &text,
            &format!(
                "open_connections{{router=\"out\",server=\"{}\"}}",
                proxy.router
            )
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "binding_updates_total{router=\"out\"}").is_some()
            || text.contains("namer_updates_total"),
        "{text}"
    );
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));

    // The same numbers as JSON, with Linkerd-style aggregates.
    let (status, _, json) = call(
        &c,
        "GET",
        &format!("http://{}/admin/metrics.json", proxy.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).expect("metrics.json");
    assert_eq!(json["rt/out/service/svc/web/requests"], 5.0, "{json}");
    assert_eq!(json["rt/out/service/svc/web/success"], 5.0, "{json}");
    assert_eq!(
        json["rt/out/client/#/io.l5d.fs/web/requests"], 5.0,
        "{json}"
    );
    assert_eq!(json["rt/out/requests"], 7.0, "{json}");
    assert_eq!(json["rt/out/failures"], 2.0, "{json}");
    let p50 = &json["rt/out/client/#/io.l5d.fs/web/request_latency_ms.p50"];
    assert!(p50.as_f64().is_some_and(|v| v > 0.0), "{json}");

    // Recent requests: the last five, newest first.
    let (status, _, recent) = call(
        &c,
        "GET",
        &format!("http://{}/requests.json", proxy.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let recent: serde_json::Value = serde_json::from_str(&recent).expect("requests.json");
    let list = recent.as_array().expect("a list");
    assert_eq!(list.len(), 5, "{recent}");
    assert_eq!(list[0]["service"], "/svc/nowhere", "{recent}");
    assert_eq!(list[4]["client"], "/#/io.l5d.fs/web", "{recent}");
    let (status, _, html) = call(
        &c,
        "GET",
        &format!("http://{}/requests", proxy.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("/svc/nowhere"), "{html}");

    // The log filter, read and changed at runtime; a bad one is refused.
    let logging = format!("http://{}/logging.json", proxy.admin);
    let (status, _, body) = call(&c, "GET", &logging, &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"info\""), "{body}");
    let (status, _, body) = call(&c, "POST", &logging, &[], r#"{"level": "debug"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = call(&c, "GET", &logging, &[], "").await;
    assert!(body.contains("\"debug\""), "{body}");
    let (status, _, body) = call(&c, "PUT", &logging, &[], r#"{"level": "[nope"}"#).await;
    assert_eq!(status, 400, "{body}");
    let (_, _, body) = call(&c, "GET", &logging, &[], "").await;
    assert!(body.contains("\"debug\""), "{body}");

    // The access log: one line per request, common log format plus duration.
    let log_path = dir.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= 7 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines.len(), 7, "{lines:?}");
    let first = &lines[0];
    assert!(
        first.starts_with("127.0.0.1 - - ["),
        "not common log format: {first}"
    );
    assert!(first.contains("\"POST /hi HTTP/1.1\" 200 5 "), "{first}");
    let ms: f64 = first
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("duration");
    assert!(ms >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtab_reloads_and_rejections_are_counted() {
    let (web, _web_task) = backend().await;
    let dir = site(&[("web", web)]);
    std::fs::write(dir.path().join("routing.dtab"), "/svc => /#/io.l5d.fs;\n").expect("dtab");
    let cfg = config(
        "  interpreter:\n    kind: io.l5d.fs\n    dtabFile: routing.dtab\n",
        "",
    )
    .replace("  dtab: /svc => /#/io.l5d.fs\n", "");
    let proxy = start(dir.path(), &cfg);
    let c = client();
    let prom_url = format!("http://{}/admin/metrics/prometheus", proxy.admin);
    let wait_for = |series: &'static str| {
        let c = c.clone();
        let prom_url = prom_url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let (_, _, text) = call(&c, "GET", &prom_url, &[], "").await;
                if sample(&text, series) == Some(1.0) {
                    return;
                }
                assert!(Instant::now() < deadline, "no {series} = 1 in\n{text}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let replace = |text: &str| {
        let tmp = dir.path().join(".routing.dtab.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.path().join("routing.dtab")).expect("rename");
    };
    replace("/svc => => nowhere\n");
    wait_for("dtab_rejections_total{file=\"routing.dtab\"}").await;
    replace("/svc => /#/io.l5d.fs;\n/x => /y;\n");
    wait_for("dtab_reloads_total{file=\"routing.dtab\"}").await;
    let (status, _, _) = call(
        &c,
        "GET",
        &format!("http://{}/", proxy.router),
        &[("host", "web")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_path_from_config() {
    need("promtool");
    let (web, _web_task) = backend().await;
    let dir = site(&[("web", web)]);
    let proxy = start(
        dir.path(),
        &config(
            "",
            "telemetry:\n- kind: io.l5d.prometheus\n  path: /metrics\n  prefix: sy_\n",
        ),
    );
    let c = client();
    let url = format!("http://{}/", proxy.router);
    let (status, _, _) = call(&c, "GET", &url, &[("host", "web")], "").await;
    assert_eq!(status, 200, "{}", proxy.log());
    let (status, _, text) = call(
        &c,
        "GET",
        &format!("http://{}/metrics", proxy.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.lines().any(|l| l.starts_with("sy_requests_total{")),
        "{text}"
    );
    assert!(text.contains("sy_process_open_fds "), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("requests_total")),
        "{text}"
    );
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_switchyard() {
    need("prometheus");
    let (web, _web_task) = backend().await;
    let dir = site(&[("web", web)]);
    let proxy = start(dir.path(), &config("", ""));
    let c = client();
    let url = format!("http://{}/", proxy.router);
    for _ in 0..3 {
        let (status, _, _) = call(&c, "GET", &url, &[("host", "web")], "").await;
        assert_eq!(status, 200, "{}", proxy.log());
    }

    // A port for Prometheus: bound to learn a free one, then released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let prom_dir = tempfile::tempdir().expect("tempdir");
    let yml = prom_dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n- job_name: switchyard\n  metrics_path: /admin/metrics/prometheus\n  \
             static_configs:\n  - targets: ['{}']\n",
            proxy.admin
        ),
    )
    .expect("prometheus.yml");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prometheus");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = prom.stderr.take();
    let prom = Kill(prom);
    let prom_log = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = stderr {
        let log = prom_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
    }

    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=sum(requests_total%7Brouter%3D%22out%22%2Cservice%3D%22%2Fsvc%2Fweb%22%7D)"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let req = Request::get(&query)
                .body(Full::new(Bytes::new()))
                .expect("query");
            let rsp = c.request(req).await.ok()?;
            let body = rsp.into_body().collect().await.ok()?.to_bytes();
            Some(String::from_utf8_lossy(&body).into_owned())
        })
        .await
        .ok()
        .flatten();
        if let Some(body) = answer {
            last = body.clone();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && v["status"] == "success"
                && v["data"]["result"][0]["value"][1] == "3"
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered requests_total = 3; last answer: {last}\nprometheus log:\n{}",
            prom_log.lock().map(|l| l.clone()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prom);
}

#[derive(Debug, Clone)]
struct SpanSeen {
    trace_id: String,
    id: String,
    parent_id: Option<String>,
    service: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_two_chained_switchyards_reach_zipkin() {
    let spans: Arc<Mutex<Vec<SpanSeen>>> = Arc::default();
    let seen = spans.clone();
    let (collector, _collector_task) = serve(move |parts, body| {
        let ok = parts.method == http::Method::POST && parts.uri.path() == "/api/v2/spans";
        if ok && let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&body) {
            let mut s = seen.lock().expect("spans");
            for v in list {
                s.push(SpanSeen {
                    trace_id: v["traceId"].as_str().unwrap_or_default().to_string(),
                    id: v["id"].as_str().unwrap_or_default().to_string(),
                    parent_id: v["parentId"].as_str().map(str::to_string),
                    service: v["localEndpoint"]["serviceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
        let mut rsp = Response::new(Full::new(Bytes::new()));
        *rsp.status_mut() = if ok {
            http::StatusCode::ACCEPTED
        } else {
            http::StatusCode::NOT_FOUND
        };
        rsp
    })
    .await;
    let (web, _web_task) = backend().await;
    let zipkin = |rate: &str| {
        format!(
            "telemetry:\n- kind: io.l5d.zipkin\n  host: 127.0.0.1\n  port: {}\n  sampleRate: {rate}\n",
            collector.port()
        )
    };

    // Inner: the backend. It samples nothing by itself, so it only traces
    // what its caller sampled.
    let inner_dir = site(&[("web", web)]);
    let inner_cfg = config("", &zipkin("0.0")).replace("label: out", "label: inner");
    let inner = start(inner_dir.path(), &inner_cfg);
    // Outer: routes `web` to the inner switchyard; samples everything.
    let outer_dir = site(&[("web", inner.router)]);
    let outer_cfg = config("", &zipkin("1.0")).replace("label: out", "label: outer");
    let outer = start(outer_dir.path(), &outer_cfg);

    let c = client();
    let url = format!("http://{}/", outer.router);
    // `l5d-sample: 0` wins over the outer's rate: this one is not traced.
    let (status, _, _) = call(&c, "GET", &url, &[("host", "web"), ("l5d-sample", "0")], "").await;
    assert_eq!(status, 200, "{}\n{}", outer.log(), inner.log());
    let (status, headers, _) = call(&c, "GET", &url, &[("host", "web")], "").await;
    assert_eq!(status, 200, "{}\n{}", outer.log(), inner.log());

    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = spans.lock().expect("spans").clone();
        if got.len() >= 2 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 2, "{got:?}");
    let outer_span = got
        .iter()
        .find(|s| s.service == "outer")
        .expect("outer span");
    let inner_span = got
        .iter()
        .find(|s| s.service == "inner")
        .expect("inner span");
    assert_eq!(outer_span.trace_id, inner_span.trace_id, "{got:?}");
    assert_eq!(outer_span.trace_id.len(), 32);
    assert_eq!(outer_span.parent_id, None, "{got:?}");
    assert_eq!(
        inner_span.parent_id.as_deref(),
        Some(outer_span.id.as_str()),
        "{got:?}"
    );
    assert_ne!(inner_span.id, outer_span.id);
    // The backend saw the inner switchyard's span as its parent context.
    assert_eq!(
        headers.get("x-seen-spanid").and_then(|v| v.to_str().ok()),
        Some(inner_span.id.as_str())
    );
    let tp = headers
        .get("x-seen-traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(
        tp,
        format!("00-{}-{}-01", inner_span.trace_id, inner_span.id)
    );

    // A caller's B3 context is continued: its span is the outer's parent.
    let (status, _, _) = call(
        &c,
        "GET",
        &url,
        &[
            ("host", "web"),
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = spans.lock().expect("spans").clone();
        if got.len() >= 4 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let continued: Vec<&SpanSeen> = got
        .iter()
        .filter(|s| s.trace_id == "463ac35c9f6413ad48485a3953bb6124")
        .collect();
    assert_eq!(continued.len(), 2, "{got:?}");
    let outer2 = continued
        .iter()
        .find(|s| s.service == "outer")
        .expect("outer span");
    assert_eq!(outer2.parent_id.as_deref(), Some("a2fb4a1d1a96d312"));
}
