//! TLS: termination (curl and `openssl s_client` against a router's TLS
//! server), origination, mutual TLS between two switchyards, refusals
//! classified by reason, upstream TLS failures as 502 with `l5d-err`, and a
//! certificate reload under load. Every certificate is made here with
//! rcgen; every address is 127.0.0.1 with port 0.
//!
//! The curl and openssl tests need both tools installed (`apt-get install
//! -y curl openssl`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use switchyard::tls::{
    self, ClientAuth, ClientTls, ClientTlsSettings, Reason, ServerTls, ServerTlsSettings,
};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::process::Switchyard;

// === certificates ===

/// A CA that issues leaf certificates for servers and clients.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IPs), good for servers and clients;
    /// `expired` makes it valid only in 2020.
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert: cert.pem(),
            der: cert.der().clone(),
            key: key.serialize_pem(),
        }
    }
}

struct Leaf {
    cert: String,
    der: CertificateDer<'static>,
    key: String,
}

/// Write `text` to `dir/name` atomically (as cert-manager and editors do).
fn put(dir: &Path, name: &str, text: &str) -> PathBuf {
    let dst = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, &dst).expect("rename");
    dst
}

// === backends ===

/// A plaintext HTTP backend answering every request with its name.
struct Backend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_named(TokioIo::new(stream), name));
            }
        });
        Backend { addr, task }
    }

    /// A backend behind TLS terminated by `tls`.
    async fn start_tls(name: &'static str, tls: ServerTls) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Ok(s) = tls.accept(stream, peer).await {
                        serve_named(TokioIo::new(s), name).await;
                    }
                });
            }
        });
        Backend { addr, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_named<I>(io: I, name: &'static str)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, svc)
        .await;
}

// === the proxy process ===

/// The real binary (tests/support/process.rs) plus the TLS admin views.
struct Proxy(Switchyard);

impl std::ops::Deref for Proxy {
    type Target = Switchyard;
    fn deref(&self) -> &Switchyard {
        &self.0
    }
}

impl Proxy {
    fn start(dir: &Path, name: &str, config: &str) -> Proxy {
        Proxy(Switchyard::start_named(dir, name, config, "info"))
    }

    /// `/tls.json` from the admin server (plaintext).
    async fn tls_json(&self) -> serde_json::Value {
        let (status, _, body) = plain_get(self.admin, "admin", "/tls.json").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("tls.json")
    }

    /// Sum of one counter over every TLS stats entry whose name contains `filter`.
    async fn counter(&self, filter: &str, pointer: &str) -> u64 {
        let j = self.tls_json().await;
        j.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.contains(filter))
                    .filter_map(|(_, v)| v.pointer(pointer).and_then(|n| n.as_u64()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

// === clients ===

async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> (u16, http::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let rsp = send.send_request(req).await.expect("response");
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A rustls client config trusting `ca_pem`, presenting `auth` if given.
fn client_config(ca_pem: &str, auth: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let b = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match auth {
        None => b.with_no_client_auth(),
        Some(l) => {
            let chain = vec![l.der.clone()];
            let key = rustls::pki_types::pem::PemObject::from_pem_slice(l.key.as_bytes())
                .expect("client key");
            b.with_client_auth_cert(chain, key).expect("client auth")
        }
    };
    Arc::new(cfg)
}

/// A kept-alive HTTP/1.1 connection over TLS.
struct TlsConn {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    peer_cert: Option<CertificateDer<'static>>,
}

async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<TlsConn, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let peer_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(TlsConn { send, peer_cert })
}

impl TlsConn {
    async fn get(&mut self, host: &str) -> Result<(u16, String), String> {
        self.get_path(host, "/").await
    }

    async fn get_path(&mut self, host: &str, path: &str) -> Result<(u16, String), String> {
        let req = Request::builder()
            .uri(path)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| format!("ready: {e}"))?;
        let rsp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e:?}"))?;
        let status = rsp.status().as_u16();
        let body = rsp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn l5d_err(headers: &http::HeaderMap) -> String {
    let raw = headers
        .get("l5d-err")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Wait until `f` holds, polling; panics with `what` after 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is needed by this test: apt-get install -y curl openssl"
    );
    name.to_string()
}

fn server_config(backend: SocketAddr, tls: &str) -> String {
    format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: http\n  dtab: /svc/web => /$/inet/127.0.0.1/{};\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n{tls}",
        backend.port()
    )
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_against_a_tls_server() {
    let curl = tool("curl");
    let openssl = tool("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], false);
    put(dir.path(), "ca.pem", &ca.pem);
    put(dir.path(), "cert.pem", &leaf.cert);
    put(dir.path(), "key.pem", &leaf.key);
    let backend = Backend::start("web").await;
    let proxy = Proxy::start(
        dir.path(),
        "proxy",
        &server_config(
            backend.addr,
            "    tls:\n      certPath: cert.pem\n      keyPath: key.pem\n",
        ),
    );
    let port = proxy.router.port();
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = Command::new(&curl)
            .current_dir(dir.path())
            .args(["-sS", "--max-time", "10", "--cacert", "ca.pem", flag])
            .args(["--resolve", &resolve, "-H", "Host: web"])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(&url)
            .output()
            .expect("run curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {flag}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
        assert_eq!(stdout, format!("web\n200 {version}"), "curl {flag}");
    }

    // Without the CA, curl refuses the certificate: and the server counts
    // the client's "unknown CA" alert.
    let out = Command::new(&curl)
        .current_dir(dir.path())
        .args(["-sS", "--max-time", "10", "--resolve", &resolve, &url])
        .output()
        .expect("run curl");
    assert!(!out.status.success(), "curl trusted an unknown CA");

    for alpn in ["h2", "http/1.1"] {
        let out = Command::new(&openssl)
            .current_dir(dir.path())
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-CAfile", "ca.pem"])
            .args(["-alpn", alpn])
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("Verification: OK") || all.contains("Verify return code: 0 (ok)"),
            "openssl did not verify:\n{all}"
        );
        assert!(
            all.contains(&format!("ALPN protocol: {alpn}")),
            "openssl ALPN {alpn}:\n{all}"
        );
    }

    eventually("the unknown-CA refusal counted", || async {
        proxy
            .counter("server", "/handshakeFailures/unknown_ca")
            .await
            >= 1
    })
    .await;
    assert!(proxy.counter("server", "/handshakes").await >= 4);
    assert!(proxy.log().contains("TLS handshake failed"));
}

/// PKCS#1 and SEC1 keys load as well as PKCS#8 (Linkerd 1 took PKCS#8 only).
#[tokio::test]
async fn pkcs1_and_sec1_keys_load() {
    let openssl = tool("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], false);
    put(dir.path(), "cert.pem", &leaf.cert);
    put(dir.path(), "pkcs8.pem", &leaf.key);
    let status = Command::new(&openssl)
        .current_dir(dir.path())
        .args(["ec", "-in", "pkcs8.pem", "-out", "sec1.pem"])
        .stderr(Stdio::null())
        .status()
        .expect("openssl ec");
    assert!(status.success());
    let sec1 = std::fs::read_to_string(dir.path().join("sec1.pem")).expect("sec1");
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    for key in ["pkcs8.pem", "sec1.pem"] {
        let s = ServerTlsSettings::new(dir.path().join("cert.pem"), dir.path().join(key));
        ServerTls::load(&s, format!("test {key}"), &[tls::ALPN_HTTP11])
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }

    // An RSA key in PKCS#1, with a certificate for it from our CA.
    let ok = Command::new(&openssl)
        .current_dir(dir.path())
        .args(["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"])
        .stderr(Stdio::null())
        .status()
        .expect("openssl genrsa")
        .success();
    assert!(ok);
    let pkcs1 = std::fs::read_to_string(dir.path().join("pkcs1.pem")).expect("pkcs1");
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1}");
    let ok = Command::new(&openssl)
        .current_dir(dir.path())
        .args([
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "pkcs1.pem",
            "-out",
            "rsa8.pem",
        ])
        .status()
        .expect("openssl pkcs8")
        .success();
    assert!(ok);
    let rsa8 = std::fs::read_to_string(dir.path().join("rsa8.pem")).expect("rsa8");
    let rsa_key = KeyPair::from_pem(&rsa8).expect("rcgen reads the RSA key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let rsa_cert = params.signed_by(&rsa_key, &ca.issuer).expect("rsa cert");
    put(dir.path(), "rsa-cert.pem", &rsa_cert.pem());
    let s = ServerTlsSettings::new(
        dir.path().join("rsa-cert.pem"),
        dir.path().join("pkcs1.pem"),
    );
    let server = ServerTls::load(&s, "test pkcs1", &[tls::ALPN_HTTP11]).expect("PKCS#1 key");
    let backend = Backend::start_tls("rsa", server).await;
    let mut conn = tls_connect(backend.addr, client_config(&ca.pem, None), "localhost")
        .await
        .expect("handshake with the PKCS#1 server");
    assert_eq!(conn.get("x").await.expect("get"), (200, "rsa".into()));

    // A key that does not match the certificate says so, naming both files.
    let s = ServerTlsSettings::new(dir.path().join("cert.pem"), dir.path().join("pkcs1.pem"));
    let e = ServerTls::load(&s, "test mismatch", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cert.pem") && e.contains("pkcs1.pem"), "{e}");
}

/// Each refusal is told apart: expired, wrong name, untrusted CA, missing
/// client certificate, and a client certificate from another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_classified_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("test CA");
    let other = Ca::new("other CA");
    let good = ca.leaf(&["localhost"], false);
    let expired = ca.leaf(&["localhost"], true);
    let client = ca.leaf(&["client.l5d"], false);
    let stranger = other.leaf(&["client.l5d"], false);
    put(d, "ca.pem", &ca.pem);
    put(d, "other-ca.pem", &other.pem);
    put(d, "good.pem", &good.cert);
    put(d, "good.key", &good.key);
    put(d, "expired.pem", &expired.cert);
    put(d, "expired.key", &expired.key);
    put(d, "client.pem", &client.cert);
    put(d, "client.key", &client.key);
    put(d, "stranger.pem", &stranger.cert);
    put(d, "stranger.key", &stranger.key);

    // Servers: a good one requiring client certificates, an expired one.
    let mut mtls = ServerTlsSettings::new(d.join("good.pem"), d.join("good.key"));
    mtls.ca_cert_path = Some(d.join("ca.pem"));
    mtls.require_client_auth = true;
    let mtls = ServerTls::load(&mtls, "test mtls server", &[tls::ALPN_HTTP11]).expect("mtls");
    let mtls_backend = Backend::start_tls("mtls", mtls.clone()).await;
    let old = ServerTlsSettings::new(d.join("expired.pem"), d.join("expired.key"));
    let old = ServerTls::load(&old, "test expired server", &[]).expect("expired still loads");
    let old_backend = Backend::start_tls("old", old.clone()).await;

    let client_tls = |name: &str, ca: &str, auth: Option<(&str, &str)>| {
        let s = ClientTlsSettings {
            common_name: Some(name.to_string()),
            trust_certs_bundle: Some(d.join(ca)),
            client_auth: auth.map(|(c, k)| ClientAuth {
                cert_path: d.join(c),
                key_path: d.join(k),
                intermediate_certs_path: None,
            }),
            ..Default::default()
        };
        ClientTls::load(&s, format!("test client {name} {ca} {auth:?}"), &[]).expect("client tls")
    };
    let attempt = |tls: ClientTls, addr: SocketAddr, name: &'static str| async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let sn = ServerName::try_from(name).expect("name");
        match tls.connect(sn, tcp, addr).await {
            Err(f) => Err(f.reason),
            // TLS 1.3: the server checks our certificate after our side of
            // the handshake is done; its verdict comes with the first read.
            Ok(stream) => {
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                        .await
                        .expect("http handshake");
                let conn = tokio::spawn(conn);
                let req = Request::builder()
                    .uri("/")
                    .header("host", "x")
                    .body(Empty::new())
                    .expect("req");
                match send.send_request(req).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        drop(send);
                        let other = conn.await.ok().and_then(|r| r.err());
                        let f = tls::HandshakeFailure::find_in(&e)
                            .or_else(|| other.and_then(|o| tls::HandshakeFailure::find_in(&o)));
                        Err(f.map_or(Reason::Other, |f| f.reason))
                    }
                }
            }
        }
    };

    // The working case first.
    let ok = client_tls("localhost", "ca.pem", Some(("client.pem", "client.key")));
    assert_eq!(
        attempt(ok.clone(), mtls_backend.addr, "localhost").await,
        Ok(())
    );
    assert_eq!(ok.stats().handshakes(), 1);

    // Expired server certificate.
    let c = client_tls("localhost", "ca.pem", None);
    assert_eq!(
        attempt(c.clone(), old_backend.addr, "localhost").await,
        Err(Reason::Expired)
    );
    assert_eq!(c.stats().failures(Reason::Expired), 1);
    eventually("the expired server hears of it", || async {
        old.stats().failures(Reason::Expired) == 1
    })
    .await;

    // Wrong name.
    let c = client_tls(
        "web.example.com",
        "ca.pem",
        Some(("client.pem", "client.key")),
    );
    assert_eq!(
        attempt(c.clone(), mtls_backend.addr, "web.example.com").await,
        Err(Reason::NameMismatch)
    );
    assert_eq!(c.stats().failures(Reason::NameMismatch), 1);

    // Untrusted CA (the server's certificate is from `ca`, we trust `other`).
    let c = client_tls(
        "localhost",
        "other-ca.pem",
        Some(("client.pem", "client.key")),
    );
    assert_eq!(
        attempt(c.clone(), mtls_backend.addr, "localhost").await,
        Err(Reason::UnknownCa)
    );
    assert_eq!(c.stats().failures(Reason::UnknownCa), 1);
    eventually(
        "the server counts the client's unknown-CA alert",
        || async { mtls.stats().failures(Reason::UnknownCa) == 1 },
    )
    .await;

    // Missing client certificate.
    let c = client_tls("localhost", "ca.pem", None);
    assert_eq!(
        attempt(c, mtls_backend.addr, "localhost").await,
        Err(Reason::MissingClientCert)
    );
    eventually(
        "the server counts the missing client certificate",
        || async { mtls.stats().failures(Reason::MissingClientCert) == 1 },
    )
    .await;

    // A client certificate from a CA the server does not trust.
    let c = client_tls(
        "localhost",
        "ca.pem",
        Some(("stranger.pem", "stranger.key")),
    );
    assert_eq!(
        attempt(c, mtls_backend.addr, "localhost").await,
        Err(Reason::UnknownCa)
    );
    eventually("the server counts the stranger's certificate", || async {
        mtls.stats().failures(Reason::UnknownCa) == 2
    })
    .await;

    // Plaintext on a TLS port.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(mtls_backend.addr)
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
            .await
            .expect("the server hangs up");
        assert!(
            read.is_err() || !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "a TLS port answered plaintext"
        );
    }
    eventually("plaintext counted as not TLS", || async {
        mtls.stats().failures(Reason::NotTls) == 1
    })
    .await;
}

