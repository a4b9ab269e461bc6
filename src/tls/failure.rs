//! Handshake failures: why (classified from rustls's errors and the alerts
//! the peer sent), and counters per listener or client, by reason.
//!
//! The reasons are the ones an operator acts on differently: a peer from
//! another CA, an expired certificate, a name that does not match, a client
//! that sent no certificate, plaintext on a TLS port. Every live
//! [`TlsStats`] registers itself so the admin server can show them all at
//! `/tls.json` without the proxy threading them through.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustls::{AlertDescription, CertificateError};

/// Why a handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The certificate was issued by a CA the verifier does not trust
    /// (ours, or the peer's as its alert says).
    UnknownCa,
    /// The certificate is expired or not yet valid.
    Expired,
    /// The server certificate does not name the `commonName` asked for.
    NameMismatch,
    /// A client certificate is required and none was sent.
    MissingClientCert,
    /// The peer did not speak TLS (plaintext HTTP on a TLS port, or the reverse).
    NotTls,
    /// The peer closed the connection before the handshake finished.
    Closed,
    /// The handshake took too long.
    Timeout,
    /// Anything else (protocol versions, ciphers, bad certificate encoding...).
    Other,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 8] = [
        Reason::UnknownCa,
        Reason::Expired,
        Reason::NameMismatch,
        Reason::MissingClientCert,
        Reason::NotTls,
        Reason::Closed,
        Reason::Timeout,
        Reason::Other,
    ];

    /// The counter's name (`unknown_ca`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownCa => "unknown_ca",
            Reason::Expired => "expired",
            Reason::NameMismatch => "name_mismatch",
            Reason::MissingClientCert => "missing_client_cert",
            Reason::NotTls => "not_tls",
            Reason::Closed => "closed",
            Reason::Timeout => "timeout",
            Reason::Other => "other",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(7)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::UnknownCa => "unknown CA",
            Reason::Expired => "certificate expired",
            Reason::NameMismatch => "name mismatch",
            Reason::MissingClientCert => "missing client certificate",
            Reason::NotTls => "peer does not speak TLS",
            Reason::Closed => "connection closed during handshake",
            Reason::Timeout => "handshake timed out",
            Reason::Other => "other",
        })
    }
}

/// A failed handshake: the reason and rustls's own words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLS handshake failed: {reason} ({detail})")]
pub struct HandshakeFailure {
    /// The class of failure.
    pub reason: Reason,
    /// What rustls (or the socket) said.
    pub detail: String,
}

impl HandshakeFailure {
    /// Classify an I/O error from a tokio-rustls handshake.
    pub fn from_io(e: &std::io::Error) -> HandshakeFailure {
        if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return HandshakeFailure::from_rustls(r);
        }
        let reason = match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted => Reason::Closed,
            std::io::ErrorKind::InvalidData => Reason::NotTls,
            _ => Reason::Other,
        };
        HandshakeFailure {
            reason,
            detail: e.to_string(),
        }
    }

    /// Whether the failure happens only in a handshake, so a request sent
    /// on that connection cannot have reached the application.
    pub fn before_request(&self) -> bool {
        matches!(
            self.reason,
            Reason::UnknownCa
                | Reason::Expired
                | Reason::NameMismatch
                | Reason::MissingClientCert
                | Reason::NotTls
        )
    }

    /// Classify a rustls error.
    pub fn from_rustls(e: &rustls::Error) -> HandshakeFailure {
        HandshakeFailure {
            reason: classify(e),
            detail: e.to_string(),
        }
    }

    /// Find a TLS failure anywhere in an error's chain (hyper wraps the
    /// I/O error that wraps rustls's), for failures seen after the
    /// handshake: with TLS 1.3 the server checks the client's certificate
    /// after the client considers the handshake done, so a missing client
    /// certificate shows as an alert on the first read.
    pub fn find_in(e: &(dyn std::error::Error + 'static)) -> Option<HandshakeFailure> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(r) = err.downcast_ref::<rustls::Error>() {
                return Some(HandshakeFailure::from_rustls(r));
            }
            if let Some(h) = err.downcast_ref::<HandshakeFailure>() {
                return Some(h.clone());
            }
            // io::Error's source() skips the error it wraps; get_ref() does not.
            cur = match err.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|i| i as &(dyn std::error::Error + 'static)),
                None => err.source(),
            };
        }
        None
    }
}

