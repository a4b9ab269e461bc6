//! The admin dashboard and dtab playground in a real browser: Debian's
//! headless chromium driven by chromedriver over W3C WebDriver (plain
//! HTTP/JSON), against the real `switchyard` binary with a real config, the
//! io.l5d.fs namer and a real backend on 127.0.0.1.
//!
//! Needs `apt-get install -y chromium chromium-driver` (/usr/bin/chromium,
//! /usr/bin/chromedriver). Screenshots of each page land in
//! `target/screenshots/`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod support;
use support::process::Switchyard;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one wait for the page may take.
const WAIT: Duration = Duration::from_secs(20);
/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

// === a backend and the proxy process ===

/// A backend that answers every request with "hello".
async fn backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// `switchyard run -c` in a temp dir (tests/support/process.rs), killed on drop.
fn start_proxy(dir: &Path) -> Switchyard {
    Switchyard::start_in(
        dir,
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: disco\n\
         routers:\n- protocol: http\n  label: out\n  interpreter:\n    kind: io.l5d.fs\n    dtabFile: routing.dtab\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n",
        "info",
    )
}

async fn http(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut req = Request::builder().method(method).uri(url);
    let bytes = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(bytes)).expect("request");
    let rsp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer in 60 s"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// === WebDriver ===