/// Two switchyards: the outgoing one originates TLS with a client
/// certificate, the incoming one terminates it and requires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_two_switchyards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("mesh CA");
    let incoming = ca.leaf(&["incoming.l5d"], false);
    let outgoing = ca.leaf(&["outgoing.l5d"], false);
    put(d, "ca.pem", &ca.pem);
    put(d, "incoming.pem", &incoming.cert);
    put(d, "incoming.key", &incoming.key);
    put(d, "outgoing.pem", &outgoing.cert);
    put(d, "outgoing.key", &outgoing.key);
    let backend = Backend::start("web").await;

    let incoming_proxy = Proxy::start(
        d,
        "incoming",
        &server_config(
            backend.addr,
            "    tls:\n      certPath: incoming.pem\n      keyPath: incoming.key\n      caCertPath: ca.pem\n      requireClientAuth: true\n",
        ),
    );
    let out_cfg = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: http\n  dtab: /svc/web => /$/inet/127.0.0.1/{};\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n\
         \x20 client:\n    tls:\n      commonName: incoming.l5d\n      trustCertsBundle: ca.pem\n      clientAuth:\n        certPath: outgoing.pem\n        keyPath: outgoing.key\n",
        incoming_proxy.router.port()
    );
    let outgoing_proxy = Proxy::start(d, "outgoing", &out_cfg);

    for _ in 0..3 {
        let (status, headers, body) = plain_get(outgoing_proxy.router, "web", "/").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "web"),
            "l5d-err: {}\noutgoing:\n{}\nincoming:\n{}",
            l5d_err(&headers),
            outgoing_proxy.log(),
            incoming_proxy.log()
        );
    }
    // One kept-alive TLS connection carried the three requests.
    assert_eq!(outgoing_proxy.counter("client", "/handshakes").await, 1);
    assert_eq!(incoming_proxy.counter("server", "/handshakes").await, 1);

    // Straight to the incoming one without a client certificate: refused.
    let direct = tls_connect(
        incoming_proxy.router,
        client_config(&ca.pem, None),
        "incoming.l5d",
    )
    .await;
    if let Ok(mut c) = direct {
        assert!(c.get("web").await.is_err(), "served without a client cert");
    }
    eventually(
        "the incoming one counts the missing certificate",
        || async {
            incoming_proxy
                .counter("server", "/handshakeFailures/missing_client_cert")
                .await
                == 1
        },
    )
    .await;
    // With one, it serves.
    let mut c = tls_connect(
        incoming_proxy.router,
        client_config(&ca.pem, Some(&outgoing)),
        "incoming.l5d",
    )
    .await
    .expect("mTLS handshake");
    assert_eq!(c.get("web").await.expect("get"), (200, "web".into()));
}