/// The reason behind a rustls error: our verifier's verdict, or the alert
/// the peer sent us about our certificate.
pub fn classify(e: &rustls::Error) -> Reason {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Reason::UnknownCa,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Reason::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::NameMismatch
            }
            _ => Reason::Other,
        },
        E::NoCertificatesPresented => Reason::MissingClientCert,
        E::AlertReceived(a) => match a {
            AlertDescription::UnknownCA => Reason::UnknownCa,
            AlertDescription::CertificateExpired => Reason::Expired,
            AlertDescription::CertificateRequired => Reason::MissingClientCert,
            _ => Reason::Other,
        },
        E::InvalidMessage(_) => Reason::NotTls,
        _ => Reason::Other,
    }
}

/// Handshake and reload counters of one TLS listener or client config.
#[derive(Debug)]
pub struct TlsStats {
    name: String,
    handshakes: AtomicU64,
    failures: [AtomicU64; 8],
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
}

static REGISTRY: Mutex<Vec<Weak<TlsStats>>> = Mutex::new(Vec::new());

impl TlsStats {
    /// New counters named `name` (`server 127.0.0.1:4140`, `client /svc`),
    /// registered for `/tls.json` while they live.
    pub fn new(name: impl Into<String>) -> Arc<TlsStats> {
        let s = Arc::new(TlsStats {
            name: name.into(),
            handshakes: AtomicU64::new(0),
            failures: Default::default(),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
        });
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        reg.push(Arc::downgrade(&s));
        s
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Count a completed handshake.
    pub fn handshake_ok(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a failed handshake.
    pub fn handshake_failed(&self, reason: Reason) {
        if let Some(c) = self.failures.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Completed handshakes.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Failed handshakes for `reason`.
    pub fn failures(&self, reason: Reason) -> u64 {
        self.failures
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Count a reload outcome.
    pub fn reload(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    }

    /// New certificates taken into service.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// New certificates refused (the old ones kept serving).
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Why the last reload was refused, while no later one succeeded.
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let failures: serde_json::Map<String, serde_json::Value> = Reason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), self.failures(*r).into()))
            .collect();
        serde_json::json!({
            "handshakes": self.handshakes(),
            "handshakeFailures": failures,
            "reloads": self.reloads(),
            "reloadFailures": self.reload_failures(),
            "lastReloadError": self.last_reload_error(),
        })
    }
}

/// Every live listener's and client's counters, by name, for `/tls.json`.
pub fn stats_json() -> serde_json::Value {
    let live: Vec<Arc<TlsStats>> = {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.iter().filter_map(Weak::upgrade).collect()
    };
    let mut out = serde_json::Map::new();
    for s in live {
        out.insert(s.name.clone(), s.to_json());
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use rustls::Error as E;
        assert_eq!(
            classify(&E::InvalidCertificate(CertificateError::UnknownIssuer)),
            Reason::UnknownCa
        );
        assert_eq!(
            classify(&E::InvalidCertificate(CertificateError::Expired)),
            Reason::Expired
        );
        assert_eq!(
            classify(&E::InvalidCertificate(CertificateError::NotValidForName)),
            Reason::NameMismatch
        );
        assert_eq!(
            classify(&E::NoCertificatesPresented),
            Reason::MissingClientCert
        );
        assert_eq!(
            classify(&E::AlertReceived(AlertDescription::CertificateRequired)),
            Reason::MissingClientCert
        );
        assert_eq!(
            classify(&E::AlertReceived(AlertDescription::UnknownCA)),
            Reason::UnknownCa
        );
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            E::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(HandshakeFailure::from_io(&io).reason, Reason::UnknownCa);
        let wrapped = std::io::Error::other(io);
        // The outer io::Error wraps an io::Error, found through source().
        assert!(HandshakeFailure::find_in(&wrapped).is_some());
    }

    #[test]
    fn counters_and_registry() {
        let s = TlsStats::new("test counters_and_registry");
        s.handshake_ok();
        s.handshake_failed(Reason::Expired);
        s.reload(Err("bad".into()));
        assert_eq!(s.failures(Reason::Expired), 1);
        assert_eq!(s.last_reload_error().as_deref(), Some("bad"));
        let j = stats_json();
        assert_eq!(
            j["test counters_and_registry"]["handshakeFailures"]["expired"],
            1
        );
        s.reload(Ok(()));
        assert_eq!(s.last_reload_error(), None);
    }
}
