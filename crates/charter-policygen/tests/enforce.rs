//! Generated policies, run through the real enforcer with the requests a correct agent sends
//! for the pod: allowed; hostile variants: denied.

mod common;

use std::num::NonZeroUsize;
use std::path::Path;

use charter_policy::request::Mount;
use charter_policy::request::{
    CapabilitySets, CreateContainer, ExecInContainer, IdName, MountDevice, MountOverlay, User,
};
use charter_policy::{Enforcer, Request};
use charter_policygen::{generate, Generated, LocalImages, Measuring, Options};

const REF: &str = "registry.example/app:1";
const SANDBOX: &str = "/run/gcs/c/sandbox";

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: demo}
spec:
  securityContext:
    supplementalGroups: [5000]
  volumes:
    - {name: cache, emptyDir: {}}
    - {name: conf, configMap: {name: conf}}
  containers:
    - name: web
      image: registry.example/app:1
      args: ["3600"]
      env:
        - {name: GREETING, value: hello}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - {name: MSG, value: "$(GREETING) world $$(NOPE)"}
      volumeMounts:
        - {name: cache, mountPath: /cache}
        - {name: conf, mountPath: /etc/conf}
      livenessProbe:
        exec: {command: ["/usr/bin/busybox", "true"]}
        periodSeconds: 5
      securityContext: {runAsUser: 1000}
    - name: sidecar
      image: registry.example/app:1
      command: ["/usr/bin/busybox", "sh", "-c", "sleep 100"]
      workingDir: /tmp
      securityContext:
        runAsUser: 2000
        runAsGroup: 3000
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
      readinessProbe:
        exec: {command: ["/usr/bin/busybox", "cat", "/tmp/ready"]}
    - name: admin
      image: registry.example/app:1
      securityContext: {privileged: true}
"#;

fn gen(dir: &Path, yaml: &str, options: &Options) -> Generated {
    let layout = common::app_image(dir);
    let mut images = LocalImages::default();
    images
        .add_mapping(&format!("{REF}=oci:{}:app", layout.display()))
        .unwrap();
    let measuring = Measuring {
        cache: None,
        scratch_dir: dir,
        threads: NonZeroUsize::MIN,
        observer: &(),
    };
    generate(yaml, &images, options, &measuring).unwrap()
}

fn caps(list: &[&str]) -> CapabilitySets {
    let v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    CapabilitySets {
        ambient: vec![],
        bounding: v.clone(),
        effective: v.clone(),
        inheritable: vec![],
        permitted: v,
    }
}

fn privileged_caps() -> CapabilitySets {
    let text = charter_policy::FRAMEWORK_REGO[0].1;
    let start = text.find("privileged_capability_list := [").unwrap();
    let body = &text[start..];
    let body = &body[..body.find(']').unwrap()];
    let list: Vec<String> = body
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(list.len() > 30);
    CapabilitySets {
        ambient: vec![],
        bounding: list.clone(),
        effective: list.clone(),
        inheritable: list.clone(),
        permitted: list,
    }
}

fn idn(id: &str, name: &str) -> IdName {
    IdName {
        id: id.into(),
        name: name.into(),
    }
}

fn bind(dest: &str, kind: &str, name: &str, mode: &str) -> Mount {
    Mount {
        destination: dest.into(),
        source: format!("{SANDBOX}/tmp/atlas/{kind}/{name}"),
        kind: "bind".into(),
        options: vec!["rbind".into(), "rshared".into(), mode.into()],
    }
}

/// Mounts the container's layers and overlay as the agent would.
fn mount(e: &mut Enforcer, cid: &str, layers: &[String]) {
    let mut paths = Vec::new();
    for (i, hash) in layers.iter().enumerate() {
        let target = format!("/run/layers/{cid}-{i}");
        let r = Request::MountDevice(MountDevice {
            target: target.clone(),
            device_hash: hash.clone(),
        });
        e.check(&r).unwrap().commit().unwrap();
        paths.push(target);
    }
    paths.reverse();
    let r = Request::MountOverlay(MountOverlay {
        container_id: cid.into(),
        layer_paths: paths,
        target: format!("/run/gcs/c/{cid}/rootfs"),
    });
    e.check(&r).unwrap().commit().unwrap();
}

