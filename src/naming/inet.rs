//! `/$/inet/<host>/<port>`: a bound name whose endpoints come from the system
//! resolver, refreshed periodically (Finagle's `InetResolver`, default 5 s).
//!
//! One resolution is shared per (host, port): many dtab entries and many
//! requests pointing at `/$/inet/users/8080` cost one DNS poll. IP literals
//! need no task at all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::{Addr, Bound, Endpoint};
use crate::dtab::Path;

/// Linkerd 1's DNS refresh period for `/$/inet`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// How long one DNS lookup may take before it counts as a failure.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

type Key = (String, u16);

/// Shared `/$/inet` resolutions. Cloning shares the table.
#[derive(Clone)]
pub struct InetResolver {
    inner: Arc<Inner>,
}

struct Inner {
    refresh: Duration,
    entries: Mutex<HashMap<Key, watch::Sender<Addr>>>,
}

impl Default for InetResolver {
    fn default() -> Self {
        InetResolver::new(DEFAULT_REFRESH)
    }
}

impl InetResolver {
    /// A resolver that re-resolves host names every `refresh`.
    pub fn new(refresh: Duration) -> InetResolver {
        InetResolver {
            inner: Arc::new(Inner {
                refresh,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The bound name for a [`crate::dtab::system::SystemAnswer::Inet`].
    ///
    /// Must be called inside a tokio runtime when `host` is a name (a
    /// resolver task is started); IP literals and the empty host are
    /// answered on the spot.
    pub fn bound(&self, id: Path, host: &str, port: u16, residual: Path) -> Bound {
        Bound {
            id,
            residual,
            addr: self.resolve(host, port),
        }
    }

    /// A watch of `host:port`'s endpoints. The empty host means this machine
    /// (Finagle binds it to the wildcard address; a client reaches that as
    /// the loopback), so it is `127.0.0.1`.
    pub fn resolve(&self, host: &str, port: u16) -> watch::Receiver<Addr> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = if host.is_empty() {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            host.parse::<IpAddr>().ok()
        };
        let key = (host.to_string(), port);
        let mut entries = self.inner.lock();
        // Forget literal entries nobody holds any more; name entries are
        // removed by their own task.
        entries.retain(|(h, _), tx| {
            tx.receiver_count() > 0 || !(h.is_empty() || h.parse::<IpAddr>().is_ok())
        });
        if let Some(tx) = entries.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = match literal {
            Some(ip) => watch::channel(Addr::Bound(Arc::from(vec![Endpoint {
                addr: SocketAddr::new(ip, port),
                weight: 1.0,
            }]))),
            None => {
                let (tx, rx) = watch::channel(Addr::Pending);
                tokio::spawn(poll(self.inner.clone(), key.clone(), tx.clone()));
                (tx, rx)
            }
        };
        entries.insert(key, tx);
        rx
    }

    /// How many (host, port) pairs are being resolved now.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether nothing is being resolved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, watch::Sender<Addr>>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Resolve `host` now, through the system resolver, with a time limit.
/// The endpoints come back sorted and without duplicates so that equal sets
/// compare equal.
pub async fn resolve_host(host: &str, port: u16, weight: f64) -> Result<Vec<Endpoint>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![Endpoint {
            addr: SocketAddr::new(ip, port),
            weight,
        }]);
    }
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving {host}: timed out"))?
        .map_err(|e| format!("resolving {host}: {e}"))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs
        .into_iter()
        .map(|addr| Endpoint { addr, weight })
        .collect())
}

/// Keep `tx` up to date until nobody listens.
async fn poll(inner: Arc<Inner>, key: Key, tx: watch::Sender<Addr>) {
    let (host, port) = (key.0.clone(), key.1);
    loop {
        let next = match resolve_host(&host, port, 1.0).await {
            Ok(eps) if eps.is_empty() => Some(Addr::Neg),
            Ok(eps) => Some(Addr::Bound(Arc::from(eps))),
            Err(msg) => {
                tracing::warn!(host = %host, port, "{msg}");
                // Keep serving the last good set; fail only if there is none.
                match &*tx.borrow() {
                    Addr::Bound(_) => None,
                    _ => Some(Addr::Failed(Arc::from(msg))),
                }
            }
        };
        if let Some(next) = next {
            tx.send_if_modified(|cur| {
                if *cur == next {
                    false
                } else {
                    *cur = next;
                    true
                }
            });
        }
        tokio::select! {
            biased;
            _ = tx.closed() => {
                let mut entries = inner.lock();
                if tx.receiver_count() == 0 {
                    if entries.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                        entries.remove(&key);
                    }
                    return;
                }
            }
            _ = tokio::time::sleep(inner.refresh) => {}
        }
    }
}
