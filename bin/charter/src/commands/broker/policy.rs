//! `charter broker policy new|set|get`: Rego release policies.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use charter_attest::TcbVersion;
use charter_broker::policy::ReleasePolicy;
use clap::Subcommand;

use super::client::{resource_path, AdminArgs};

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Print (or write with -o) a release policy: HOST_DATA must match, debug off, and
    /// optionally an exact MEASUREMENT and a minimum reported TCB.
    New {
        /// HOST_DATA the guest must report: 64 hex digits (the execution policy's SHA-256).
        #[arg(long)]
        host_data: String,
        /// Launch MEASUREMENT the guest must report: 96 hex digits.
        #[arg(long)]
        measurement: Option<String>,
        /// Release to guests launched with debugging enabled too.
        #[arg(long)]
        allow_debug: bool,
        /// Minimum reported TCB: bootloader=N,tee=N,snp=N,microcode=N[,fmc=N].
        #[arg(long)]
        min_tcb: Option<String>,
        /// Write the policy here (atomically) instead of printing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Set a resource's release policy (or the default one) on a running broker.
    Set {
        #[command(flatten)]
        admin: AdminArgs,
        /// The resource (repository/type/tag); without it, the default policy.
        #[arg(long)]
        resource: Option<String>,
        /// The Rego policy file.
        file: PathBuf,
    },
    /// Print a resource's release policy (or the default one) from a running broker.
    Get {
        #[command(flatten)]
        admin: AdminArgs,
        /// The resource (repository/type/tag); without it, the default policy.
        #[arg(long)]
        resource: Option<String>,
    },
}

/// Bad `policy new` input.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyInputError {
    /// A hex option has the wrong length or a non-hex character.
    Hex {
        option: &'static str,
        expected_digits: usize,
        got: String,
    },
    /// `--min-tcb` is not `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]`.
    MinTcb { got: String, reason: String },
}

impl std::fmt::Display for PolicyInputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyInputError::Hex {
                option,
                expected_digits,
                got,
            } => write!(
                f,
                "{option} {got:?}: expected {expected_digits} hex digits, got {} characters{}",
                got.chars().count(),
                if got.chars().all(|c| c.is_ascii_hexdigit()) {
                    ""
                } else {
                    " (not all hex)"
                }
            ),
            PolicyInputError::MinTcb { got, reason } => write!(
                f,
                "--min-tcb {got:?}: {reason}; expected bootloader=N,tee=N,snp=N,microcode=N[,fmc=N] with N in 0..=255"
            ),
        }
    }
}

impl std::error::Error for PolicyInputError {}

/// `s` if it is exactly `digits` hex digits.
pub fn hex_arg(option: &'static str, s: &str, digits: usize) -> Result<String, PolicyInputError> {
    if s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(PolicyInputError::Hex {
            option,
            expected_digits: digits,
            got: s.to_owned(),
        })
    }
}

/// Parse `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]` (any order, each once).
pub fn parse_min_tcb(s: &str) -> Result<TcbVersion, PolicyInputError> {
    let err = |reason: String| PolicyInputError::MinTcb {
        got: s.to_owned(),
        reason,
    };
    let mut v: [Option<u8>; 5] = [None; 5];
    const NAMES: [&str; 5] = ["bootloader", "tee", "snp", "microcode", "fmc"];
    for item in s.split(',') {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| err(format!("{item:?} is not NAME=N")))?;
        let name = name.trim();
        let idx = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| err(format!("unknown component {name:?}")))?;
        let n: u8 = value
            .trim()
            .parse()
            .map_err(|_| err(format!("{name}: {value:?} is not a number in 0..=255")))?;
        let slot = v
            .get_mut(idx)
            .ok_or_else(|| err(format!("unknown component {name:?}")))?;
        if slot.replace(n).is_some() {
            return Err(err(format!("{name} given twice")));
        }
    }
    let need = |i: usize| {
        v.get(i).copied().flatten().ok_or_else(|| {
            err(format!(
                "{} is missing",
                NAMES.get(i).copied().unwrap_or("?")
            ))
        })
    };
    Ok(TcbVersion {
        bootloader: need(0)?,
        tee: need(1)?,
        snp: need(2)?,
        microcode: need(3)?,
        fmc: v.get(4).copied().flatten(),
    })
}

/// The Rego text of `policy new`, compiled once to prove it loads.
pub fn new_policy(
    host_data: &str,
    measurement: Option<&str>,
    allow_debug: bool,
    min_tcb: Option<&str>,
) -> Result<String> {
    let host_data = hex_arg("--host-data", host_data, 64)?;
    let measurement = measurement
        .map(|m| hex_arg("--measurement", m, 96))
        .transpose()?;
    let tcb = min_tcb.map(parse_min_tcb).transpose()?;
    let rego = charter_broker::policy_new(
        &host_data,
        measurement.as_deref(),
        allow_debug,
        tcb.as_ref(),
    );
    ReleasePolicy::compile(&rego).context("the generated policy does not compile")?;
    Ok(rego)
}

pub fn run(cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::New {
            host_data,
            measurement,
            allow_debug,
            min_tcb,
            output,
        } => {
            let rego = new_policy(
                &host_data,
                measurement.as_deref(),
                allow_debug,
                min_tcb.as_deref(),
            )?;
            match output {
                Some(path) => {
                    super::write_atomic(&path, rego.as_bytes())?;
                    eprintln!("charter: release policy written to {}", path.display());
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(rego.as_bytes())?;
                    out.flush()?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Set {
            admin,
            resource,
            file,
        } => {
            let resource = resource.as_deref().map(resource_path).transpose()?;
            let rego = std::fs::read_to_string(&file)
                .with_context(|| format!("reading policy {}", file.display()))?;
            ReleasePolicy::compile(&rego)
                .with_context(|| format!("policy {} does not compile", file.display()))?;
            admin.connect()?.set_policy(resource.as_ref(), &rego)?;
            match &resource {
                Some(p) => eprintln!("charter: release policy of {p} set from {}", file.display()),
                None => eprintln!(
                    "charter: default release policy set from {}",
                    file.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Get { admin, resource } => {
            let resource = resource.as_deref().map(resource_path).transpose()?;
            let rego = admin.connect()?.get_policy(resource.as_ref())?;
            let mut out = std::io::stdout().lock();
            out.write_all(rego.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
