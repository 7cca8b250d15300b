//! `charter attest` end to end: the built binary against the hardware test vectors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn snp() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/snp"
    ))
}

fn charter(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_charter"));
    cmd.arg("attest").args(args);
    // Hardware vectors are checked at a fixed time inside every VCEK's validity (2026-01-01),
    // so the tests do not expire with the certificates.
    if args.first() == Some(&"verify")
        && !args.contains(&"--insecure-allow-simulated")
        && !args.contains(&"--evidence")
    {
        cmd.args(["--at", "1767225600"]);
    }
    cmd.output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn p(rel: &str) -> String {
    snp().join(rel).display().to_string()
}

#[test]
fn show_decodes_report() {
    let o = charter(&["show", &p("oak-turin-v5/report.bin"), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 5);
    assert_eq!(v["product"], "turin");
    assert_eq!(v["reported_tcb"]["fmc"], 0);
    assert_eq!(v["reported_tcb"]["microcode"], 71);
    assert_eq!(v["verified"], false);
    let o = charter(&["show", &p("virtee-milan-v2/report.bin")]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("measurement"));
    // Not a report: invalid input.
    let o = charter(&["show", &p("virtee-milan-v2/vcek.der")]);
    assert_eq!(code(&o), 2);
}

#[test]
fn verify_aci_with_policy_file() {
    let o = charter(&[
        "verify",
        "--report",
        &p("aci-milan-v2-policy/report.bin"),
        "--vcek",
        &p("aci-milan-v2-policy/thim_host_amd_certificate.json"),
        "--policy",
        &p("aci-milan-v2-policy/security_policy.rego"),
        "--expect-measurement",
        "5106810738e5b6a1ccd6c5e7f52cbbf1d5ca58f43e8a17a39ec8a12b8f07e1c46e0c7f0e3be7b6a5f7de1d05c5a5e5f3",
        "--json",
    ]);
    // The measurement above is deliberately wrong: expectation failure (4), verified though.
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "expectation-failed");

    let o = charter(&[
        "verify",
        "--report",
        &p("aci-milan-v2-policy/report.bin"),
        "--vcek",
        &p("aci-milan-v2-policy/vcek.pem"),
        "--chain",
        &p("aci-milan-v2-policy/vcek_ask_ark.pem"),
        "--policy",
        &p("aci-milan-v2-policy/security_policy.rego"),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["expectations"]["host_data"], true);
    assert_eq!(v["claims"]["platform"], "snp");
    assert!(v["claims"]["host_data"]
        .as_str()
        .unwrap()
        .starts_with("cadd74f7"));
    // Measurement taken from the verified claims is then an exact expectation.
    let m = v["claims"]["measurement"].as_str().unwrap().to_owned();
    let o = charter(&[
        "verify",
        "--report",
        &p("aci-milan-v2-policy/report.bin"),
        "--vcek",
        &p("aci-milan-v2-policy/vcek.pem"),
        "--expect-measurement",
        &m,
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // Another policy file: expectation failed.
    let o = charter(&[
        "verify",
        "--report",
        &p("aci-milan-v2-policy/report.bin"),
        "--vcek",
        &p("aci-milan-v2-policy/vcek.pem"),
        "--policy",
        &p("aci-milan-v2-policy/security_policy.rego.base64"),
    ]);
    assert_eq!(code(&o), 4);
    let o = charter(&[
        "verify",
        "--report",
        &p("aci-milan-v2-policy/report.bin"),
        "--vcek",
        &p("aci-milan-v2-policy/vcek.pem"),
        "--expect-host-data",
        &"00".repeat(32),
    ]);
    assert_eq!(code(&o), 4);
}

#[test]
fn verify_exit_codes() {
    // DEBUG policy: verification (appraisal) failure by default, accepted with --allow-debug.
    let args = [
        "verify",
        "--report",
        &p("go-sev-guest-milan-v2/report.bin"),
        "--vcek",
        &p("go-sev-guest-milan-v2/vcek.der"),
    ];
    assert_eq!(code(&charter(&args)), 3);
    let mut with = args.to_vec();
    with.push("--allow-debug");
    assert_eq!(code(&charter(&with)), 0);
    // Wrong VCEK: verification failure.
    let o = charter(&[
        "verify",
        "--report",
        &p("virtee-milan-v2/report.bin"),
        "--vcek",
        &p("trustee-milan-v2/vcek.der"),
    ]);
    assert_eq!(code(&o), 3);
    // Truncated report: invalid input.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.bin");
    std::fs::write(&short, [0u8; 100]).unwrap();
    let o = charter(&[
        "verify",
        "--report",
        short.to_str().unwrap(),
        "--vcek",
        &p("virtee-milan-v2/vcek.der"),
        "--json",
    ]);
    assert_eq!(code(&o), 2);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "invalid-input");
    // Garbage certificate: invalid input.
    let o = charter(&[
        "verify",
        "--report",
        &p("virtee-milan-v2/report.bin"),
        "--vcek",
        short.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    // Usage error (clap): 2.
    assert_eq!(code(&charter(&["verify"])), 2);
    // Turin v5 with the built-in chain.
    let o = charter(&[
        "verify",
        "--report",
        &p("oak-turin-v5/report.bin"),
        "--vcek",
        &p("oak-turin-v5/vcek.der"),
        "--min-tcb",
        "fmc=0,bl=1,tee=0,snp=2,ucode=71",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = charter(&[
        "verify",
        "--report",
        &p("oak-turin-v5/report.bin"),
        "--vcek",
        &p("oak-turin-v5/vcek.der"),
        "--min-tcb",
        "snp=3",
    ]);
    assert_eq!(code(&o), 3);
}

#[test]
fn insecure_simulated_evidence_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim");
    let ev = dir.path().join("ev.json");
    let root = dir.path().join("root.pem");
    let policy = snp().join("aci-milan-v2-policy/security_policy.rego");
    let o = Command::new(env!("CARGO_BIN_EXE_charter"))
        .args(["attest", "insecure-simulate", "--state"])
        .arg(&state)
        .arg("--policy")
        .arg(&policy)
        .args(["--report-data", "0102", "--out"])
        .arg(&ev)
        .arg("--root-out")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let (ev, root, policy) = (
        ev.to_str().unwrap(),
        root.to_str().unwrap(),
        policy.to_str().unwrap(),
    );
    let o = charter(&["verify", "--evidence", ev, "--policy", policy]);
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    let o = charter(&[
        "verify",
        "--evidence",
        ev,
        "--insecure-allow-simulated",
        "--insecure-simulated-root",
        root,
        "--policy",
        policy,
        "--expect-report-data",
        "0102",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["claims"]["platform"], "insecure-simulated-snp");
    let o = charter(&[
        "verify",
        "--evidence",
        ev,
        "--insecure-allow-simulated",
        "--insecure-simulated-root",
        root,
        "--expect-report-data",
        "0103",
    ]);
    assert_eq!(code(&o), 4);
}

#[test]
fn measure_matches_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("empty");
    std::fs::write(&kernel, b"").unwrap();
    let o = charter(&[
        "measure",
        "--ovmf",
        &p("measurement/ovmf_AmdSev_suffix.bin"),
        "--kernel",
        kernel.to_str().unwrap(),
        "--append",
        "console=ttyS0 loglevel=7",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(snp().join("measurement/snp_measure_cases.json")).unwrap(),
    )
    .unwrap();
    let want = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "snp_default")
        .unwrap()["expected_measurement"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want);
    let o = charter(&[
        "measure",
        "--ovmf",
        &p("measurement/ovmf_AmdSev_suffix.bin"),
        "--vcpus",
        "1",
    ]);
    assert_eq!(code(&o), 2);
}

#[test]
fn expired_certificates_fail_verification() {
    // 2030-06-01: after the ACI VCEK's notAfter (2029-11-29).
    let o = Command::new(env!("CARGO_BIN_EXE_charter"))
        .args([
            "attest",
            "verify",
            "--report",
            &p("aci-milan-v2-policy/report.bin"),
        ])
        .args([
            "--vcek",
            &p("aci-milan-v2-policy/vcek.pem"),
            "--at",
            "1906934400",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not valid"));
}
