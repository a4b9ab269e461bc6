//! HTTP/1.1 on one connection to an endpoint, driven by the request that
//! uses it.
//!
//! Why our own and not hyper's client connection: hyper runs every client
//! connection in a task of its own and passes requests, responses and body
//! chunks between that task and the caller through channels. On the proxy's
//! path that was a third of the instructions of a request (callgrind: about
//! 13k of 39k) and a hop between tasks for every message. Here the request's
//! own task writes the request and reads the response head, and whoever
//! polls the response body (the server's connection task) reads it straight
//! from the socket into the connection's buffer. Header values and body
//! chunks are windows on that buffer (no copy), and the buffer is reused
//! from one exchange to the next once the previous response is gone.
//!
//! What it speaks (RFC 9112):
//! * **Requests** go in origin form with the caller's headers. The body is
//!   framed by its `content-length` when it has one (a body that sends more
//!   or less is an error and the connection is closed), else by its exact
//!   size when known, else chunked (with trailers). A request with no body
//!   gets `content-length: 0` only for methods that usually carry one.
//!   A head and a body already in memory go out in one write.
//! * **Early responses.** While the body is being sent, bytes from the
//!   endpoint are read too: a final response that begins before the body is
//!   sent (a 413, a 401) stops the body and is returned, and the connection
//!   is not reused. Interim (1xx) responses are skipped.
//! * **Responses** are framed as RFC 9112 §6.3 says: no body for `HEAD`,
//!   1xx, 204 and 304; chunked when `transfer-encoding` ends in `chunked`;
//!   else `content-length` (differing or malformed values are an error);
//!   else up to the close of the connection.
//! * **Reuse** is the pool's business; the connection says whether the
//!   response allows it (HTTP/1.1, no `connection: close`, framed, not a
//!   101, no stray bytes after it).

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::proxy::headers::{RequestLines, Verbatim};
use crate::proxy::{BoxError, ProxyBody};

// The limits and buffer sizes below hold for both sides: this client and
// the proxy's server (`crate::proxy`), which uses them too.

/// The longest message head (start line and headers) or trailer block.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Headers in one message head or trailer block.
pub(crate) const MAX_HEADERS: usize = 100;
/// The read buffer grows by this much when less than [`READ_MIN`] is free.
pub(crate) const READ_CHUNK: usize = 8 * 1024;
pub(crate) const READ_MIN: usize = 1024;
/// Bytes gathered before they are written.
pub(crate) const WRITE_HIGH: usize = 64 * 1024;
/// A body piece this large is written as it is, not copied; a write buffer
/// grown beyond this by a large body is not kept for the next message, so
/// an idle connection stays small.
pub(crate) const WRITE_KEEP: usize = 16 * 1024;
/// The longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The endpoint closed the connection; `.0` says when.
    #[error("connection closed by the endpoint {0}")]
    Closed(&'static str),
    /// The response head is not HTTP/1.x.
    #[error("invalid response head: {0}")]
    Head(String),
    /// The response head did not end within [`MAX_HEAD`] bytes.
    #[error("response head longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A malformed or contradictory `content-length` in the response.
    #[error("invalid content-length in the response")]
    ContentLength,
    /// A malformed chunk in a chunked response body.
    #[error("invalid chunked encoding in the response body: {0}")]
    Chunk(&'static str),
    /// The request cannot be framed as it is.
    #[error("invalid request: {0}")]
    Request(&'static str),
    /// The request body failed, or did not match its `content-length`.
    #[error("request body: {0}")]
    RequestBody(BoxError),
}

impl From<io::Error> for H1Error {
    fn from(e: io::Error) -> H1Error {
        H1Error::Io(e)
    }
}

/// A connection's transport: TCP, or TLS over TCP (`client.tls`).
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1.1 connection and its buffers.
pub(crate) struct Connection {
    io: Io,
    /// Bytes read and not yet consumed.
    inbox: Inbox,
    /// The request being written (head, and small bodies with it).
    write: Vec<u8>,
    /// Whether any byte was read since the current exchange began.
    answered: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("buffered", &self.inbox.read.len())
            .finish_non_exhaustive()
    }
}

/// A request head to send, borrowed: the caller keeps its headers (for a
/// retry, or to requeue the request on another connection) and the
/// encoder only reads them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    /// Origin form: `/path?query`.
    pub(crate) target: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// Written after `headers` ([`super::Added`]).
    pub(crate) added: &'a [(&'a http::HeaderName, &'a [u8])],
    /// Whether the response's headers may stay as the endpoint sent them
    /// ([`Verbatim`]): only when our HTTP/1.1 server writes the response.
    pub(crate) verbatim: bool,
    /// The caller's header lines as sent: written before `headers`.
    pub(crate) lines: Option<&'a RequestLines>,
}

/// A response head, how to read its body, and whether the connection may
/// carry another exchange after it.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its map is empty when the headers are in `verbatim`.
    pub(crate) head: Response<()>,
    pub(crate) verbatim: Option<Verbatim>,
    pub(crate) body: Decoder,
    pub(crate) reusable: bool,
}

/// How the rest of a response body is read.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of a chunk.
    Chunked(Chunk),
    /// Until the endpoint closes the connection.
    Eof,
    /// The body has ended.
    Done,
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailers, then the final CRLF.
    Trailers,
}

impl Decoder {
    /// Whether the body has been read to its end.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// The bytes left, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// How a body is framed on the wire (a request's here, a response's in
/// the server, [`crate::proxy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// As it comes, until the connection closes (a response to an
    /// HTTP/1.0 client whose length is not known in advance).
    Close,
}

/// Tracks what the body sent so far, against its framing.
pub(crate) struct Framer {
    framing: Framing,
    sent: u64,
}

impl Framer {
    /// A body about to be sent with `framing`.
    pub(crate) fn new(framing: Framing) -> Framer {
        Framer { framing, sent: 0 }
    }

    /// Append `data`, framed, to `out`.
    pub(crate) fn data(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), H1Error> {
        if data.is_empty() {
            return Ok(());
        }
        self.open(out, data.len())?;
        out.extend_from_slice(data);
        self.close(out);
        Ok(())
    }

