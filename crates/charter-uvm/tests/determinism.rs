//! Two builds of the UVM image from the same inputs are byte-identical, and the archive is a
//! valid `newc` cpio (checked with GNU cpio when it is installed).

use std::path::{Path, PathBuf};

use charter_uvm::{UvmImage, UvmInputs, CMDLINE};

/// Real inputs when the host has them (cloud kernel, runc, a static busybox standing in for
/// the agent); otherwise a fake kernel and module tree.
fn inputs(scratch: &Path) -> UvmInputs {
    let busybox = PathBuf::from("/bin/busybox");
    if let Ok((kernel, modules_dir)) = charter_uvm::find_cloud_kernel() {
        if Path::new("/usr/sbin/runc").is_file() {
            return UvmInputs {
                kernel,
                modules_dir,
                agent: busybox.clone(),
                runc: PathBuf::from("/usr/sbin/runc"),
                mke2fs: busybox.clone(),
                busybox: Some(busybox),
                insecure_simulated_tee: false,
            };
        }
    }
    let kernel = scratch.join("vmlinuz");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    let modules_dir = scratch.join("modules");
    let mut dep = String::new();
    for m in charter_uvm::MODULES {
        let rel = format!("kernel/{m}.ko");
        std::fs::create_dir_all(modules_dir.join("kernel")).unwrap();
        std::fs::write(modules_dir.join(&rel), m.as_bytes()).unwrap();
        dep.push_str(&format!("{rel}:\n"));
    }
    std::fs::write(modules_dir.join("modules.dep"), dep).unwrap();
    UvmInputs {
        kernel,
        modules_dir,
        agent: busybox.clone(),
        runc: busybox.clone(),
        mke2fs: busybox.clone(),
        busybox: None,
        insecure_simulated_tee: false,
    }
}

#[test]
fn two_builds_are_identical() {
    let d = tempfile::tempdir().unwrap();
    let inputs = inputs(d.path());
    let a = UvmImage::build(&inputs, &d.path().join("a")).unwrap();
    let b = UvmImage::build(&inputs, &d.path().join("b")).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.cmdline, CMDLINE);
    assert_eq!(
        std::fs::read(&a.initrd).unwrap(),
        std::fs::read(&b.initrd).unwrap()
    );
    assert_eq!(
        std::fs::read(&a.kernel).unwrap(),
        std::fs::read(&b.kernel).unwrap()
    );
    assert_eq!(a.measure().unwrap(), a.digest);
    assert_eq!(
        UvmImage::open(&d.path().join("a")).unwrap().digest,
        a.digest
    );

    let insecure = UvmInputs {
        insecure_simulated_tee: true,
        ..inputs.clone()
    };
    let c = UvmImage::build(&insecure, &d.path().join("c")).unwrap();
    assert_ne!(c.digest, a.digest, "the insecure command line is measured");

    // GNU cpio lists exactly what we wrote.
    if let Ok(out) = std::process::Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(std::fs::File::open(&a.initrd).unwrap())
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = String::from_utf8(out.stdout).unwrap();
        for want in [
            "init",
            "dev/console",
            "usr/sbin/runc",
            charter_uvm::MODULE_ORDER,
        ] {
            assert!(
                list.lines().any(|l| l == want),
                "{want} missing from {list}"
            );
        }
    }
}

#[test]
fn a_dynamic_agent_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut inputs = inputs(d.path());
    inputs.agent = PathBuf::from("/usr/sbin/runc");
    if !inputs.agent.is_file() {
        return;
    }
    let e = UvmImage::build(&inputs, &d.path().join("x")).unwrap_err();
    assert!(e.to_string().contains("not a static executable"), "{e}");
}
