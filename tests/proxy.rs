//! End-to-end tests of the forwarding core: real hyper backends and a real
//! proxy on 127.0.0.1:0, names bound by an in-memory binder.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use support::*;
use switchyard::routing::{Identifier, Protocol, RouterParams};

fn http_params() -> RouterParams {
    RouterParams::new(Protocol::Http)
}

#[tokio::test]
async fn routes_by_host() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/a=>{};/svc/b=>{}",
        a.inet(),
        b.inet()
    )));
    let p = start_proxy(http_params(), binder).await;
    let (r, body) = get(p.addr, "a", "/", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, "a");
    let (_, body) = get(p.addr, "b", "/", &[]).await;
    assert_eq!(body, "b");
    let (_, body) = get(p.addr, "a", "/x", &[]).await;
    assert_eq!(body, "a");
    assert_eq!(a.count(), 2);
}

#[tokio::test]
async fn weighted_union_split() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let binder = Arc::new(TestBinder::new("/svc/w=>3*/#/test/a & 1*/#/test/b"));
    let _ta = binder.name("a", &[(a.addr, 1.0)]);
    let _tb = binder.name("b", &[(b.addr, 1.0)]);
    let p = start_proxy(http_params(), binder).await;
    let client = h1_client();
    for _ in 0..1000 {
        let req = Request::builder()
            .uri(format!("http://{}/", p.addr))
            .header("host", "w")
            .body(empty())
            .unwrap();
        let (r, _) = send(&client, req).await;
        assert_eq!(r.status(), 200);
    }
    let share_a = a.count() as f64 / 10.0;
    assert!((70.0..=80.0).contains(&share_a), "a got {share_a}%");
    assert_eq!(a.count() + b.count(), 1000);
}

#[tokio::test]
async fn l5d_dtab_overrides_one_request_only() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/a=>{};/svc/b=>{}",
        a.inet(),
        b.inet()
    )));
    let p = start_proxy(http_params(), binder).await;
    let (_, body) = get(p.addr, "a", "/", &[("l5d-dtab", "/svc/a=>/svc/b")]).await;
    assert_eq!(body, "b");
    let seen = b.last();
    assert!(seen.headers.get("l5d-dtab").is_none());
    assert_eq!(seen.headers.get("l5d-ctx-dtab").unwrap(), "/svc/a=>/svc/b");
    let (_, body) = get(p.addr, "a", "/", &[]).await;
    assert_eq!(body, "a");
    assert!(a.last().headers.get("l5d-ctx-dtab").is_none());
}

#[tokio::test]
async fn ctx_dtab_carried_through_two_proxies() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let binder2 = Arc::new(TestBinder::new("/svc/a=>/#/test/a;/svc/a2=>/#/test/b"));
    let _ta = binder2.name("a", &[(a.addr, 1.0)]);
    let _tb = binder2.name("b", &[(b.addr, 1.0)]);
    let p2 = start_proxy(http_params(), binder2).await;
    let binder1 = Arc::new(TestBinder::new(&format!(
        "/svc=>/$/inet/127.0.0.1/{}",
        p2.addr.port()
    )));
    let p1 = start_proxy(http_params(), binder1).await;
    let (_, body) = get(p1.addr, "a", "/", &[]).await;
    assert_eq!(body, "a");
    let (_, body) = get(p1.addr, "a", "/", &[("l5d-dtab", "/svc/a=>/svc/a2")]).await;
    assert_eq!(
        body, "b",
        "the second proxy applied the first one's local dtab"
    );
    let seen = b.last();
    assert_eq!(seen.headers.get("l5d-ctx-dtab").unwrap(), "/svc/a=>/svc/a2");
    assert_eq!(seen.headers.get_all("via").iter().count(), 2);
}

#[tokio::test]
async fn unknown_name_is_502_with_l5d_err() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let (r, body) = get(p.addr, "nope", "/", &[]).await;
    assert_eq!(r.status(), 502);
    let err = l5d_err(&r);
    assert!(err.contains("/svc/nope"), "{err}");
    assert!(err.contains("Dtab.base=[/svc/a=>"), "{err}");
    assert!(body.contains("/svc/nope"), "{body}");
    assert_eq!(a.count(), 0);
}

