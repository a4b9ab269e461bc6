//! What a client sees on the wire from the proxy's plain-text HTTP/1.1
//! server: raw bytes written to a `TcpStream`, responses parsed here.
//!
//! They were written against hyper's server connection and pinned down
//! before Switchyard's own (src/proxy/h1.rs) replaced it; where the two
//! differ, the comments say so. Tests of behaviour the

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use switchyard::routing::{Protocol, RouterParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Every read waits at most this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn http_params() -> RouterParams {
    RouterParams::new(Protocol::Http)
}

// === a raw client ===

/// One response as it came off the wire.
#[derive(Debug)]
struct Resp {
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    status: u16,
    /// Names lower-cased, in order.
    headers: Vec<(String, String)>,
    /// Decoded: chunk framing removed.
    body: Vec<u8>,
    /// Framed by `transfer-encoding: chunked`.
    chunked: bool,
    /// Framed by the connection's close (no length, not chunked).
    close_delimited: bool,
    /// Chunked trailers, names lower-cased.
    trailers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection: the socket and what was read but not yet parsed.
struct Conn {
    read: OwnedReadHalf,
    /// Lent to a writer task by [`answer_to`].
    write: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        let (read, write) = stream.into_split();
        Conn {
            read,
            write: Some(write),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let write = self.write.as_mut().expect("the write half");
        write.write_all(bytes).await.expect("write");
    }

    /// Read once more into the buffer: the count read, 0 at EOF (a reset
    /// counts as EOF: the peer closed with our bytes unread).
    async fn read_more(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_TIMEOUT, self.read.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                n
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!(
                "nothing read in {READ_TIMEOUT:?}; unparsed: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Read until the buffer holds at least `n` bytes.
    async fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            if self.read_more().await == 0 {
                panic!(
                    "closed after {} of {n} bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Take one line (without its CRLF).
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return String::from_utf8(line).expect("a UTF-8 line");
            }
            if self.read_more().await == 0 {
                panic!(
                    "closed in the middle of a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Header lines up to the empty line.
    async fn fields(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return out;
            }
            let (n, v) = line.split_once(':').expect("a header line");
            out.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }

    /// One response (an interim 1xx too) to a request that was not HEAD.
    async fn response(&mut self) -> Resp {
        self.read_response(false).await
    }

    /// One response to a HEAD request: never a body.
    async fn head_response(&mut self) -> Resp {
        self.read_response(true).await
    }

    async fn read_response(&mut self, to_head: bool) -> Resp {
        let status_line = self.line().await;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = self.fields().await;
        let mut resp = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
            chunked: false,
            close_delimited: false,
            trailers: Vec::new(),
        };
        if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return resp;
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.is_some_and(|te| te.ends_with("chunked")) {
            resp.chunked = true;
            loop {
                let size_line = self.line().await;
                let size = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    resp.trailers = self.fields().await;
                    return resp;
                }
                self.fill(size + 2).await;
                resp.body.extend(self.buf.drain(..size));
                assert_eq!(self.buf.drain(..2).as_slice(), b"\r\n", "chunk end");
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("a content-length");
            self.fill(len).await;
            resp.body = self.buf.drain(..len).collect();
        } else {
            resp.close_delimited = true;
            while self.read_more().await > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Whether the proxy closes the connection (EOF or reset) within
    /// `within`, with no more bytes sent.
    async fn closes_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(within, self.read.read(&mut chunk)).await {
            Ok(Ok(0)) => true,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(chunk.get(..n).unwrap_or_default())
            ),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => false,
        }
    }

    async fn assert_closed(&mut self) {
        assert!(
            self.closes_within(READ_TIMEOUT).await,
            "the proxy did not close the connection"
        );
    }

    /// Open: nothing arrives and no close within a short while.
    async fn assert_open(&mut self) {
        assert!(
            !self.closes_within(Duration::from_millis(200)).await,
            "the proxy closed the connection"
        );
    }
}

fn get_req(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").into_bytes()
}

/// A proxy routing `/svc/<name>` to backends of those names.
async fn proxy_with(names: &[&str]) -> (Proxy, Vec<Backend>) {
    let mut backends = Vec::new();
    let mut dtab = Vec::new();
    for name in names {
        let b = Backend::start(name).await;
        dtab.push(format!("/svc/{name}=>{}", b.inet()));
        backends.push(b);
    }
    let binder = Arc::new(TestBinder::new(&dtab.join(";")));
    (start_proxy(http_params(), binder).await, backends)
}

/// `body` as chunks of at most `size` bytes, then the last chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// === the tests ===

#[tokio::test]
async fn keep_alive_serves_sequential_requests_on_one_connection() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    for i in 1..=3 {
        c.send(&get_req("a", &format!("/{i}"))).await;
        let r = c.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "request {i}");
        assert_eq!(r.version, "HTTP/1.1");
        assert_ne!(r.header("connection"), Some("close"));
    }
    assert_eq!(b[0].count(), 3);
    c.assert_open().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (p, _b) = proxy_with(&["a", "b", "c"]).await;
    let mut c = Conn::open(p.addr).await;
    let mut all = get_req("b", "/");
    all.extend(get_req("a", "/"));
    all.extend(get_req("c", "/"));
    c.send(&all).await;
    for want in ["b", "a", "c"] {
        let r = c.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, want));
    }
    c.assert_open().await;
}

#[tokio::test]
async fn http10_without_keep_alive_is_answered_then_closed() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    // `/count` answers "0" and sets no connection header of its own.
    c.send(b"GET /count HTTP/1.0\r\nhost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "0"));
    // The server's own version (RFC 9112 §2.3), as nginx does; the
    // framing is one an HTTP/1.0 client reads.
    assert_eq!(r.version, "HTTP/1.1");
    assert!(!r.chunked, "no chunked framing to an HTTP/1.0 client");
    assert_ne!(r.header("connection"), Some("keep-alive"));
    c.assert_closed().await;
}

#[tokio::test]
async fn http10_with_keep_alive_stays_open() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    for _ in 0..2 {
        c.send(b"GET /count HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n")
            .await;
        let r = c.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "0"));
        assert!(!r.chunked);
        // An HTTP/1.0 keep-alive request is answered with an explicit
        // `connection: keep-alive` (in the server's own version, HTTP/1.1).
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    assert_eq!(b[0].count(), 2);
    c.assert_open().await;
}

