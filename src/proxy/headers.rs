//! Header rules of a Linkerd 1 hop: hop-by-hop removal, `Via`, the
//! per-request dtab headers and the `l5d-dst-*` annotations.

use std::str::FromStr;
use std::sync::LazyLock;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE, VIA};
use rand::Rng;

use crate::client::Added;
use crate::dtab::{Dtab, ParseError};

/// Propagated per-request dtab (read, then re-written downstream).
pub const L5D_CTX_DTAB: &str = "l5d-ctx-dtab";
/// User-supplied per-request dtab (read, never forwarded raw).
pub const L5D_DTAB: &str = "l5d-dtab";
/// Marks an error the proxy generated; URL-encoded message.
pub const L5D_ERR: &str = "l5d-err";
/// The failed request never reached the application and may be retried.
pub const L5D_RETRYABLE: &str = "l5d-retryable";
/// The logical name the request was identified as.
pub const L5D_DST_SERVICE: &str = "l5d-dst-service";
/// The bound (client) name the request was sent to.
pub const L5D_DST_CLIENT: &str = "l5d-dst-client";
/// The residual path of the bound name.
pub const L5D_DST_RESIDUAL: &str = "l5d-dst-residual";
/// Request id for correlation, generated when absent.
pub const L5D_REQID: &str = "l5d-reqid";
/// What this proxy appends to `Via`.
pub const VIA_VALUE: &str = "1.1 switchyard";

/// The headers the proxy writes on every request, as names checked once at
/// compile time rather than on each insert.
pub mod names {
    use http::header::HeaderName;

    /// `l5d-ctx-dtab`.
    pub const L5D_CTX_DTAB: HeaderName = HeaderName::from_static(super::L5D_CTX_DTAB);
    /// `l5d-dtab`.
    pub const L5D_DTAB: HeaderName = HeaderName::from_static(super::L5D_DTAB);
    /// `l5d-dst-service`.
    pub const L5D_DST_SERVICE: HeaderName = HeaderName::from_static(super::L5D_DST_SERVICE);
    /// `l5d-dst-client`.
    pub const L5D_DST_CLIENT: HeaderName = HeaderName::from_static(super::L5D_DST_CLIENT);
    /// `l5d-dst-residual`.
    pub const L5D_DST_RESIDUAL: HeaderName = HeaderName::from_static(super::L5D_DST_RESIDUAL);
    /// `l5d-reqid`.
    pub const L5D_REQID: HeaderName = HeaderName::from_static(super::L5D_REQID);
    /// The names above as statics, for lists of references ([`super::Own`]).
    pub(crate) mod statics {
        use http::header::HeaderName;
        pub(crate) static L5D_CTX_DTAB: HeaderName = super::L5D_CTX_DTAB;
        pub(crate) static L5D_DST_SERVICE: HeaderName = super::L5D_DST_SERVICE;
        pub(crate) static L5D_DST_CLIENT: HeaderName = super::L5D_DST_CLIENT;
        pub(crate) static L5D_DST_RESIDUAL: HeaderName = super::L5D_DST_RESIDUAL;
        pub(crate) static L5D_REQID: HeaderName = super::L5D_REQID;
    }
    /// `keep-alive`.
    pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
}

/// The proxy's own request headers for a request that came with none of
/// them ([`RoutingHeaders::Absent`]): handed to the client as a list
/// ([`Added`]) rather than inserted into the request's map.
pub(crate) struct Own<'a> {
    pairs: [(&'a HeaderName, &'a [u8]); Own::MAX],
    len: usize,
}

static VIA_NAME: HeaderName = VIA;

impl<'a> Own<'a> {
    /// `via`, `l5d-dst-service`, `l5d-reqid`, `l5d-ctx-dtab`,
    /// `l5d-dst-client`, `l5d-dst-residual`.
    const MAX: usize = 6;

    /// The list with this proxy's `via` in it.
    pub(crate) fn new() -> Own<'a> {
        Own {
            pairs: [(&VIA_NAME, VIA_VALUE.as_bytes()); Own::MAX],
            len: 1,
        }
    }

    pub(crate) fn push(&mut self, name: &'a HeaderName, value: &'a [u8]) {
        debug_assert!(self.len < Own::MAX, "more own headers than room");
        if let Some(slot) = self.pairs.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    pub(crate) fn added(&self) -> Added<'_> {
        Added(&self.pairs[..self.len])
    }
}

