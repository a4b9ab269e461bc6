//! Shared fixtures for the proxy tests: an in-memory binder, hyper
//! backends on 127.0.0.1:0, a proxy on 127.0.0.1:0, and clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use switchyard::dtab::{Dtab, NameTree, Path, Weighted};
use switchyard::naming::{Activity, Addr, Bound, Endpoint};
use switchyard::proxy::{Shutdown, serve};
use switchyard::routing::{Binder, Router, RouterParams, ServerParams};

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

// === binder ===

/// Binds with `base ++ local` by repeated `Dtab::lookup`, understanding
/// `/$/inet/<ip>/<port>`, `/#/test/<name>` (endpoint sets registered with
/// [`TestBinder::name`]) and `/#/pending` (never binds).
#[derive(Default)]
pub struct TestBinder {
    base: Dtab,
    names: Mutex<HashMap<String, watch::Receiver<Addr>>>,
    keep: Mutex<Vec<watch::Sender<Activity<NameTree<Bound>>>>>,
}

impl TestBinder {
    pub fn new(base: &str) -> TestBinder {
        TestBinder {
            base: base.parse().expect("test dtab"),
            ..TestBinder::default()
        }
    }

    /// Register `/#/test/<name>` with an endpoint set; returns its sender.
    pub fn name(&self, name: &str, addrs: &[(SocketAddr, f64)]) -> watch::Sender<Addr> {
        let eps: Vec<Endpoint> = addrs
            .iter()
            .map(|(a, w)| Endpoint {
                addr: *a,
                weight: *w,
            })
            .collect();
        let (tx, rx) = watch::channel(Addr::Bound(eps.into()));
        self.names.lock().unwrap().insert(name.to_string(), rx);
        tx
    }

    fn bind_path(&self, dtab: &Dtab, path: &Path, depth: usize) -> Activity<NameTree<Bound>> {
        if depth > 50 {
            return Activity::Failed("max depth".into());
        }
        let s: Vec<String> = path.elems().iter().map(|l| l.to_string()).collect();
        let strs: Vec<&str> = s.iter().map(|x| x.as_str()).collect();
        match strs.as_slice() {
            ["$", "inet", ip, port, ..] => {
                let addr: SocketAddr = format!("{ip}:{port}").parse().expect("inet addr");
                let (_tx, rx) =
                    watch::channel(Addr::Bound(vec![Endpoint { addr, weight: 1.0 }].into()));
                Activity::Ok(NameTree::Leaf(Bound {
                    id: path.take(4),
                    residual: path.drop(4),
                    addr: rx,
                }))
            }
            ["#", "pending", ..] => Activity::Pending,
            ["#", "test", name, ..] => match self.names.lock().unwrap().get(*name) {
                Some(rx) => Activity::Ok(NameTree::Leaf(Bound {
                    id: path.take(3),
                    residual: path.drop(3),
                    addr: rx.clone(),
                })),
                None => Activity::Ok(NameTree::Neg),
            },
            _ => self.eval(dtab, &dtab.lookup(path), depth + 1),
        }
    }

    fn eval(&self, dtab: &Dtab, t: &NameTree<Path>, depth: usize) -> Activity<NameTree<Bound>> {
        match t {
            NameTree::Leaf(p) => self.bind_path(dtab, p, depth),
            NameTree::Neg => Activity::Ok(NameTree::Neg),
            NameTree::Fail => Activity::Ok(NameTree::Fail),
            NameTree::Empty => Activity::Ok(NameTree::Empty),
            NameTree::Alt(ts) => {
                for t in ts {
                    match self.eval(dtab, t, depth) {
                        Activity::Ok(NameTree::Neg) => continue,
                        other => return other,
                    }
                }
                Activity::Ok(NameTree::Neg)
            }
            NameTree::Union(ws) => {
                let mut out = Vec::new();
                for w in ws {
                    match self.eval(dtab, &w.tree, depth) {
                        Activity::Ok(t) => out.push(Weighted::new(w.weight, t)),
                        other => return other,
                    }
                }
                Activity::Ok(NameTree::Union(out))
            }
        }
    }
}

