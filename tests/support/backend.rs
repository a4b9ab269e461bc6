//! A test backend that fails on command: [`FailingBackend`].
//!
//! It listens on 127.0.0.1:0 (HTTP/1.1 and h2c), reads each request body to
//! the end (counting its bytes) and answers as its current [`Mode`] says;
//! the mode can be changed while it runs. It counts the requests it
//! received, and [`FailingBackend::exit`] stops it listening and drops its
//! connections, as a crashed process would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{TestBody, full};

/// How the backend answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// 200 with the backend's name.
    Ok,
    /// Every request gets this status.
    Status(u16),
    /// `percent` of the requests (spread evenly, never two in a row below
    /// 50%) get `status`, the others 200.
    Fraction { status: u16, percent: u32 },
    /// The next `n` requests get `status` (with `l5d-retryable: true` when
    /// `retryable`), then 200.
    FailNext {
        n: usize,
        status: u16,
        retryable: bool,
    },
    /// The next `n` requests have their connection closed with no answer.
    ResetNext(usize),
    /// Every connection is closed with no answer.
    Reset,
    /// Never answer (until the mode changes or the backend exits).
    Hang,
    /// Answer 200 after this long.
    Sleep(Duration),
    /// The next `n` requests are answered 200 after `delay`, then at once.
    SlowNext { n: usize, delay: Duration },
    /// gRPC: the next `n` calls end with `grpc-status: code` in trailers
    /// (after a message), then with `grpc-status: 0`.
    GrpcStatusNext { n: usize, code: u32 },
}

/// What one request looked like.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The headers.
    pub headers: HeaderMap,
    /// Body bytes read.
    pub body_len: usize,
}

struct State {
    name: String,
    mode: Mutex<Mode>,
    count: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

/// A backend whose failures the test controls.
pub struct FailingBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

/// Builds a [`FailingBackend`].
pub struct Builder {
    name: String,
    mode: Mode,
}

impl Builder {
    /// The name it answers with (default `backend`).
    pub fn name(mut self, name: &str) -> Builder {
        self.name = name.to_string();
        self
    }

    /// The starting mode (default [`Mode::Ok`]).
    pub fn mode(mut self, mode: Mode) -> Builder {
        self.mode = mode;
        self
    }

    /// Listen and serve.
    pub async fn start(self) -> FailingBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let state = Arc::new(State {
            name: self.name,
            mode: Mutex::new(self.mode),
            count: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let st = state.clone();
        let mut stop_accept = stopped.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop_accept.wait_for(|s| *s) => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { return };
                let st = st.clone();
                let mut stop_conn = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { answer(&st, req).await }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_conn.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        FailingBackend { addr, state, stop }
    }
}

/// An error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset on command")
    }
}

impl std::error::Error for Reset {}

async fn answer(st: &State, req: Request<Incoming>) -> Result<Response<TestBody>, Reset> {
    let i = st.count.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0usize;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => body_len += f.data_ref().map_or(0, Bytes::len),
            Err(_) => break,
        }
    }
    st.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        headers: parts.headers.clone(),
        body_len,
    });
    let mode = {
        let mut m = st.mode.lock().unwrap();
        let now = m.clone();
        match &mut *m {
            Mode::FailNext { n, .. }
            | Mode::ResetNext(n)
            | Mode::SlowNext { n, .. }
            | Mode::GrpcStatusNext { n, .. }
                if *n > 0 =>
            {
                *n -= 1
            }
            _ => {}
        }
        now
    };
    let status = |s: u16, retryable: bool| {
        let mut r = Response::new(full(format!("{} failed on command", st.name)));
        *r.status_mut() = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if retryable {
            r.headers_mut()
                .insert("l5d-retryable", "true".parse().unwrap());
        }
        Ok(r)
    };
    let ok = || Ok(Response::new(full(st.name.clone())));
    match mode {
        Mode::Ok => ok(),
        Mode::Status(s) => status(s, false),
        Mode::Fraction { status: s, percent } => {
            if (i as u64 * u64::from(percent)) % 100 < u64::from(percent) {
                status(s, false)
            } else {
                ok()
            }
        }
        Mode::FailNext {
            n,
            status: s,
            retryable,
        } if n > 0 => status(s, retryable),
        Mode::FailNext { .. } => ok(),
        Mode::ResetNext(n) if n > 0 => Err(Reset),
        Mode::ResetNext(_) => ok(),
        Mode::Reset => Err(Reset),
        Mode::Hang => {
            // Bounded: no test waits this long.
            tokio::time::sleep(Duration::from_secs(60)).await;
            ok()
        }
        Mode::Sleep(d) => {
            tokio::time::sleep(d).await;
            ok()
        }
        Mode::SlowNext { n, delay } => {
            if n > 0 {
                tokio::time::sleep(delay).await;
            }
            ok()
        }
        Mode::GrpcStatusNext { n, code } => {
            let code = if n > 0 { code } else { 0 };
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", code.to_string().parse().unwrap());
            let frames: Vec<
                Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
            > = vec![
                Ok(http_body::Frame::data(Bytes::from(format!(
                    "{}:{code}",
                    st.name
                )))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            Ok(r)
        }
    }
}

impl FailingBackend {
    /// A builder (name `backend`, mode [`Mode::Ok`]).
    pub fn builder() -> Builder {
        Builder {
            name: "backend".into(),
            mode: Mode::Ok,
        }
    }

    /// Start one in `mode`.
    pub async fn start(mode: Mode) -> FailingBackend {
        FailingBackend::builder().mode(mode).start().await
    }

    /// Change how it answers from now on.
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests received so far (counted on arrival).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The requests received whose bodies were read to the end.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Stop listening and drop every connection.
    pub fn exit(&self) {
        let _ = self.stop.send(true);
    }

    /// `/$/inet/127.0.0.1/<port>`.
    pub fn inet(&self) -> String {
        format!("/$/inet/{}/{}", self.addr.ip(), self.addr.port())
    }

    /// An io.l5d.fs service file line.
    pub fn line(&self) -> String {
        format!("{} {}\n", self.addr.ip(), self.addr.port())
    }

    /// Wait (at most 10 s) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..1000 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("backend saw {} requests, expected {n}", self.count());
    }
}

impl Drop for FailingBackend {
    fn drop(&mut self) {
        self.exit();
    }
}