/// A response's header lines as the endpoint sent them, for our HTTP/1.1
/// server to write as they are: parsing them into a map, and the map back
/// into lines, was a tenth of a request's instructions, for headers
/// nothing on the way reads. Only a response whose headers the proxy has
/// no business with comes this way (no `l5d-`, `grpc-`, hop-by-hop or gRPC
/// content-type header beyond the connection's own framing, which is
/// taken out); the response's map is then empty, and anything a layer
/// puts in it is written after these lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verbatim {
    /// Whole `name: value\r\n` lines.
    lines: Bytes,
    /// `content-length`, when there is one (all its values agree).
    length: Option<u64>,
    /// Whether there is a `date` line.
    dated: bool,
}

impl Verbatim {
    /// `lines` must be whole header lines, each ending in CRLF, that the
    /// proxy would pass on unchanged.
    pub(crate) fn new(lines: Bytes, length: Option<u64>, dated: bool) -> Verbatim {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        Verbatim {
            lines,
            length,
            dated,
        }
    }

    /// The lines, as they go on the wire.
    pub(crate) fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The `content-length` the lines declare.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    /// Whether a `date` line is among them.
    pub(crate) fn dated(&self) -> bool {
        self.dated
    }
}

/// A request's header lines as the caller sent them, for the client to
/// write as they are: the request-side counterpart of [`Verbatim`]. The
/// caller's headers went into a map only for the client to write the map
/// back out, a twentieth of a request's instructions, when all the proxy
/// reads of them before routing is `Host`. Only our HTTP/1.1 server makes
/// them, for an origin-form request with no header the proxy reads or
/// changes (no `via` or `l5d-`, no hop-by-hop header beyond the
/// connection's framing, which is taken out, not both `content-length`
/// and `transfer-encoding`), on a router with no tracer and no gRPC
/// deadlines; the request's map is then empty, and what a layer puts in
/// it is written after these lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestLines {
    /// Whole `name: value\r\n` lines.
    lines: Bytes,
    /// The first `host` value, as a range of `lines`.
    host: Option<(u32, u32)>,
    /// `content-length`, when there is one (among the lines).
    length: Option<u64>,
}

impl RequestLines {
    /// `lines` must be whole header lines, each ending in CRLF; `host`, the
    /// range of the first `host` value in them.
    pub(crate) fn new(lines: Bytes, host: Option<(u32, u32)>, length: Option<u64>) -> RequestLines {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        RequestLines {
            lines,
            host,
            length,
        }
    }

