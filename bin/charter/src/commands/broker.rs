//! `charter broker`: run the key broker, make its admin key, write release policies, and
//! administer a running broker (resources, policies) over its Ed25519-token admin API.
//!
//! * `serve`: the `charter-broker` server (the library's `serve_until_ctrl_c`).
//! * `keygen`: the admin key pair (`admin.key`, `admin.pub`).
//! * `policy new`: a Rego release policy from HOST_DATA, MEASUREMENT, debug and minimum TCB.
//! * `policy set|get`, `resource set|list`: the admin client ([`client`]).

mod client;
mod policy;

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

pub use client::AdminArgs;
pub use policy::PolicyCmd;

#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Run the key broker (trustee KBS protocol 0.4.0 over HTTPS) until Ctrl-C.
    Serve(ServeArgs),
    /// Create the admin key pair: DIR/admin.key (private, 0600) and DIR/admin.pub.
    Keygen {
        /// Directory for admin.key and admin.pub (created if missing; files never overwritten).
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Write release policies, or set and read them on a running broker.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Set and list resources on a running broker.
    #[command(subcommand)]
    Resource(ResourceCmd),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The SQLite database file (TLS material and master.key are kept next to it).
    #[arg(long)]
    db: PathBuf,
    /// The admin's Ed25519 public key PEM (`charter broker keygen` writes admin.pub).
    #[arg(long)]
    admin_public_key: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// TLS certificate chain PEM (default: a development CA and certificate next to the db).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key PEM.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Lifetime of sessions and attestation tokens, in seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86400))]
    session_ttl: Option<u64>,
    /// Write the bound address here once listening (useful with --listen 127.0.0.1:0).
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// INSECURE: accept evidence from the simulated AMD-SP (never in production).
    #[arg(long, requires = "insecure_simulated_root")]
    insecure_allow_simulated: bool,
    /// The simulator's ARK+ASK PEM (with --insecure-allow-simulated).
    #[arg(long, requires = "insecure_allow_simulated")]
    insecure_simulated_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ResourceCmd {
    /// Store FILE's bytes as the resource at PATH (repository/type/tag).
    Set {
        #[command(flatten)]
        admin: AdminArgs,
        /// repository/type/tag
        path: String,
        /// The resource's contents.
        file: PathBuf,
    },
    /// List the resource paths the broker holds, one per line.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub fn run(cmd: BrokerCmd) -> Result<ExitCode> {
    match cmd {
        BrokerCmd::Serve(args) => serve(args),
        BrokerCmd::Keygen { out_dir } => keygen(&out_dir),
        BrokerCmd::Policy(cmd) => policy::run(cmd),
        BrokerCmd::Resource(ResourceCmd::Set { admin, path, file }) => {
            let path = client::resource_path(&path)?;
            let value =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let admin = admin.connect()?;
            admin.post(&format!("/kbs/v0/resource/{path}"), &value)?;
            eprintln!(
                "charter: resource {path} set ({} bytes from {})",
                value.len(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BrokerCmd::Resource(ResourceCmd::List { admin }) => {
            let list = admin.connect()?.list_resources()?;
            let mut out = std::io::stdout().lock();
            for p in list {
                writeln!(out, "{p}")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let opts = charter_broker::ServeOptions {
        db: args.db,
        admin_public_key: args.admin_public_key,
        listen: args.listen,
        tls: args.tls_cert.zip(args.tls_key),
        session_ttl: args.session_ttl.map(Duration::from_secs),
        addr_file: args.addr_file,
        insecure_simulated_root: if args.insecure_allow_simulated {
            args.insecure_simulated_root
        } else {
            None
        },
    };
    if opts.insecure_simulated_root.is_some() {
        eprintln!("charter: INSECURE: the broker accepts simulated SNP evidence");
    }
    charter_broker::serve_until_ctrl_c(&opts, |addr| {
        eprintln!("charter: key broker listening on https://{addr}");
    })
    .with_context(|| format!("key broker on {}", opts.listen))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(dir: &Path) -> Result<ExitCode> {
    let (private, public) = charter_broker::jwt::admin_keygen().context("admin key generation")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (key_path, pub_path) = (dir.join("admin.key"), dir.join("admin.pub"));
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            bail!("{} already exists; not overwriting it", p.display());
        }
    }
    write_new(&key_path, private.as_bytes(), 0o600)?;
    write_new(&pub_path, public.as_bytes(), 0o644)?;
    eprintln!(
        "charter: admin key {} (keep it secret), public key {} (for `charter broker serve --admin-public-key`)",
        key_path.display(),
        pub_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Create `path` (failing if it exists) with `mode`, write and sync `data`.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            if path.exists() {
                format!("{} already exists; not overwriting it", path.display())
            } else {
                format!("creating {}", path.display())
            }
        })?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Write `data` to `path` atomically (a temporary file in the same directory, renamed).
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
