//! Identifiers: how a request becomes a logical name (`/svc/web`).
//!
//! Each [`Identifier`] is one of Linkerd 1's `identifier` kinds. A router
//! tries its list in order; the first that names the request wins, and when
//! none does, every identifier's reason is reported so the caller can see
//! why each one declined.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use http::header::{HOST, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, Version};

use super::cache::{BytesKey, ReadMap};
use super::router::Binding;
use crate::dtab::{Label, Path};
use crate::proxy::headers::RequestLines;

/// An identifier: how a request becomes a logical name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind")]
pub enum Identifier {
    /// `io.l5d.header.token {header}`: `/dstPrefix/<header value>`; default
    /// header `Host` (http) or `:authority` (h2).
    #[serde(rename = "io.l5d.header.token")]
    HeaderToken {
        /// `header`.
        header: String,
    },
    /// `io.l5d.methodAndHost {httpUriInDst}`: `/dstPrefix/1.1/<METHOD>/<host>[/uri]`.
    #[serde(rename = "io.l5d.methodAndHost", rename_all = "camelCase")]
    MethodAndHost {
        /// `httpUriInDst`; default false.
        http_uri_in_dst: bool,
    },
    /// `io.l5d.path {segments, consume}`: `/dstPrefix/<first N segments>`.
    #[serde(rename = "io.l5d.path")]
    Path {
        /// `segments`; default 1.
        segments: usize,
        /// `consume`: strip those segments before forwarding; default false.
        consume: bool,
    },
    /// `io.l5d.header {header}`: the header value is a path; default
    /// header `l5d-name`.
    #[serde(rename = "io.l5d.header")]
    Header {
        /// `header`.
        header: String,
    },
    /// `io.l5d.static {path}`: the same name for every request.
    #[serde(rename = "io.l5d.static")]
    Static {
        /// `path`.
        path: Path,
    },
    /// `io.l5d.header.path {header, segments}` (h2): a path from a header,
    /// default `:path`.
    #[serde(rename = "io.l5d.header.path")]
    HeaderPath {
        /// `header`.
        header: String,
        /// `segments`: how many are required and used; all when absent.
        segments: Option<usize>,
    },
}

impl Identifier {
    /// Linkerd's default identifier for a protocol.
    pub fn default_for(protocol: super::Protocol) -> Identifier {
        match protocol {
            super::Protocol::Http => Identifier::default_http(),
            super::Protocol::H2 => Identifier::default_h2(),
        }
    }

    /// The default identifier for http routers: `io.l5d.header.token` on `Host`.
    pub fn default_http() -> Identifier {
        Identifier::HeaderToken {
            header: "Host".to_string(),
        }
    }

    /// The default identifier for h2 routers: `io.l5d.header.token` on `:authority`.
    pub fn default_h2() -> Identifier {
        Identifier::HeaderToken {
            header: ":authority".to_string(),
        }
    }

    /// Linkerd's `kind` name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::HeaderToken { .. } => "io.l5d.header.token",
            Identifier::MethodAndHost { .. } => "io.l5d.methodAndHost",
            Identifier::Path { .. } => "io.l5d.path",
            Identifier::Header { .. } => "io.l5d.header",
            Identifier::Static { .. } => "io.l5d.static",
            Identifier::HeaderPath { .. } => "io.l5d.header.path",
        }
    }
}

/// A request named by an identifier.
#[derive(Clone, Debug, PartialEq)]
pub struct Identified {
    /// The logical name, `dstPrefix` included (`/svc/web`).
    pub path: Path,
    /// URI path segments to strip before forwarding (`io.l5d.path` with `consume`).
    pub consume_segments: usize,
}

/// No identifier could name the request; one reason per identifier tried.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct Unidentified {
    /// `(kind, reason)` for each identifier, in order.
    pub reasons: Vec<(&'static str, String)>,
}

impl fmt::Display for Unidentified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unable to identify request")?;
        if self.reasons.is_empty() {
            return f.write_str(": no identifier configured");
        }
        f.write_str(": ")?;
        for (i, (kind, why)) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{kind}: {why}")?;
        }
        Ok(())
    }
}