/// An upstream whose TLS fails gets a 502 whose `l5d-err` names the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_failure_is_a_502_naming_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("test CA");
    let other = Ca::new("other CA");
    let leaf = ca.leaf(&["web.svc"], false);
    put(d, "ca.pem", &ca.pem);
    put(d, "other-ca.pem", &other.pem);
    put(d, "web.pem", &leaf.cert);
    put(d, "web.key", &leaf.key);
    let s = ServerTlsSettings::new(d.join("web.pem"), d.join("web.key"));
    let server = ServerTls::load(&s, "test web backend", &[tls::ALPN_HTTP11]).expect("server");
    let backend = Backend::start_tls("web", server).await;

    for (name, ca_file, expect) in [
        ("web.svc", "ca.pem", None),
        ("wrong.svc", "ca.pem", Some("name mismatch")),
        ("web.svc", "other-ca.pem", Some("unknown CA")),
    ] {
        let cfg = format!(
            "admin:\n  ip: 127.0.0.1\n  port: 0\n\
             routers:\n- protocol: http\n  dtab: /svc/web => /$/inet/127.0.0.1/{};\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n\
             \x20 client:\n    tls:\n      commonName: {name}\n      trustCertsBundle: {ca_file}\n",
            backend.addr.port()
        );
        let proxy = Proxy::start(d, "proxy", &cfg);
        let (status, headers, body) = plain_get(proxy.router, "web", "/").await;
        match expect {
            None => assert_eq!((status, body.as_str()), (200, "web"), "{}", proxy.log()),
            Some(reason) => {
                assert_eq!(status, 502, "{body}");
                let err = l5d_err(&headers);
                assert!(
                    err.contains(&format!("TLS handshake failed: {reason}")),
                    "{reason}: l5d-err {err:?}"
                );
                assert!(body.contains(reason), "{body}");
                assert!(
                    proxy.log().contains("TLS handshake failed")
                        && proxy.log().contains(&backend.addr.to_string()),
                    "the failure is logged with the peer address:\n{}",
                    proxy.log()
                );
            }
        }
    }
}

