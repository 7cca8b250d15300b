//! `charter policy generate`, run as the built binary against an OCI layout built by
//! `scripts/mkimage.py` from busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;

const REF: &str = "registry.example/app:1";

fn charter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_charter"))
}

/// One layer: busybox, /bin/sh, and an /etc/passwd with user `app` (1000:1001).
fn image(dir: &Path) -> PathBuf {
    let layer = common::busybox(
        &["bin/", "etc/", "usr/", "usr/bin/"],
        "usr/bin/busybox",
        &[("bin/sh", "/usr/bin/busybox")],
    )
    .file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        0o644,
    )
    .finish();
    let out = dir.join("layout");
    common::mkimage(
        &out,
        "app",
        &[layer],
        "zstd",
        &["/usr/bin/busybox", "sleep", "3600"],
    );
    out
}

const POD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example/app:1
          env: [{name: MODE, value: prod}]
          securityContext: {runAsUser: 1000, runAsGroup: 1001}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"#;

fn run(args: &[&str]) -> Output {
    charter().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn generates_checks_simulates_and_annotates() {
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path());
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, POD).unwrap();
    let policy = dir.path().join("policy.rego");
    let annotated = dir.path().join("annotated.yaml");
    let mapping = format!("{REF}=oci:{}:app", layout.display());
    let cache = dir.path().join("cache");
    let args = [
        "policy",
        "generate",
        pod.to_str().unwrap(),
        "-o",
        policy.to_str().unwrap(),
        "--image",
        &mapping,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--annotate",
        annotated.to_str().unwrap(),
        "--json",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let bytes = std::fs::read(&policy).unwrap();
    let digest = sha256_hex(&bytes);
    assert_eq!(summary["digest"], digest.as_str());
    assert_eq!(summary["pod"]["kind"], "Deployment");
    let root = summary["images"][0]["layers"][0]["root_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(summary["containers"][0]["layers"][0], root.as_str());

    // Same inputs (now from the cache) → same bytes.
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&policy).unwrap(), bytes);
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["images"][0]["layers"][0]["cached"], true);

    // The annotation carries the base64 policy on the template's metadata.
    let text = std::fs::read_to_string(&annotated).unwrap();
    let b64 = Command::new("base64")
        .arg("-w0")
        .arg(&policy)
        .output()
        .unwrap();
    let b64 = String::from_utf8(b64.stdout).unwrap();
    assert!(text.contains(&format!("io.katacontainers.config.agent.policy: {b64}")));
    assert!(text.contains("kind: Service"));

    // The policy loads, and the pod's own requests pass `policy simulate`.
    let o = run(&["policy", "check", policy.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let check: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(check["digest"], digest.as_str());
    let caps = charter_policygen::pod::DEFAULT_CAPABILITIES;
    let create = |argv: &[&str]| {
        serde_json::json!({"rule": "create_container", "input": {
            "containerID": "web", "argList": argv,
            "envList": ["PATH=/bin:/usr/bin", "MODE=prod", "HOSTNAME=web-1"],
            "workingDir": "/", "mounts": [],
            "user": {"uid": {"id": "1000", "name": "app"}, "groups": [{"id": "1001", "name": ""}], "umask": "0022"},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": [], "inheritable": []},
        }})
    };
    let trace = [
        serde_json::json!({"rule": "mount_device", "input": {"target": "/run/layers/l0", "deviceHash": root}}),
        serde_json::json!({"rule": "mount_overlay", "input": {"containerID": "web", "layerPaths": ["/run/layers/l0"], "target": "/run/gcs/c/web/rootfs"}}),
        create(&["/usr/bin/busybox", "sleep", "3600", "extra"]),
        create(&["/usr/bin/busybox", "sleep", "3600"]),
    ];
    let trace_path = dir.path().join("trace.jsonl");
    let lines: Vec<String> = trace.iter().map(Value::to_string).collect();
    std::fs::write(&trace_path, lines.join("\n")).unwrap();
    let o = run(&[
        "policy",
        "simulate",
        policy.to_str().unwrap(),
        "--requests",
        trace_path.to_str().unwrap(),
        "--no-fail-on-deny",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let allowed: Vec<bool> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["allowed"] == true)
        .collect();
    assert_eq!(allowed, [true, true, false, true]);
}

#[test]
fn failures_are_clear_and_leave_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path());
    let mapping = format!("{REF}=oci:{}:app", layout.display());
    let out = dir.path().join("out.rego");
    let cases: Vec<(&str, String, Vec<String>, &str)> = vec![
        ("malformed", "kind: Pod\nspec: [unclosed".into(), vec![mapping.clone()], "pod yaml document 0"),
        ("no mapping", POD.into(), vec![], "image registry.example/app:1: no local source given (--image) and registry pulls are off"),
        ("bad mapping", POD.into(), vec![format!("{REF}={}", layout.display())], "source must start with oci: or docker-archive:"),
        ("no equals", POD.into(), vec!["oci:/x".into()], "expected REF=oci:DIR[:TAG]"),
        (
            "unsupported",
            POD.replace("env: [{name: MODE, value: prod}]", "volumeMounts: [{name: v, mountPath: /v, subPathExpr: x}]"),
            vec![mapping.clone()],
            "spec.template.spec.containers[0].volumeMounts[0].subPathExpr is not supported",
        ),
        (
            "host path",
            POD.replace("env: [{name: MODE, value: prod}]", "volumeMounts: [{name: h, mountPath: /h}]")
                .replace("      containers:", "      volumes: [{name: h, hostPath: {path: /etc}}]\n      containers:"),
            vec![mapping.clone()],
            "hostPath \"/etc\" is refused",
        ),
    ];
    for (what, yaml, images, message) in cases {
        let pod = dir.path().join("pod.yaml");
        std::fs::write(&pod, yaml).unwrap();
        let mut cmd = charter();
        cmd.args([
            "policy",
            "generate",
            pod.to_str().unwrap(),
            "--no-cache",
            "--offline",
            "-o",
        ])
        .arg(&out);
        for m in &images {
            cmd.args(["--image", m]);
        }
        let o = cmd.output().unwrap();
        assert!(!o.status.success(), "{what}: succeeded");
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        assert!(!out.exists(), "{what}: left {}", out.display());
    }
}

#[test]
fn policy_and_annotated_yaml_are_written_both_or_neither() {
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path());
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, POD).unwrap();
    let mapping = format!("{REF}=oci:{}:app", layout.display());
    let good_rego = dir.path().join("policy.rego");
    let good_yaml = dir.path().join("annotated.yaml");
    let missing = dir.path().join("no/such/dir");
    for (rego, yaml, message) in [
        (good_rego.clone(), missing.join("a.yaml"), "a.yaml"),
        (missing.join("p.rego"), good_yaml.clone(), "p.rego"),
        (good_rego.clone(), good_rego.clone(), "name the same file"),
    ] {
        let o = run(&[
            "policy",
            "generate",
            pod.to_str().unwrap(),
            "--no-cache",
            "--offline",
            "--image",
            &mapping,
            "-o",
            rego.to_str().unwrap(),
            "--annotate",
            yaml.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{message}: succeeded");
        assert!(stderr(&o).contains(message), "{message}: {}", stderr(&o));
        for p in [&good_rego, &good_yaml] {
            assert!(!p.exists(), "{message}: left {}", p.display());
        }
    }
}