/// Try `identifiers` in order; the first name wins.
pub fn identify<B>(
    identifiers: &[Identifier],
    dst_prefix: &Path,
    req: &Request<B>,
) -> Result<Identified, Unidentified> {
    let req = View::of(req);
    let mut reasons = Vec::new();
    for id in identifiers {
        match identify_one(id, req) {
            Ok((suffix, consume_segments)) => {
                return Ok(Identified {
                    path: dst_prefix.concat(&suffix),
                    consume_segments,
                });
            }
            Err(why) => reasons.push((id.kind(), why)),
        }
    }
    Err(Unidentified { reasons })
}

/// The parts of a request an identifier looks at, so that a request and the
/// parts of one are identified alike without being put back together.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    method: &'a Method,
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    /// The header lines our HTTP/1.1 server kept as sent, when it did.
    lines: Option<&'a RequestLines>,
}

impl<'a> View<'a> {
    pub(crate) fn of<B>(req: &'a Request<B>) -> View<'a> {
        View {
            method: req.method(),
            version: req.version(),
            uri: req.uri(),
            headers: req.headers(),
            lines: None,
        }
    }

    /// The parts of a request, whose headers are `lines` when given
    /// (and `p`'s map, which the lines leave empty).
    pub(crate) fn of_parts(p: &'a Parts, lines: Option<&'a RequestLines>) -> View<'a> {
        View {
            method: &p.method,
            version: p.version,
            uri: &p.uri,
            headers: &p.headers,
            lines,
        }
    }

    fn method(&self) -> &'a Method {
        self.method
    }

    fn version(&self) -> Version {
        self.version
    }

    fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The first value of header `name`, as sent.
    fn header(&self, name: &HeaderName) -> Option<&'a [u8]> {
        if let Some(v) = self.lines.and_then(|l| l.get(name.as_str())) {
            return Some(v);
        }
        self.headers.get(name).map(HeaderValue::as_bytes)
    }
}

fn identify_one(id: &Identifier, req: View<'_>) -> Result<(Path, usize), String> {
    match id {
        Identifier::HeaderToken { header } => {
            let value = header_value(req, header)?;
            let label = Label::new(value.as_bytes()).map_err(|_| format!("{header} is empty"))?;
            Ok((Path::from_labels(vec![label]), 0))
        }
        Identifier::MethodAndHost { http_uri_in_dst } => {
            let method = method_label(req.method())?;
            let mut labels = Vec::new();
            match req.version() {
                Version::HTTP_10 => {
                    labels.push(label_of(b"1.0")?);
                    labels.push(method);
                }
                _ => {
                    let host = host_of(req).ok_or_else(|| "Host header is absent".to_string())?;
                    labels.push(label_of(b"1.1")?);
                    labels.push(method);
                    labels.push(
                        Label::new(host.to_ascii_lowercase().into_bytes())
                            .map_err(|_| "Host header is empty".to_string())?,
                    );
                }
            }
            if *http_uri_in_dst {
                labels.extend(uri_segments(req.uri().path()));
            }
            Ok((Path::from_labels(labels), 0))
        }
        Identifier::Path { segments, consume } => {
            let segs: Vec<Label> = uri_segments(req.uri().path()).collect();
            if segs.len() < *segments {
                return Err(format!(
                    "the path {} has fewer than {segments} segments",
                    req.uri().path()
                ));
            }
            let taken: Vec<Label> = segs.into_iter().take(*segments).collect();
            Ok((
                Path::from_labels(taken),
                if *consume { *segments } else { 0 },
            ))
        }
        Identifier::Header { header } => {
            let value = header_value(req, header)?;
            let path: Path = value
                .parse()
                .map_err(|e: crate::dtab::ParseError| format!("{header}: {}", e.summary()))?;
            Ok((path, 0))
        }
        Identifier::Static { path } => Ok((path.clone(), 0)),
        Identifier::HeaderPath { header, segments } => {
            let value = if header.eq_ignore_ascii_case(":path") {
                req.uri().path().to_string()
            } else {
                header_value(req, header)?
            };
            let segs: Vec<Label> = uri_segments(&value).collect();
            let segs = match segments {
                Some(n) if segs.len() < *n => {
                    return Err(format!("{value} has fewer than {n} segments"));
                }
                Some(n) => segs.into_iter().take(*n).collect(),
                None => segs,
            };
            if segs.is_empty() {
                return Err(format!("{header} has no path segments"));
            }
            Ok((Path::from_labels(segs), 0))
        }
    }
}