    /// The lines, as they go on the wire.
    pub(crate) fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The `content-length` the lines declare.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    /// The first value of the header `name` (lower case), as sent.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        if name == "host" {
            let (at, n) = self.host?;
            return self.lines.get(at as usize..(at + n) as usize);
        }
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Each header's name and value, in order (values trimmed as a parser
    /// trims them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines.split(|&b| b == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], line[colon + 1..].trim_ascii()))
        })
    }

    /// The headers as a map, for an HTTP/2 send (which needs one).
    pub(crate) fn to_map(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::with_capacity(8);
        for (n, v) in self.iter() {
            let name = HeaderName::from_bytes(n).map_err(|_| "invalid header name".to_string())?;
            let value = HeaderValue::from_bytes(v)
                .map_err(|_| format!("invalid value for header {name}"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// The response headers the proxy adds, when our HTTP/1.1 server writes
/// the response: written after the response's own instead of inserted
/// into its map (an insert hashes the name, and may grow the map). Empty
/// when the map has them already (hyper's servers, or a response that
/// came with an `l5d-success-class` of its own, which ours replaces).
/// With them, the endpoint's own header lines when they bypassed the map
/// ([`Verbatim`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// The endpoint's own header lines, when they were kept as sent
    /// instead of in the response's map: written first.
    pub verbatim: Option<Verbatim>,
    /// `via: 1.1 switchyard`.
    pub via: bool,
    /// `l5d-success-class`, this value.
    pub success_class: Option<&'static str>,
}

impl Appended {
    /// Write them as HTTP/1.1 header lines.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        if self.via {
            out.extend_from_slice(b"via: ");
            out.extend_from_slice(VIA_VALUE.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(c) = self.success_class {
            out.extend_from_slice(b"l5d-success-class: ");
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Which server a request came through: where the proxy's response
/// headers go, and whether the request's headers may be lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Our HTTP/1.1 server: response headers as [`Appended`] lines; the
    /// request's header lines when it kept them as sent (its map is then
    /// empty).
    Ours(Option<RequestLines>),
    /// hyper (HTTP/2, TLS): into the map.
    Hyper,
}

/// Hex digits of a request id.
pub(crate) const REQID_LEN: usize = 16;

/// A fresh `l5d-reqid` value: 64 random bits as 16 hex digits.
pub fn request_id() -> HeaderValue {
    let text = request_id_text();
    // Hex digits are always a valid value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A fresh request id as its text, for a request whose proxy headers go
/// out as a list ([`Own`]): no `Bytes` is made for it. (A shared chunk per
/// thread, cut into ids, cost two atomic counts per request, one of them
/// on a cache line long cold by the time the response came back.)
pub(crate) fn request_id_text() -> [u8; REQID_LEN] {
    hex16(rand::rng().random())
}

/// `id` as 16 lower-case hex digits, eight at a time in a word (a loop
/// over digits cost about 70 instructions a request id).
fn hex16(id: u64) -> [u8; REQID_LEN] {
    // Byte k of the result holds nibble k of `half`.
    fn spread(half: u64) -> u64 {
        let x = (half | half << 16) & 0x0000_ffff_0000_ffff;
        let x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
        (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f
    }
    fn digits(nibbles: u64) -> [u8; 8] {
        // 0x01 in the bytes whose nibble is 10 or more: those get 'a' - '0' - 10.
        let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        (nibbles + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
    }
    let mut text = [0u8; REQID_LEN];
    text[..8].copy_from_slice(&digits(spread(id >> 32)));
    text[8..].copy_from_slice(&digits(spread(id & 0xffff_ffff)));
    text
}

/// Header maps of finished messages, kept per thread for the next ones.
///
/// Every proxied HTTP/1.1 exchange builds two maps (the request's, parsed
/// by the server; the response's, parsed by the client) of two allocations
/// each; a map cleared keeps its allocations, so a busy proxy makes none.
pub(crate) mod spare_maps {
    use std::cell::RefCell;

    use http::HeaderMap;

    /// Maps kept per thread at most.
    const KEEP: usize = 32;
    /// A map grown beyond this many entries (a message with many headers)
    /// is not kept: spares stay small.
    const LARGEST: usize = 64;

    thread_local! {
        static SPARES: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty map with room for at least `n` headers.
    pub(crate) fn take(n: usize) -> HeaderMap {
        let spare = SPARES.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        match spare {
            Some(mut map) => {
                map.reserve(n);
                map
            }
            None => HeaderMap::with_capacity(n),
        }
    }

    /// Keep `map`'s allocations for another message.
    pub(crate) fn give(mut map: HeaderMap) {
        // One never used (a response whose lines were kept) has nothing
        // to reuse.
        if map.capacity() > LARGEST || map.capacity() == 0 {
            return;
        }
        map.clear();
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(map);
            }
        });
    }
}

/// The empty dtab, shared: most requests carry no dtab headers, and a new
/// empty dtab would cost an allocation each.
static NO_DTAB: LazyLock<Dtab> = LazyLock::new(Dtab::empty);

/// Whether a request may carry `via` or any `l5d-` header: those the
/// forwarder reads before routing (`via`, `l5d-dtab`, `l5d-ctx-dtab`,
/// `l5d-ctx-deadline`) and those it sets (`l5d-dst-*`, `l5d-reqid`).
///
/// Our HTTP/1.1 parser sees every name go by and says [`RoutingHeaders::Absent`]
/// when none of them did (most requests). Then the four lookups before
/// routing (each a hash of a custom name) are skipped, and the headers the
/// proxy adds need not replace anything: they go to the client as a list
/// written after the caller's ([`crate::client::Added`]) instead of into the
/// map. Requests that come through hyper (HTTP/2, TLS) are
/// [`RoutingHeaders::Maybe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingHeaders {
    /// Look them up.
    Maybe,
    /// None of them is in the request.
    Absent,
}

/// The per-request dtab of a request with none.
pub(crate) fn no_local_dtab() -> Dtab {
    NO_DTAB.clone()
}

/// Remove hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `Transfer-Encoding`, `Upgrade`, and `TE` unless
/// it asks for trailers (then exactly `te: trailers` is kept, for gRPC).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at the names (standard ones compare as integers) decides
    // what there is to do; most messages carry none, or only `Connection`.
    let (mut connection, mut te, mut others) = (false, false, false);
    for k in headers.keys() {
        if k == CONNECTION {
            connection = true;
        } else if k == TE {
            te = true;
        } else if is_hop_by_hop(k) {
            others = true;
        }
    }
    if !(connection || te || others) {
        return;
    }
    // The names `Connection` lists are matched against the names present,
    // so no name is made (or hashed) for them; the usual lone `keep-alive`
    // (which goes anyway) needs no matching at all.
    let listed = headers.get_all(CONNECTION);
    let lists = connection && lists_names(&listed);
    if others || lists {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| *k != CONNECTION && *k != TE)
            .filter(|k| is_hop_by_hop(k) || (lists && is_listed(&listed, k)))
            .cloned()
            .collect();
        for k in doomed {
            headers.remove(&k);
        }
    }
    if connection {
        headers.remove(CONNECTION);
    }
    if te {
        let wants_trailers = headers.get_all(TE).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
                })
                .unwrap_or(false)
        });
        headers.remove(TE);
        if wants_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// Whether the `Connection` values name anything but `keep-alive`.
fn lists_names(listed: &http::header::GetAll<'_, HeaderValue>) -> bool {
    listed.iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|n| {
            let n = n.trim_ascii();
            !n.is_empty() && !n.eq_ignore_ascii_case(b"keep-alive")
        })
    })
}

