//! Text to typed config: YAML (or JSON) to a span-aware tree, the schema
//! walk, serde into the raw types, then Linkerd's defaults and the values
//! that need parsing (paths, dtabs, addresses), every problem with its
//! position.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::Problem;
use super::model::{self, raw};
use super::node::{Node, Pos};
use super::schema::{self, Walker};
use crate::dtab::{Dtab, ParseError, Path};

/// Where each value stands in the file, by key path (`routers[0].dtab`).
pub(crate) type Positions = HashMap<String, Pos>;

/// What parsing found.
pub(crate) struct Parsed {
    /// `None` only when the document could not be typed at all.
    pub config: Option<model::Config>,
    /// Every problem, in file order; may be non-empty with a config.
    pub problems: Vec<Problem>,
    /// Where each value stands.
    pub positions: Positions,
}

/// Parse a config text; `source` names it in messages.
pub(crate) fn parse(text: &str, source: &str) -> Parsed {
    let node = match tree(text, source) {
        Ok(n) => n,
        Err(p) => {
            return Parsed {
                config: None,
                problems: vec![p],
                positions: Positions::new(),
            };
        }
    };
    let mut walker = Walker::new(source);
    let json = walker.walk(&node, &schema::Ty::Obj(&schema::FILE), "");
    if !walker.problems.is_empty() {
        let mut problems = walker.problems;
        problems.sort_by_key(|p| (p.line == 0, p.line, p.col));
        return Parsed {
            config: None,
            problems,
            positions: walker.positions,
        };
    }
    let file: raw::File = match serde_json::from_value(json) {
        Ok(f) => f,
        // The walk and the raw types disagree: a bug, but still a message.
        Err(e) => {
            return Parsed {
                config: None,
                problems: vec![Problem::at(source, node.pos, e.to_string())],
                positions: walker.positions,
            };
        }
    };
    let mut b = Builder {
        text,
        source,
        positions: &walker.positions,
        problems: Vec::new(),
    };
    let config = b.config(file);
    let mut problems = b.problems;
    problems.extend(super::validate::internal(
        &config,
        source,
        &walker.positions,
    ));
    // In file order; problems without a place (across entries) last.
    problems.sort_by_key(|p| (p.line == 0, p.line, p.col));
    Parsed {
        config: Some(config),
        problems,
        positions: walker.positions,
    }
}

/// The document as a span-aware tree, or its syntax error.
fn tree(text: &str, source: &str) -> Result<Node, Problem> {
    // JSON is YAML, but JSON's own parser words JSON mistakes better.
    if text.trim_start().starts_with('{')
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text)
    {
        let msg = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_string();
        let pos = Pos {
            line: e.line() as u64,
            col: e.column() as u64,
            offset: None,
        };
        return Err(Problem::at(source, pos, format!("invalid JSON: {msg}")));
    }
    if text.trim().is_empty() {
        return Err(Problem::at(
            source,
            Pos::default(),
            "empty config: expected a mapping with at least `routers`".into(),
        ));
    }
    match serde_saphyr::from_str::<Node>(text) {
        Ok(n) => Ok(n),
        Err(e) => {
            let e = e.without_snippet();
            let (pos, msg) = match e.location() {
                Some(l) => {
                    let msg = e.to_string();
                    let suffix = format!(" at line {}, column {}", l.line(), l.column());
                    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_string();
                    (
                        Pos {
                            line: l.line(),
                            col: l.column(),
                            offset: None,
                        },
                        msg,
                    )
                }
                None => (Pos::default(), e.to_string()),
            };
            Err(Problem::at(source, pos, format!("invalid YAML: {msg}")))
        }
    }
}