fn label_of(b: &[u8]) -> Result<Label, String> {
    Label::new(b).map_err(|e| e.to_string())
}

fn method_label(m: &Method) -> Result<Label, String> {
    label_of(m.as_str().as_bytes())
}

/// The request's host as sent: the `Host` header, else the URI authority (h2).
fn host_of(req: View<'_>) -> Option<String> {
    if let Some(h) = req.header(&HOST) {
        return Some(String::from_utf8_lossy(h).into_owned());
    }
    req.uri().authority().map(|a| a.as_str().to_string())
}

fn header_value(req: View<'_>, header: &str) -> Result<String, String> {
    if header.eq_ignore_ascii_case(":authority") || header.eq_ignore_ascii_case("host") {
        let v = host_of(req).ok_or_else(|| format!("{header} header is absent"))?;
        return if v.is_empty() {
            Err(format!("{header} header is empty"))
        } else {
            Ok(v)
        };
    }
    let name = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("{header} is not a valid header name"))?;
    match req.header(&name) {
        Some(v) if !v.is_empty() => Ok(String::from_utf8_lossy(v).into_owned()),
        Some(_) => Err(format!("{header} header is empty")),
        None => Err(format!("{header} header is absent")),
    }
}

/// The non-empty, percent-decoded segments of a URI path, as labels.
fn uri_segments(path: &str) -> impl Iterator<Item = Label> + '_ {
    path.split('/').filter(|s| !s.is_empty()).filter_map(|s| {
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
        Label::new(bytes).ok()
    })
}

/// A router's identifiers, each remembering the names it gave before.
///
/// Identifying parses and allocates (labels, paths); most requests repeat a
/// name already seen, so each identifier keeps the names it produced keyed
/// by the request bytes it read (the `Host` value, the leading path
/// segments, ...). A request like an earlier one is then named by one
/// lock-free lookup, without allocating, and with no local dtab bound too
/// (the name's link to its binding, [`Remembered`]). Failures are not kept:
/// they are explained afresh each time.
pub(crate) struct Identifiers {
    prefix: Path,
    capacity: usize,
    ids: Vec<Remembering>,
}

struct Remembering {
    id: Identifier,
    /// The header the identifier reads, checked once (`None`: the request
    /// line or `Host`, or a name that is not a valid header).
    header: Option<HeaderName>,
    /// It reads the host (`Host` or `:authority`), decided once.
    host: bool,
    names: ReadMap<BytesKey, Remembered>,
}

/// A remembered name and the binding it had under no local dtab, so that a
/// request repeating the name finds its destination in the same lookup:
/// with a thousand names in rotation, hashing the path again and probing
/// the bindings cache cost about five cache misses a request (callgrind's
/// cache simulation).
///
/// The link is weak: the bindings cache alone decides how long a binding
/// (and the namer watch it holds) lives. A dead link, or one to a binding
/// the cache let go, is looked up the long way and linked again.
pub(crate) struct Remembered {
    identified: Identified,
    bound: Mutex<Weak<Binding>>,
}

impl Remembered {
    fn new(identified: Identified, bound: Option<&Arc<Binding>>) -> Remembered {
        Remembered {
            identified,
            bound: Mutex::new(bound.map_or_else(Weak::new, Arc::downgrade)),
        }
    }

