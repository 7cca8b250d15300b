//! The simulated AMD-SP's evidence verifies only when explicitly allowed.

use std::sync::{Arc, OnceLock};

use charter_attest::cert::{Cert, VekExtensions};
use charter_attest::{
    Error, Evidence, Platform, Report, TcbVersion, TeeProvider, Verifier, VerifyOptions,
};
use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};

fn sp() -> &'static (tempfile::TempDir, Arc<InsecureSimulatedSp>) {
    static SP: OnceLock<(tempfile::TempDir, Arc<InsecureSimulatedSp>)> = OnceLock::new();
    SP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sp = InsecureSimulatedSp::load_or_generate(dir.path()).unwrap();
        (dir, Arc::new(sp))
    })
}

fn launch() -> LaunchParams {
    LaunchParams {
        host_data: [0x11; 32],
        measurement: [0x22; 48],
        ..LaunchParams::default()
    }
}

fn allow() -> VerifyOptions {
    VerifyOptions {
        insecure_allow_simulated: true,
        ..VerifyOptions::default()
    }
}

#[test]
fn verifies_only_when_allowed_with_root() {
    let (_, sp) = sp();
    let ev = sp.evidence(&launch(), &[0x33; 64]).unwrap();
    let vek = ev.vek.clone().unwrap();

    let with_root = Verifier::new()
        .unwrap()
        .with_insecure_simulated_root(sp.root_set().unwrap());
    let vr = with_root.verify_evidence(&ev, &allow()).unwrap();
    assert_eq!(vr.platform(), Platform::InsecureSimulatedSnp);
    assert_eq!(vr.claims_json()["platform"], "insecure-simulated-snp");
    let c = vr.claims();
    assert_eq!(c.report.host_data, [0x11; 32]);
    assert_eq!(c.report.measurement, [0x22; 48]);
    assert_eq!(c.report.report_data, [0x33; 64]);
    assert_eq!(c.report.version, 3);

    // Switch off: refused even though the verifier knows the root.
    let err = with_root
        .verify_evidence(&ev, &VerifyOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::SimulatedNotAllowed), "{err}");
    // Switch on but no simulated root: refused.
    let plain = Verifier::new().unwrap();
    assert!(plain.verify_evidence(&ev, &allow()).is_err());
    assert!(plain.verify(&ev.report, &vek, &[], &allow()).is_err());
    // The simulated ARK supplied in the evidence is never trusted by itself.
    let err = plain
        .verify(&ev.report, &vek, &ev.chain, &VerifyOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::SimulatedNotAllowed), "{err}");
}

#[test]
fn report_layout_is_byte_exact() {
    let (_, sp) = sp();
    let l = LaunchParams {
        policy: 0x3001f,
        vmpl: 0,
        guest_svn: 7,
        ..launch()
    };
    let bytes = sp.report(&l, &[0x44; 64]).unwrap();
    assert_eq!(bytes.len(), 0x4a0);
    assert_eq!(&bytes[0..4], &3u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &7u32.to_le_bytes());
    assert_eq!(&bytes[8..16], &0x3001fu64.to_le_bytes());
    assert_eq!(&bytes[0x34..0x38], &1u32.to_le_bytes());
    assert_eq!(&bytes[0x50..0x90], &[0x44; 64]);
    assert_eq!(&bytes[0x90..0xc0], &[0x22; 48]);
    assert_eq!(&bytes[0xc0..0xe0], &[0x11; 32]);
    assert_eq!(&bytes[0x160..0x180], &[0xff; 32]);
    assert_eq!(&bytes[0x180..0x188], &0x7308000000000003u64.to_le_bytes());
    assert_eq!(&bytes[0x188..0x18b], &[0x19, 0x01, 0x01]);
    assert_eq!(&bytes[0x1a0..0x1e0], sp.chip_id());
    assert!(bytes[0x2a0 + 48..0x2e8].iter().all(|&b| b == 0));
    assert!(bytes[0x2e8 + 48..].iter().all(|&b| b == 0));
    let r = Report::from_bytes(&bytes).unwrap();
    assert_eq!(r.product_from_cpuid(), Some(charter_attest::Product::Milan));
    // Every bit flip in the signed area is caught.
    let v = Verifier::new()
        .unwrap()
        .with_insecure_simulated_root(sp.root_set().unwrap());
    let vek = sp.vcek_der(&l.tcb).unwrap();
    v.verify(&bytes, &vek, &[], &allow()).unwrap();
    let mut b = bytes.clone();
    for i in (0..0x2a0).step_by(7) {
        b[i] ^= 0x10;
        assert!(v.verify(&b, &vek, &[], &allow()).is_err(), "byte {i:#x}");
        b[i] ^= 0x10;
    }
}