#[tokio::test]
async fn connection_close_is_answered_with_close_then_closed() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed().await;
}

#[tokio::test]
async fn request_bodies_reach_the_backend_whole() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    let post = |head_extra: &str| {
        format!("POST /count HTTP/1.1\r\nhost: a\r\n{head_extra}\r\n").into_bytes()
    };

    // By content-length.
    let mut req = post("content-length: 10\r\n");
    req.extend_from_slice(b"0123456789");
    c.send(&req).await;
    assert_eq!(c.response().await.text(), "10");

    // Chunked, a chunk extension, trailers.
    let mut req = post("transfer-encoding: chunked\r\n");
    req.extend_from_slice(b"5;ext=1\r\nhello\r\n3\r\nabc\r\n1\r\n!\r\n0\r\nx-sum: 9\r\n\r\n");
    c.send(&req).await;
    assert_eq!(c.response().await.text(), "9");

    // 1 MiB chunked, in 16 KiB chunks.
    let mib = vec![b'z'; 1024 * 1024];
    let mut req = post("transfer-encoding: chunked\r\n");
    req.extend(chunked(&mib, 16 * 1024));
    c.send(&req).await;
    assert_eq!(c.response().await.text(), "1048576");

    // 1 MiB by content-length.
    let mut req = post("content-length: 1048576\r\n");
    req.extend_from_slice(&mib);
    c.send(&req).await;
    assert_eq!(c.response().await.text(), "1048576");

    // Every body was consumed exactly: the next request parses.
    c.send(&get_req("a", "/")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_eq!(b[0].count(), 5);
}

#[tokio::test]
async fn expect_100_continue_gets_continue_before_the_body() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    tokio::time::timeout(Duration::from_secs(5), c.fill(want.len()))
        .await
        .expect("100 Continue within 5 s");
    assert_eq!(c.buf.drain(..want.len()).as_slice(), want);
    c.send(b"12345").await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "5"));
}

