//! Plain-text HTTP/1.1 connections from clients, served by Switchyard's
//! own loop.
//!
//! Why our own and not hyper's server connection: on the proxy's path
//! hyper's HTTP/1 server was the largest single cost left (callgrind: about
//! 8.6k of 29.7k instructions per request): its dispatcher, its buffers
//! (a fresh 8 KB read buffer per message), a copy of every header value,
//! and a timer per request; and to keep idle keep-alive connections small
//! its connection had to be taken apart and built again between requests.
//! Here one loop per connection reads a head, hands the request to the
//! forwarder and writes the response, in the connection's own task:
//!
//! * **Heads** are parsed in place (httparse); header values and the
//!   request target are windows on the read buffer, not copies.
//! * **Request bodies** are read from the socket by whoever polls them
//!   (the backend connection writing them out, usually in this same
//!   task): no task and no channel between the socket and the body. The
//!   connection's buffer goes with the body and comes back when the
//!   response is done; bytes of a next (pipelined) request stay in it.
//! * **Responses** go out in one write when they are ready at once (head
//!   and a small body together); a body that streams is written as its
//!   frames arrive, a large piece without a copy.
//! * **Idle connections** hold no buffer: a connection between requests
//!   is a socket and its task.
//!
//! What it speaks (RFC 9112):
//! * Request bodies framed by `transfer-encoding` ending in `chunked`
//!   (with trailers), else by `content-length`; a request with neither
//!   has no body. With both, chunked wins, `content-length` is removed
//!   before forwarding and the connection is closed after the response
//!   (the shape of a request smuggling attempt).
//! * `expect: 100-continue`: `100 Continue` is sent when the body is first
//!   read, so a request answered without its body (a 4xx, a 502) never
//!   makes the client send it.
//! * Keep-alive: HTTP/1.1 unless `connection: close`; HTTP/1.0 with
//!   `connection: keep-alive`. Pipelined requests are answered in order.
//! * Responses are framed by their `content-length`, else by their
//!   body's exact size, else chunked (with trailers) for HTTP/1.1 and by
//!   closing the connection for HTTP/1.0. No body for `HEAD`, 1xx, 204
//!   and 304. A `date` is added when the response has none.
//! * A malformed head gets a `400` (a head over 64 KB or with more than
//!   100 headers a `431`) whose body and `l5d-err` say what was wrong, and
//!   the connection is closed.
//! * A connection that sends nothing for 30 s (between requests, or in
//!   the middle of a head) is closed; within a minute at the latest.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::conn::{IDLE_TIMEOUT, TrackedBody};
use super::headers::{Appended, RequestLines, RoutingHeaders, Writer};
use super::server::ServerCtx;
use crate::client::h1::{
    BodyStep, Decoder, Facts, Framer, Framing, H1Error, Inbox, MAX_HEAD, MAX_HEADERS, READ_CHUNK,
    READ_MIN, Spans, WRITE_HIGH, WRITE_KEEP, folded, parse_decimal, passed_through, push_decimal,
};

/// How long a closing connection reads and drops what a client still sends.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);
/// What a client that asked for it gets before it sends its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request head the connection cannot serve: answered, then closed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    /// Malformed: `400`.
    Bad(String),
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers: `431`.
    TooLarge(String),
}

impl Rejection {
    fn bad(what: impl Into<String>) -> Rejection {
        Rejection::Bad(what.into())
    }
}

/// A parsed request head and what the connection needs to know of it.
#[derive(Debug)]
struct Head {
    req: Request<()>,
    /// How its body is read; [`Decoder::Done`] when it has none.
    body: Decoder,
    /// The client allows another request on the connection.
    keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    expect_continue: bool,
    /// Whether it may carry the headers read before routing.
    context: RoutingHeaders,
    /// Its header lines as sent, when they may go on as they are (its
    /// map is then empty).
    lines: Option<RequestLines>,
}

