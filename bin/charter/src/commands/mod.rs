//! One module per subcommand family, plus the options and progress display they share.

pub mod attest;
pub mod broker;
pub mod data;
pub mod demo;
mod demo_image;
pub mod generate;
pub mod image;
pub mod layer;
pub mod output;
pub mod policy;
mod progress;
pub mod run;
mod run_qemu;
pub mod uvm;

use std::num::NonZeroUsize;

use anyhow::{bail, Context, Result};
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

/// Where layer measurements are cached.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Cache directory (default: $CHARTER_CACHE_DIR, $XDG_CACHE_HOME/charter, ~/.cache/charter).
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<std::path::PathBuf>,
    /// Measure every layer even when a cached root hash exists, and record nothing.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    /// The cache to use, or `None` with `--no-cache`.
    fn open(&self) -> Result<Option<charter_image::Cache>> {
        if self.no_cache {
            return Ok(None);
        }
        let dir = self
            .cache_dir
            .clone()
            .or_else(charter_image::Cache::default_dir)
            .context("no cache directory: set $HOME or pass --cache-dir or --no-cache")?;
        let cache = charter_image::Cache::open(&dir)
            .with_context(|| format!("opening cache {}", dir.display()))?;
        Ok(Some(cache))
    }
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
