//! `charter uvm build` / `charter uvm measure` as a user runs them: the Debian cloud kernel and
//! runc of this machine, a static executable as the agent (busybox-static here: `build` only
//! needs it to be static), determinism across builds, tamper detection, and the SEV-SNP launch
//! MEASUREMENT against the PyPI `sev-snp-measure` tool on the same files.

use std::path::Path;
use std::process::{Command, Output};

fn charter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charter"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

fn have_inputs() -> bool {
    let kernel = std::fs::read_dir("/boot").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("-cloud-amd64"))
    });
    kernel && Path::new("/bin/busybox").is_file() && Path::new("/usr/sbin/runc").is_file()
}

#[test]
#[ignore = "needs linux-image-cloud-amd64, runc and busybox-static (scripts/deps.sh, as root)"]
fn build_is_deterministic_and_measure_matches_sev_snp_measure() {
    assert!(have_inputs(), "scripts/deps.sh installs the UVM's inputs");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut digests = Vec::new();
    for out in [&a, &b] {
        let o = charter(&[
            "uvm",
            "build",
            "--out",
            out.to_str().unwrap(),
            "--agent",
            "/bin/busybox",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        digests.push(text(&o.stdout));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0].len(), 64);
    for f in ["vmlinuz", "initrd.cpio", "cmdline", "digest"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }

    // measure recomputes the digest from the files.
    let o = charter(&["uvm", "measure", a.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["digest"], digests[0].as_str());
    assert!(j["snp_measurement"].is_null());

    // The SNP launch MEASUREMENT equals sev-snp-measure's over the same kernel, initrd,
    // command line and firmware (the OVMF test vector of ../shared).
    let ovmf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/snp/measurement/ovmf_AmdSev_suffix.bin");
    let o = charter(&[
        "uvm",
        "measure",
        a.to_str().unwrap(),
        "--ovmf",
        ovmf.to_str().unwrap(),
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Milan",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ours = j["snp_measurement"].as_str().unwrap().to_owned();
    let cmdline = std::fs::read_to_string(a.join("cmdline")).unwrap();
    let peer = Command::new("sev-snp-measure")
        .args([
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Milan",
            // charter measures QEMU's default VMSA features (SNPActive | DebugSwap).
            "--guest-features",
            "0x21",
            "--ovmf",
        ])
        .arg(&ovmf)
        .arg("--kernel")
        .arg(a.join("vmlinuz"))
        .arg("--initrd")
        .arg(a.join("initrd.cpio"))
        .args(["--append", &cmdline])
        .output()
        .expect("sev-snp-measure (PyPI) is installed by scripts/deps.sh");
    assert!(peer.status.success(), "{}", text(&peer.stderr));
    assert_eq!(ours, text(&peer.stdout));

    // A changed file is caught; bad input is a clear error.
    let mut initrd = std::fs::read(a.join("initrd.cpio")).unwrap();
    let last = initrd.len() - 1;
    initrd[last] ^= 1;
    std::fs::write(a.join("initrd.cpio"), initrd).unwrap();
    let o = charter(&["uvm", "measure", a.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("changed since the build"),
        "{}",
        text(&o.stderr)
    );
    let o = charter(&["uvm", "measure", dir.path().join("none").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("reading the UVM image"),
        "{}",
        text(&o.stderr)
    );
    let o = charter(&[
        "uvm",
        "build",
        "--out",
        dir.path().join("c").to_str().unwrap(),
        "--agent",
        "/usr/sbin/runc",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not a static executable"),
        "{}",
        text(&o.stderr)
    );
}
