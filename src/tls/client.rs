//! Client TLS (`client.tls`): origination towards endpoints, with SNI and
//! verification against `commonName`, trust from files, an optional client
//! certificate (mutual TLS between proxies), and reloading files.
//!
//! [`ClientTlsRules`] picks the TLS config of a bound client name: one rule
//! for `kind: io.l5d.global`, one per `configs` entry for `io.l5d.static`,
//! where the last matching entry with `tls` wins and `{capture}` variables of
//! its prefix fill in `commonName`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::failure::{HandshakeFailure, Reason, TlsStats};
use super::reload::{Contents, Reloading, Source};
use super::server::HANDSHAKE_TIMEOUT;
use super::{TlsError, TlsVersion, files, provider, versions};
use crate::dtab::Path;

/// `clientAuth`: the certificate this proxy presents to servers that ask.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuth {
    /// `certPath`.
    pub cert_path: PathBuf,
    /// `keyPath` (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// `intermediateCertsPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
}

/// What `client.tls` says. Deserializes from Linkerd's keys (all but
/// `enabled`, which the config loader handles), so a client config type
/// can embed it as is.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// `commonName`: the name the server certificate must carry, also sent
    /// as SNI; may hold `{capture}` variables of a static config's prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// `trustCertsBundle`: a PEM file of trusted CAs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_certs_bundle: Option<PathBuf>,
    /// `trustCerts`: more PEM files of trusted CAs (Linkerd's older key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_certs: Vec<PathBuf>,
    /// `disableValidation`: accept any server certificate (testing only).
    pub disable_validation: bool,
    /// `clientAuth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// `protocols`: TLS versions to offer; empty means TLSv1.2 and TLSv1.3.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<TlsVersion>,
}

impl ClientTlsSettings {
    /// Settings that cannot work whatever the files hold.
    pub fn check(&self) -> Result<(), TlsError> {
        if self.disable_validation {
            return Ok(());
        }
        if self.common_name.is_none() {
            return Err(TlsError::Config(
                "client.tls: commonName is required (the name the server certificate must carry) unless disableValidation is true".into(),
            ));
        }
        if self.uses_system_roots() && system_bundle().is_none() {
            return Err(TlsError::Config(format!(
                "client.tls: no trustCertsBundle or trustCerts, and no system CA bundle at {}",
                SYSTEM_BUNDLES.join(", ")
            )));
        }
        Ok(())
    }

    /// Without `trustCertsBundle` or `trustCerts`, servers are verified
    /// against the system's CA bundle (as Linkerd used the JVM's).
    fn uses_system_roots(&self) -> bool {
        !self.disable_validation && self.trust_certs_bundle.is_none() && self.trust_certs.is_empty()
    }

    fn sources(&self) -> Vec<Source> {
        let mut s = Vec::new();
        if self.uses_system_roots()
            && let Some(p) = system_bundle()
        {
            s.push(Source {
                key: "system CA bundle",
                path: p,
            });
        }
        if !self.disable_validation {
            if let Some(p) = &self.trust_certs_bundle {
                s.push(Source {
                    key: "trustCertsBundle",
                    path: p.clone(),
                });
            }
            for p in &self.trust_certs {
                s.push(Source {
                    key: "trustCerts",
                    path: p.clone(),
                });
            }
        }
        if let Some(a) = &self.client_auth {
            s.push(Source {
                key: "clientAuth.certPath",
                path: a.cert_path.clone(),
            });
            s.push(Source {
                key: "clientAuth.keyPath",
                path: a.key_path.clone(),
            });
            if let Some(p) = &a.intermediate_certs_path {
                s.push(Source {
                    key: "clientAuth.intermediateCertsPath",
                    path: p.clone(),
                });
            }
        }
        s
    }

