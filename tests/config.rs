//! Linkerd 1 config files: loading, `switchyard check`, and every example
//! config from the Linkerd repo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use switchyard::config::{self, Identifier, Interpreter, Namer, Protocol};

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run `switchyard check -c FILE` in `cwd`.
fn check_in(cwd: &Path, file: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg("-c")
        .arg(file)
        .current_dir(cwd)
        .output()
        .expect("run switchyard");
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Write `text` as `name` in a fresh directory and check it there.
fn check_text(name: &str, text: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    check_in(dir.path(), Path::new(name))
}

fn refused(o: &Outcome) -> &str {
    assert!(!o.ok, "expected failure, got stdout {:?}", o.stdout);
    assert_eq!(o.stdout, "");
    &o.stderr
}

#[test]
fn good_config_is_ok() {
    let o = check_text(
        "linkerd.yaml",
        "routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.1/8080\n  servers:\n  - port: 4140\n",
    );
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout, "linkerd.yaml: ok\n");
    assert_eq!(o.stderr, "");
}

#[test]
fn unknown_key_names_line_column_and_accepted_keys() {
    let text = "\
routers:
- protocol: http
  dtab: /svc => /$/inet/127.1/8080
  servres:
  - port: 4140
";
    let o = check_text("linkerd.yaml", text);
    let err = refused(&o);
    assert!(
        err.contains(
            "linkerd.yaml:4:3: unknown key 'servres' in routers[0]; expected one of: protocol, label, dtab, dstPrefix, identifier, interpreter, bindingTimeoutMs, bindingCache, servers, client, service, maxCallDepth"
        ),
        "{err}"
    );
    // The router has no servers now: reported too, at the router.
    assert!(
        err.contains("linkerd.yaml:2:3: missing key 'servers' in routers[0]"),
        "{err}"
    );
}

#[test]
fn unknown_kind_lists_the_kinds() {
    let text = "\
namers:
- kind: io.l5d.fss
  rootDir: disco
routers:
- protocol: http
  identifier:
    kind: io.l5d.hedaer
  servers:
  - port: 4140
- protocol: gopher
  servers:
  - port: 4141
";
    let err = check_text("l.yaml", text).stderr;
    assert!(
        err.contains(
            "l.yaml:2:9: unknown kind 'io.l5d.fss' in namers[0]; expected one of: io.l5d.fs"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "l.yaml:7:11: unknown kind 'io.l5d.hedaer' in routers[0].identifier; expected one of: io.l5d.header.token, io.l5d.methodAndHost, io.l5d.path, io.l5d.header, io.l5d.static"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "l.yaml:10:13: unknown protocol 'gopher' in routers[1]; expected one of: http, h2"
        ),
        "{err}"
    );
}

#[test]
fn linkerd_keys_not_built_yet_are_refused_by_name() {
    let text = "\
telemetry:
- kind: io.l5d.influxdb
namers:
- kind: io.l5d.k8s
routers:
- protocol: thrift
  servers:
  - port: 4114
- protocol: http
  client:
    requestAuthorizers:
      commonName: foo
  servers:
  - port: 4140
    announce:
      certPath: /a
";
    let err = check_text("l.yaml", text).stderr;
    for want in [
        "l.yaml:2:9: not supported yet: telemetry[0].kind: io.l5d.influxdb",
        "l.yaml:4:9: not supported yet: namers[0].kind: io.l5d.k8s",
        "l.yaml:6:13: not supported yet: routers[0].protocol: thrift",
        "l.yaml:11:5: not supported yet: routers[1].client.requestAuthorizers",
        "l.yaml:15:5: not supported yet: routers[1].servers[0].announce",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert_eq!(err.lines().count(), 5, "{err}");
}

#[test]
fn usage_is_accepted_and_ignored() {
    let text = "usage:\n  orgId: acme\n  enabled: false\nrouters:\n- protocol: http\n  servers:\n  - port: 0\n";
    let o = check_text("l.yaml", text);
    assert!(o.ok, "{}", o.stderr);
}

#[test]
fn json_configs_load_and_errors_have_positions() {
    let good = r#"{
  "admin": {"port": 9991},
  "routers": [
    {"protocol": "h2", "dtab": "/svc => /#/io.l5d.fs;", "servers": [{"port": 4242}]}
  ]
}"#;
    let c = config::parse_str(good, "l.json").unwrap();
    assert_eq!(c.admin.addr.port(), 9991);
    assert_eq!(c.routers[0].protocol, Protocol::H2);
    assert_eq!(c.routers[0].servers[0].addr.port(), 4242);
    assert_eq!(c.routers[0].dtab.to_string(), "/svc=>/#/io.l5d.fs");

    let o = check_text("l.json", &good.replace("\"port\": 4242", "\"prot\": 4242"));
    let err = refused(&o);
    assert!(
        err.contains("l.json:4:70: unknown key 'prot' in routers[0].servers[0]; expected one of: ip, port, maxConcurrentRequests, clearContext"),
        "{err}"
    );

    let o = check_text(
        "l.json",
        "{\n  \"routers\": [\n    {\"protocol\": \"http\",, }\n  ]\n}\n",
    );
    let err = refused(&o);
    assert!(err.starts_with("l.json:3:25: invalid JSON: "), "{err}");
}