/// Whether one of the `Connection` values names `k` (names compare
/// case-insensitively; `k` is lower case).
fn is_listed(listed: &http::header::GetAll<'_, HeaderValue>, k: &HeaderName) -> bool {
    let k = k.as_str().as_bytes();
    listed.iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|n| n.trim_ascii().eq_ignore_ascii_case(k))
    })
}

/// Whether `k` is hop-by-hop whatever `Connection` says (`TE` included:
/// the caller keeps `te: trailers`).
fn is_hop_by_hop(k: &HeaderName) -> bool {
    k == CONNECTION
        || k == TE
        || k == TRANSFER_ENCODING
        || k == UPGRADE
        || k == names::KEEP_ALIVE
        || is_proxy_header(k)
}

fn is_proxy_header(k: &HeaderName) -> bool {
    k.as_str().starts_with("proxy-")
}

/// How many proxies this request already went through (`Via` entries).
pub fn via_count(headers: &HeaderMap) -> usize {
    headers
        .get_all(VIA)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .filter(|e| !e.trim().is_empty())
                .count()
        })
        .sum()
}

/// Add this proxy to `Via`.
pub fn append_via(headers: &mut HeaderMap) {
    headers.append(VIA, HeaderValue::from_static(VIA_VALUE));
}

/// `clearContext`: forget everything an untrusted caller said about routing
/// and tracing (`l5d-ctx-*`, `l5d-dtab`, `l5d-sample`).
pub fn clear_context(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("l5d-ctx-") || k == L5D_DTAB || k == "l5d-sample"
        })
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(&k);
    }
}

/// A per-request dtab header that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Invalid {header} header {value:?}: {}", error.summary())]
pub struct DtabHeaderError {
    /// Which header (`l5d-dtab` or `l5d-ctx-dtab`).
    pub header: &'static str,
    /// The offending value.
    pub value: String,
    /// Where and what was expected.
    pub error: Box<ParseError>,
}