/// New certificates are taken while requests flow, on kept-alive and new
/// connections alike, with no failed request; bad new files keep the
/// certificate in service and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let ca = Ca::new("test CA");
    let first = ca.leaf(&["localhost"], false);
    let second = ca.leaf(&["localhost"], false);
    put(&d, "cert.pem", &first.cert);
    put(&d, "key.pem", &first.key);
    let backend = Backend::start("web").await;
    let proxy = Proxy::start(
        &d,
        "proxy",
        &server_config(
            backend.addr,
            "    tls:\n      certPath: cert.pem\n      keyPath: key.pem\n",
        ),
    );
    let addr = proxy.router;
    let cfg = client_config(&ca.pem, None);

    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (ok, failed, stop, cfg) = (ok.clone(), failed.clone(), stop.clone(), cfg.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut conn = None;
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                // Even workers keep their connection; odd ones reconnect each time.
                if conn.is_none() || w % 2 == 1 {
                    match tls_connect(addr, cfg.clone(), "localhost").await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            failed.lock().expect("lock").push(e);
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match c.get("web").await {
                    Ok((200, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((s, b)) => failed.lock().expect("lock").push(format!("{s}: {b}")),
                    Err(e) => failed.lock().expect("lock").push(e),
                }
            }
        }));
    }

    // Let load build up, then swap the certificate and key.
    eventually("some load", || async { ok.load(Ordering::Relaxed) > 50 }).await;
    put(&d, "key.pem", &second.key);
    put(&d, "cert.pem", &second.cert);
    eventually("the reload", || async {
        proxy.counter("server", "/reloads").await == 1
    })
    .await;
    let before = ok.load(Ordering::Relaxed);
    eventually("load after the reload", || async {
        ok.load(Ordering::Relaxed) > before + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let failed = failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok.load(Ordering::Relaxed) + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(proxy.counter("server", "/reloadFailures").await, 0);
    let c = tls_connect(addr, cfg.clone(), "localhost")
        .await
        .expect("new conn");
    assert_eq!(
        c.peer_cert.as_ref(),
        Some(&second.der),
        "new connections get the new certificate"
    );

    // A broken certificate file: refused, the second certificate stays.
    put(&d, "cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    eventually("the refusal", || async {
        proxy.counter("server", "/reloadFailures").await == 1
    })
    .await;
    let j = proxy.tls_json().await;
    let why = j
        .as_object()
        .and_then(|m| m.values().find_map(|v| v["lastReloadError"].as_str()))
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("cert.pem"), "{why}");
    let mut c = tls_connect(addr, cfg.clone(), "localhost")
        .await
        .expect("still serving");
    assert_eq!(c.peer_cert.as_ref(), Some(&second.der));
    assert_eq!(c.get("web").await.expect("get"), (200, "web".into()));
    assert!(
        proxy.log().contains("new certificate refused"),
        "{}",
        proxy.log()
    );

    // An expired one: refused too, with the date.
    let expired = ca.leaf(&["localhost"], true);
    put(&d, "key.pem", &expired.key);
    put(&d, "cert.pem", &expired.cert);
    eventually("the expired refusal", || async {
        proxy.counter("server", "/reloadFailures").await == 2
    })
    .await;
    let c = tls_connect(addr, cfg, "localhost")
        .await
        .expect("still serving");
    assert_eq!(c.peer_cert.as_ref(), Some(&second.der));
    assert!(
        proxy.log().contains("expired on 2020-12-31"),
        "{}",
        proxy.log()
    );
}

