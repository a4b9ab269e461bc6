//! Wiring: a validated [`Config`] becomes namers, interpreters, routers, their
//! servers and the admin server, all sharing one [`Shutdown`].
//!
//! This is the only module that knows both the config's shape and the
//! runtime's types; everything else takes plain parameters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminState;
use crate::config::{self, Config};
use crate::dtab::{Dtab, Path};
use crate::naming::{DtabFileHandle, FsNamer, InetResolver, Interpreter, Namer, watch_dtab_file};
use crate::proxy::{self, RouterServers, Shutdown};
use crate::routing::{Router, RouterParams, ServerParams};
use crate::telemetry::{self, TelemetryConfig};
use crate::tls::{self, ClientTls, ClientTlsRules, ServerTls};

/// How often `/$/inet` host names are resolved again (Linkerd 1's default).
const INET_REFRESH: Duration = Duration::from_secs(5);

/// Everything built from a config, before any listener is bound.
struct Runtime {
    routers: Vec<(Router, Vec<ServerParams>)>,
    /// Dtab file watchers stay alive as long as the routers serve.
    /// (router label, its dtab file watch).
    dtab_files: Vec<(String, DtabFileHandle)>,
}

/// Run `config` until `shutdown` fires (SIGTERM, SIGINT or `POST
/// /admin/shutdown`), then drain for `admin.shutdownGraceMs` and return.
///
/// Each listener's address is logged as `router listening` / `admin
/// listening`, so port 0 in the config can be used (tests do).
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    telemetry::install(&telemetry_config(&config)).context("telemetry")?;
    // Before the first request, which would otherwise pay for it.
    crate::clock::calibrate();
    let runtime = build(&config)?;

    let mut routers = Vec::new();
    for (router, params) in runtime.routers {
        let mut servers = Vec::new();
        for server in params {
            let listener = TcpListener::bind(server.addr).await.with_context(|| {
                format!(
                    "router {}: cannot listen on {}",
                    router.label(),
                    server.addr
                )
            })?;
            let addr = listener.local_addr()?;
            tracing::info!(router = %router.label(), %addr, "router listening");
            servers.push((listener, server));
        }
        routers.push(RouterServers { router, servers });
    }

    let admin_tls = match &config.admin.tls {
        None => None,
        Some(t) => Some(ServerTls::load(t, "admin", &[tls::ALPN_HTTP11]).context("admin: tls")?),
    };
    let admin_listener = TcpListener::bind(config.admin.addr)
        .await
        .with_context(|| format!("admin: cannot listen on {}", config.admin.addr))?;
    tracing::info!(addr = %admin_listener.local_addr()?, "admin listening");
    let state = AdminState {
        routers: routers.iter().map(|r| r.router.clone()).collect(),
        config: serde_json::to_value(&config).unwrap_or_default(),
        shutdown: shutdown.clone(),
        dtab_files: runtime
            .dtab_files
            .iter()
            .map(|(label, h)| (label.clone(), h.clone()))
            .collect(),
    };

    proxy::run_with_admin_tls(
        routers,
        Some((admin_listener, state, admin_tls)),
        shutdown,
        config.admin.shutdown_grace,
    )
    .await?;
    // The dtab file watchers live until every server has drained.
    drop(runtime.dtab_files);
    tracing::info!("stopped");
    Ok(())
}

fn build(config: &Config) -> anyhow::Result<Runtime> {
    let inet = InetResolver::new(INET_REFRESH);
    let mut namers: Vec<(Path, Arc<dyn Namer>)> = Vec::new();
    for n in &config.namers {
        match n {
            config::Namer::Fs(fs) => {
                let namer = FsNamer::new(&fs.root_dir, fs.prefix.clone())
                    .with_context(|| format!("namer {}", fs.prefix))?;
                namers.push((fs.prefix.clone(), Arc::new(namer)));
            }
        }
    }

    let mut routers = Vec::new();
    let mut dtab_files = Vec::new();
    for r in &config.routers {
        let base = match &r.interpreter {
            config::Interpreter::Default => watch::channel(r.dtab.clone()).1,
            config::Interpreter::Fs { dtab_file } => {
                let (file, handle) = watch_dtab_file(dtab_file)
                    .with_context(|| format!("router {}: interpreter io.l5d.fs", r.label))?;
                dtab_files.push((r.label.clone(), handle));
                prepend(&r.dtab, file)
            }
        };
        let interpreter = Interpreter::with_inet(namers.clone(), base, inet.clone());
        let mut params = router_params(r);
        params.client_tls = client_tls(r)?;
        let servers = r
            .servers
            .iter()
            .map(|s| server_params(r, s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        routers.push((Router::new(params, Arc::new(interpreter)), servers));
    }
    Ok(Runtime {
        routers,
        dtab_files,
    })
}

/// The router's own `dtab` comes first, the file's dentries after it (so they
/// win); the combination follows the file as it changes.
fn prepend(router_dtab: &Dtab, mut file: watch::Receiver<Dtab>) -> watch::Receiver<Dtab> {
    if router_dtab.is_empty() {
        return file;
    }
    let first = router_dtab.concat(&file.borrow());
    let (tx, rx) = watch::channel(first);
    let router_dtab = router_dtab.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = tx.closed() => return,
                changed = file.changed() => if changed.is_err() { return },
            }
            let next = router_dtab.concat(&file.borrow_and_update());
            tx.send_replace(next);
        }
    });
    rx
}

