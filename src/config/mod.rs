//! Linkerd 1 config files (YAML or JSON): loading, validation, and the
//! embedded default config.
//!
//! Loading goes text → span-aware tree ([`node`]) → a walk against tables
//! of supported and known-but-unsupported Linkerd keys ([`schema`]) → serde
//! into raw types → [`Config`] with Linkerd's defaults. Every problem names
//! the file, line and column; a Linkerd key Switchyard does not handle yet
//! is refused with `not supported yet: KEY`, never ignored.
//!
//! ```text
//! linkerd.yaml:12:5: unknown key 'servres' in routers[0]; expected one of: label, dtab, ...
//! linkerd.yaml:20:5: not supported yet: routers[0].client.tls
//! ```

use std::fmt;
use std::path::Path as FsPath;

mod load;
mod model;
mod node;
mod schema;
mod validate;

pub use model::Telemeter;
pub use model::{
    Admin, Backoff, BindingCache, Budget, Client, ClientConfig, ClientPrefix, ClientSettings,
    Config, DEFAULT_ADMIN_PORT, DEFAULT_BINDING_TIMEOUT, DEFAULT_DST_PREFIX,
    DEFAULT_SHUTDOWN_GRACE, FailureAccrual, FsNamer, Identifier, Interpreter, LoadBalancer, Namer,
    PoolParams, Protocol, Router, Server, StaticClient,
};
pub use node::Pos;

/// The embedded default config, used by `switchyard run` without `-c`.
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// The name the default config goes by in messages.
pub const DEFAULT_SOURCE: &str = "<default config>";

/// One problem with a config, placed as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (the config, or a file it references).
    pub file: String,
    /// 1-based line; 0 when the problem has no single place.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub col: u64,
    /// What is wrong, naming the key path (`routers[0].servers[1].port`).
    pub message: String,
}

impl Problem {
    pub(crate) fn at(file: &str, pos: Pos, message: String) -> Problem {
        Problem {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message,
        }
    }

    pub(crate) fn new(file: &str, message: String) -> Problem {
        Problem::at(file, Pos::default(), message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (l, 0) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, c) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
        }
    }
}

/// Every problem that kept a config from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    /// The problems, in file order as found.
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parse a config text; `source_name` names it in messages. Checks the
/// text itself (keys, types, dtabs, paths, duplicates), not the files it
/// references: see [`validate`].
pub fn parse_str(text: &str, source_name: &str) -> Result<Config, ConfigErrors> {
    let mut parsed = load::parse(text, source_name);
    match parsed.config {
        Some(c) if parsed.problems.is_empty() => Ok(c),
        _ => {
            parsed.problems.dedup();
            Err(ConfigErrors(parsed.problems))
        }
    }
}

/// Read and parse a config file (`-` reads stdin, as Linkerd does).
pub fn load(path: &FsPath) -> Result<Config, ConfigErrors> {
    let (text, source) = read(path)?;
    parse_str(&text, &source)
}

/// Check what a loaded config references: every `dtabFile` exists and
/// parses, every namer `rootDir` is a directory; plus the checks across
/// entries (duplicate labels, ports, namer prefixes). Relative paths are
/// taken from the working directory.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = validate::internal(config, &config.source, &Default::default());
    problems.extend(validate::external(
        config,
        &config.source,
        &Default::default(),
    ));
    problems
}

/// Everything `switchyard check` reports for a file: every problem in the
/// file and in what it references. Empty means the config is good.
pub fn check(path: &FsPath) -> Vec<Problem> {
    let (text, source) = match read(path) {
        Ok(t) => t,
        Err(e) => return e.0,
    };
    let parsed = load::parse(&text, &source);
    let mut problems = parsed.problems;
    if let Some(c) = &parsed.config {
        problems.extend(validate::external(c, &source, &parsed.positions));
    }
    // The config file in line order, then the files it references.
    problems.sort_by_key(|p| (p.file != source, p.line == 0, p.line, p.col));
    problems.dedup();
    problems
}

/// The embedded default config: an http router on 127.0.0.1:4140 whose
/// dtab is the file `dtabs/default.dtab`, an `io.l5d.fs` namer on `disco`,
/// the admin on 127.0.0.1:9990.
pub fn default_config() -> Config {
    match parse_str(DEFAULT_YAML, DEFAULT_SOURCE) {
        Ok(c) => c,
        // The text is compiled in and covered by a test.
        Err(e) => unreachable!("the embedded default config is invalid: {e}"),
    }
}

fn read(path: &FsPath) -> Result<(String, String), ConfigErrors> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        return match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            Ok(_) => Ok((text, "<stdin>".to_string())),
            Err(e) => Err(ConfigErrors(vec![Problem::new(
                "<stdin>",
                format!("cannot read: {e}"),
            )])),
        };
    }
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, source)),
        Err(e) => Err(ConfigErrors(vec![Problem::new(
            &source,
            format!("cannot read config file: {e}"),
        )])),
    }
}

#[cfg(test)]
mod tests;
