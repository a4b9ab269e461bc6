//! Header rules of a Linkerd 1 hop: hop-by-hop removal, `Via`, the
//! per-request dtab headers and the `l5d-dst-*` annotations.

use std::str::FromStr;

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE, VIA};

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

/// Remove hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `Transfer-Encoding`, `Upgrade`, and `TE` unless
/// it asks for trailers (then exactly `te: trailers` is kept, for gRPC).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        if n != TE {
            headers.remove(&n);
        }
    }
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
    headers.remove(CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
    headers.remove("keep-alive");
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for k in proxy {
        headers.remove(&k);
    }
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
    let mut local = Dtab::empty();
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
