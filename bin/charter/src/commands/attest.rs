//! `charter attest`: inspect, verify and predict AMD SEV-SNP attestation evidence.
//!
//! Exit codes of `charter attest verify` (documented in `--help`):
//! * 0: verified and every expectation met;
//! * 1: other error (I/O, internal);
//! * 2: invalid input (unparsable report, certificate or evidence; bad arguments);
//! * 3: verification failed (signature, certificate chain, validity, appraisal policy);
//! * 4: verified, but an expectation (`--policy`/`--expect-host-data`,
//!   `--expect-measurement`, `--expect-report-data`, or the evidence's runtime data being bound
//!   by REPORT_DATA) did not hold.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use charter_attest::{
    CertBundle, Error, Evidence, Product, Report, RootSet, TcbVersion, Verifier, VerifyOptions,
};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

/// Exit code: invalid input.
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code: verification failed.
pub const EXIT_VERIFICATION_FAILED: u8 = 3;
/// Exit code: an expectation failed.
pub const EXIT_EXPECTATION_FAILED: u8 = 4;

/// `charter attest ...`
#[derive(Debug, Subcommand)]
pub enum AttestCmd {
    /// Decode an ATTESTATION_REPORT (raw 1184 bytes, or an evidence JSON) without verifying it.
    Show {
        /// Report file (raw binary) or evidence JSON.
        report: PathBuf,
        /// Product for decoding TCB values of v2 reports (milan, genoa, turin).
        #[arg(long)]
        product: Option<Product>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a report to the pinned AMD root and check expectations.
    ///
    /// Exit codes: 0 verified, 1 other error, 2 invalid input, 3 verification failed,
    /// 4 expectation failed.
    Verify(VerifyArgs),
    /// Compute the expected launch MEASUREMENT of an SEV-SNP guest (as PyPI
    /// `sev-snp-measure --mode snp` does).
    Measure(MeasureArgs),
    /// INSECURE: write simulated SNP evidence from a simulated AMD-SP (state kept in a
    /// directory). Verifies only with `verify --insecure-allow-simulated
    /// --insecure-simulated-root`.
    InsecureSimulate(SimulateArgs),
}

/// Arguments of `charter attest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Raw report file.
    #[arg(
        long,
        conflicts_with = "evidence",
        required_unless_present = "evidence"
    )]
    report: Option<PathBuf>,
    /// VCEK certificate (DER, PEM, or Azure THIM JSON).
    #[arg(long, conflicts_with_all = ["vlek", "evidence"])]
    vcek: Option<PathBuf>,
    /// VLEK certificate (DER or PEM).
    #[arg(long, conflicts_with = "evidence")]
    vlek: Option<PathBuf>,
    /// ASK/ASVK and/or ARK (PEM); the ARK must be AMD's pinned one.
    #[arg(long, conflicts_with = "evidence")]
    chain: Option<PathBuf>,
    /// Evidence JSON bundle (report + certificates [+ runtime data]).
    #[arg(long)]
    evidence: Option<PathBuf>,
    /// Product when the report cannot tell (v2 reports): milan, genoa, turin.
    #[arg(long)]
    product: Option<Product>,
    /// Execution policy file: HOST_DATA must equal its SHA-256.
    #[arg(long, conflicts_with = "expect_host_data")]
    policy: Option<PathBuf>,
    /// Expected HOST_DATA (64 hex digits).
    #[arg(long)]
    expect_host_data: Option<String>,
    /// Expected MEASUREMENT (96 hex digits); repeat to allow several.
    #[arg(long)]
    expect_measurement: Vec<String>,
    /// Expected REPORT_DATA (up to 128 hex digits, zero-padded).
    #[arg(long)]
    expect_report_data: Option<String>,
    /// Accept guest policy DEBUG=1 (the host can read guest memory).
    #[arg(long)]
    allow_debug: bool,
    /// Required VMPL.
    #[arg(long)]
    vmpl: Option<u32>,
    /// Minimum REPORTED_TCB, e.g. `bl=3,tee=0,snp=8,ucode=115[,fmc=0]`.
    #[arg(long, value_parser = parse_tcb)]
    min_tcb: Option<TcbVersion>,
    /// INSECURE: accept evidence from the simulated AMD-SP (needs --insecure-simulated-root).
    #[arg(long)]
    insecure_allow_simulated: bool,
    /// INSECURE: PEM with the simulated ARK and ASK.
    #[arg(long, requires = "insecure_allow_simulated")]
    insecure_simulated_root: Option<PathBuf>,
    /// Time at which certificates must be valid, in Unix seconds (default: now).
    #[arg(long)]
    at: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `charter attest measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// OVMF firmware image.
    #[arg(long)]
    ovmf: PathBuf,
    /// Precomputed OVMF hash (96 hex digits) to seed the digest instead of measuring the image.
    #[arg(long)]
    snp_ovmf_hash: Option<String>,
    /// Kernel for direct boot (enables the kernel-hashes page).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd (with --kernel).
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line (with --kernel).
    #[arg(long, requires = "kernel")]
    append: Option<String>,
    /// Number of vCPUs.
    #[arg(long)]
    vcpus: u32,
    /// vCPU model (EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...).
    #[arg(long, conflicts_with = "vcpu_sig")]
    vcpu_type: Option<String>,
    /// vCPU signature (CPUID(1).EAX), e.g. 0xa00f11.
    #[arg(long)]
    vcpu_sig: Option<String>,
    /// Hypervisor: qemu, ec2 or gce.
    #[arg(long, default_value = "qemu")]
    vmm_type: String,
    /// VMSA SEV_FEATURES (0x1 = SNP only, 0x21 = SNP + DebugSwap).
    #[arg(long, default_value = "0x21")]
    guest_features: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `charter attest insecure-simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// State directory of the simulated AMD-SP (created on first use).
    #[arg(long)]
    state: PathBuf,
    /// Execution policy file: HOST_DATA = its SHA-256.
    #[arg(long, conflicts_with = "host_data")]
    policy: Option<PathBuf>,
    /// HOST_DATA (64 hex digits).
    #[arg(long)]
    host_data: Option<String>,
    /// MEASUREMENT (96 hex digits).
    #[arg(long)]
    measurement: Option<String>,
    /// REPORT_DATA (up to 128 hex digits).
    #[arg(long)]
    report_data: Option<String>,
    /// Guest policy (e.g. 0x30000).
    #[arg(long, default_value = "0x30000")]
    guest_policy: String,
    /// Where to write the evidence JSON.
    #[arg(long)]
    out: PathBuf,
    /// Where to write the simulated root PEM (ARK + ASK).
    #[arg(long)]
    root_out: Option<PathBuf>,
}

