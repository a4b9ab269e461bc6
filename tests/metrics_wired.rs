//! The retry, requeue, balancer and failure-accrual metrics, read from the
//! real binary's `/admin/metrics/prometheus` after known traffic against
//! backends that fail on command.

mod support;

use std::time::Duration;

use http::Request;
use support::backend::{FailingBackend, Mode};
use support::process::Switchyard;
use support::*;

/// The exposition of `s`.
async fn scrape(s: &Switchyard) -> String {
    let req = Request::builder()
        .uri(format!("http://{}/admin/metrics/prometheus", s.admin))
        .body(empty())
        .unwrap();
    let (r, body) = send(&h1_client(), req).await;
    assert_eq!(r.status(), 200, "{body}");
    body
}

/// The value of the sample of `name` whose labels contain `label`
/// (e.g. `service="/svc/web"`); `None` when there is none.
fn value(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_exhausted_budgets_are_counted() {
    let flaky = FailingBackend::start(Mode::Fraction {
        status: 503,
        percent: 30,
    })
    .await;
    let down = FailingBackend::start(Mode::Status(503)).await;
    let config = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: http\n  label: out\n  \
         dtab: |\n    /svc/web => /$/inet/127.0.0.1/{};\n    /svc/tiny => /$/inet/127.0.0.1/{};\n  \
         service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc\n      \
         responseClassifier:\n        kind: io.l5d.http.retryableRead5XX\n    \
         - prefix: /svc/tiny\n      retries:\n        budget:\n          \
         minRetriesPerSec: 0\n          percentCanRetry: 0.0\n          ttlSecs: 1\n  \
         servers:\n  - ip: 127.0.0.1\n    port: 0\n",
        flaky.addr.port(),
        down.addr.port()
    );
    let s = Switchyard::start(&config, "info");
    for _ in 0..30 {
        let (r, _) = get(s.router, "web", "/", &[]).await;
        assert_eq!(r.status(), 200, "{}", l5d_err(&r));
    }
    for _ in 0..5 {
        let (r, _) = get(s.router, "tiny", "/", &[]).await;
        assert_eq!(r.status(), 503);
    }
    let text = scrape(&s).await;
    let web = r#"service="/svc/web""#;
    let tiny = r#"service="/svc/tiny""#;
    let retries = value(&text, "retries_total", web).unwrap_or(0.0);
    // Every retry the backend saw beyond the 30 requests is counted.
    assert_eq!(retries, (flaky.count() - 30) as f64, "{text}");
    assert!(retries > 0.0, "{text}");
    assert!(value(&text, "retries_total", r#"router="out""#).is_some());
    // A budget of nothing refuses every retry: one refusal per request.
    assert_eq!(
        value(&text, "retry_budget_exhausted_total", tiny),
        Some(5.0),
        "{text}"
    );
    assert_eq!(down.count(), 5, "never retried");
    assert_eq!(value(&text, "retries_total", tiny).unwrap_or(0.0), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancer_gauges_ejections_revivals_and_requeues() {
    let good = FailingBackend::builder().name("good").start().await;
    let bad = FailingBackend::builder()
        .name("bad")
        .mode(Mode::Status(503))
        .start()
        .await;
    let disco = tempfile::tempdir().unwrap();
    std::fs::write(
        disco.path().join("web"),
        format!("{}{}", good.line(), bad.line()),
    )
    .unwrap();
    let config = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         namers:\n- kind: io.l5d.fs\n  rootDir: {}\n\
         routers:\n- protocol: http\n  label: out\n  dtab: /svc => /#/io.l5d.fs\n  \
         client:\n    loadBalancer:\n      kind: roundRobin\n    \
         failureAccrual:\n      kind: io.l5d.consecutiveFailures\n      failures: 2\n      \
         backoff:\n        kind: constant\n        ms: 500\n  \
         servers:\n  - ip: 127.0.0.1\n    port: 0\n",
        disco.path().display()
    );
    let s = Switchyard::start(&config, "info");
    let client = r#"client="/#/io.l5d.fs/web""#;

    let (r, _) = get(s.router, "web", "/", &[]).await;
    assert!(r.status() == 200 || r.status() == 503);
    let text = scrape(&s).await;
    assert_eq!(
        value(&text, "loadbalancer_endpoints", client),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "loadbalancer_available_endpoints", client),
        Some(2.0),
        "{text}"
    );

    // Round robin alternates: two failures of the bad one eject it.
    for _ in 0..9 {
        get(s.router, "web", "/", &[]).await;
    }
    assert_eq!(bad.count(), 2);
    let text = scrape(&s).await;
    assert_eq!(
        value(&text, "failure_accrual_ejections_total", client),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "loadbalancer_endpoints", client), Some(2.0));
    assert_eq!(
        value(&text, "loadbalancer_available_endpoints", client),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "failure_accrual_revivals_total", client).unwrap_or(0.0),
        0.0
    );

    // Healed, after the backoff one probe revives it.
    bad.set(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut revived = false;
    for _ in 0..20 {
        get(s.router, "web", "/", &[]).await;
        let text = scrape(&s).await;
        if value(&text, "failure_accrual_revivals_total", client) == Some(1.0) {
            revived = true;
            break;
        }
    }
    assert!(revived, "{}", scrape(&s).await);
    let text = scrape(&s).await;
    assert_eq!(
        value(&text, "loadbalancer_available_endpoints", client),
        Some(2.0),
        "{text}"
    );

    // The bad one goes away: a refused connection is requeued on the good one.
    bad.exit();
    let mut requeued = false;
    for _ in 0..10 {
        let (r, body) = get(s.router, "web", "/", &[]).await;
        assert_eq!((r.status().as_u16(), body.as_str()), (200, "good"));
        let text = scrape(&s).await;
        if value(&text, "requeues_total", client).unwrap_or(0.0) >= 1.0 {
            requeued = true;
            break;
        }
    }
    assert!(requeued, "{}", scrape(&s).await);

    // The endpoint set shrinks: the size gauge follows.
    std::fs::write(disco.path().join("web"), good.line()).unwrap();
    let mut shrunk = false;
    for _ in 0..100 {
        let text = scrape(&s).await;
        if value(&text, "loadbalancer_endpoints", client) == Some(1.0) {
            shrunk = true;
            assert_eq!(
                value(&text, "loadbalancer_available_endpoints", client),
                Some(1.0)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shrunk, "{}", scrape(&s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_retried_on_another_branch_is_counted_under_its_client() {
    // A union of an always-failing and a healthy backend, with retries on
    // 5xx: a request whose first attempt went to the failing branch is
    // answered by the healthy one, and its route metrics name that client.
    let bad = FailingBackend::start(Mode::Status(503)).await;
    let good = FailingBackend::start(Mode::Ok).await;
    let config = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: http\n  label: out\n  \
         dtab: |\n    /svc/web => 1 * /$/inet/127.0.0.1/{} & 1 * /$/inet/127.0.0.1/{};\n  \
         service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc\n      \
         responseClassifier:\n        kind: io.l5d.http.retryableRead5XX\n  \
         servers:\n  - ip: 127.0.0.1\n    port: 0\n",
        bad.addr.port(),
        good.addr.port()
    );
    let s = Switchyard::start(&config, "info");
    for _ in 0..20 {
        let (r, _) = get(s.router, "web", "/", &[]).await;
        assert_eq!(r.status(), 200, "{}", l5d_err(&r));
    }
    assert!(
        bad.count() > 0,
        "some first attempts went to the failing branch"
    );
    let text = scrape(&s).await;
    let client = |b: &FailingBackend| format!("client=\"/$/inet/127.0.0.1/{}\"", b.addr.port());
    let good_requests = value(&text, "requests_total", &client(&good));
    assert_eq!(good_requests, Some(20.0), "{text}");
    let bad_requests = value(&text, "requests_total", &client(&bad)).unwrap_or(0.0);
    assert_eq!(bad_requests, 0.0, "{text}");
}