    fn link(&self) -> MutexGuard<'_, Weak<Binding>> {
        // A panic while linking left a weak pointer, valid or empty: go on.
        self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// Copied when a writer publishes a new map: the link goes along.
impl Clone for Remembered {
    fn clone(&self) -> Remembered {
        Remembered {
            identified: self.identified.clone(),
            bound: Mutex::new(self.link().clone()),
        }
    }
}

/// How [`Identifiers::identify_bound`] binds a name it has no live link for.
pub(crate) type Bind<'a> = &'a mut dyn FnMut(&Path) -> Arc<Binding>;

/// What [`Identifiers::identify_bound`] found.
pub(crate) enum Named {
    /// The name, and the binding `bind` gave it or it was linked to.
    Bound(Arc<Binding>, usize),
    /// The name alone (no `bind` was given).
    Only(Identified),
}

/// Room for a key composed from several parts (`io.l5d.methodAndHost`);
/// longer keys are not remembered.
const KEY_ROOM: usize = 256;

struct KeyBuf {
    bytes: [u8; KEY_ROOM],
    len: usize,
}

impl KeyBuf {
    fn new() -> KeyBuf {
        KeyBuf {
            bytes: [0; KEY_ROOM],
            len: 0,
        }
    }

    fn push(&mut self, b: &[u8]) -> Option<()> {
        let end = self.len.checked_add(b.len())?;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(b);
        self.len = end;
        Some(())
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

fn is_host(header: &str) -> bool {
    header.eq_ignore_ascii_case(":authority") || header.eq_ignore_ascii_case("host")
}

/// The raw bytes of the request's host, as [`host_of`] reads them.
fn host_bytes<'a>(req: View<'a>) -> Option<&'a [u8]> {
    match req.header(&HOST) {
        Some(h) => Some(h),
        None => req.uri().authority().map(|a| a.as_str().as_bytes()),
    }
}

/// The leading part of `path` that holds its first `n` non-empty segments.
fn leading_segments(path: &str, n: usize) -> &str {
    let mut seen = 0;
    let mut in_segment = false;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            if in_segment {
                in_segment = false;
                if seen == n {
                    return path.get(..i).unwrap_or(path);
                }
            }
        } else if !in_segment {
            in_segment = true;
            seen += 1;
        }
    }
    path
}

impl Remembering {
    /// The request bytes this identifier's answer depends on, all of them;
    /// `None` when they cannot be had without allocating.
    /// `buf` is made only for a key of several parts.
    fn key<'a>(&self, req: View<'a>, buf: &'a mut Option<KeyBuf>) -> Option<&'a [u8]> {
        let header = |req: View<'a>| req.header(self.header.as_ref()?);
        if self.host {
            return host_bytes(req);
        }
        match &self.id {
            Identifier::HeaderPath { header: h, .. } if h.eq_ignore_ascii_case(":path") => {
                Some(req.uri().path().as_bytes())
            }
            Identifier::HeaderToken { .. }
            | Identifier::Header { .. }
            | Identifier::HeaderPath { .. } => header(req),
            Identifier::Static { .. } => Some(b""),
            Identifier::Path { segments, .. } => {
                Some(leading_segments(req.uri().path(), *segments).as_bytes())
            }
            Identifier::MethodAndHost { http_uri_in_dst } => {
                let buf = buf.get_or_insert_with(KeyBuf::new);
                let version: &[u8] = if req.version() == Version::HTTP_10 {
                    b"0"
                } else {
                    b"1"
                };
                buf.push(version)?;
                buf.push(req.method().as_str().as_bytes())?;
                buf.push(b" ")?;
                buf.push(host_bytes(req).unwrap_or_default())?;
                if *http_uri_in_dst {
                    // Host bytes never hold a space: the path starts here.
                    buf.push(b" ")?;
                    buf.push(req.uri().path().as_bytes())?;
                }
                Some(buf.as_slice())
            }
        }
    }
}

impl Identifiers {
    /// `ids` under `prefix`, each remembering at most `capacity` names.
    pub(crate) fn new(ids: &[Identifier], prefix: &Path, capacity: usize) -> Identifiers {
        let ids = ids
            .iter()
            .map(|id| {
                let header = match id {
                    Identifier::HeaderToken { header }
                    | Identifier::Header { header }
                    | Identifier::HeaderPath { header, .. } => {
                        HeaderName::from_bytes(header.as_bytes()).ok()
                    }
                    _ => None,
                };
                let host = match id {
                    Identifier::HeaderToken { header }
                    | Identifier::Header { header }
                    | Identifier::HeaderPath { header, .. } => is_host(header),
                    _ => false,
                };
                Remembering {
                    id: id.clone(),
                    header,
                    host,
                    names: ReadMap::new(),
                }
            })
            .collect();
        Identifiers {
            prefix: prefix.clone(),
            capacity: capacity.max(1),
            ids,
        }
    }