#[tokio::test]
async fn a_request_refused_before_its_body_gets_no_100_continue() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    // No route for `nope`: the answer comes before the body is read, so the
    // client is never asked for it; the body it never sent cannot be
    // skipped, so the connection closes after the answer.
    c.send(
        b"POST /count HTTP/1.1\r\nhost: nope\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 502, "a final answer, not 100 Continue");
    assert!(r.header("l5d-err").is_some());
    c.assert_closed().await;
}

/// The bad requests of [`bad_requests_get_4xx_and_close`], each with a
/// word its 400's body should hold.
fn bad_requests() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), "request"),
        (
            "invalid content-length",
            b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: abc\r\n\r\n".to_vec(),
            "content-length",
        ),
        (
            "header name with a space",
            b"GET / HTTP/1.1\r\nhost: a\r\nbad name: x\r\n\r\n".to_vec(),
            "header",
        ),
    ]
}

/// Send `req` on a fresh connection from a task (the proxy may answer
/// before reading all of it, or never read it) while reading the answer.
async fn answer_to(addr: SocketAddr, req: Vec<u8>) -> (Resp, Conn) {
    let mut c = Conn::open(addr).await;
    let mut write = c.write.take().expect("the write half");
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&req).await;
        write
    });
    let r = c.response().await;
    // Written, or failed as the proxy closed: it must not hang.
    let write = tokio::time::timeout(READ_TIMEOUT, writer)
        .await
        .expect("the request written (or refused) in time")
        .expect("writer");
    c.write = Some(write);
    (r, c)
}

#[tokio::test]
async fn bad_requests_get_4xx_and_close() {
    let (p, b) = proxy_with(&["a"]).await;
    for (what, req, _) in bad_requests() {
        let (r, mut c) = answer_to(p.addr, req).await;
        // 400 for each, with `connection: close` (what the body says:
        // bad_requests_get_400_saying_what_was_wrong).
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(r.header("date").is_some(), "{what}");
        c.assert_closed().await;
    }
    // A head over 512 KiB (one long header): 431 (hyper's read buffer limit
    // was about 400 KiB; ours is 64 KiB: heads_over_64k_get_431).
    let mut req = b"GET / HTTP/1.1\r\nhost: a\r\nx-long: ".to_vec();
    req.extend(std::iter::repeat_n(b'v', 520 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let (r, mut c) = answer_to(p.addr, req).await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    assert_eq!(r.status, 431);
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed().await;
    assert_eq!(b[0].count(), 0);
}

#[tokio::test]
async fn bad_requests_get_400_saying_what_was_wrong() {
    let (p, b) = proxy_with(&["a"]).await;
    for (what, req, word) in bad_requests() {
        let (r, mut c) = answer_to(p.addr, req).await;
        assert_eq!(r.status, 400, "{what}");
        let text = r.text().to_ascii_lowercase();
        assert!(text.contains(word), "{what}: {text:?} lacks {word:?}");
        c.assert_closed().await;
    }
    assert_eq!(b[0].count(), 0);
}

#[tokio::test]
async fn heads_over_64k_get_431() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut req = b"GET / HTTP/1.1\r\nhost: a\r\nx-long: ".to_vec();
    req.extend(std::iter::repeat_n(b'v', 100 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let (r, mut c) = answer_to(p.addr, req).await;
    assert_eq!(r.status, 431);
    c.assert_closed().await;
    assert_eq!(b[0].count(), 0);
}

#[tokio::test]
async fn chunked_with_content_length_never_reaches_the_backend_as_both() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(
        b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\
          transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    // Not a 400: the chunked framing wins, content-length is dropped, and
    // the connection is closed after the response (which says so), as
    // hyper did too.
    assert_ne!(r.status, 400);
    {
        assert_eq!((r.status, r.text().as_str()), (200, "5"));
        assert_eq!(r.header("connection"), Some("close"));
        let seen = b[0].last();
        assert!(
            !(seen.headers.contains_key("content-length")
                && seen.headers.contains_key("transfer-encoding")),
            "{:?}",
            seen.headers
        );
        assert_ne!(
            seen.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
    }
    c.assert_closed().await;
}

#[tokio::test]
async fn transfer_encoding_not_ending_in_chunked_is_400() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"POST /count HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\nxxxxx")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 400);
    c.assert_closed().await;
    assert_eq!(b[0].count(), 0);
}

#[tokio::test]
async fn head_response_has_no_body() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"HEAD / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let r = c.head_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1"));
    c.send(&get_req("a", "/")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
}