    /// Account for `len` bytes of data and append what goes before them
    /// (a chunk's size line).
    pub(crate) fn open(&mut self, out: &mut Vec<u8>, len: usize) -> Result<(), H1Error> {
        let len = len as u64;
        match self.framing {
            Framing::Close => {}
            Framing::Empty => return Err(body_error("sent data where none was declared")),
            Framing::Length(n) if self.sent + len > n => {
                return Err(body_error("longer than its content-length"));
            }
            Framing::Length(_) => {}
            Framing::Chunked => {
                push_hex(out, len);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.sent += len;
        Ok(())
    }

    /// Append what goes after a piece of data (a chunk's CRLF).
    pub(crate) fn close(&self, out: &mut Vec<u8>) {
        if self.framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Append the end of the body (the last chunk and trailers) to `out`.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<u8>,
        trailers: Option<&HeaderMap>,
    ) -> Result<(), H1Error> {
        match self.framing {
            Framing::Empty | Framing::Close => Ok(()),
            Framing::Length(n) if self.sent == n => Ok(()),
            Framing::Length(_) => Err(body_error("shorter than its content-length")),
            Framing::Chunked => {
                out.extend_from_slice(b"0\r\n");
                if let Some(t) = trailers {
                    push_headers(out, t);
                }
                out.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }
}

fn body_error(what: &'static str) -> H1Error {
    H1Error::RequestBody(what.into())
}

fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

#[inline]
fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// What a message's own headers say about its framing and its
/// connection, gathered while its head is read (instead of lookups in a
/// map afterwards): a response's here, a request's in the server
/// ([`crate::proxy`]).
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// `content-length`: its value (all values must agree).
    pub(crate) length: Option<Result<u64, ()>>,
    /// `transfer-encoding`: whether its last coding is `chunked`.
    pub(crate) chunked: Option<bool>,
    /// `connection` names `close`.
    pub(crate) close: bool,
    /// `connection` names `keep-alive`.
    pub(crate) keep_alive: bool,
    /// `expect: 100-continue`.
    pub(crate) expect_continue: bool,
    /// There is a `date` header.
    pub(crate) dated: bool,
    /// `via` or any `l5d-` header: one the forwarder reads before routing
    /// or one it would replace ([`crate::proxy::headers::RoutingHeaders`]).
    pub(crate) context: bool,
}

impl Facts {
    /// Note a header; `true` when it concerns this connection only and
    /// all it says is noted (`transfer-encoding`, `keep-alive`, and a
    /// `connection` that names nothing but `close` or `keep-alive`): such
    /// a header is not kept in the map, as the proxy would only remove it.
    pub(crate) fn note(&mut self, name: &[u8], value: &[u8]) -> bool {
        match name.len() {
            14 if folded(name, b"content-length") => {
                for part in value.split(|&b| b == b',') {
                    let n = parse_decimal(part.trim_ascii()).ok_or(());
                    self.length = match (self.length, n) {
                        (None, n) => Some(n),
                        (Some(Ok(a)), Ok(b)) if a == b => Some(Ok(a)),
                        _ => Some(Err(())),
                    };
                }
                false
            }
            17 if folded(name, b"transfer-encoding") => {
                let coding = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                self.chunked = Some(folded(coding.trim_ascii(), b"chunked"));
                true
            }
            10 if folded(name, b"connection") => {
                let mut only_ours = true;
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if folded(token, b"close") {
                        self.close = true;
                    } else if folded(token, b"keep-alive") {
                        self.keep_alive = true;
                    } else if !token.is_empty() {
                        only_ours = false;
                    }
                }
                only_ours
            }
            10 if folded(name, b"keep-alive") => true,
            4 if folded(name, b"date") => {
                self.dated = true;
                false
            }
            6 if folded(name, b"expect") => {
                self.expect_continue |= folded(value.trim_ascii(), b"100-continue");
                false
            }
            3 => {
                self.context |= folded(name, b"via");
                false
            }
            // The first byte alone rules out most names.
            n if n > 4 && name[0] | 0x20 == b'l' && folded(&name[..4], b"l5d-") => {
                self.context = true;
                false
            }
            _ => false,
        }
    }
}

/// Where one header lies in its head: name offset and length, value
/// offset and length.
pub(crate) type Span = (u32, u32, u32, u32);

/// Where a parsed head's headers lie in its buffer, so that names and
/// values can be windows on the head once it is split off the buffer. Most
/// heads have a few headers: those stay on the stack, without room for
/// [`MAX_HEADERS`] made (and zeroed, 1.6 KB) for every head.
///
/// Filled in place ([`Spans::fill`]): returned by value, its table was
/// copied once more per head.
pub(crate) struct Spans {
    few: [Span; Spans::FEW],
    /// How many of `few` are in use; `many` holds them all when more.
    len: usize,
    many: Vec<Span>,
}

impl Spans {
    const FEW: usize = 12;

    pub(crate) fn new() -> Spans {
        Spans {
            few: [(0, 0, 0, 0); Spans::FEW],
            len: 0,
            many: Vec::new(),
        }
    }

    /// The spans of `headers`, parsed from the buffer that starts at `base`.
    pub(crate) fn fill(&mut self, headers: &[httparse::Header<'_>], base: *const u8) {
        let base = base as usize;
        let span = |h: &httparse::Header<'_>| {
            (
                (h.name.as_ptr() as usize - base) as u32,
                h.name.len() as u32,
                (h.value.as_ptr() as usize - base) as u32,
                h.value.len() as u32,
            )
        };
        self.len = headers.len();
        if headers.len() > Spans::FEW {
            self.many = headers.iter().map(span).collect();
            return;
        }
        for (slot, h) in self.few.iter_mut().zip(headers) {
            *slot = span(h);
        }
    }

    pub(crate) fn as_slice(&self) -> &[Span] {
        match self.few.get(..self.len) {
            Some(few) => few,
            None => &self.many,
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [Span] {
        match self.few.get_mut(..self.len) {
            Some(few) => few,
            None => &mut self.many,
        }
    }
}

/// A response head's headers (`spans` into `head`) as a map; framing
/// headers of this connection are noted in `facts` and left out.
fn headers_map(head: &Bytes, spans: &[Span], facts: &mut Facts) -> Result<HeaderMap, H1Error> {
    // Room for what the proxy adds without regrowing the map.
    let mut headers = crate::proxy::headers::spare_maps::take(spans.len() + 4);
    for &(n, nl, v, vl) in spans {
        let (n, nl, v, vl) = (n as usize, nl as usize, v as usize, vl as usize);
        let (name, value) = (&head[n..n + nl], &head[v..v + vl]);
        if facts.note(name, value) {
            continue;
        }
        let name = HeaderName::from_bytes(name)
            .map_err(|_| H1Error::Head("invalid header name".into()))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl))
            .map_err(|_| H1Error::Head("invalid header value".into()))?;
        headers.append(name, value);
    }
    if facts.chunked.is_some() && facts.length.is_some() {
        // The body is framed by its transfer coding (RFC 9112 §6.3): a
        // length beside it says nothing true about what is passed on.
        headers.remove(CONTENT_LENGTH);
    }
    Ok(headers)
}

/// The header lines of a head (`spans` into `head`) that pass through
/// unchanged, made contiguous in `head`: the connection's framing headers
/// (those [`Facts::note`] takes) are cut out and noted in `facts`, and the
/// spans of the lines kept follow them. `None` when a header needs the
/// proxy's attention (`passes` says no: [`passes`] for a response, the
/// server's own rule for a request), or a line does not end in CRLF: the
/// head then goes into a map, untouched.
pub(crate) fn passed_through(
    head: &mut BytesMut,
    spans: &mut [Span],
    facts: &mut Facts,
    passes: fn(&[u8], &[u8]) -> bool,
) -> Option<std::ops::Range<usize>> {
    // Where the blank line that ends the head begins.
    let end = head
        .len()
        .checked_sub(2)
        .filter(|&e| head[e..] == *b"\r\n")?;
    let Some(&(first, ..)) = spans.first() else {
        return Some(end..end);
    };
    let line_end = |i: usize| spans.get(i + 1).map_or(end, |s| s.0 as usize);
    // MAX_HEADERS fits.
    let mut cut: u128 = 0;
    for (i, &(n, nl, v, vl)) in spans.iter().enumerate() {
        let (n, nl, v, vl) = (n as usize, nl as usize, v as usize, vl as usize);
        let stop = line_end(i);
        if stop < v + vl + 2 || head[stop - 2..stop] != *b"\r\n" {
            return None;
        }
        let (name, value) = (&head[n..n + nl], &head[v..v + vl]);
        if facts.note(name, value) {
            cut |= 1 << i;
        } else if !passes(name, value) {
            return None;
        }
    }
    if facts.chunked.is_some() && facts.length.is_some() {
        return None;
    }
    let first = first as usize;
    if cut == 0 {
        return Some(first..end);
    }
    let mut to = first;
    for i in 0..spans.len() {
        let from = spans[i].0 as usize;
        // The next line has not moved yet.
        let stop = spans.get(i + 1).map_or(end, |s| s.0 as usize);
        if cut & (1 << i) == 0 {
            head.copy_within(from..stop, to);
            // The line moved back by `from - to`; so did its name and value.
            let back = (from - to) as u32;
            spans[i].0 -= back;
            spans[i].2 -= back;
            to += stop - from;
        }
    }
    Some(first..to)
}

/// Whether a response header (other than the connection's framing ones)
/// is one the proxy neither reads nor changes: not `l5d-*` or `grpc-*`
/// (classification), not hop-by-hop (`connection` naming other headers,
/// `te`, `upgrade`, `proxy-*`), not a gRPC `content-type` (telemetry waits
/// for its trailers).
fn passes(name: &[u8], value: &[u8]) -> bool {
    let prefixed = |p: &[u8]| name.len() > p.len() && folded(&name[..p.len()], p);
    match name.first().map_or(0, |b| b | 0x20) {
        b'l' => !prefixed(b"l5d-"),
        b'g' => !prefixed(b"grpc-"),
        b'p' => !prefixed(b"proxy-"),
        b't' => !folded(name, b"te"),
        b'u' => !folded(name, b"upgrade"),
        b'c' => match name.len() {
            10 => !folded(name, b"connection"),
            12 if folded(name, b"content-type") => !value
                .get(..16)
                .is_some_and(|v| folded(v, b"application/grpc")),
            _ => true,
        },
        _ => true,
    }
}

/// Whether `s`, a header name or a token of a header value, is `lower` in
/// any case, where `lower` is lower case letters, digits and `-./`.
///
/// Setting bit 0x20 of every byte turns an upper case letter into its
/// lower case and leaves those characters as they are; the only other
/// bytes it could turn into one of them are control characters, which
/// names and values never hold (httparse and `HeaderValue` refuse them).
/// So the comparison goes eight bytes at a time: header names compared
/// here byte by byte were a twentieth of a request's instructions.
pub(crate) fn folded(s: &[u8], lower: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    fn half(s: &[u8], at: usize) -> u32 {
        let mut w = [0; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    }
    const FOLD: u64 = u64::from_le_bytes([0x20; 8]);
    let n = s.len();
    if n != lower.len() {
        return false;
    }
    match n {
        0..4 => s.iter().zip(lower).all(|(a, b)| a | 0x20 == *b),
        4..8 => {
            let fold = FOLD as u32;
            half(s, 0) | fold == half(lower, 0) && half(s, n - 4) | fold == half(lower, n - 4)
        }
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(s, at) | FOLD != word(lower, at) {
                    return false;
                }
                at += 8;
            }
            word(s, n - 8) | FOLD == word(lower, n - 8)
        }
    }
}

/// How a request's body goes on the wire, given what its own headers
/// declare, and the framing header to add (the caller's own
/// `content-length` or `transfer-encoding` is kept).
fn request_framing(
    method: &Method,
    declared: &Facts,
    body: &ProxyBody,
) -> Result<(Framing, Option<Framing>), H1Error> {
    if let Some(chunked) = declared.chunked {
        if !chunked {
            return Err(H1Error::Request(
                "transfer-encoding does not end in chunked",
            ));
        }
        return Ok((Framing::Chunked, None));
    }
    match declared.length {
        Some(Ok(n)) => return Ok((Framing::Length(n), None)),
        Some(Err(())) => return Err(H1Error::Request("invalid content-length")),
        None => {}
    }
    if body.is_end_stream() {
        let carries = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return Ok((Framing::Empty, carries.then_some(Framing::Length(0))));
    }
    Ok(match body.size_hint().exact() {
        Some(n) => (Framing::Length(n), Some(Framing::Length(n))),
        None => (Framing::Chunked, Some(Framing::Chunked)),
    })
}

/// [`push_headers`] for a request head, noting on the way what its headers
/// declare about its body (no lookups in the map).
fn push_request_headers(out: &mut Vec<u8>, headers: &HeaderMap, declared: &mut Facts) {
    for (name, value) in headers {
        if *name == CONTENT_LENGTH || *name == TRANSFER_ENCODING {
            declared.note(name.as_str().as_bytes(), value.as_bytes());
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Whether `buf` holds the beginning of a final (not 1xx) response, after
/// any complete interim ones.
fn final_response_began(mut buf: &[u8]) -> bool {
    loop {
        // "HTTP/1.1 100" is 12 bytes: enough to tell the class.
        if buf.len() < 12 {
            return false;
        }
        if !buf.starts_with(b"HTTP/1.") || buf.get(9) != Some(&b'1') {
            return true;
        }
        match memchr::memmem::find(buf, b"\r\n\r\n") {
            Some(end) => buf = &buf[end + 4..],
            None => return false,
        }
    }
}

impl Connection {
    /// A connection over `io`, with nothing read yet.
    pub(crate) fn new(io: Io) -> Connection {
        Connection {
            io,
            inbox: Inbox {
                read: BytesMut::with_capacity(READ_CHUNK),
            },
            write: Vec::new(),
            answered: false,
        }
    }

    /// Whether any byte of the current exchange's response arrived.
    pub(crate) fn answered(&self) -> bool {
        self.answered
    }

    /// Whether bytes are buffered beyond the last response.
    pub(crate) fn has_leftover(&self) -> bool {
        !self.inbox.read.is_empty()
    }

    /// Whether an idle connection can carry a request: no byte, end of
    /// stream or error waits on it (an endpoint that closed the idle
    /// connection shows here, before a request is written on it). Reads
    /// nothing when the socket has no event.
    pub(crate) fn is_idle_open(&mut self) -> bool {
        if !self.inbox.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// Read more bytes into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.inbox.read.capacity() - self.inbox.read.len() < READ_MIN {
            // Reclaims the whole buffer when nothing else holds it.
            self.inbox.read.reserve(READ_CHUNK);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.inbox.read
        ))?;
        if n > 0 {
            self.answered = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Send a request and read the response head.
    pub(crate) async fn send(
        &mut self,
        req: Outgoing<'_>,
        mut body: ProxyBody,
    ) -> Result<Answer, H1Error> {
        self.answered = false;
        self.write.clear();
        let out = &mut self.write;
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(req.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut declared = Facts::default();
        if let Some(lines) = req.lines {
            out.extend_from_slice(lines.lines());
            declared.length = lines.length().map(Ok);
        }
        push_request_headers(out, req.headers, &mut declared);
        for (name, value) in req.added {
            push_header(out, name.as_str().as_bytes(), value);
        }
        let (framing, add) = request_framing(req.method, &declared, &body)?;
        match add {
            Some(Framing::Length(n)) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Some(Framing::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");

        let mut interrupted = false;
        if body.is_end_stream() {
            Framer { framing, sent: 0 }.finish(&mut self.write, None)?;
            self.io.write_all(&self.write).await?;
            self.io.flush().await?;
        } else {
            interrupted = self.send_body(&mut body, framing).await?;
        }
        if self.write.capacity() > WRITE_KEEP {
            self.write = Vec::new();
        }
        let mut answer = self.read_head(req.method, req.verbatim).await?;
        if interrupted {
            answer.reusable = false;
        }
        Ok(answer)
    }

    /// Write the head (already in `write`) and `body`, while reading what
    /// the endpoint sends. `Ok(true)` when a final response began before
    /// the whole body was sent (or the endpoint closed): the body is left.
    async fn send_body(&mut self, body: &mut ProxyBody, framing: Framing) -> Result<bool, H1Error> {
        let Connection {
            io, inbox, write, ..
        } = self;
        let read = &mut inbox.read;
        let mut framer = Framer { framing, sent: 0 };
        let sent = match io {
            Io::Plain(tcp) => {
                let (mut rd, mut wr) = tcp.split();
                race_body(&mut rd, &mut wr, read, write, body, &mut framer).await
            }
            Io::Tls(tls) => {
                let (mut rd, mut wr) = tokio::io::split(tls.as_mut());
                race_body(&mut rd, &mut wr, read, write, body, &mut framer).await
            }
        };
        // The buffer was empty when the exchange began.
        self.answered |= !self.inbox.read.is_empty();
        sent
    }

    /// Read until a response head is complete; interim (1xx) responses
    /// other than 101 are skipped.
    async fn read_head(&mut self, method: &Method, verbatim: bool) -> Result<Answer, H1Error> {
        loop {
            if !self.inbox.read.is_empty()
                && let Some(answer) = self.inbox.parse_head(method, verbatim)?
            {
                return Ok(answer);
            }
            let n = poll_fn(|cx| self.poll_fill(cx)).await?;
            if n == 0 {
                return Err(H1Error::Closed(if self.inbox.read.is_empty() {
                    "before responding"
                } else {
                    "in the middle of the response head"
                }));
            }
        }
    }

    /// The next frame of a response body read with `dec`; `dec` is
    /// [`Decoder::Done`] once the body has ended.
    pub(crate) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        dec: &mut Decoder,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        loop {
            match self.inbox.body_step(dec) {
                Ok(BodyStep::Frame(f)) => return Poll::Ready(Some(Ok(f))),
                Ok(BodyStep::End) => return Poll::Ready(None),
                Ok(BodyStep::More) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            let n = match ready!(self.poll_fill(cx)) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            };
            if n == 0 {
                return Poll::Ready(self.inbox.body_eof(dec).map(Err));
            }
        }
    }
}

/// What was read from the endpoint and not yet consumed, and how it is
/// taken apart: no I/O here, so it is the same whether the bytes come from
/// a socket in whatever pieces, or from a test or the fuzzer.
#[derive(Default)]
pub(crate) struct Inbox {
    /// Its allocation is reused once the windows handed out on it (header
    /// values, body chunks) are dropped.
    read: BytesMut,
}

/// What one step of a body's decoding came to.
#[derive(Debug)]
pub(crate) enum BodyStep {
    /// A data or trailers frame.
    Frame(Frame<Bytes>),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

impl Inbox {
    /// Append bytes (tests and the fuzzer; a connection reads into it).
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.read.extend_from_slice(bytes);
    }

    /// Bytes buffered and not consumed.
    pub(crate) fn len(&self) -> usize {
        self.read.len()
    }

    /// An inbox over bytes already read (the server hands its connection's
    /// buffer to a request body this way, and takes it back after).
    pub(crate) fn from_buf(read: BytesMut) -> Inbox {
        Inbox { read }
    }

    /// The buffer, to read into.
    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// The buffer, with what is left in it.
    pub(crate) fn into_buf(self) -> BytesMut {
        self.read
    }

    /// Parse the response head at the front of the buffer, when complete;
    /// with `verbatim`, its headers stay as lines where they can
    /// ([`Verbatim`]).
    fn parse_head(&mut self, method: &Method, verbatim: bool) -> Result<Option<Answer>, H1Error> {
        loop {
            let mut spans = Spans::new();
            let (len, code, minor) = {
                let mut slots =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut []);
                let status = httparse::ParserConfig::default()
                    .parse_response_with_uninit_headers(&mut res, &self.read, &mut slots)
                    .map_err(|e| H1Error::Head(e.to_string()))?;
                let httparse::Status::Complete(len) = status else {
                    // Incomplete: the head is longer than what is here.
                    if self.read.len() >= MAX_HEAD {
                        return Err(H1Error::HeadTooLarge);
                    }
                    return Ok(None);
                };
                if len > MAX_HEAD {
                    return Err(H1Error::HeadTooLarge);
                }
                spans.fill(res.headers, self.read.as_ptr());
                (len, res.code.unwrap_or(0), res.version.unwrap_or(1))
            };
            let status = StatusCode::from_u16(code)
                .map_err(|_| H1Error::Head(format!("invalid status code {code}")))?;
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                let _ = self.read.split_to(len);
                continue;
            }
            let mut head = self.read.split_to(len);
            let mut facts = Facts::default();
            let lines = if verbatim && status != StatusCode::SWITCHING_PROTOCOLS {
                passed_through(&mut head, spans.as_mut_slice(), &mut facts, passes)
            } else {
                None
            };
            let head = head.freeze();
            let (headers, verbatim) = match lines {
                Some(lines) => {
                    let length = facts.length.and_then(Result::ok);
                    // The head narrowed to its lines, not a window on it:
                    // one atomic count fewer up and down.
                    let mut head = head;
                    head.advance(lines.start);
                    head.truncate(lines.len());
                    let v = Verbatim::new(head, length, facts.dated);
                    (HeaderMap::new(), Some(v))
                }
                None => {
                    facts = Facts::default();
                    (headers_map(&head, spans.as_slice(), &mut facts)?, None)
                }
            };
            let version = if minor == 0 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            let no_body = *method == Method::HEAD
                || status == StatusCode::SWITCHING_PROTOCOLS
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            let (body, framed) = if no_body {
                (Decoder::Done, true)
            } else if let Some(chunked) = facts.chunked {
                if chunked {
                    // With a content-length beside it, the message is
                    // suspect: read it, but do not reuse the connection.
                    (Decoder::Chunked(Chunk::Size), facts.length.is_none())
                } else {
                    (Decoder::Eof, false)
                }
            } else {
                match facts.length {
                    Some(Err(())) => return Err(H1Error::ContentLength),
                    Some(Ok(0)) => (Decoder::Done, true),
                    Some(Ok(n)) => (Decoder::Length(n), true),
                    None => (Decoder::Eof, false),
                }
            };
            let reusable = framed
                && version == Version::HTTP_11
                && status != StatusCode::SWITCHING_PROTOCOLS
                && !facts.close;
            let mut resp = Response::new(());
            *resp.status_mut() = status;
            *resp.version_mut() = version;
            *resp.headers_mut() = headers;
            return Ok(Some(Answer {
                head: resp,
                verbatim,
                body,
                reusable,
            }));
        }
    }

    /// The next step of a body read with `dec` from what is buffered.
    pub(crate) fn body_step(&mut self, dec: &mut Decoder) -> Result<BodyStep, H1Error> {
        match dec {
            Decoder::Done => Ok(BodyStep::End),
            Decoder::Length(left) => {
                if self.read.is_empty() {
                    return Ok(BodyStep::More);
                }
                let n = (*left).min(self.read.len() as u64);
                let data = self.read.split_to(n as usize).freeze();
                *left -= n;
                if *left == 0 {
                    *dec = Decoder::Done;
                }
                Ok(BodyStep::Frame(Frame::data(data)))
            }
            Decoder::Eof => {
                if self.read.is_empty() {
                    return Ok(BodyStep::More);
                }
                Ok(BodyStep::Frame(Frame::data(self.read.split().freeze())))
            }
            Decoder::Chunked(state) => loop {
                match self.chunk_step(state)? {
                    Step::Frame(f) => return Ok(BodyStep::Frame(f)),
                    Step::Again => continue,
                    Step::End => {
                        *dec = Decoder::Done;
                        return Ok(BodyStep::End);
                    }
                    Step::Trailers(t) => {
                        *dec = Decoder::Done;
                        return Ok(BodyStep::Frame(Frame::trailers(t)));
                    }
                    Step::More => return Ok(BodyStep::More),
                }
            },
        }
    }

    /// The connection ended while `dec` wanted more: the end of a body
    /// framed by the close, else an error.
    pub(crate) fn body_eof(&self, dec: &mut Decoder) -> Option<H1Error> {
        match dec {
            Decoder::Eof | Decoder::Done => {
                *dec = Decoder::Done;
                None
            }
            _ => Some(H1Error::Closed("before the response body ended")),
        }
    }

    /// One step of chunked decoding on what is buffered.
    fn chunk_step(&mut self, state: &mut Chunk) -> Result<Step, H1Error> {
        match *state {
            Chunk::Size => match httparse::parse_chunk_size(&self.read) {
                Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_LINE => {
                    Err(H1Error::Chunk("chunk-size line too long"))
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    let _ = self.read.split_to(used);
                    *state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    Ok(Step::Again)
                }
                Ok(httparse::Status::Partial) if self.read.len() >= MAX_CHUNK_LINE => {
                    Err(H1Error::Chunk("chunk-size line too long"))
                }
                Ok(httparse::Status::Partial) => Ok(Step::More),
                Err(_) => Err(H1Error::Chunk("invalid chunk size")),
            },
            Chunk::Data(left) => {
                if self.read.is_empty() {
                    return Ok(Step::More);
                }
                let n = left.min(self.read.len() as u64);
                let data = self.read.split_to(n as usize).freeze();
                *state = if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                };
                Ok(Step::Frame(Frame::data(data)))
            }
            Chunk::DataEnd => match self.read.first() {
                None => Ok(Step::More),
                Some(b'\n') => {
                    let _ = self.read.split_to(1);
                    *state = Chunk::Size;
                    Ok(Step::Again)
                }
                Some(b'\r') => match self.read.get(1) {
                    None => Ok(Step::More),
                    Some(b'\n') => {
                        let _ = self.read.split_to(2);
                        *state = Chunk::Size;
                        Ok(Step::Again)
                    }
                    Some(_) => Err(H1Error::Chunk("no CRLF after chunk data")),
                },
                Some(_) => Err(H1Error::Chunk("no CRLF after chunk data")),
            },
            Chunk::Trailers => {
                match self.read.first() {
                    None => return Ok(Step::More),
                    Some(b'\n') => {
                        let _ = self.read.split_to(1);
                        return Ok(Step::End);
                    }
                    Some(b'\r') => match self.read.get(1) {
                        None => return Ok(Step::More),
                        Some(b'\n') => {
                            let _ = self.read.split_to(2);
                            return Ok(Step::End);
                        }
                        Some(_) => {}
                    },
                    Some(_) => {}
                }
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(&self.read, &mut slots) {
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_HEAD => {
                        Err(H1Error::Chunk("trailers too long"))
                    }
                    Ok(httparse::Status::Complete((used, hs))) => {
                        let mut trailers = HeaderMap::with_capacity(hs.len());
                        for h in hs {
                            let name = HeaderName::from_bytes(h.name.as_bytes())
                                .map_err(|_| H1Error::Chunk("invalid trailer name"))?;
                            let value = HeaderValue::from_bytes(h.value)
                                .map_err(|_| H1Error::Chunk("invalid trailer value"))?;
                            trailers.append(name, value);
                        }
                        let _ = self.read.split_to(used);
                        Ok(Step::Trailers(trailers))
                    }
                    Ok(httparse::Status::Partial) if self.read.len() >= MAX_HEAD => {
                        Err(H1Error::Chunk("trailers too long"))
                    }
                    Ok(httparse::Status::Partial) => Ok(Step::More),
                    Err(_) => Err(H1Error::Chunk("invalid trailers")),
                }
            }
        }
    }
}

/// A response decoded from bytes alone (see [`decode`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The final status.
    pub status: u16,
    /// The head's headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's bytes.
    pub body: Vec<u8>,
    /// The trailers, when the body had any.
    pub trailers: Option<Vec<(String, Vec<u8>)>>,
    /// Whether the connection could carry another exchange.
    pub reusable: bool,
}

fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// `name: value` lines taken apart.
fn lines(lines: &[u8]) -> Vec<(String, Vec<u8>)> {
    lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let colon = l.iter().position(|&b| b == b':').unwrap_or(l.len());
            let (name, value) = l.split_at(colon);
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            (
                String::from_utf8_lossy(name).to_ascii_lowercase(),
                value.to_vec(),
            )
        })
        .collect()
}

