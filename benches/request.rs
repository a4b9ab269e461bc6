//! The per-request path, in process: identify → cached binding → endpoint
//! choice, and one whole HTTP/1.1 request through the proxy to a hyper
//! backend on 127.0.0.1, with allocations counted.
//!
//! `cargo bench --bench request -- --warm-up-time 1 --measurement-time 3`
//! (`-- clock` for the two clocks alone)
//!
//! Before measuring, the bench counts allocations (a counting global
//! allocator around the system one): the cached route must make none (it
//! panics otherwise), and the whole forward path's count per request is
//! printed, with the client's and backend's own share measured without the
//! proxy and taken out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard::dtab::{Dtab, NameTree, Path};
use switchyard::naming::{Activity, Addr, Bound, Endpoint};
use switchyard::proxy::{Shutdown, serve};
use switchyard::routing::{Binder, Protocol, Router, RouterParams, ServerParams};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The system allocator, counting allocations (reallocations included).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(l) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, size) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Binds every name to one endpoint, as a namer that already answered.
struct OneEndpoint {
    addr: SocketAddr,
    /// The senders stay alive, as a namer's do.
    keep: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Binder for OneEndpoint {
    fn bind(&self, _: &Dtab, path: &Path) -> watch::Receiver<Activity<NameTree<Bound>>> {
        let (atx, addr) = watch::channel(Addr::Bound(
            vec![Endpoint {
                addr: self.addr,
                weight: 1.0,
            }]
            .into(),
        ));
        let id: Path = format!("/$/inet/{}/{}", self.addr.ip(), self.addr.port())
            .parse()
            .unwrap_or_else(|_| path.clone());
        let (ttx, rx) = watch::channel(Activity::Ok(NameTree::Leaf(Bound {
            id,
            residual: Path::empty(),
            addr,
        })));
        if let Ok(mut keep) = self.keep.lock() {
            keep.push(Box::new(atx));
            keep.push(Box::new(ttx));
        }
        rx
    }
}

fn router(addr: SocketAddr) -> Router {
    Router::new(
        RouterParams::new(Protocol::Http),
        Arc::new(OneEndpoint {
            addr,
            keep: Mutex::default(),
        }),
    )
}

/// A request head, as the forwarder gets it.
fn request(host: &str) -> http::request::Parts {
    Request::builder()
        .uri("/")
        .header("host", host)
        .header("user-agent", "bench")
        .body(())
        .unwrap_or_default()
        .into_parts()
        .0
}

/// identify → cached binding → endpoint choice, as the forwarder does.
fn route_once(router: &Router, local: &Dtab, req: &http::request::Parts) -> SocketAddr {
    let Ok((dst, _)) = router.destination_of(req, None, local) else {
        panic!("not identified")
    };
    let Some(Ok(route)) = router.route_to(&dst).now_or_never() else {
        panic!("a cached route must be ready at once")
    };
    match route.endpoints.pick(&[]) {
        Some(ep) => ep.addr,
        None => panic!("no endpoint"),
    }
}

/// Allocations per call of `f`, over `n` calls after `n` to warm up.
fn allocs_per(n: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..n {
        f();
    }
    let before = allocs();
    for _ in 0..n {
        f();
    }
    (allocs() - before) as f64 / n as f64
}

async fn backend() -> SocketAddr {
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        panic!("bind")
    };
    let Ok(addr) = listener.local_addr() else {
        panic!("local addr")
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(backend: SocketAddr, shutdown: &Shutdown) -> SocketAddr {
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        panic!("bind")
    };
    let Ok(addr) = listener.local_addr() else {
        panic!("local addr")
    };
    let server = ServerParams::new(addr);
    let shutdown = shutdown.clone();
    tokio::spawn(serve(
        listener,
        router(backend),
        server,
        shutdown,
        Duration::from_secs(1),
    ));
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn client(to: SocketAddr) -> Sender {
    let Ok(stream) = tokio::net::TcpStream::connect(to).await else {
        panic!("connect")
    };
    let _ = stream.set_nodelay(true);
    let Ok((send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        panic!("handshake")
    };
    tokio::spawn(conn);
    send
}

async fn get(send: &mut Sender) {
    let req = Request::builder()
        .uri("/")
        .header("host", "web")
        .header("user-agent", "bench")
        .body(Empty::new())
        .unwrap_or_default();
    let Ok(()) = send.ready().await else {
        panic!("connection closed")
    };
    let Ok(resp) = send.send_request(req).await else {
        panic!("request failed")
    };
    assert_eq!(resp.status(), 200);
    let Ok(_) = resp.into_body().collect().await else {
        panic!("body failed")
    };
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        panic!("runtime")
    };
    let _enter = rt.enter();
    switchyard::telemetry::metrics::install("");
    let local = Dtab::empty();

    // identify → cached binding → endpoint choice.
    let r = router(([127, 0, 0, 1], 9).into());
    let one = request("web");
    let per = allocs_per(1000, || {
        black_box(route_once(&r, &local, &one));
    });
    println!("allocations per cached route (identify → binding → endpoint): {per}");
    assert!(
        per == 0.0,
        "a cached route must not allocate: {per} per request"
    );
    c.bench_function("route/cached", |b| {
        b.iter(|| route_once(&r, &local, black_box(&one)))
    });

    // The same over 1,000 names in rotation (the default binding cache
    // holds 1,000), on a router of their own.
    let r = router(([127, 0, 0, 1], 9).into());
    let names: Vec<http::request::Parts> =
        (0..1000).map(|i| request(&format!("web-{i}"))).collect();
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % names.len();
        route_once(&r, &local, &names[i])
    };
    let per = allocs_per(names.len() as u64, || {
        black_box(next());
    });
    println!("allocations per cached route, 1,000 names in rotation: {per}");
    assert!(
        per == 0.0,
        "a cached route must not allocate: {per} per request"
    );
    c.bench_function("route/cached_1000_names", |b| b.iter(&mut next));

    // One whole request: client → proxy → backend and back, on one thread.
    let shutdown = Shutdown::new();
    let (mut direct, mut proxied) = rt.block_on(async {
        let backend = backend().await;
        let proxy = proxy(backend, &shutdown).await;
        (client(backend).await, client(proxy).await)
    });
    let without = allocs_per(1000, || rt.block_on(get(&mut direct)));
    let with = allocs_per(1000, || rt.block_on(get(&mut proxied)));
    println!(
        "allocations per request: {with:.1} through the proxy, {without:.1} client → backend \
         directly, so {:.1} in the proxy",
        with - without
    );
    c.bench_function("forward/http1_direct", |b| {
        b.iter(|| rt.block_on(get(&mut direct)))
    });
    c.bench_function("forward/http1_proxied", |b| {
        b.iter(|| rt.block_on(get(&mut proxied)))
    });
    shutdown.trigger();
}

/// The request path's two clocks (`switchyard::clock`): a precise reading
/// (latencies) against a coarse one (bookkeeping).
fn clocks(c: &mut Criterion) {
    c.bench_function("clock/precise", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    c.bench_function("clock/tsc", |b| {
        b.iter(|| black_box(quanta::Instant::now()))
    });
    c.bench_function("clock/coarse", |b| {
        b.iter(|| black_box(switchyard::clock::coarse()))
    });
}

criterion_group!(benches, bench, clocks);
criterion_main!(benches);