fn parse_tcb(s: &str) -> std::result::Result<TcbVersion, String> {
    let mut t = TcbVersion {
        fmc: None,
        bootloader: 0,
        tee: 0,
        snp: 0,
        microcode: 0,
    };
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected name=value"))?;
        let v: u8 = v.trim().parse().map_err(|e| format!("{part:?}: {e}"))?;
        match k.trim() {
            "bl" | "bootloader" => t.bootloader = v,
            "tee" => t.tee = v,
            "snp" => t.snp = v,
            "ucode" | "microcode" => t.microcode = v,
            "fmc" => t.fmc = Some(v),
            other => {
                return Err(format!(
                    "unknown tcb component {other:?} (bl, tee, snp, ucode, fmc)"
                ))
            }
        }
    }
    Ok(t)
}

/// A failure with its exit code.
#[derive(Debug)]
struct Fail {
    code: u8,
    message: String,
}

fn invalid(message: impl Into<String>) -> Fail {
    Fail {
        code: EXIT_INVALID_INPUT,
        message: message.into(),
    }
}

fn classify(e: &Error) -> u8 {
    match e {
        Error::ReportLength(_)
        | Error::UnsupportedVersion(_)
        | Error::ReservedNotZero { .. }
        | Error::SignatureEncoding(_)
        | Error::CertDecode { .. }
        | Error::Evidence(_)
        | Error::MissingCert(_)
        | Error::Measurement(_) => EXIT_INVALID_INPUT,
        Error::Io { .. } | Error::Provider { .. } => 1,
        _ => EXIT_VERIFICATION_FAILED,
    }
}

