//! Pod start in the sandbox UVM vs. the same image run directly by the same OCI runtime (runc),
//! in the same run. Needs root. Prints the phases, the overhead, the share of policy decisions
//! and the agent's size and idle RSS.
//!
//! `cargo bench -p charter-agent --bench pod_start` (as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use charter_agent_api::{paths, Reply, Request};
use charter_host::{LaunchConfig, SandboxLauncher, Uvm};
use charter_policy::{Enforcer, Request as PolicyRequest};
use common::*;
use sha2::{Digest, Sha256};

const RUNS: usize = 10;
const CMD: [&str; 1] = ["/bin/true"];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The peer: the same layers unpacked into a directory, the same kind of spec, `runc run`.
fn runc_direct(rootfs: &Path, work: &Path, i: usize) -> Duration {
    let bundle = work.join(format!("bundle-{i}"));
    std::fs::create_dir_all(&bundle).unwrap();
    let spec = charter_oci::build_spec(&charter_oci::ContainerConfig {
        id: format!("peer-{i}"),
        rootfs: rootfs.to_owned(),
        readonly_rootfs: false,
        process: charter_oci::ProcessConfig {
            args: CMD.iter().map(|s| s.to_string()).collect(),
            env: vec![PATH_ENV.into()],
            cwd: "/".into(),
            capabilities: charter_oci::Capabilities {
                bounding: default_caps().bounding,
                effective: default_caps().effective,
                permitted: default_caps().permitted,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    charter_oci::write_bundle(&bundle, &spec).unwrap();
    let t = Instant::now();
    let st = std::process::Command::new("runc")
        .args([
            "--root",
            work.join("runc").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(&bundle)
        .arg(format!("peer-{i}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let d = t.elapsed();
    assert!(st.success());
    d
}

struct Phases {
    launch: Duration,
    policy: Duration,
    layers: Duration,
    container: Duration,
    total: Duration,
}

fn charter_pod(policy: &str, layers: &[Layer]) -> Phases {
    let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
    let t0 = Instant::now();
    let mut uvm = SandboxLauncher {
        simulator_dir: sim_dir(),
        ..SandboxLauncher::default()
    }
    .launch_sandbox(&LaunchConfig {
        policy_digest: digest,
        agent: AGENT.into(),
    })
    .unwrap();
    let launch = t0.elapsed();
    for l in layers {
        std::fs::hard_link(&l.file, uvm.layer_dir().join(l.file.file_name().unwrap()))
            .or_else(|_| {
                std::fs::copy(&l.file, uvm.layer_dir().join(l.file.file_name().unwrap())).map(drop)
            })
            .unwrap();
    }
    let mut c = uvm.connect().unwrap();
    let t1 = Instant::now();
    c.call(Request::SetPolicy {
        policy: policy.into(),
    })
    .unwrap();
    let policy_t = t1.elapsed();
    let t2 = Instant::now();
    for l in layers {
        c.call(Request::MountDevice {
            source: l.file.file_name().unwrap().to_str().unwrap().into(),
            target: paths::layer(&l.root_hash),
            device_hash: l.root_hash.clone(),
        })
        .unwrap();
    }
    let layers_t = t2.elapsed();
    let t3 = Instant::now();
    c.call(Request::ScratchMount {
        target: paths::scratch("starter"),
    })
    .unwrap();
    c.call(Request::MountOverlay {
        container_id: "starter".into(),
        layer_paths: vec![paths::layer(&layers[0].root_hash)],
        target: paths::rootfs("starter"),
    })
    .unwrap();
    c.call(Request::CreateContainer(simple_create("starter", &CMD)))
        .unwrap();
    c.call(Request::StartContainer {
        container_id: "starter".into(),
    })
    .unwrap();
    let r = c
        .call(Request::WaitProcess {
            container_id: "starter".into(),
            process_id: None,
        })
        .unwrap();
    assert_eq!(
        r,
        Reply::Exit {
            code: Some(0),
            signal: None
        }
    );
    let container = t3.elapsed();
    let total = t0.elapsed();
    uvm.stop().unwrap();
    Phases {
        launch,
        policy: policy_t,
        layers: layers_t,
        container,
        total,
    }
}

/// The policy decisions of one pod start, replayed in-process against the same policy.
fn decisions(policy: &str, base: &Layer) -> Duration {
    let reqs = [
        PolicyRequest::from_rule_input(
            "mount_device",
            serde_json::json!({"target": paths::layer(&base.root_hash), "deviceHash": base.root_hash}),
        )
        .unwrap(),
        PolicyRequest::from_rule_input(
            "scratch_mount",
            serde_json::json!({"target": paths::scratch("starter"), "encrypted": true}),
        )
        .unwrap(),
        PolicyRequest::from_rule_input(
            "mount_overlay",
            serde_json::json!({"containerID": "starter", "layerPaths": [paths::layer(&base.root_hash)], "target": paths::rootfs("starter")}),
        )
        .unwrap(),
    ];
    let create = simple_create("starter", &CMD);
    let create = PolicyRequest::from_rule_input(
        "create_container",
        serde_json::json!({
            "containerID": "starter", "argList": create.args, "envList": create.env,
            "workingDir": "/", "sandboxDir": paths::SANDBOX_DIR, "hugePagesDir": "",
            "mounts": create.mounts, "privileged": false, "noNewPrivileges": false,
            "user": {"uid": {"id": "0", "name": "root"}, "groups": [{"id": "0", "name": "root"}], "umask": "0022"},
            "capabilities": create.capabilities, "seccompProfileSHA256": "",
        }),
    )
    .unwrap();
    let mut times = Vec::new();
    for _ in 0..50 {
        let mut e = Enforcer::new(policy).unwrap();
        let t = Instant::now();
        for r in reqs.iter().chain(std::iter::once(&create)) {
            e.check(r).expect("allowed").commit().unwrap();
        }
        times.push(t.elapsed());
    }
    median(times)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    if !is_root() {
        eprintln!("pod_start: skipped (needs root: namespaces, loop devices, mounts, runc)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let base = base_layer(work.path());
    let app = app_layer(work.path());
    // The test pod's policy plus a container that runs /bin/true.
    let mut doc = policy(&base, &app);
    doc.containers.push(charter_policy::model::Container {
        name: Some("starter".into()),
        layers: vec![base.root_hash.clone()],
        command: CMD.iter().map(|s| s.to_string()).collect(),
        env_rules: vec![charter_policy::model::EnvRule::string(PATH_ENV, false)],
        working_dir: "/".into(),
        ..Default::default()
    });
    let policy = doc.to_rego();
    // The peer's rootfs: the same base layer, unpacked through a loop mount copy.
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "dev", "sys", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let layers = [base, app];
    // warm up both
    runc_direct(&rootfs, work.path(), 999);
    charter_pod(&policy, &layers);
    let mut peer = Vec::new();
    let mut ours = Vec::new();
    let mut phases = Vec::new();
    for i in 0..RUNS {
        peer.push(runc_direct(&rootfs, work.path(), i));
        let p = charter_pod(&policy, &layers);
        ours.push(p.total);
        phases.push(p);
    }
    let (peer_m, ours_m) = (median(peer), median(ours));
    let pm = |f: fn(&Phases) -> Duration| ms(median(phases.iter().map(f).collect()));
    let dec = decisions(&policy, &layers[0]);
    println!("pod start, median of {RUNS} (container /bin/true to exit)");
    println!("  runc run directly (peer)        {:8.1} ms", ms(peer_m));
    println!("  charter sandbox pod start       {:8.1} ms", ms(ours_m));
    println!(
        "    UVM launch {:.1} ms | set_policy (attest + load) {:.1} ms | 2 layers verified {:.1} ms | scratch+overlay+create+start+exit {:.1} ms",
        pm(|p| p.launch),
        pm(|p| p.policy),
        pm(|p| p.layers),
        pm(|p| p.container)
    );
    println!(
        "  overhead vs runc                {:8.1} ms (goal <= 150 ms), ratio {:.2}x",
        ms(ours_m) - ms(peer_m),
        ours_m.as_secs_f64() / peer_m.as_secs_f64()
    );
    println!(
        "  policy decisions of the start   {:8.3} ms = {:.2}% of the start (goal <= 1%)",
        ms(dec),
        100.0 * dec.as_secs_f64() / ours_m.as_secs_f64()
    );
    let size = std::fs::metadata(AGENT).map(|m| m.len()).unwrap_or(0);
    println!(
        "  agent binary {} ({:.1} MiB)",
        AGENT,
        size as f64 / 1048576.0
    );
    // idle RSS: a fresh UVM with the policy set
    let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
    let uvm = SandboxLauncher {
        simulator_dir: sim_dir(),
        ..SandboxLauncher::default()
    }
    .launch_sandbox(&LaunchConfig {
        policy_digest: digest,
        agent: AGENT.into(),
    })
    .unwrap();
    uvm.connect()
        .unwrap()
        .call(Request::SetPolicy {
            policy: policy.clone(),
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let agent_pid = std::process::Command::new("pgrep")
        .args(["-n", "-x", "charter-agent"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    match agent_pid.and_then(rss_kib) {
        Some(k) => println!(
            "  agent idle RSS (policy loaded)  {:.1} MiB",
            k as f64 / 1024.0
        ),
        None => println!("  agent idle RSS: could not read"),
    }
    drop(uvm);
}
