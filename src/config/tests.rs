//! Unit tests: typed values, positions, serialization.

use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, "l.yaml")
}

fn errors(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_supported_key_reaches_the_typed_config() {
    let text = "\
admin:
  ip: 0.0.0.0
  port: 9991
  shutdownGraceMs: 2500
namers:
- kind: io.l5d.fs
  prefix: /disco
  rootDir: /tmp/disco
routers:
- protocol: http
  label: edge
  dtab: /svc => /#/disco
  dstPrefix: /http
  identifier:
  - kind: io.l5d.path
    segments: 2
    consume: true
  - kind: io.l5d.methodAndHost
    httpUriInDst: true
  - kind: io.l5d.header
  - kind: io.l5d.static
    path: /fixed/name
  - kind: io.l5d.header.token
    header: X-Service
  interpreter:
    kind: default
  bindingTimeoutMs: 250
  bindingCache:
    paths: 10
    trees: 20
    bounds: 30
    clients: 40
    idleTtlSecs: 50
  maxCallDepth: 7
  client:
    kind: io.l5d.global
    loadBalancer:
      kind: p2c
  servers:
  - ip: 127.0.0.1
    port: \"4150\"
    maxConcurrentRequests: 100
    clearContext: true
- protocol: h2
  identifier:
    kind: io.l5d.header.path
    segments: 1
  interpreter:
    kind: io.l5d.fs
    dtabFile: /tmp/x.dtab
  servers:
  - port: 0
";
    let c = parse(text).unwrap();
    assert_eq!(c.source, "l.yaml");
    assert_eq!(c.admin.addr.to_string(), "0.0.0.0:9991");
    assert_eq!(c.admin.shutdown_grace, Duration::from_millis(2500));
    let Namer::Fs(fs) = &c.namers[0];
    assert_eq!(fs.prefix.to_string(), "/disco");
    assert_eq!(c.namers[0].kind(), "io.l5d.fs");
    let r = c.router("edge").unwrap();
    assert_eq!(r.dst_prefix.to_string(), "/http");
    assert_eq!(r.dtab.len(), 1);
    assert_eq!(
        r.identifiers,
        vec![
            Identifier::Path {
                segments: 2,
                consume: true
            },
            Identifier::MethodAndHost {
                http_uri_in_dst: true
            },
            Identifier::Header {
                header: "l5d-name".into()
            },
            Identifier::Static {
                path: "/fixed/name".parse().unwrap()
            },
            Identifier::HeaderToken {
                header: "X-Service".into()
            },
        ]
    );
    assert_eq!(r.binding_timeout, Duration::from_millis(250));
    assert_eq!(
        r.binding_cache,
        BindingCache {
            paths: 10,
            trees: 20,
            bounds: 30,
            clients: 40,
            idle_ttl: Duration::from_secs(50)
        }
    );
    assert_eq!(r.max_call_depth, 7);
    assert_eq!(
        r.client.global().and_then(|c| c.load_balancer),
        Some(LoadBalancer::P2c { max_effort: 5 })
    );
    assert_eq!(r.servers[0].addr.to_string(), "127.0.0.1:4150");
    assert_eq!(r.servers[0].max_concurrent_requests, Some(100));
    assert!(r.servers[0].clear_context);
    let h2 = c.router("h2").unwrap();
    assert_eq!(
        h2.identifiers,
        vec![Identifier::HeaderPath {
            header: ":path".into(),
            segments: Some(1)
        }]
    );
    assert_eq!(
        h2.interpreter,
        Interpreter::Fs {
            dtab_file: "/tmp/x.dtab".into()
        }
    );
    assert_eq!(h2.servers[0].addr.port(), 0);
}

#[test]
fn config_json_uses_linkerd_key_names() {
    let c = parse(
        "routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.1/80\n  servers:\n  - port: 4140\n",
    )
    .unwrap();
    let j = serde_json::to_value(&c).unwrap();
    assert_eq!(j["admin"]["ip"], "127.0.0.1");
    assert_eq!(j["admin"]["port"], 9990);
    assert_eq!(j["admin"]["shutdownGraceMs"], 10000);
    let r = &j["routers"][0];
    assert_eq!(r["protocol"], "http");
    assert_eq!(r["label"], "http");
    assert_eq!(r["dtab"], "/svc=>/$/inet/127.1/80");
    assert_eq!(r["dstPrefix"], "/svc");
    assert_eq!(r["identifier"][0]["kind"], "io.l5d.header.token");
    assert_eq!(r["identifier"][0]["header"], "Host");
    assert_eq!(r["interpreter"]["kind"], "default");
    assert_eq!(r["bindingTimeoutMs"], 10000);
    assert_eq!(r["bindingCache"]["idleTtlSecs"], 600);
    assert_eq!(r["servers"][0]["ip"], "127.0.0.1");
    assert_eq!(r["servers"][0]["port"], 4140);
    assert_eq!(r["servers"][0]["clearContext"], false);
    assert_eq!(
        r["servers"][0]["maxConcurrentRequests"],
        serde_json::Value::Null
    );
    assert_eq!(r["client"]["kind"], "io.l5d.global");
    let fs = serde_json::to_value(default_config()).unwrap();
    assert_eq!(fs["namers"][0]["kind"], "io.l5d.fs");
    assert_eq!(fs["namers"][0]["rootDir"], "disco");
    assert_eq!(
        fs["routers"][0]["interpreter"]["dtabFile"],
        "dtabs/default.dtab"
    );
}

#[test]
fn the_top_level_must_be_a_mapping() {
    assert_eq!(
        errors("- a\n- b\n"),
        "l.yaml:1:1: the top level: expected a mapping, found a list"
    );
}

#[test]
fn a_key_with_no_value_is_absent() {
    let c = parse("namers:\nadmin:\nrouters:\n- protocol: http\n  dtab:\n  servers:\n  - port:\n")
        .unwrap();
    assert!(c.namers.is_empty());
    assert!(c.routers[0].dtab.is_empty());
    assert_eq!(c.routers[0].servers[0].addr.port(), 4140);
}

#[test]
fn errors_display_one_per_line() {
    let e = errors("routers:\n- protocol: http\n  servers:\n  - port: -1\n    ip: [1]\n");
    assert_eq!(
        e,
        "l.yaml:4:11: routers[0].servers[0].port: expected an integer from 0 to 65535, found -1\n\
         l.yaml:5:9: routers[0].servers[0].ip: expected a string, found a list"
    );
}

#[test]
fn yaml_syntax_and_duplicate_keys_are_placed() {
    let e = errors("routers:\n- protocol: http\n  servers: [\n");
    assert!(e.starts_with("l.yaml:3:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = errors("routers: []\nrouters: []\n");
    assert!(e.starts_with("l.yaml:2:1: invalid YAML: "), "{e}");
    assert!(e.contains("duplicate"), "{e}");
    let e = errors("");
    assert!(e.starts_with("l.yaml: empty config"), "{e}");
}

#[test]
fn kinds_are_per_protocol() {
    // io.l5d.path is an HTTP/1 identifier; h2 has io.l5d.header.path.
    let e = errors(
        "routers:\n- protocol: h2\n  identifier:\n    kind: io.l5d.path\n  servers:\n  - port: 4142\n",
    );
    assert_eq!(
        e,
        "l.yaml:4:11: unknown kind 'io.l5d.path' in routers[0].identifier; expected one of: io.l5d.header.token, io.l5d.header.path"
    );
    let e = errors(
        "routers:\n- protocol: http\n  identifier:\n  - kind: io.l5d.ingress\n  servers:\n  - port: 4140\n",
    );
    assert_eq!(
        e,
        "l.yaml:4:11: not supported yet: routers[0].identifier[0].kind: io.l5d.ingress"
    );
    let e = errors("routers:\n- label: x\n  servers: []\n");
    assert_eq!(e, "l.yaml:2:3: missing key 'protocol' in routers[0]");
}

#[test]
fn path_values_are_placed() {
    let e = errors(
        "routers:\n- protocol: http\n  identifier:\n  - kind: io.l5d.static\n    path: nope\n  servers:\n  - port: 4140\n",
    );
    assert_eq!(
        e,
        "l.yaml:5:11: routers[0].identifier[0].path: expected a path starting with '/' such as /svc, found 'nope'"
    );
}

#[test]
fn dtab_positions_in_the_file() {
    // A literal block: exact line and column.
    let e = errors(
        "routers:\n- protocol: http\n  dtab: |\n    /a => /b;\n\n    /c => /d |;\n  servers:\n  - port: 4140\n",
    );
    assert!(
        e.starts_with("l.yaml:6:15: routers[0].dtab: expected"),
        "{e}"
    );
    // A folded multi-line string cannot be mapped: dtab-relative position.
    let e = errors(
        "routers:\n- protocol: http\n  dtab: \"/a => /b;\n    /c => ^;\"\n  servers:\n  - port: 4140\n",
    );
    assert!(
        e.starts_with("l.yaml:3:9: routers[0].dtab: dtab line 1:"),
        "{e}"
    );
}

#[test]
fn duplicates_across_entries() {
    let e = errors(
        "namers:\n- kind: io.l5d.fs\n  rootDir: a\n- kind: io.l5d.fs\n  prefix: /io.l5d.fs\n  rootDir: b\nrouters:\n- protocol: http\n  servers:\n  - port: 4140\n  - port: 4140\n    ip: 127.0.0.2\n  - ip: 0.0.0.0\n",
    );
    assert_eq!(
        e,
        "l.yaml:5:11: namers[1]: duplicate namer prefix /io.l5d.fs (also namers[0])\n\
         l.yaml:13:5: routers[0].servers[2]: port 4140 is already used by routers[0].servers[0]"
    );
}

#[test]
fn validate_checks_what_the_config_references() {
    let dir = tempfile::tempdir().unwrap();
    let disco = dir.path().join("disco");
    let dtab = dir.path().join("d.dtab");
    let text = format!(
        "namers:\n- kind: io.l5d.fs\n  rootDir: {}\nrouters:\n- protocol: http\n  interpreter:\n    kind: io.l5d.fs\n    dtabFile: {}\n  servers:\n  - port: 4140\n",
        disco.display(),
        dtab.display()
    );
    let c = parse(&text).unwrap();
    let problems = validate(&c);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].message.contains("cannot read dtab file"));
    assert!(problems[1].message.contains("cannot use directory"));
    std::fs::create_dir(&disco).unwrap();
    std::fs::write(&dtab, "/svc => /#/io.l5d.fs;\n/x => ;\n").unwrap();
    let problems = validate(&c);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, dtab.display().to_string());
    assert_eq!((problems[0].line, problems[0].col), (2, 7));
    std::fs::write(&dtab, "/svc => /#/io.l5d.fs;\n").unwrap();
    assert_eq!(validate(&c), vec![]);
}