    /// Build the rustls config from file contents, offering `alpn`.
    pub fn build(
        &self,
        contents: &Contents,
        strict: bool,
        alpn: &[&[u8]],
    ) -> Result<ClientConfig, TlsError> {
        self.check()?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(&self.protocols))
            .map_err(|error| TlsError::Rustls {
                what: "client.tls.protocols".into(),
                error,
            })?;
        let builder = if self.disable_validation {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(p) = &self.trust_certs_bundle {
                files::roots_from_pem("trustCertsBundle", p, contents.get(p), &mut roots)?;
            }
            for p in &self.trust_certs {
                files::roots_from_pem("trustCerts", p, contents.get(p), &mut roots)?;
            }
            if self.uses_system_roots()
                && let Some(p) = system_bundle()
            {
                let certs = files::certs_from_pem("system CA bundle", &p, contents.get(&p))?;
                roots.add_parsable_certificates(certs);
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some(a) => {
                let mut chain = files::certs_from_pem(
                    "clientAuth.certPath",
                    &a.cert_path,
                    contents.get(&a.cert_path),
                )?;
                if let Some(leaf) = chain.first() {
                    match files::check_validity("clientAuth.certPath", &a.cert_path, leaf) {
                        Err(e) if strict => return Err(e),
                        Err(e) => tracing::warn!("client TLS: {e}; presenting it anyway"),
                        Ok(()) => {}
                    }
                }
                if let Some(p) = &a.intermediate_certs_path {
                    chain.extend(files::certs_from_pem(
                        "clientAuth.intermediateCertsPath",
                        p,
                        contents.get(p),
                    )?);
                }
                let key = files::key_from_pem(
                    "clientAuth.keyPath",
                    &a.key_path,
                    contents.get(&a.key_path),
                )?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| TlsError::Rustls {
                        what: format!(
                            "clientAuth.certPath {} with clientAuth.keyPath {}",
                            a.cert_path.display(),
                            a.key_path.display()
                        ),
                        error,
                    })?
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Where distributions keep the system's CA bundle (Debian and Alpine,
/// Fedora and RHEL, macOS and BSDs).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn system_bundle() -> Option<PathBuf> {
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// An origination config in service (reloading) and its counters.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl ClientTls {
    /// Load the files now (errors are fatal and name the file) and follow
    /// them from then on. `name` labels logs and `/tls.json`; `alpn` is
    /// what is offered (`h2` for h2 routers, `http/1.1` for http ones).
    pub fn load(
        settings: &ClientTlsSettings,
        name: impl Into<String>,
        alpn: &[&[u8]],
    ) -> Result<ClientTls, TlsError> {
        let config = super::reload::load(settings, name, alpn)?;
        Ok(ClientTls { config })
    }

    /// The config new connections get now.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.current()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TlsStats> {
        self.config.stats()
    }

    /// Originate TLS on `stream` to `peer`, verifying and sending `name`
    /// (SNI; an IP address name sends no SNI). A failure is counted by
    /// reason and logged with the peer's address.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let result =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name.clone(), stream))
                .await
            {
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
                tracing::warn!(
                    %peer,
                    server_name = ?name,
                    reason = f.reason.as_str(),
                    "{}: TLS handshake failed: {f}",
                    stats.name()
                );
            }
        }
        result
    }
}

/// The verifier of `disableValidation: true`: accepts any certificate, but
/// still checks the handshake signatures (so the peer holds the key of the
/// certificate it sent).
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Variables captured by a client prefix (`{service}` → `web`).
pub type Captures = Vec<(String, String)>;

/// Whether a bound client name falls under a config, and with what captures.
pub type Matcher = Arc<dyn Fn(&Path) -> Option<Captures> + Send + Sync>;

/// One client config that has `tls`.
#[derive(Clone)]
pub struct ClientTlsRule {
    /// The prefix as written (`/#/io.l5d.fs/{service}`), for messages.
    pub prefix: String,
    /// Its matcher.
    pub matcher: Matcher,
    /// `commonName`, with `{capture}` variables not yet filled in.
    pub common_name: Option<String>,
    /// The loaded config.
    pub tls: ClientTls,
}

impl std::fmt::Debug for ClientTlsRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsRule")
            .field("prefix", &self.prefix)
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

/// What to originate TLS with towards one bound client's endpoints.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// The config.
    pub tls: ClientTls,
    /// The server name to verify and send as SNI; `None` (validation
    /// disabled, no `commonName`) uses the endpoint's IP address.
    pub server_name: Option<ServerName<'static>>,
    /// Identifies (config, name) for connection pools: connections made
    /// under one key are never reused under another.
    pub key: Arc<str>,
    /// Why no name could be made for this client (a `commonName` variable
    /// its prefix does not capture): every connection is then refused
    /// rather than made without TLS.
    pub refuse: Option<Arc<str>>,
}

impl PartialEq for UpstreamTls {
    /// The same loaded config under the same name.
    fn eq(&self, other: &UpstreamTls) -> bool {
        self.key == other.key && Arc::ptr_eq(&self.tls.config, &other.tls.config)
    }
}

impl UpstreamTls {
    /// The name to verify for an endpoint at `addr`.
    pub fn name_for(&self, addr: IpAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or(ServerName::IpAddress(addr.into()))
    }

    /// Originate TLS to the endpoint at `peer` over `stream`.
    pub async fn connect(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        if let Some(why) = &self.refuse {
            self.tls.stats().handshake_failed(Reason::Other);
            return Err(HandshakeFailure {
                reason: Reason::Other,
                detail: why.to_string(),
            });
        }
        self.tls
            .connect(self.name_for(peer.ip()), stream, peer)
            .await
    }
}

/// Client TLS of a router: which config a bound client name gets.
#[derive(Debug, Default)]
pub struct ClientTlsRules {
    rules: Vec<ClientTlsRule>,
    cache: Mutex<HashMap<Path, Option<UpstreamTls>>>,
}

/// Cached decisions kept per router before the cache starts over.
const CACHE_MAX: usize = 10_000;

