//! `charter policy check` and `charter policy simulate`, run as the built binary.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ALLOW_ALL: &str = "package policy\n\napi_svn := \"0.10.0\"\n\nmount_device := {\"allowed\": true}\nget_properties := {\"allowed\": true}\n";

fn charter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_charter"))
}

fn policy_with_web(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"package policy

api_version := "0.10.0"
framework_version := "0.1.0"

containers := [{{"name": "web", "layers": ["{h}"], "command": ["/web"], "env_rules": [{{"pattern": "PATH=/bin", "strategy": "string", "required": true}}], "working_dir": "/", "mounts": [], "exec_processes": [], "signals": [15], "allow_elevated": false, "allow_stdio_access": true, "no_new_privileges": false, "user": null, "capabilities": null, "seccomp_profile_sha256": ""}}]

mount_device := data.framework.mount_device
mount_overlay := data.framework.mount_overlay
create_container := data.framework.create_container
get_properties := data.framework.get_properties
reason := data.framework.reason
"#,
        h = "1".repeat(64)
    );
    let p = dir.join("policy.rego");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_prints_digest_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("allow.rego");
    std::fs::write(&p, ALLOW_ALL).unwrap();
    let out = charter()
        .args(["policy", "check"])
        .arg(&p)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // sha256 of the exact bytes.
    let digest = v["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert_eq!(v["api_version"], "0.10.0");
    assert_eq!(v["enforcement_points"].as_array().unwrap().len(), 2);

    let text = charter()
        .args(["policy", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(text.status.success());
    let s = String::from_utf8(text.stdout).unwrap();
    assert!(s.contains(digest), "{s}");
    assert!(s.contains("missing"), "{s}");
}

#[test]
fn check_rejects_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.rego");
    std::fs::write(&p, "package policy\ncontainers := [\n").unwrap();
    let out = charter()
        .args(["policy", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.rego"));
}

#[test]
fn simulate_replays_in_order_and_fails_on_deny() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy_with_web(dir.path());
    let h = "1".repeat(64);
    let caps = r#"["CAP_AUDIT_WRITE","CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_MKNOD","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SETFCAP","CAP_SETGID","CAP_SETPCAP","CAP_SETUID","CAP_SYS_CHROOT"]"#;
    let trace = [
        format!(r#"{{"rule": "mount_device", "input": {{"target": "/run/layers/p0", "deviceHash": "{h}"}}}}"#),
        format!(r#"{{"rule": "mount_device", "input": {{"target": "/run/layers/p0", "deviceHash": "{h}"}}}}"#),
        r#"{"rule": "mount_overlay", "input": {"containerID": "c1", "layerPaths": ["/run/layers/p0"], "target": "/run/gcs/c/c1/rootfs"}}"#.to_owned(),
        r#"{"rule": "create_container", "input": {"containerID": "c1", "argList": ["/web"], "envList": ["PATH=/bin", "TOKEN=s3cret"], "workingDir": "/"}}"#.to_owned(),
        format!(r#"{{"rule": "create_container", "input": {{"containerID": "c1", "argList": ["/web"], "envList": ["PATH=/bin"], "workingDir": "/", "capabilities": {{"bounding": {caps}, "effective": {caps}, "permitted": {caps}}}}}}}"#),
        r#"{"rule": "get_properties"}"#.to_owned(),
    ];
    let t = dir.path().join("trace.jsonl");
    std::fs::write(&t, trace.join("\n")).unwrap();
    let out = charter()
        .args(["policy", "simulate"])
        .arg(&p)
        .arg("--requests")
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("s3cret"), "env value leaked: {stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let allowed: Vec<bool> = lines
        .iter()
        .map(|l| l["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(allowed, [true, false, true, false, true, false]);
    assert_eq!(lines[1]["rule"], "mount_device");
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .contains("device already mounted at path"));
    assert!(lines[3]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid env list: TOKEN"));
    assert!(lines[3]["reason"]
        .as_str()
        .unwrap()
        .contains("nearest container web"));
    assert_eq!(lines[4]["allow_stdio_access"], true);
    assert!(lines[5]["reason"]
        .as_str()
        .unwrap()
        .contains("properties access not allowed"));

    let ok = charter()
        .args(["policy", "simulate"])
        .arg(&p)
        .arg("--requests")
        .arg(&t)
        .arg("--no-fail-on-deny")
        .output()
        .unwrap();
    assert!(ok.status.success());
}

#[test]
fn simulate_reports_malformed_requests_as_denials() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("allow.rego");
    std::fs::write(&p, ALLOW_ALL).unwrap();
    let t = dir.path().join("trace.jsonl");
    std::fs::write(
        &t,
        "{\"rule\": \"mount_device\", \"input\": {\"target\": 5}}\n{\"rule\": \"reboot_host\"}\n",
    )
    .unwrap();
    let out = charter()
        .args(["policy", "simulate"])
        .arg(&p)
        .arg("--requests")
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["allowed"] == false));

    std::fs::write(&t, "not json\n").unwrap();
    let out = charter()
        .args(["policy", "simulate"])
        .arg(&p)
        .arg("--requests")
        .arg(&t)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