#[test]
fn the_default_config_is_valid() {
    let c = default_config();
    assert_eq!(c.source, DEFAULT_SOURCE);
    assert_eq!(c.routers[0].label, "http");
}

#[test]
fn routers_and_servers_are_required() {
    assert_eq!(
        errors("routers: []\n"),
        "l.yaml:1:10: routers: at least one router is required"
    );
    assert_eq!(
        errors("routers:\n- protocol: http\n  servers: []\n"),
        "l.yaml:3:12: routers[0].servers: at least one server is required"
    );
}

#[test]
fn h2_max_call_depth_on_servers_as_in_linkerd() {
    // Linkerd 1 reads an h2 router's maxCallDepth from its servers; the
    // strictest of the servers' and the router's own applies.
    let c = parse(
        "routers:\n- protocol: h2\n  servers:\n  - port: 4142\n    maxCallDepth: 5\n  - port: 4143\n    maxCallDepth: 3\n",
    )
    .expect("valid");
    assert_eq!(c.routers[0].max_call_depth, 3);
    let c = parse(
        "routers:\n- protocol: h2\n  maxCallDepth: 2\n  servers:\n  - port: 4142\n    maxCallDepth: 5\n",
    )
    .expect("valid");
    assert_eq!(c.routers[0].max_call_depth, 2);
    let c = parse("routers:\n- protocol: h2\n  servers:\n  - port: 4142\n").expect("valid");
    assert_eq!(c.routers[0].max_call_depth, 10);
    // On an http server it is refused (Linkerd reads it from the router).
    let e = errors("routers:\n- protocol: http\n  servers:\n  - port: 4140\n    maxCallDepth: 5\n");
    assert!(
        e.starts_with("l.yaml:5:5: unknown key 'maxCallDepth'"),
        "{e}"
    );
}
