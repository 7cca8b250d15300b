//! `charter policy`: check a policy document and replay host requests against it offline.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use charter_policy::{Enforcer, Request};
use clap::Subcommand;
use serde_json::{json, Value};

/// Longest accepted trace line (bytes); a request input is limited far below this.
const MAX_TRACE_LINE: usize = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse and validate a policy; print its digest (HOST_DATA) and a summary.
    Check {
        /// The policy (Rego text, `package policy`).
        policy: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay host requests in order, printing one JSON decision per request.
    ///
    /// Each trace line is `{"rule": "<enforcement point>", "input": {...}}` with ACI input
    /// field names. The exit status is non-zero when any request is denied.
    Simulate {
        /// The policy (Rego text, `package policy`).
        policy: PathBuf,
        /// JSON Lines trace of host requests ("-" for stdin).
        #[arg(long)]
        requests: PathBuf,
        /// Exit 0 even when requests are denied.
        #[arg(long)]
        no_fail_on_deny: bool,
    },
    /// Generate a policy from a Kubernetes pod spec and its images.
    Generate(Box<super::generate::GenerateArgs>),
}

pub fn run(cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Check { policy, json } => check(&policy, json),
        PolicyCmd::Simulate {
            policy,
            requests,
            no_fail_on_deny,
        } => simulate(&policy, &requests, no_fail_on_deny),
        PolicyCmd::Generate(args) => super::generate::run(*args),
    }
}

fn load(path: &Path) -> Result<Enforcer> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading policy {}", path.display()))?;
    Enforcer::new(&bytes).with_context(|| format!("loading policy {}", path.display()))
}

fn check(path: &Path, as_json: bool) -> Result<ExitCode> {
    let summary = load(path)?.summary();
    let mut out = std::io::stdout().lock();
    if as_json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "policy      {}", path.display())?;
    writeln!(out, "digest      {} (sha256, HOST_DATA)", summary.digest)?;
    writeln!(
        out,
        "api         {}{}",
        summary.api_version,
        if summary.rego_v0 {
            " (rego v0 syntax)"
        } else {
            ""
        }
    )?;
    if let Some(fw) = &summary.framework_version {
        writeln!(out, "framework   {fw}")?;
    }
    writeln!(
        out,
        "containers  {} {:?}",
        summary.containers.len(),
        summary.containers
    )?;
    writeln!(out, "external    {}", summary.external_processes)?;
    writeln!(out, "fragments   {}", summary.fragments)?;
    writeln!(
        out,
        "flags       {}",
        if summary.flags.is_empty() {
            "none".to_owned()
        } else {
            summary.flags.join(", ")
        }
    )?;
    writeln!(
        out,
        "points      {} defined",
        summary.enforcement_points.len()
    )?;
    writeln!(
        out,
        "matcher     {}",
        if summary.compiled_matcher {
            "compiled (mount_device, mount_overlay, create_container)"
        } else {
            "rego only"
        }
    )?;
    if !summary.missing_points.is_empty() {
        writeln!(out, "missing     {}", summary.missing_points.join(", "))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(policy: &Path, requests: &Path, no_fail_on_deny: bool) -> Result<ExitCode> {
    let mut enforcer = load(policy)?;
    let reader: Box<dyn BufRead> = if requests.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(requests)
            .with_context(|| format!("opening trace {}", requests.display()))?;
        Box::new(BufReader::new(f))
    };
    let mut out = std::io::stdout().lock();
    let mut denied = 0usize;
    let mut total = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let lineno = n + 1;
        let line =
            line.with_context(|| format!("reading trace {} line {lineno}", requests.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_TRACE_LINE {
            bail!("trace line {lineno} is longer than {MAX_TRACE_LINE} bytes");
        }
        let entry: Value = serde_json::from_str(&line)
            .with_context(|| format!("trace line {lineno} is not JSON"))?;
        let rule = entry
            .get("rule")
            .and_then(Value::as_str)
            .with_context(|| format!("trace line {lineno} has no \"rule\""))?
            .to_owned();
        let input = entry.get("input").cloned().unwrap_or(Value::Null);
        total += 1;
        let decision = match Request::from_rule_input(&rule, input) {
            Err(e) => {
                denied += 1;
                json!({"line": lineno, "rule": rule, "allowed": false, "reason": e.to_string(), "errors": [], "policy_error": e.to_string()})
            }
            Ok(request) => match enforcer.check(&request) {
                Ok(allowed) => {
                    let d = json!({
                        "line": lineno,
                        "rule": rule,
                        "allowed": true,
                        "reason": "allowed",
                        "env_list": allowed.env_list(),
                        "caps_list": allowed.caps_list(),
                        "allow_stdio_access": allowed.allow_stdio_access(),
                    });
                    // Offline there is no action that could fail: apply the state change.
                    allowed.commit().context("applying the state change")?;
                    d
                }
                Err(d) => {
                    denied += 1;
                    json!({
                        "line": lineno,
                        "rule": rule,
                        "allowed": false,
                        "reason": d.explanation(),
                        "errors": d.reason().errors,
                        "policy_error": d.policy_error(),
                        "decision": d.decision_json(),
                    })
                }
            },
        };
        serde_json::to_writer(&mut out, &decision)?;
        writeln!(out)?;
    }
    eprintln!(
        "{total} requests, {} allowed, {denied} denied",
        total - denied
    );
    Ok(if denied > 0 && !no_fail_on_deny {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
