//! The system namers (`/$/...`), pure: they parse, they do not resolve.
//!
//! Finagle's `Namer.global` knows `/$/inet`, `/$/fail` and `/$/nil`, and
//! instantiates any other `/$/<class>` by reflection; Linkerd ships a few such
//! classes, the rewriting namers, which turn one path into another. We know
//! the same set by name; any other `/$/<name>` is an error, as a missing
//! class is in Finagle (spec §6.2).

use core::net::{IpAddr, SocketAddr};
use std::fmt;

use super::bind::{Name, NamerAnswer, Namers};
use super::path::Path;
use super::tree::NameTree;

/// What the system namers make of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum SystemAnswer {
    /// `/$/inet/<host>/<port>/...` (and `/$/fixedinet`, `/$/io.buoyant.rinet`):
    /// a bound name whose endpoints come from resolving `host`.
    Inet {
        /// The client id, e.g. `/$/inet/127.0.0.1/8080`.
        id: Path,
        /// Host name or IP literal; empty means localhost.
        host: String,
        /// Port.
        port: u16,
        /// What follows the id.
        residual: Path,
    },
    /// A tree whose leaves are bound again: `/$/fail` → `!`, `/$/nil` → `$`,
    /// and the rewriting namers (`/$/io.buoyant.hostportPfx/...` → a new path).
    Tree(NameTree<Path>),
    /// `/$/<unknown>/...` or a malformed system path: a binding error.
    Error(String),
    /// Not a `/$/` path: the answer is `~`.
    NotSystem,
}

/// Ask the system namers about `path`.
///
/// Order as in Finagle: `/$/inet/<host>/<port>` (and `fixedinet`), then the
/// short `/$/inet/<port>`, then `/$/fail...`, `/$/nil...`, then the named
/// namers; an unknown name is `Error("Unknown namer: <name> for path: <path>")`,
/// Linkerd's wording. Matching is label-wise: `/$/failure` is not `/$/fail`.
pub fn lookup(path: &Path) -> SystemAnswer {
    let e: Vec<String> = path
        .elems()
        .iter()
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
        .collect();
    let Some((first, rest)) = e.split_first() else {
        return SystemAnswer::NotSystem;
    };
    if first != "$" {
        return SystemAnswer::NotSystem;
    }
    let Some((kind, args)) = rest.split_first() else {
        // `/$` alone names no namer.
        return SystemAnswer::NotSystem;
    };
    match kind.as_str() {
        "inet" | "fixedinet" => inet(path, args).unwrap_or_else(|| unknown(kind, path)),
        "fail" => SystemAnswer::Tree(NameTree::Fail),
        "nil" => SystemAnswer::Tree(NameTree::Empty),
        "io.buoyant.rinet" => rinet(path, args),
        "io.buoyant.hostportPfx" => rewrite(host_port_pfx(args, false)),
        "io.buoyant.porthostPfx" => rewrite(host_port_pfx(args, true)),
        "io.buoyant.http.anyMethod" => rewrite(any_method(args)),
        "io.buoyant.http.anyMethodPfx" => rewrite(any_method_pfx(args)),
        "io.buoyant.http.anyHost" => rewrite(any_host(args)),
        "io.buoyant.http.anyHostPfx" => rewrite(any_host_pfx(args)),
        "io.buoyant.http.subdomainOf" => rewrite(subdomain_of(args)),
        "io.buoyant.http.subdomainOfPfx" => rewrite(subdomain_of_pfx(args)),
        "io.buoyant.http.domainToPath" => rewrite(domain_to_path(args)),
        "io.buoyant.http.domainToPathPfx" => rewrite(domain_to_path_pfx(args)),
        _ => unknown(kind, path),
    }
}

fn unknown(kind: &str, path: &Path) -> SystemAnswer {
    SystemAnswer::Error(format!("Unknown namer: {kind} for path: {path}"))
}

