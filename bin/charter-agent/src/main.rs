//! charter-agent: the guest agent. Starts closed, takes the execution policy once (checked
//! against HOST_DATA in its own attestation report), then lets the untrusted host act only
//! through requests the policy allows.
//!
//! Everything this binary links is trusted computing base: the protocol, the policy engine,
//! the report codec and providers, layer verification and the OCI runtime driver. Nothing
//! from the generator, the host launcher or the TEE simulator.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod agent;
mod broker_port;
mod containers;
mod guest;
mod init;
mod keys;
mod server;
mod streams;
mod sys;
mod userdb;
mod workload;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use charter_attest::provider::insecure_socket::InsecureSimulatedSocket;
use charter_attest::TeeProvider;

const USAGE: &str = "usage: charter-agent --listen SOCKET [--host-dir DIR] [--sandbox-root DIR] \
[--tee auto|insecure-simulated-socket=PATH] [--runc PATH]";

struct Args {
    listen: PathBuf,
    host_dir: PathBuf,
    sandbox_root: Option<PathBuf>,
    tee: String,
    runc: PathBuf,
    /// The host's disk for encrypted scratch (the utility VM), else scratch is tmpfs.
    scratch_disk: Option<PathBuf>,
    /// `mke2fs` for the encrypted scratch.
    mke2fs: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut host_dir = PathBuf::from("/host");
    let mut sandbox_root = None;
    let mut tee = "auto".to_owned();
    let mut runc = PathBuf::from("/usr/sbin/runc");
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(PathBuf::from(value()?)),
            "--host-dir" => host_dir = PathBuf::from(value()?),
            "--sandbox-root" => sandbox_root = Some(PathBuf::from(value()?)),
            "--tee" => tee = value()?.to_string_lossy().into_owned(),
            "--runc" => runc = PathBuf::from(value()?),
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        host_dir,
        sandbox_root,
        tee,
        runc,
        scratch_disk: None,
        mke2fs: PathBuf::from("/usr/sbin/mke2fs"),
    })
}

fn tee(spec: &str) -> Result<Box<dyn TeeProvider + Send + Sync>, String> {
    if let Some(path) = spec.strip_prefix("insecure-simulated-socket=") {
        return Ok(Box::new(InsecureSimulatedSocket::new(&PathBuf::from(path))));
    }
    if spec == "auto" {
        return charter_attest::provider::detect()
            .ok_or_else(|| "no TEE found (configfs-tsm or /dev/sev-guest); the insecure simulator must be chosen explicitly with --tee insecure-simulated-socket=PATH".to_owned());
    }
    Err(format!("unknown --tee {spec:?}"))
}

fn run() -> Result<(), String> {
    run_with(parse_args()?)
}

/// Runs the agent with `args` (also the end of the PID 1 mode, see `init`).
fn run_with(mut args: Args) -> Result<(), String> {
    if let Some(root) = &args.sandbox_root {
        sys::enter_sandbox_root(root, &args.host_dir)?;
        args.host_dir = PathBuf::from("/host");
    }
    sys::make_run_dirs()?;
    // The group's own loopback (the workload endpoint lives there); without it the group
    // still runs, only 127.0.0.1 is unreachable.
    if let Err(e) = sys::loopback_up() {
        eprintln!("charter-agent: {e}");
    }
    charter_oci::become_subreaper().map_err(|e| e.to_string())?;
    let tee = tee(&args.tee)?;
    let _ = std::fs::remove_file(&args.listen);
    let listener = UnixListener::bind(&args.listen)
        .map_err(|e| format!("listen on {}: {e}", args.listen.display()))?;
    let agent = Arc::new(agent::Agent::new(
        agent::Config {
            host_dir: args.host_dir,
            runc: args.runc,
            scratch_disk: args.scratch_disk,
            mke2fs: args.mke2fs,
        },
        tee,
    ));
    agent.log("agent ready: closed until a policy is set".into());
    server::serve(agent, listener);
    Ok(())
}

fn main() -> ExitCode {
    if init::requested() {
        return init::main();
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charter-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
