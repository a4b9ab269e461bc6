//! The service level through a real proxy: retries by classifier within the
//! budget, retryable bodies, total timeouts and deadlines, `l5d-retryable`
//! and `l5d-success-class`, against a backend that fails on command.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use support::backend::{FailingBackend, Mode};
use support::*;
use switchyard::routing::{Protocol, RouterParams};
use switchyard::service::{
    Backoff, BudgetConfig, Classifier, Retries, ServiceConfig, ServiceOverrides,
};

fn params(o: ServiceOverrides) -> RouterParams {
    let mut p = RouterParams::new(Protocol::Http);
    p.service = ServiceConfig::global(o);
    p
}

fn classifier(c: Classifier) -> ServiceOverrides {
    ServiceOverrides {
        response_classifier: Some(c),
        ..Default::default()
    }
}

async fn proxy_to(b: &FailingBackend, o: ServiceOverrides) -> Proxy {
    let binder = Arc::new(TestBinder::new(&format!("/svc/web=>{}", b.inet())));
    start_proxy(params(o), binder).await
}

fn post(proxy: &Proxy, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method("POST")
        .uri(format!("http://{}/", proxy.addr))
        .header("host", "web")
        .body(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_503_is_hidden_by_retries_within_the_budget() {
    for c in [Classifier::RetryableRead5XX, Classifier::RetryableAll5XX] {
        let b = FailingBackend::start(Mode::Fraction {
            status: 503,
            percent: 30,
        })
        .await;
        let p = proxy_to(&b, classifier(c.clone())).await;
        let requests = 200;
        let mut tasks = Vec::new();
        for t in 0..4 {
            let addr = p.addr;
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..requests / 4 {
                    let (r, _) = get(addr, "web", &format!("/{t}"), &[]).await;
                    if r.status() == 200 {
                        ok += 1;
                        assert_eq!(r.headers()["l5d-success-class"], "1.0");
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        assert_eq!(ok, requests, "{c}: every request succeeded");
        let attempts = b.count();
        // Budget: 20% of requests plus the reserve (10/s over 10 s).
        let bound = requests + requests / 5 + 10 * 10;
        assert!(attempts > requests, "{c}: some requests were retried");
        assert!(attempts <= bound, "{c}: {attempts} attempts > {bound}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_returns_the_last_failure() {
    let b = FailingBackend::start(Mode::Status(503)).await;
    let o = ServiceOverrides {
        retries: Some(Retries {
            budget: Some(BudgetConfig {
                min_retries_per_sec: 1,
                percent_can_retry: 0.0,
                ttl: Duration::from_secs(10),
            }),
            backoff: Some(Backoff::Constant {
                ms: Duration::from_millis(1),
            }),
        }),
        ..classifier(Classifier::RetryableRead5XX)
    };
    let p = proxy_to(&b, o).await;
    for _ in 0..5 {
        let (r, body) = get(p.addr, "web", "/", &[]).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["l5d-success-class"], "0.0");
        assert_eq!(body, "backend failed on command");
    }
    // 5 requests and the reserve's 10 retries, no more.
    assert_eq!(b.count(), 5 + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_classifier_does_not_retry_5xx() {
    let b = FailingBackend::start(Mode::FailNext {
        n: 1,
        status: 500,
        retryable: false,
    })
    .await;
    let p = proxy_to(&b, ServiceOverrides::default()).await;
    let (r, _) = get(p.addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 500);
    assert_eq!(b.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_post_is_retried_and_a_big_streamed_one_is_not() {
    let b = FailingBackend::start(Mode::FailNext {
        n: 1,
        status: 503,
        retryable: false,
    })
    .await;
    let p = proxy_to(&b, classifier(Classifier::RetryableAll5XX)).await;
    let (r, body) = send(&h1_client(), post(&p, full(vec![b'x'; 1024]))).await;
    assert_eq!((r.status().as_u16(), body.as_str()), (200, "backend"));
    let got = b.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.method == "POST" && g.body_len == 1024));

    // A chunked body is retried too while it fits the buffer.
    b.set(Mode::FailNext {
        n: 1,
        status: 503,
        retryable: false,
    });
    let (r, _) = send(&h1_client(), post(&p, generated(10_000))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.count(), 4);

    // 10 MB streamed: sent once, the failure is the answer.
    b.set(Mode::FailNext {
        n: 1,
        status: 503,
        retryable: false,
    });
    let (r, _) = send(&h1_client(), post(&p, generated(10 << 20))).await;
    assert_eq!(r.status(), 503);
    assert_eq!(b.count(), 5);
    assert_eq!(b.received()[4].body_len, 10 << 20);
    // And it succeeds when the backend does.
    let (r, _) = send(&h1_client(), post(&p, generated(10 << 20))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.received()[5].body_len, 10 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_retried_for_reads_only() {
    let b = FailingBackend::start(Mode::ResetNext(1)).await;
    let p = proxy_to(&b, classifier(Classifier::RetryableRead5XX)).await;
    let (r, _) = get(p.addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.count(), 2);
    b.set(Mode::ResetNext(1));
    let (r, _) = send(&h1_client(), post(&p, full("x"))).await;
    assert_eq!(r.status(), 502);
    let err = l5d_err(&r);
    assert!(err.contains("/svc/web"), "{err}");
    assert!(
        err.contains("responseClassifier io.l5d.http.retryableRead5XX does not retry POST"),
        "{err}"
    );
    assert_eq!(b.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5d_retryable_from_downstream_is_honoured() {
    let b = FailingBackend::start(Mode::FailNext {
        n: 2,
        status: 502,
        retryable: true,
    })
    .await;
    // Even a POST under the default classifier: it never reached the app.
    let p = proxy_to(&b, ServiceOverrides::default()).await;
    let (r, _) = send(&h1_client(), post(&p, full("x"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_and_marked_retryable() {
    let b = FailingBackend::start(Mode::Ok).await;
    let dead = b.inet();
    b.exit();
    drop(b);
    let binder = Arc::new(TestBinder::new(&format!("/svc/web=>{dead}")));
    let p = start_proxy(params(ServiceOverrides::default()), binder).await;
    let (r, _) = send(&h1_client(), post(&p, full("x"))).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["l5d-retryable"], "true");
    let err = l5d_err(&r);
    assert!(err.contains("Unable to connect"), "{err}");
    // Retried up to the per-request limit, then within the budget's
    // reserve (10/s × 10 s); each answer says why it stopped.
    assert!(
        err.contains("[25 attempt(s); not retried: attempt limit (25) reached]"),
        "{err}"
    );
    for _ in 0..4 {
        send(&h1_client(), post(&p, full("x"))).await;
    }
    let (r, _) = send(&h1_client(), post(&p, full("x"))).await;
    let err = l5d_err(&r);
    assert!(
        err.contains("not retried: retry budget of /svc/web exhausted"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_answers_503_naming_the_service() {
    let b = FailingBackend::start(Mode::Hang).await;
    let o = ServiceOverrides {
        total_timeout: Some(Duration::from_millis(200)),
        ..classifier(Classifier::RetryableRead5XX)
    };
    let p = proxy_to(&b, o).await;
    let started = std::time::Instant::now();
    let (r, _) = get(p.addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 503);
    let err = l5d_err(&r);
    assert!(err.contains("/svc/web"), "{err}");
    assert!(err.contains("totalTimeoutMs=200ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The backend saw the request, with its deadline.
    b.wait_for(1).await;
    assert!(b.received()[0].headers.contains_key("l5d-ctx-deadline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_propagated_combined_and_enforced() {
    let b = FailingBackend::start(Mode::Ok).await;
    let o = ServiceOverrides {
        total_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let p = proxy_to(&b, o).await;
    // Our totalTimeout alone.
    let (r, _) = get(p.addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 200);
    let d: switchyard::service::Deadline = b.received()[0].headers["l5d-ctx-deadline"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = d.deadline.saturating_sub(d.timestamp);
    assert!(left <= 5_000_000_000 && left > 4_000_000_000, "{d}");

    // A stricter deadline from upstream wins.
    let now = switchyard::service::deadline::now_ns();
    let strict = format!("{now} {}", now + 2_000_000_000);
    let (r, _) = get(p.addr, "web", "/", &[("l5d-ctx-deadline", &strict)]).await;
    assert_eq!(r.status(), 200);
    let seen = b.received()[1].headers["l5d-ctx-deadline"]
        .to_str()
        .unwrap()
        .to_string();
    let d: switchyard::service::Deadline = seen.parse().unwrap();
    assert_eq!(d.deadline, now + 2_000_000_000);

    // An expired one is not sent at all.
    let past = format!("{} {}", now - 2_000_000_000, now - 1_000_000_000);
    let (r, _) = get(p.addr, "web", "/", &[("l5d-ctx-deadline", &past)]).await;
    assert_eq!(r.status(), 503);
    assert!(
        l5d_err(&r).contains("deadline for /svc/web passed"),
        "{}",
        l5d_err(&r)
    );
    assert_eq!(b.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_attempt_timeouts_are_retried() {
    let b = FailingBackend::start(Mode::SlowNext {
        n: 1,
        delay: Duration::from_secs(2),
    })
    .await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/web=>{}", b.inet())));
    let mut p = params(classifier(Classifier::RetryableRead5XX));
    p.request_timeout = Some(Duration::from_millis(200));
    let proxy = start_proxy(p, binder).await;
    let (r, _) = get(proxy.addr, "web", "/", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_is_retried_and_grpc_timeout_written() {
    use http_body_util::BodyExt;
    let b = FailingBackend::start(Mode::GrpcStatusNext { n: 1, code: 14 }).await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/pkg.Svc=>{}", b.inet())));
    let mut p = RouterParams::new(Protocol::H2);
    p.identifiers = vec![switchyard::routing::Identifier::HeaderPath {
        header: ":path".into(),
        segments: None,
    }];
    p.service = ServiceConfig::global(ServiceOverrides {
        total_timeout: Some(Duration::from_secs(5)),
        ..classifier("io.l5d.h2.grpc.default".parse().unwrap())
    });
    let proxy = start_proxy(p, binder).await;
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{}/pkg.Svc/Call", proxy.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "3S")
        .body(full("\0\0\0\0\0"))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["l5d-success-class"], "1.0");
    let c = resp.into_body().collect().await.unwrap();
    assert_eq!(c.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(b.count(), 2);
    // The stricter grpc-timeout (3 s) won over totalTimeoutMs (5 s).
    let seen = b.received();
    let t = seen[1].headers["grpc-timeout"]
        .to_str()
        .unwrap()
        .to_string();
    let left = switchyard::service::deadline::parse_grpc_timeout(&t).unwrap();
    assert!(
        left <= Duration::from_secs(3) && left > Duration::from_secs(2),
        "{t}"
    );
    // A non-retryable code is the answer.
    b.set(Mode::GrpcStatusNext { n: 1, code: 3 });
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{}/pkg.Svc/Call", proxy.addr))
        .header("content-type", "application/grpc")
        .body(full("\0\0\0\0\0"))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.headers()["l5d-success-class"], "0.0");
    let c = resp.into_body().collect().await.unwrap();
    assert_eq!(c.trailers().unwrap()["grpc-status"], "3");
    assert_eq!(b.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_routed_to_another_branch_names_its_own_client() {
    // A union of an always-failing and a healthy backend: requests whose
    // first attempt fails are retried, and each attempt's l5d-dst-client
    // and l5d-dst-residual are those of the branch it went to (the
    // caller's request carries no l5d- header: the proxy's own go out as
    // a list, per attempt).
    let bad = FailingBackend::builder()
        .name("bad")
        .mode(Mode::Status(503))
        .start()
        .await;
    let good = FailingBackend::builder().name("good").start().await;
    let dtab = format!("/svc/web=>1 * {}/b & 1 * {}/g", bad.inet(), good.inet());
    let binder = Arc::new(TestBinder::new(&dtab));
    let p = start_proxy(params(classifier(Classifier::RetryableRead5XX)), binder).await;
    for _ in 0..20 {
        let (r, _) = get(p.addr, "web", "/", &[]).await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        bad.count() > 0,
        "some first attempts went to the failing branch"
    );
    let one = |h: &http::HeaderMap, name: &str| {
        let all: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        all[0].to_str().unwrap().to_string()
    };
    for (backend, residual) in [(&bad, "/b"), (&good, "/g")] {
        for seen in backend.received() {
            assert_eq!(one(&seen.headers, "l5d-dst-client"), backend.inet());
            assert_eq!(one(&seen.headers, "l5d-dst-residual"), residual);
            assert_eq!(one(&seen.headers, "l5d-dst-service"), "/svc/web");
            assert_eq!(one(&seen.headers, "via"), "1.1 switchyard");
        }
    }
    // An attempt and its retry carry the same request id.
    let ids = |b: &FailingBackend| -> Vec<String> {
        b.received()
            .iter()
            .map(|r| one(&r.headers, "l5d-reqid"))
            .collect()
    };
    let good_ids = ids(&good);
    assert!(ids(&bad).iter().all(|id| good_ids.contains(id)));
}