/// Decode `data` as the whole response to a `method` request, as a
/// connection would when the bytes arrive `piece` at a time and the
/// endpoint closes after them: for tests and the fuzz target, which check
/// that the pieces do not change the outcome.
pub fn decode(data: &[u8], method: &Method, piece: usize) -> Result<Decoded, String> {
    decode_with(data, method, piece, false)
}

/// [`decode`] for a response whose header lines may pass through as they
/// came ([`Verbatim`]): the headers are the lines taken apart again (names
/// in lower case), and must be what [`decode`] finds, in the order of the
/// lines rather than grouped by name.
pub fn decode_verbatim(data: &[u8], method: &Method, piece: usize) -> Result<Decoded, String> {
    decode_with(data, method, piece, true)
}

fn decode_with(
    data: &[u8],
    method: &Method,
    piece: usize,
    verbatim: bool,
) -> Result<Decoded, String> {
    let mut pieces = data.chunks(piece.max(1));
    let mut inbox = Inbox::default();
    let answer = loop {
        if let Some(a) = inbox
            .parse_head(method, verbatim)
            .map_err(|e| e.to_string())?
        {
            break a;
        }
        match pieces.next() {
            Some(p) => inbox.extend(p),
            None => return Err(H1Error::Closed("before responding").to_string()),
        }
    };
    let mut dec = answer.body;
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match inbox.body_step(&mut dec).map_err(|e| e.to_string())? {
            BodyStep::Frame(f) => match f.into_data() {
                Ok(d) => body.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok().map(|t| pairs(&t)),
            },
            BodyStep::End => break,
            BodyStep::More => match pieces.next() {
                Some(p) => inbox.extend(p),
                None => match inbox.body_eof(&mut dec) {
                    Some(e) => return Err(e.to_string()),
                    None => break,
                },
            },
        }
    }
    // What a connection would do next: bytes beyond the response are
    // stray, and forbid reuse.
    let rest = pieces.map(<[u8]>::len).sum::<usize>();
    Ok(Decoded {
        status: answer.head.status().as_u16(),
        headers: match &answer.verbatim {
            Some(v) => lines(v.lines()),
            None => pairs(answer.head.headers()),
        },
        body,
        trailers,
        reusable: answer.reusable && inbox.len() == 0 && rest == 0,
    })
}