/// Read and remove `l5d-ctx-dtab` then `l5d-dtab` (every value, each a full
/// dtab), returning `ctx ++ user` so the caller's own entries win.
pub fn take_local_dtab(headers: &mut HeaderMap) -> Result<Dtab, DtabHeaderError> {
    let mut local = NO_DTAB.clone();
    if !headers.contains_key(names::L5D_CTX_DTAB) && !headers.contains_key(names::L5D_DTAB) {
        return Ok(local);
    }
    for header in [L5D_CTX_DTAB, L5D_DTAB] {
        for v in headers.get_all(header).iter() {
            let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let d = Dtab::from_str(&text).map_err(|e| DtabHeaderError {
                header,
                value: text.clone(),
                error: Box::new(e.with_source(header)),
            })?;
            local = local.concat(&d);
        }
        headers.remove(header);
    }
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-foo".parse().unwrap());
        h.insert("x-foo", "1".parse().unwrap());
        h.insert("x-bar", "1".parse().unwrap());
        h.insert("keep-alive", "1".parse().unwrap());
        h.insert("proxy-authorization", "1".parse().unwrap());
        h.insert("te", "gzip, trailers".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert!(h.get("x-bar").is_some());
    }

    #[test]
    fn hop_by_hop_named_by_connection_and_proxy_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "x-a, te".parse().unwrap());
        h.append("connection", "x-b".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert("x-b", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("proxy-a", "1".parse().unwrap());
        h.insert("proxy-b", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("host", "web".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["host", "te"]);
        let mut plain = HeaderMap::new();
        plain.insert("host", "web".parse().unwrap());
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
        let mut te = HeaderMap::new();
        te.insert("te", "gzip".parse().unwrap());
        strip_hop_by_hop(&mut te);
        assert!(te.is_empty());
        // Names listed in any case; the usual `Connection: keep-alive` alone.
        let mut mixed = HeaderMap::new();
        mixed.insert("connection", "Keep-Alive, X-Foo ,close".parse().unwrap());
        mixed.insert("x-foo", "1".parse().unwrap());
        mixed.insert("x-food", "1".parse().unwrap());
        strip_hop_by_hop(&mut mixed);
        let names: Vec<&str> = mixed.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-food"]);
        let mut usual = HeaderMap::new();
        usual.insert("connection", "keep-alive".parse().unwrap());
        usual.insert("content-length", "2".parse().unwrap());
        strip_hop_by_hop(&mut usual);
        let names: Vec<&str> = usual.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length"]);
    }

    #[test]
    fn request_ids_are_hex_and_differ() {
        let ids: Vec<HeaderValue> = (0..600).map(|_| request_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 16);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn hex_digits_are_the_ids() {
        for id in [
            0,
            1,
            0x9a,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
        ]
        .into_iter()
        .chain((0..1000).map(|_| rand::rng().random()))
        {
            assert_eq!(hex16(id), format!("{id:016x}").as_bytes(), "{id:x}");
        }
    }

    #[test]
    fn via_counts_entries() {
        let mut h = HeaderMap::new();
        h.append("via", "1.1 a, 1.1 b".parse().unwrap());
        h.append("via", "1.1 c".parse().unwrap());
        assert_eq!(via_count(&h), 3);
    }

    #[test]
    fn dtab_headers_compose() {
        let mut h = HeaderMap::new();
        h.append(L5D_DTAB, "/a=>/d".parse().unwrap());
        h.append(L5D_CTX_DTAB, "/a=>/b".parse().unwrap());
        h.append(L5D_CTX_DTAB, "/a=>/c".parse().unwrap());
        let d = take_local_dtab(&mut h).unwrap();
        assert_eq!(d.to_string(), "/a=>/b;/a=>/c;/a=>/d");
        assert!(h.is_empty());
    }

    #[test]
    fn bad_dtab_header_names_itself() {
        let mut h = HeaderMap::new();
        h.append(L5D_DTAB, "i am not a dtab".parse().unwrap());
        let e = take_local_dtab(&mut h).unwrap_err();
        assert_eq!(e.header, L5D_DTAB);
        assert!(e.to_string().contains("l5d-dtab"), "{e}");
    }
}