#[test]
fn bad_inline_dtab_is_placed_in_the_file() {
    let text = "\
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.fs;
    /foo => ^bad;
  servers:
  - port: 4140
- protocol: h2
  dtab: \"/svc => => x\"
  servers:
  - port: 4142
";
    let err = check_text("l.yaml", text).stderr;
    assert!(
        err.contains("l.yaml:5:13: routers[0].dtab: expected a path, '!', '~', '$' or '('"),
        "{err}"
    );
    assert!(err.contains("found '^'"), "{err}");
    assert!(
        err.contains("l.yaml:9:18: routers[1].dtab: expected a path, '!', '~', '$' or '('"),
        "{err}"
    );
}

#[test]
fn missing_dtab_file_and_root_dir_are_reported() {
    let text = "\
namers:
- kind: io.l5d.fs
  rootDir: disco
routers:
- protocol: http
  interpreter:
    kind: io.l5d.fs
    dtabFile: dtabs/default.dtab
  servers:
  - port: 4140
";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("l.yaml"), text).unwrap();
    let o = check_in(dir.path(), Path::new("l.yaml"));
    let err = refused(&o);
    assert!(
        err.contains(
            "l.yaml:8:15: routers[0].interpreter.dtabFile: cannot read dtab file dtabs/default.dtab"
        ),
        "{err}"
    );
    assert!(
        err.contains("l.yaml:3:12: namers[0].rootDir: cannot use directory disco"),
        "{err}"
    );

    // Relative to the working directory: create them and it passes.
    std::fs::create_dir(dir.path().join("disco")).unwrap();
    std::fs::create_dir(dir.path().join("dtabs")).unwrap();
    std::fs::write(
        dir.path().join("dtabs/default.dtab"),
        "/svc => /#/io.l5d.fs;\n",
    )
    .unwrap();
    let o = check_in(dir.path(), Path::new("l.yaml"));
    assert!(o.ok, "{}", o.stderr);

    // A dtab file that does not parse: named with its own line:col.
    std::fs::write(
        dir.path().join("dtabs/default.dtab"),
        "/svc => /#/io.l5d.fs;\n/a => ;\n",
    )
    .unwrap();
    let err = check_in(dir.path(), Path::new("l.yaml")).stderr;
    assert!(
        err.contains("dtabs/default.dtab:2:7: expected a path, '!', '~', '$' or '('"),
        "{err}"
    );
    assert!(err.contains("(the dtabFile of routers[0])"), "{err}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = "\
admin:
  port: 9990
namers:
- kind: io.l5d.fs
  rootDir: nowhere
- kind: io.l5d.fs
  rootDir: nowhere-else
routers:
- protocol: http
  label: web
  dtab: /svc => ^
  servers:
  - port: 4140
    maxConcurrentRequests: 0
- protocol: http
  label: web
  dstPrefix: svc
  servers:
  - port: 4140
";
    // A schema problem (maxConcurrentRequests 0) stops before semantics.
    let err = check_text("l.yaml", text).stderr;
    assert!(
        err.contains("l.yaml:14:28: routers[0].servers[0].maxConcurrentRequests: expected an integer of at least 1, found 0"),
        "{err}"
    );
    let err = check_text(
        "l.yaml",
        &text.replace("maxConcurrentRequests: 0", "maxConcurrentRequests: 10"),
    )
    .stderr;
    for want in [
        "l.yaml:6:3: namers[1]: duplicate namer prefix /io.l5d.fs (also namers[0])",
        "l.yaml:11:17: routers[0].dtab: expected a path, '!', '~', '$' or '('",
        "l.yaml:16:10: routers[1]: duplicate router label 'web' (also routers[0])",
        "l.yaml:17:14: routers[1].dstPrefix: expected a path",
        "l.yaml:19:11: routers[1].servers[0]: port 4140 is already used by routers[0].servers[0]",
        "l.yaml:5:12: namers[0].rootDir: cannot use directory nowhere",
        "l.yaml:7:12: namers[1].rootDir: cannot use directory nowhere-else",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert_eq!(err.lines().count(), 7, "{err}");
    // In file order.
    let lines: Vec<u32> = err
        .lines()
        .map(|l| {
            l.split(':')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{err}");
}

#[test]
fn check_reads_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"routers:\n- protocol: http\n  servers:\n  - port: 0\n  tls: {}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "<stdin>:5:3: unknown key 'tls' in routers[0]; expected one of: protocol, label, dtab, dstPrefix, identifier, interpreter, bindingTimeoutMs, bindingCache, servers, client, service, maxCallDepth, experimental, httpAccessLog\n"
    );
}

#[test]
fn defaults_are_linkerds() {
    let c = config::parse_str(
        "routers:\n- protocol: http\n  servers:\n  - {}\n- protocol: h2\n  servers:\n  - ip: 0.0.0.0\n",
        "l.yaml",
    )
    .unwrap();
    assert_eq!(c.admin.addr.to_string(), "127.0.0.1:9990");
    assert_eq!(c.admin.shutdown_grace, Duration::from_secs(10));
    assert!(c.namers.is_empty());
    let http = &c.routers[0];
    assert_eq!(http.label, "http");
    assert_eq!(http.dst_prefix.to_string(), "/svc");
    assert!(http.dtab.is_empty());
    assert_eq!(http.binding_timeout, Duration::from_secs(10));
    assert_eq!(http.binding_cache.paths, 1000);
    assert_eq!(http.binding_cache.trees, 1000);
    assert_eq!(http.binding_cache.bounds, 1000);
    assert_eq!(http.binding_cache.clients, 1000);
    assert_eq!(http.binding_cache.idle_ttl, Duration::from_secs(600));
    assert_eq!(
        http.identifiers,
        vec![Identifier::HeaderToken {
            header: "Host".into()
        }]
    );
    assert_eq!(http.interpreter, Interpreter::Default);
    assert_eq!(http.servers[0].addr.to_string(), "127.0.0.1:4140");
    assert_eq!(http.servers[0].max_concurrent_requests, None);
    assert!(!http.servers[0].clear_context);
    assert_eq!(http.max_call_depth, 1000);
    let h2 = &c.routers[1];
    assert_eq!(h2.label, "h2");
    assert_eq!(h2.servers[0].addr.to_string(), "0.0.0.0:4142");
    assert_eq!(
        h2.identifiers,
        vec![Identifier::HeaderToken {
            header: ":authority".into()
        }]
    );
    assert_eq!(h2.max_call_depth, 10);
}

#[test]
fn the_embedded_default_config() {
    let c = config::default_config();
    assert_eq!(c.admin.addr.to_string(), "127.0.0.1:9990");
    assert_eq!(c.routers.len(), 1);
    let r = &c.routers[0];
    assert_eq!(r.protocol, Protocol::Http);
    assert_eq!(r.servers[0].addr.to_string(), "127.0.0.1:4140");
    assert_eq!(
        r.interpreter,
        Interpreter::Fs {
            dtab_file: PathBuf::from("dtabs/default.dtab")
        }
    );
    let Namer::Fs(fs) = &c.namers[0];
    assert_eq!(fs.prefix.to_string(), "/io.l5d.fs");
    assert_eq!(fs.root_dir, PathBuf::from("disco"));
}

/// Every example config of the Linkerd repo: those whose features are all
/// built are accepted; each other is refused naming what is not built.
#[test]
fn linkerd_examples() {
    // file → None (accepted) or the problems it must name.
    let table: &[(&str, Option<&[&str]>)] = &[
        (
            "linkerd__examples__admin.yaml",
            Some(&[
                "not supported yet: admin.workerThreads",
                "not supported yet: admin.security",
                "not supported yet: routers[2].interpreter.kind: io.l5d.namerd",
            ]),
        ),
        (
            "linkerd__examples__client-options.yaml",
            Some(&[
                "not supported yet: routers[0].client.configs[1].failFast",
                "not supported yet: routers[0].client.configs[2].socketOptions",
            ]),
        ),
        (
            "linkerd__examples__consul.yaml",
            Some(&["not supported yet: namers[0].kind: io.l5d.consul"]),
        ),
        ("linkerd__examples__fs.yaml", None),
        (
            "linkerd__examples__h2.yaml",
            Some(&[
                "not supported yet: routers[0].h2AccessLogRollPolicy",
                "not supported yet: routers[0].h2AccessLogAppend",
                "not supported yet: routers[0].h2AccessLogRotateCount",
                "not supported yet: routers[0].servers[0].maxConcurrentStreamsPerConnection",
                "not supported yet: routers[0].servers[0].initialStreamWindowBytes",
                "not supported yet: routers[0].servers[0].addForwardedHeader",
                "not supported yet: routers[0].client.initialStreamWindowBytes",
            ]),
        ),
        (
            "linkerd__examples__http.yaml",
            Some(&[
                "not supported yet: routers[0].httpAccessLogRollPolicy",
                "not supported yet: routers[0].httpAccessLogAppend",
                "not supported yet: routers[0].httpAccessLogRotateCount",
                "not supported yet: routers[0].maxHeadersKB",
                "not supported yet: routers[0].maxInitialLineKB",
                "not supported yet: routers[0].streamAfterContentLengthKB",
                "not supported yet: routers[0].compressionLevel",
                "not supported yet: routers[0].servers[0].addForwardedHeader",
            ]),
        ),
        (
            "linkerd__examples__k8s-servicemesh.yaml",
            Some(&[
                "not supported yet: namers[0].kind: io.l5d.k8s",
                "not supported yet: routers[0].originator",
                "not supported yet: routers[0].interpreter.transformers",
                "not supported yet: routers[1].interpreter.transformers",
            ]),
        ),
        (
            "linkerd__examples__k8s.yaml",
            Some(&[
                "not supported yet: namers[0].kind: io.l5d.k8s",
                "not supported yet: namers[1].kind: io.l5d.k8s.external",
            ]),
        ),
        ("linkerd__examples__loadbalancer.yaml", None),
        ("linkerd__examples__mutualTls.yaml", None),
        (
            "linkerd__examples__namerd.yaml",
            Some(&[
                "not supported yet: routers[0].interpreter.kind: io.l5d.namerd",
                "not supported yet: routers[1].interpreter.kind: io.l5d.namerd.http",
                "not supported yet: routers[2].interpreter.kind: io.l5d.mesh",
            ]),
        ),
        ("linkerd__examples__proxy.yaml", None),
        ("linkerd__examples__retries.yaml", None),
        (
            "linkerd__examples__rewriting.yaml",
            Some(&["not supported yet: namers[1].kind: io.l5d.rewrite"]),
        ),
        ("linkerd__examples__service-options.yaml", None),
        (
            "linkerd__examples__servicemesh.yaml",
            Some(&[
                "not supported yet: routers[0].interpreter.transformers",
                "not supported yet: routers[1].interpreter.transformers",
            ]),
        ),
        ("linkerd__examples__static_namer.yaml", None),
        ("linkerd__examples__tls.yaml", None),
        // Namerd's own configs are not Linkerd configs at all.
        (
            "namerd__examples__basic.yaml",
            Some(&[
                "unknown key 'storage' at the top level",
                "unknown key 'interfaces' at the top level",
                "not supported yet: telemetry[1].kind: io.l5d.influxdb",
                "missing key 'routers' at the top level",
            ]),
        ),
        (
            "namerd__examples__k8s-mesh.yaml",
            Some(&[
                "not supported yet: namers[0].kind: io.l5d.k8s",
                "not supported yet: namers[1].kind: io.l5d.k8s",
                "unknown key 'storage' at the top level",
                "unknown key 'interfaces' at the top level",
                "missing key 'routers' at the top level",
            ]),
        ),
    ];

    let examples =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linkerd-examples");
    let mut on_disk: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = table.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, listed, "the table must list every example");
    assert_eq!(on_disk.len(), 20);

    // The files the examples reference, relative to the Linkerd repo root
    // (see INDEX.md), laid out in a working directory.
    let cwd = tempfile::tempdir().unwrap();
    let fs_dir = cwd.path().join("linkerd/examples/io.l5d.fs");
    std::fs::create_dir_all(&fs_dir).unwrap();
    for (name, body) in [
        ("cat", "127.1 8888\n"),
        ("dog", "127.1 8888\n"),
        ("default", "127.1 9990\n"),
        ("thrift", "127.1 9991\n"),
    ] {
        std::fs::write(fs_dir.join(name), body).unwrap();
    }
    std::fs::write(
        cwd.path().join("linkerd/examples/example.dtab"),
        "/svc/* => /$/inet/127.1/9999;\n",
    )
    .unwrap();

    const TLS_PLACEHOLDERS: &[&str] = &[
        "linkerd__examples__mutualTls.yaml",
        "linkerd__examples__tls.yaml",
    ];
    for (file, expect) in table {
        let path = examples.join(file);
        let o = check_in(cwd.path(), &path);
        match expect {
            // Accepted, but the certificates it names are INDEX.md's
            // placeholders (`/foo/cert.pem`): check opens them and says so.
            None if TLS_PLACEHOLDERS.contains(file) => {
                assert!(!o.ok, "{file}: the placeholder files do not exist");
                for line in o.stderr.lines() {
                    assert!(
                        line.contains("/foo/") && line.contains("cannot read"),
                        "{file}: only the placeholder files may be missing: {line}"
                    );
                }
                config::load(&path).unwrap();
            }
            None => {
                assert!(o.ok, "{file} should be accepted:\n{}", o.stderr);
                assert!(o.stdout.ends_with(&format!("{file}: ok\n")), "{}", o.stdout);
                // And it loads to something sensible.
                config::load(&path).unwrap();
            }
            Some(wants) => {
                assert!(!o.ok, "{file} should be refused");
                for want in *wants {
                    assert!(
                        o.stderr.contains(want),
                        "{file}: missing {want:?} in\n{}",
                        o.stderr
                    );
                }
                // Nothing else: every line is one of the expected problems,
                // each placed at a line and column of the file.
                assert_eq!(
                    o.stderr.lines().count(),
                    wants.len(),
                    "{file}:\n{}",
                    o.stderr
                );
                for line in o.stderr.lines() {
                    let rest = line
                        .strip_prefix(&format!("{}:", path.display()))
                        .unwrap_or_else(|| panic!("{file}: unplaced problem {line}"));
                    let mut parts = rest.splitn(3, ':');
                    let l = parts.next().unwrap_or("");
                    let c = parts.next().unwrap_or("");
                    assert!(
                        l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
                        "{file}: no line:col in {line}"
                    );
                }
            }
        }
    }
}

#[test]
fn client_configs_global_and_static() {
    use switchyard::client::{Backoff, Budget, ClientConfig, FailureAccrual, LoadBalancer};
    let text = "\
routers:
- protocol: http
  client:
    kind: io.l5d.static
    configs:
    - prefix: /
      requestAttemptTimeoutMs: 1000
      loadBalancer:
        kind: ewma
        decayTimeMs: 5000
      requeueBudget:
        minRetriesPerSec: 3
        percentCanRetry: 0.5
        ttlSecs: 20
    - prefix: /#/io.l5d.fs/{service}
      failureAccrual:
        kind: io.l5d.successRateWindowed
        successRate: 0.9
        window: 30
        backoff:
          kind: constant
          ms: 1000
    - prefix: /$/inet/*/8080
      loadBalancer:
        kind: aperture
        lowLoad: 1
        highLoad: 3.5
      hostConnectionPool:
        maxSize: 10
        maxWaiters: 0
        idleTimeMs: 500
  servers:
  - port: 0
- protocol: h2
  client:
    loadBalancer:
      kind: roundRobin
    failureAccrual:
      kind: none
  servers:
  - port: 0
";
    let c = config::parse_str(text, "c.yaml").unwrap();
    let http = &c.routers[0].client;
    let fs = http.resolve(Protocol::Http, &"/#/io.l5d.fs/web".parse().unwrap());
    assert_eq!(
        fs.load_balancer,
        LoadBalancer::Ewma {
            max_effort: 5,
            decay_time: Duration::from_millis(5000)
        }
    );
    assert_eq!(fs.request_attempt_timeout, Some(Duration::from_secs(1)));
    assert_eq!(
        fs.requeue_budget,
        Budget {
            min_retries_per_sec: 3,
            percent_can_retry: 0.5,
            ttl: Duration::from_secs(20)
        }
    );
    assert_eq!(
        fs.failure_accrual,
        FailureAccrual::SuccessRateWindowed {
            success_rate: 0.9,
            window: Duration::from_secs(30),
            backoff: Backoff::Constant {
                ms: Duration::from_secs(1)
            }
        }
    );
    let inet = http.resolve(Protocol::Http, &"/$/inet/127.0.0.1/8080".parse().unwrap());
    assert!(matches!(
        inet.load_balancer,
        LoadBalancer::Aperture { low_load, high_load, min_aperture: 1, .. }
            if low_load == 1.0 && high_load == 3.5
    ));
    assert_eq!(inet.host_connection_pool.max_size, Some(10));
    assert_eq!(inet.host_connection_pool.max_waiters, Some(0));
    assert_eq!(
        inet.host_connection_pool.idle_time,
        Some(Duration::from_millis(500))
    );
    assert_eq!(inet.failure_accrual, FailureAccrual::default());
    let h2 = &c.routers[1].client;
    assert!(matches!(h2, ClientConfig::Global(_)));
    let any = h2.resolve(Protocol::H2, &"/x".parse().unwrap());
    assert_eq!(
        any.load_balancer,
        LoadBalancer::RoundRobin { max_effort: 5 }
    );
    assert_eq!(any.failure_accrual, FailureAccrual::None {});
    // /config.json shows what was written, with Linkerd's names.
    let j = serde_json::to_value(&c).unwrap();
    let cl = &j["routers"][0]["client"];
    assert_eq!(cl["kind"], "io.l5d.static");
    assert_eq!(cl["configs"][1]["prefix"], "/#/io.l5d.fs/{service}");
    assert_eq!(cl["configs"][1]["failureAccrual"]["window"], 30);
    assert_eq!(cl["configs"][0]["requestAttemptTimeoutMs"], 1000);
}

#[test]
fn client_config_errors_are_placed() {
    let text = "\
routers:
- protocol: http
  client:
    kind: io.l5d.static
    configs:
    - prefix: web
      loadBalancer:
        kind: leastConn
    - prefix: /
      failureAccrual:
        kind: io.l5d.consecutiveFailures
      requeueBudget:
        percentCanRetry: -1
      forwardClientCert:
        commonName: x
    - prefix: /
      failureAccrual:
        kind: io.l5d.successRate
        successRate: 2
        requests: 10
        backoff:
          kind: jittered
          minMs: 10
          maxMs: 5
  servers:
  - port: 0
";
    let err = check_text("c.yaml", text).stderr;
    for want in [
        "c.yaml:8:15: unknown kind 'leastConn' in routers[0].client.configs[0].loadBalancer; expected one of: p2c, ewma, aperture, heap, roundRobin",
        "c.yaml:11:9: missing key 'failures' in routers[0].client.configs[1].failureAccrual",
        "c.yaml:13:26: routers[0].client.configs[1].requeueBudget.percentCanRetry: expected a number from 0 to 1000, found -1",
        "c.yaml:14:7: not supported yet: routers[0].client.configs[1].forwardClientCert",
        "c.yaml:19:22: routers[0].client.configs[2].failureAccrual.successRate: expected a number from 0 to 1, found 2",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert_eq!(err.lines().count(), 5, "{err}");
    // Once the schema is satisfied, the values are checked too.
    let text = text
        .replace("kind: leastConn", "kind: p2c")
        .replace(
            "        kind: io.l5d.consecutiveFailures\n",
            "        kind: io.l5d.consecutiveFailures\n        failures: 2\n",
        )
        .replace("percentCanRetry: -1", "percentCanRetry: 1")
        .replace("      forwardClientCert:\n        commonName: x\n", "")
        .replace("successRate: 2", "successRate: 0.5");
    let err = check_text("c.yaml", &text).stderr;
    for want in [
        "c.yaml:6:15: routers[0].client.configs[0].prefix: expected a path starting with '/'",
        "routers[0].client.configs[2].failureAccrual.backoff: minMs (10) is greater than maxMs (5)",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}
