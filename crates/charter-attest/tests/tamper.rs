//! Exhaustive single-bit flips: signed area, r, s, and certificate TBS bodies; random bytes
//! never panic.

mod common;

use charter_attest::{Error, Report, Verifier, VerifyOptions};
use common::load;
use proptest::prelude::*;

fn opts(set: &common::Set) -> VerifyOptions {
    VerifyOptions {
        at: Some(common::valid_time(set)),
        allow_debug: true,
        ..Default::default()
    }
}

/// Every bit of 0x000..0x2A0 and of r and s (0x2A0..0x330) flipped, one at a time.
fn flip_report_bits(name: &'static str) {
    let set = load(name);
    let v = Verifier::new().unwrap();
    let o = opts(&set);
    v.verify(&set.report, &set.vek, &[], &o).unwrap();
    let mut buf = set.report.clone();
    let mut sig_failures = 0usize;
    for byte in 0..0x330 {
        for bit in 0..8 {
            buf[byte] ^= 1 << bit;
            match v.verify(&buf, &set.vek, &[], &o) {
                Ok(_) => panic!("{name}: flip of byte {byte:#x} bit {bit} accepted"),
                Err(Error::ReportSignature(_)) => sig_failures += 1,
                Err(_) => {}
            }
            buf[byte] ^= 1 << bit;
        }
    }
    // Most flips must be caught by the signature itself, not only by structural checks.
    assert!(
        sig_failures > 4000,
        "{name}: only {sig_failures} signature failures"
    );
}

#[test]
fn report_bit_flips_milan_v2() {
    flip_report_bits("virtee-milan-v2");
}

#[test]
fn report_bit_flips_turin_v5() {
    flip_report_bits("oak-turin-v5");
}

#[test]
fn report_bit_flips_vlek_v3() {
    flip_report_bits("trustee-aws-milan-vlek-v3");
}

