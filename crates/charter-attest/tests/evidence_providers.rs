//! Evidence formats (JSON bundle, Azure THIM JSON, GHCB certificate table) and the
//! configfs-tsm provider against a directory that mimics configfs.

mod common;

use charter_attest::evidence::{build_cert_table, guid, parse_cert_table};
use charter_attest::provider::configfs::ConfigfsTsm;
use charter_attest::{CertBundle, Error, Evidence, TeeProvider, Verifier, VerifyOptions};
use common::{load, testdata, valid_time};

#[test]
fn thim_json_certificates_verify_aci_report() {
    let set = load("aci-milan-v2-policy");
    let thim = std::fs::read(testdata().join("aci-milan-v2-policy/thim_host_amd_certificate.json"))
        .unwrap();
    let b = CertBundle::parse(&thim).unwrap();
    assert_eq!(b.tcbm, Some(0x7308000000000003));
    assert_eq!(b.vek.as_deref(), Some(&set.vek[..]));
    assert_eq!(b.chain.len(), 2);
    let opts = VerifyOptions {
        at: Some(valid_time(&set)),
        ..Default::default()
    };
    let vr = Verifier::new()
        .unwrap()
        .verify(&set.report, b.vek.as_deref().unwrap(), &b.chain, &opts)
        .unwrap();
    assert_eq!(vr.claims().report.reported_tcb.raw, b.tcbm.unwrap());
    // PEM bundle (VCEK + ASK + ARK) and DER parse the same way.
    let pem = std::fs::read(testdata().join("aci-milan-v2-policy/vcek_ask_ark.pem")).unwrap();
    let p = CertBundle::parse(&pem).unwrap();
    assert_eq!(p.vek, b.vek);
    assert_eq!(
        CertBundle::parse(&set.vek).unwrap().vek.as_deref(),
        Some(&set.vek[..])
    );
    // THIM fields inside an evidence JSON.
    let j = serde_json::json!({
        "report": base64_encode(&set.report),
        "vcekCert": serde_json::from_slice::<serde_json::Value>(&thim).unwrap()["vcekCert"],
        "certificateChain": serde_json::from_slice::<serde_json::Value>(&thim).unwrap()["certificateChain"],
    });
    let ev = Evidence::from_json(j.to_string().as_bytes()).unwrap();
    Verifier::new()
        .unwrap()
        .verify_evidence(&ev, &opts)
        .unwrap();
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn evidence_json_round_trip_and_errors() {
    let set = load("oak-turin-v5");
    let ev = Evidence {
        report: set.report.clone(),
        vek: Some(set.vek.clone()),
        chain: set.chain.clone(),
        runtime_data: Some(b"{\"nonce\":1}".to_vec()),
    };
    let back = Evidence::from_json(ev.to_json().as_bytes()).unwrap();
    assert_eq!(back, ev);
    let opts = VerifyOptions {
        at: Some(valid_time(&set)),
        ..Default::default()
    };
    Verifier::new()
        .unwrap()
        .verify_evidence(&back, &opts)
        .unwrap();
    assert!(matches!(
        Evidence::from_json(b"{}"),
        Err(Error::Evidence(_))
    ));
    assert!(matches!(
        Evidence::from_json(br#"{"format":"x","report":""}"#),
        Err(Error::Evidence(_))
    ));
    assert!(matches!(
        Evidence::from_json(br#"{"report":"!!"}"#),
        Err(Error::Evidence(_))
    ));
    let no_vek = Evidence { vek: None, ..ev };
    assert!(matches!(
        Verifier::new().unwrap().verify_evidence(&no_vek, &opts),
        Err(Error::MissingCert(_))
    ));
}

#[test]
fn cert_table_round_trip_and_bounds() {
    let set = load("virtee-milan-v2");
    let table = build_cert_table(&[
        (guid::VCEK, &set.vek),
        (guid::ASK, &set.chain[0]),
        (guid::ARK, &set.chain[1]),
    ]);
    let b = parse_cert_table(&table).unwrap();
    assert_eq!(b.vek.as_deref(), Some(&set.vek[..]));
    assert_eq!(b.chain, vec![set.chain[0].clone(), set.chain[1].clone()]);
    // Truncated table / entry pointing outside: typed errors.
    assert!(matches!(
        parse_cert_table(&table[..30]),
        Err(Error::Evidence(_))
    ));
    let mut bad = table.clone();
    bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(parse_cert_table(&bad), Err(Error::Evidence(_))));
    // Big-endian GUID order is accepted too.
    let mut be = table.clone();
    let g: Vec<u8> = hex::decode(guid::VCEK.replace('-', "")).unwrap();
    be[..16].copy_from_slice(&g);
    assert_eq!(
        parse_cert_table(&be).unwrap().vek.as_deref(),
        Some(&set.vek[..])
    );
}

fn fake_configfs(entry: &std::path::Path, report: &[u8], aux: Option<&[u8]>, generation: &str) {
    std::fs::create_dir_all(entry).unwrap();
    std::fs::write(entry.join("provider"), "sev_guest\n").unwrap();
    std::fs::write(entry.join("outblob"), report).unwrap();
    std::fs::write(entry.join("generation"), generation).unwrap();
    if let Some(a) = aux {
        std::fs::write(entry.join("auxblob"), a).unwrap();
    }
}

#[test]
fn configfs_tsm_against_fake_directory() {
    let set = load("virtee-milan-v2");
    let root = tempfile::tempdir().unwrap();
    let entry = root.path().join("charter-test");
    let table = build_cert_table(&[(guid::VCEK, &set.vek)]);
    fake_configfs(&entry, &set.report, Some(&table), "1\n");
    let p = ConfigfsTsm::new(root.path())
        .with_entry("charter-test")
        .with_privlevel(0);
    assert_eq!(p.name(), "configfs-tsm");
    let ev = p.report([0xab; 64]).unwrap();
    assert_eq!(ev.report, set.report);
    assert_eq!(ev.vek.as_deref(), Some(&set.vek[..]));
    assert_eq!(std::fs::read(entry.join("inblob")).unwrap(), vec![0xab; 64]);
    assert_eq!(
        std::fs::read_to_string(entry.join("privlevel")).unwrap(),
        "0"
    );
    let opts = VerifyOptions {
        at: Some(valid_time(&set)),
        ..Default::default()
    };
    Verifier::new()
        .unwrap()
        .verify_evidence(&ev, &opts)
        .unwrap();

    // Wrong provider.
    std::fs::write(entry.join("provider"), "tdx_guest\n").unwrap();
    assert!(matches!(p.report([0; 64]), Err(Error::Provider { .. })));
    // A fresh entry (mkdir) in an empty root: the fake has no outblob -> typed I/O error.
    // (The provider then rmdirs the entry, which configfs allows; the fake keeps it because
    // our inblob is a regular file there.)
    let empty = tempfile::tempdir().unwrap();
    let err = ConfigfsTsm::new(empty.path()).report([0; 64]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // Entry names cannot escape the root.
    assert!(ConfigfsTsm::new(root.path())
        .with_entry("../x")
        .report([0; 64])
        .is_err());
}

#[test]
fn configfs_tsm_generation_race_is_detected() {
    // outblob is a FIFO: a concurrent writer bumps `generation` while our read is in
    // progress, exactly what the kernel's counter exists to reveal.
    let set = load("virtee-milan-v2");
    let root = tempfile::tempdir().unwrap();
    let entry = root.path().join("e");
    fake_configfs(&entry, &set.report, None, "1\n");
    std::fs::remove_file(entry.join("outblob")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(entry.join("outblob"))
        .status()
        .unwrap();
    assert!(status.success());
    let writer = {
        let entry = entry.clone();
        let report = set.report.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(entry.join("outblob"))
                .unwrap();
            std::fs::write(entry.join("generation"), "2\n").unwrap();
            f.write_all(&report).unwrap();
        })
    };
    let err = ConfigfsTsm::new(root.path())
        .with_entry("e")
        .report([0; 64])
        .unwrap_err();
    writer.join().unwrap();
    assert!(
        matches!(&err, Error::Provider { reason, .. } if reason.contains("generation")),
        "{err}"
    );
}
