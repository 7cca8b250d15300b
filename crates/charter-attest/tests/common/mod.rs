//! Shared helpers: load the report sets from ../shared/testdata/snp.
#![allow(dead_code)]

use std::path::PathBuf;

use charter_attest::cert::pem_certs;

pub fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/snp"
    ))
}

pub const SETS: [&str; 10] = [
    "aci-milan-v2-policy",
    "azure-cvm-genoa-v3",
    "azure-cvm-milan-v3",
    "go-sev-guest-milan-v2",
    "oak-genoa-v5",
    "oak-milan-v3",
    "oak-turin-v5",
    "trustee-aws-milan-vlek-v3",
    "trustee-milan-v2",
    "virtee-milan-v2",
];

pub struct Set {
    pub name: &'static str,
    pub report: Vec<u8>,
    pub vek: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub expected: serde_json::Value,
}

pub fn der_or_pem(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(b"-----BEGIN") {
        pem_certs(std::str::from_utf8(bytes).unwrap())
            .unwrap()
            .remove(0)
    } else {
        bytes.to_vec()
    }
}

pub fn load(name: &'static str) -> Set {
    let dir = testdata().join(name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
    let vek = ["vcek.der", "vcek.pem", "vlek.der"]
        .iter()
        .find(|f| dir.join(f).exists())
        .map(|f| der_or_pem(&read(f)))
        .unwrap();
    let mut chain = Vec::new();
    for f in ["ask.pem", "asvk.pem", "ark.pem"] {
        if dir.join(f).exists() {
            chain.push(der_or_pem(&read(f)));
        }
    }
    Set {
        name,
        report: read("report.bin"),
        vek,
        chain,
        expected: serde_json::from_slice(&read("expected.json")).unwrap(),
    }
}

/// A time inside the VEK's validity (one day after notBefore): tests must not depend on the
/// wall clock (the trustee VLEK expired in 2025).
pub fn valid_time(set: &Set) -> std::time::SystemTime {
    let cert = charter_attest::cert::Cert::from_der("vek", &set.vek).unwrap();
    cert.validity().0 + std::time::Duration::from_secs(86_400)
}
