//! Spec building: pure, no root needed.

use std::path::PathBuf;

use charter_oci::{
    build_process, build_spec, spec_json, write_bundle, Capabilities, ContainerConfig,
    ContainerState, ContainerStatus, MountConfig, NamespaceKind, Pid, ProcessConfig, Spec,
    SpecError, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, KNOWN_CAPABILITIES,
};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn base() -> ContainerConfig {
    let caps = names(&["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"]);
    ContainerConfig {
        id: "web-1".to_owned(),
        rootfs: PathBuf::from("/run/charter/c/web-1/rootfs"),
        readonly_rootfs: false,
        process: ProcessConfig {
            args: names(&["/bin/sh", "-c", "echo hi"]),
            env: names(&["PATH=/usr/bin:/bin", "SECRET=hunter2"]),
            cwd: "/srv".to_owned(),
            uid: 1000,
            gid: 1001,
            additional_gids: vec![5, 6],
            umask: Some(0o022),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                inheritable: Vec::new(),
                permitted: caps,
                ambient: Vec::new(),
            },
            no_new_privileges: true,
        },
        privileged: false,
        hostname: "web".to_owned(),
        mounts: vec![MountConfig {
            destination: "/data".to_owned(),
            source: "/run/charter/volumes/data".to_owned(),
            kind: "bind".to_owned(),
            options: names(&["rbind", "rshared", "ro"]),
        }],
    }
}

fn json(spec: &Spec) -> serde_json::Value {
    serde_json::from_slice(&spec_json(spec).unwrap()).unwrap()
}

#[test]
fn builds_the_expected_spec() {
    let spec = build_spec(&base()).unwrap();
    assert_eq!(spec.root.path, "/run/charter/c/web-1/rootfs");
    assert!(!spec.root.readonly);
    assert!(!spec.process.terminal);
    assert_eq!(spec.process.user.uid, 1000);
    assert_eq!(spec.process.user.gid, 1001);
    assert_eq!(spec.process.user.additional_gids, vec![5, 6]);
    assert_eq!(spec.process.user.umask, Some(0o022));
    assert_eq!(spec.process.cwd, "/srv");
    assert!(spec.process.no_new_privileges);
    assert_eq!(spec.process.rlimits.len(), 1);
    assert_eq!(spec.process.rlimits[0].kind, "RLIMIT_NOFILE");
    assert_eq!(spec.process.rlimits[0].soft, 1024);
    assert_eq!(spec.process.rlimits[0].hard, 1024);
    // Sorted by capability number: CHOWN (0), KILL (5), SETUID (7).
    assert_eq!(
        spec.process.capabilities.effective,
        names(&["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"])
    );
    let destinations: Vec<&str> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(
        destinations,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/data"
        ]
    );
    let sys = &spec.mounts[5];
    assert!(sys.options.iter().any(|o| o == "ro"));
    let cgroup = &spec.mounts[6];
    assert_eq!(cgroup.kind, "cgroup");
    assert!(cgroup.options.iter().any(|o| o == "ro"));
    assert_eq!(spec.linux.masked_paths, names(&DEFAULT_MASKED_PATHS));
    assert_eq!(spec.linux.readonly_paths, names(&DEFAULT_READONLY_PATHS));
    assert_eq!(spec.linux.resources.devices.len(), 1);
    assert!(!spec.linux.resources.devices[0].allow);
    assert_eq!(spec.hostname, "web");
}

#[test]
fn no_hooks_no_network_or_user_namespace() {
    let spec = build_spec(&base()).unwrap();
    let kinds: Vec<NamespaceKind> = spec.linux.namespaces.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NamespaceKind::Pid,
            NamespaceKind::Ipc,
            NamespaceKind::Uts,
            NamespaceKind::Mount
        ]
    );
    let value = json(&spec);
    let top: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert!(!top.iter().any(|k| *k == "hooks" || *k == "annotations"));
    let namespaces = value["linux"]["namespaces"].as_array().unwrap();
    let types: Vec<&str> = namespaces
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pid", "ipc", "uts", "mount"]);
    assert!(!types.contains(&"network") && !types.contains(&"user"));
    assert_eq!(value["process"]["terminal"], serde_json::Value::Bool(false));
    // The model cannot even read a spec that carries hooks.
    let mut with_hooks = value.clone();
    with_hooks["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/evil"}]});
    assert!(serde_json::from_value::<Spec>(with_hooks).is_err());
}

