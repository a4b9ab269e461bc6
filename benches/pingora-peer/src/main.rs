//! A minimal Pingora reverse proxy: the Pingora peer in switchyard's load
//! benchmark (benches/load). It forwards every request to one upstream over
//! a keep-alive pool, on ONE worker thread, so it compares like for like with
//! `switchyard run --threads 1`, one nginx worker and HAProxy `nbthread 1`.
//!
//! Usage: `pingora-peer LISTEN_ADDR UPSTREAM_ADDR [RUN_DIR]`, e.g.
//! `pingora-peer 127.0.0.1:8083 127.0.0.1:8080 /tmp/run`.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Forwards everything to one fixed upstream; the benchmark measures the
/// proxy's own cost, so there is no routing logic to speak of.
struct Forward {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = match (args.get(1), args.get(2)) {
        (Some(l), Some(u)) => (l.clone(), u.clone()),
        _ => {
            eprintln!("usage: pingora-peer LISTEN_ADDR UPSTREAM_ADDR [RUN_DIR]");
            return ExitCode::from(2);
        }
    };
    let upstream: SocketAddr = match upstream.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pingora-peer: bad upstream address {upstream:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let run_dir = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());

    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        upstream_keepalive_pool_size: 128,
        pid_file: format!("{run_dir}/pingora-peer.pid"),
        upgrade_sock: format!("{run_dir}/pingora-peer-upgrade.sock"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Forward { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    eprintln!("pingora-peer listening addr={listen} upstream={upstream}");
    server.run_forever();
}
