//! `charter-broker`: run the key broker (the library's `Server`) until killed.
//!
//! ```text
//! charter-broker --db PATH --admin-public-key PEM_FILE [--listen ADDR]
//!                [--tls-cert PEM --tls-key PEM] [--session-ttl SECS] [--addr-file PATH]
//!                [--insecure-allow-simulated --insecure-simulated-root PEM_FILE]
//! ```
//!
//! Without `--tls-cert`, a development CA and server certificate are generated next to the
//! database (`tls-ca.pem` is what clients trust). The master key comes from
//! `$CHARTER_BROKER_MASTER_KEY` or `master.key` next to the database (created 0600).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use charter_broker::{serve_until_ctrl_c, ServeOptions};

fn usage() -> ExitCode {
    eprintln!(
        "usage: charter-broker --db PATH --admin-public-key PEM [--listen ADDR] [--tls-cert PEM --tls-key PEM] \
         [--session-ttl SECS] [--addr-file PATH] [--insecure-allow-simulated --insecure-simulated-root PEM]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut db = None;
    let mut admin = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let (mut cert, mut key) = (None, None);
    let mut ttl = None;
    let mut addr_file = None;
    let mut insecure = false;
    let mut sim_root = None;
    while let Some(a) = args.next() {
        let mut val = || args.next();
        match a.as_str() {
            "--db" => db = val().map(PathBuf::from),
            "--admin-public-key" => admin = val().map(PathBuf::from),
            "--listen" => match val() {
                Some(v) => listen = v,
                None => return usage(),
            },
            "--tls-cert" => cert = val().map(PathBuf::from),
            "--tls-key" => key = val().map(PathBuf::from),
            "--session-ttl" => ttl = val().and_then(|v| v.parse::<u64>().ok()),
            "--addr-file" => addr_file = val().map(PathBuf::from),
            "--insecure-allow-simulated" => insecure = true,
            "--insecure-simulated-root" => sim_root = val().map(PathBuf::from),
            _ => return usage(),
        }
    }
    let (Some(db), Some(admin)) = (db, admin) else {
        return usage();
    };
    match run(
        db,
        admin,
        listen,
        cert.zip(key),
        ttl,
        addr_file,
        insecure,
        sim_root,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charter-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    db: PathBuf,
    admin: PathBuf,
    listen: String,
    tls: Option<(PathBuf, PathBuf)>,
    ttl: Option<u64>,
    addr_file: Option<PathBuf>,
    insecure: bool,
    sim_root: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    if insecure && sim_root.is_none() {
        return Err("--insecure-allow-simulated needs --insecure-simulated-root".into());
    }
    let opts = ServeOptions {
        db,
        admin_public_key: admin,
        listen: listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("--listen {listen:?}: {e}"))?,
        tls,
        session_ttl: ttl.map(Duration::from_secs),
        addr_file,
        insecure_simulated_root: if insecure { sim_root } else { None },
    };
    if opts.insecure_simulated_root.is_some() {
        eprintln!("charter-broker: INSECURE: accepting simulated SNP evidence");
    }
    serve_until_ctrl_c(&opts, |addr| {
        eprintln!("charter-broker: listening on https://{addr}");
    })?;
    Ok(())
}