/// What one step of chunked decoding came to.
enum Step {
    /// A data frame.
    Frame(Frame<Bytes>),
    /// The trailers, and the end.
    Trailers(HeaderMap),
    /// The end, without trailers.
    End,
    /// Progress was made: step again.
    Again,
    /// More bytes are needed.
    More,
}

/// Write the head (in `write`) and the body, while reading what the
/// endpoint sends into `read`. `Ok(true)` when a final response began (or
/// the endpoint closed) before the body was all sent.
async fn race_body<R, W>(
    rd: &mut R,
    wr: &mut W,
    read: &mut BytesMut,
    write: &mut Vec<u8>,
    body: &mut ProxyBody,
    framer: &mut Framer,
) -> Result<bool, H1Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let sending = async {
        loop {
            // A frame already available joins what waits to be written;
            // otherwise what waits goes out first.
            let frame = if write.is_empty() {
                body.frame().await
            } else {
                match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
                    Poll::Ready(f) => f,
                    Poll::Pending => {
                        wr.write_all(write).await?;
                        wr.flush().await?;
                        write.clear();
                        continue;
                    }
                }
            };
            match frame {
                None => {
                    framer.finish(write, None)?;
                    break;
                }
                Some(Err(e)) => return Err(H1Error::RequestBody(e)),
                Some(Ok(f)) => match f.into_data() {
                    // A large piece goes out as it is, not copied.
                    Ok(data) if data.len() >= WRITE_KEEP => {
                        framer.open(write, data.len())?;
                        wr.write_all(write).await?;
                        write.clear();
                        wr.write_all(&data).await?;
                        framer.close(write);
                    }
                    Ok(data) => framer.data(write, &data)?,
                    Err(f) => {
                        framer.finish(write, f.trailers_ref())?;
                        break;
                    }
                },
            }
            if write.len() >= WRITE_HIGH {
                wr.write_all(write).await?;
                write.clear();
            }
        }
        wr.write_all(write).await?;
        wr.flush().await?;
        write.clear();
        Ok::<(), H1Error>(())
    };
    let mut sending = pin!(sending);
    loop {
        if read.capacity() - read.len() < READ_MIN {
            read.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            sent = &mut sending => {
                return match sent {
                    Ok(()) => Ok(false),
                    // The endpoint may have answered and closed without
                    // reading the rest (a 413): its answer is the response.
                    Err(H1Error::Io(e)) => match drain_answer(rd, read).await {
                        true => Ok(true),
                        false => Err(H1Error::Io(e)),
                    },
                    Err(e) => Err(e),
                };
            }
            n = rd.read_buf(read) => {
                if n? == 0 || final_response_began(read) {
                    return Ok(true);
                }
                if read.len() >= MAX_HEAD {
                    return Err(H1Error::HeadTooLarge);
                }
            }
        }
    }
}

