//! TLS termination cost against plain HTTP, with switchyard's `ServerTls`
//! (rustls, ring, ECDSA P-256 certificate from rcgen):
//!
//! * `request/plain` and `request/tls`: one HTTP/1.1 GET with a 1 KiB
//!   response over a kept-alive connection;
//! * `handshake+request/tls`: a new TCP connection, a full TLS 1.3
//!   handshake and one request (what a client that does not reuse
//!   connections costs).
//!
//! Client and server run on one current-thread runtime, so the time per
//! iteration is the CPU both sides spend (the client's share of TLS is
//! about the server's). Run: `cargo bench --bench tls`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::ServerName;
use switchyard::tls::{self, ServerTls, ServerTlsSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const BODY: &[u8] = &[b'x'; 1024];

async fn serve<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

async fn server(tls: Option<ServerTls>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve(TokioIo::new(stream)).await,
                    Some(t) => {
                        if let Ok(s) = t.accept(stream, peer).await {
                            serve(TokioIo::new(s)).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn connect(
    addr: SocketAddr,
    client: Option<&Arc<rustls::ClientConfig>>,
) -> SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    match client {
        None => {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            send
        }
        Some(cfg) => {
            let name = ServerName::try_from("localhost").expect("name");
            let s = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .expect("tls");
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            send
        }
    }
}

async fn get(send: &mut SendRequest<Empty<Bytes>>) {
    send.ready().await.expect("ready");
    let req = Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request");
    let rsp = send.send_request(req).await.expect("response");
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), BODY.len());
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let settings = ServerTlsSettings::new(dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (plain, tls_addr) = rt.block_on(async {
        let tls = ServerTls::load(&settings, "bench", &[tls::ALPN_HTTP11]).expect("server tls");
        (server(None).await, server(Some(tls)).await)
    });

    let mut g = c.benchmark_group("tls");
    g.measurement_time(Duration::from_secs(5));
    keepalive(&rt, &mut g, "request/plain", plain, None);
    keepalive(&rt, &mut g, "request/tls", tls_addr, Some(&client));
    g.bench_function("handshake+request/tls", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut send = connect(tls_addr, Some(&client)).await;
                get(&mut send).await;
            })
        })
    });
    g.bench_function("connect+request/plain", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut send = connect(plain, None).await;
                get(&mut send).await;
            })
        })
    });
    g.finish();
}

fn keepalive(
    rt: &Runtime,
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    addr: SocketAddr,
    client: Option<&Arc<rustls::ClientConfig>>,
) {
    let mut send = rt.block_on(connect(addr, client));
    g.bench_function(name, |b| b.iter(|| rt.block_on(get(&mut send))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