#[tokio::test]
async fn big_responses_arrive_whole_in_either_http_version() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(&get_req("a", "/big/100000")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100_000);
    // The backend's chunked body is sent on chunked.
    assert!(!r.close_delimited, "an HTTP/1.1 response is framed");
    c.assert_open().await;

    let mut c = Conn::open(p.addr).await;
    c.send(b"GET /big/100000 HTTP/1.0\r\nhost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert!(!r.chunked, "never chunked to HTTP/1.0");
    assert_eq!(r.body.len(), 100_000);
    // Framed by the close, as the length is not known ahead.
    assert!(r.close_delimited);
    assert_eq!(r.header("content-length"), None);
}

/// A raw HTTP/1.1 backend on 127.0.0.1:0 that answers every request (heads
/// only, no bodies) with `answer`.
async fn raw_backend(answer: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..e + 4);
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(chunk.get(..k).unwrap_or_default()),
                    }
                }
            });
        }
    });
    addr
}

/// A gRPC-ish call over HTTP/1.1 with `te: trailers` to a backend answering
/// `answer`, on a proxy that routes `/svc/g` there.
async fn grpc_call(answer: &'static [u8]) -> Resp {
    let backend = raw_backend(answer).await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/g=>/$/inet/127.0.0.1/{}",
        backend.port()
    )));
    let p = start_proxy(http_params(), binder).await;
    let mut c = Conn::open(p.addr).await;
    let call =
        b"POST /pkg.Svc/Call HTTP/1.1\r\nhost: g\r\nte: trailers\r\ncontent-length: 0\r\n\r\n";
    c.send(call).await;
    let r = c.response().await;
    // The connection goes on.
    c.send(call).await;
    assert_eq!(c.response().await.status, 200);
    r
}

fn trailer<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.trailers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn declared_trailers_arrive_chunked_to_an_http11_client() {
    let r = grpc_call(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n\
          trailer: grpc-status, grpc-message\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.text(), "hello");
    assert!(r.chunked, "{:?}", r.headers);
    assert_eq!(trailer(&r, "grpc-status"), Some("0"), "{:?}", r.trailers);
    assert_eq!(trailer(&r, "grpc-message"), Some("ok"), "{:?}", r.trailers);
}

#[tokio::test]
async fn undeclared_trailers_are_forwarded_too() {
    // No `trailer` response header: hyper's server dropped the trailers (it
    // sent only those the `trailer` header names); ours sends them all.
    let r = grpc_call(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n\
          transfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(r.chunked, "{:?}", r.headers);
    assert_eq!(trailer(&r, "grpc-status"), Some("0"), "{:?}", r.trailers);
}

#[tokio::test]
async fn grpc_backend_over_http11_arrives_whole() {
    // tests/support's Backend (hyper) declares no `trailer` header, so over
    // HTTP/1.1 its trailers never leave it: the body arrives chunked, whole.
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"POST /pkg.Svc/Call HTTP/1.1\r\nhost: a\r\nte: trailers\r\ncontent-length: 0\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.text(), "a/pkg.Svc/Call");
    assert!(r.chunked, "{:?}", r.headers);
    c.send(&get_req("a", "/")).await;
    assert_eq!(c.response().await.text(), "a");
}

#[tokio::test]
async fn responses_carry_a_date() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(&get_req("a", "/")).await;
    let r = c.response().await;
    let date = r.header("date").expect("a date header");
    assert!(date.ends_with(" GMT"), "{date}");
    // An answer of the proxy's own too.
    c.send(&get_req("nope", "/")).await;
    let r = c.response().await;
    assert_eq!(r.status, 502);
    assert!(r.header("date").is_some());
}

