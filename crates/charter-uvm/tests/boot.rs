//! The real utility VM: QEMU (TCG) boots the Debian cloud kernel with the initramfs this crate
//! builds, `charter-agent` runs as PID 1, takes the policy (checked against HOST_DATA from the
//! INSECURE simulated SNP over its own virtio-serial port), puts the layer disks under the
//! kernel's dm-verity with the policy's root hashes, and runs a container that reads a file
//! from a layer. With one byte of that file flipped on the layer disk, the same read fails
//! with an I/O error from dm-verity. The container also writes 1 MiB of a known text to its
//! writable layer, which lives on the host's scratch disk under dm-crypt and dm-integrity: the
//! disk file then holds none of that text.
//!
//! Needs: `qemu-system-x86`, `linux-image-cloud-amd64`, `runc`, `busybox-static`
//! (`scripts/deps.sh`), and a static `charter-agent` (`$CHARTER_UVM_AGENT`, else built here
//! with `RUSTFLAGS=-C target-feature=+crt-static` into `$CHARTER_UVM_TARGET_DIR` or
//! `target/uvm-static`).

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use charter_agent_api::{paths, Reply, Request, StdioStream};
use charter_host::{LaunchConfig, LayerDisk, QemuLauncher, QemuUvm, Uvm};
use charter_uvm::{UvmImage, UvmInputs};
use sha2::{Digest, Sha256};
use support::*;

const READ_CMD: [&str; 3] = [
    "/bin/sh",
    "-c",
    "cat /app/marker.txt | wc -c; \
     yes charter-scratch-plaintext-marker | head -c 1048576 > /app/written.txt; sync; \
     wc -c < /app/written.txt; echo done",
];
/// What the container writes to its scratch, repeated (the disk must not contain it).
const SCRATCH_MARKER: &[u8] = b"charter-scratch-plaintext-marker";
/// A small scratch disk: the test reads all of it.
const SCRATCH_MIB: u64 = 256;
/// 16 KiB: the file gets whole data blocks of its own.
const MARKER_LEN: usize = 16 * 1024;

fn marker() -> Vec<u8> {
    (0..MARKER_LEN)
        .map(|i| b"charter-verified-marker-"[i % 24])
        .collect()
}

fn layers(dir: &Path) -> (Layer, Layer) {
    let base = busybox_layer(dir, &["sh", "cat", "wc", "echo", "yes", "head", "sync"]);
    let app = build_layer(
        dir,
        "app",
        tar_of(&[("app/marker.txt", marker(), 0o644)], &[]),
    );
    (base, app)
}

fn policy(base: &Layer, app: &Layer) -> String {
    policy_for("reader", &READ_CMD, &[base, app])
}

struct Run {
    stdout: String,
    stderr: String,
    exit: Reply,
    console: String,
    /// The scratch disk file's bytes after the container exited.
    scratch: Vec<u8>,
}

/// Boots a VM with `base` and `app_disk` (served as the layer `app` names), sets the policy,
/// mounts both layers through dm-verity and runs the reader container.
fn boot_and_read(
    image: &UvmImage,
    policy: &str,
    base: &Layer,
    app: &Layer,
    app_disk: &Path,
) -> Run {
    let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
    let mut launcher = QemuLauncher::new(&image.kernel, &image.initrd, &image.cmdline);
    launcher.scratch_mib = SCRATCH_MIB;
    launcher.simulator_dir = std::env::temp_dir().join("charter-uvm-tests-simulated-sp");
    launcher.layers = vec![
        LayerDisk {
            serial: "base".into(),
            path: base.file.clone(),
        },
        LayerDisk {
            serial: "app".into(),
            path: app_disk.to_owned(),
        },
    ];
    let started = Instant::now();
    let uvm: QemuUvm = launcher
        .launch_qemu(&LaunchConfig {
            policy_digest: digest,
            agent: PathBuf::from("/init"),
        })
        .unwrap();
    eprintln!("boot to first agent answer: {:?}", uvm.boot_time());
    let mut c = uvm.connect().unwrap();
    let t = Instant::now();
    c.call(Request::SetPolicy {
        policy: policy.to_owned(),
    })
    .unwrap();
    eprintln!(
        "set_policy (attested via the simulated TEE port): {:?}",
        t.elapsed()
    );
    for (serial, l) in [("base", base), ("app", app)] {
        let t = Instant::now();
        c.call(Request::MountDevice {
            source: serial.into(),
            target: paths::layer(&l.root_hash),
            device_hash: l.root_hash.clone(),
        })
        .unwrap_or_else(|e| panic!("mount_device {serial}: {e}\n{}", uvm.console()));
        eprintln!("mount_device {serial} (dm-verity): {:?}", t.elapsed());
    }
    let t = Instant::now();
    c.call(Request::ScratchMount {
        target: paths::scratch("reader"),
    })
    .unwrap_or_else(|e| panic!("scratch_mount: {e}\n{}", uvm.console()));
    eprintln!(
        "scratch_mount (dm-integrity + dm-crypt + mke2fs): {:?}",
        t.elapsed()
    );
    c.call(Request::MountOverlay {
        container_id: "reader".into(),
        layer_paths: vec![paths::layer(&app.root_hash), paths::layer(&base.root_hash)],
        target: paths::rootfs("reader"),
    })
    .unwrap();
    let t = Instant::now();
    c.call(Request::CreateContainer(create_request(
        "reader", &READ_CMD,
    )))
    .unwrap_or_else(|e| panic!("create_container: {e}\n{}", uvm.console()));
    eprintln!("create_container (runc create): {:?}", t.elapsed());
    let t_start = Instant::now();
    c.call(Request::StartContainer {
        container_id: "reader".into(),
    })
    .unwrap();
    eprintln!("start_container (runc start): {:?}", t_start.elapsed());
    let mut out = Vec::new();
    charter_host::pump_stdio(&uvm, "reader", None, StdioStream::Stdout, &mut out).unwrap();
    let mut err = Vec::new();
    charter_host::pump_stdio(&uvm, "reader", None, StdioStream::Stderr, &mut err).unwrap();
    let exit = c
        .call(Request::WaitProcess {
            container_id: "reader".into(),
            process_id: None,
        })
        .unwrap();
    eprintln!("create + start + run to exit: {:?}", t.elapsed());
    eprintln!("whole VM session: {:?}", started.elapsed());
    let scratch = std::fs::read(uvm.scratch_disk().expect("a scratch disk")).unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        exit,
        console: uvm.console(),
        scratch,
    }
}

