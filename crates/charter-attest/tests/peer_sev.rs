//! Cross-check with an independent implementation: virtee's `sev` crate 8 (RustCrypto
//! backend) accepts the same VCEK-signed vectors we accept (signature + chain), and agrees
//! on the decoded fields that both expose.

mod common;

use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

#[test]
fn sev_crate_agrees_on_vcek_sets() {
    let v = charter_attest::Verifier::new().unwrap();
    for name in common::SETS.iter().filter(|n| !n.contains("vlek")) {
        let set = common::load(name);
        let dir = common::testdata().join(name);
        let ca = ca::Chain::from_pem(
            &std::fs::read(dir.join("ark.pem")).unwrap(),
            &std::fs::read(dir.join("ask.pem")).unwrap(),
        )
        .unwrap();
        let chain = Chain {
            ca,
            vek: Certificate::from_der(&set.vek).unwrap(),
        };
        let report = AttestationReport::from_bytes(&set.report).unwrap();
        (&chain, &report)
            .verify()
            .unwrap_or_else(|e| panic!("sev rejects {name}: {e}"));
        let opts = charter_attest::VerifyOptions {
            allow_debug: true,
            at: Some(common::valid_time(&set)),
            ..Default::default()
        };
        let ours = v.verify(&set.report, &set.vek, &[], &opts).unwrap();
        let c = &ours.claims().report;
        assert_eq!(
            report.measurement.as_slice(),
            c.measurement.as_slice(),
            "{name}"
        );
        assert_eq!(
            report.host_data.as_slice(),
            c.host_data.as_slice(),
            "{name}"
        );
        assert_eq!(
            report.report_data.as_slice(),
            c.report_data.as_slice(),
            "{name}"
        );
        assert_eq!(report.vmpl, c.vmpl, "{name}");
        assert_eq!(report.chip_id.as_slice(), c.chip_id.as_slice(), "{name}");
        // Both reject the same tampered report.
        let mut bad = set.report.clone();
        bad[0x90] ^= 1;
        let bad_parsed = AttestationReport::from_bytes(&bad).unwrap();
        assert!((&chain, &bad_parsed).verify().is_err(), "{name}");
        assert!(v.verify(&bad, &set.vek, &[], &opts).is_err(), "{name}");
    }
}
