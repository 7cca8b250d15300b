//! Pod start in the QEMU utility VM under TCG, split into kernel boot (QEMU start until the
//! agent runs as PID 1), agent ready (its first `status` answer), and container running (the
//! container's first line of output reaches the host), against the peer every VM-based runtime
//! pays first: the same kernel, QEMU machine and command line booting a plain busybox
//! initramfs until its `/init` prints a line.
//!
//! The pod: one container (`echo running`) over a dm-verity layer disk, with its policy set and
//! attested (INSECURE simulated TEE), scratch on an encrypted (dm-crypt + dm-integrity) 4 GiB
//! disk, overlay, runc create and start.
//!
//! Run as root: `cargo bench -p charter-uvm --bench pod_start` (builds the static agent like the
//! boot test; `CHARTER_UVM_AGENT` names a prebuilt one). Goal: pod start <= 8 s in total.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use charter_agent_api::{paths, Reply, Request, StdioStream};
use charter_host::{LaunchConfig, LayerDisk, QemuLauncher, Uvm};
use charter_uvm::{Archive, Entry, UvmImage, UvmInputs};
use sha2::{Digest, Sha256};

const RUNS: usize = 5;
const CMD: [&str; 3] = ["/bin/sh", "-c", "echo running"];
const PEER_MARKER: &str = "PLAIN-BOOT-READY";

/// One pod start, in seconds since QEMU was started.
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// The agent started as PID 1 (its first status answer minus its own init time).
    kernel: f64,
    /// The agent answered `status`.
    agent_ready: f64,
    /// Policy set and attested.
    policy: f64,
    /// Layer mounted through dm-verity.
    layer: f64,
    /// Encrypted scratch ready.
    scratch: f64,
    /// Overlay mounted.
    storage: f64,
    /// The container's first output reached the host.
    running: f64,
}