#[tokio::test]
async fn negative_client_and_empty_set_are_502() {
    let binder = Arc::new(TestBinder::new(
        "/svc/gone=>/#/test/gone;/svc/none=>/#/test/none;/svc/e=>$",
    ));
    let _none = binder.name("none", &[]);
    let p = start_proxy(http_params(), binder).await;
    for host in ["gone", "none", "e"] {
        let (r, body) = get(p.addr, host, "/", &[]).await;
        assert_eq!(r.status(), 502, "{host}");
        assert!(l5d_err(&r).contains(&format!("/svc/{host}")));
        assert!(body.contains("Bound tree: "), "{body}");
    }
}

#[tokio::test]
async fn malformed_l5d_dtab_is_400_naming_the_header() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let (r, body) = get(p.addr, "a", "/", &[("l5d-dtab", "i am not a dtab")]).await;
    assert_eq!(r.status(), 400);
    let err = l5d_err(&r);
    assert!(err.contains("l5d-dtab"), "{err}");
    assert!(err.contains("expected"), "{err}");
    assert!(body.contains("i am not a dtab"), "{body}");
    assert_eq!(
        r.headers().get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(a.count(), 0);
}

#[tokio::test]
async fn binding_timeout_is_503() {
    let binder = Arc::new(TestBinder::new("/svc/p=>/#/pending"));
    let mut params = http_params();
    params.binding_timeout = Duration::from_millis(100);
    let p = start_proxy(params, binder).await;
    let (r, _) = get(p.addr, "p", "/", &[]).await;
    assert_eq!(r.status(), 503);
    assert!(
        l5d_err(&r).contains("binding timeout for /svc/p"),
        "{}",
        l5d_err(&r)
    );
}

#[tokio::test]
async fn refused_connections_are_retryable_502() {
    // Bind then drop, so nothing listens there.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let binder = Arc::new(TestBinder::new("/svc/d=>/#/test/d"));
    let _d = binder.name("d", &[(dead, 1.0)]);
    let p = start_proxy(http_params(), binder).await;
    let (r, _) = get(p.addr, "d", "/", &[]).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers().get("l5d-retryable").unwrap(), "true");
}

