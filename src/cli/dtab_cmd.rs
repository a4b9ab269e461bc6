//! `switchyard dtab|nametree|path ...`: the dtab language from the shell.
//!
//! Everything here is pure text in, text out: binding uses the system
//! namers only (`/$/inet`, `/$/fail`, `/$/nil`, Linkerd's rewriting namers),
//! so `bind` and `explain` show what the proxy would do without touching the
//! network or the file-system namers.

use std::io::Read;

use anyhow::{Context, anyhow};
use clap::Subcommand;

use crate::dtab::{Dtab, NameTree, ParseError, Path, SystemNamers, bind, delegate};

/// `switchyard dtab ...`
#[derive(Debug, Subcommand)]
pub enum DtabCommand {
    /// Print the canonical form of a dtab, one `PREFIX => TREE;` per line.
    Fmt {
        /// A file, or - (the default) for stdin.
        file: Option<String>,
    },
    /// Validate dtab files, reporting every error of every file.
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// One rewrite step: what the dtab turns PATH into (unsimplified).
    Lookup {
        /// The dtab: its text, or @FILE to read it from a file.
        #[arg(long, default_value = "")]
        dtab: String,
        /// The path to look up, e.g. /svc/users.
        path: String,
    },
    /// Bind PATH through the dtab and the system namers; print the result.
    Bind {
        /// The dtab: its text, or @FILE to read it from a file.
        #[arg(long, default_value = "")]
        dtab: String,
        /// The path to bind, e.g. /svc/users.
        path: String,
    },
    /// Show how PATH is delegated, step by step (Linkerd's delegator).
    Explain {
        /// The dtab: its text, or @FILE to read it from a file.
        #[arg(long, default_value = "")]
        dtab: String,
        /// The path to explain, e.g. /svc/users.
        path: String,
        /// Print Linkerd's /delegator.json form instead of a tree.
        #[arg(long)]
        json: bool,
    },
}

/// `switchyard nametree ...`
#[derive(Debug, Subcommand)]
pub enum NametreeCommand {
    /// Print the canonical form of a name tree read from stdin.
    Fmt {
        /// A file, or - (the default) for stdin.
        file: Option<String>,
    },
}

/// `switchyard path ...`
#[derive(Debug, Subcommand)]
pub enum PathCommand {
    /// Print the canonical form of a path read from stdin.
    Fmt {
        /// A file, or - (the default) for stdin.
        file: Option<String>,
    },
}

/// Run a `dtab` subcommand.
pub fn dtab(cmd: DtabCommand) -> anyhow::Result<()> {
    match cmd {
        DtabCommand::Fmt { file } => {
            let (name, text) = read_input(file.as_deref())?;
            let dtab = parse_dtab(&text, &name)?;
            print!("{}", format_dtab(&dtab));
            Ok(())
        }
        DtabCommand::Check { files } => check(&files),
        DtabCommand::Lookup { dtab, path } => {
            let dtab = dtab_arg(&dtab)?;
            let path = path_arg(&path)?;
            println!("{}", dtab.lookup(&path));
            Ok(())
        }
        DtabCommand::Bind { dtab, path } => {
            let dtab = dtab_arg(&dtab)?;
            let path = path_arg(&path)?;
            let tree = bind(&dtab, &path, &mut SystemNamers).map_err(|e| anyhow!("{e}"))?;
            println!("{tree}");
            Ok(())
        }
        DtabCommand::Explain { dtab, path, json } => {
            let dtab = dtab_arg(&dtab)?;
            let path = path_arg(&path)?;
            let trace = delegate(&dtab, &path, &mut SystemNamers);
            if json {
                println!("{}", serde_json::to_string(&trace)?);
            } else {
                print!("{}", trace.render());
            }
            Ok(())
        }
    }
}

/// Run a `nametree` subcommand.
pub fn nametree(cmd: NametreeCommand) -> anyhow::Result<()> {
    let NametreeCommand::Fmt { file } = cmd;
    let (name, text) = read_input(file.as_deref())?;
    let tree: NameTree<Path> = text.parse().map_err(|e: ParseError| parse_err(e, &name))?;
    println!("{tree}");
    Ok(())
}

/// Run a `path` subcommand.
pub fn path(cmd: PathCommand) -> anyhow::Result<()> {
    let PathCommand::Fmt { file } = cmd;
    let (name, text) = read_input(file.as_deref())?;
    let path: Path = text.parse().map_err(|e: ParseError| parse_err(e, &name))?;
    println!("{path}");
    Ok(())
}

/// The readable canonical form: one `PREFIX => TREE;` per line, which is
/// Finagle's `Dtab.show` once whitespace and the last `;` are removed.
pub fn format_dtab(dtab: &Dtab) -> String {
    let mut out = String::new();
    for d in dtab.dentries() {
        out.push_str(&format!("{} => {};\n", d.prefix, d.dst));
    }
    out
}

fn check(files: &[String]) -> anyhow::Result<()> {
    let mut bad = 0usize;
    for file in files {
        let text = match read_named(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e:#}");
                bad += 1;
                continue;
            }
        };
        match Dtab::parse_all(&text) {
            Ok(d) => println!("{file}: ok ({} dentries)", d.len()),
            Err(errors) => {
                bad += 1;
                for e in errors {
                    eprintln!("{}", e.with_source(file.as_str()));
                }
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} of {} file{} failed",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        // Diagnostics are printed; an empty message keeps main quiet.
        return Err(anyhow!(""));
    }
    Ok(())
}

/// Parse a whole dtab, reporting every error (each with its caret excerpt).
fn parse_dtab(text: &str, source: &str) -> anyhow::Result<Dtab> {
    Dtab::parse_all(text).map_err(|errors| {
        let msgs: Vec<String> = errors
            .into_iter()
            .map(|e| e.with_source(source).to_string())
            .collect();
        anyhow!("invalid dtab\n{}", msgs.join("\n"))
    })
}

/// `--dtab TEXT` or `--dtab @FILE`.
fn dtab_arg(arg: &str) -> anyhow::Result<Dtab> {
    match arg.strip_prefix('@') {
        Some(file) => {
            let text = read_named(file)?;
            parse_dtab(&text, file)
        }
        None => parse_dtab(arg, "--dtab"),
    }
}

fn path_arg(arg: &str) -> anyhow::Result<Path> {
    arg.parse()
        .map_err(|e: ParseError| anyhow!("invalid path\n{}", e.with_source("PATH")))
}

fn parse_err(e: ParseError, source: &str) -> anyhow::Error {
    anyhow!("{}", e.with_source(source))
}

/// The text of FILE, or of stdin for `-` or no file; with the name to
/// report errors under.
fn read_input(file: Option<&str>) -> anyhow::Result<(String, String)> {
    match file {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            Ok(("<stdin>".to_string(), s))
        }
        Some(f) => Ok((f.to_string(), read_named(f)?)),
    }
}

fn read_named(file: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}