fn main() {
    if !is_root() {
        eprintln!("pod_start: skipped (needs root: QEMU, device nodes)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let agent = support::static_agent();
    let mut inputs = UvmInputs::from_host(&agent).unwrap();
    inputs.insecure_simulated_tee = true;
    let image = UvmImage::build(&inputs, &work.path().join("uvm")).unwrap();
    let base = support::busybox_layer(work.path(), &["sh", "echo"]);
    let policy = support::policy_for("app", &CMD, &[&base]);
    let peer_initrd = work.path().join("plain.cpio");
    std::fs::write(&peer_initrd, plain_initramfs()).unwrap();

    let scratch_mib = std::env::var("CHARTER_BENCH_SCRATCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(charter_host::DEFAULT_SCRATCH_MIB);
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for i in 0..RUNS {
        let p = pod_start(&image, &policy, &base, work.path(), scratch_mib);
        eprintln!(
            "run {}: kernel {:.2} s, agent ready {:.2} s, storage {:.2} s, running {:.2} s",
            i + 1,
            p.kernel,
            p.agent_ready,
            p.storage,
            p.running
        );
        ours.push(p);
        peer.push(plain_boot(&image.kernel, &peer_initrd, work.path()));
    }
    let med = |f: &dyn Fn(&Phases) -> f64| median(ours.iter().map(f).collect());
    let (kernel, ready, storage, running) = (
        med(&|p| p.kernel),
        med(&|p| p.agent_ready),
        med(&|p| p.storage),
        med(&|p| p.running),
    );
    let (policy, layer, scratch) = (
        med(&|p| p.policy - p.agent_ready),
        med(&|p| p.layer - p.policy),
        med(&|p| p.scratch - p.layer),
    );
    let peer = median(peer);
    println!("pod start in the QEMU UVM under TCG (1 vCPU, 1 GiB), median of {RUNS}");
    println!("  kernel boot (QEMU start to the agent as PID 1)            {kernel:6.2} s");
    println!(
        "  agent ready (modules, disks, ports; first status answer)  {ready:6.2} s  (+{:.2})",
        ready - kernel
    );
    println!(
        "  policy attested + layer (dm-verity) + encrypted scratch   {storage:6.2} s  (+{:.2})",
        storage - ready
    );
    println!(
        "    of which: policy {policy:.2} s, layer {layer:.2} s, scratch ({scratch_mib} MiB disk) {scratch:.2} s"
    );
    println!(
        "  container running (create, start, first output)           {running:6.2} s  (+{:.2})",
        running - storage
    );
    println!("  total pod start                                           {running:6.2} s  (goal <= 8 s)");
    println!("peer: the same kernel booting busybox /init to its first line {peer:6.2} s");
    println!(
        "ratio pod start / plain kernel boot: {:.2}x; charter's own share {:.2} s",
        running / peer,
        running - peer
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pod_start(
    image: &UvmImage,
    policy: &str,
    base: &support::Layer,
    work: &Path,
    scratch_mib: u64,
) -> Phases {
    let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
    let mut launcher = QemuLauncher::new(&image.kernel, &image.initrd, &image.cmdline);
    launcher.simulator_dir = work.join("simulated-sp");
    launcher.work_parent = work.to_owned();
    launcher.scratch_mib = scratch_mib;
    launcher.layers = vec![LayerDisk {
        serial: "layer0".into(),
        path: base.file.clone(),
    }];
    // The simulated AMD-SP's keys are made once, outside the timed runs.
    charter_attest_insecure_sim::InsecureSimulatedSp::load_or_generate(&launcher.simulator_dir)
        .unwrap();
    let t0 = Instant::now();
    let mut uvm = launcher
        .launch_qemu(&LaunchConfig {
            policy_digest: digest,
            agent: PathBuf::from("/init"),
        })
        .unwrap();
    let agent_ready = t0.elapsed().as_secs_f64();
    let init_ms: f64 = uvm
        .console()
        .lines()
        .find_map(|l| {
            l.split("ready after ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .expect("the agent reports its init time on the console");
    let mut c = uvm.connect().unwrap();
    c.call(Request::SetPolicy {
        policy: policy.to_owned(),
    })
    .unwrap();
    let policy_set = t0.elapsed().as_secs_f64();
    c.call(Request::MountDevice {
        source: "layer0".into(),
        target: paths::layer(&base.root_hash),
        device_hash: base.root_hash.clone(),
    })
    .unwrap();
    let layer = t0.elapsed().as_secs_f64();
    c.call(Request::ScratchMount {
        target: paths::scratch("app"),
    })
    .unwrap();
    let scratch = t0.elapsed().as_secs_f64();
    c.call(Request::MountOverlay {
        container_id: "app".into(),
        layer_paths: vec![paths::layer(&base.root_hash)],
        target: paths::rootfs("app"),
    })
    .unwrap();
    let storage = t0.elapsed().as_secs_f64();
    c.call(Request::CreateContainer(support::create_request(
        "app", &CMD,
    )))
    .unwrap();
    c.call(Request::StartContainer {
        container_id: "app".into(),
    })
    .unwrap();
    let mut first = None;
    loop {
        match c
            .call(Request::ReadStdio {
                container_id: "app".into(),
                process_id: None,
                stream: StdioStream::Stdout,
                max_bytes: 4096,
            })
            .unwrap()
        {
            Reply::Stdio { eof: true, .. } => break,
            Reply::Stdio { data, .. } if !data.is_empty() => {
                first.get_or_insert(t0.elapsed().as_secs_f64());
            }
            Reply::Stdio { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let running = first.expect("the container printed a line");
    let exit = c
        .call(Request::WaitProcess {
            container_id: "app".into(),
            process_id: None,
        })
        .unwrap();
    assert_eq!(
        exit,
        Reply::Exit {
            code: Some(0),
            signal: None
        }
    );
    uvm.stop().unwrap();
    Phases {
        kernel: agent_ready - init_ms / 1000.0,
        agent_ready,
        policy: policy_set,
        layer,
        scratch,
        storage,
        running,
    }
}

/// busybox at `/bin/busybox`, `/bin/sh`, and an `/init` that prints the marker and idles.
fn plain_initramfs() -> Vec<u8> {
    let mut a = Archive::new();
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    a.file("bin/busybox", 0o755, busybox).unwrap();
    a.add(
        "bin/sh",
        Entry::Symlink {
            target: "busybox".into(),
        },
    )
    .unwrap();
    a.add(
        "dev/console",
        Entry::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    )
    .unwrap();
    a.file(
        "init",
        0o755,
        format!("#!/bin/sh\necho {PEER_MARKER}\nwhile true; do /bin/busybox sleep 60; done\n")
            .into_bytes(),
    )
    .unwrap();
    a.to_newc().unwrap()
}

/// Seconds from starting QEMU until the plain `/init` printed its marker.
fn plain_boot(kernel: &Path, initrd: &Path, work: &Path) -> f64 {
    let console = work.join("plain-console.log");
    let _ = std::fs::remove_file(&console);
    let t0 = Instant::now();
    let mut qemu: Child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1024M"])
        .args(["-smp", "1", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", charter_uvm::CMDLINE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    let secs = loop {
        if std::fs::read_to_string(&console).is_ok_and(|t| t.contains(PEER_MARKER)) {
            break t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the plain initramfs never printed its marker"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    secs
}