/// After a failed write: read what the endpoint sent before it closed, and
/// say whether a final response began in it.
async fn drain_answer<R: AsyncRead + Unpin>(rd: &mut R, read: &mut BytesMut) -> bool {
    while !final_response_began(read) && read.len() < MAX_HEAD {
        if read.capacity() - read.len() < READ_MIN {
            read.reserve(READ_CHUNK);
        }
        match rd.read_buf(read).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    final_response_began(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_formatting() {
        let mut v = Vec::new();
        push_hex(&mut v, 0);
        v.push(b' ');
        push_hex(&mut v, 0x1a2f);
        v.push(b' ');
        push_decimal(&mut v, 0);
        v.push(b' ');
        push_decimal(&mut v, 18_446_744_073_709_551_615);
        assert_eq!(v, b"0 1a2f 0 18446744073709551615");
    }

    #[test]
    fn folded_comparison_is_ascii_case_insensitive_equality_without_control_bytes() {
        let targets: &[&[u8]] = &[
            b"te",
            b"via",
            b"date",
            b"l5d-",
            b"close",
            b"expect",
            b"chunked",
            b"upgrade",
            b"connection",
            b"keep-alive",
            b"content-type",
            b"100-continue",
            b"content-length",
            b"application/grpc",
            b"transfer-encoding",
        ];
        // Bytes a header name or value may hold: no control byte but tab.
        let bytes = (0x20..=0xffu8).chain([b'\t']);
        for lower in targets {
            assert!(folded(lower, lower));
            assert!(folded(&lower.to_ascii_uppercase(), lower));
            assert!(!folded(&lower[1..], lower));
            for at in 0..lower.len() {
                for b in bytes.clone() {
                    let mut s = lower.to_vec();
                    s[at] = b;
                    assert_eq!(
                        folded(&s, lower),
                        s.eq_ignore_ascii_case(lower),
                        "{:?} vs {:?}",
                        String::from_utf8_lossy(&s),
                        String::from_utf8_lossy(lower)
                    );
                }
            }
        }
    }

    #[test]
    fn response_framing_facts_come_from_the_raw_headers() {
        let facts = |hs: &[(&str, &str)]| {
            let mut f = Facts::default();
            for (n, v) in hs {
                f.note(n.as_bytes(), v.as_bytes());
            }
            f
        };
        let f = facts(&[
            ("Content-Length", "5"),
            ("x-other", "1"),
            ("content-length", "5, 5"),
        ]);
        assert_eq!((f.length, f.chunked, f.close), (Some(Ok(5)), None, false));
        assert_eq!(
            facts(&[("content-length", "5"), ("content-length", "6")]).length,
            Some(Err(()))
        );
        for bad in ["", "-1", "1e3", "+5", "99999999999999999999"] {
            assert_eq!(
                facts(&[("content-length", bad)]).length,
                Some(Err(())),
                "{bad:?}"
            );
        }
        assert_eq!(
            facts(&[("Transfer-Encoding", "gzip, chunked")]).chunked,
            Some(true)
        );
        assert_eq!(
            facts(&[("transfer-encoding", "chunked, gzip")]).chunked,
            Some(false)
        );
        assert!(facts(&[("Connection", "keep-alive, Close")]).close);
        assert!(!facts(&[("connection", "keep-alive"), ("x-close", "close")]).close);
    }

    #[test]
    fn requests_are_framed_by_what_they_declare_else_by_their_body() {
        use http_body_util::{Empty, Full};
        let empty = || Empty::new().map_err(|never| match never {}).boxed();
        let full = || {
            Full::new(Bytes::from_static(b"abc"))
                .map_err(|never| match never {})
                .boxed()
        };
        let declared = |hs: &[(&str, &str)]| {
            let mut f = Facts::default();
            for (n, v) in hs {
                f.note(n.as_bytes(), v.as_bytes());
            }
            f
        };
        let none = Facts::default();
        assert_eq!(
            request_framing(&Method::GET, &none, &empty()).unwrap(),
            (Framing::Empty, None)
        );
        assert_eq!(
            request_framing(&Method::POST, &none, &empty()).unwrap(),
            (Framing::Empty, Some(Framing::Length(0)))
        );
        assert_eq!(
            request_framing(&Method::PUT, &none, &full()).unwrap(),
            (Framing::Length(3), Some(Framing::Length(3)))
        );
        let cl = declared(&[("content-length", "3")]);
        assert_eq!(
            request_framing(&Method::PUT, &cl, &full()).unwrap(),
            (Framing::Length(3), None)
        );
        let te = declared(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            request_framing(&Method::PUT, &te, &full()).unwrap(),
            (Framing::Chunked, None)
        );
        for bad in [
            declared(&[("transfer-encoding", "gzip")]),
            declared(&[("content-length", "3"), ("content-length", "4")]),
        ] {
            assert!(request_framing(&Method::PUT, &bad, &full()).is_err());
        }
    }

    #[test]
    fn responses_decode_the_same_whatever_pieces_they_arrive_in() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;a=b\r\nhello\r\n1\r\n \n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nok",
        ];
        for data in cases {
            let whole = decode(data, &Method::GET, data.len());
            for piece in 1..8 {
                assert_eq!(
                    decode(data, &Method::GET, piece),
                    whole,
                    "{piece}: {data:?}"
                );
            }
        }
        let chunked = decode(cases[1], &Method::GET, 1).unwrap();
        assert_eq!(chunked.body, b"hello ");
        assert_eq!(chunked.trailers.unwrap().len(), 2);
        assert!(chunked.reusable);
        let eof = decode(cases[2], &Method::GET, 3).unwrap();
        assert_eq!(
            (eof.body.as_slice(), eof.reusable),
            (b"until the end".as_slice(), false)
        );
        assert!(
            decode(cases[5], &Method::GET, 4)
                .unwrap_err()
                .contains("closed")
        );
        assert!(
            decode(cases[6], &Method::GET, 4)
                .unwrap_err()
                .contains("chunk")
        );
        assert!(!decode(cases[7], &Method::GET, 4).unwrap().reusable);
        assert!(
            decode(cases[8], &Method::GET, 4)
                .unwrap_err()
                .contains("content-length")
        );
        let head = decode(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            &Method::HEAD,
            2,
        );
        assert_eq!(head.unwrap().body, b"");
    }

    /// The map path's headers, grouped by name as a map iterates them.
    fn by_name(mut d: Decoded) -> Decoded {
        d.headers.sort_by(|a, b| a.0.cmp(&b.0));
        d
    }

    #[test]
    fn header_lines_pass_through_as_sent_without_the_connections_own() {
        let verbatim = |data: &[u8]| {
            let mut inbox = Inbox::default();
            inbox.extend(data);
            let a = inbox.parse_head(&Method::GET, true).unwrap().unwrap();
            assert_eq!(a.verbatim.is_some(), a.head.headers().is_empty());
            a.verbatim
        };
        // nginx's: `connection` goes, the rest stays in its case and order.
        let v = verbatim(
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 29 Nov 2026 07:00:00 GMT\r\n\
              Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        )
        .unwrap();
        assert_eq!(
            v.lines(),
            b"Server: nginx\r\nDate: Sun, 29 Nov 2026 07:00:00 GMT\r\n\
              Content-Type: text/plain\r\nContent-Length: 2\r\n"
        );
        assert_eq!((v.length(), v.dated()), (Some(2), true));
        // Framing lines in the middle are cut out, the others closed up.
        let v = verbatim(
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\nx-b: 2  \r\n\
              keep-alive: timeout=5\r\nconnection: close\r\nx-c: 3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(v.lines(), b"x-a: 1\r\nx-b: 2  \r\nx-c: 3\r\n");
        assert_eq!((v.length(), v.dated()), (None, false));
        // Nothing but framing, or no header at all.
        let v = verbatim(b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n");
        assert_eq!(v.unwrap().lines(), b"");
        assert_eq!(verbatim(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().lines(), b"");
        // Headers the proxy reads or removes, and lines it would not send
        // as they are, go through the map.
        for other in [
            "l5d-success-class: 0.0",
            "L5D-Retryable: true",
            "grpc-status: 0",
            "content-type: application/grpc+proto",
            "te: trailers",
            "upgrade: h2c",
            "proxy-authenticate: Basic",
            "connection: x-hop",
            "content-length: 3\r\ntransfer-encoding: chunked",
        ] {
            let data = format!("HTTP/1.1 200 OK\r\nx-a: 1\r\n{other}\r\n\r\n");
            assert_eq!(verbatim(data.as_bytes()), None, "{other}");
        }
        assert_eq!(verbatim(b"HTTP/1.1 200 OK\nx-a: 1\n\n"), None);
        assert_eq!(verbatim(b"HTTP/1.1 200 OK\r\nx-a: 1\n\r\n"), None);
        assert_eq!(
            verbatim(b"HTTP/1.1 101 Switching Protocols\r\nx-a: 1\r\n\r\n"),
            None
        );
        // Lengths beside a transfer coding are not passed on either way.
        let d = decode(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            &Method::GET,
            64,
        )
        .unwrap();
        assert!(d.headers.is_empty(), "{:?}", d.headers);
    }

    #[test]
    fn responses_decode_the_same_with_their_lines_kept_or_in_a_map() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nX-A: 1\r\nx-a:  2 \r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\nx: 1\r\n\r\nHTTP/1.1 200 OK\r\nkeep-alive: 1\r\n\
              Transfer-Encoding: chunked\r\nx-b: 2\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ngrpc-status: 0\r\nx-a: 1\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nx-a: 1\r\n\r\nuntil the end",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nx-a: \xff\r\ncontent-length: 0\r\n\r\n",
        ];
        for data in cases {
            let map = decode(data, &Method::GET, data.len()).map(by_name);
            for piece in [1, 3, data.len()] {
                let kept = decode_verbatim(data, &Method::GET, piece).map(by_name);
                assert_eq!(kept, map, "{piece}: {data:?}");
            }
        }
    }

    #[test]
    fn heads_and_chunk_lines_have_a_size_limit_however_they_arrive() {
        let refused = |data: &[u8], why: &str| {
            for piece in [100, 1000, data.len()] {
                let e = decode(data, &Method::GET, piece).unwrap_err();
                assert!(e.contains(why), "{piece}: {e}");
            }
        };
        let mut big = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        big.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        refused(&big, "longer");
        let mut line = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;".to_vec();
        line.resize(line.len() + MAX_CHUNK_LINE, b'x');
        line.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        refused(&line, "too long");
    }

    #[test]
    fn interim_responses_are_not_final_ones() {
        assert!(!final_response_began(b""));
        assert!(!final_response_began(b"HTTP/1.1 10"));
        assert!(!final_response_began(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!final_response_began(b"HTTP/1.1 100 Continue\r\n"));
        assert!(final_response_began(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Too"
        ));
        assert!(final_response_began(b"HTTP/1.1 413 Payload"));
        assert!(final_response_began(b"garbage that is long"));
    }

    #[test]
    fn framers_check_the_declared_length() {
        let mut out = Vec::new();
        let mut f = Framer {
            framing: Framing::Length(3),
            sent: 0,
        };
        f.data(&mut out, b"ab").unwrap();
        assert!(f.finish(&mut out, None).is_err());
        assert!(f.data(&mut out, b"cd").is_err());
        f.data(&mut out, b"c").unwrap();
        f.finish(&mut out, None).unwrap();
        assert_eq!(out, b"abc");

        let mut out = Vec::new();
        let mut f = Framer {
            framing: Framing::Chunked,
            sent: 0,
        };
        f.data(&mut out, b"hello world, twenty").unwrap();
        f.data(&mut out, b"").unwrap();
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        f.finish(&mut out, Some(&t)).unwrap();
        assert_eq!(
            out,
            b"13\r\nhello world, twenty\r\n0\r\ngrpc-status: 0\r\n\r\n".as_slice()
        );
    }
}
