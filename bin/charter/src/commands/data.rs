//! `charter data seal` / `charter data open`: a data owner's file or directory encrypted under
//! a 32-byte key (the `charter-seal` format). The key goes to the key broker with a release
//! policy; the sealed file can sit anywhere the host likes, only an attested group opens it.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Encrypt a file, or a directory (as a tar), under a data key.
    Seal {
        /// The file or directory.
        input: PathBuf,
        /// The sealed output (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// 32-byte data key file; created (mode 0600) with a fresh random key if missing.
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Decrypt a sealed file (for the owner's own checks; in a pod the agent does this).
    Open {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Reads a 32-byte key file, or creates one.
pub fn key_or_create(path: &Path) -> Result<charter_seal::DataKey> {
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .as_slice()
            .try_into()
            .with_context(|| format!("{} is not a 32-byte key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = charter_seal::generate_key()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&key)?;
            f.sync_all()?;
            eprintln!("charter: new data key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn atomic_out(output: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))
}

pub fn run(cmd: DataCmd) -> Result<ExitCode> {
    match cmd {
        DataCmd::Seal {
            input,
            output,
            key_file,
        } => {
            let key = key_or_create(&key_file)?;
            let tmp = atomic_out(&output)?;
            let mut w = BufWriter::new(tmp.as_file());
            let meta = std::fs::metadata(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let n = if meta.is_dir() {
                // A directory is sealed as a tar stream built in a pipe.
                let (reader, writer) = std::io::pipe()?;
                let dir = input.clone();
                let producer = std::thread::spawn(move || -> Result<()> {
                    let mut b = tar::Builder::new(writer);
                    b.follow_symlinks(false);
                    b.append_dir_all(".", &dir)?;
                    b.into_inner()?.flush()?;
                    Ok(())
                });
                let n = charter_seal::seal(&key, reader, &mut w, charter_seal::DEFAULT_CHUNK)?;
                producer
                    .join()
                    .map_err(|_| anyhow::anyhow!("tar thread panicked"))??;
                n
            } else if meta.is_file() {
                let f = std::fs::File::open(&input)?;
                charter_seal::seal(&key, BufReader::new(f), &mut w, charter_seal::DEFAULT_CHUNK)?
            } else {
                bail!("{} is neither a file nor a directory", input.display());
            };
            w.flush()?;
            drop(w);
            tmp.as_file().sync_all()?;
            tmp.persist(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!(
                "charter: sealed {} ({n} bytes{}) -> {}",
                input.display(),
                if meta.is_dir() { " of tar" } else { "" },
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DataCmd::Open {
            input,
            output,
            key_file,
        } => {
            let key: charter_seal::DataKey = std::fs::read(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?
                .as_slice()
                .try_into()
                .with_context(|| format!("{} is not a 32-byte key", key_file.display()))?;
            let f = std::fs::File::open(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let tmp = atomic_out(&output)?;
            let mut w = BufWriter::new(tmp.as_file());
            // Nothing is kept unless every chunk authenticated.
            charter_seal::open(&key, BufReader::new(f), &mut w)
                .with_context(|| format!("opening {}", input.display()))?;
            w.flush()?;
            drop(w);
            tmp.persist(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
