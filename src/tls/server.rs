//! Server TLS (`servers[].tls`, `admin.tls`): termination with ALPN, optional
//! or required client certificates, certificates that reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::failure::{HandshakeFailure, Reason, TlsStats};
use super::reload::{Contents, Reloading, Source};
use super::{TlsError, TlsVersion, files, provider, versions};

/// How long a client may take to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `servers[].tls` / `admin.tls` says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// `certPath`: the server certificate, PEM; may hold the chain after it.
    pub cert_path: PathBuf,
    /// `keyPath`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// `intermediateCertsPath`: more chain certificates, sent after `certPath`'s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
    /// `caCertPath`: the CAs client certificates are checked against. With
    /// it and without `requireClientAuth`, a client certificate is optional
    /// but must verify when sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    /// `requireClientAuth`: refuse clients without a certificate from `caCertPath`.
    pub require_client_auth: bool,
    /// `protocols`: TLS versions to accept; empty means TLSv1.2 and TLSv1.3.
    pub protocols: Vec<TlsVersion>,
}

impl ServerTlsSettings {
    /// Settings with a certificate and key and everything else default.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> ServerTlsSettings {
        ServerTlsSettings {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            intermediate_certs_path: None,
            ca_cert_path: None,
            require_client_auth: false,
            protocols: Vec::new(),
        }
    }

    /// Settings that cannot work whatever the files hold.
    pub fn check(&self) -> Result<(), TlsError> {
        if self.require_client_auth && self.ca_cert_path.is_none() {
            return Err(TlsError::Config(
                "requireClientAuth needs caCertPath: the CA client certificates must be issued by"
                    .into(),
            ));
        }
        Ok(())
    }

    fn sources(&self) -> Vec<Source> {
        let mut s = vec![
            Source {
                key: "certPath",
                path: self.cert_path.clone(),
            },
            Source {
                key: "keyPath",
                path: self.key_path.clone(),
            },
        ];
        if let Some(p) = &self.intermediate_certs_path {
            s.push(Source {
                key: "intermediateCertsPath",
                path: p.clone(),
            });
        }
        if let Some(p) = &self.ca_cert_path {
            s.push(Source {
                key: "caCertPath",
                path: p.clone(),
            });
        }
        s
    }

    /// Build the rustls config from file contents, offering `alpn`.
    pub fn build(
        &self,
        contents: &Contents,
        strict: bool,
        alpn: &[&[u8]],
    ) -> Result<ServerConfig, TlsError> {
        self.check()?;
        let mut chain =
            files::certs_from_pem("certPath", &self.cert_path, contents.get(&self.cert_path))?;
        if let Some(leaf) = chain.first() {
            match files::check_validity("certPath", &self.cert_path, leaf) {
                Err(e) if strict => return Err(e),
                Err(e) => tracing::warn!("server TLS: {e}; serving it anyway"),
                Ok(()) => {}
            }
        }
        if let Some(p) = &self.intermediate_certs_path {
            chain.extend(files::certs_from_pem(
                "intermediateCertsPath",
                p,
                contents.get(p),
            )?);
        }
        let key = files::key_from_pem("keyPath", &self.key_path, contents.get(&self.key_path))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(&self.protocols))
            .map_err(|error| TlsError::Rustls {
                what: "protocols".into(),
                error,
            })?;
        let builder = match &self.ca_cert_path {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                files::roots_from_pem("caCertPath", ca, contents.get(ca), &mut roots)?;
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let v = if self.require_client_auth {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                let verifier = v
                    .build()
                    .map_err(|e| TlsError::Config(format!("caCertPath {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder
                .with_single_cert(chain, key)
                .map_err(|error| TlsError::Rustls {
                    what: format!(
                        "certPath {} with keyPath {}",
                        self.cert_path.display(),
                        self.key_path.display()
                    ),
                    error,
                })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// A TLS listener's handshakes: the config in service (reloading), and
/// counters by failure reason.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
}

impl ServerTls {
    /// Load the certificates now (errors are fatal and name the file) and
    /// follow their files from then on. `name` labels logs and `/tls.json`
    /// (`server 127.0.0.1:4143`); `alpn` is what the listener offers, most
    /// preferred first.
    pub fn load(
        settings: &ServerTlsSettings,
        name: impl Into<String>,
        alpn: &[&[u8]],
    ) -> Result<ServerTls, TlsError> {
        let config = super::reload::load(settings, name, alpn)?;
        Ok(ServerTls { config })
    }

    /// The config new connections get now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.current()
    }

    /// This listener's counters.
    pub fn stats(&self) -> &Arc<TlsStats> {
        self.config.stats()
    }

    /// Run the server side of the handshake on an accepted connection,
    /// within [`HANDSHAKE_TIMEOUT`]. A failure is counted by reason and
    /// logged with the peer's address.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(HandshakeFailure::from_io(&e)),
            Err(_) => Err(HandshakeFailure {
                reason: Reason::Timeout,
                detail: format!("no handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
            }),
        };
        let stats = self.stats();
        match &result {
            Ok(_) => stats.handshake_ok(),
            Err(f) => {
                stats.handshake_failed(f.reason);
                let name = stats.name();
                match f.reason {
                    // Load balancer health checks and port scans: not news.
                    Reason::Closed => {
                        tracing::debug!(%peer, reason = f.reason.as_str(), "{name}: TLS handshake failed: {f}")
                    }
                    _ => {
                        tracing::warn!(%peer, reason = f.reason.as_str(), "{name}: TLS handshake failed: {f}")
                    }
                }
            }
        }
        result
    }
}

/// Which HTTP the peer chose through ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiated {
    /// `h2`.
    H2,
    /// `http/1.1`.
    Http11,
    /// No ALPN: the server decides (sniffs the HTTP/2 preface).
    None,
}

/// The ALPN outcome of a finished handshake.
pub fn negotiated(stream: &TlsStream<TcpStream>) -> Negotiated {
    match stream.get_ref().1.alpn_protocol() {
        Some(p) if p == super::ALPN_H2 => Negotiated::H2,
        Some(p) if p == super::ALPN_HTTP11 => Negotiated::Http11,
        _ => Negotiated::None,
    }
}

impl super::reload::Settings for ServerTlsSettings {
    type Config = ServerConfig;

    fn check(&self) -> Result<(), TlsError> {
        ServerTlsSettings::check(self)
    }

    fn sources(&self) -> Vec<Source> {
        ServerTlsSettings::sources(self)
    }

    fn build(
        &self,
        contents: &Contents,
        strict: bool,
        alpn: &[&[u8]],
    ) -> Result<ServerConfig, TlsError> {
        ServerTlsSettings::build(self, contents, strict, alpn)
    }
}