    /// As [`identify`], from remembered names when the request repeats
    /// what an identifier read before.
    pub(crate) fn identify(&self, req: View<'_>) -> Result<Identified, Unidentified> {
        Ok(match self.identify_bound(req, None)? {
            Named::Only(identified) => identified,
            Named::Bound(b, consume_segments) => Identified {
                path: b.path().clone(),
                consume_segments,
            },
        })
    }

    /// As [`Identifiers::identify`], and with `bind` the name's binding
    /// under no local dtab: the one linked to the remembered name when it
    /// is still current (no clone of the name, no second lookup), else
    /// `bind`'s, then linked.
    pub(crate) fn identify_bound(
        &self,
        req: View<'_>,
        mut bind: Option<Bind<'_>>,
    ) -> Result<Named, Unidentified> {
        let mut reasons = Vec::new();
        for r in &self.ids {
            let mut buf = None;
            let key = r.key(req, &mut buf);
            if let Some(k) = key {
                let linked = bind.is_some();
                let hit = r.names.with(k, |e| {
                    let consume = e.identified.consume_segments;
                    match linked.then(|| e.link().upgrade()).flatten() {
                        Some(b) if b.is_current() => Ok((b, consume)),
                        _ => Err(e.identified.clone()),
                    }
                });
                match (hit, bind) {
                    (Some(Ok((b, consume))), _) => return Ok(Named::Bound(b, consume)),
                    (Some(Err(identified)), Some(bind)) => {
                        let b = bind(&identified.path);
                        r.names.with(k, |e| *e.link() = Arc::downgrade(&b));
                        return Ok(Named::Bound(b, identified.consume_segments));
                    }
                    (Some(Err(identified)), None) => return Ok(Named::Only(identified)),
                    (None, b) => bind = b,
                }
            }
            match identify_one(&r.id, req) {
                Ok((suffix, consume_segments)) => {
                    let found = Identified {
                        path: self.prefix.concat(&suffix),
                        consume_segments,
                    };
                    let bound = bind.map(|bind| bind(&found.path));
                    if let Some(k) = key {
                        let capacity = self.capacity;
                        let entry = Remembered::new(found.clone(), bound.as_ref());
                        r.names.update(|m| {
                            // Bounded: a caller inventing names starts the
                            // memory over rather than growing it.
                            if m.len() >= capacity {
                                m.clear();
                            }
                            m.insert(k.into(), entry);
                        });
                    }
                    return Ok(match bound {
                        Some(b) => Named::Bound(b, consume_segments),
                        None => Named::Only(found),
                    });
                }
                Err(why) => reasons.push((r.id.kind(), why)),
            }
        }
        Err(Unidentified { reasons })
    }
}

