//! The 10 hardware report sets verify, and every decoded field equals `expected.json`
//! (written independently with python `cryptography`, see PROVENANCE.md).

mod common;

use charter_attest::cert::{Cert, VekExtensions};
use charter_attest::{Error, Platform, Product, Report, SigningKey, Verifier, VerifyOptions};
use common::{load, SETS};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};

fn hexv(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

fn opts_for(name: &'static str) -> VerifyOptions {
    let set = load(name);
    VerifyOptions {
        allow_debug: name == "go-sev-guest-milan-v2",
        at: Some(common::valid_time(&set)),
        ..VerifyOptions::default()
    }
}

#[test]
fn all_sets_verify_and_match_expected() {
    let verifier = Verifier::new().unwrap();
    for name in SETS {
        let set = load(name);
        let exp = &set.expected;
        let vr = verifier
            .verify(&set.report, &set.vek, &set.chain, &opts_for(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Also with the built-in intermediates only.
        verifier
            .verify(&set.report, &set.vek, &[], &opts_for(name))
            .unwrap_or_else(|e| panic!("{name} (built-in chain): {e}"));
        let c = vr.claims();
        assert_eq!(c.platform, Platform::Snp, "{name}");
        assert_eq!(c.product.name(), exp["product"].as_str().unwrap(), "{name}");
        let kind = if exp["signing_key"] == "VLEK" {
            SigningKey::Vlek
        } else {
            SigningKey::Vcek
        };
        assert_eq!(c.signing_key, kind, "{name}");
        let r = &c.report;
        assert_eq!(
            u64::from(r.version),
            exp["version"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(r.guest_svn),
            exp["guest_svn"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            format!("{:#x}", r.policy.raw),
            hexv(&exp["policy"]),
            "{name}"
        );
        assert_eq!(u64::from(r.vmpl), exp["vmpl"].as_u64().unwrap(), "{name}");
        assert_eq!(
            format!("{:#x}", r.platform_info),
            hexv(&exp["platform_info"]),
            "{name}"
        );
        assert_eq!(
            format!("{:#x}", r.key_info),
            hexv(&exp["key_info"]["raw"]),
            "{name}"
        );
        for (field, bytes) in [
            ("family_id", &r.family_id[..]),
            ("image_id", &r.image_id[..]),
            ("report_data", &r.report_data[..]),
            ("measurement", &r.measurement[..]),
            ("host_data", &r.host_data[..]),
            ("id_key_digest", &r.id_key_digest[..]),
            ("author_key_digest", &r.author_key_digest[..]),
            ("report_id", &r.report_id[..]),
            ("report_id_ma", &r.report_id_ma[..]),
            ("chip_id", &r.chip_id[..]),
        ] {
            assert_eq!(hex::encode(bytes), hexv(&exp[field]), "{name}: {field}");
        }
        for (field, tcb) in [
            ("current_tcb", &r.current_tcb),
            ("reported_tcb", &r.reported_tcb),
            ("committed_tcb", &r.committed_tcb),
            ("launch_tcb", &r.launch_tcb),
        ] {
            let e = &exp[field];
            assert_eq!(
                format!("{:#018x}", tcb.raw),
                hexv(&e["raw"]),
                "{name}: {field}"
            );
            let d = tcb.decoded;
            assert_eq!(
                u64::from(d.bootloader),
                e["bootloader"].as_u64().unwrap(),
                "{name}: {field}"
            );
            assert_eq!(
                u64::from(d.tee),
                e["tee"].as_u64().unwrap(),
                "{name}: {field}"
            );
            assert_eq!(
                u64::from(d.snp),
                e["snp"].as_u64().unwrap(),
                "{name}: {field}"
            );
            assert_eq!(
                u64::from(d.microcode),
                e["microcode"].as_u64().unwrap(),
                "{name}: {field}"
            );
            assert_eq!(
                d.fmc.map(u64::from),
                e.get("fmc").and_then(Value::as_u64),
                "{name}: {field}"
            );
        }
        assert_eq!(
            r.current_version.to_string(),
            hexv(&exp["current_version"]),
            "{name}"
        );
        assert_eq!(
            r.committed_version.to_string(),
            hexv(&exp["committed_version"]),
            "{name}"
        );
        assert_eq!(
            r.cpuid_fam_id.map(u64::from),
            exp.get("cpuid_fam_id").and_then(Value::as_u64),
            "{name}"
        );
        assert_eq!(
            r.cpuid_mod_id.map(u64::from),
            exp.get("cpuid_mod_id").and_then(Value::as_u64),
            "{name}"
        );
        assert_eq!(
            r.cpuid_step.map(u64::from),
            exp.get("cpuid_step").and_then(Value::as_u64),
            "{name}"
        );
        if let Some(v) = exp.get("launch_mit_vector") {
            assert_eq!(
                format!("{:#x}", r.launch_mit_vector.unwrap()),
                hexv(v),
                "{name}"
            );
            assert_eq!(
                format!("{:#x}", r.current_mit_vector.unwrap()),
                hexv(&exp["current_mit_vector"]),
                "{name}"
            );
        } else {
            assert!(r.launch_mit_vector.is_none(), "{name}");
        }
        let report = vr.report();
        assert_eq!(
            hex::encode(report.raw().signature_r),
            hexv(&exp["signature_r_le"]),
            "{name}"
        );
        assert_eq!(
            hex::encode(report.raw().signature_s),
            hexv(&exp["signature_s_le"]),
            "{name}"
        );
        assert_eq!(
            hex::encode(Sha384::digest(report.signed_bytes())),
            hexv(&exp["sha384_of_signed_bytes_0x0_0x2a0"]),
            "{name}"
        );
        // VEK extensions.
        let cert = Cert::from_der("vek", &set.vek).unwrap();
        let ext = VekExtensions::from_cert(&cert).unwrap();
        let ee = exp["vek_extensions"].as_object().unwrap();
        let get = |o: &str| {
            ee.get(&format!("1.3.6.1.4.1.3704.1.{o}"))
                .and_then(Value::as_u64)
        };
        assert_eq!(Some(ext.bl_spl), get("3.1"), "{name}");
        assert_eq!(Some(ext.tee_spl), get("3.2"), "{name}");
        assert_eq!(Some(ext.snp_spl), get("3.3"), "{name}");
        assert_eq!(Some(ext.ucode_spl), get("3.8"), "{name}");
        assert_eq!(ext.fmc_spl, get("3.9"), "{name}");
        assert_eq!(ext.struct_version, get("1"), "{name}");
        assert_eq!(
            ext.product_name.as_deref(),
            ee.get("1.3.6.1.4.1.3704.1.2").and_then(Value::as_str),
            "{name}"
        );
        assert_eq!(
            ext.hw_id.as_ref().map(hex::encode).as_deref(),
            ee.get("1.3.6.1.4.1.3704.1.4").and_then(Value::as_str),
            "{name}"
        );
        assert_eq!(
            ext.csp_id.as_deref(),
            ee.get("1.3.6.1.4.1.3704.1.5").and_then(Value::as_str),
            "{name}"
        );
        assert_eq!(cert.subject_cn(), hexv(&exp["vek_subject_cn"]), "{name}");
        assert_eq!(cert.issuer_cn(), hexv(&exp["vek_issuer_cn"]), "{name}");
        // JSON claims carry the platform name.
        let j = vr.claims_json();
        assert_eq!(j["platform"], "snp");
        assert_eq!(j["host_data"], exp["host_data"]);
    }
}

#[test]
fn debug_policy_fails_by_default() {
    let set = load("go-sev-guest-milan-v2");
    let v = Verifier::new().unwrap();
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &set.chain,
            &VerifyOptions {
                at: Some(common::valid_time(&set)),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Policy(ref m) if m.contains("debug")),
        "{err}"
    );
}

#[test]
fn aci_host_data_is_sha256_of_policy() {
    let set = load("aci-milan-v2-policy");
    let policy =
        std::fs::read(common::testdata().join("aci-milan-v2-policy/security_policy.rego")).unwrap();
    let vr = Verifier::new()
        .unwrap()
        .verify(
            &set.report,
            &set.vek,
            &set.chain,
            &VerifyOptions {
                at: Some(common::valid_time(&set)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        vr.claims().report.host_data,
        <[u8; 32]>::from(Sha256::digest(&policy))
    );
}

#[test]
fn other_products_roots_are_rejected() {
    let v = Verifier::new().unwrap();
    for name in SETS {
        let set = load(name);
        let actual = Product::from_name(set.expected["product"].as_str().unwrap()).unwrap();
        for wrong in Product::ALL.into_iter().filter(|p| *p != actual) {
            let opts = VerifyOptions {
                product: Some(wrong),
                ..opts_for(name)
            };
            assert!(
                v.verify(&set.report, &set.vek, &[], &opts).is_err(),
                "{name} accepted as {wrong}"
            );
            // The wrong product's ASK + ARK supplied as the chain: rejected as well.
            let roots = v.amd_roots(wrong).unwrap();
            let chain = vec![roots.ask().der().to_vec(), roots.ark().der().to_vec()];
            assert!(
                v.verify(&set.report, &set.vek, &chain, &opts_for(name))
                    .is_err(),
                "{name} with {wrong} chain"
            );
        }
    }
    // A Genoa VCEK under the Milan ASK: signature check fails with a typed error.
    let genoa = load("oak-genoa-v5");
    let milan = v.amd_roots(Product::Milan).unwrap();
    let cert = Cert::from_der("vcek", &genoa.vek).unwrap();
    assert_ne!(cert.issuer_cn(), milan.ask().subject_cn());
}

#[test]
fn swapped_vceks_are_rejected() {
    let v = Verifier::new().unwrap();
    let a = load("virtee-milan-v2");
    let b = load("oak-milan-v3");
    let err = v
        .verify(
            &a.report,
            &b.vek,
            &[],
            &VerifyOptions {
                at: Some(common::valid_time(&b)),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::ReportSignature(_)), "{err}");
}

#[test]
fn malformed_vceks_give_typed_errors() {
    let v = Verifier::new().unwrap();
    let set = load("trustee-milan-v2");
    let opts = VerifyOptions {
        at: Some(common::valid_time(&set)),
        ..Default::default()
    };
    for f in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        let der = std::fs::read(common::testdata().join("trustee-milan-v2").join(f)).unwrap();
        let cert = Cert::from_der("vcek", &der).unwrap();
        let ext = VekExtensions::from_cert(&cert).unwrap();
        // Both encodings of hwID decode to the 64-byte id.
        assert_eq!(ext.hw_id.as_ref().map(Vec::len), Some(64), "{f}");
        let err = v.verify(&set.report, &der, &set.chain, &opts).unwrap_err();
        assert!(
            matches!(err, Error::CertSignature { which: "vcek", .. }),
            "{f}: {err}"
        );
    }
}

#[test]
fn tcb_minimum_and_vmpl_and_policy_bits() {
    let v = Verifier::new().unwrap();
    let set = load("virtee-milan-v2"); // reported bl3 tee0 snp8 ucode115
    let ok = charter_attest::TcbVersion {
        fmc: None,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    };
    let t = Some(common::valid_time(&set));
    let opts = VerifyOptions {
        min_tcb: Some(ok),
        vmpl: Some(0),
        policy_required: 1 << 16,
        at: t,
        ..Default::default()
    };
    v.verify(&set.report, &set.vek, &[], &opts).unwrap();
    let high = charter_attest::TcbVersion { snp: 9, ..ok };
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                min_tcb: Some(high),
                at: t,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::TcbTooLow { .. }), "{err}");
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                vmpl: Some(1),
                at: t,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Policy(_)), "{err}");
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                policy_forbidden: 1 << 16,
                at: t,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Policy(_)), "{err}");
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                signing_key: Some(SigningKey::Vlek),
                at: t,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Policy(_)), "{err}");
    // Certificate validity: before the VCEK was issued.
    let early = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let err = v
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                at: Some(early),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::CertValidity { .. }), "{err}");
}

#[test]
fn v2_without_product_source_uses_certificate() {
    // v2 reports have no CPUID; the product comes from the VCEK productName.
    let set = load("trustee-milan-v2");
    let r = Report::from_bytes(&set.report).unwrap();
    assert!(r.product_from_cpuid().is_none());
    let vr = Verifier::new()
        .unwrap()
        .verify(
            &set.report,
            &set.vek,
            &[],
            &VerifyOptions {
                at: Some(common::valid_time(&set)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(vr.claims().product, Product::Milan);
}

#[test]
fn expired_vlek_is_rejected() {
    // VLEKs are valid for one year; this one expired 2025-12-10.
    let set = load("trustee-aws-milan-vlek-v3");
    let (_, not_after) = Cert::from_der("vlek", &set.vek).unwrap().validity();
    let later = not_after + std::time::Duration::from_secs(1);
    let err = Verifier::new()
        .unwrap()
        .verify(
            &set.report,
            &set.vek,
            &set.chain,
            &VerifyOptions {
                at: Some(later),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::CertValidity { .. }), "{err}");
}