fn parse_port(s: &str) -> Option<u16> {
    // Digits only (Java's parseInt would also take a sign; see spec §10).
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `args` is what follows `/$/inet`. `None` when neither form matches.
fn inet(path: &Path, args: &[String]) -> Option<SystemAnswer> {
    // The id keeps the original labels after `/$/inet` (fixedinet too).
    let inet_id = |n: usize| {
        let mut v = Path::from_strs(&["$", "inet"])?.elems().to_vec();
        v.extend_from_slice(path.elems().get(2..2 + n)?);
        Some(Path::from_labels(v))
    };
    if let [host, port, ..] = args
        && let Some(p) = parse_port(port)
        && let Some(id) = inet_id(2)
    {
        return Some(SystemAnswer::Inet {
            id,
            host: host.clone(),
            port: p,
            residual: path.drop(4),
        });
    }
    if let [port, ..] = args
        && let Some(p) = parse_port(port)
        && let Some(id) = inet_id(1)
    {
        return Some(SystemAnswer::Inet {
            id,
            host: String::new(),
            port: p,
            residual: path.drop(3),
        });
    }
    None
}

/// `/$/io.buoyant.rinet/<port>/<host>/...`: inet with port first; the id
/// keeps the rinet form, as Linkerd's does.
fn rinet(path: &Path, args: &[String]) -> SystemAnswer {
    match args {
        [port, host, ..] => match parse_port(port) {
            Some(p) => SystemAnswer::Inet {
                id: path.take(4),
                host: host.clone(),
                port: p,
                residual: path.drop(4),
            },
            None => SystemAnswer::Error(format!(
                "Invalid port {port} in {path}: expected an integer 0-65535"
            )),
        },
        _ => SystemAnswer::Tree(NameTree::Neg),
    }
}

/// A rewriting namer's answer: the new path is bound again; no match is `~`.
fn rewrite(new: Option<Vec<String>>) -> SystemAnswer {
    match new.and_then(|v| Path::from_strs(&v)) {
        Some(p) => SystemAnswer::Tree(NameTree::Leaf(p)),
        None => SystemAnswer::Tree(NameTree::Neg),
    }
}

fn with_rest(mut head: Vec<String>, rest: &[String]) -> Vec<String> {
    head.extend_from_slice(rest);
    head
}

/// `host:port`, split on `:` into exactly two parts, the port being a DNS
/// label of at most 63 characters (so named ports such as `http` pass), as
/// Linkerd's `HostColonPort`.
fn host_colon_port(s: &str) -> Option<(String, String)> {
    // Java's split drops trailing empty strings.
    let mut parts: Vec<&str> = s.split(':').collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    match parts.as_slice() {
        [host, port] if !host.is_empty() && is_dns_label(port) => {
            Some((host.to_string(), port.to_string()))
        }
        _ => None,
    }
}

/// `[a-z0-9][-a-z0-9]*[a-z0-9]?`, at most 63 characters.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// `/pfx/host:port/etc` → `/pfx/host/port/etc` (or `/pfx/port/host/etc`).
fn host_port_pfx(args: &[String], port_first: bool) -> Option<Vec<String>> {
    let [pfx, hp, rest @ ..] = args else {
        return None;
    };
    let (host, port) = host_colon_port(hp)?;
    let head = if port_first {
        vec![pfx.clone(), port, host]
    } else {
        vec![pfx.clone(), host, port]
    };
    Some(with_rest(head, rest))
}

/// Linkerd's coarse host match: `^[A-Za-z0-9.:_-]+$`.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'_' | b'-'))
}

fn is_method(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_uppercase())
}

