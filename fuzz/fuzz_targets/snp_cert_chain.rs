//! Fuzz certificate handling: X.509 decoding, VCEK/VLEK extensions, PEM/THIM bundles, GHCB
//! certificate tables, and chain verification with an attacker-chosen VEK and intermediates.
#![no_main]

use std::sync::OnceLock;

use charter_attest::cert::{Cert, VekExtensions};
use charter_attest::evidence::parse_cert_table;
use charter_attest::{CertBundle, Verifier, VerifyOptions};
use libfuzzer_sys::fuzz_target;

const REPORT: &[u8] = include_bytes!("../../../shared/testdata/snp/oak-milan-v3/report.bin");

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::new().expect("built-in roots"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Cert::from_der("vcek", data) {
        let _ = VekExtensions::from_cert(&cert);
    }
    let _ = CertBundle::parse(data);
    if let Ok(table) = parse_cert_table(data) {
        if let Some(vek) = table.vek {
            let _ = verifier().verify(REPORT, &vek, &table.chain, &VerifyOptions::default());
        }
    }
    // Split the input into a VEK and one intermediate.
    let mid = data
        .first()
        .map_or(0, |&b| usize::from(b) * data.len() / 256);
    let (vek, rest) = data.split_at(mid.min(data.len()));
    let _ = verifier().verify(REPORT, vek, &[rest.to_vec()], &VerifyOptions::default());
});
