//! `charter policy generate` against a real registry on loopback: Debian's `docker-registry`,
//! images pushed by `skopeo` from OCI layouts built here (by `scripts/mkimage.py`) from
//! busybox-static. The generated policies are run through `charter policy simulate` with the
//! requests a correct agent sends for the pod (allowed) and hostile variants (denied).
//!
//! A test whose tools are missing says so on stderr and returns (scripts/deps.sh installs them;
//! CI runs as root with everything present).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use charter_policy::request::{
    CapabilitySets, CreateContainer, ExecInContainer, IdName, MountDevice, MountOverlay, User,
};
use charter_policy::Request;
use serde_json::Value;

mod common;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1001:\nvideo:x:44:app\n";
/// bcrypt of `s3cret` (cost 4), for the htpasswd registry.
const ALICE_BCRYPT: &str = "$2b$04$OvzXG7krSinffg193NH47uT7BQujoV6iDxKB1RVnCDYlxqSm0Mzs2";
const SANDBOX: &str = "/run/gcs/c/sandbox";

/// Whether every tool the registry tests need is here; prints why not.
fn tools_present(test: &str) -> bool {
    let mut missing = Vec::new();
    for tool in ["docker-registry", "skopeo", "python3"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
        if !found {
            missing.push(tool.to_owned());
        }
    }
    if !Path::new("/usr/bin/busybox").is_file() {
        missing.push("/usr/bin/busybox (busybox-static)".into());
    }
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: missing {} (install with scripts/deps.sh as root)",
        missing.join(", ")
    );
    false
}

fn charter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_charter"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ------------------------------------------------------------------------------------------
// The registry.