impl ClientTlsRules {
    /// Rules in config order (later ones win).
    pub fn new(rules: Vec<ClientTlsRule>) -> ClientTlsRules {
        ClientTlsRules {
            rules,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// One config for every client (`kind: io.l5d.global`).
    pub fn global(tls: ClientTls, common_name: Option<String>) -> ClientTlsRules {
        ClientTlsRules::new(vec![ClientTlsRule {
            prefix: "/".into(),
            matcher: Arc::new(|_| Some(Vec::new())),
            common_name,
            tls,
        }])
    }

    /// Whether any client originates TLS.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The TLS to use towards the endpoints of bound client `id`, if any.
    ///
    /// A `commonName` that cannot be made for `id` (a variable its prefix
    /// does not capture, or not a DNS name) is logged, and the client gets
    /// a TLS config that refuses every connection: never plaintext where
    /// TLS was asked for.
    pub fn for_client(&self, id: &Path) -> Option<UpstreamTls> {
        if self.rules.is_empty() {
            return None;
        }
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return hit.clone();
        }
        let mut found = None;
        for (i, rule) in self.rules.iter().enumerate().rev() {
            let Some(captures) = (rule.matcher)(id) else {
                continue;
            };
            let named = match &rule.common_name {
                None => Ok(None),
                Some(t) => expand(t, &captures)
                    .map_err(|v| {
                        format!(
                            "client.tls.commonName '{t}' of prefix {}: no variable {{{v}}} in the prefix",
                            rule.prefix
                        )
                    })
                    .and_then(|name| {
                        ServerName::try_from(name.clone()).map(Some).map_err(|e| {
                            format!("client.tls.commonName '{name}' for {id}: not a DNS name or IP address: {e}")
                        })
                    }),
            };
            let (server_name, refuse) = match named {
                Ok(n) => (n, None),
                Err(why) => {
                    tracing::error!("client {id}: {why}; refusing its connections");
                    (None, Some(Arc::from(why)))
                }
            };
            let key = format!(
                "{i}|{}",
                server_name
                    .as_ref()
                    .map_or_else(String::new, |n| n.to_str().into_owned())
            );
            found = Some(UpstreamTls {
                tls: rule.tls.clone(),
                server_name,
                key: key.into(),
                refuse,
            });
            break;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(id.clone(), found.clone());
        found
    }
}

/// Fill `{name}` variables of `template` from `captures`; the error is the
/// first variable with no capture.
pub fn expand(template: &str, captures: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let var = &after[..close];
        match captures.iter().find(|(k, _)| k == var) {
            Some((_, v)) => out.push_str(v),
            None => return Err(var.to_string()),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_fills_captures() {
        let caps = vec![("service".to_string(), "web".to_string())];
        assert_eq!(
            expand("{service}.example.com", &caps).unwrap(),
            "web.example.com"
        );
        assert_eq!(
            expand("plain.example.com", &caps).unwrap(),
            "plain.example.com"
        );
        assert_eq!(expand("{other}.x", &caps).unwrap_err(), "other");
        assert_eq!(expand("a{b", &caps).unwrap(), "a{b");
    }

    #[test]
    fn settings_need_names_and_trust() {
        let mut s = ClientTlsSettings::default();
        assert!(s.check().is_err());
        s.common_name = Some("web".into());
        assert!(s.uses_system_roots());
        s.trust_certs_bundle = Some("ca.pem".into());
        assert!(!s.uses_system_roots());
        assert!(s.check().is_ok());
        let off = ClientTlsSettings {
            disable_validation: true,
            ..Default::default()
        };
        assert!(off.check().is_ok());
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn settings_deserialize_from_linkerd_keys() {
        let s: ClientTlsSettings = serde_json::from_str(
            r#"{"commonName": "{service}", "trustCertsBundle": "ca.pem",
                "clientAuth": {"certPath": "c.pem", "keyPath": "k.pem"},
                "protocols": ["TLSv1.3"]}"#,
        )
        .unwrap();
        assert_eq!(s.common_name.as_deref(), Some("{service}"));
        assert_eq!(s.protocols, vec![TlsVersion::Tls13]);
        assert!(serde_json::from_str::<ClientTlsSettings>(r#"{"protocols": ["SSLv3"]}"#).is_err());
        assert!(serde_json::from_str::<ClientTlsSettings>(r#"{"bogus": 1}"#).is_err());
    }
}

impl super::reload::Settings for ClientTlsSettings {
    type Config = ClientConfig;

    fn check(&self) -> Result<(), TlsError> {
        ClientTlsSettings::check(self)
    }

    fn sources(&self) -> Vec<Source> {
        ClientTlsSettings::sources(self)
    }

    fn build(
        &self,
        contents: &Contents,
        strict: bool,
        alpn: &[&[u8]],
    ) -> Result<ClientConfig, TlsError> {
        ClientTlsSettings::build(self, contents, strict, alpn)
    }
}