/// Flip every bit of the TBS part of each certificate in the supplied chain.
fn flip_cert_bits(name: &'static str) {
    let set = load(name);
    let v = Verifier::new().unwrap();
    let o = opts(&set);
    let mut certs = vec![set.vek.clone()];
    certs.extend(set.chain.iter().cloned());
    for idx in 0..certs.len() {
        let der = &certs[idx];
        // TBS: the first element inside the outer SEQUENCE (both long-form lengths here).
        assert_eq!(der[0], 0x30);
        let outer_hdr = 2 + usize::from(der[1] & 0x7f);
        assert_eq!(der[outer_hdr], 0x30);
        let l = usize::from(der[outer_hdr + 1] & 0x7f);
        let len = der[outer_hdr + 2..outer_hdr + 2 + l]
            .iter()
            .fold(0usize, |a, &b| a << 8 | usize::from(b));
        let tbs = outer_hdr..outer_hdr + 2 + l + len;
        let mut work = certs.clone();
        for byte in tbs {
            for bit in 0..8 {
                work[idx][byte] ^= 1 << bit;
                let res = v.verify(&set.report, &work[0], &work[1..], &o);
                assert!(
                    res.is_err(),
                    "{name}: cert {idx} byte {byte} bit {bit} accepted"
                );
                work[idx][byte] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn cert_tbs_bit_flips_milan_vcek_chain() {
    flip_cert_bits("virtee-milan-v2");
}

#[test]
fn cert_tbs_bit_flips_vlek_chain() {
    flip_cert_bits("trustee-aws-milan-vlek-v3");
}

#[test]
fn cert_tbs_bit_flips_turin_vcek() {
    let set = load("oak-turin-v5");
    let v = Verifier::new().unwrap();
    let o = opts(&set);
    let mut vek = set.vek.clone();
    let start = 4; // outer header 30 82 xx xx
    let len = usize::from(vek[start + 2]) << 8 | usize::from(vek[start + 3]);
    for byte in start..start + 4 + len {
        for bit in 0..8 {
            vek[byte] ^= 1 << bit;
            assert!(
                v.verify(&set.report, &vek, &[], &o).is_err(),
                "byte {byte} bit {bit}"
            );
            vek[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn structural_rejections() {
    let set = load("virtee-milan-v2");
    assert!(matches!(
        Report::from_bytes(&set.report[..100]),
        Err(Error::ReportLength(100))
    ));
    let mut long = set.report.clone();
    long.push(0);
    assert!(matches!(
        Report::from_bytes(&long),
        Err(Error::ReportLength(1185))
    ));
    for version in [0u32, 1, 6, 0xffff_ffff] {
        let mut r = set.report.clone();
        r[..4].copy_from_slice(&version.to_le_bytes());
        assert!(
            matches!(Report::from_bytes(&r), Err(Error::UnsupportedVersion(v)) if v == version)
        );
    }
    let mut r = set.report.clone();
    r[0x4c] = 1;
    assert!(matches!(
        Report::from_bytes(&r),
        Err(Error::ReservedNotZero { offset: 0x4c, .. })
    ));
    let mut r = set.report.clone();
    r[0x2a0 + 50] = 1;
    assert!(matches!(
        Report::from_bytes(&r),
        Err(Error::SignatureEncoding("r"))
    ));
    let mut r = set.report.clone();
    r[0x400] = 1;
    assert!(matches!(
        Report::from_bytes(&r),
        Err(Error::ReservedNotZero { .. })
    ));
    // v2 reserved CPUID bytes must be zero.
    let mut r = set.report.clone();
    r[0x188] = 0x19;
    assert!(matches!(
        Report::from_bytes(&r),
        Err(Error::ReservedNotZero { offset: 0x188, .. })
    ));
    // MASK_CHIP_KEY: unsigned.
    let v = Verifier::new().unwrap();
    let mut r = set.report.clone();
    r[0x48] |= 2;
    assert!(matches!(
        v.verify(&r, &set.vek, &[], &opts(&set)),
        Err(Error::Unsigned(_))
    ));
    let mut r = set.report.clone();
    r[0x48] |= 7 << 2;
    assert!(matches!(
        v.verify(&r, &set.vek, &[], &opts(&set)),
        Err(Error::Unsigned(_))
    ));
    let mut r = set.report.clone();
    r[0x34] = 2;
    assert!(matches!(
        v.verify(&r, &set.vek, &[], &opts(&set)),
        Err(Error::SignatureAlgorithm(2))
    ));
    // A VLEK-signed report with a VCEK: wrong key kind.
    let vlek = load("trustee-aws-milan-vlek-v3");
    let err = v
        .verify(&vlek.report, &set.vek, &[], &opts(&vlek))
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongSigningKey { .. } | Error::Product(_)),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_reports_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = Report::from_bytes(&bytes);
    }

    #[test]
    fn mutated_reports_never_panic(idx in proptest::collection::vec((0usize..0x4a0, any::<u8>()), 1..16)) {
        let set = load("oak-genoa-v5");
        let mut r = set.report.clone();
        for (i, b) in idx { r[i] = b; }
        if let Ok(rep) = Report::from_bytes(&r) {
            let _ = rep.fields(None);
        }
        let v = Verifier::new().unwrap();
        let _ = v.verify(&r, &set.vek, &[], &VerifyOptions::default());
    }

    #[test]
    fn random_certs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = charter_attest::cert::Cert::from_der("vcek", &bytes);
        let _ = charter_attest::CertBundle::parse(&bytes);
        let _ = charter_attest::evidence::parse_cert_table(&bytes);
        let _ = charter_attest::Evidence::from_json(&bytes);
    }

    #[test]
    fn mutated_certs_never_panic(idx in proptest::collection::vec((0usize..1300, any::<u8>()), 1..8)) {
        let set = load("oak-milan-v3");
        let mut c = set.vek.clone();
        for (i, b) in idx { if i < c.len() { c[i] = b; } }
        if let Ok(cert) = charter_attest::cert::Cert::from_der("vcek", &c) {
            let _ = charter_attest::cert::VekExtensions::from_cert(&cert);
        }
    }
}