#[test]
#[ignore = "needs root: qemu, kvm-less TCG boot"]
fn a_container_reads_a_verified_layer_and_a_flipped_byte_is_an_io_error() {
    let work = tempfile::tempdir().unwrap();
    let agent = static_agent();
    let mut inputs = UvmInputs::from_host(&agent).unwrap();
    inputs.insecure_simulated_tee = true;
    let t = Instant::now();
    let image = UvmImage::build(&inputs, &work.path().join("uvm")).unwrap();
    eprintln!(
        "UVM image built in {:?}: initrd {} bytes, digest {}",
        t.elapsed(),
        std::fs::metadata(&image.initrd).unwrap().len(),
        hex::encode(image.digest)
    );
    let (base, app) = layers(work.path());
    let policy = policy(&base, &app);

    let good = boot_and_read(&image, &policy, &base, &app, &app.file);
    assert_eq!(
        good.stdout,
        format!("{MARKER_LEN}\n1048576\ndone\n"),
        "stderr: {}",
        good.stderr
    );
    // The container's 1 MiB reached the scratch disk (at least that many bytes of it are no
    // longer zero), but not one copy of its text.
    let written = good
        .scratch
        .chunks(4096)
        .filter(|b| b.iter().any(|&x| x != 0))
        .count();
    assert!(
        written >= 256,
        "only {written} blocks of the scratch disk were written"
    );
    assert!(
        !good
            .scratch
            .windows(SCRATCH_MARKER.len())
            .any(|w| w == SCRATCH_MARKER),
        "the scratch disk holds the container's plaintext"
    );
    assert_eq!(
        good.exit,
        Reply::Exit {
            code: Some(0),
            signal: None
        }
    );

    // One byte of the marker flipped on the disk; superblocks and tree untouched.
    let mut bytes = std::fs::read(&app.file).unwrap();
    let m = marker();
    let at = bytes
        .windows(64)
        .position(|w| w == &m[..64])
        .expect("marker in the image");
    bytes[at + 100] ^= 0x01;
    let tampered = work.path().join("app-tampered.img");
    std::fs::write(&tampered, &bytes).unwrap();

    let bad = boot_and_read(&image, &policy, &base, &app, &tampered);
    // busybox cat: "cat: read error: Input/output error" (EIO).
    assert!(
        bad.stderr.contains("Input/output error"),
        "expected an I/O error reading the flipped block, got stdout {:?} stderr {:?}",
        bad.stdout,
        bad.stderr
    );
    assert!(
        !bad.stdout.contains(&format!("{MARKER_LEN}\n")),
        "{}",
        bad.stdout
    );
    // The kernel names the culprit: "device-mapper: verity: 254:1: data block N is corrupted".
    assert!(
        bad.console
            .lines()
            .any(|l| l.contains("verity") && l.contains("is corrupted")),
        "no dm-verity corruption report on the console:\n{}",
        bad.console
    );
    assert!(!good.console.contains("is corrupted"), "{}", good.console);
}