#[tokio::test]
async fn refused_endpoint_is_skipped_for_bodiless_requests() {
    let a = Backend::start("a").await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let binder = Arc::new(TestBinder::new("/svc/d=>/#/test/d"));
    let _d = binder.name("d", &[(dead, 1.0), (a.addr, 1.0)]);
    let p = start_proxy(http_params(), binder).await;
    for _ in 0..10 {
        let (r, body) = get(p.addr, "d", "/", &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(body, "a");
    }
}

#[tokio::test]
async fn identifiers() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/users=>{i};/svc/web/v2=>{i};/svc/fixed=>{i};/svc/1.1/GET/web=>{i}",
        i = a.inet()
    )));

    // io.l5d.path with consume: the backend sees the rest of the path.
    let mut params = http_params();
    params.identifiers = vec![Identifier::Path {
        segments: 1,
        consume: true,
    }];
    let p = start_proxy(params, binder.clone()).await;
    let (r, _) = get(p.addr, "whatever", "/users/42?x=1", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(a.last().uri, "/42?x=1");
    assert_eq!(
        a.last().headers.get("l5d-dst-service").unwrap(),
        "/svc/users"
    );

    // io.l5d.header.token by a header of the caller's own, in any case:
    // read from the header lines as sent (our HTTP/1.1 server keeps them).
    let mut params = http_params();
    params.identifiers = vec![Identifier::HeaderToken {
        header: "x-Service".into(),
    }];
    let p = start_proxy(params, binder.clone()).await;
    let (r, _) = get(p.addr, "x", "/p", &[("X-SERVICE", "users")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        a.last().headers.get("l5d-dst-service").unwrap(),
        "/svc/users"
    );
    assert_eq!(a.last().headers.get("x-service").unwrap(), "users");

    // io.l5d.header (l5d-name), falling back to io.l5d.static.
    let mut params = http_params();
    params.identifiers = vec![
        Identifier::Header {
            header: "l5d-name".into(),
        },
        Identifier::Static {
            path: "/fixed".parse().unwrap(),
        },
    ];
    let p = start_proxy(params, binder.clone()).await;
    let (r, _) = get(p.addr, "x", "/p", &[("l5d-name", "/web/v2")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        a.last().headers.get("l5d-dst-service").unwrap(),
        "/svc/web/v2"
    );
    let (r, _) = get(p.addr, "x", "/p", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        a.last().headers.get("l5d-dst-service").unwrap(),
        "/svc/fixed"
    );
    assert_eq!(a.last().uri, "/p");

    // io.l5d.methodAndHost: host lower-cased.
    let mut params = http_params();
    params.identifiers = vec![Identifier::MethodAndHost {
        http_uri_in_dst: false,
    }];
    let p = start_proxy(params, binder.clone()).await;
    let (r, _) = get(p.addr, "WEB", "/p", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        a.last().headers.get("l5d-dst-service").unwrap(),
        "/svc/1.1/GET/web"
    );
    assert_eq!(
        a.last().headers.get("host").unwrap(),
        "WEB",
        "host kept as sent"
    );

    // Nothing identifies: 400 naming each identifier's reason.
    let mut params = http_params();
    params.identifiers = vec![
        Identifier::Header {
            header: "l5d-name".into(),
        },
        Identifier::Path {
            segments: 2,
            consume: false,
        },
    ];
    let p = start_proxy(params, binder).await;
    let (r, _) = get(p.addr, "x", "/one", &[]).await;
    assert_eq!(r.status(), 400);
    let err = l5d_err(&r);
    assert!(
        err.contains("io.l5d.header") && err.contains("io.l5d.path"),
        "{err}"
    );
}

#[tokio::test]
async fn hop_by_hop_removed_and_linkerd_headers_added() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}/rest", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let (r, _) = get(
        p.addr,
        "a",
        "/",
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("x-public", "ok"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers, deflate"),
            ("l5d-reqid", "given"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("connection").is_none()
            || r.headers().get("connection").unwrap() != "keep-alive, x-private"
    );
    assert!(
        r.headers()
            .get_all("via")
            .iter()
            .any(|v| v == "1.1 switchyard")
    );
    let seen = a.last();
    let h = &seen.headers;
    assert!(h.get("x-private").is_none());
    assert!(h.get("proxy-authorization").is_none());
    assert_eq!(h.get("x-public").unwrap(), "ok");
    assert_eq!(h.get("te").unwrap(), "trailers");
    assert_eq!(h.get("via").unwrap(), "1.1 switchyard");
    assert_eq!(h.get("l5d-dst-service").unwrap(), "/svc/a");
    assert_eq!(h.get("l5d-dst-client").unwrap(), a.inet().as_str());
    assert_eq!(h.get("l5d-dst-residual").unwrap(), "/rest");
    assert_eq!(h.get("l5d-reqid").unwrap(), "given");
    assert_eq!(h.get("host").unwrap(), "a");

    // A request with no via or l5d- header of its own (the proxy's headers
    // go out as a list after the caller's, not through the map): the same
    // headers, each once.
    let (_, _) = get(p.addr, "a", "/", &[("x-public", "ok")]).await;
    let seen = a.last();
    let h = &seen.headers;
    let one = |name: &str| {
        let all: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        all[0].to_str().unwrap().to_string()
    };
    assert_eq!(one("via"), "1.1 switchyard");
    assert_eq!(one("l5d-dst-service"), "/svc/a");
    assert_eq!(one("l5d-dst-client"), a.inet().as_str());
    assert_eq!(one("l5d-dst-residual"), "/rest");
    let id = one("l5d-reqid");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(one("x-public"), "ok");
    assert_eq!(one("host"), "a");

    // Ones a caller forged are replaced, not sent twice.
    let forged = [
        ("l5d-dst-service", "/svc/forged"),
        ("l5d-dst-client", "/forged"),
        ("l5d-dst-residual", "/forged"),
    ];
    let (_, _) = get(p.addr, "a", "/", &forged).await;
    let seen = a.last();
    let h = &seen.headers;
    for (name, want) in [
        ("l5d-dst-service", "/svc/a".to_string()),
        ("l5d-dst-client", a.inet()),
        ("l5d-dst-residual", "/rest".to_string()),
    ] {
        let all: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(all, [want.as_str()], "{name}");
    }
}

#[tokio::test]
async fn proxy_loop_is_refused() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let mut params = http_params();
    params.max_call_depth = 2;
    let p = start_proxy(params, binder).await;
    let (r, _) = get(p.addr, "a", "/", &[("via", "1.1 x, 1.1 y")]).await;
    assert_eq!(r.status(), 200);
    let (r, _) = get(p.addr, "a", "/", &[("via", "1.1 x, 1.1 y, 1.1 z")]).await;
    assert_eq!(r.status(), 400);
    assert!(l5d_err(&r).contains("proxy loops"));
}