/// Parse the request head at the front of `read`, when it is complete;
/// with `lines_ok`, its header lines stay as sent where they can
/// ([`RequestLines`]).
fn parse_request(read: &mut BytesMut, lines_ok: bool) -> Result<Option<Head>, Rejection> {
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let blank = read
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(read.len());
    if blank > 0 {
        let _ = read.split_to(blank);
        if read.is_empty() {
            return Ok(None);
        }
    }
    // Positions, so that the target and the header values can be windows
    // on the head once it is split off the buffer.
    let mut spans = Spans::new();
    let (len, method, target, minor) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        // Only the first MAX_HEAD bytes are looked at: the outcome is then
        // the same however the bytes were cut into reads.
        let window = read.get(..MAX_HEAD).unwrap_or(read);
        let status = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, window, &mut slots)
            .map_err(|e| match e {
                httparse::Error::TooManyHeaders => {
                    Rejection::TooLarge(format!("more than {MAX_HEADERS} headers"))
                }
                e => Rejection::Bad(format!("invalid request head: {e}")),
            })?;
        let httparse::Status::Complete(len) = status else {
            if read.len() >= MAX_HEAD {
                return Err(Rejection::TooLarge(format!(
                    "request head longer than {MAX_HEAD} bytes"
                )));
            }
            return Ok(None);
        };
        if len > MAX_HEAD {
            return Err(Rejection::TooLarge(format!(
                "request head longer than {MAX_HEAD} bytes"
            )));
        }
        spans.fill(req.headers, read.as_ptr());
        let base = read.as_ptr() as usize;
        let span = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
        (
            len,
            span(req.method.unwrap_or_default().as_bytes()),
            span(req.path.unwrap_or_default().as_bytes()),
            req.version.unwrap_or(1),
        )
    };
    let mut head = read.split_to(len);
    let mut declared = Facts::default();
    // Origin form only: an absolute-form target's authority may become
    // the Host header, which the lines could not take.
    let origin = head.get(target.0) == Some(&b'/');
    let kept = if lines_ok && origin {
        let spans = spans.as_mut_slice();
        passed_through(&mut head, spans, &mut declared, request_passes).map(|range| {
            // The spans of lines cut out were not moved, and may now look
            // at other bytes; none of them is four bytes long.
            let host = spans
                .iter()
                .find(|s| folded(window_of(&head, s.0, s.1), b"host"));
            let host = host.map(|s| (s.2 - range.start as u32, s.3));
            (range, host)
        })
    } else {
        None
    };
    let head = head.freeze();
    let window = |(at, n): (usize, usize)| head.get(at..at + n).unwrap_or_default();
    let method =
        Method::from_bytes(window(method)).map_err(|_| Rejection::bad("invalid method"))?;
    // `/` (the commonest target) is a static URI: no window on the head,
    // whose shared count would be raised and lowered for nothing.
    let uri = if window(target) == b"/" {
        http::Uri::from_static("/")
    } else {
        http::Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
            .map_err(|e| Rejection::Bad(format!("invalid request target: {e}")))?
    };
    let (mut headers, lines) = match kept {
        Some((range, host)) => {
            // httparse refused any name or value the map would (the fuzz
            // target h1_request checks that lines and map agree).
            let length = declared.length.and_then(Result::ok);
            // The head itself, narrowed to the lines: no second window on
            // the read buffer (an atomic count up now, and down once the
            // response is back, on a line gone cold while it waited).
            let mut lines = head;
            lines.advance(range.start);
            lines.truncate(range.len());
            let lines = RequestLines::new(lines, host, length);
            (HeaderMap::new(), Some(lines))
        }
        None => {
            declared = Facts::default();
            // Room for what the proxy adds without regrowing the map.
            let mut headers = super::headers::spare_maps::take(spans.as_slice().len() + 8);
            for &(n, nl, v, vl) in spans.as_slice() {
                let (n, nl, v, vl) = (n as usize, nl as usize, v as usize, vl as usize);
                let name = window((n, nl));
                if declared.note(name, window((v, vl))) {
                    continue;
                }
                let name = HeaderName::from_bytes(name).map_err(|_| {
                    Rejection::Bad(format!(
                        "invalid header name {:?}",
                        String::from_utf8_lossy(name)
                    ))
                })?;
                let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl))
                    .map_err(|_| Rejection::Bad(format!("invalid value for header {name}")))?;
                headers.append(name, value);
            }
            (headers, None)
        }
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut keep_alive = match version {
        Version::HTTP_10 => declared.keep_alive && !declared.close,
        _ => !declared.close,
    };
    let body = match (declared.chunked, declared.length) {
        (Some(false), _) => {
            return Err(Rejection::bad(
                "transfer-encoding must end in chunked: no other coding is accepted on a request",
            ));
        }
        (Some(true), length) => {
            if length.is_some() {
                // Both: chunked decides; the length must not reach the
                // endpoint, and this connection is not trusted further.
                headers.remove(CONTENT_LENGTH);
                keep_alive = false;
            }
            Decoder::Chunked(crate::client::h1::Chunk::Size)
        }
        (None, Some(Err(()))) => {
            return Err(Rejection::bad(
                "invalid content-length: not a number, or values that differ",
            ));
        }
        (None, Some(Ok(0)) | None) => Decoder::Done,
        (None, Some(Ok(n))) => Decoder::Length(n),
    };
    let expect_continue =
        declared.expect_continue && version == Version::HTTP_11 && !body.is_done();
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let context = if declared.context {
        RoutingHeaders::Maybe
    } else {
        RoutingHeaders::Absent
    };
    Ok(Some(Head {
        req,
        body,
        keep_alive,
        expect_continue,
        context,
        lines,
    }))
}

fn window_of(head: &[u8], at: u32, n: u32) -> &[u8] {
    head.get(at as usize..(at + n) as usize).unwrap_or_default()
}

/// Whether a request header (other than the connection's framing ones) is
/// one the proxy neither reads nor changes on its way to the client: not
/// `via` or `l5d-*` (read before routing, or replaced), not hop-by-hop
/// (`connection` naming other headers, `te`, `upgrade`, `proxy-*`).
fn request_passes(name: &[u8], _value: &[u8]) -> bool {
    let prefixed = |p: &[u8]| name.len() > p.len() && folded(&name[..p.len()], p);
    match name.first().map_or(0, |b| b | 0x20) {
        b'l' => !prefixed(b"l5d-"),
        b'v' => !folded(name, b"via"),
        b'p' => !prefixed(b"proxy-"),
        b't' => !folded(name, b"te"),
        b'u' => !folded(name, b"upgrade"),
        b'c' => !folded(name, b"connection"),
        _ => true,
    }
}

/// A request decoded from bytes alone (see [`decode`]).
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedRequest {
    /// The method, the target and whether it is HTTP/1.0.
    pub line: (String, String, bool),
    /// The headers kept for forwarding, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's bytes.
    pub body: Vec<u8>,
    /// The trailers, when the body had any.
    pub trailers: Option<Vec<(String, Vec<u8>)>>,
    /// Whether the connection could carry another request.
    pub keep_alive: bool,
    /// Bytes after the request (the next, pipelined request).
    pub rest: usize,
}

fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Decode `data` as a request from a client, as a connection would when
/// the bytes arrive `piece` at a time and the client closes after them:
/// for tests and the fuzz target, which check that the pieces do not
/// change the outcome.
pub fn decode(data: &[u8], piece: usize) -> Result<DecodedRequest, String> {
    decode_with(data, piece, false)
}