#[tokio::test]
async fn absolute_form_target_routes_by_its_authority() {
    let (p, b) = proxy_with(&["a", "b"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"GET http://b/x?y=1 HTTP/1.1\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "b"));
    assert_eq!(b[0].count(), 0);
    let seen = b[1].last();
    // Forwarded in origin-form, with the authority as its Host.
    assert_eq!(seen.uri, "/x?y=1");
    assert_eq!(
        seen.headers.get("host").map(|v| v.as_bytes()),
        Some(&b"b"[..])
    );
}

#[tokio::test]
async fn clients_that_vanish_mid_request_do_not_stop_the_proxy() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\nx-par").await;
    drop(c);
    let mut c = Conn::open(p.addr).await;
    c.send(b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await;
    b[0].wait_for_requests(1).await;
    drop(c);
    let mut c = Conn::open(p.addr).await;
    c.send(&get_req("a", "/")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_closes() {
    let (p, b) = proxy_with(&["a"]).await;
    let mut idle = Conn::open(p.addr).await;
    idle.send(&get_req("a", "/")).await;
    assert_eq!(idle.response().await.status, 200);
    let mut busy = Conn::open(p.addr).await;
    busy.send(&get_req("a", "/slow")).await;
    b[0].wait_for_requests(2).await;
    p.shutdown.trigger();
    let r = busy.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_eq!(r.header("connection"), Some("close"));
    busy.assert_closed().await;
    assert!(
        idle.closes_within(Duration::from_secs(2)).await,
        "an idle keep-alive connection is closed promptly"
    );
}

#[tokio::test]
async fn answer_without_reading_the_body_does_not_hang() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut req = b"POST /count HTTP/1.1\r\nhost: nope\r\ncontent-length: 1048576\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'z', 1024 * 1024));
    let (r, mut c) = answer_to(p.addr, req).await;
    assert_eq!(r.status, 502);
    assert!(r.header("l5d-err").is_some());
    // The body was not read: the connection cannot carry another request
    // and is closed once the response is written (as hyper did).
    c.assert_closed().await;
}

/// Time since `t0` when the proxy closes `c` (at most `limit` later), in
/// the test's (paused, auto-advancing) clock.
async fn closed_after(c: &mut Conn, t0: tokio::time::Instant, limit: Duration) -> Duration {
    assert!(c.closes_within(limit).await, "still open after {limit:?}");
    t0.elapsed()
}

// The idle limit is 30 s, checked by one timer per connection that is
// re-armed when it fires after progress: a silent connection is closed
// between 30 and 60 s after its last request. These run on tokio's paused
// clock, which jumps to the next timer whenever every task waits.

#[tokio::test(start_paused = true)]
async fn a_connection_silent_in_the_middle_of_a_head_is_closed() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    let t0 = tokio::time::Instant::now();
    c.send(b"GET / HTTP/1.1\r\nhost: a\r\n").await;
    let after = closed_after(&mut c, t0, Duration::from_secs(120)).await;
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_secs(61),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_trickled_a_byte_at_a_time_does_not_keep_a_connection() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut c = Conn::open(p.addr).await;
    let t0 = tokio::time::Instant::now();
    let head = get_req("a", "/");
    let mut closed = None;
    for byte in head.iter().take(head.len() - 1) {
        c.send(std::slice::from_ref(byte)).await;
        if c.closes_within(Duration::from_secs(5)).await {
            closed = Some(t0.elapsed());
            break;
        }
    }
    let after = closed.expect("closed before the head was complete");
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_secs(61),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let (p, _b) = proxy_with(&["a"]).await;
    let mut idle = Conn::open(p.addr).await;
    let mut busy = Conn::open(p.addr).await;
    for c in [&mut idle, &mut busy] {
        c.send(&get_req("a", "/")).await;
        assert_eq!(c.response().await.status, 200);
    }
    let t0 = tokio::time::Instant::now();
    // A request every 20 s keeps `busy` open past any idle limit.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        busy.send(&get_req("a", "/")).await;
        assert_eq!(busy.response().await.status, 200);
    }
    assert!(t0.elapsed() >= Duration::from_secs(100));
    busy.assert_open().await;
    let after = closed_after(&mut idle, t0, Duration::from_secs(1)).await;
    assert!(after >= Duration::from_secs(30), "{after:?}");
}

/// The whole of one response to `request`, sent with `connection: close`
/// on a connection of its own, as bytes on the wire.
async fn wire_response(proxy: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("the proxy closes after the response")
        .expect("read");
    String::from_utf8(out).expect("text")
}

/// A backend's header lines reach the client as the backend wrote them
/// (case, order, repeated names), without the backend's own connection
/// and framing headers, and with the proxy's after them; a response with a
/// hop-by-hop header named by `connection` has it removed.
#[tokio::test]
async fn the_backends_header_lines_pass_through_as_sent() {
    let plain = raw_backend(
        b"HTTP/1.1 200 OK\r\nServer: Raw/1\r\nSet-Cookie: a=1\r\nX-Multi: one\r\n\
          Keep-Alive: timeout=5\r\nSet-Cookie: b=2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
          Connection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let chunked = raw_backend(
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await;
    let hop = raw_backend(
        b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/plain=>/$/inet/127.0.0.1/{};/svc/chunked=>/$/inet/127.0.0.1/{};/svc/hop=>/$/inet/127.0.0.1/{}",
        plain.port(),
        chunked.port(),
        hop.port()
    )));
    let p = start_proxy(http_params(), binder).await;

    assert_eq!(
        wire_response(p.addr, "plain").await,
        "HTTP/1.1 200 OK\r\nServer: Raw/1\r\nSet-Cookie: a=1\r\nX-Multi: one\r\n\
         Set-Cookie: b=2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\
         via: 1.1 switchyard\r\nl5d-success-class: 1.0\r\nconnection: close\r\n\r\nok"
    );

    // Chunked by the backend: the proxy frames the body itself, and dates it.
    let r = wire_response(p.addr, "chunked").await;
    let (head, body) = r.split_once("\r\n\r\n").expect("a head");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines.get(..5).unwrap_or_default(),
        [
            "HTTP/1.1 200 OK",
            "X-A: 1",
            "X-B: 2",
            "via: 1.1 switchyard",
            "l5d-success-class: 1.0"
        ],
        "{r}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .count(),
        1,
        "{r}"
    );
    assert!(lines.iter().any(|l| l.starts_with("date: ")), "{r}");
    assert_eq!(body, "2\r\nok\r\n0\r\n\r\n", "{r}");

    // What `connection` names goes; the rest is read into a map (lower case).
    let r = wire_response(p.addr, "hop").await;
    assert!(!r.to_ascii_lowercase().contains("x-hop"), "{r}");
    assert!(r.contains("\r\nx-a: 1\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nok"), "{r}");
}