fn read(path: &Path) -> std::result::Result<Vec<u8>, Fail> {
    std::fs::read(path).map_err(|e| Fail {
        code: 1,
        message: format!("{}: {e}", path.display()),
    })
}

fn hex_exact<const N: usize>(what: &str, s: &str) -> std::result::Result<[u8; N], Fail> {
    let v = hex::decode(s.trim().trim_start_matches("0x"))
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    v.try_into()
        .map_err(|v: Vec<u8>| invalid(format!("{what}: {} bytes, expected {N}", v.len())))
}

fn hex_padded<const N: usize>(what: &str, s: &str) -> std::result::Result<[u8; N], Fail> {
    let v = hex::decode(s.trim().trim_start_matches("0x"))
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    if v.len() > N {
        return Err(invalid(format!("{what}: {} bytes, at most {N}", v.len())));
    }
    let mut out = [0u8; N];
    out.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    Ok(out)
}

/// Load report bytes from a raw file or an evidence JSON.
fn load_report(path: &Path) -> std::result::Result<Vec<u8>, Fail> {
    let bytes = read(path)?;
    if bytes.trim_ascii_start().first() == Some(&b'{') {
        return Evidence::from_json(&bytes)
            .map(|e| e.report)
            .map_err(|e| invalid(e.to_string()));
    }
    Ok(bytes)
}

