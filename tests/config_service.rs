//! The `service:` section of a router: loading, defaults, per-name
//! resolution, and errors placed in the file.

use std::time::Duration;

use switchyard::config;
use switchyard::service::{Backoff, BudgetConfig, Classifier, ServiceParams};

fn router_params(yaml: &str, name: &str) -> ServiceParams {
    let c = config::parse_str(yaml, "linkerd.yaml").unwrap_or_else(|e| panic!("{e}"));
    c.routers[0].service.resolve(&name.parse().unwrap())
}

fn problems(yaml: &str) -> String {
    match config::parse_str(yaml, "linkerd.yaml") {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "routers:\n- protocol: http\n  servers:\n  - port: 0\n";

#[test]
fn no_service_means_linkerd_defaults() {
    let p = router_params(HEAD, "/svc/a");
    assert_eq!(p, ServiceParams::default());
    assert_eq!(p.response_classifier, Classifier::NonRetryable5XX);
    assert_eq!(p.budget, BudgetConfig::default());
    assert_eq!(p.retry_buffer_size.request_bytes, 16383);
    assert_eq!(p.total_timeout, None);
}

#[test]
fn global_service_applies_to_every_name() {
    let yaml = format!(
        "{HEAD}  service:\n    responseClassifier:\n      kind: io.l5d.http.retryableRead5XX\n    \
         retries:\n      budget:\n        percentCanRetry: 0.5\n      backoff:\n        kind: jittered\n        minMs: 10\n        maxMs: 100\n    \
         totalTimeoutMs: 250\n    retryBufferSize:\n      requestBytes: 1024\n"
    );
    let p = router_params(&yaml, "/svc/anything");
    assert_eq!(p.response_classifier, Classifier::RetryableRead5XX);
    assert_eq!(p.budget.percent_can_retry, 0.5);
    assert_eq!(p.budget.min_retries_per_sec, 10);
    assert_eq!(p.budget.ttl, Duration::from_secs(10));
    assert_eq!(
        p.backoff,
        Backoff::Jittered {
            min_ms: Duration::from_millis(10),
            max_ms: Duration::from_millis(100)
        }
    );
    assert_eq!(p.total_timeout, Some(Duration::from_millis(250)));
    assert_eq!(p.retry_buffer_size.request_bytes, 1024);
    assert_eq!(p.retry_buffer_size.response_bytes, 16383);
}

#[test]
fn linkerd_service_options_example_resolves_per_prefix() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/linkerd-examples/linkerd__examples__service-options.yaml"
    ))
    .unwrap();
    let c = config::parse_str(&text, "service-options.yaml").unwrap();
    let s = &c.routers[0].service;
    let foo = s.resolve(&"/svc/foo".parse().unwrap());
    assert_eq!(foo.total_timeout, Some(Duration::from_millis(1000)));
    assert_eq!(foo.budget, BudgetConfig::default());
    let bar = s.resolve(&"/svc/bar".parse().unwrap());
    assert_eq!(bar.total_timeout, Some(Duration::from_millis(500)));
    assert_eq!(bar.budget.min_retries_per_sec, 5);
    assert_eq!(bar.budget.ttl, Duration::from_secs(15));
    let other = s.resolve(&"/other".parse().unwrap());
    assert_eq!(other.total_timeout, None);
    // /config.json shows it back with Linkerd's keys.
    let json = serde_json::to_value(&c).unwrap();
    let svc = &json["routers"][0]["service"];
    assert_eq!(svc["kind"], "io.l5d.static");
    assert_eq!(svc["configs"][1]["prefix"], "/svc/foo");
    assert_eq!(svc["configs"][1]["totalTimeoutMs"], 1000);
    assert_eq!(svc["configs"][2]["retries"]["backoff"]["kind"], "jittered");
}

#[test]
fn static_prefixes_take_wildcards_and_captures() {
    let yaml = format!(
        "{HEAD}  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc/*/v2\n      totalTimeoutMs: 10\n    \
         - prefix: /svc/{{name}}\n      responseClassifier:\n        kind: io.l5d.http.retryableAll5XX\n"
    );
    let p = router_params(&yaml, "/svc/web/v2");
    assert_eq!(p.total_timeout, Some(Duration::from_millis(10)));
    assert_eq!(p.response_classifier, Classifier::RetryableAll5XX);
    assert_eq!(router_params(&yaml, "/svc/web").total_timeout, None);
}

#[test]
fn grpc_classifiers_on_h2() {
    let yaml = "routers:\n- protocol: h2\n  servers:\n  - port: 0\n  service:\n    responseClassifier:\n      \
                kind: io.l5d.h2.grpc.retryableStatusCodes\n      retryableStatusCodes: [4, 14]\n";
    let p = router_params(yaml, "/svc/a");
    assert_eq!(
        p.response_classifier.kind(),
        "io.l5d.h2.grpc.retryableStatusCodes"
    );
}

#[test]
fn bad_service_values_are_placed() {
    let yaml = format!(
        "{HEAD}  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: svc\n    \
         - prefix: /svc\n      retries:\n        budget:\n          percentCanRetry: 2000\n        \
         backoff:\n          kind: jittered\n          minMs: 100\n          maxMs: 10\n      \
         responseClassifier:\n        kind: io.l5d.http.sometimes\n"
    );
    let e = problems(&yaml);
    assert!(
        e.contains("percentCanRetry: expected a number from 0 to 1000"),
        "{e}"
    );
    assert!(e.contains("unknown kind 'io.l5d.http.sometimes'"), "{e}");
    let e = problems(&format!(
        "{HEAD}  service:\n    retries:\n      backoff:\n        kind: jittered\n        minMs: 100\n        maxMs: 10\n"
    ));
    assert!(e.contains("minMs (100) must not exceed maxMs (10)"), "{e}");
    let e = problems(&format!(
        "{HEAD}  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: svc\n      totalTimeoutMs: 1\n"
    ));
    assert!(
        e.contains("linkerd.yaml:8:15: routers[0].service.configs[0].prefix: expected a prefix"),
        "{e}"
    );
    let e = problems(&format!("{HEAD}  service:\n    kind: io.l5d.static\n"));
    assert!(e.contains("missing key 'configs'"), "{e}");
}