#[test]
fn json_is_deterministic_and_roundtrips() {
    let a = spec_json(&build_spec(&base()).unwrap()).unwrap();
    let b = spec_json(&build_spec(&base()).unwrap()).unwrap();
    assert_eq!(a, b);
    // Capability order and duplicates in the input do not change the output.
    let mut shuffled = base();
    shuffled.process.capabilities.effective =
        names(&["CAP_SETUID", "CAP_KILL", "CAP_CHOWN", "CAP_KILL"]);
    assert_eq!(
        spec_json(&build_spec(&shuffled).unwrap()).unwrap(),
        a,
        "capability sets are normalised"
    );
    let parsed: Spec = serde_json::from_slice(&a).unwrap();
    assert_eq!(parsed, build_spec(&base()).unwrap());
    // The field names runc reads.
    let text = String::from_utf8(a).unwrap();
    for key in [
        "\"ociVersion\"",
        "\"noNewPrivileges\"",
        "\"additionalGids\"",
        "\"maskedPaths\"",
        "\"readonlyPaths\"",
        "\"rlimits\"",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
}

#[test]
fn non_canonical_paths_are_refused() {
    for bad in [
        "rootfs",
        "./rootfs",
        "/run/../etc",
        "/run/./x",
        "/run//x",
        "/run/x/",
        "/",
        "",
    ] {
        let mut config = base();
        config.rootfs = PathBuf::from(bad);
        let err = build_spec(&config).unwrap_err();
        assert!(
            matches!(&err, SpecError::NotCanonical { field, .. } if field == "rootfs"),
            "{bad:?}: {err}"
        );
    }
    for bad in ["srv", "/srv/..", "/srv/", "//srv"] {
        let mut config = base();
        config.process.cwd = bad.to_owned();
        assert!(matches!(
            build_spec(&config).unwrap_err(),
            SpecError::NotCanonical { field, .. } if field == "cwd"
        ));
    }
    let mut config = base();
    config.mounts[0].destination = "/data/../etc".to_owned();
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::NotCanonical { field, .. } if field == "mounts[0].destination"
    ));
    let mut config = base();
    config.mounts[0].source = "volumes/data".to_owned();
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::NotCanonical { field, .. } if field == "mounts[0].source"
    ));
    let mut config = base();
    config.mounts[0].destination = "/".to_owned();
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::InvalidMount { index: 0, .. }
    ));
    let mut config = base();
    config.mounts[0].options = names(&["ro"]);
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::InvalidMount { index: 0, .. }
    ));
    // A non-bind mount takes a name as source.
    let mut config = base();
    config.mounts[0] = MountConfig {
        destination: "/scratch".to_owned(),
        source: "tmpfs".to_owned(),
        kind: "tmpfs".to_owned(),
        options: names(&["nosuid", "size=1m"]),
    };
    build_spec(&config).unwrap();
}