fn web(cid: &str) -> CreateContainer {
    CreateContainer {
        container_id: cid.into(),
        arg_list: vec!["/usr/bin/busybox".into(), "sleep".into(), "3600".into()],
        env_list: vec![
            "PATH=/bin:/usr/bin".into(),
            "GREETING=hello".into(),
            "POD_NAME=demo-7f9c".into(),
            "MSG=hello world $(NOPE)".into(),
            "HOSTNAME=demo".into(),
            "KUBERNETES_SERVICE_HOST=10.0.0.1".into(),
            "KUBERNETES_SERVICE_PORT=443".into(),
        ],
        working_dir: "/".into(),
        sandbox_dir: SANDBOX.into(),
        huge_pages_dir: String::new(),
        mounts: vec![
            bind("/cache", "emptydir", "cache", "rw"),
            bind("/etc/conf", "configmap", "conf", "ro"),
            bind("/dev/termination-log", "termination", "web", "rw"),
            Mount {
                destination: "/etc/hosts".into(),
                source: format!("{SANDBOX}/hosts"),
                kind: "bind".into(),
                options: vec!["rbind".into(), "rprivate".into(), "ro".into()],
            },
        ],
        privileged: false,
        no_new_privileges: false,
        user: Some(User {
            uid: idn("1000", "app"),
            groups: vec![idn("1001", "app"), idn("44", "video"), idn("5000", "")],
            umask: "0022".into(),
        }),
        capabilities: Some(caps(&charter_policygen::pod::DEFAULT_CAPABILITIES)),
        seccomp_profile_sha256: String::new(),
    }
}

fn sidecar(cid: &str) -> CreateContainer {
    CreateContainer {
        arg_list: ["/usr/bin/busybox", "sh", "-c", "sleep 100"]
            .map(String::from)
            .to_vec(),
        env_list: vec!["PATH=/bin:/usr/bin".into()],
        working_dir: "/tmp".into(),
        mounts: vec![],
        no_new_privileges: true,
        user: Some(User {
            uid: idn("2000", ""),
            groups: vec![idn("3000", ""), idn("5000", "")],
            umask: "0022".into(),
        }),
        capabilities: Some(caps(&["CAP_NET_BIND_SERVICE"])),
        ..web(cid)
    }
}

fn admin(cid: &str) -> CreateContainer {
    CreateContainer {
        arg_list: ["/usr/bin/busybox", "sleep"].map(String::from).to_vec(),
        env_list: vec!["PATH=/bin:/usr/bin".into()],
        mounts: vec![],
        privileged: true,
        user: Some(User {
            uid: idn("0", "root"),
            groups: vec![idn("0", "root"), idn("5000", "")],
            umask: "0022".into(),
        }),
        capabilities: Some(privileged_caps()),
        ..web(cid)
    }
}

fn denied(e: &mut Enforcer, r: CreateContainer, why: &str) {
    let err = e
        .check(&Request::CreateContainer(r))
        .err()
        .unwrap_or_else(|| panic!("{why}: allowed"));
    eprintln!("{why}: {}", err.explanation());
}

fn allowed(e: &mut Enforcer, r: Request) {
    match e.check(&r) {
        Ok(a) => a.commit().unwrap(),
        Err(d) => panic!("{} denied: {}", r.rule(), d.explanation()),
    }
}

fn exec(cid: &str, argv: &[&str], base: &CreateContainer) -> Request {
    Request::ExecInContainer(ExecInContainer {
        container_id: cid.into(),
        arg_list: argv.iter().map(|s| (*s).to_owned()).collect(),
        env_list: base.env_list.clone(),
        working_dir: base.working_dir.clone(),
        no_new_privileges: base.no_new_privileges,
        user: base.user.clone(),
        capabilities: base.capabilities.clone(),
    })
}

