//! Launch MEASUREMENT: the 14 vectors of `measurement/snp_measure_cases.json` (from
//! virtee/sev-snp-measure's tests, re-verified with PyPI sev-snp-measure 0.0.13), and random
//! inputs against the PyPI tool itself when it is installed.

mod common;

use charter_attest::measure::{
    cpu_sig, ovmf_hash, snp_launch_digest, vcpu_sig_for, LaunchInputs, VmmType,
};
use common::testdata;
use proptest::prelude::*;

fn mdir() -> std::path::PathBuf {
    testdata().join("measurement")
}

#[test]
fn all_14_vectors_match() {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mdir().join("snp_measure_cases.json")).unwrap())
            .unwrap();
    let seed: [u8; 48] = hex::decode(j["ovmf_AmdSev_suffix_snp_ovmf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let cases = j["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let ovmf = std::fs::read(mdir().join(c["ovmf"].as_str().unwrap())).unwrap();
        let vmm: VmmType = c["vmm_type"].as_str().unwrap().parse().unwrap();
        let vcpu_sig = c["vcpu_sig"].as_u64().map_or(0, |v| v as u32);
        if let Some(t) = c["vcpu_type"].as_str() {
            assert_eq!(vcpu_sig_for(t), Some(vcpu_sig), "{name}");
        }
        let inputs = LaunchInputs {
            ovmf: &ovmf,
            ovmf_hash: c["snp_ovmf_hash_seed"].as_bool().unwrap().then_some(seed),
            kernel: c["kernel"].as_str().map(|_| &b""[..]), // "" = an empty file
            initrd: c["initrd"].as_str().map(|_| &b""[..]),
            append: c["append"].as_str(),
            vcpus: c["vcpus"].as_u64().unwrap() as u32,
            vcpu_sig,
            guest_features: u64::from_str_radix(
                c["guest_features"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap(),
            vmm,
        };
        let got = snp_launch_digest(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex::encode(got),
            c["expected_measurement"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn helpers_and_errors() {
    assert_eq!(cpu_sig(23, 1, 2), 0x800f12);
    assert_eq!(cpu_sig(25, 1, 1), 0xa00f11);
    assert_eq!(cpu_sig(26, 0, 0), 0xb00f00);
    let ovmf = std::fs::read(mdir().join("ovmf_OvmfX64_suffix.bin")).unwrap();
    // OvmfX64 has no kernel-hashes section: a kernel is an error, as in sev-snp-measure.
    let inp = LaunchInputs {
        ovmf: &ovmf,
        ovmf_hash: None,
        kernel: Some(b"k"),
        initrd: None,
        append: None,
        vcpus: 1,
        vcpu_sig: 0x800f12,
        guest_features: 0x21,
        vmm: VmmType::Qemu,
    };
    assert!(snp_launch_digest(&inp).is_err());
    assert!(snp_launch_digest(&LaunchInputs {
        vcpus: 0,
        kernel: None,
        ..inp.clone()
    })
    .is_err());
    assert!(snp_launch_digest(&LaunchInputs {
        ovmf: &ovmf[..4095],
        kernel: None,
        ..inp.clone()
    })
    .is_err());
    assert_eq!(ovmf_hash(&ovmf).unwrap().len(), 48);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_ovmf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..9000), tail in any::<bool>()) {
        let mut data = bytes;
        if tail {
            // Keep the real footer so the table parser walks attacker-chosen entries.
            let real = std::fs::read(mdir().join("ovmf_AmdSev_suffix.bin")).unwrap();
            data.extend_from_slice(&real[real.len() - 200..]);
        }
        let inp = LaunchInputs { ovmf: &data, ovmf_hash: None, kernel: Some(b""), initrd: None, append: Some("x"), vcpus: 2, vcpu_sig: 1, guest_features: 1, vmm: VmmType::Qemu };
        let _ = snp_launch_digest(&inp);
    }
}

/// Random kernels, initrds, command lines, vCPU counts/types, VMM types and guest features,
/// compared with the PyPI `sev-snp-measure` CLI.
#[test]
#[ignore = "needs sev-snp-measure from PyPI (pip install sev-snp-measure); run with --ignored"]
fn matches_pypi_sev_snp_measure_on_random_inputs() {
    use rand::{Rng, SeedableRng};
    let tool =
        which("sev-snp-measure").expect("sev-snp-measure is not on PATH: this test needs it");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e75_0a11);
    let dir = tempfile::tempdir().unwrap();
    let types = [
        "EPYC-v4",
        "EPYC-Milan",
        "EPYC-Genoa",
        "EPYC-Turin",
        "EPYC-Rome",
    ];
    for i in 0..24 {
        let amd = i % 4 != 3;
        let ovmf_name = if amd {
            "ovmf_AmdSev_suffix.bin"
        } else {
            "ovmf_OvmfX64_suffix.bin"
        };
        let ovmf_path = mdir().join(ovmf_name);
        let ovmf = std::fs::read(&ovmf_path).unwrap();
        let vmm = ["QEMU", "ec2", "gce"][rng.gen_range(0..3)];
        let vcpus: u32 = rng.gen_range(1..9);
        let vtype = types[rng.gen_range(0..types.len())];
        let features: u64 = [0x1, 0x21, 0x5][rng.gen_range(0..3)];
        let with_kernel = amd && rng.gen_bool(0.7);
        let kernel: Vec<u8> = (0..rng.gen_range(0..5000)).map(|_| rng.gen()).collect();
        let initrd: Vec<u8> = (0..rng.gen_range(0..3000)).map(|_| rng.gen()).collect();
        let append: String = (0..rng.gen_range(0..60))
            .map(|_| rng.gen_range(b'a'..=b'z') as char)
            .collect();
        let kp = dir.path().join(format!("k{i}"));
        let ip = dir.path().join(format!("i{i}"));
        std::fs::write(&kp, &kernel).unwrap();
        std::fs::write(&ip, &initrd).unwrap();
        let mut cmd = std::process::Command::new(&tool);
        cmd.args([
            "--mode",
            "snp",
            "--vcpus",
            &vcpus.to_string(),
            "--vcpu-type",
            vtype,
            "--vmm-type",
            vmm,
        ]);
        cmd.arg("--ovmf")
            .arg(&ovmf_path)
            .args(["--guest-features", &format!("{features:#x}")]);
        if with_kernel {
            cmd.arg("--kernel")
                .arg(&kp)
                .arg("--initrd")
                .arg(&ip)
                .args(["--append", &append]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let inp = LaunchInputs {
            ovmf: &ovmf,
            ovmf_hash: None,
            kernel: with_kernel.then_some(&kernel[..]),
            initrd: with_kernel.then_some(&initrd[..]),
            append: with_kernel.then_some(append.as_str()),
            vcpus,
            vcpu_sig: vcpu_sig_for(vtype).unwrap(),
            guest_features: features,
            vmm: vmm.parse().unwrap(),
        };
        assert_eq!(
            hex::encode(snp_launch_digest(&inp).unwrap()),
            expected,
            "case {i}: {vmm} {vcpus} {vtype} kernel={with_kernel}"
        );
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