/// `path_and_query` with its first `n` path segments removed.
pub fn strip_segments(path_and_query: &str, n: usize) -> String {
    if n == 0 {
        return path_and_query.to_string();
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut rest = path;
    let mut removed = 0;
    while removed < n {
        let trimmed = rest.trim_start_matches('/');
        match trimmed.find('/') {
            Some(i) => rest = &trimmed[i..],
            None => rest = "",
        }
        if !trimmed.is_empty() {
            removed += 1;
        } else {
            break;
        }
    }
    let mut out = if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Path {
        "/svc".parse().unwrap()
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn name(ids: &[Identifier], r: &Request<()>) -> String {
        identify(ids, &svc(), r).unwrap().path.to_string()
    }

    #[test]
    fn header_token_keeps_port() {
        let r = req("GET", "/x", &[("host", "web:8080")]);
        assert_eq!(name(&[Identifier::default_http()], &r), "/svc/web:8080");
    }

    #[test]
    fn header_token_escapes_odd_bytes() {
        let r = req("GET", "/x", &[("host", "a b")]);
        assert_eq!(
            name(&[Identifier::default_http()], &r),
            "/svc/\\x61\\x20\\x62"
        );
    }

    #[test]
    fn authority_from_uri() {
        let r = req("GET", "http://Web.example/x", &[]);
        assert_eq!(name(&[Identifier::default_h2()], &r), "/svc/Web.example");
    }

    #[test]
    fn method_and_host() {
        let r = req("POST", "/a/b?q=1", &[("host", "WEB")]);
        let id = Identifier::MethodAndHost {
            http_uri_in_dst: true,
        };
        assert_eq!(name(&[id], &r), "/svc/1.1/POST/web/a/b");
    }

    #[test]
    fn path_identifier_and_consume() {
        let r = req("GET", "/users/42?x=1", &[]);
        let id = Identifier::Path {
            segments: 1,
            consume: true,
        };
        let got = identify(&[id], &svc(), &r).unwrap();
        assert_eq!(got.path.to_string(), "/svc/users");
        assert_eq!(got.consume_segments, 1);
        assert_eq!(strip_segments("/users/42?x=1", 1), "/42?x=1");
        assert_eq!(strip_segments("/users", 1), "/");
        assert_eq!(strip_segments("//a//b/c", 2), "/c");
    }

    #[test]
    fn header_path_for_grpc() {
        let r = req("POST", "/pkg.Svc/Method", &[]);
        let id = Identifier::HeaderPath {
            header: ":path".into(),
            segments: None,
        };
        assert_eq!(name(&[id], &r), "/svc/pkg.Svc/Method");
    }

    #[test]
    fn list_reports_every_reason() {
        let r = req("GET", "/", &[]);
        let ids = [
            Identifier::Header {
                header: "l5d-name".into(),
            },
            Identifier::Path {
                segments: 2,
                consume: false,
            },
        ];
        let err = identify(&ids, &svc(), &r).unwrap_err().to_string();
        assert!(
            err.contains("io.l5d.header: l5d-name header is absent"),
            "{err}"
        );
        assert!(err.contains("io.l5d.path"), "{err}");
    }

    #[test]
    fn header_value_must_be_path() {
        let r = req("GET", "/", &[("l5d-name", "not a path")]);
        let id = Identifier::Header {
            header: "l5d-name".into(),
        };
        assert!(identify(std::slice::from_ref(&id), &svc(), &r).is_err());
        let r = req("GET", "/", &[("l5d-name", "/web/v2")]);
        assert_eq!(name(&[id], &r), "/svc/web/v2");
    }

    #[test]
    fn remembered_names_match_fresh_ones() {
        let ids = [
            Identifier::Header {
                header: "l5d-name".into(),
            },
            Identifier::Path {
                segments: 2,
                consume: true,
            },
            Identifier::MethodAndHost {
                http_uri_in_dst: true,
            },
            Identifier::HeaderPath {
                header: "host".into(),
                segments: None,
            },
            Identifier::default_http(),
        ];
        let reqs = [
            req("GET", "/a/b/c", &[]),
            req("GET", "//a//b/d?x", &[]),
            req("GET", "/a", &[("host", "Web")]),
            req("POST", "/a", &[("host", "Web")]),
            req("GET", "/a", &[("l5d-name", "/x/y")]),
            req("GET", "/", &[("host", "web:80")]),
            req("GET", "http://auth.example/x", &[]),
            req("GET", "/", &[]),
        ];
        for first in 0..ids.len() {
            let cached = Identifiers::new(&ids[first..], &svc(), 2);
            for _ in 0..3 {
                for r in &reqs {
                    let want = identify(&ids[first..], &svc(), r);
                    let (parts, ()) = r.clone().into_parts();
                    let got = cached.identify(View::of_parts(&parts, None));
                    assert_eq!(got, want, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn leading_segments_cover_what_the_path_identifier_reads() {
        assert_eq!(leading_segments("/a/b/c", 2), "/a/b");
        assert_eq!(leading_segments("//a//b//c", 2), "//a//b");
        assert_eq!(leading_segments("/a", 2), "/a");
        assert_eq!(leading_segments("/a/", 1), "/a");
        assert_eq!(leading_segments("/", 1), "/");
    }

    #[test]
    fn static_name() {
        let r = req("GET", "/", &[]);
        let id = Identifier::Static {
            path: "/fixed".parse().unwrap(),
        };
        assert_eq!(name(&[id], &r), "/svc/fixed");
    }
}