#[test]
fn three_container_pod_allows_exactly_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    let g = gen(dir.path(), POD, &Options::default());
    assert_eq!(g.document.containers.len(), 3);
    let layers = g.document.containers[0].layers.clone();
    assert_eq!(layers.len(), 2);
    assert_eq!(g.digest, charter_policygen::digest_hex(g.rego.as_bytes()));
    let mut e = Enforcer::new(g.rego.as_bytes()).unwrap();
    assert_eq!(hex::encode(e.policy_digest()), g.digest);

    // Hostile: a layer the policy does not list.
    let r = Request::MountDevice(MountDevice {
        target: "/run/layers/evil".into(),
        device_hash: "ab".repeat(32),
    });
    assert!(e.check(&r).is_err());

    mount(&mut e, "web", &layers);
    let mut bad = web("web");
    bad.arg_list.push("--evil".into());
    denied(&mut e, bad, "changed argv");
    let mut bad = web("web");
    bad.env_list.push("LD_PRELOAD=/tmp/x.so".into());
    denied(&mut e, bad, "injected env");
    let mut bad = web("web");
    bad.env_list.retain(|v| !v.starts_with("POD_NAME="));
    denied(&mut e, bad, "dropped required env");
    let mut bad = web("web");
    bad.env_list[1] = "GREETING=bye".into();
    denied(&mut e, bad, "changed env value");
    let mut bad = web("web");
    bad.mounts.push(Mount {
        destination: "/host".into(),
        source: "/".into(),
        kind: "bind".into(),
        options: vec!["rbind".into(), "rshared".into(), "rw".into()],
    });
    denied(&mut e, bad, "extra mount");
    let mut bad = web("web");
    bad.mounts[1].options[2] = "rw".into();
    denied(&mut e, bad, "configmap mounted rw");
    let mut bad = web("web");
    bad.privileged = true;
    denied(&mut e, bad, "privileged");
    let mut bad = web("web");
    bad.user.as_mut().unwrap().uid = idn("0", "root");
    denied(&mut e, bad, "root user");
    let mut bad = web("web");
    bad.working_dir = "/tmp".into();
    denied(&mut e, bad, "working dir");
    allowed(&mut e, Request::CreateContainer(web("web")));
    // Probe exec allowed; a shell is not.
    allowed(
        &mut e,
        exec("web", &["/usr/bin/busybox", "true"], &web("web")),
    );
    assert!(e.check(&exec("web", &["/bin/sh"], &web("web"))).is_err());

    mount(&mut e, "side", &layers);
    let mut bad = sidecar("side");
    bad.no_new_privileges = false;
    denied(&mut e, bad, "no_new_privileges off");
    let mut bad = sidecar("side");
    bad.capabilities = Some(caps(&charter_policygen::pod::DEFAULT_CAPABILITIES));
    denied(&mut e, bad, "default caps after drop ALL");
    allowed(&mut e, Request::CreateContainer(sidecar("side")));
    allowed(
        &mut e,
        exec(
            "side",
            &["/usr/bin/busybox", "cat", "/tmp/ready"],
            &sidecar("side"),
        ),
    );

    mount(&mut e, "admin", &layers);
    allowed(&mut e, Request::CreateContainer(admin("admin")));
}

#[test]
fn debug_mode_and_deny_stdio_are_in_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        debug_mode: true,
        deny_stdio: true,
        ..Options::default()
    };
    let g = gen(dir.path(), POD, &options);
    assert!(g.rego.starts_with("# DEBUG MODE"));
    assert!(g.document.allow_properties_access && g.document.allow_runtime_logging);
    assert!(g.document.containers.iter().all(|c| !c.allow_stdio_access));
    let mut e = Enforcer::new(g.rego.as_bytes()).unwrap();
    let layers = g.document.containers[0].layers.clone();
    mount(&mut e, "web", &layers);
    let created = e.check(&Request::CreateContainer(web("web"))).unwrap();
    assert!(!created.allow_stdio_access());
    created.commit().unwrap();
    allowed(&mut e, exec("web", &["/bin/sh"], &web("web")));
    allowed(&mut e, Request::GetProperties(Default::default()));
}

#[test]
fn generation_is_deterministic_and_cache_gives_same_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen(dir.path(), POD, &Options::default());
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = charter_image::Cache::open(cache_dir.path()).unwrap();
    let mut images = LocalImages::default();
    images
        .add_mapping(&format!(
            "{REF}=oci:{}:app",
            dir.path().join("app").display()
        ))
        .unwrap();
    let mut digests = Vec::new();
    for _ in 0..2 {
        let measuring = Measuring {
            cache: Some(&cache),
            scratch_dir: dir.path(),
            threads: NonZeroUsize::new(2).unwrap(),
            observer: &(),
        };
        let g = generate(POD, &images, &Options::default(), &measuring).unwrap();
        assert_eq!(g.rego, a.rego);
        digests.push(g.digest);
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], a.digest);
}