/// The proxy's response headers as our HTTP/1.1 server writes them: once
/// each, after the backend's; a downstream hop's `l5d-success-class` is
/// replaced by ours, and its `via` kept before ours.
#[tokio::test]
async fn the_proxys_response_headers_are_written_once() {
    let count = |r: &Resp, name: &str| r.headers.iter().filter(|(n, _)| n == name).count();
    let plain = raw_backend(b"HTTP/1.1 200 OK\r\nx-app: 1\r\ncontent-length: 2\r\n\r\nok").await;
    let hop = raw_backend(
        b"HTTP/1.1 200 OK\r\nvia: 1.1 downstream\r\nl5d-success-class: 0.0\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc/plain=>/$/inet/127.0.0.1/{};/svc/hop=>/$/inet/127.0.0.1/{}",
        plain.port(),
        hop.port()
    )));
    let p = start_proxy(http_params(), binder).await;
    let mut c = Conn::open(p.addr).await;

    c.send(b"GET / HTTP/1.1\r\nhost: plain\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.header("x-app"), Some("1"));
    assert_eq!(r.header("via"), Some("1.1 switchyard"));
    assert_eq!(r.header("l5d-success-class"), Some("1.0"));
    for name in ["via", "l5d-success-class", "content-length"] {
        assert_eq!(count(&r, name), 1, "{name}: {:?}", r.headers);
    }

    // The same connection, a response that says it failed downstream.
    c.send(b"GET / HTTP/1.1\r\nhost: hop\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(count(&r, "l5d-success-class"), 1, "{:?}", r.headers);
    assert_eq!(r.header("l5d-success-class"), Some("0.0"));
    let vias: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "via")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(vias, ["1.1 downstream", "1.1 switchyard"]);
}