fn router_params(r: &config::Router) -> RouterParams {
    let mut p = RouterParams::new(r.protocol);
    p.label = r.label.clone();
    p.dst_prefix = r.dst_prefix.clone();
    p.identifiers = r.identifiers.clone();
    p.binding_timeout = r.binding_timeout;
    p.max_call_depth = r.max_call_depth as usize;
    p.binding_cache_capacity = r.binding_cache.trees;
    p.client_cache_capacity = r.binding_cache.clients;
    p.binding_idle_ttl = r.binding_cache.idle_ttl;
    p.client = r.client.clone();
    p.service = r.service.clone();
    p
}

/// Load every certificate, key and CA file the config names, as `run` would,
/// and list what fails (for `switchyard check`). Must run inside a runtime:
/// loading starts the reload watchers, which stop when dropped.
pub fn check_tls(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(t) = &config.admin.tls
        && let Err(e) = ServerTls::load(t, "admin", &[tls::ALPN_HTTP11])
    {
        problems.push(format!("admin.tls: {e:#}"));
    }
    for r in &config.routers {
        for s in &r.servers {
            if let Err(e) = server_params(r, s) {
                problems.push(format!("{e:#}"));
            }
        }
        if let Err(e) = client_tls(r) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

fn server_params(r: &config::Router, s: &config::Server) -> anyhow::Result<ServerParams> {
    let mut p = ServerParams::new(s.addr);
    p.max_concurrent_requests = s.max_concurrent_requests.map(|n| n as usize);
    p.clear_context = s.clear_context;
    if let Some(t) = &s.tls {
        let name = format!("router {} server {}", r.label, s.addr);
        p.tls = Some(
            ServerTls::load(t, name.clone(), server_alpn(r.protocol))
                .with_context(|| format!("{name}: tls"))?,
        );
    }
    Ok(p)
}

/// What a TLS server of a router offers through ALPN: an http router also
/// speaks HTTP/2 (as it does h2c), an h2 router only HTTP/2.
fn server_alpn(protocol: config::Protocol) -> &'static [&'static [u8]] {
    match protocol {
        config::Protocol::Http => &[tls::ALPN_H2, tls::ALPN_HTTP11],
        config::Protocol::H2 => &[tls::ALPN_H2],
    }
}

/// The router's `client.tls` (global, or per `io.l5d.static` entry), loaded.
fn client_tls(r: &config::Router) -> anyhow::Result<Option<Arc<ClientTlsRules>>> {
    let alpn: &[&[u8]] = match r.protocol {
        config::Protocol::Http => &[tls::ALPN_HTTP11],
        config::Protocol::H2 => &[tls::ALPN_H2],
    };
    let load = |t: &tls::ClientTlsSettings, name: String| {
        ClientTls::load(t, name.clone(), alpn).with_context(|| format!("{name}: tls"))
    };
    match &r.client {
        config::ClientConfig::Global(s) => {
            let Some(t) = &s.tls else { return Ok(None) };
            let loaded = load(t, format!("router {} client", r.label))?;
            Ok(Some(Arc::new(ClientTlsRules::global(
                loaded,
                t.common_name.clone(),
            ))))
        }
        config::ClientConfig::Static { configs } => {
            let mut rules = Vec::new();
            for c in configs {
                let Some(t) = &c.settings.tls else { continue };
                let name = format!("router {} client {}", r.label, c.prefix);
                let prefix = c.prefix.clone();
                rules.push(tls::ClientTlsRule {
                    prefix: prefix.to_string(),
                    matcher: Arc::new(move |id| prefix.captures(id)),
                    common_name: t.common_name.clone(),
                    tls: load(t, name)?,
                });
            }
            if rules.is_empty() {
                return Ok(None);
            }
            Ok(Some(Arc::new(ClientTlsRules::new(rules))))
        }
    }
}

/// `telemetry:` and each router's access log, as telemetry takes them.
fn telemetry_config(config: &Config) -> TelemetryConfig {
    let mut t = TelemetryConfig::default();
    for entry in &config.telemetry {
        match entry {
            config::Telemeter::Prometheus { path, prefix } => {
                t.prometheus.get_or_insert(telemetry::PrometheusConfig {
                    path: path.clone(),
                    prefix: prefix.clone(),
                });
            }
            config::Telemeter::Zipkin {
                host,
                port,
                sample_rate,
            } => {
                t.zipkin.get_or_insert(telemetry::ZipkinConfig {
                    host: host.clone(),
                    port: *port,
                    sample_rate: *sample_rate,
                });
            }
            config::Telemeter::RecentRequests {
                sample_rate,
                capacity,
            } => {
                t.recent.get_or_insert(telemetry::RecentConfig {
                    sample_rate: *sample_rate,
                    capacity: *capacity,
                });
            }
        }
    }
    for r in &config.routers {
        if let Some(path) = &r.access_log {
            t.access_logs.insert(r.label.clone(), path.clone());
        }
    }
    t
}
