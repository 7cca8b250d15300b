//! `charter image measure`: each layer's diff_id and dm-verity root hash.

use std::process::ExitCode;

use anyhow::{Context, Result};
use charter_image::{ImageSource, Platform};
use clap::{Args, Subcommand};

use super::output;
use super::progress::LayerBars;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Print each layer's diff_id and dm-verity root hash (base layer first).
    Measure(MeasureArgs),
}

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, or a path (a directory is an OCI layout,
    /// a file a docker archive).
    source: String,
    /// Platform to pick from a multi-platform index.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    #[command(flatten)]
    cache: super::CacheArgs,
    #[command(flatten)]
    common: super::Common,
}

pub fn run(cmd: ImageCmd) -> Result<ExitCode> {
    match cmd {
        ImageCmd::Measure(args) => measure(args),
    }
}

fn measure(args: MeasureArgs) -> Result<ExitCode> {
    let threads = args.common.threads()?;
    let platform: Platform = args.platform.parse()?;
    let source = ImageSource::parse(&args.source)?;
    let image = source
        .open(&platform)
        .with_context(|| format!("opening {}", args.source))?;
    let cache = args.cache.open()?;
    let scratch = std::env::temp_dir();
    let bars = LayerBars::new(args.common.quiet);
    let layers = charter_image::measure(&image, cache.as_ref(), &scratch, threads, &bars)
        .with_context(|| format!("measuring {}", image.source))?;
    if args.common.json {
        let out = serde_json::json!({
            "source": image.source,
            "manifest_digest": image.manifest_digest,
            "config_digest": image.config_digest,
            "layers": layers,
        });
        output::line(serde_json::to_string_pretty(&out)?)?;
    } else {
        output::line(&image.source)?;
        for l in &layers {
            let note = if l.cached { "  (cached)" } else { "" };
            output::line(format_args!(
                "  layer {}  diff_id {}  root_hash {}{note}",
                l.index, l.diff_id, l.root_hash
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
