//! Fuzz the SEV-SNP report codec and the verifier's report path: arbitrary bytes must give
//! `Ok` or a typed error, never a panic.
#![no_main]

use std::sync::OnceLock;

use charter_attest::{Report, Verifier, VerifyOptions};
use libfuzzer_sys::fuzz_target;

// A real VCEK (oak-milan-v3), so mutated reports reach the signature and appraisal code.
const VCEK: &[u8] = include_bytes!("../../../shared/testdata/snp/oak-milan-v3/vcek.der");

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::new().expect("built-in roots"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = Report::from_bytes(data) {
        let _ = report.fields(None);
        let _ = report.fields(report.product_from_cpuid());
        let _ = report.signing_key();
        let _ = report.signature_fixed_be();
    }
    let _ = verifier().verify(data, VCEK, &[], &VerifyOptions::default());
    let _ = charter_attest::Evidence::from_json(data);
});