/// The TLS keys load with Linkerd's names and defaults, and mistakes are
/// placed in the file.
#[test]
fn tls_config_keys() {
    use switchyard::config;
    let text = "admin:\n  port: 0\n  tls:\n    certPath: a.pem\n    keyPath: a.key\n\
                routers:\n- protocol: h2\n  servers:\n  - port: 0\n    tls:\n      certPath: c.pem\n      keyPath: k.pem\n      caCertPath: ca.pem\n      requireClientAuth: true\n      protocols: [TLSv1.3]\n\
                \x20 client:\n    tls:\n      commonName: web\n      trustCerts: [t1.pem, t2.pem]\n      clientAuth:\n        certPath: cc.pem\n        keyPath: ck.pem\n";
    let c = config::parse_str(text, "t.yaml").expect("valid");
    let admin = c.admin.tls.as_ref().expect("admin.tls");
    assert_eq!(admin.cert_path, Path::new("a.pem"));
    let s = c.routers[0].servers[0].tls.as_ref().expect("server tls");
    assert!(s.require_client_auth);
    assert_eq!(s.ca_cert_path.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(s.protocols, vec![tls::TlsVersion::Tls13]);
    let t = match &c.routers[0].client {
        config::ClientConfig::Global(s) => s.tls.as_ref().expect("client tls"),
        other => panic!("{other:?}"),
    };
    assert_eq!(t.common_name.as_deref(), Some("web"));
    assert_eq!(t.trust_certs.len(), 2);
    assert_eq!(
        t.client_auth.as_ref().map(|a| a.key_path.clone()),
        Some(PathBuf::from("ck.pem"))
    );
    // /config.json shows them with Linkerd's names.
    let j = serde_json::to_value(&c).expect("json");
    assert_eq!(
        j["routers"][0]["servers"][0]["tls"]["requireClientAuth"],
        true
    );
    assert_eq!(j["routers"][0]["client"]["tls"]["commonName"], "web");

    // `enabled: false` turns TLS off.
    let off = "routers:\n- protocol: http\n  servers:\n  - port: 0\n    tls:\n      enabled: false\n      certPath: c.pem\n      keyPath: k.pem\n";
    let c = config::parse_str(off, "t.yaml").expect("valid");
    assert!(c.routers[0].servers[0].tls.is_none());

    let bad = "routers:\n- protocol: http\n  servers:\n  - port: 0\n    tls:\n      certPath: c.pem\n      keyPath: k.pem\n      requireClientAuth: true\n      protocols: [SSLv3]\n  client:\n    tls:\n      trustCertsBundle: ca.pem\n";
    let errs = config::parse_str(bad, "t.yaml").unwrap_err().to_string();
    for want in [
        "t.yaml:6:7: routers[0].servers[0].tls: requireClientAuth needs caCertPath",
        "routers[0].servers[0].tls.protocols[0]: unsupported TLS protocol 'SSLv3'",
        "t.yaml:12:7: routers[0].client.tls: commonName is required",
    ] {
        assert!(errs.contains(want), "missing {want:?} in\n{errs}");
    }
    let missing =
        "routers:\n- protocol: http\n  servers:\n  - port: 0\n    tls:\n      certPath: c.pem\n";
    let errs = config::parse_str(missing, "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("missing key 'keyPath' in routers[0].servers[0].tls"),
        "{errs}"
    );
}

/// A missing or bad file stops `switchyard run` with the file and key named.
#[test]
fn bad_files_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("cert.pem"), "not a certificate\n").expect("write");
    let cfg = "admin:\n  ip: 127.0.0.1\n  port: 0\nrouters:\n- protocol: http\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n    tls:\n      certPath: cert.pem\n      keyPath: missing.key\n";
    std::fs::write(d.join("l.yaml"), cfg).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", "l.yaml"])
        .current_dir(d)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "tls: keyPath missing.key: cannot read: No such file or directory (os error 2)\n"
        ),
        "{err}"
    );

    std::fs::write(d.join("missing.key"), "").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", "l.yaml"])
        .current_dir(d)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls: certPath cert.pem: no certificate found"),
        "{err}"
    );
}