/// [`decode`] with the header lines kept as sent where they can be
/// ([`RequestLines`]), as our server keeps them: the headers are the lines
/// taken apart again (names in lower case), and must be those of
/// [`decode`] name by name.
pub fn decode_lines(data: &[u8], piece: usize) -> Result<DecodedRequest, String> {
    decode_with(data, piece, true)
}

fn decode_with(data: &[u8], piece: usize, lines: bool) -> Result<DecodedRequest, String> {
    let mut pieces = data.chunks(piece.max(1));
    let mut read = BytesMut::new();
    let head = loop {
        match parse_request(&mut read, lines) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(Rejection::Bad(why) | Rejection::TooLarge(why)) => return Err(why),
        }
        match pieces.next() {
            Some(p) => read.extend_from_slice(p),
            None => return Err("closed before a complete head".into()),
        }
    };
    let mut dec = head.body;
    let mut inbox = Inbox::from_buf(read);
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match inbox
            .body_step(&mut dec)
            .map_err(|e| body_error(e).to_string())?
        {
            BodyStep::Frame(f) => match f.into_data() {
                Ok(d) => body.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok().map(|t| pairs(&t)),
            },
            BodyStep::End => break,
            BodyStep::More => match pieces.next() {
                Some(p) => inbox.buf_mut().extend_from_slice(p),
                None => return Err("closed before the body ended".into()),
            },
        }
    }
    let (method, target, version) = (
        head.req.method().to_string(),
        head.req.uri().to_string(),
        head.req.version(),
    );
    Ok(DecodedRequest {
        line: (method, target, version == Version::HTTP_10),
        headers: match &head.lines {
            Some(l) => l
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
                .collect(),
            None => pairs(head.req.headers()),
        },
        body,
        trailers,
        keep_alive: head.keep_alive,
        rest: inbox.len() + pieces.map(<[u8]>::len).sum::<usize>(),
    })
}

/// Where a `100 Continue` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// Not asked for, or already sent.
    No,
    /// Asked for; the body has not been read yet.
    Expected,
    /// The body was read: the connection is to send it.
    Wanted,
}

/// A request body's share of its connection: the read buffer (with the
/// body's first bytes, and perhaps the next request's), and where the
/// body's decoding is. Behind a mutex as the body may be read from another
/// task (an HTTP/2 endpoint's); it is never contended otherwise.
struct Inflow {
    /// `None` once the connection took its buffer back.
    inbox: Option<Inbox>,
    dec: Decoder,
    cont: Continue,
    /// The body's task, waiting for `100 Continue` to go out.
    body_waker: Option<Waker>,
    /// The connection's task, waiting for the body to be read.
    conn_waker: Option<Waker>,
}

fn lock(m: &Mutex<Inflow>) -> MutexGuard<'_, Inflow> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request body from the client: {0}")]
struct RequestBodyError(String);