/// Run `charter attest ...`.
pub fn run(cmd: AttestCmd) -> Result<ExitCode> {
    match cmd {
        AttestCmd::Show {
            report,
            product,
            json,
        } => show(&report, product, json),
        AttestCmd::Verify(args) => {
            let json = args.json;
            match verify(&args) {
                Ok(out) => {
                    println!("{out}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(f) => {
                    if json {
                        let kind = match f.code {
                            EXIT_INVALID_INPUT => "invalid-input",
                            EXIT_VERIFICATION_FAILED => "verification-failed",
                            EXIT_EXPECTATION_FAILED => "expectation-failed",
                            _ => "error",
                        };
                        println!(
                            "{}",
                            serde_json::json!({ "verified": f.code == EXIT_EXPECTATION_FAILED, "result": kind, "error": f.message })
                        );
                    }
                    eprintln!("error: {}", f.message);
                    Ok(ExitCode::from(f.code))
                }
            }
        }
        AttestCmd::InsecureSimulate(args) => simulate(&args),
        AttestCmd::Measure(args) => match measure(&args) {
            Ok(out) => {
                println!("{out}");
                Ok(ExitCode::SUCCESS)
            }
            Err(f) => {
                eprintln!("error: {}", f.message);
                Ok(ExitCode::from(f.code))
            }
        },
    }
}

fn show(path: &Path, product: Option<Product>, json: bool) -> Result<ExitCode> {
    let bytes = match load_report(path) {
        Ok(b) => b,
        Err(f) => {
            eprintln!("error: {}", f.message);
            return Ok(ExitCode::from(f.code));
        }
    };
    let report = match Report::from_bytes(&bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(ExitCode::from(classify(&e)));
        }
    };
    let product = product.or_else(|| report.product_from_cpuid());
    let fields = report.fields(product);
    let mut value = serde_json::to_value(&fields).context("encoding report fields")?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("product".into(), serde_json::to_value(product)?);
        obj.insert(
            "signing_key".into(),
            serde_json::to_value(report.signing_key().ok())?,
        );
        obj.insert("verified".into(), false.into());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_fields(&value);
        println!("(not verified: use `charter attest verify`)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_fields(v: &serde_json::Value) {
    if let Some(obj) = v.as_object() {
        for (k, v) in obj {
            match v {
                serde_json::Value::Object(_) => {
                    println!("{k:<18} {}", serde_json::to_string(v).unwrap_or_default())
                }
                serde_json::Value::String(s) => println!("{k:<18} {s}"),
                other => println!("{k:<18} {other}"),
            }
        }
    }
}

fn verify(a: &VerifyArgs) -> std::result::Result<String, Fail> {
    let ev = if let Some(path) = &a.evidence {
        Evidence::from_json(&read(path)?)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?
    } else {
        let report_path = a
            .report
            .as_ref()
            .ok_or_else(|| invalid("--report or --evidence is required"))?;
        let mut ev = Evidence {
            report: load_report(report_path)?,
            ..Evidence::default()
        };
        if let Some(p) = a.vcek.as_ref().or(a.vlek.as_ref()) {
            let b = CertBundle::parse(&read(p)?)
                .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
            ev.vek = b.vek;
            ev.chain = b.chain;
        }
        if let Some(p) = &a.chain {
            let b = CertBundle::parse(&read(p)?)
                .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
            ev.chain.extend(b.chain);
            if ev.vek.is_none() {
                ev.vek = b.vek;
            }
        }
        ev
    };
    let mut verifier = Verifier::new().map_err(|e| Fail {
        code: 1,
        message: e.to_string(),
    })?;
    if let Some(p) = &a.insecure_simulated_root {
        let pem =
            String::from_utf8(read(p)?).map_err(|e| invalid(format!("{}: {e}", p.display())))?;
        let root = RootSet::insecure_simulated_pem(&pem)
            .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
        verifier = verifier.with_insecure_simulated_root(root);
    }
    let opts = VerifyOptions {
        product: a.product,
        allow_debug: a.allow_debug,
        vmpl: a.vmpl,
        min_tcb: a.min_tcb,
        insecure_allow_simulated: a.insecure_allow_simulated,
        at: a
            .at
            .map(|t| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)),
        ..VerifyOptions::default()
    };
    let vr = verifier.verify_evidence(&ev, &opts).map_err(|e| Fail {
        code: classify(&e),
        message: e.to_string(),
    })?;
    let claims = vr.claims();

    // Expectations.
    let mut expectations = serde_json::Map::new();
    let mut failed = Vec::new();
    let expected_host_data = match (&a.policy, &a.expect_host_data) {
        (Some(p), _) => Some(<[u8; 32]>::from(Sha256::digest(read(p)?))),
        (None, Some(h)) => Some(hex_exact::<32>("--expect-host-data", h)?),
        (None, None) => None,
    };
    if let Some(h) = expected_host_data {
        let ok = h == claims.report.host_data;
        expectations.insert("host_data".into(), ok.into());
        if !ok {
            failed.push(format!(
                "host_data is {} but {} was expected",
                hex::encode(claims.report.host_data),
                hex::encode(h)
            ));
        }
    }
    if !a.expect_measurement.is_empty() {
        let allowed = a
            .expect_measurement
            .iter()
            .map(|m| hex_exact::<48>("--expect-measurement", m))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ok = allowed.contains(&claims.report.measurement);
        expectations.insert("measurement".into(), ok.into());
        if !ok {
            failed.push(format!(
                "measurement {} is not among the expected values",
                hex::encode(claims.report.measurement)
            ));
        }
    }
    if let Some(rd) = &a.expect_report_data {
        let want = hex_padded::<64>("--expect-report-data", rd)?;
        let ok = want == claims.report.report_data;
        expectations.insert("report_data".into(), ok.into());
        if !ok {
            failed.push("report_data differs from the expected value".to_owned());
        }
    }
    if let Some(bound) = ev.runtime_data_bound(&claims.report.report_data) {
        expectations.insert("runtime_data".into(), bound.into());
        if !bound {
            failed.push("report_data does not bind the evidence's runtime_data".to_owned());
        }
    }
    if !failed.is_empty() {
        return Err(Fail {
            code: EXIT_EXPECTATION_FAILED,
            message: format!("expectation failed: {}", failed.join("; ")),
        });
    }
    if a.json {
        let out = serde_json::json!({ "verified": true, "result": "ok", "expectations": expectations, "claims": vr.claims_json() });
        return serde_json::to_string_pretty(&out).map_err(|e| Fail {
            code: 1,
            message: e.to_string(),
        });
    }
    let sim = if claims.platform == charter_attest::Platform::InsecureSimulatedSnp {
        " (INSECURE SIMULATED)"
    } else {
        ""
    };
    Ok(format!(
        "verified: {} report v{} signed by the {} of a {} chip{sim}\nhost_data    {}\nmeasurement  {}\nreported_tcb {}\nexpectations {}",
        serde_json::to_value(claims.platform).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        claims.report.version,
        claims.signing_key.name(),
        claims.product,
        hex::encode(claims.report.host_data),
        hex::encode(claims.report.measurement),
        claims.report.reported_tcb.decoded,
        if expectations.is_empty() { "none given".to_owned() } else { "all met".to_owned() },
    ))
}

