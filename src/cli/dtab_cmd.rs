//! `switchyard dtab|nametree|path ...`. CONTRACT: filled in by the dtab CLI work.

use clap::Subcommand;

/// `switchyard dtab ...`
#[derive(Debug, Subcommand)]
pub enum DtabCommand {
    /// Print the canonical form of a dtab.
    Fmt {
        /// A file, or - for stdin.
        file: Option<String>,
    },
}

/// `switchyard nametree ...`
#[derive(Debug, Subcommand)]
pub enum NametreeCommand {
    /// Print the canonical form of a name tree read from stdin.
    Fmt {
        /// - for stdin.
        file: Option<String>,
    },
}

/// `switchyard path ...`
#[derive(Debug, Subcommand)]
pub enum PathCommand {
    /// Print the canonical form of a path read from stdin.
    Fmt {
        /// - for stdin.
        file: Option<String>,
    },
}

pub fn dtab(_cmd: DtabCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn nametree(_cmd: NametreeCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn path(_cmd: PathCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