#[test]
fn vcek_mimics_amd_extensions_and_tcb() {
    let (_, sp) = sp();
    let tcb = TcbVersion {
        fmc: None,
        bootloader: 4,
        tee: 1,
        snp: 22,
        microcode: 213,
    };
    let vek = sp.vcek_der(&tcb).unwrap();
    let cert = Cert::from_der("vcek", &vek).unwrap();
    assert!(cert.subject_cn().contains("INSECURE SIMULATED"));
    assert!(cert.issuer_cn().contains("INSECURE SIMULATED"));
    let ext = VekExtensions::from_cert(&cert).unwrap();
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (4, 1, 22, 213)
    );
    assert_eq!(ext.hw_id.as_deref(), Some(&sp.chip_id()[..]));
    assert_eq!(ext.product_name.as_deref(), Some("Milan-B0"));
    // Report at that TCB verifies; minimum TCB checks apply to simulated reports too.
    let l = LaunchParams { tcb, ..launch() };
    let ev = sp.evidence(&l, &[0; 64]).unwrap();
    let v = Verifier::new()
        .unwrap()
        .with_insecure_simulated_root(sp.root_set().unwrap());
    v.verify_evidence(&ev, &allow()).unwrap();
    let min = TcbVersion { snp: 23, ..tcb };
    let err = v
        .verify_evidence(
            &ev,
            &VerifyOptions {
                min_tcb: Some(min),
                ..allow()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::TcbTooLow { .. }));
    // The VCEK of another TCB does not match the report.
    let other = sp.vcek_der(&launch().tcb).unwrap();
    let err = v.verify(&ev.report, &other, &[], &allow()).unwrap_err();
    assert!(matches!(err, Error::TcbMismatch { .. }), "{err}");
}

#[test]
fn state_persists_and_provider_trait_works() {
    let (dir, sp) = sp();
    let again = InsecureSimulatedSp::load_or_generate(dir.path()).unwrap();
    assert_eq!(again.ark_der(), sp.ark_der());
    assert_eq!(again.chip_id(), sp.chip_id());
    let guest = InsecureSimulatedGuest::new(Arc::clone(sp), launch());
    assert_eq!(guest.name(), "insecure-simulated-snp");
    let ev: Evidence = guest.report([9; 64]).unwrap();
    // Evidence JSON round trip, then verification with the root from PEM.
    let back = Evidence::from_json(ev.to_json().as_bytes()).unwrap();
    assert_eq!(back, ev);
    let root = charter_attest::RootSet::insecure_simulated_pem(&again.root_pem()).unwrap();
    let v = Verifier::new().unwrap().with_insecure_simulated_root(root);
    assert_eq!(
        v.verify_evidence(&back, &allow())
            .unwrap()
            .claims()
            .report
            .report_data,
        [9; 64]
    );
    // Debug policy refused by default, as for real reports.
    let dbg = LaunchParams {
        policy: 0xb0000,
        ..launch()
    };
    let ev = sp.evidence(&dbg, &[0; 64]).unwrap();
    assert!(matches!(
        v.verify_evidence(&ev, &allow()),
        Err(Error::Policy(_))
    ));
}

#[test]
fn runtime_data_binding() {
    use sha2::{Digest, Sha256};
    let (_, sp) = sp();
    let runtime = br#"{"nonce":"abc","pub":"key"}"#.to_vec();
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(&runtime));
    let mut ev = sp.evidence(&launch(), &rd).unwrap();
    ev.runtime_data = Some(runtime);
    let v = Verifier::new()
        .unwrap()
        .with_insecure_simulated_root(sp.root_set().unwrap());
    let vr = v.verify_evidence(&ev, &allow()).unwrap();
    assert_eq!(
        ev.runtime_data_bound(&vr.claims().report.report_data),
        Some(true)
    );
    ev.runtime_data = Some(b"other".to_vec());
    assert_eq!(
        ev.runtime_data_bound(&vr.claims().report.report_data),
        Some(false)
    );
    ev.runtime_data = None;
    assert_eq!(ev.runtime_data_bound(&vr.claims().report.report_data), None);
}