/// A request body as the client sends it on its connection.
enum RequestBody {
    /// No body.
    Empty,
    /// Read from the connection as it is polled.
    Stream {
        inflow: Arc<Mutex<Inflow>>,
        stream: Arc<TcpStream>,
        /// Known at the start; for [`Body::size_hint`].
        length: Option<u64>,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let RequestBody::Stream { inflow, stream, .. } = self.get_mut() else {
            return Poll::Ready(None);
        };
        let mut g = lock(inflow);
        let g = &mut *g;
        match g.cont {
            Continue::No => {}
            Continue::Expected | Continue::Wanted => {
                g.cont = Continue::Wanted;
                if !g
                    .body_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    g.body_waker = Some(cx.waker().clone());
                }
                if let Some(w) = g.conn_waker.take() {
                    w.wake();
                }
                return Poll::Pending;
            }
        }
        let Some(inbox) = g.inbox.as_mut() else {
            if g.dec.is_done() {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(RequestBodyError(
                "the request is over: its body can no longer be read".into(),
            ))));
        };
        loop {
            match inbox.body_step(&mut g.dec) {
                Ok(BodyStep::Frame(f)) => return Poll::Ready(Some(Ok(f))),
                Ok(BodyStep::End) => return Poll::Ready(None),
                Ok(BodyStep::More) => {}
                Err(e) => return Poll::Ready(Some(Err(body_error(e)))),
            }
            match ready!(poll_fill(stream, cx, inbox.buf_mut())) {
                Ok(0) => {
                    return Poll::Ready(Some(Err(RequestBodyError(
                        "the client closed the connection before the body ended".into(),
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(RequestBodyError(e.to_string())))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, RequestBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream {
                length: Some(n), ..
            } => SizeHint::with_exact(*n),
            RequestBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The decoder's errors are worded for responses (the client's side).
fn body_error(e: H1Error) -> RequestBodyError {
    RequestBodyError(match e {
        H1Error::Chunk(what) => format!("invalid chunked encoding: {what}"),
        e => e.to_string(),
    })
}

/// Read what the socket has into `read`; `Ok(0)` at its end.
fn poll_fill(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    read: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        if read.capacity() == 0 {
            *read = spare::take();
        }
        if read.capacity() - read.len() < READ_MIN {
            read.reserve(READ_CHUNK);
        }
        let room = read.capacity() - read.len();
        // A read that does not fill the room empties the socket (epoll is
        // edge-triggered: bytes that come later bring a new event), so the
        // readiness is cleared at once: the next read would only find
        // nothing, a syscall per request. As tokio's own `poll_read`, it
        // clears the readiness seen *before* the read (the outer
        // `try_io`), never an event that came during it.
        let mut short = None;
        let r = stream.try_io(tokio::io::Interest::READABLE, || {
            match stream.try_read_buf(read) {
                Ok(n) if n > 0 && n < room => {
                    short = Some(n);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                r => r,
            }
        });
        if let Some(n) = short {
            return Poll::Ready(Ok(n));
        }
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

fn poll_write(stream: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match stream.try_write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(0) if !buf.is_empty() => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            r => return Poll::Ready(r),
        }
    }
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| poll_write(stream, cx, buf)).await?;
        buf = buf.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// What waiting for bytes came to.
enum Wait {
    /// This many bytes arrived (0: the client closed).
    Read(usize),
    /// The client stayed silent for [`IDLE_TIMEOUT`], or reading failed,
    /// or the server is shutting down: close.
    Close,
}

/// Serve HTTP/1.1 requests on `stream` (whose first bytes are in `read`)
/// until the client closes, stays silent too long, a response needs the
/// connection closed, or the server shuts down.
pub(super) async fn serve(
    ctx: &ServerCtx,
    stream: TcpStream,
    peer: SocketAddr,
    mut read: BytesMut,
) -> io::Result<()> {
    let stream = Arc::new(stream);
    let mut stop = pin!(ctx.shutdown.stop());
    // One timer for the connection's life, re-armed only when it fires
    // after progress: no timer work per request. A silent connection is
    // closed between one and two IDLE_TIMEOUTs after its last request.
    let mut timer = pin!(tokio::time::sleep(IDLE_TIMEOUT));
    let (mut served, mut armed) = (0usize, 0usize);
    let mut out = Vec::new();
    loop {
        let head = loop {
            if !read.is_empty() {
                match parse_request(&mut read, ctx.lines_ok) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(rejection) => {
                        tracing::debug!(%peer, ?rejection, "bad request head");
                        let _ = write_all(&stream, &rejection_response(&rejection)).await;
                        return close(stream, true).await;
                    }
                }
            }
            let waited = poll_fn(|cx| {
                match poll_fill(&stream, cx, &mut read) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(Wait::Read(n)),
                    Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                    Poll::Pending => {}
                }
                // Nothing to read: an idle connection holds no buffer (it
                // goes back to the thread's spares).
                if read.is_empty() && read.capacity() > 0 {
                    spare::give(std::mem::take(&mut read));
                }
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Close);
                }
                while timer.as_mut().poll(cx).is_ready() {
                    if armed == served {
                        return Poll::Ready(Wait::Close);
                    }
                    armed = served;
                    timer.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                }
                Poll::Pending
            })
            .await;
            match waited {
                Wait::Read(0) | Wait::Close => return Ok(()),
                Wait::Read(_) => {}
            }
        };
        served += 1;

        let Head {
            req,
            body: dec,
            mut keep_alive,
            expect_continue,
            context,
            lines,
        } = head;
        let (mut req, ()) = req.into_parts();
        let (body, inflow) = if dec.is_done() {
            (RequestBody::Empty, None)
        } else {
            let length = dec.remaining();
            let inflow = Arc::new(Mutex::new(Inflow {
                inbox: Some(Inbox::from_buf(std::mem::take(&mut read))),
                dec,
                cont: if expect_continue {
                    Continue::Expected
                } else {
                    Continue::No
                },
                body_waker: None,
                conn_waker: None,
            }));
            let body = RequestBody::Stream {
                inflow: inflow.clone(),
                stream: stream.clone(),
                length,
            };
            (body, Some(inflow))
        };
        // Boxed: the forwarding future is most of a connection's size, and
        // an idle connection should cost a socket, not the largest request
        // state it ever had. The box is made first and the future written
        // into it, so that it is built in place: `Box::pin(f)` builds its
        // 6.4 KB on the stack and copies them over, on every request.
        let respond = Box::into_pin(Box::write(
            Box::new_uninit(),
            ctx.respond(&mut req, body, context, Writer::Ours(lines), peer),
        ));
        let (resp, appended) = match &inflow {
            Some(inflow) if expect_continue => with_continue(respond, inflow, &stream).await,
            _ => respond.await,
        };

        keep_alive &= !ctx.shutdown.is_triggered();
        let written = write_response(
            &stream,
            &mut out,
            resp,
            appended,
            // The forwarder left the method and version as they came.
            &req.method,
            req.version,
            &mut keep_alive,
        )
        .await;
        if out.capacity() > WRITE_KEEP {
            out = Vec::new();
        }
        let mut unread = false;
        if let Some(inflow) = inflow {
            // The buffer comes back, and with it any next request.
            let mut g = lock(&inflow);
            let g = &mut *g;
            if let Some(mut inbox) = g.inbox.take() {
                // A body left unread is skipped when it is all here
                // already; else the connection cannot go on.
                while !g.dec.is_done() {
                    match inbox.body_step(&mut g.dec) {
                        Ok(BodyStep::Frame(_)) => {}
                        Ok(BodyStep::End) => break,
                        Ok(BodyStep::More) | Err(_) => {
                            (keep_alive, unread) = (false, true);
                            break;
                        }
                    }
                }
                read = inbox.into_buf();
            } else {
                (keep_alive, unread) = (false, true);
            }
            if let Some(w) = g.body_waker.take() {
                w.wake();
            }
        }
        if let Err(e) = &written {
            tracing::debug!(%peer, error = %e, "response not written whole; closing");
        }
        if written.is_err() || !keep_alive {
            return close(stream, unread).await;
        }
    }
}

/// Close the connection after what was written.
///
/// When the client may still be sending (a request body left unread), a
/// plain close would reset the connection, and a reset can destroy the
/// response before the client read it (an early 413 to an upload). So the
/// write side is closed first (the client sees the end of the response),
/// and what the client still sends is read and dropped until it closes,
/// for at most [`LINGER`].
async fn close(stream: Arc<TcpStream>, unread: bool) -> io::Result<()> {
    let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Write);
    if unread {
        let mut scrap = BytesMut::new();
        let drain = async {
            loop {
                scrap.clear();
                match poll_fn(|cx| poll_fill(&stream, cx, &mut scrap)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
    Ok(())
}

/// Drive the response future of a request whose client waits for
/// `100 Continue`: it is sent when the body is first read.
async fn with_continue<F: Future>(
    respond: F,
    inflow: &Mutex<Inflow>,
    stream: &TcpStream,
) -> F::Output {
    let mut respond = pin!(respond);
    let mut sent = 0usize;
    poll_fn(|cx| {
        if let Poll::Ready(r) = respond.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        let mut g = lock(inflow);
        match g.cont {
            Continue::No => {}
            Continue::Expected => {
                if !g
                    .conn_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    g.conn_waker = Some(cx.waker().clone());
                }
            }
            Continue::Wanted => loop {
                let rest = CONTINUE.get(sent..).unwrap_or_default();
                match poll_write(stream, cx, rest) {
                    Poll::Ready(Ok(n)) if sent + n < CONTINUE.len() => sent += n,
                    // Sent, or the connection failed, which the body's
                    // read will find out.
                    Poll::Ready(_) => {
                        g.cont = Continue::No;
                        if let Some(w) = g.body_waker.take() {
                            w.wake();
                        }
                        break;
                    }
                    Poll::Pending => break,
                }
            },
        }
        Poll::Pending
    })
    .await
}

/// Why a response could not be written whole.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client: {0}")]
    Io(#[from] io::Error),
    /// The response body failed, or did not match its length.
    #[error("response body: {0}")]
    Body(String),
}

/// Read buffers of idle connections, kept per thread for the next
/// connection that has something to read: an idle connection holds no
/// buffer, and a busy one does not allocate one (and its shared header,
/// once split) per request.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Spares kept per thread at most (8 KB each).
    const KEEP: usize = 64;

    thread_local! {
        static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// A spare buffer, or an empty one.
    pub(super) fn take() -> BytesMut {
        SPARES
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keep `buf` (empty) for another connection. Its allocation is
    /// reclaimed by the next `reserve` once nothing else holds a window on
    /// it (a request head still alive), else a new one is made then.
    pub(super) fn give(buf: BytesMut) {
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(buf);
            }
        });
    }
}

/// Write `resp` to a `method` request of `version`. `keep_alive` is what
/// the connection allows so far; a response that can only be framed by
/// closing the connection clears it.
async fn write_response(
    stream: &TcpStream,
    out: &mut Vec<u8>,
    resp: Response<TrackedBody>,
    appended: Appended,
    method: &Method,
    version: Version,
    keep_alive: &mut bool,
) -> Result<(), WriteError> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    // The map goes back to the spares once written (below, on every path).
    let parts = Recycled(parts);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length: Option<Option<u64>> = None;
    let mut dated = false;
    if let Some(v) = &appended.verbatim {
        out.extend_from_slice(v.lines());
        length = v.length().map(Some);
        dated = v.dated();
    }
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            let n = parse_decimal(value.as_bytes().trim_ascii());
            length = Some(match length {
                None => n,
                Some(m) if m == n => n,
                Some(_) => None,
            });
        } else if *name == http::header::DATE {
            dated = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    appended.write(out);
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else {
        match length {
            Some(Some(n)) => Framing::Length(n),
            // A length that cannot be trusted: the close ends the body.
            Some(None) => {
                *keep_alive = false;
                Framing::Close
            }
            None if body.is_end_stream() => {
                out.extend_from_slice(b"content-length: 0\r\n");
                Framing::Empty
            }
            None => match body.size_hint().exact() {
                Some(n) => {
                    out.extend_from_slice(b"content-length: ");
                    push_decimal(out, n);
                    out.extend_from_slice(b"\r\n");
                    Framing::Length(n)
                }
                None if version == Version::HTTP_11 => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked
                }
                None => {
                    *keep_alive = false;
                    Framing::Close
                }
            },
        }
    };
    if !dated {
        push_date(out);
    }
    if !*keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    if framing == Framing::Empty {
        // Dropped unread: the endpoint's connection is released or
        // closed by the body itself.
        drop(body);
        write_all(stream, out).await?;
        out.clear();
        return Ok(());
    }
    let mut framer = Framer::new(framing);
    let framed = |e: H1Error| WriteError::Body(e.to_string());
    loop {
        // A frame already available joins what waits to be written;
        // otherwise what waits goes out first.
        let frame = if out.is_empty() {
            body.frame().await
        } else {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    write_all(stream, out).await?;
                    out.clear();
                    continue;
                }
            }
        };
        match frame {
            None => {
                framer.finish(out, None).map_err(framed)?;
                break;
            }
            Some(Err(e)) => {
                // What was sent stays sent; the close tells the client
                // the body did not end.
                let _ = write_all(stream, out).await;
                return Err(WriteError::Body(e.to_string()));
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(data) if data.len() >= WRITE_KEEP => {
                    framer.open(out, data.len()).map_err(framed)?;
                    write_all(stream, out).await?;
                    out.clear();
                    write_all(stream, &data).await?;
                    framer.close(out);
                }
                Ok(data) => framer.data(out, &data).map_err(framed)?,
                Err(f) => {
                    // Trailers only in chunked coding; otherwise dropped.
                    framer.finish(out, f.trailers_ref()).map_err(framed)?;
                    break;
                }
            },
        }
        if out.len() >= WRITE_HIGH {
            write_all(stream, out).await?;
            out.clear();
        }
    }
    write_all(stream, out).await?;
    out.clear();
    Ok(())
}