/// The part of `hostname` (port dropped) before `.domain`, if it ends so.
fn subdomain(domain: &str, hostname: &str) -> Option<String> {
    let host = match hostname.find(':') {
        Some(i) if i > 0 => &hostname[..i],
        _ => hostname,
    };
    let sfx = format!(".{domain}");
    host.strip_suffix(sfx.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `host.split("\\.")` in Java: empty trailing parts dropped.
fn java_split_dots(host: &str) -> Vec<String> {
    let mut parts: Vec<String> = host.split('.').map(str::to_string).collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

fn any_method(args: &[String]) -> Option<Vec<String>> {
    let [m, rest @ ..] = args else { return None };
    is_method(m).then(|| rest.to_vec())
}

fn any_method_pfx(args: &[String]) -> Option<Vec<String>> {
    let [pfx, m, rest @ ..] = args else {
        return None;
    };
    is_method(m).then(|| with_rest(vec![pfx.clone()], rest))
}

fn any_host(args: &[String]) -> Option<Vec<String>> {
    let [h, rest @ ..] = args else { return None };
    is_host(h).then(|| rest.to_vec())
}

fn any_host_pfx(args: &[String]) -> Option<Vec<String>> {
    let [pfx, h, rest @ ..] = args else {
        return None;
    };
    is_host(h).then(|| with_rest(vec![pfx.clone()], rest))
}

/// `/buoyant.io/foo.buoyant.io/etc` → `/foo/etc`.
fn subdomain_of(args: &[String]) -> Option<Vec<String>> {
    let [domain, host, rest @ ..] = args else {
        return None;
    };
    if !is_host(domain) || !is_host(host) {
        return None;
    }
    subdomain(domain, host).map(|sub| with_rest(vec![sub], rest))
}

/// `/buoyant.io/pfx/foo.buoyant.io/etc` → `/pfx/foo/etc`.
fn subdomain_of_pfx(args: &[String]) -> Option<Vec<String>> {
    let [domain, pfx, host, rest @ ..] = args else {
        return None;
    };
    if !is_host(domain) || !is_host(host) {
        return None;
    }
    subdomain(domain, host).map(|sub| with_rest(vec![pfx.clone(), sub], rest))
}

/// `/foo.buoyant.io/etc` → `/io/buoyant/foo/etc`.
fn domain_to_path(args: &[String]) -> Option<Vec<String>> {
    let [host, rest @ ..] = args else {
        return None;
    };
    if !is_host(host) {
        return None;
    }
    let mut v = java_split_dots(host);
    v.reverse();
    Some(with_rest(v, rest))
}

/// `/pfx/foo.buoyant.io/etc` → `/pfx/io/buoyant/foo/etc`.
fn domain_to_path_pfx(args: &[String]) -> Option<Vec<String>> {
    let [pfx, host, rest @ ..] = args else {
        return None;
    };
    if !is_host(host) {
        return None;
    }
    let mut v = java_split_dots(host);
    v.reverse();
    let mut head = vec![pfx.clone()];
    head.extend(v);
    Some(with_rest(head, rest))
}

// === SystemNamers ===

/// A name bound by the system namers alone (`/$/inet/...`): its client id and
/// the residual path. `switchyard dtab bind|explain` and tests bind with it,
/// without resolving anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SystemBound {
    /// The client id, e.g. `/$/inet/127.0.0.1/8080`.
    pub id: Path,
    /// What followed the id in the bound path.
    pub residual: Path,
}

impl fmt::Display for SystemBound {
    /// Finagle shows a bound name by its id only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// [`Namers`] that know only the system namers: `/#/...` and every other
/// non-`/$/` path are `~`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemNamers;

impl Namers<SystemBound> for SystemNamers {
    fn lookup(&mut self, path: &Path) -> NamerAnswer<SystemBound> {
        system_answer(path)
    }
}

/// The system namers' answer in the form [`Namers::lookup`] returns, for
/// namers that fall back to them.
pub fn system_answer(path: &Path) -> NamerAnswer<SystemBound> {
    match lookup(path) {
        SystemAnswer::Inet { id, residual, .. } => {
            NamerAnswer::Tree(NameTree::Leaf(Name::Bound(SystemBound { id, residual })))
        }
        SystemAnswer::Tree(t) => NamerAnswer::Tree(t.map(&mut |p: &Path| Name::Path(p.clone()))),
        SystemAnswer::Error(m) => NamerAnswer::Error(m),
        SystemAnswer::NotSystem => NamerAnswer::Tree(NameTree::Neg),
    }
}

impl SystemBound {
    /// The address, when the host is an IP literal (or empty: the wildcard
    /// address, as Java's `new InetSocketAddress(port)`); a host name would
    /// need DNS, which this pure module does not do.
    ///
    /// Ids are inet paths (`/$/inet/<host>/<port>`, `/$/inet/<port>`,
    /// `/$/io.buoyant.rinet/<port>/<host>`), so the id is read again.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let SystemAnswer::Inet { host, port, .. } = lookup(&self.id) else {
            return None;
        };
        let ip: IpAddr = if host.is_empty() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            host.parse().ok()?
        };
        Some(SocketAddr::new(ip, port))
    }
}
