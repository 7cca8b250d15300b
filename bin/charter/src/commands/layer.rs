//! `charter layer build|verify`: single layer images.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use charter_verity::RootHash;
use clap::{Args, Subcommand};

use super::output;
use super::progress::ByteProgress;

#[derive(Debug, Subcommand)]
pub enum LayerCmd {
    /// Convert a layer tar (plain, gzip or zstd; `-` for stdin) into an EROFS image with an
    /// appended dm-verity tree, and print its root hash.
    Build(BuildArgs),
    /// Check a layer image against a root hash, naming the first bad block.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The layer tar.
    tar: PathBuf,
    /// Where to write the layer image (replaced atomically on success).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    common: super::Common,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The layer image.
    image: PathBuf,
    /// The expected dm-verity root hash (64 hex digits).
    #[arg(long)]
    root_hash: String,
    #[command(flatten)]
    common: super::Common,
}

pub fn run(cmd: LayerCmd) -> Result<ExitCode> {
    match cmd {
        LayerCmd::Build(args) => build(args),
        LayerCmd::Verify(args) => verify(args),
    }
}

fn build(args: BuildArgs) -> Result<ExitCode> {
    let threads = args.common.threads()?;
    let (input, size): (Box<dyn Read>, Option<u64>) = if args.tar == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = File::open(&args.tar).with_context(|| format!("opening {}", args.tar.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let progress = ByteProgress::new(size, "converting", args.common.quiet);
    let input = BufReader::with_capacity(1 << 20, progress.wrap(input));
    let (_, tar) = charter_image::decompress(input)
        .with_context(|| format!("reading {}", args.tar.display()))?;
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let what = args.tar.display().to_string();
    let image = charter_image::build_layer_image(tar, tmp.as_file(), threads, &what)?;
    progress.finish();
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", args.output.display()))?;
    tmp.persist(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    if args.common.json {
        let out = serde_json::json!({
            "image": args.output,
            "root_hash": image.root_hash.to_string(),
            "data_size": image.data_size,
            "total_size": image.total_size,
            "inodes": image.erofs.inodes,
        });
        output::line(out)?;
    } else {
        output::line(image.root_hash)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let threads = args.common.threads()?;
    let root: RootHash = args
        .root_hash
        .parse()
        .with_context(|| format!("--root-hash {:?}", args.root_hash))?;
    let f = File::open(&args.image).with_context(|| format!("opening {}", args.image.display()))?;
    let what = args.image.display().to_string();
    let data_size = charter_image::verify_layer_image(&f, &root, threads, &what)?;
    if args.common.json {
        output::line(
            serde_json::json!({"image": args.image, "root_hash": root.to_string(), "data_size": data_size, "verified": true}),
        )?;
    } else {
        output::line(format_args!(
            "{}: verified against {root}",
            args.image.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