#[test]
fn other_invalid_fields_are_refused_without_leaking_env_values() {
    let mut config = base();
    config.process.args.clear();
    assert_eq!(build_spec(&config).unwrap_err(), SpecError::EmptyArgs);

    let mut config = base();
    config.process.env.push("=hunter2".to_owned());
    let err = build_spec(&config).unwrap_err();
    assert!(matches!(err, SpecError::InvalidEnv { index: 2, .. }));
    assert!(!err.to_string().contains("hunter2"));

    let mut config = base();
    config.process.env.push("NOEQUALShunter2".to_owned());
    let err = build_spec(&config).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let mut config = base();
    config.process.capabilities.ambient = names(&["CAP_FLY"]);
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::UnknownCapability { set: "ambient", .. }
    ));
    let mut config = base();
    config.process.capabilities.bounding = names(&["chown"]);
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::UnknownCapability {
            set: "bounding",
            ..
        }
    ));

    let mut config = base();
    config.process.umask = Some(0o1777);
    assert_eq!(
        build_spec(&config).unwrap_err(),
        SpecError::InvalidUmask(0o1777)
    );

    for id in ["", "-rf", ".", "..", "../x", "a/b", "a b", &"x".repeat(129)] {
        let mut config = base();
        config.id = id.to_owned();
        assert!(
            matches!(
                build_spec(&config).unwrap_err(),
                SpecError::InvalidId { .. }
            ),
            "{id:?}"
        );
    }

    let mut config = base();
    config.hostname = "bad host".to_owned();
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::InvalidHostname(_)
    ));

    let mut config = base();
    config.process.args.push("a\0b".to_owned());
    assert!(matches!(
        build_spec(&config).unwrap_err(),
        SpecError::NulByte { field } if field == "args[3]"
    ));
}

#[test]
fn privileged_widens_exactly_what_is_documented() {
    let mut config = base();
    config.privileged = true;
    let spec = build_spec(&config).unwrap();
    let all = names(&KNOWN_CAPABILITIES);
    assert_eq!(spec.process.capabilities.bounding, all);
    assert_eq!(spec.process.capabilities.effective, all);
    assert_eq!(spec.process.capabilities.permitted, all);
    assert!(spec.process.capabilities.inheritable.is_empty());
    assert!(spec.process.capabilities.ambient.is_empty());
    assert!(spec.linux.masked_paths.is_empty());
    assert!(spec.linux.readonly_paths.is_empty());
    assert!(spec.linux.resources.devices[0].allow);
    assert!(spec.mounts[5].options.iter().any(|o| o == "rw"));
    // Still no network namespace and no hooks.
    assert_eq!(spec.linux.namespaces.len(), 4);
    // Unknown names are refused even when privileged.
    config
        .process
        .capabilities
        .effective
        .push("CAP_NOPE".to_owned());
    assert!(build_spec(&config).is_err());
}

#[test]
fn exec_process_is_validated_too() {
    let process = build_process(&base().process).unwrap();
    assert_eq!(process.args, names(&["/bin/sh", "-c", "echo hi"]));
    assert!(!process.terminal);
    let mut config = base().process;
    config.cwd = "relative".to_owned();
    assert!(build_process(&config).is_err());
}

#[test]
fn write_bundle_is_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let spec = build_spec(&base()).unwrap();
    let path = write_bundle(dir.path(), &spec).unwrap();
    assert_eq!(path, dir.path().join("config.json"));
    let back: Spec = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, spec);
    // Overwrite in place; no temporary file is left behind.
    write_bundle(dir.path(), &spec).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["config.json"]);
}

#[test]
fn parses_runc_state() {
    let state = ContainerState::parse(
        br#"{"ociVersion":"1.0.2-dev","id":"c1","pid":4242,"status":"running",
            "bundle":"/b","rootfs":"/b/rootfs","created":"2026-11-21T08:00:00Z","owner":""}"#,
    )
    .unwrap();
    assert_eq!(state.id, "c1");
    assert_eq!(state.pid, Pid::from_raw(4242));
    assert_eq!(state.status, ContainerStatus::Running);
    assert_eq!(state.rootfs, PathBuf::from("/b/rootfs"));
    let stopped = ContainerState::parse(
        br#"{"ociVersion":"1.0.2-dev","id":"c1","pid":0,"status":"stopped","bundle":"/b"}"#,
    )
    .unwrap();
    assert_eq!(stopped.pid, None);
    assert_eq!(stopped.status, ContainerStatus::Stopped);
    assert!(ContainerState::parse(b"not json").is_err());
}