/// A `docker-registry serve` process on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<&Path>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "auth:\n  htpasswd:\n    realm: charter-test\n    path: {}\n",
                p.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: charter-test\n{auth}",
            root.path().join("storage").display()
        );
        let config_path = root.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(root.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Self { child, port, root };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reg.answers() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                fs::read_to_string(reg.root.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// `GET /v2/` answers 200 (or 401 with auth).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok()
            && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.1 401"))
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO_TAG`.
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"])
            .arg("--dest-tls-verify=false");
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
    }

    /// The registry's storage file of blob `digest` (`sha256:...`).
    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// Images.

fn base_layer() -> Vec<u8> {
    common::busybox(
        &["bin/", "etc/", "tmp/", "usr/", "usr/bin/"],
        "usr/bin/busybox",
        &[("bin/sh", "/usr/bin/busybox")],
    )
    .finish()
}

fn files_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    files
        .iter()
        .fold(common::Tar::new(), |t, (path, data)| {
            t.file(path, data, 0o644)
        })
        .finish()
}

/// Adds image `tag` to the OCI layout `out` (gzip layers, base first).
fn mkimage(out: &Path, tag: &str, layers: &[Vec<u8>], entrypoint: &[&str]) {
    common::mkimage(out, tag, layers, "gzip", entrypoint);
}

/// The `app` image (busybox + /etc/passwd and /etc/group; Entrypoint `busybox sleep`) and the
/// `tool` image (busybox + a script; Entrypoint `/bin/sh`), in one layout.
fn layouts(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let etc = files_layer(&[
        ("etc/passwd", PASSWD.as_bytes()),
        ("etc/group", GROUP.as_bytes()),
    ]);
    mkimage(
        &layout,
        "app",
        &[base_layer(), etc],
        &["/usr/bin/busybox", "sleep"],
    );
    let script = files_layer(&[("srv/run.sh", b"#!/bin/sh\nexec sleep 3600\n".as_slice())]);
    mkimage(&layout, "tool", &[base_layer(), script], &["/bin/sh"]);
    layout
}

// ------------------------------------------------------------------------------------------
// Requests.

fn idn(id: &str, name: &str) -> IdName {
    IdName {
        id: id.into(),
        name: name.into(),
    }
}

fn caps(list: &[&str]) -> CapabilitySets {
    let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    CapabilitySets {
        ambient: vec![],
        bounding: list.clone(),
        effective: list.clone(),
        inheritable: vec![],
        permitted: list,
    }
}

fn default_caps() -> CapabilitySets {
    caps(&charter_policy::DEFAULT_CAPABILITIES)
}

/// The framework's privileged capability list.
fn privileged_caps() -> CapabilitySets {
    let text = charter_policy::FRAMEWORK_REGO[0].1;
    let start = text.find("privileged_capability_list := [").unwrap();
    let body = &text[start..];
    let body = &body[..body.find(']').unwrap()];
    let list: Vec<&str> = body.split('"').skip(1).step_by(2).collect();
    assert!(list.len() > 30);
    CapabilitySets {
        inheritable: list.iter().map(|s| (*s).to_owned()).collect(),
        ..caps(&list)
    }
}

/// What a correct agent sends for one container, and how a hostile host would bend it.
struct Expect {
    create: CreateContainer,
    /// Exec requests the policy allows (probes).
    execs: Vec<Vec<String>>,
    /// Hostile variants of the create request, each with what it changes.
    hostile: Vec<(&'static str, CreateContainer)>,
}

fn base_create(
    cid: &str,
    argv: &[&str],
    env: &[&str],
    uid: IdName,
    groups: &[IdName],
) -> CreateContainer {
    CreateContainer {
        container_id: cid.into(),
        arg_list: argv.iter().map(|s| (*s).to_owned()).collect(),
        env_list: env.iter().map(|s| (*s).to_owned()).collect(),
        working_dir: "/".into(),
        sandbox_dir: SANDBOX.into(),
        huge_pages_dir: String::new(),
        mounts: vec![],
        privileged: false,
        no_new_privileges: false,
        user: Some(User {
            uid,
            groups: groups.to_vec(),
            umask: "0022".into(),
        }),
        capabilities: Some(default_caps()),
        seccomp_profile_sha256: String::new(),
    }
}

/// The usual hostile variants of `c`.
fn hostile(c: &CreateContainer) -> Vec<(&'static str, CreateContainer)> {
    let mut out = Vec::new();
    let mut v = c.clone();
    v.arg_list.push("--evil".into());
    out.push(("extra argument", v));
    let mut v = c.clone();
    v.arg_list = vec!["/bin/sh".into()];
    out.push(("other command", v));
    let mut v = c.clone();
    v.env_list.push("LD_PRELOAD=/tmp/evil.so".into());
    out.push(("injected env", v));
    let mut v = c.clone();
    v.working_dir = "/tmp".into();
    out.push(("other working dir", v));
    if !c.privileged {
        let mut v = c.clone();
        v.privileged = true;
        v.capabilities = Some(privileged_caps());
        out.push(("privileged", v));
        let mut v = c.clone();
        let mut sets = v.capabilities.clone().unwrap_or_default();
        for set in [&mut sets.bounding, &mut sets.effective, &mut sets.permitted] {
            set.push("CAP_SYS_ADMIN".into());
        }
        v.capabilities = Some(sets);
        out.push(("extra capability", v));
    }
    if c.user.as_ref().is_some_and(|u| u.uid.id != "0") {
        let mut v = c.clone();
        if let Some(u) = v.user.as_mut() {
            u.uid = idn("0", "root");
        }
        out.push(("root user", v));
    }
    let mut v = c.clone();
    v.mounts.push(charter_policy::request::Mount {
        destination: "/host".into(),
        source: "/".into(),
        kind: "bind".into(),
        options: vec!["rbind".into(), "rshared".into(), "rw".into()],
    });
    out.push(("host root mount", v));
    out
}

/// Builds the trace for the containers of a generated policy (`layers` from the summary, in
/// container order) and the expected decisions; runs `charter policy simulate` and compares.
fn simulate_pod(dir: &Path, policy: &Path, summary: &Value, expects: &[Expect]) {
    let mut trace: Vec<(String, bool)> = Vec::new();
    let mut push = |what: String, r: Request, allowed: bool| {
        let line = serde_json::json!({"rule": r.rule(), "input": request_input(&r)});
        trace.push((format!("{what}\t{line}"), allowed));
    };
    push(
        "unknown layer".into(),
        Request::MountDevice(MountDevice {
            target: "/run/layers/evil".into(),
            device_hash: "ab".repeat(32),
        }),
        false,
    );
    let containers = summary["containers"].as_array().unwrap();
    assert_eq!(containers.len(), expects.len(), "{summary:#}");
    for (c, e) in containers.iter().zip(expects) {
        let cid = &e.create.container_id;
        assert_eq!(c["name"], cid.as_str());
        let layers: Vec<String> = c["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        let mut paths = Vec::new();
        for (i, hash) in layers.iter().enumerate() {
            let target = format!("/run/layers/{cid}-{i}");
            push(
                format!("{cid}: mount layer {i}"),
                Request::MountDevice(MountDevice {
                    target: target.clone(),
                    device_hash: hash.clone(),
                }),
                true,
            );
            paths.push(target);
        }
        paths.reverse();
        push(
            format!("{cid}: overlay"),
            Request::MountOverlay(MountOverlay {
                container_id: cid.clone(),
                layer_paths: paths,
                target: format!("/run/gcs/c/{cid}/rootfs"),
            }),
            true,
        );
        for (what, v) in &e.hostile {
            push(
                format!("{cid}: hostile {what}"),
                Request::CreateContainer(v.clone()),
                false,
            );
        }
        push(
            format!("{cid}: create"),
            Request::CreateContainer(e.create.clone()),
            true,
        );
        let exec = |argv: &[String]| {
            Request::ExecInContainer(ExecInContainer {
                container_id: cid.clone(),
                arg_list: argv.to_vec(),
                env_list: e.create.env_list.clone(),
                working_dir: e.create.working_dir.clone(),
                no_new_privileges: e.create.no_new_privileges,
                user: e.create.user.clone(),
                capabilities: e.create.capabilities.clone(),
            })
        };
        for argv in &e.execs {
            push(format!("{cid}: exec probe {argv:?}"), exec(argv), true);
        }
        push(
            format!("{cid}: exec shell"),
            exec(&["/bin/sh".to_owned()]),
            false,
        );
    }
    let trace_path = dir.join("trace.jsonl");
    let lines: Vec<&str> = trace
        .iter()
        .map(|(l, _)| l.split_once('\t').unwrap().1)
        .collect();
    fs::write(&trace_path, lines.join("\n")).unwrap();
    let o = charter()
        .args(["policy", "simulate"])
        .arg(policy)
        .arg("--requests")
        .arg(&trace_path)
        .arg("--no-fail-on-deny")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let decisions: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decisions.len(), trace.len());
    let mut wrong = Vec::new();
    for ((line, want), got) in trace.iter().zip(&decisions) {
        let what = line.split_once('\t').unwrap().0;
        if (got["allowed"] == true) != *want {
            wrong.push(format!(
                "{what}: expected {}, got {}",
                if *want { "allowed" } else { "denied" },
                got["reason"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The `input` object of a request, as the trace wants it.
fn request_input(r: &Request) -> Value {
    match r {
        Request::MountDevice(x) => serde_json::to_value(x),
        Request::MountOverlay(x) => serde_json::to_value(x),
        Request::CreateContainer(x) => serde_json::to_value(x),
        Request::ExecInContainer(x) => serde_json::to_value(x),
        other => panic!("not used here: {}", other.rule()),
    }
    .unwrap()
}

/// Runs `charter policy generate` with the registry flags.
fn generate(reg: &Registry, pod: &Path, out: &Path, extra: &[&str]) -> Output {
    charter()
        .args(["policy", "generate"])
        .arg(pod)
        .arg("-o")
        .arg(out)
        .args(["--insecure-registry", &reg.host(), "--json"])
        .args(extra)
        .output()
        .unwrap()
}

const ENV_APP: [&str; 1] = ["PATH=/bin:/usr/bin"];

/// The expected request of the `web` container (app image, runAsUser 1000, a fieldRef env,
/// a liveness probe).
fn web_expect(cid: &str, argv: &[&str]) -> Expect {
    let mut env: Vec<&str> = ENV_APP.to_vec();
    env.extend(["MODE=prod", "POD_NAME=web-7d9f", "HOSTNAME=web-7d9f"]);
    let create = base_create(
        cid,
        argv,
        &env,
        idn("1000", "app"),
        &[idn("1001", "app"), idn("44", "video")],
    );
    let mut hostile = hostile(&create);
    let mut v = create.clone();
    v.env_list.retain(|e| !e.starts_with("POD_NAME="));
    hostile.push(("dropped required env", v));
    let mut v = create.clone();
    v.env_list[1] = "MODE=debug".into();
    hostile.push(("changed env value", v));
    Expect {
        create,
        execs: vec![vec!["/usr/bin/busybox".into(), "true".into()]],
        hostile,
    }
}

const WEB: &str = r#"
        - name: web
          image: HOST/team/app:v1
          args: ["3600"]
          env:
            - {name: MODE, value: prod}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          livenessProbe:
            exec: {command: ["/usr/bin/busybox", "true"]}
            periodSeconds: 5
          securityContext: {runAsUser: 1000}"#;

const SIDE: &str = r#"
        - name: side
          image: HOST/team/tool:v1
          args: ["/srv/run.sh"]
          workingDir: /srv
          readinessProbe:
            exec: {command: ["/usr/bin/busybox", "test", "-e", "/tmp/ready"]}
          securityContext:
            runAsUser: 2000
            runAsGroup: 3000
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}"#;

fn side_expect() -> Expect {
    let mut create = base_create(
        "side",
        &["/bin/sh", "/srv/run.sh"],
        &ENV_APP,
        idn("2000", ""),
        &[idn("3000", "")],
    );
    create.working_dir = "/srv".into();
    create.no_new_privileges = true;
    create.capabilities = Some(caps(&["CAP_NET_BIND_SERVICE"]));
    let mut hostile = hostile(&create);
    let mut v = create.clone();
    v.no_new_privileges = false;
    hostile.push(("no_new_privileges off", v));
    let mut v = create.clone();
    v.capabilities = Some(default_caps());
    hostile.push(("default caps after drop ALL", v));
    Expect {
        create,
        execs: vec![["/usr/bin/busybox", "test", "-e", "/tmp/ready"]
            .map(String::from)
            .to_vec()],
        hostile,
    }
}

#[test]
fn pods_from_a_registry_allow_exactly_their_requests() {
    if !tools_present("pods_from_a_registry_allow_exactly_their_requests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = layouts(dir.path());
    let reg = Registry::start(None);
    reg.push(&layout, "app", "team/app:v1", None);
    reg.push(&layout, "tool", "team/tool:v1", None);
    let host = reg.host();
    let cache = dir.path().join("cache");
    let cache_arg = ["--cache-dir", cache.to_str().unwrap()];

    // One container: a Pod.
    let pod1 = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: one}}\nspec:\n  containers:{}\n",
        WEB.replace("\n        ", "\n    ")
    )
    .replace("HOST", &host);
    // Two containers: a Deployment.
    let pod2 = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: two}}\nspec:\n  selector: {{matchLabels: {{app: two}}}}\n  template:\n    metadata: {{labels: {{app: two}}}}\n    spec:\n      containers:{WEB}{SIDE}\n"
    )
    .replace("HOST", &host);
    // Three containers: an init container, web pinned by digest below, a privileged admin.
    let pod3_template = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: three}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      initContainers:\n        - name: init\n          image: HOST/team/tool:v1\n          command: [/usr/bin/busybox, touch, /tmp/ready]\n          securityContext: {{runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1001}}\n      containers:{WEB}\n        - name: admin\n          image: HOST/team/app:v1\n          args: [\"60\"]\n          securityContext: {{privileged: true}}\n"
    )
    .replace("HOST", &host);

    let mut digests = Vec::new();
    for (name, yaml, expects) in [
        (
            "one",
            pod1,
            vec![web_expect("web", &["/usr/bin/busybox", "sleep", "3600"])],
        ),
        (
            "two",
            pod2,
            vec![
                web_expect("web", &["/usr/bin/busybox", "sleep", "3600"]),
                side_expect(),
            ],
        ),
        ("three", pod3_template, {
            let init = base_create(
                "init",
                &["/usr/bin/busybox", "touch", "/tmp/ready"],
                &ENV_APP,
                idn("1000", ""),
                &[idn("1001", "")],
            );
            let mut admin = base_create(
                "admin",
                &["/usr/bin/busybox", "sleep", "60"],
                &ENV_APP,
                idn("0", "root"),
                &[idn("0", "root")],
            );
            admin.privileged = true;
            admin.capabilities = Some(privileged_caps());
            vec![
                Expect {
                    hostile: hostile(&init),
                    create: init,
                    execs: vec![],
                },
                web_expect("web", &["/usr/bin/busybox", "sleep", "3600"]),
                Expect {
                    hostile: hostile(&admin),
                    create: admin,
                    execs: vec![],
                },
            ]
        }),
    ] {
        let pod = dir.path().join(format!("{name}.yaml"));
        fs::write(&pod, &yaml).unwrap();
        let policy = dir.path().join(format!("{name}.rego"));
        let annotated = dir.path().join(format!("{name}.annotated.yaml"));
        let o = generate(
            &reg,
            &pod,
            &policy,
            &[&cache_arg[..], &["--annotate", annotated.to_str().unwrap()]].concat(),
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        let bytes = fs::read(&policy).unwrap();
        assert_eq!(summary["digest"], charter_policygen::digest_hex(&bytes));
        // Tags are pinned to digests in the summary's sources.
        for image in summary["images"].as_array().unwrap() {
            let source = image["source"].as_str().unwrap();
            assert!(
                source.starts_with(&format!("docker://{host}/team/"))
                    && source.contains("@sha256:"),
                "{source}"
            );
        }
        assert!(fs::read_to_string(&annotated)
            .unwrap()
            .contains(charter_policygen::POLICY_ANNOTATION));
        simulate_pod(dir.path(), &policy, &summary, &expects);
        digests.push(summary["digest"].as_str().unwrap().to_owned());

        // Deterministic: again (all layers now cached), the same bytes.
        let o = generate(&reg, &pod, &policy, &cache_arg);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(fs::read(&policy).unwrap(), bytes, "{name}");
        let again: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(again["images"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["cached"] == true));
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 3);
}

/// Asserts a failed generation: non-zero exit, `message` on stderr, no output files.
fn assert_fails(o: &Output, outputs: &[&Path], message: &str, what: &str) {
    assert!(!o.status.success(), "{what}: succeeded");
    let err = stderr(o);
    assert!(err.contains(message), "{what}: {err}");
    for p in outputs {
        assert!(!p.exists(), "{what}: left {}", p.display());
    }
}

#[test]
fn registry_errors_are_clear_and_leave_no_output() {
    if !tools_present("registry_errors_are_clear_and_leave_no_output") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = layouts(dir.path());
    let reg = Registry::start(None);
    reg.push(&layout, "app", "team/app:v1", None);
    let host = reg.host();
    let out = dir.path().join("out.rego");
    let annotated = dir.path().join("out.yaml");
    let outputs = [out.as_path(), annotated.as_path()];
    let pod = |image: &str| {
        let p = dir.path().join("pod.yaml");
        fs::write(
            &p,
            format!("kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n    - {{name: c, image: \"{image}\"}}\n"),
        )
        .unwrap();
        p
    };
    let extra = ["--no-cache", "--annotate", annotated.to_str().unwrap()];

    // 404: a missing tag, a missing repository, a missing digest.
    for (image, message) in [
        (
            format!("{host}/team/app:v2"),
            format!("manifest {host}/team/app:v2 not found in the registry (404)"),
        ),
        (
            format!("{host}/team/nosuch:v1"),
            format!("manifest {host}/team/nosuch:v1 not found in the registry (404)"),
        ),
        (
            format!("{host}/team/app@sha256:{}", "0".repeat(64)),
            "not found in the registry (404)".to_owned(),
        ),
    ] {
        let o = generate(&reg, &pod(&image), &out, &extra);
        assert_fails(&o, &outputs, &message, &image);
        assert!(
            stderr(&o).contains(&format!("image {image}")),
            "{}",
            stderr(&o)
        );
    }
    // Plain HTTP is refused unless the registry is named insecure.
    let o = charter()
        .args(["policy", "generate"])
        .arg(pod(&format!("{host}/team/app:v1")))
        .arg("-o")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    assert_fails(
        &o,
        &outputs,
        &format!("image {host}/team/app:v1"),
        "no --insecure-registry",
    );

    // A corrupted layer blob in the registry's storage: the digest check while streaming
    // fails the generation, naming the image and the layer.
    let big = files_layer(&[("srv/big.bin", &vec![7u8; 300_000][..])]);
    let solo = dir.path().join("solo");
    mkimage(&solo, "solo", &[big], &["/bin/sh"]);
    reg.push(&solo, "solo", "team/solo:v1", None);
    let index: Value = serde_json::from_slice(&fs::read(solo.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &fs::read(
            solo.join("blobs/sha256")
                .join(manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let blob = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let path = reg.blob_data(&blob);
    let original = fs::read(&path).unwrap();
    assert!(original.starts_with(&[0x1f, 0x8b]), "expected a gzip blob");
    let image = format!("{host}/team/solo:v1");
    // A flipped bit in the gzip header's mtime still decompresses: only the blob digest,
    // checked while streaming, catches it.
    let mut bytes = original.clone();
    bytes[4] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let o = generate(&reg, &pod(&image), &out, &extra);
    assert_fails(
        &o,
        &outputs,
        &format!("image {image}: layer 0: content digest is "),
        "corrupted gzip header",
    );
    assert!(
        stderr(&o).contains(&format!("expected {blob}")),
        "{}",
        stderr(&o)
    );
    // A flipped byte in the compressed data: also an error naming the layer.
    let mut bytes = original;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let o = generate(&reg, &pod(&image), &out, &extra);
    assert_fails(
        &o,
        &outputs,
        &format!("image {image}: layer 0"),
        "corrupted data",
    );
}

#[test]
fn htpasswd_registry_needs_credentials() {
    if !tools_present("htpasswd_registry_needs_credentials") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    fs::write(&htpasswd, format!("alice:{ALICE_BCRYPT}\n")).unwrap();
    let layout = layouts(dir.path());
    let reg = Registry::start(Some(&htpasswd));
    reg.push(&layout, "app", "private/app:v1", Some("alice:s3cret"));
    let host = reg.host();
    let image = format!("{host}/private/app:v1");
    let pod = dir.path().join("pod.yaml");
    fs::write(
        &pod,
        format!("kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n    - {{name: c, image: \"{image}\"}}\n"),
    )
    .unwrap();
    let out = dir.path().join("out.rego");
    let config = |name: &str, auths: &str| {
        let p = dir.path().join(name);
        fs::write(&p, format!(r#"{{"auths":{{{auths}}}}}"#)).unwrap();
        p
    };
    let b64 = |s: &str| {
        use std::fmt::Write as _;
        // A tiny base64 encoder keeps this test free of extra dependencies.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    let _ = out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let denied = [
        ("no credentials", config("none.json", "")),
        (
            "wrong password",
            config(
                "wrong.json",
                &format!(r#""{host}":{{"auth":"{}"}}"#, b64("alice:nope")),
            ),
        ),
        (
            "other registry",
            config(
                "other.json",
                &format!(
                    r#""elsewhere.example":{{"auth":"{}"}}"#,
                    b64("alice:s3cret")
                ),
            ),
        ),
    ];
    for (what, auth) in denied {
        let o = generate(
            &reg,
            &pod,
            &out,
            &["--no-cache", "--registry-auth", auth.to_str().unwrap()],
        );
        assert_fails(
            &o,
            &[&out],
            &format!("registry {host} denied access to repository private/app (401/403)"),
            what,
        );
    }
    let good = config(
        "good.json",
        &format!(r#""{host}":{{"auth":"{}"}}"#, b64("alice:s3cret")),
    );
    let o = generate(
        &reg,
        &pod,
        &out,
        &["--no-cache", "--registry-auth", good.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["containers"][0]["layers"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        summary["digest"],
        charter_policygen::digest_hex(&fs::read(&out).unwrap())
    );
}
