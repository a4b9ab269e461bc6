//! Semantic checks over a typed config: what the schema cannot see
//! (duplicates across entries) and what lies outside the file (the dtab
//! file, the namer directories). Every problem is collected.
//!
//! Relative paths are relative to the working directory, as in Linkerd.

use std::collections::HashMap;

use super::Problem;
use super::load::Positions;
use super::model::{Config, Interpreter, Namer};
use crate::dtab::Dtab;

/// Checks that need only the config itself.
pub(crate) fn internal(config: &Config, source: &str, positions: &Positions) -> Vec<Problem> {
    let pos = |key: &str| positions.get(key).copied().unwrap_or_default();
    let mut problems = Vec::new();
    if config.routers.is_empty() {
        problems.push(Problem::at(
            source,
            pos("routers"),
            "routers: at least one router is required".into(),
        ));
    }
    for (i, r) in config.routers.iter().enumerate() {
        if r.servers.is_empty() {
            let key = format!("routers[{i}].servers");
            problems.push(Problem::at(
                source,
                pos(&key),
                format!("{key}: at least one server is required"),
            ));
        }
    }
    let mut labels: HashMap<&str, usize> = HashMap::new();
    for (i, r) in config.routers.iter().enumerate() {
        if let Some(first) = labels.insert(&r.label, i) {
            let key = format!("routers[{i}].label");
            let at = positions
                .get(&key)
                .copied()
                .unwrap_or(pos(&format!("routers[{i}]")));
            problems.push(Problem::at(
                source,
                at,
                format!(
                    "routers[{i}]: duplicate router label '{}' (also routers[{first}]); give each router its own `label`",
                    r.label
                ),
            ));
        }
    }
    // In file order, so a clash names the first user of the port.
    let mut addrs: Vec<(std::net::SocketAddr, String)> = Vec::new();
    if config.admin.addr.port() != 0 {
        addrs.push((config.admin.addr, "admin".into()));
    }
    for (i, r) in config.routers.iter().enumerate() {
        for (j, s) in r.servers.iter().enumerate() {
            // Port 0 asks the system for a free port: never a clash.
            if s.addr.port() == 0 {
                continue;
            }
            let here = format!("routers[{i}].servers[{j}]");
            let clash = addrs
                .iter()
                .find(|(a, _)| {
                    a.port() == s.addr.port()
                        && (a.ip() == s.addr.ip()
                            || a.ip().is_unspecified()
                            || s.addr.ip().is_unspecified())
                })
                .map(|(_, w)| w.clone());
            match clash {
                Some(other) => problems.push(Problem::at(
                    source,
                    positions
                        .get(&format!("{here}.port"))
                        .copied()
                        .unwrap_or(pos(&here)),
                    format!("{here}: port {} is already used by {other}", s.addr.port()),
                )),
                None => addrs.push((s.addr, here)),
            }
        }
    }
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    for (i, n) in config.namers.iter().enumerate() {
        if let Some(first) = prefixes.insert(n.prefix().to_string(), i) {
            let key = format!("namers[{i}].prefix");
            let at = positions
                .get(&key)
                .copied()
                .unwrap_or(pos(&format!("namers[{i}]")));
            problems.push(Problem::at(
                source,
                at,
                format!(
                    "namers[{i}]: duplicate namer prefix {} (also namers[{first}])",
                    n.prefix()
                ),
            ));
        }
    }
    problems
}

/// Checks of what the config references: dtab files exist and parse,
/// namer directories exist.
pub(crate) fn external(config: &Config, source: &str, positions: &Positions) -> Vec<Problem> {
    let pos = |key: &str| positions.get(key).copied().unwrap_or_default();
    let mut problems = Vec::new();
    for (i, r) in config.routers.iter().enumerate() {
        if let Interpreter::Fs { dtab_file } = &r.interpreter {
            let key = format!("routers[{i}].interpreter.dtabFile");
            let shown = dtab_file.display().to_string();
            match std::fs::read_to_string(dtab_file) {
                Err(e) => problems.push(Problem::at(
                    source,
                    pos(&key),
                    format!("{key}: cannot read dtab file {shown}: {e}"),
                )),
                Ok(text) => {
                    if let Err(errors) = Dtab::parse_all(&text) {
                        for e in errors {
                            problems.push(Problem {
                                file: shown.clone(),
                                line: e.line as u64,
                                col: e.col as u64,
                                message: format!(
                                    "{} (the dtabFile of routers[{i}])",
                                    super::load::bare(&e)
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    for (i, n) in config.namers.iter().enumerate() {
        match n {
            Namer::Fs(fs) => {
                let key = format!("namers[{i}].rootDir");
                let at = pos(&key);
                let shown = fs.root_dir.display();
                match std::fs::metadata(&fs.root_dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => problems.push(Problem::at(
                        source,
                        at,
                        format!("{key}: {shown} is not a directory"),
                    )),
                    Err(e) => problems.push(Problem::at(
                        source,
                        at,
                        format!("{key}: cannot use directory {shown}: {e}"),
                    )),
                }
            }
        }
    }
    problems
}