#[tokio::test]
async fn clear_context_drops_inbound_dtabs() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/a=>{};/svc/b=>{}",
        a.inet(),
        b.inet()
    )));
    let p = start_proxy_with(http_params(), binder, |s| s.clear_context = true).await;
    let (_, body) = get(
        p.addr,
        "a",
        "/",
        &[("l5d-dtab", "/svc/a=>/svc/b"), ("l5d-ctx-trace", "abc")],
    )
    .await;
    assert_eq!(body, "a");
    assert!(a.last().headers.get("l5d-ctx-trace").is_none());
    assert!(a.last().headers.get("l5d-ctx-dtab").is_none());
}

#[tokio::test]
async fn max_concurrent_requests_sheds_with_503() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy_with(http_params(), binder, |s| {
        s.max_concurrent_requests = Some(1)
    })
    .await;
    let addr = p.addr;
    let slow = tokio::spawn(async move { get(addr, "a", "/slow", &[]).await });
    a.wait_for_requests(1).await;
    let (r, _) = get(p.addr, "a", "/", &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("l5d-retryable").unwrap(), "true");
    let (r, _) = slow.await.unwrap();
    assert_eq!(r.status(), 200);
    let (r, _) = get(p.addr, "a", "/", &[]).await;
    assert_eq!(
        r.status(),
        200,
        "the slot is released once the response is done"
    );
}

#[tokio::test]
async fn h2c_grpc_call_keeps_trailers() {
    let a = Backend::start("grpc").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/pkg.Greeter=>{}", a.inet())));
    let mut params = RouterParams::new(Protocol::H2);
    params.identifiers = vec![Identifier::HeaderPath {
        header: ":path".into(),
        segments: None,
    }];
    let p = start_proxy(params, binder).await;
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{}/pkg.Greeter/SayHello", p.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full("\0\0\0\0\0"))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(
        collected.to_bytes(),
        bytes::Bytes::from("grpc/pkg.Greeter/SayHello")
    );
    let seen = a.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.headers.get("te").unwrap(), "trailers");
    assert_eq!(seen.headers.get("l5d-dst-residual").unwrap(), "/SayHello");
    assert_eq!(
        seen.uri,
        format!("http://{}/pkg.Greeter/SayHello", p.addr),
        ":authority is forwarded as sent"
    );
}

#[tokio::test]
async fn http_router_accepts_h2c_prior_knowledge() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a:1=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let req = Request::builder()
        .uri(format!("http://{}/", p.addr))
        .header("host", "a:1")
        .body(empty())
        .unwrap();
    let (r, body) = send(&h2_client(), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, "a");
    assert_eq!(a.last().version, http::Version::HTTP_11);
}

fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    const MB: usize = 1024 * 1024;
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let before = rss_kb();

    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{}/count", p.addr))
        .header("host", "a")
        .body(generated(200 * MB))
        .unwrap();
    let (r, body) = send(&h1_client(), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, (200 * MB).to_string());

    let req = Request::builder()
        .uri(format!("http://{}/big/{}", p.addr, 100 * MB))
        .header("host", "a")
        .body(empty())
        .unwrap();
    let resp = h1_client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut n = 0usize;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(n, 100 * MB);

    if let (Some(b), Some(a)) = (before, rss_kb()) {
        let grown_mb = a.saturating_sub(b) / 1024;
        assert!(
            grown_mb < 64,
            "RSS grew by {grown_mb} MB: bodies were buffered"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight() {
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let addr = p.addr;
    let slow = tokio::spawn(async move { get(addr, "a", "/slow", &[]).await });
    a.wait_for_requests(1).await;
    p.shutdown.trigger();
    let (r, body) = slow.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body, "a");
    tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

async fn admin_get(admin: std::net::SocketAddr, path: &str) -> (http::StatusCode, String) {
    let req = Request::builder()
        .uri(format!("http://{admin}{path}"))
        .body(empty())
        .unwrap();
    let (r, body) = send(&h1_client(), req).await;
    (r.status(), body)
}

#[tokio::test]
async fn admin_endpoints_and_shutdown() {
    use switchyard::admin::{AdminState, serve};
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let p = start_proxy(http_params(), binder).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let admin_task = tokio::spawn(serve(
        listener,
        AdminState {
            routers: vec![p.router.clone()],
            config: serde_json::json!({"routers": [{"protocol": "http"}]}),
            shutdown: p.shutdown.clone(),
            dtab_files: Default::default(),
        },
    ));
    let (r, _) = get(p.addr, "a", "/", &[]).await;
    assert_eq!(r.status(), 200);

    assert_eq!(admin_get(admin, "/admin/ping").await.1, "pong");
    let (_, cfg) = admin_get(admin, "/config.json").await;
    assert!(cfg.contains("\"protocol\": \"http\""), "{cfg}");

    let (_, cs) = admin_get(admin, "/client_state.json").await;
    let cs: serde_json::Value = serde_json::from_str(&cs).unwrap();
    let client = &cs["http"][a.inet().as_str()];
    assert_eq!(client["state"], "bound", "{cs}");
    assert_eq!(client["endpoints"][0]["addr"], a.addr.to_string());
    assert_eq!(client["endpoints"][0]["outstanding"], 0);

    let (_, names) = admin_get(admin, "/bound-names.json").await;
    assert!(names.contains("/svc/a"), "{names}");

    let (s, d) = admin_get(admin, "/delegator.json?router=http&path=%2Fsvc%2Fa").await;
    assert_eq!(s, 200, "{d}");
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["bound"]["type"], "leaf", "{d}");
    assert_eq!(d["bound"]["bound"]["id"], a.inet());
    let (s, d) = admin_get(
        admin,
        "/delegator.json?router=http&path=/svc/a&dtab=/svc/a=%3E!",
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert!(d.contains("\"fail\""), "{d}");
    let (s, d) = admin_get(admin, "/delegator.json?router=http&path=/svc/a&dtab=oops").await;
    assert_eq!(s, 400);
    assert!(d.contains("dtab"), "{d}");

    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{admin}/admin/shutdown"))
        .body(empty())
        .unwrap();
    let (r, _) = send(&h1_client(), req).await;
    assert_eq!(r.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .expect("proxy stops")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), admin_task)
        .await
        .expect("admin stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn naming_interpreter_as_binder_follows_dtab_changes() {
    use switchyard::naming::Interpreter;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (dtab_tx, dtab_rx) =
        tokio::sync::watch::channel(format!("/svc/x=>{}", a.inet()).parse().unwrap());
    let interpreter = Interpreter::new(vec![], dtab_rx);
    let p = start_proxy_with_binder(http_params(), Arc::new(interpreter)).await;
    let (r, body) = get(p.addr, "x", "/", &[]).await;
    assert_eq!(r.status(), 200, "{body}");
    assert_eq!(body, "a");
    let (r, body) = get(
        p.addr,
        "x",
        "/",
        &[("l5d-dtab", &format!("/svc/x=>{}", b.inet()))],
    )
    .await;
    assert_eq!(r.status(), 200, "{body}");
    assert_eq!(body, "b");

    // A new base dtab reaches the cached binding without a restart.
    dtab_tx.send_replace(format!("/svc/x=>{}", b.inet()).parse().unwrap());
    let mut got = String::new();
    for _ in 0..100 {
        got = get(p.addr, "x", "/", &[]).await.1;
        if got == "b" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, "b");
    let (r, _) = get(p.addr, "nope", "/", &[]).await;
    assert_eq!(r.status(), 502);
    assert!(
        l5d_err(&r).contains(&format!("Dtab.base=[/svc/x=>{}]", b.inet())),
        "{}",
        l5d_err(&r)
    );
}

#[tokio::test]
async fn run_serves_routers_and_admin_until_admin_shutdown() {
    use switchyard::admin::AdminState;
    use switchyard::proxy::{RouterServers, Shutdown, run};
    use switchyard::routing::{Router, ServerParams};
    let a = Backend::start("a").await;
    let binder = Arc::new(TestBinder::new(&format!("/svc/a=>{}", a.inet())));
    let router = Router::new(http_params(), binder);
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2, admin) = (
        l1.local_addr().unwrap(),
        l2.local_addr().unwrap(),
        la.local_addr().unwrap(),
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(run(
        vec![RouterServers {
            router: router.clone(),
            servers: vec![(l1, ServerParams::new(p1)), (l2, ServerParams::new(p2))],
        }],
        Some((
            la,
            AdminState {
                routers: vec![router],
                config: serde_json::Value::Null,
                shutdown: shutdown.clone(),
                dtab_files: Default::default(),
            },
        )),
        shutdown,
        Duration::from_secs(2),
    ));
    assert_eq!(get(p1, "a", "/", &[]).await.1, "a");
    assert_eq!(get(p2, "a", "/", &[]).await.1, "a");
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{admin}/admin/shutdown"))
        .body(empty())
        .unwrap();
    assert_eq!(send(&h1_client(), req).await.0.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
}

struct Counting {
    inner: TestBinder,
    binds: std::sync::atomic::AtomicUsize,
}

impl switchyard::routing::Binder for Counting {
    fn bind(
        &self,
        local: &switchyard::dtab::Dtab,
        path: &switchyard::dtab::Path,
    ) -> tokio::sync::watch::Receiver<
        switchyard::naming::Activity<switchyard::dtab::NameTree<switchyard::naming::Bound>>,
    > {
        self.binds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.bind(local, path)
    }
}

#[tokio::test]
async fn bindings_are_cached_and_endpoint_changes_need_no_rebind() {
    use switchyard::naming::{Addr, Endpoint};
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let inner = TestBinder::new("/svc/s=>/#/test/s");
    let s_tx = inner.name("s", &[(a.addr, 1.0)]);
    let binder = Arc::new(Counting {
        inner,
        binds: Default::default(),
    });
    let p = start_proxy_with_binder(http_params(), binder.clone()).await;
    for _ in 0..20 {
        assert_eq!(get(p.addr, "s", "/", &[]).await.1, "a");
    }
    assert_eq!(binder.binds.load(std::sync::atomic::Ordering::SeqCst), 1);

    s_tx.send_replace(Addr::Bound(
        vec![Endpoint {
            addr: b.addr,
            weight: 1.0,
        }]
        .into(),
    ));
    let mut got = String::new();
    for _ in 0..100 {
        got = get(p.addr, "s", "/", &[]).await.1;
        if got == "b" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, "b");
    assert_eq!(binder.binds.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Each distinct local dtab is its own binding; repeating one reuses it.
    for _ in 0..3 {
        get(p.addr, "s", "/", &[("l5d-dtab", "/x=>/y")]).await;
    }
    assert_eq!(binder.binds.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn h2_routers_chain_by_authority() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let g = Backend::start("greeter").await;
    let p2 = start_proxy(
        RouterParams::new(Protocol::H2),
        Arc::new(TestBinder::new(&format!(
            "/svc/greeter.local=>{}",
            g.inet()
        ))),
    )
    .await;
    let p1 = start_proxy(
        RouterParams::new(Protocol::H2),
        Arc::new(TestBinder::new(&format!(
            "/svc=>/$/inet/127.0.0.1/{}",
            p2.addr.port()
        ))),
    )
    .await;
    // Talk to the first proxy with an :authority that is not its address.
    let stream = tokio::net::TcpStream::connect(p1.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, TestBody>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri("http://greeter.local/pkg.Greeter/SayHello")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(full("\0\0\0\0\0"))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .unwrap(),
        "0"
    );
    let seen = g.last();
    assert_eq!(seen.uri, "http://greeter.local/pkg.Greeter/SayHello");
    assert_eq!(seen.headers.get_all("via").iter().count(), 2);
    assert_eq!(
        seen.headers.get("l5d-dst-service").unwrap(),
        "/svc/greeter.local"
    );
}

#[tokio::test]
async fn upstream_reset_is_502_and_attempt_timeout_503() {
    // A server that accepts and hangs up at once.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    let rude_task = tokio::spawn(async move {
        for _ in 0..10 {
            let Ok((s, _)) = rude.accept().await else {
                return;
            };
            drop(s);
        }
    });
    let slow = Backend::start("slow").await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/rude=>/$/inet/127.0.0.1/{};/svc/slow=>{}",
        rude_addr.port(),
        slow.inet()
    )));
    let mut params = http_params();
    params.request_timeout = Some(Duration::from_millis(100));
    let p = start_proxy(params, binder).await;

    let (r, body) = get(p.addr, "rude", "/", &[]).await;
    assert_eq!(r.status(), 502, "{body}");
    assert!(
        l5d_err(&r).contains(&rude_addr.to_string()),
        "{}",
        l5d_err(&r)
    );

    // A timeout answers 503, as in Linkerd 1; l5d-err names the name, the
    // endpoint and the timeout.
    let (r, body) = get(p.addr, "slow", "/slow", &[]).await;
    assert_eq!(r.status(), 503, "{body}");
    let err = l5d_err(&r);
    assert!(err.contains("did not respond to /svc/slow"), "{err}");
    assert!(err.contains(&slow.addr.to_string()), "{err}");
    assert!(err.contains("within 100ms"), "{err}");
    rude_task.abort();
}