/// A response head whose header map is kept for another message when the
/// head is done with.
struct Recycled(http::response::Parts);

impl std::ops::Deref for Recycled {
    type Target = http::response::Parts;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        super::headers::spare_maps::give(std::mem::take(&mut self.0.headers));
    }
}

/// A `date` header line for now, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

/// The whole response to a head the connection cannot serve.
fn rejection_response(r: &Rejection) -> Vec<u8> {
    let (status, what) = match r {
        Rejection::Bad(what) => (StatusCode::BAD_REQUEST, what),
        Rejection::TooLarge(what) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, what),
    };
    let text = format!("Bad request: {what}\n");
    let err = percent_encoding::utf8_percent_encode(text.trim_end(), super::error::L5D_ERR_SET);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nl5d-err: {err}\r\nconnection: close\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        text.len(),
    )
    .into_bytes();
    push_date(&mut out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    const GET: &[u8] = b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\nX-Two: 1\r\nx-two: 2\r\n\r\n";

    fn parse(bytes: &[u8]) -> Result<Option<Head>, Rejection> {
        parse_request(&mut BytesMut::from(bytes), false)
    }

    fn head(bytes: &[u8]) -> Head {
        parse(bytes).expect("valid").expect("complete")
    }

    fn rejected(bytes: &[u8]) -> Rejection {
        parse(bytes).expect_err("rejected")
    }

    #[test]
    fn heads_parse_into_requests_whatever_pieces_they_arrive_in() {
        let h = head(GET);
        assert_eq!(h.req.method(), Method::GET);
        assert_eq!(h.req.uri(), "/a?b=1");
        assert_eq!(h.req.version(), Version::HTTP_11);
        assert_eq!(h.req.headers()["host"], "web");
        let twos: Vec<_> = h.req.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
        assert!(h.keep_alive && !h.expect_continue && h.body.is_done());
        // Every prefix is incomplete; the whole, after any cut, is the same.
        for cut in 0..GET.len() {
            let mut buf = BytesMut::from(&GET[..cut]);
            assert!(
                parse_request(&mut buf, false).expect("no error").is_none(),
                "{cut}"
            );
            buf.extend_from_slice(&GET[cut..]);
            let again = parse_request(&mut buf, false)
                .expect("valid")
                .expect("complete");
            assert_eq!(again.req.uri(), "/a?b=1");
            assert_eq!(again.req.headers().len(), 3);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn requests_decode_the_same_whatever_pieces_they_arrive_in() {
        let cases: [&[u8]; 6] = [
            GET,
            b"POST /c HTTP/1.1\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
            b"POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
            b"POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"POST /c HTTP/1.1\r\ncontent-length: x\r\n\r\n",
            b"\r\n\r\nGET / HTTP/1.0\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n",
        ];
        for case in cases {
            let whole = decode(case, case.len());
            for piece in 1..8 {
                assert_eq!(
                    decode(case, piece),
                    whole,
                    "{piece}: {}",
                    String::from_utf8_lossy(case)
                );
            }
        }
        let d = decode(cases[2], 3).unwrap();
        assert_eq!(d.body, b"hello");
        assert_eq!(d.trailers, Some(vec![("x-t".into(), b"1".to_vec())]));
        let d = decode(cases[1], 2).unwrap();
        assert_eq!(
            (d.body.as_slice(), d.keep_alive, d.rest),
            (&b"hello"[..], false, 18)
        );
        // Hop-by-hop headers that only concern the connection are not kept;
        // a `connection` that names another header is (the forwarder
        // removes both).
        assert!(!d.headers.iter().any(|(n, _)| n == "connection"));
        let d = decode(cases[5], 1).unwrap();
        assert!(d.keep_alive && d.line.2);
        assert_eq!(d.headers.len(), 2);
        assert!(decode(cases[3], 4).unwrap_err().contains("body ended"));
        assert!(decode(cases[4], 4).unwrap_err().contains("content-length"));
    }

    #[test]
    fn header_lines_are_kept_as_sent_unless_the_proxy_reads_or_changes_one() {
        let keep = |bytes: &[u8]| {
            parse_request(&mut BytesMut::from(bytes), true)
                .expect("valid")
                .expect("complete")
        };
        // Kept: case, order and repeats as sent; the map is empty; Host is
        // found without a scan, others with one.
        let h = keep(GET);
        let lines = h.lines.as_ref().expect("kept");
        assert_eq!(lines.lines(), b"Host: web\r\nX-Two: 1\r\nx-two: 2\r\n");
        assert!(h.req.headers().is_empty());
        assert_eq!(h.context, RoutingHeaders::Absent);
        assert_eq!(lines.get("host"), Some(&b"web"[..]));
        assert_eq!(lines.get("x-two"), Some(&b"1"[..]));
        assert_eq!(lines.get("x-three"), None);
        let map = lines.to_map().expect("valid");
        assert_eq!(map.get_all("x-two").iter().count(), 2);
        assert_eq!(
            keep(b"GET / HTTP/1.1\r\n\r\n").lines.expect("kept").lines(),
            b""
        );

        // The connection's own framing lines are cut out, the rest closed
        // up; Host follows its line; a length stays and is noted.
        let h = keep(
            b"POST /c HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\
              Keep-Alive: timeout=5\r\nHOST:  api \r\nX-A: b\r\n\r\nhello",
        );
        let lines = h.lines.as_ref().expect("kept");
        assert_eq!(
            lines.lines(),
            b"Content-Length: 5\r\nHOST:  api \r\nX-A: b\r\n"
        );
        assert_eq!(lines.get("host"), Some(&b"api"[..]));
        assert_eq!(lines.length(), Some(5));
        assert!(matches!(h.body, Decoder::Length(5)));
        let h = keep(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: w\r\n\r\n");
        assert_eq!(h.lines.expect("kept").lines(), b"Host: w\r\n");
        assert!(matches!(h.body, Decoder::Chunked(_)));

        // Into the map: a header read before routing or replaced, a
        // hop-by-hop one, both framings, an absolute-form target, a line
        // ending in a bare LF; and when lines are not wanted.
        for bytes in [
            &b"GET / HTTP/1.1\r\nVia: 1.1 a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nL5d-Dtab: /a=>/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nProxy-Authorization: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: x-hop\r\nx-hop: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET http://web/ HTTP/1.1\r\nHost: web\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: web\nX-A: b\r\n\r\n",
        ] {
            let h = keep(bytes);
            assert!(h.lines.is_none(), "{}", String::from_utf8_lossy(bytes));
            // Untouched by the look: the map has every header.
            assert_eq!(pairs(h.req.headers()), pairs(head(bytes).req.headers()));
        }
        assert!(head(GET).lines.is_none());
    }

    #[test]
    fn requests_decode_alike_with_lines_kept_or_a_map() {
        let by_name = |mut d: DecodedRequest| {
            d.headers.sort_by(|a, b| a.0.cmp(&b.0));
            d
        };
        let cases: [&[u8]; 7] = [
            GET,
            b"POST /c HTTP/1.1\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\nB: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.0\r\nconnection: keep-alive\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nA:\r\nB: \t x \t\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: \x80\xff\r\n\r\n",
            b"POST /c HTTP/1.1\r\ncontent-length: 1, 1\r\n\r\nx",
        ];
        for case in cases {
            let whole = decode(case, case.len()).map(by_name);
            for piece in 1..8 {
                assert_eq!(
                    decode_lines(case, piece).map(by_name),
                    whole,
                    "{piece}: {}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    #[test]
    fn pipelined_heads_come_one_at_a_time_and_blank_lines_before_them_are_skipped() {
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        buf.extend_from_slice(GET);
        buf.extend_from_slice(b"\r\nHEAD http://other/x HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse_request(&mut buf, false).unwrap().unwrap().req.uri(),
            "/a?b=1"
        );
        let second = parse_request(&mut buf, false).unwrap().unwrap();
        assert_eq!(second.req.method(), Method::HEAD);
        assert_eq!(second.req.uri().authority().unwrap(), "other");
        assert!(buf.is_empty());
        assert!(parse_request(&mut buf, false).unwrap().is_none());
    }

    #[test]
    fn via_and_linkerd_headers_are_noticed_in_any_case() {
        let ctx = |b: &[u8]| head(b).context;
        assert_eq!(ctx(GET), RoutingHeaders::Absent);
        assert_eq!(
            ctx(b"GET / HTTP/1.1\r\nhost: a\r\nx-l5d-dst: 1\r\nx-via: 2\r\nl5d: 3\r\nvias: 4\r\n\r\n"),
            RoutingHeaders::Absent
        );
        for name in [
            "via",
            "Via",
            "l5d-dtab",
            "L5D-Dtab",
            "l5d-ctx-dtab",
            "l5d-ctx-deadline",
            "l5d-dst-service",
            "l5d-reqid",
            "L5D-Dst-Client",
            "l5d-x",
        ] {
            let req = format!("GET / HTTP/1.1\r\nhost: a\r\n{name}: x\r\n\r\n");
            assert_eq!(ctx(req.as_bytes()), RoutingHeaders::Maybe, "{name}");
            // Kept for the forwarder to read.
            assert!(head(req.as_bytes()).req.headers().contains_key(name));
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |b: &[u8]| head(b).keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nconnection: te, close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert_eq!(
            head(b"GET / HTTP/1.0\r\n\r\n").req.version(),
            Version::HTTP_10
        );
    }

    #[test]
    fn request_bodies_are_framed_by_what_the_head_declares() {
        let h = head(b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.body.remaining(), Some(5));
        assert!(
            head(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
                .body
                .is_done()
        );
        assert!(
            head(b"POST / HTTP/1.1\r\ncontent-length: 7, 7\r\n\r\n")
                .body
                .remaining()
                == Some(7)
        );
        let h = head(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert!(matches!(h.body, Decoder::Chunked(_)));
        // Both: chunked decides, the length goes, the connection ends after.
        let h = head(b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert!(matches!(h.body, Decoder::Chunked(_)));
        assert!(!h.req.headers().contains_key(CONTENT_LENGTH));
        assert!(!h.keep_alive);
        let h = head(b"POST / HTTP/1.1\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n");
        assert!(h.expect_continue);
        // Nothing to wait for without a body, or from an HTTP/1.0 client.
        assert!(!head(b"GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n").expect_continue);
        assert!(
            !head(b"POST / HTTP/1.0\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn bad_heads_are_rejected_saying_why() {
        let bad = |b: &[u8]| match rejected(b) {
            Rejection::Bad(why) => why,
            r => panic!("{r:?}"),
        };
        assert!(bad(b"HELLO\r\n\r\n").contains("invalid request head"));
        assert!(bad(b"POST / HTTP/1.1\r\ncontent-length: abc\r\n\r\n").contains("content-length"));
        assert!(bad(b"POST / HTTP/1.1\r\ncontent-length: 1, 2\r\n\r\n").contains("content-length"));
        assert!(bad(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n").contains("chunked"));
        assert!(bad(b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n").contains("invalid request head"));
        assert!(bad(b"GET / HTTP/2.0\r\n\r\n").contains("version"));

        let mut long = b"GET / HTTP/1.1\r\nx: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        // Too long even before it is complete.
        assert!(matches!(rejected(&long), Rejection::TooLarge(_)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(rejected(&many), Rejection::TooLarge(_)));

        let resp = String::from_utf8(rejection_response(&Rejection::bad(
            "invalid content-length",
        )))
        .unwrap();
        assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
        assert!(resp.contains("l5d-err: Bad%20request%3A%20invalid%20content-length\r\n"));
        assert!(resp.contains("connection: close\r\n") && resp.contains("\r\ndate: "));
        assert!(resp.ends_with("\r\n\r\nBad request: invalid content-length\n"));
        let big = rejection_response(&Rejection::TooLarge("x".into()));
        assert!(big.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    /// What `write_response` puts on the wire for `resp` answering a
    /// `method` request of `version`, and whether the connection may go on.
    async fn wire(resp: Response<ProxyBodyOf>, method: Method, version: Version) -> (String, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut keep_alive = true;
        let resp = resp.map(|b| TrackedBody::new(b, None));
        let mut out = Vec::new();
        let appended = Appended::default();
        write_response(
            &server,
            &mut out,
            resp,
            appended,
            &method,
            version,
            &mut keep_alive,
        )
        .await
        .unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        (String::from_utf8(got).unwrap(), keep_alive)
    }

    type ProxyBodyOf = crate::proxy::ProxyBody;

    fn full(s: &'static str) -> ProxyBodyOf {
        Full::new(Bytes::from_static(s.as_bytes()))
            .map_err(|e| match e {})
            .boxed()
    }

    /// A body of unknown length: `parts`, then `trailers` if any.
    fn streamed(
        parts: &[&'static str],
        trailers: Option<(&'static str, &'static str)>,
    ) -> ProxyBodyOf {
        let mut frames: Vec<Result<Frame<Bytes>, crate::proxy::BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        if let Some((k, v)) = trailers {
            let mut t = HeaderMap::new();
            t.insert(k, HeaderValue::from_static(v));
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    fn with(
        body: ProxyBodyOf,
        status: u16,
        headers: &[(&'static str, &'static str)],
    ) -> Response<ProxyBodyOf> {
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(*k, HeaderValue::from_static(v));
        }
        r
    }

    #[tokio::test]
    async fn responses_are_framed_for_the_request_they_answer() {
        // Known size: a length, in one piece with the head.
        let (w, ka) = wire(
            with(full("hello"), 200, &[("date", "x")]),
            Method::GET,
            Version::HTTP_11,
        )
        .await;
        assert_eq!(
            w,
            "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert!(ka);
        // Unknown size: chunked, with trailers; a date is added.
        let (w, ka) = wire(
            with(
                streamed(&["ab", "cde"], Some(("grpc-status", "0"))),
                200,
                &[],
            ),
            Method::GET,
            Version::HTTP_11,
        )
        .await;
        assert!(
            w.starts_with("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: "),
            "{w}"
        );
        assert!(
            w.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\ngrpc-status: 0\r\n\r\n"),
            "{w}"
        );
        assert!(ka);
        // The same to an HTTP/1.0 client: framed by the close.
        let (w, ka) = wire(
            with(streamed(&["ab", "cde"], None), 200, &[]),
            Method::GET,
            Version::HTTP_10,
        )
        .await;
        assert!(
            w.contains("connection: close\r\n") && !w.contains("chunked"),
            "{w}"
        );
        assert!(w.ends_with("\r\n\r\nabcde"), "{w}");
        assert!(!ka);
        // The response's own length is kept; HEAD and 204/304 have no body.
        let (w, _) = wire(
            with(streamed(&["abc"], None), 200, &[("content-length", "3")]),
            Method::GET,
            Version::HTTP_11,
        )
        .await;
        assert!(
            w.ends_with("content-length: 3\r\ndate: ".split("date").next().unwrap())
                || w.ends_with("\r\n\r\nabc"),
            "{w}"
        );
        let (w, ka) = wire(
            with(full(""), 200, &[("content-length", "100")]),
            Method::HEAD,
            Version::HTTP_11,
        )
        .await;
        assert!(
            w.contains("content-length: 100\r\n") && w.ends_with("\r\n\r\n"),
            "{w}"
        );
        assert!(ka);
        let (w, _) = wire(with(full(""), 204, &[]), Method::GET, Version::HTTP_11).await;
        assert!(
            w.starts_with("HTTP/1.1 204 No Content\r\n") && !w.contains("content-length"),
            "{w}"
        );
        // An empty body of a 200 says so.
        let (w, _) = wire(with(full(""), 200, &[]), Method::GET, Version::HTTP_10).await;
        assert!(
            w.contains("content-length: 0\r\n") && w.contains("connection: keep-alive\r\n"),
            "{w}"
        );
    }

    #[tokio::test]
    async fn a_body_that_breaks_its_length_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        for body in [streamed(&["abcd"], None), streamed(&["ab"], None)] {
            let resp =
                with(body, 200, &[("content-length", "3")]).map(|b| TrackedBody::new(b, None));
            let mut ka = true;
            let r = write_response(
                &server,
                &mut Vec::new(),
                resp,
                Appended::default(),
                &Method::GET,
                Version::HTTP_11,
                &mut ka,
            )
            .await;
            assert!(matches!(r, Err(WriteError::Body(_))), "{r:?}");
        }
    }
}
