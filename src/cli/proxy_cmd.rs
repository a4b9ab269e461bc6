//! `switchyard run` and `switchyard check`. CONTRACT: filled in by the config/app work.

use clap::Args;

/// `switchyard run [-c FILE] [--threads N]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON); the embedded default when absent.
    #[arg(short, long)]
    pub config: Option<std::path::PathBuf>,
    /// Tokio worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `switchyard check -c FILE`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to validate.
    #[arg(short, long)]
    pub config: std::path::PathBuf,
}

pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Validate the config and everything it references; print `FILE: ok`, or
/// every problem on stderr (one per line) and fail.
pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let problems = crate::config::check(&args.config);
    if problems.is_empty() {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    // The problems are the message; main prints nothing more.
    Err(anyhow::anyhow!(""))
}