/// `switchyard check` opens the certificate and key files as `run` would.
#[test]
fn check_opens_the_tls_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cfg = "admin:\n  ip: 127.0.0.1\n  port: 0\nrouters:\n- protocol: http\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n    tls:\n      certPath: cert.pem\n      keyPath: key.pem\n";
    std::fs::write(d.join("l.yaml"), cfg).expect("write");
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["check", "-c", "l.yaml"])
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .expect("check")
    };
    let out = check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("l.yaml: ") && err.contains("certPath cert.pem"),
        "{err}"
    );

    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], false);
    put(d, "cert.pem", &leaf.cert);
    put(d, "key.pem", &leaf.key);
    let out = check();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("l.yaml: ok"), "{stdout}");
}

/// An h2 router originates TLS with ALPN h2 to an h2 backend (gRPC meshes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_router_originates_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["web.svc"], false);
    put(d, "ca.pem", &ca.pem);
    put(d, "web.pem", &leaf.cert);
    put(d, "web.key", &leaf.key);
    let s = ServerTlsSettings::new(d.join("web.pem"), d.join("web.key"));
    let server = ServerTls::load(&s, "test h2 backend", &[tls::ALPN_H2]).expect("server");
    let backend = Backend::start_tls("web-h2", server.clone()).await;
    let cfg = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n\
         routers:\n- protocol: h2\n  dtab: /svc/web => /$/inet/127.0.0.1/{};\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n\
         \x20 client:\n    tls:\n      commonName: web.svc\n      trustCertsBundle: ca.pem\n",
        backend.addr.port()
    );
    let proxy = Proxy::start(d, "h2", &cfg);
    let stream = TcpStream::connect(proxy.router).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::builder()
            .uri("http://web/")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let rsp = send.send_request(req).await.expect("response");
        let status = rsp.status().as_u16();
        let err = l5d_err(rsp.headers());
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            (status, &body[..]),
            (200, &b"web-h2"[..]),
            "{err}\n{}",
            proxy.log()
        );
    }
    // One multiplexed TLS connection.
    assert_eq!(server.stats().handshakes(), 1);
}

