//! TLS with rustls (ring provider only): server termination for routers'
//! servers and the admin server, client origination towards endpoints,
//! mutual TLS between proxies, and certificates that reload from disk.
//!
//! * [`files`]: PEM certificates and private keys (PKCS#8, PKCS#1 and SEC1)
//!   with errors that name the file, and a certificate's validity window.
//! * [`server`]: `servers[].tls` / `admin.tls` → a [`ServerTls`] whose
//!   `accept` runs the handshake, classifies and counts failures.
//! * [`client`]: `client.tls` → a [`ClientTls`] whose `connect` originates
//!   TLS with SNI = `commonName`, and [`ClientTlsRules`] that pick a client
//!   TLS config per bound client name (`{capture}` variables included).
//! * [`reload`]: the file watcher behind both: a rustls config lives in an
//!   `ArcSwap` read once per new connection, so a reload never touches open
//!   connections, and a bad new certificate keeps the old one in service.
//! * [`failure`]: handshake failure reasons and the counters the admin
//!   server shows at `/tls.json`.
//!
//! Why ring and not aws-lc-rs: a C compiler is all ring needs, and a
//! process with both providers compiled in has no unambiguous default (the
//! plain `ServerConfig::builder()` panics). Every config here is built from
//! [`provider`], never from the process default.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub mod client;
pub mod failure;
pub mod files;
pub mod reload;
pub mod server;

pub use client::{ClientAuth, ClientTls, ClientTlsRule, ClientTlsRules, ClientTlsSettings};
pub use failure::{HandshakeFailure, Reason, TlsStats, stats_json};
pub use server::{ServerTls, ServerTlsSettings};

/// The crypto provider every TLS config is built with (ring).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// ALPN identifier of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN identifier of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS could not be set up from files (at start or on a reload).
///
/// Each variant names the file and config key it comes from, so the
/// message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{key} {}: cannot read: {error}", path.display())]
    Read {
        /// The config key (`certPath`, `keyPath`, ...).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, not chained: once is enough).
        error: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{key} {}: {message}", path.display())]
    Pem {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the material (key does not match the certificate,
    /// unsupported key type, unusable CA certificate, ...).
    #[error("{what}: {error}")]
    Rustls {
        /// Which files, and what was being built.
        what: String,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// A certificate is outside its validity window.
    #[error("{key} {}: {message}", path.display())]
    Validity {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// `expired on ...` / `not valid before ...`.
        message: String,
    },
    /// The settings do not make sense together.
    #[error("{0}")]
    Config(String),
    /// The directory watcher could not be set up.
    #[error("{}: cannot watch: {error}", path.display())]
    Watch {
        /// The directory watched.
        path: PathBuf,
        /// The watcher's error.
        error: notify::Error,
    },
}

/// A TLS protocol version as Linkerd's `protocols` lists name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum TlsVersion {
    /// `TLSv1.2`.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// `TLSv1.3`.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// `protocols` names a version rustls does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported TLS protocol '{0}'; expected TLSv1.2 or TLSv1.3")]
pub struct UnknownTlsVersion(pub String);

impl FromStr for TlsVersion {
    type Err = UnknownTlsVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tlsv1.2" | "tls1.2" | "1.2" => Ok(TlsVersion::Tls12),
            "tlsv1.3" | "tls1.3" | "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(UnknownTlsVersion(s.to_string())),
        }
    }
}

impl TryFrom<String> for TlsVersion {
    type Error = UnknownTlsVersion;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The rustls versions for a `protocols` list; empty means both.
pub(crate) fn versions(list: &[TlsVersion]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    if list.is_empty() {
        return vec![&rustls::version::TLS13, &rustls::version::TLS12];
    }
    let mut out = Vec::new();
    if list.contains(&TlsVersion::Tls13) {
        out.push(&rustls::version::TLS13);
    }
    if list.contains(&TlsVersion::Tls12) {
        out.push(&rustls::version::TLS12);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_show() {
        assert_eq!("TLSv1.2".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert_eq!("tlsv1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        assert!("SSLv3".parse::<TlsVersion>().is_err());
        assert_eq!(TlsVersion::Tls13.to_string(), "TLSv1.3");
        assert_eq!(versions(&[]).len(), 2);
        assert_eq!(versions(&[TlsVersion::Tls12]).len(), 1);
    }
}
