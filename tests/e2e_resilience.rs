//! Resilience with the real binary and real configs: deadlines across two
//! chained switchyards, load shedding, config-driven retries, gRPC success
//! classes in trailers.

mod support;

use std::time::{Duration, Instant};

use support::backend::{FailingBackend, Mode};
use support::process::Switchyard;
use support::*;

fn config(dtab: &str, server_extra: &str, router_extra: &str) -> String {
    format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: http\n  dtab: |\n    {dtab}\n{router_extra}  servers:\n  - ip: 127.0.0.1\n    port: 0\n{server_extra}"
    )
}

/// A TCP relay between two hops that hides the first hop's hang-up from
/// the second for a while (`linger`), and records what the second answered.
///
/// When the first hop gives up on a request it closes its connection, and
/// the second drops the request at once: in a plain chain, whether the
/// second hop's own deadline fired first is a race of microseconds. Behind
/// this relay the second hop keeps its request until its own deadline
/// passes, and its answer is kept for the test to read.
struct Relay {
    addr: std::net::SocketAddr,
    answered: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr, linger: Duration) -> Relay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let seen = answered.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(to).await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (mut dr, mut dw) = down.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    // Second hop → first: recorded, passed on while possible.
                    let back = tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = ur.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                            let _ = dw.write_all(&buf[..n]).await;
                        }
                    });
                    // First hop → second, until the first hangs up; then the
                    // second's connection stays open for `linger`.
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = dr.read(&mut buf).await {
                        if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tokio::time::timeout(linger, back).await;
                });
            }
        });
        Relay { addr, answered }
    }

    /// The head of the first response the second hop sent (waiting at most
    /// 10 s for it).
    async fn answer_head(&self) -> String {
        for _ in 0..1000 {
            let text = String::from_utf8_lossy(&self.answered.lock().unwrap()).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                return text[..end].to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the second hop never answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_set_at_the_first_hop_is_enforced_at_the_second() {
    let hang = FailingBackend::start(Mode::Hang).await;
    let hop2 = Switchyard::start(
        &config(
            &format!("/svc => /$/inet/127.0.0.1/{};", hang.addr.port()),
            "",
            "",
        ),
        "info",
    );
    let relay = Relay::start(hop2.router, Duration::from_secs(5)).await;
    let hop1 = Switchyard::start(
        &config(
            &format!("/svc => /$/inet/127.0.0.1/{};", relay.addr.port()),
            "",
            "  service:\n    totalTimeoutMs: 300\n",
        ),
        "info",
    );
    let started = Instant::now();
    let (r, _) = get(hop1.router, "web", "/", &[]).await;
    assert_eq!(r.status(), 503, "{}", l5d_err(&r));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The deadline crossed the second hop: its backend got it, with at most
    // the first hop's 300 ms.
    hang.wait_for(1).await;
    let d: switchyard::service::Deadline = hang.received()[0].headers["l5d-ctx-deadline"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(d.deadline - d.timestamp <= 300_000_000, "{d}");

    // The second hop enforced it on its own, while its backend still hung:
    // it answered 503, saying the deadline was set upstream.
    let head = relay.answer_head().await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let err = head
        .lines()
        .find_map(|l| l.strip_prefix("l5d-err: "))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    assert!(
        err.contains("The deadline for /svc/web passed (1 attempt(s)); it was set upstream"),
        "{head}"
    );
    assert_eq!(hang.count(), 1);

    // A request whose deadline already passed is not sent by the second hop.
    let now = switchyard::service::deadline::now_ns();
    let past = format!("{} {}", now - 2_000_000_000, now - 1_000_000_000);
    let (r, _) = get(hop2.router, "web", "/", &[("l5d-ctx-deadline", &past)]).await;
    assert_eq!(r.status(), 503);
    assert!(l5d_err(&r).contains("(0 attempt(s))"), "{}", l5d_err(&r));
    assert_eq!(hang.count(), 1, "not sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_requests_sheds_the_excess_at_once() {
    let b = FailingBackend::start(Mode::Sleep(Duration::from_millis(1500))).await;
    let s = Switchyard::start(
        &config(
            &format!("/svc => /$/inet/127.0.0.1/{};", b.addr.port()),
            "    maxConcurrentRequests: 2\n",
            "",
        ),
        "info",
    );
    let addr = s.router;
    let admitted: Vec<_> = (0..2)
        .map(|i| tokio::spawn(async move { get(addr, "web", &format!("/{i}"), &[]).await }))
        .collect();
    b.wait_for(2).await;
    let started = Instant::now();
    let (r, _) = get(addr, "web", "/excess", &[]).await;
    assert_eq!(r.status(), 503);
    assert!(
        l5d_err(&r).contains("Too many concurrent requests"),
        "{}",
        l5d_err(&r)
    );
    // Shed at once, without waiting for a slot.
    assert!(started.elapsed() < Duration::from_millis(1000));
    for t in admitted {
        let (r, body) = t.await.unwrap();
        assert_eq!((r.status().as_u16(), body.as_str()), (200, "backend"));
    }
    assert_eq!(b.count(), 2);
    let (r, _) = get(addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 200, "slots are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_retries_hide_a_flaky_backend() {
    let b = FailingBackend::start(Mode::Fraction {
        status: 503,
        percent: 30,
    })
    .await;
    let s = Switchyard::start(
        &config(
            &format!("/svc => /$/inet/127.0.0.1/{};", b.addr.port()),
            "",
            "  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc/web\n      \
             responseClassifier:\n        kind: io.l5d.http.retryableRead5XX\n",
        ),
        "info",
    );
    for _ in 0..50 {
        let (r, _) = get(s.router, "web", "/", &[]).await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        b.count() > 50 && b.count() <= 50 + 10 + 100,
        "{}",
        b.count()
    );
    // Names the prefix does not match are not retried.
    b.set(Mode::FailNext {
        n: 1,
        status: 503,
        retryable: false,
    });
    let before = b.count();
    let (r, _) = get(s.router, "other", "/", &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(b.count(), before + 1);
}

/// An h2 router for gRPC (`/pkg.Svc/Method` → `/svc/pkg.Svc`) in front of
/// `port`, with the default gRPC classifier and `service_extra` under
/// `service:`.
fn grpc_config(port: u16, service_extra: &str) -> String {
    format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: h2\n  dtab: |\n    /svc => /$/inet/127.0.0.1/{port};\n  \
         identifier:\n    kind: io.l5d.header.path\n    segments: 1\n  \
         service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.default\n{service_extra}  \
         servers:\n  - ip: 127.0.0.1\n    port: 0\n"
    )
}

/// One unary gRPC-style call: its head's and its trailers' success class
/// and `grpc-status`.
async fn grpc_call(addr: std::net::SocketAddr) -> (Option<String>, Option<String>, String) {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full("\0\0\0\0\0"))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), h2_client().request(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let head = resp
        .headers()
        .get("l5d-success-class")
        .map(|v| v.to_str().unwrap().to_string());
    let c = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body");
    let t = c.trailers().expect("trailers").clone();
    let class = t
        .get("l5d-success-class")
        .map(|v| v.to_str().unwrap().to_string());
    (head, class, t["grpc-status"].to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_success_class_rides_in_the_trailers() {
    let b = FailingBackend::start(Mode::GrpcStatusNext { n: 1, code: 3 }).await;
    // Retries possible: the trailers are read ahead, the class is in the
    // head and in the trailers.
    let s = Switchyard::start(&grpc_config(b.addr.port(), ""), "info");
    let (head, trailer, status) = grpc_call(s.router).await;
    assert_eq!(status, "3");
    assert_eq!(head.as_deref(), Some("0.0"));
    assert_eq!(trailer.as_deref(), Some("0.0"));
    let (head, trailer, status) = grpc_call(s.router).await;
    assert_eq!(status, "0");
    assert_eq!(
        (head.as_deref(), trailer.as_deref()),
        (Some("1.0"), Some("1.0"))
    );

    // No retry possible (an empty budget): the head goes at once, without
    // a class; the trailers carry it.
    b.set(Mode::GrpcStatusNext { n: 1, code: 14 });
    let s = Switchyard::start(
        &grpc_config(
            b.addr.port(),
            "    retries:\n      budget:\n        minRetriesPerSec: 0\n        percentCanRetry: 0.0\n",
        ),
        "info",
    );
    let (head, trailer, status) = grpc_call(s.router).await;
    assert_eq!(status, "14");
    assert_eq!((head, trailer.as_deref()), (None, Some("0.0")));
    let (head, trailer, status) = grpc_call(s.router).await;
    assert_eq!(status, "0");
    assert_eq!((head, trailer.as_deref()), (None, Some("1.0")));

    // The metrics count each by its trailers' class: one failure, one
    // success (both status 200). The count lands when the body ends, so
    // poll briefly.
    let mut text = String::new();
    for _ in 0..100 {
        let req = http::Request::builder()
            .uri(format!("http://{}/admin/metrics/prometheus", s.admin))
            .body(empty())
            .unwrap();
        let (_, body) = send(&h1_client(), req).await;
        text = body;
        let n = |class: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with("responses_total{")
                        && l.contains("status_code=\"200\"")
                        && l.contains(&format!("class=\"{class}\""))
                })
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        };
        if n("failure") == 1.0 && n("success") == 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected one failure and one success by their trailers:\n{text}");
}