struct Builder<'a> {
    text: &'a str,
    source: &'a str,
    positions: &'a Positions,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn pos(&self, path: &str) -> Pos {
        self.positions.get(path).copied().unwrap_or_default()
    }

    fn problem(&mut self, path: &str, message: String) {
        let pos = self.pos(path);
        self.problems.push(Problem::at(self.source, pos, message));
    }

    fn config(&mut self, f: raw::File) -> model::Config {
        let admin = match f.admin {
            None => model::Admin::default(),
            Some(a) => model::Admin {
                addr: SocketAddr::new(
                    self.ip("admin.ip", a.ip.as_deref()),
                    a.port.unwrap_or(model::DEFAULT_ADMIN_PORT),
                ),
                shutdown_grace: a
                    .shutdown_grace_ms
                    .map_or(model::DEFAULT_SHUTDOWN_GRACE, Duration::from_millis),
                tls: a.tls.and_then(|t| self.server_tls("admin.tls", t)),
            },
        };
        let namers = f
            .namers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, n)| self.namer(i, n))
            .collect();
        let routers = f
            .routers
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.router(i, r))
            .collect();
        let telemetry = f
            .telemetry
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.telemeter(i, t))
            .collect();
        model::Config {
            admin,
            namers,
            routers,
            telemetry,
            source: self.source.to_string(),
        }
    }

    fn ip(&mut self, path: &str, ip: Option<&str>) -> IpAddr {
        match ip {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(s) => match s.parse() {
                Ok(ip) => ip,
                Err(_) => {
                    self.problem(
                        path,
                        format!("{path}: expected an IP address such as 127.0.0.1 or 0.0.0.0, found '{s}'"),
                    );
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                }
            },
        }
    }

    fn path(&mut self, key: &str, text: &str) -> Path {
        if !text.starts_with('/') {
            self.problem(
                key,
                format!("{key}: expected a path starting with '/' such as /svc, found '{text}'"),
            );
            return Path::empty();
        }
        match text.parse::<Path>() {
            Ok(p) => p,
            Err(e) => {
                self.problem(key, format!("{key}: {}", bare(&e)));
                Path::empty()
            }
        }
    }

    fn namer(&mut self, i: usize, n: raw::Namer) -> model::Namer {
        match n {
            raw::Namer::Fs {
                prefix, root_dir, ..
            } => model::Namer::Fs(model::FsNamer {
                prefix: self.path(
                    &format!("namers[{i}].prefix"),
                    prefix.as_deref().unwrap_or("/io.l5d.fs"),
                ),
                root_dir: PathBuf::from(root_dir),
            }),
        }
    }

    fn router(&mut self, i: usize, r: raw::Router) -> model::Router {
        let at = format!("routers[{i}]");
        let protocol = match r.protocol {
            raw::Protocol::Http => model::Protocol::Http,
            raw::Protocol::H2 => model::Protocol::H2,
        };
        let dtab = match &r.dtab {
            None => Dtab::empty(),
            Some(text) => self.inline_dtab(&format!("{at}.dtab"), text),
        };
        let dst_prefix = self.path(
            &format!("{at}.dstPrefix"),
            r.dst_prefix.as_deref().unwrap_or(model::DEFAULT_DST_PREFIX),
        );
        let identifiers = match r.identifier {
            None => vec![model::Identifier::default_for(protocol)],
            Some(ids) => {
                // Written as a list or as one mapping: the walk saw which.
                let many = self.positions.contains_key(&format!("{at}.identifier[0]"));
                ids.into_iter()
                    .enumerate()
                    .map(|(j, id)| {
                        let key = if many {
                            format!("{at}.identifier[{j}]")
                        } else {
                            format!("{at}.identifier")
                        };
                        self.identifier(&key, protocol, id)
                    })
                    .collect()
            }
        };
        let interpreter = match r.interpreter {
            None | Some(raw::Interpreter::Default {}) => model::Interpreter::Default,
            Some(raw::Interpreter::Fs { dtab_file }) => model::Interpreter::Fs {
                dtab_file: PathBuf::from(dtab_file),
            },
        };
        let binding_cache = match r.binding_cache {
            None => model::BindingCache::default(),
            Some(c) => {
                let d = model::BindingCache::default();
                model::BindingCache {
                    paths: c.paths.unwrap_or(d.paths),
                    trees: c.trees.unwrap_or(d.trees),
                    bounds: c.bounds.unwrap_or(d.bounds),
                    clients: c.clients.unwrap_or(d.clients),
                    idle_ttl: c.idle_ttl_secs.map_or(d.idle_ttl, Duration::from_secs),
                }
            }
        };
        // Enforced per router: the strictest of the router's own key and its
        // servers' (Linkerd 1 puts the h2 one on the servers).
        let server_depth = r.servers.iter().filter_map(|s| s.max_call_depth).min();
        let servers = r
            .servers
            .into_iter()
            .enumerate()
            .map(|(j, s)| model::Server {
                addr: SocketAddr::new(
                    self.ip(&format!("{at}.servers[{j}].ip"), s.ip.as_deref()),
                    s.port.unwrap_or(protocol.default_port()),
                ),
                max_concurrent_requests: s.max_concurrent_requests,
                clear_context: s.clear_context.unwrap_or(false),
                tls: s
                    .tls
                    .and_then(|t| self.server_tls(&format!("{at}.servers[{j}].tls"), t)),
            })
            .collect();
        let client = match r.client {
            None => model::ClientConfig::default(),
            Some(raw::Client::Global(settings)) => {
                self.client_settings(&format!("{at}.client"), &settings);
                model::ClientConfig::Global(settings)
            }
            Some(raw::Client::Static { configs }) => model::ClientConfig::Static {
                configs: configs
                    .into_iter()
                    .enumerate()
                    .map(|(j, c)| {
                        let entry = format!("{at}.client.configs[{j}]");
                        self.client_settings(&entry, &c.settings);
                        let key = format!("{entry}.prefix");
                        let prefix = match c.prefix.parse::<model::ClientPrefix>() {
                            Ok(p) => p,
                            Err(e) => {
                                self.problem(&key, format!("{key}: {e}"));
                                model::ClientPrefix::default()
                            }
                        };
                        model::StaticClient {
                            prefix,
                            settings: c.settings,
                        }
                    })
                    .collect(),
            },
        };
        let service = match r.service {
            None => model::ServiceConfig::default(),
            Some(raw::Service::Global(keys)) => {
                model::ServiceConfig::global(self.service_keys(&format!("{at}.service"), keys))
            }
            Some(raw::Service::Static { configs }) => {
                let mut rules = Vec::new();
                for (j, e) in configs.into_iter().enumerate() {
                    let key = format!("{at}.service.configs[{j}]");
                    let prefix = match e.prefix.parse() {
                        Ok(p) => p,
                        Err(err) => {
                            self.problem(&format!("{key}.prefix"), format!("{key}.prefix: {err}"));
                            continue;
                        }
                    };
                    rules.push(crate::service::ServiceRule {
                        prefix,
                        overrides: self.service_keys(&key, e.keys),
                    });
                }
                model::ServiceConfig::Static { configs: rules }
            }
        };
        model::Router {
            protocol,
            service,
            label: r.label.unwrap_or_else(|| protocol.as_str().to_string()),
            dtab,
            dst_prefix,
            identifiers,
            interpreter,
            binding_timeout: r
                .binding_timeout_ms
                .map_or(model::DEFAULT_BINDING_TIMEOUT, Duration::from_millis),
            binding_cache,
            servers,
            client,
            max_call_depth: match (r.max_call_depth, server_depth) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(protocol.default_max_call_depth()),
            },
            access_log: r.http_access_log.or(r.h2_access_log).map(PathBuf::from),
        }
    }

    fn telemeter(&mut self, i: usize, t: raw::Telemeter) -> model::Telemeter {
        let at = format!("telemetry[{i}]");
        match t {
            raw::Telemeter::Prometheus { path, prefix } => {
                let path = path.unwrap_or_else(|| "/admin/metrics/prometheus".into());
                if !path.starts_with('/') {
                    self.problem(
                        &format!("{at}.path"),
                        format!("{at}.path: expected a path starting with '/', found '{path}'"),
                    );
                }
                let prefix = prefix.unwrap_or_default();
                let valid = prefix.chars().enumerate().all(|(j, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit())
                });
                if !valid {
                    self.problem(
                        &format!("{at}.prefix"),
                        format!("{at}.prefix: expected letters, digits and '_' (a metric name prefix), found '{prefix}'"),
                    );
                }
                model::Telemeter::Prometheus { path, prefix }
            }
            raw::Telemeter::Zipkin {
                host,
                port,
                sample_rate,
            } => model::Telemeter::Zipkin {
                host: host.unwrap_or_else(|| "localhost".into()),
                port: port.unwrap_or(9411),
                sample_rate: match sample_rate {
                    None => 0.001,
                    Some(v) => self.rate(&format!("{at}.sampleRate"), &v),
                },
            },
            raw::Telemeter::RecentRequests {
                sample_rate,
                capacity,
            } => model::Telemeter::RecentRequests {
                sample_rate: self.rate(&format!("{at}.sampleRate"), &sample_rate),
                capacity: capacity.unwrap_or(10),
            },
        }
    }

    /// A sample rate: a number from 0 to 1.
    fn rate(&mut self, key: &str, v: &serde_json::Value) -> f64 {
        let n = match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                self.problem(
                    key,
                    format!("{key}: expected a number from 0 to 1, found {v}"),
                );
                0.0
            }
        }
    }

    /// Checks across a client's keys the schema cannot express.
    fn client_settings(&mut self, at: &str, s: &model::ClientSettings) {
        if let Some(t) = &s.tls {
            self.client_tls_check(at, t);
        }
        if let Some(fa) = &s.failure_accrual
            && let model::Backoff::Jittered { min, max } = fa.backoff()
            && min > max
        {
            let key = format!("{at}.failureAccrual.backoff");
            self.problem(
                &key,
                format!(
                    "{key}: minMs ({}) is greater than maxMs ({})",
                    min.as_millis(),
                    max.as_millis()
                ),
            );
        }
        if let Some(model::LoadBalancer::Aperture {
            low_load,
            high_load,
            ..
        }) = s.load_balancer
            && low_load > high_load
        {
            let key = format!("{at}.loadBalancer");
            self.problem(
                &key,
                format!("{key}: lowLoad ({low_load}) is greater than highLoad ({high_load})"),
            );
        }
    }

    /// One service entry's keys, checked and with their defaults.
    fn service_keys(&mut self, at: &str, k: raw::ServiceKeys) -> crate::service::ServiceOverrides {
        use crate::service::{
            Backoff, BudgetConfig, Classifier, Retries, RetryBufferSize, ServiceOverrides,
        };
        let response_classifier = k.response_classifier.and_then(|c| {
            match Classifier::from_kind(&c.kind, c.retryable_status_codes, c.success_status_codes) {
                Ok(c) => Some(c),
                Err(e) => {
                    let key = format!("{at}.responseClassifier");
                    self.problem(&key, format!("{key}: {e}"));
                    None
                }
            }
        });
        let retries = k.retries.map(|r| {
            let d = BudgetConfig::default();
            Retries {
                budget: r.budget.map(|b| BudgetConfig {
                    min_retries_per_sec: b.min_retries_per_sec.unwrap_or(d.min_retries_per_sec),
                    percent_can_retry: b.percent_can_retry.unwrap_or(d.percent_can_retry),
                    ttl: b.ttl_secs.map_or(d.ttl, Duration::from_secs),
                }),
                backoff: r.backoff.map(|b| match b {
                    raw::RetryBackoff::Constant { ms } => Backoff::Constant {
                        ms: Duration::from_millis(ms.unwrap_or(0)),
                    },
                    raw::RetryBackoff::Jittered { min_ms, max_ms } => {
                        if min_ms > max_ms {
                            let key = format!("{at}.retries.backoff");
                            self.problem(
                                &key,
                                format!("{key}: minMs ({min_ms}) must not exceed maxMs ({max_ms})"),
                            );
                        }
                        Backoff::Jittered {
                            min_ms: Duration::from_millis(min_ms),
                            max_ms: Duration::from_millis(max_ms),
                        }
                    }
                }),
            }
        });
        let d = RetryBufferSize::default();
        ServiceOverrides {
            response_classifier,
            retries,
            total_timeout: k.total_timeout_ms.map(Duration::from_millis),
            retry_buffer_size: k.retry_buffer_size.map(|r| RetryBufferSize {
                request_bytes: r.request_bytes.unwrap_or(d.request_bytes),
                response_bytes: r.response_bytes.unwrap_or(d.response_bytes),
            }),
            classification_timeout: k.classification_timeout_ms.map(Duration::from_millis),
        }
    }

    fn identifier(
        &mut self,
        key: &str,
        protocol: model::Protocol,
        id: raw::Identifier,
    ) -> model::Identifier {
        use model::Identifier as I;
        match id {
            raw::Identifier::HeaderToken { header } => I::HeaderToken {
                header: header.unwrap_or_else(|| match I::default_for(protocol) {
                    I::HeaderToken { header } => header,
                    _ => "Host".into(),
                }),
            },
            raw::Identifier::MethodAndHost { http_uri_in_dst } => I::MethodAndHost {
                http_uri_in_dst: http_uri_in_dst.unwrap_or(false),
            },
            raw::Identifier::Path { segments, consume } => I::Path {
                segments: segments.unwrap_or(1),
                consume: consume.unwrap_or(false),
            },
            raw::Identifier::Header { header } => I::Header {
                header: header.unwrap_or_else(|| "l5d-name".into()),
            },
            raw::Identifier::Static { path } => I::Static {
                path: self.path(&format!("{key}.path"), &path),
            },
            raw::Identifier::HeaderPath { header, segments } => I::HeaderPath {
                header: header.unwrap_or_else(|| ":path".into()),
                segments,
            },
        }
    }

    /// `protocols: [TLSv1.2, ...]`.
    fn tls_protocols(&mut self, key: &str, list: Option<Vec<String>>) -> Vec<model::TlsVersion> {
        let mut out = Vec::new();
        for (k, p) in list.unwrap_or_default().into_iter().enumerate() {
            match p.parse::<model::TlsVersion>() {
                Ok(v) => out.push(v),
                Err(e) => self.problem(
                    &format!("{key}.protocols[{k}]"),
                    format!("{key}.protocols[{k}]: {e}"),
                ),
            }
        }
        out
    }

    /// `servers[].tls` / `admin.tls`; `None` when `enabled: false`.
    fn server_tls(&mut self, key: &str, t: raw::ServerTls) -> Option<model::ServerTlsSettings> {
        if t.enabled == Some(false) {
            return None;
        }
        let settings = model::ServerTlsSettings {
            cert_path: PathBuf::from(t.cert_path),
            key_path: PathBuf::from(t.key_path),
            intermediate_certs_path: t.intermediate_certs_path.map(PathBuf::from),
            ca_cert_path: t.ca_cert_path.map(PathBuf::from),
            require_client_auth: t.require_client_auth.unwrap_or(false),
            protocols: self.tls_protocols(key, t.protocols),
        };
        if let Err(e) = settings.check() {
            self.problem(key, format!("{key}: {e}"));
        }
        Some(settings)
    }

    /// `client.tls` of a client entry: settings that cannot work.
    fn client_tls_check(&mut self, at: &str, t: &model::ClientTlsSettings) {
        let key = format!("{at}.tls");
        if let Err(e) = t.check() {
            self.problem(&key, e.to_string().replacen("client.tls", &key, 1));
        }
    }

    /// Parse a dtab written in the file, errors placed in the file.
    fn inline_dtab(&mut self, key: &str, text: &str) -> Dtab {
        match Dtab::parse_all(text) {
            Ok(d) => d,
            Err(errors) => {
                let at = self.pos(key);
                for e in errors {
                    let p = match place_in_file(self.text, at, text, &e) {
                        Some(pos) => Problem::at(self.source, pos, format!("{key}: {}", bare(&e))),
                        None => Problem::at(
                            self.source,
                            at,
                            format!("{key}: dtab line {}:{}: {}", e.line, e.col, bare(&e)),
                        ),
                    };
                    self.problems.push(p);
                }
                Dtab::empty()
            }
        }
    }
}