/// `admin.tls` serves the admin endpoints over TLS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], false);
    put(d, "cert.pem", &leaf.cert);
    put(d, "key.pem", &leaf.key);
    let cfg = "admin:\n  ip: 127.0.0.1\n  port: 0\n  tls:\n    certPath: cert.pem\n    keyPath: key.pem\n\
               routers:\n- protocol: http\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n";
    let proxy = Proxy::start(d, "admin", cfg);
    let mut c = tls_connect(proxy.admin, client_config(&ca.pem, None), "localhost")
        .await
        .expect("admin TLS handshake");
    let (status, body) = c.get_path("admin", "/admin").await.expect("admin index");
    assert_eq!(status, 200);
    assert!(body.contains("/tls.json"), "{body}");
    // Plaintext is not answered.
    let plain = tokio::time::timeout(Duration::from_secs(10), async {
        let stream = TcpStream::connect(proxy.admin).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("/admin/ping")
            .header("host", "admin")
            .body(Empty::new())
            .expect("req");
        send.send_request(req).await
    })
    .await
    .expect("answered or refused in time");
    assert!(plain.is_err(), "plaintext admin request answered");
}

/// `io.l5d.static` client configs: TLS per bound-name prefix, with the
/// prefix's `{capture}` in `commonName` (Linkerd's own tls.yaml example).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_client_tls_with_captures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("disco")).expect("disco");
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["web.svc"], false);
    put(d, "ca.pem", &ca.pem);
    put(d, "web.pem", &leaf.cert);
    put(d, "web.key", &leaf.key);
    let s = ServerTlsSettings::new(d.join("web.pem"), d.join("web.key"));
    let server = ServerTls::load(&s, "test static backend", &[tls::ALPN_HTTP11]).expect("server");
    let web = Backend::start_tls("web", server).await;
    let plain = Backend::start("plain").await;
    put(
        &d.join("disco"),
        "web",
        &format!("127.0.0.1 {}\n", web.addr.port()),
    );
    put(
        &d.join("disco"),
        "plain",
        &format!("127.0.0.1 {}\n", plain.addr.port()),
    );
    let cfg = "admin:\n  ip: 127.0.0.1\n  port: 0\n\
               namers:\n- kind: io.l5d.fs\n  rootDir: disco\n\
               routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs;\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n\
               \x20 client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs/{service}\n      tls:\n        commonName: \"{service}.svc\"\n        trustCertsBundle: ca.pem\n    - prefix: /#/io.l5d.fs/plain\n      requestAttemptTimeoutMs: 5000\n";
    let proxy = Proxy::start(d, "static", cfg);
    let (status, headers, body) = plain_get(proxy.router, "web", "/").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "web"),
        "{}\n{}",
        l5d_err(&headers),
        proxy.log()
    );
    // A later entry without tls does not take it away (entries merge key
    // by key): `plain` is still called over TLS, and the plaintext backend
    // cannot answer it.
    let (status, headers, _) = plain_get(proxy.router, "plain", "/").await;
    assert_eq!(status, 502, "{}", proxy.log());
    let err = l5d_err(&headers);
    assert!(err.contains("TLS handshake failed"), "{err}");
}
