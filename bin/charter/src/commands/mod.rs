//! One module per subcommand family, plus the options and progress display they share.

pub mod attest;
pub mod generate;
pub mod image;
pub mod layer;
pub mod output;
pub mod policy;
mod progress;

use std::num::NonZeroUsize;

use anyhow::{bail, Result};
use clap::Args;

/// Options every layer-processing command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Threads for hashing (default: all cores). Never changes the output.
    #[arg(long)]
    threads: Option<usize>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

impl Common {
    fn threads(&self) -> Result<NonZeroUsize> {
        match self.threads {
            None => Ok(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
            Some(n) => match NonZeroUsize::new(n) {
                Some(n) if n.get() <= 256 => Ok(n),
                _ => bail!("--threads must be between 1 and 256, got {n}"),
            },
        }
    }
}
