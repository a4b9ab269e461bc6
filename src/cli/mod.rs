//! The command line: `switchyard run|check|dtab|path|nametree`.
//!
//! Output goes to stdout, diagnostics to stderr; every command exits 0 on
//! success and 1 on any error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dtab_cmd;
mod proxy_cmd;

/// Switchyard: a routing proxy driven by delegation tables.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default config without -c).
    Run(proxy_cmd::RunArgs),
    /// Validate a config file and everything it references.
    Check(proxy_cmd::CheckArgs),
    /// Dtab tools: fmt, check, lookup, bind, explain.
    #[command(subcommand)]
    Dtab(dtab_cmd::DtabCommand),
    /// Name tree tools.
    #[command(subcommand)]
    Nametree(dtab_cmd::NametreeCommand),
    /// Path tools.
    #[command(subcommand)]
    Path(dtab_cmd::PathCommand),
}

/// Parse the arguments and run the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => proxy_cmd::run(args),
        Command::Check(args) => proxy_cmd::check(args),
        Command::Dtab(cmd) => dtab_cmd::dtab(cmd),
        Command::Nametree(cmd) => dtab_cmd::nametree(cmd),
        Command::Path(cmd) => dtab_cmd::path(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors that already printed their diagnostics carry no message.
            let msg = format!("{e:#}");
            if !msg.is_empty() {
                eprintln!("switchyard: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}