/// A raw HTTP/1.1 backend on 127.0.0.1:0 (no HTTP library): it answers by
/// the request's path, in the framings a real backend may use, so the
/// proxy's own HTTP/1.1 client meets them as sent.
async fn raw_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head (the GETs and HEADs here carry no body).
                    let end = loop {
                        if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break e + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let answer: &[u8] = match path.as_str() {
                        "/chunked" => {
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                              6;ext=1\r\nchunks\r\n5\r\n, two\r\n0\r\nx-sum: 11\r\n\r\n"
                        }
                        "/interim" => {
                            b"HTTP/1.1 100 Continue\r\n\r\n\
                              HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ninterim"
                        }
                        "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                        "/eof" => b"HTTP/1.0 200 OK\r\n\r\nframed by the close",
                        "/early" => {
                            // Answers before reading the upload, then keeps
                            // the connection open without reading.
                            let _ = s
                                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
                                .await;
                            tokio::time::sleep(Duration::from_secs(10)).await;
                            return;
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                    };
                    if s.write_all(answer).await.is_err() || path == "/eof" {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn backend_framings_reach_the_client_as_sent() {
    let backend = raw_backend().await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/raw=>/$/inet/127.0.0.1/{}",
        backend.port()
    )));
    let p = start_proxy(http_params(), binder).await;
    for (path, want) in [
        ("/chunked", "chunks, two"),
        ("/interim", "interim"),
        ("/eof", "framed by the close"),
        ("/chunked", "chunks, two"),
    ] {
        let (r, body) = get(p.addr, "raw", path, &[]).await;
        assert_eq!((r.status().as_u16(), body.as_str()), (200, want), "{path}");
    }
    let req = Request::builder()
        .method("HEAD")
        .uri(format!("http://{}/head", p.addr))
        .header("host", "raw")
        .body(empty())
        .unwrap();
    let (r, body) = send(&h1_client(), req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(body, "");

    // 64 MB, far more than the socket buffers hold: the backend's early
    // answer comes back, though the upload never finished.
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{}/early", p.addr))
        .header("host", "raw")
        .body(generated(64 * 1024 * 1024))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), h1_client().request(req))
        .await
        .expect("the early answer in time")
        .expect("a response");
    assert_eq!(resp.status(), 413);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "too big!");
}
