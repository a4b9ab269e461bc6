//! Names that change over time: namers, endpoint sets, and the live binder.
//!
//! CONTRACT (shared by the naming and routing work; keep these signatures):
//! * [`Endpoint`], [`Addr`], [`Bound`]: what a bound name resolves to, as a watch.
//! * [`Activity`]: a value that may still be pending or may have failed.
//! * [`Interpreter::bind`]: a watch of the bound tree for (base dtab ++ local, path),
//!   shared between callers and re-bound when a namer or the base dtab changes.
//!
//! The pieces: [`Namer`] (a live lookup under `/#/<prefix>`), [`FsNamer`]
//! (`io.l5d.fs`: one file per service, watched), [`InetResolver`] (`/$/inet`:
//! DNS, refreshed), [`Interpreter`] (the binder task per (local dtab, path)),
//! and [`watch_dtab_file`] (the `io.l5d.fs` interpreter's hot-reloaded dtab).

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::dtab::{AddrJson, AddressJson, BoundJson, Path};

pub mod dtab_file;
pub mod fs;
pub mod inet;
pub mod interpreter;
pub mod namer;

pub use dtab_file::{DtabFileError, DtabFileHandle, ReloadStats, watch_dtab_file};
pub use fs::{FsError, FsNamer};
pub use inet::InetResolver;
pub use interpreter::Interpreter;
pub use namer::{NameWatch, Namer, namer_prefix};

/// One concrete address to send requests to.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative weight within its set (1.0 unless the namer says otherwise).
    pub weight: f64,
}

/// The current state of a bound name's endpoint set.
#[derive(Clone, Debug, PartialEq)]
pub enum Addr {
    /// Not known yet.
    Pending,
    /// The name does not exist (for example, no such file).
    Neg,
    /// Resolution failed; the message says why.
    Failed(Arc<str>),
    /// The endpoints (possibly none).
    Bound(Arc<[Endpoint]>),
}

/// A bound name: an id (`/#/io.l5d.fs/web`, `/$/inet/127.0.0.1/8080`), the
/// residual path left after the namer's part, and the live endpoint set.
///
/// Equality and hashing use (id, residual) only, as Linkerd 1's `Dst.Bound`.
#[derive(Clone, Debug)]
pub struct Bound {
    /// The client name.
    pub id: Path,
    /// What the namer did not consume.
    pub residual: Path,
    /// The endpoint set, updated by the namer.
    pub addr: watch::Receiver<Addr>,
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.residual == other.residual
    }
}
impl Eq for Bound {}
impl Hash for Bound {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.residual.hash(state);
    }
}

impl std::fmt::Display for Bound {
    /// Finagle shows a bound leaf by its id only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// A value that may not be known yet, or may have failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Activity<T> {
    /// Not known yet.
    Pending,
    /// Known.
    Ok(T),
    /// Failed, with a message for people.
    Failed(Arc<str>),
}

impl Addr {
    /// The address as Linkerd 1's JSON shows it (`/delegator.json`, namer
    /// state). A weight other than 1 is the endpoint's
    /// `endpoint_addr_weight` meta, where Linkerd keeps it.
    pub fn to_json(&self) -> AddrJson {
        match self {
            Addr::Pending => AddrJson::Pending,
            Addr::Neg => AddrJson::Neg,
            Addr::Failed(cause) => AddrJson::Failed(cause.to_string()),
            Addr::Bound(eps) => AddrJson::Bound(
                eps.iter()
                    .map(|e| {
                        let mut meta = serde_json::Map::new();
                        if e.weight != 1.0 {
                            meta.insert("endpoint_addr_weight".into(), serde_json::json!(e.weight));
                        }
                        AddressJson {
                            ip: e.addr.ip().to_string(),
                            port: e.addr.port(),
                            meta,
                        }
                    })
                    .collect(),
            ),
        }
    }
}

/// Linkerd 1's JSON: `{"type": "bound", "addrs": [{"ip", "port", "meta"}],
/// "meta": {}}`, or `{"type": "neg" | "pending"}`, or
/// `{"type": "failed", "cause": ...}`.
impl serde::Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// So a [`crate::dtab::DelegateTree`] of live bound names serialises as
/// Linkerd's `/delegator.json`, with each address as it is now.
impl BoundJson for Bound {
    fn id(&self) -> &Path {
        &self.id
    }

    fn residual(&self) -> &Path {
        &self.residual
    }

    fn addr_json(&self) -> AddrJson {
        self.addr.borrow().to_json()
    }
}

/// Linkerd 1's JSON for a bound name: `{"addr": ..., "id": "/#/io.l5d.fs/web",
/// "path": "/rest"}`, with the address as it is now.
impl serde::Serialize for Bound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("addr", &*self.addr.borrow())?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("path", &self.residual)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_json_is_linkerds() {
        let (_tx, addr) = watch::channel(Addr::Bound(Arc::from(vec![
            Endpoint {
                addr: "127.0.0.1:8080".parse().unwrap(),
                weight: 1.0,
            },
            Endpoint {
                addr: "[::1]:9".parse().unwrap(),
                weight: 2.5,
            },
        ])));
        let b = Bound {
            id: "/$/inet/127.0.0.1/8080".parse().unwrap(),
            residual: "/rest".parse().unwrap(),
            addr,
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({
                "addr": {"type": "bound", "meta": {}, "addrs": [
                    {"ip": "127.0.0.1", "port": 8080, "meta": {}},
                    {"ip": "::1", "port": 9, "meta": {"endpoint_addr_weight": 2.5}},
                ]},
                "id": "/$/inet/127.0.0.1/8080",
                "path": "/rest",
            })
        );
        assert_eq!(
            serde_json::to_value(Addr::Failed("boom".into())).unwrap(),
            serde_json::json!({"type": "failed", "cause": "boom"})
        );
        assert_eq!(
            serde_json::to_value(Addr::Neg).unwrap(),
            serde_json::json!({"type": "neg"})
        );
    }
}
