//! `charter run`, `charter exec` and `charter stop` end to end: a two-container pod from YAML,
//! its policy from `charter policy generate`, run with the real agent and runc, in the sandbox
//! UVM (loop devices, overlayfs) and in the QEMU UVM (`charter uvm build`, TCG, dm-verity
//! layer disks, encrypted scratch). Needs root.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const REF: &str = "registry.example/e2e:1";

fn charter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charter"));
    let agent = Path::new(env!("CARGO_BIN_EXE_charter")).with_file_name("charter-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build it first (cargo build -p charter-agent)",
        agent.display()
    );
    c.env("CHARTER_AGENT", agent);
    c
}

fn image(dir: &Path) -> PathBuf {
    let links: Vec<(String, &str)> = ["sh", "echo", "sleep", "id", "cat", "true"]
        .iter()
        .map(|a| (format!("bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    let layer = common::busybox(&["bin/", "etc/", "tmp/"], "bin/busybox", &links)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644)
        .finish();
    let out = dir.join("layout");
    common::mkimage(&out, "e2e", &[layer], "gzip", &["/bin/sh"]);
    out
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: e2e}
spec:
  containers:
    - name: server
      image: registry.example/e2e:1
      command: ["/bin/sh", "-c", "echo server-up; trap 'echo server-down; exit 0' TERM; while true; do sleep 1; done"]
      livenessProbe:
        exec: {command: ["/bin/echo", "alive"]}
    - name: worker
      image: registry.example/e2e:1
      command: ["/bin/sh", "-c", "echo worker says $WHO; id -u"]
      env: [{name: WHO, value: charter}]
      securityContext: {runAsUser: 1000}
"#;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
#[ignore = "needs root: namespaces, loop devices, mounts and runc"]
fn two_container_pod_runs_execs_and_stops() {
    pod_runs_execs_and_stops(&[], Duration::from_secs(60));
}

#[test]
#[ignore = "needs root, qemu-system-x86, linux-image-cloud-amd64 and a static charter-agent (built here)"]
fn two_container_pod_runs_execs_and_stops_in_the_qemu_uvm() {
    assert!(is_root(), "run as root");
    let image = common::uvm_image().to_str().unwrap().to_owned();
    pod_runs_execs_and_stops(
        &["--uvm", "qemu", "--uvm-image", &image],
        Duration::from_secs(180),
    );
}

#[test]
#[ignore = "needs root, qemu-system-x86, linux-image-cloud-amd64 and a static charter-agent (built here)"]
fn the_demo_runs_in_the_qemu_uvm() {
    assert!(is_root(), "run as root");
    let o = charter()
        .args(["demo", "--uvm", "qemu", "--uvm-image"])
        .arg(common::uvm_image())
        .output()
        .unwrap();
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(o.status.success(), "{stderr}");
    for line in [
        "running the pod in the QEMU UVM",
        "= policy sha256: ok",
        "= the UVM's expected measurement: ok",
        "create_container with argv and env changed: DENIED",
        "mount_device of a layer with one flipped byte: REFUSED (Integrity)",
        "dm-verity refused the block",
        "[app] hello from inside the attested pod",
        "demo: OK",
    ] {
        assert!(stderr.contains(line), "{line:?} missing from:\n{stderr}");
    }
}

fn pod_runs_execs_and_stops(uvm: &[&str], come_up: Duration) {
    assert!(is_root(), "run as root");
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path());
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, POD).unwrap();
    let policy = dir.path().join("policy.rego");
    let mapping = format!("{REF}=oci:{}:e2e", layout.display());
    let cache = dir.path().join("cache");
    let o = charter()
        .args(["policy", "generate", "-q"])
        .arg(&pod)
        .arg("-o")
        .arg(&policy)
        .args(["--image", &mapping, "--offline", "--cache-dir"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let group = format!("e2e-{}", std::process::id());
    let mut run = charter()
        .arg("run")
        .arg(&pod)
        .arg("--policy")
        .arg(&policy)
        .args([
            "--image",
            &mapping,
            "--offline",
            "--name",
            &group,
            "--cache-dir",
        ])
        .arg(&cache)
        .args(uvm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pod's output, as it comes.
    let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = run.stdout.take().unwrap();
    let sink = std::sync::Arc::clone(&collected);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let record = Path::new("/run/charter-groups").join(format!("{group}.json"));
    let start = Instant::now();
    while !record.exists() {
        if let Ok(Some(st)) = run.try_wait() {
            let mut err = String::new();
            run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("charter run exited early ({st}): {err}");
        }
        assert!(start.elapsed() < come_up, "the group never came up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // An exec the policy lists (the liveness probe) runs, and its output comes back.
    let o = charter()
        .args(["exec", &group, "server", "--", "/bin/echo", "alive"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "alive\n");
    // A shell is not listed: denied with the policy's explanation, nothing runs.
    let o = charter()
        .args(["exec", &group, "server", "--", "/bin/sh", "-c", "id"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exec_in_container denied"), "{err}");
    assert!(o.stdout.is_empty());

    // Let the worker finish, then stop the group from "another terminal".
    let start = Instant::now();
    while !collected.lock().unwrap().contains("[worker] 1000\n") {
        assert!(start.elapsed() < come_up, "the worker never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = charter().args(["stop", &group]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = run.wait_with_output().unwrap();
    reader.join().unwrap();
    let stdout = collected.lock().unwrap().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}");
    for line in [
        "[server] server-up\n",
        "[worker] worker says charter\n",
        "[worker] 1000\n",
        "[server] server-down\n",
    ] {
        assert!(
            stdout.contains(line),
            "{line:?} missing from:\n{stdout}\n{stderr}"
        );
    }
    assert!(stderr.contains("accepted (HOST_DATA)"), "{stderr}");
    assert!(!record.exists(), "the group record outlived the group");
}