fn parse_int(what: &str, s: &str) -> std::result::Result<u64, Fail> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|e| invalid(format!("{what}: {e}")))
}

fn measure(a: &MeasureArgs) -> std::result::Result<String, Fail> {
    use charter_attest::measure::{snp_launch_digest, vcpu_sig_for, LaunchInputs, VmmType};
    let vmm: VmmType = a
        .vmm_type
        .parse()
        .map_err(|e: Error| invalid(e.to_string()))?;
    let vcpu_sig = match (&a.vcpu_type, &a.vcpu_sig) {
        (Some(t), _) => {
            vcpu_sig_for(t).ok_or_else(|| invalid(format!("unknown --vcpu-type {t:?}")))?
        }
        (None, Some(s)) => u32::try_from(parse_int("--vcpu-sig", s)?)
            .map_err(|e| invalid(format!("--vcpu-sig: {e}")))?,
        (None, None) if vmm == VmmType::Qemu => {
            return Err(invalid("--vcpu-type or --vcpu-sig is required for qemu"))
        }
        (None, None) => 0,
    };
    let ovmf = read(&a.ovmf)?;
    let kernel = a.kernel.as_deref().map(read).transpose()?;
    let initrd = a.initrd.as_deref().map(read).transpose()?;
    let ovmf_hash = a
        .snp_ovmf_hash
        .as_deref()
        .map(|h| hex_exact::<48>("--snp-ovmf-hash", h))
        .transpose()?;
    let inputs = LaunchInputs {
        ovmf: &ovmf,
        ovmf_hash,
        kernel: kernel.as_deref(),
        initrd: initrd.as_deref(),
        append: a.append.as_deref(),
        vcpus: a.vcpus,
        vcpu_sig,
        guest_features: parse_int("--guest-features", &a.guest_features)?,
        vmm,
    };
    let m = snp_launch_digest(&inputs).map_err(|e| invalid(e.to_string()))?;
    if a.json {
        Ok(serde_json::json!({ "measurement": hex::encode(m), "vcpus": a.vcpus, "vcpu_sig": format!("{vcpu_sig:#x}"), "guest_features": format!("{:#x}", inputs.guest_features) }).to_string())
    } else {
        Ok(hex::encode(m))
    }
}

fn hx<T>(what: &str, r: std::result::Result<T, Fail>) -> Result<T> {
    r.map_err(|f| anyhow::anyhow!("{what}: {}", f.message))
}

fn simulate(a: &SimulateArgs) -> Result<ExitCode> {
    use charter_attest_insecure_sim::{InsecureSimulatedSp, LaunchParams};
    let sp = Arc::new(
        InsecureSimulatedSp::load_or_generate(&a.state)
            .with_context(|| format!("simulated AMD-SP state {}", a.state.display()))?,
    );
    let host_data = match (&a.policy, &a.host_data) {
        (Some(p), _) => <[u8; 32]>::from(Sha256::digest(
            std::fs::read(p).with_context(|| p.display().to_string())?,
        )),
        (None, Some(h)) => hx("host data", hex_exact::<32>("--host-data", h))?,
        (None, None) => [0; 32],
    };
    let measurement = match &a.measurement {
        Some(m) => hx("measurement", hex_exact::<48>("--measurement", m))?,
        None => [0; 48],
    };
    let report_data = match &a.report_data {
        Some(r) => hx("report data", hex_padded::<64>("--report-data", r))?,
        None => [0; 64],
    };
    let policy = u64::from_str_radix(a.guest_policy.trim_start_matches("0x"), 16)
        .context("--guest-policy: hex number expected")?;
    let launch = LaunchParams {
        host_data,
        measurement,
        policy,
        ..LaunchParams::default()
    };
    let ev = sp.evidence(&launch, &report_data)?;
    std::fs::write(&a.out, ev.to_json()).with_context(|| a.out.display().to_string())?;
    if let Some(r) = &a.root_out {
        std::fs::write(r, sp.root_pem()).with_context(|| r.display().to_string())?;
    }
    eprintln!("wrote INSECURE simulated evidence to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