/// A parse error's summary without its position.
pub(crate) fn bare(e: &ParseError) -> String {
    let mut s = format!("expected {}", e.expected);
    if let Some(c) = &e.context {
        s.push(' ');
        s.push_str(c);
    }
    s.push_str(&format!(", found {}", e.found));
    s
}

/// Where a dtab error stands in the file, when the dtab text can be found
/// there verbatim: a literal block (`|`) or a single-line scalar. Folded or
/// escaped texts give `None` (the caller then names the dtab-relative spot).
fn place_in_file(file: &str, at: Pos, dtab: &str, e: &ParseError) -> Option<Pos> {
    let offset = at.offset?;
    let rest = file.get(offset..)?;
    let file_lines: Vec<&str> = file.lines().collect();
    let first = rest.chars().next()?;
    let (line, col) = if dtab.contains('\n') {
        // A block scalar (`|`): the node starts at its first content line,
        // and each dtab line is a file line with the same indentation.
        let line = at.line as usize + e.line - 1;
        let indent = (at.col as usize).checked_sub(1)?;
        let content = file_lines.get(line.checked_sub(1)?)?;
        if content.get(indent..)?.trim_end_matches('\r') != e.line_text {
            return None;
        }
        (line, indent + e.col)
    } else if e.line == 1 {
        let skip = usize::from(first == '"' || first == '\'');
        if !rest.get(skip..)?.starts_with(dtab) {
            return None;
        }
        (at.line as usize, at.col as usize + skip + e.col - 1)
    } else {
        return None;
    };
    Some(Pos {
        line: line as u64,
        col: col as u64,
        offset: None,
    })
}