impl Binder for TestBinder {
    fn bind(&self, local: &Dtab, path: &Path) -> watch::Receiver<Activity<NameTree<Bound>>> {
        let dtab = self.base.concat(local);
        let act = self.bind_path(&dtab, path, 0);
        let (tx, rx) = watch::channel(act);
        self.keep.lock().unwrap().push(tx);
        rx
    }

    fn base_dtab(&self) -> Dtab {
        self.base.clone()
    }
}

pub mod backend;
pub mod process;

// === backends ===

/// What a backend saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// A hyper server on 127.0.0.1:0 (HTTP/1 and h2c) that answers with its
/// name. Paths: `/slow` waits 500 ms; `/count` counts the request body and
/// answers the count; `/big/<n>` streams n bytes back; `/grpc...` (any path
/// with a `.` in its first segment) answers a body and `grpc-status: 0`
/// trailers.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (n, s) = (name.to_string(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, s) = (n.clone(), s.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (n, s) = (n.clone(), s.clone());
                    async move { Ok::<_, Infallible>(backend_answer(&n, &s, req).await) }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            seen,
        }
    }

    pub fn inet(&self) -> String {
        format!("/$/inet/{}/{}", self.addr.ip(), self.addr.port())
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Wait (at most 10 s) until this backend has received `n` requests.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..1000 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} saw {} requests, expected {n}", self.name, self.count());
    }
}

async fn backend_answer(
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    req: Request<Incoming>,
) -> Response<TestBody> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if path == "/count" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Response::new(full(format!("error {e}"))),
            }
        }
        return Response::new(full(n.to_string()));
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let n: usize = n.parse().unwrap_or(0);
        return Response::new(generated(n));
    }
    if path.split('/').nth(1).is_some_and(|s| s.contains('.')) {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "ok".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = vec![
            Ok(Frame::data(Bytes::from(format!("{name}{path}")))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut resp = Response::new(BodyExt::boxed(body));
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        return resp;
    }
    let mut resp = Response::new(full(name.to_string()));
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp.headers_mut()
        .insert("connection", "keep-alive".parse().unwrap());
    resp
}

/// A body of `n` bytes made in 64 KiB chunks as it is read, never held whole.
pub fn generated(n: usize) -> TestBody {
    BodyExt::boxed(Generated {
        left: n,
        chunk: Bytes::from(vec![b'x'; 64 * 1024]),
    })
}

struct Generated {
    left: usize,
    chunk: Bytes,
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len());
        self.left -= take;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

// === proxy ===

pub struct Proxy {
    pub addr: SocketAddr,
    pub router: Router,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start_proxy(params: RouterParams, binder: Arc<TestBinder>) -> Proxy {
    start_proxy_with(params, binder, |_| {}).await
}

pub async fn start_proxy_with_binder(params: RouterParams, binder: Arc<dyn Binder>) -> Proxy {
    start_proxy_with(params, binder, |_| {}).await
}

pub async fn start_proxy_with(
    params: RouterParams,
    binder: Arc<dyn Binder>,
    tweak: impl FnOnce(&mut ServerParams),
) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = ServerParams::new(addr);
    tweak(&mut server);
    let router = Router::new(params, binder);
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(
        listener,
        router.clone(),
        server,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    Proxy {
        addr,
        router,
        shutdown,
        task,
    }
}

// === clients ===

pub fn h1_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `path` on the proxy with `Host: host` and extra headers.
pub async fn get(
    proxy: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response<()>, String) {
    let mut b = Request::builder()
        .uri(format!("http://{proxy}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(empty()).unwrap();
    send(&h1_client(), req).await
}

pub async fn send(
    client: &Client<HttpConnector, TestBody>,
    req: Request<TestBody>,
) -> (Response<()>, String) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Decode an `l5d-err` header.
pub fn l5d_err(resp: &Response<()>) -> String {
    let v = resp
        .headers()
        .get("l5d-err")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    percent_encoding::percent_decode_str(&v)
        .decode_utf8_lossy()
        .into_owned()
}