/// A backend that answers `200 ok` to each request and hands over each
/// request as it came off the wire: head, then body (by its length, or
/// chunked up to the last chunk).
async fn recording_backend() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let whole = buf.windows(4).position(|w| w == b"\r\n\r\n").and_then(|e| {
                        let head = String::from_utf8_lossy(&buf[..e + 4]).into_owned();
                        let lower = head.to_ascii_lowercase();
                        let end = if let Some(at) = lower.find("\r\ncontent-length: ") {
                            let n: usize = lower[at + 18..].split("\r\n").next()?.parse().ok()?;
                            e + 4 + n
                        } else if lower.contains("\r\ntransfer-encoding: chunked\r\n") {
                            let rest = buf.get(e + 4..)?;
                            e + 4 + rest.windows(5).position(|w| w == b"0\r\n\r\n")? + 5
                        } else {
                            e + 4
                        };
                        (buf.len() >= end).then_some(end)
                    });
                    if let Some(end) = whole {
                        let req: Vec<u8> = buf.drain(..end).collect();
                        let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(chunk.get(..k).unwrap_or_default()),
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A client's header lines reach the backend as the client wrote them
/// (case, order, repeated names), without the client's own connection
/// and framing headers, and with the proxy's after them; a request with a
/// header the proxy reads or changes goes through a map as before.
#[tokio::test]
async fn the_clients_header_lines_reach_the_backend_as_sent() {
    let (backend, mut seen) = recording_backend().await;
    let binder = Arc::new(TestBinder::new(&format!(
        "/svc=>/$/inet/127.0.0.1/{}",
        backend.port()
    )));
    let p = start_proxy(http_params(), binder).await;
    let mut c = Conn::open(p.addr).await;
    let mut next = async |req: &[u8]| {
        c.send(req).await;
        assert_eq!(c.read_response(false).await.status, 200);
        tokio::time::timeout(READ_TIMEOUT, seen.recv())
            .await
            .expect("the backend got it")
            .expect("a request")
    };
    let own = |r: &str| -> Vec<String> {
        let head = r.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().skip(1).map(str::to_owned).collect()
    };

    // Kept as sent; the proxy's own headers after them.
    let r = next(
        b"GET /p?q=1 HTTP/1.1\r\nHost: web\r\nUser-Agent: UA/1\r\nX-Multi: a\r\n\
          Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nAccept: */*\r\nx-multi: b\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{r}");
    let lines = own(&r);
    assert_eq!(
        lines.get(..5).unwrap_or_default(),
        [
            "Host: web",
            "User-Agent: UA/1",
            "X-Multi: a",
            "Accept: */*",
            "x-multi: b"
        ],
        "{r}"
    );
    let rest = lines.get(5..).unwrap_or_default();
    assert_eq!(
        rest.first().map(String::as_str),
        Some("via: 1.1 switchyard"),
        "{r}"
    );
    assert!(rest.iter().any(|l| l == "l5d-dst-service: /svc/web"), "{r}");
    assert!(rest.iter().any(|l| l.starts_with("l5d-reqid: ")), "{r}");
    assert!(!r.to_ascii_lowercase().contains("keep-alive"), "{r}");

    // A length is kept as sent; a chunked body is framed by the proxy,
    // once.
    let r =
        next(b"POST /u HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello").await;
    assert_eq!(
        own(&r).get(..3).unwrap_or_default(),
        ["Host: web", "Content-Length: 5", "X-A: 1"]
    );
    assert!(r.ends_with("\r\n\r\nhello"), "{r}");
    let r = next(
        b"POST /u HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(
        own(&r).get(..2).unwrap_or_default(),
        ["Host: web", "X-A: 1"],
        "{r}"
    );
    let framing = r
        .to_ascii_lowercase()
        .matches("transfer-encoding: chunked")
        .count();
    assert_eq!(framing, 1, "{r}");
    assert!(r.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{r}");

    // A hop-by-hop header named by `connection` goes, with it; the rest is
    // read into a map (lower case).
    let r = next(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-B: 2\r\n\r\n")
        .await;
    assert!(!r.to_ascii_lowercase().contains("x-hop"), "{r}");
    assert!(r.contains("\r\nx-b: 2\r\n"), "{r}");
}