/// chromedriver and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    base: String,
    client: HttpClient,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: this test drives Debian's headless chromium; \
                 install it with `apt-get install -y chromium chromium-driver`"
            );
        }
        // chromedriver takes a port; find a free one on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let client = Client::builder(TokioExecutor::new()).build_http();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            client,
            shots,
            _profile: profile,
        };
        let status = format!("{}/status", b.base);
        let deadline = Instant::now() + WAIT;
        loop {
            let req = Request::get(&status)
                .body(Full::new(Bytes::new()))
                .expect("req");
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(2), b.client.request(req)).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
            },
        }}});
        let v = b.call(Method::POST, "/session", Some(&caps)).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {v}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let (status, text) = http(&self.client, method, &url, body).await;
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
        assert!(status == 200, "{url}: {status}: {text}");
        v["value"].clone()
    }

    /// `call` that gives back a WebDriver error instead of panicking.
    async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let (status, text) = http(&self.client, method, &url, body).await;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(text)
        }
    }

    async fn open(&self, url: &str) {
        self.call(Method::POST, "/url", Some(&json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .try_call(
                Method::POST,
                "/element",
                Some(&json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| v.to_string())
    }

    /// The text a person sees in the first element matching `css`.
    async fn text(&self, css: &str) -> Result<String, String> {
        let id = self.find(css).await?;
        let v = self
            .try_call(Method::GET, &format!("/element/{id}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Wait until the text of `css` satisfies `ok`; the text. On timeout,
    /// save a screenshot and fail with what was shown.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.text(css).await {
                Ok(t) if ok(&t) => return t,
                Ok(t) => last = t,
                Err(e) => last = format!("(no element: {e})"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.screenshot("failure").await;
        panic!("{what}: `{css}` never showed it in {WAIT:?}; it showed:\n{last}");
    }

    async fn click(&self, css: &str) {
        let id = self
            .find(css)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        self.call(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(&json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self
            .find(css)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        self.call(
            Method::POST,
            &format!("/element/{id}/clear"),
            Some(&json!({})),
        )
        .await;
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(&json!({"text": text})),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close chromium (killing
        // chromedriver alone would leave the browser running). Drop may
        // run while panicking, so this is a plain blocking request.
        if let Some(rest) = self.base.strip_prefix("http://")
            && let Some((host, path)) = rest.split_once('/')
            && let Ok(mut s) = std::net::TcpStream::connect(host)
        {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver's screenshots), ignoring anything else.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_delegator_in_a_browser() {
    let (backend, backend_task) = backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("disco")).expect("disco");
    std::fs::write(
        dir.path().join("disco/web"),
        format!("127.0.0.1 {}\n", backend.port()),
    )
    .expect("service file");
    std::fs::write(dir.path().join("routing.dtab"), "/svc => /#/io.l5d.fs;\n").expect("dtab");
    let proxy = start_proxy(dir.path());

    // Some traffic, so there is something to see.
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..20 {
        let req = Request::get(format!("http://{}/", proxy.router))
            .header("host", "web")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let rsp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("proxy answers in time")
            .expect("proxy answers");
        assert_eq!(rsp.status(), 200);
        let _ = rsp.into_body().collect().await;
    }

    let browser = Browser::start().await;
    let admin = format!("http://{}", proxy.admin);
    let endpoint = format!("127.0.0.1:{}", backend.port());

    // The dashboard: the router, its traffic, the client's endpoint, the dtab.
    browser.open(&format!("{admin}/")).await;
    browser
        .wait_text(
            ".router-card[data-router=out] .router-label",
            "the router label",
            |t| t == "out",
        )
        .await;
    let requests = browser
        .wait_text(
            ".router-card[data-router=out] .stat-requests .v",
            "a non-zero request count",
            |t| t.replace(',', "").parse::<u64>().is_ok_and(|n| n >= 20),
        )
        .await;
    assert!(!requests.is_empty());
    browser
        .wait_text("#clients", "the client and its endpoint", |t| {
            t.contains("/#/io.l5d.fs/web") && t.contains(&endpoint) && t.contains("bound")
        })
        .await;
    browser
        .wait_text("#dtabs", "the dtab and its last load", |t| {
            t.contains("/svc=>/#/io.l5d.fs") && t.contains("routing.dtab")
        })
        .await;
    // More traffic while the page is open: the rate shows up on a later refresh.
    for _ in 0..10 {
        let req = Request::get(format!("http://{}/", proxy.router))
            .header("host", "web")
            .body(Full::new(Bytes::new()))
            .expect("request");
        if let Ok(Ok(rsp)) =
            tokio::time::timeout(Duration::from_secs(10), client.request(req)).await
        {
            let _ = rsp.into_body().collect().await;
        }
    }
    browser
        .wait_text(
            ".router-card[data-router=out] .stat-requests .v",
            "the count going up",
            |t| t.replace(',', "").parse::<u64>().is_ok_and(|n| n >= 30),
        )
        .await;
    let shot = browser.screenshot("dashboard").await;
    assert!(shot.exists());

    // The playground: pick the router, delegate /svc/web, see the trace.
    browser.open(&format!("{admin}/delegator")).await;
    browser
        .wait_text("#router", "the router choice", |t| t.contains("out"))
        .await;
    browser.click("#router option[value=out]").await;
    browser.type_into("#path", "/svc/web").await;
    browser.click("#go").await;
    let trace = browser
        .wait_text("#result", "the delegation trace", |t| t.contains(&endpoint))
        .await;
    assert!(
        trace.contains("/svc=>/#/io.l5d.fs"),
        "the dentry behind the step:\n{trace}"
    );
    assert!(trace.contains("/#/io.l5d.fs/web"), "the bound id:\n{trace}");
    assert!(trace.to_uppercase().contains("LEAF"), "the leaf:\n{trace}");
    browser.screenshot("delegator").await;

    // A bad extra dtab: the parse error, clearly.
    browser.type_into("#dtab", "/svc => ").await;
    browser.click("#go").await;
    let error = browser
        .wait_text("#error", "the dtab parse error", |t| t.contains("dtab"))
        .await;
    assert!(error.contains("rejected"), "{error}");
    browser.screenshot("delegator-error").await;

    // An extra dtab that sends the name elsewhere shows that step.
    browser
        .type_into("#dtab", "/svc/web => /$/inet/127.0.0.1/1;")
        .await;
    browser.click("#go").await;
    let trace = browser
        .wait_text("#result", "the trace under the extra dtab", |t| {
            t.contains("127.0.0.1:1")
        })
        .await;
    assert!(trace.contains("/svc/web=>/$/inet/127.0.0.1/1"), "{trace}");
    browser.screenshot("delegator-extra-dtab").await;

    // A bad dtab file: the dashboard shows the rejection and the dtab kept.
    let tmp = dir.path().join(".routing.dtab.tmp");
    std::fs::write(&tmp, "/svc => ;\n").expect("write bad dtab");
    std::fs::rename(&tmp, dir.path().join("routing.dtab")).expect("replace dtab");
    browser.open(&format!("{admin}/")).await;
    let dtabs = browser
        .wait_text("#dtabs", "the rejected reload", |t| {
            t.contains("rejected at")
        })
        .await;
    assert!(
        dtabs.contains("routing.dtab:1:"),
        "names file:line:col:\n{dtabs}"
    );
    assert!(
        dtabs.contains("/svc=>/#/io.l5d.fs"),
        "the last good dtab stays:\n{dtabs}"
    );
    browser.screenshot("dashboard-reload-rejected").await;

    drop(browser);
    drop(proxy);
    backend_task.abort();
}
