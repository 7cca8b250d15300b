//! Pod YAML handling, errors, options and outputs of `generate`.

mod common;

use std::num::NonZeroUsize;
use std::path::Path;

use charter_policy::model::EnvRule;
use charter_policygen::{
    annotate, generate, pod_templates, select_template, Error, Generated, LocalImages, Measuring,
    Options, Settings,
};

const REF: &str = "registry.example/app:1";

fn images(layout: &Path) -> LocalImages {
    let mut images = LocalImages::default();
    images
        .add_mapping(&format!("{REF}=oci:{}:app", layout.display()))
        .unwrap();
    images
}

fn run(
    dir: &Path,
    images: &LocalImages,
    yaml: &str,
    options: &Options,
) -> Result<Generated, Error> {
    let measuring = Measuring {
        cache: None,
        scratch_dir: dir,
        threads: NonZeroUsize::MIN,
        observer: &(),
    };
    generate(yaml, images, options, &measuring)
}

fn pod(container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: {REF}\n{container}"
    )
}

#[test]
fn every_workload_kind_yields_its_pod_template() {
    let spec = "spec: {containers: [{name: c, image: x}]}";
    let yaml = format!(
        "kind: Pod\nmetadata: {{name: a}}\n{spec}\n---\nkind: Service\nmetadata: {{name: s}}\n---\n\
         kind: Deployment\nspec: {{template: {{{spec}}}}}\n---\nkind: StatefulSet\nspec: {{template: {{{spec}}}}}\n---\n\
         kind: DaemonSet\nspec: {{template: {{{spec}}}}}\n---\nkind: ReplicaSet\nspec: {{template: {{{spec}}}}}\n---\n\
         kind: Job\nspec: {{template: {{{spec}}}}}\n---\nkind: CronJob\nspec: {{jobTemplate: {{spec: {{template: {{{spec}}}}}}}}}\n"
    );
    let t = pod_templates(&yaml).unwrap();
    let kinds: Vec<_> = t.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob"
        ]
    );
    assert_eq!(t[6].spec_path, "spec.jobTemplate.spec.template.spec");
    let err = select_template(&yaml, None).unwrap_err();
    assert!(matches!(err, Error::SeveralPods { count: 7, .. }), "{err}");
    assert_eq!(select_template(&yaml, Some(2)).unwrap().kind, "StatefulSet");
    assert!(matches!(
        select_template(&yaml, Some(7)),
        Err(Error::PodIndex { index: 7, count: 7 })
    ));
    assert!(matches!(
        select_template("kind: Service\n", None),
        Err(Error::NoPod)
    ));
    assert!(matches!(
        select_template("a: [", None),
        Err(Error::Yaml { .. })
    ));
    assert!(matches!(
        select_template("spec: {}\n", None),
        Err(Error::Yaml { .. })
    ));
}

#[test]
fn unsupported_fields_are_named_or_ignored_on_request() {
    let yaml = pod(
        "    volumeDevices: [{name: x, devicePath: /dev/x}]\n    securityContext: {seLinuxOptions: {level: s0}}\n    volumeMounts: [{name: v, mountPath: /v, subPathExpr: x}]\n  hostNetwork: true\n  volumes: [{name: v, emptyDir: {}}]\n",
    );
    let none = LocalImages::default();
    let dir = tempfile::tempdir().unwrap();
    let err = run(dir.path(), &none, &yaml, &Options::default()).unwrap_err();
    let Error::Unsupported { fields } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        fields,
        &[
            "spec.containers[0].volumeDevices",
            "spec.containers[0].securityContext.seLinuxOptions",
            "spec.containers[0].volumeMounts[0].subPathExpr",
            "spec.hostNetwork: true",
        ]
    );
    let one = pod("    lifecycle: {stopSignal: SIGKILL}\n");
    let err = run(dir.path(), &none, &one, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.containers[0].lifecycle.stopSignal: SIGKILL is not supported"
    );
    // Ignored: generation goes on (and stops at the missing image).
    let options = Options {
        ignore_unsupported: true,
        ..Options::default()
    };
    let err = run(dir.path(), &none, &yaml, &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image {REF}: no local source given (--image) and registry pulls are off")
    );
}

#[test]
fn image_mappings_are_checked() {
    let mut m = LocalImages::default();
    for bad in ["x", "=oci:/d", "x=/d", "x=oci:", "x=registry:foo"] {
        assert!(
            matches!(m.add_mapping(bad), Err(Error::ImageMapping { .. })),
            "{bad}"
        );
    }
    m.add_mapping("x=oci:/nonexistent:tag").unwrap();
    assert!(matches!(
        m.add_mapping("x=docker-archive:/a.tar"),
        Err(Error::ImageMapping { .. })
    ));
    assert_eq!(m.references().collect::<Vec<_>>(), ["x"]);
}

#[test]
fn semantics_of_argv_env_user_volumes_seccomp() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let yaml = pod(concat!(
        "    command: [/bin/echo, \"$(A)\", \"$$(A)\", \"$(UNSET)\"]\n",
        "    env:\n",
        "    - {name: A, value: one}\n",
        "    - {name: PATH, value: /opt}\n",
        "    - {name: S, valueFrom: {secretKeyRef: {name: s, key: k}}}\n",
        "    - {name: \"X.Y\", valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n",
        "    lifecycle: {preStop: {exec: {command: [/bin/stop]}}, postStart: {httpGet: {port: 80}}}\n",
        "    securityContext: {seccompProfile: {type: Localhost, localhostProfile: prof.json}}\n",
        "    volumeMounts: [{name: h, mountPath: /h, readOnly: true}, {name: s, mountPath: /s}]\n",
        "  securityContext: {runAsUser: 1000, supplementalGroupsPolicy: Strict, fsGroup: 9}\n",
        "  volumes: [{name: h, hostPath: {path: /data}}, {name: s, secret: {secretName: s}}]\n",
    ));
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert!(err.to_string().contains("--seccomp-dir"), "{err}");
    std::fs::write(
        dir.path().join("prof.json"),
        b"{\"defaultAction\":\"SCMP_ACT_ERRNO\"}",
    )
    .unwrap();
    let mut options = Options {
        seccomp_dir: Some(dir.path().to_owned()),
        ..Options::default()
    };
    let err = run(dir.path(), &imgs, &yaml, &options).unwrap_err();
    assert!(matches!(err, Error::HostPath { .. }), "{err}");
    options.allow_host_path = true;
    let g = run(dir.path(), &imgs, &yaml, &options).unwrap();
    let c = &g.document.containers[0];
    assert_eq!(c.command, ["/bin/echo", "one", "$(A)", "$(UNSET)"]);
    assert_eq!(c.env_rules[0], EnvRule::string("PATH=/opt", true));
    assert_eq!(c.env_rules[1], EnvRule::string("A=one", true));
    assert_eq!(c.env_rules[2], EnvRule::re2("S=(?s:.*)", true));
    assert_eq!(c.env_rules[3], EnvRule::re2("X\\.Y=(?s:.*)", true));
    assert_eq!(c.exec_processes.len(), 1);
    assert_eq!(c.exec_processes[0].command, ["/bin/stop"]);
    assert_eq!(
        c.seccomp_profile_sha256,
        charter_policygen::digest_hex(b"{\"defaultAction\":\"SCMP_ACT_ERRNO\"}")
    );
    let user = c.user.as_ref().unwrap();
    assert_eq!(user.user_idname.pattern, "1000");
    // Strict: no /etc/group memberships (video), only the passwd gid and fsGroup.
    let groups: Vec<_> = user
        .group_idnames
        .iter()
        .map(|g| g.pattern.as_str())
        .collect();
    assert_eq!(groups, ["9", "1001"]);
    assert_eq!(c.mounts[0].source, "/data");
    assert_eq!(c.mounts[0].options, ["rbind", "rshared", "ro"]);
    assert_eq!(c.mounts[1].source, "sandbox:///tmp/atlas/secret/.+");
    assert_eq!(c.mounts[1].options, ["rbind", "rshared", "ro"]);

    for (sc, msg) in [
        ("{seccompProfile: {type: RuntimeDefault}}", "RuntimeDefault"),
        ("{runAsNonRoot: true}", "runAsNonRoot"),
        ("{runAsUser: -1}", "runAsUser -1"),
    ] {
        let yaml = pod(&format!("    securityContext: {sc}\n"));
        let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
        assert!(err.to_string().contains(msg), "{sc}: {err}");
    }
    let yaml = pod(
        "    env: [{name: B, valueFrom: {fieldRef: {fieldPath: x}}}, {name: C, value: \"$(B)\"}]\n",
    );
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert!(
        err.to_string().contains("$(B) refers to a valueFrom"),
        "{err}"
    );
}

#[test]
fn image_user_databases_follow_layers_and_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    // Top layer deletes /etc/group and replaces /etc/passwd.
    let etc1 = common::files_layer(&[("etc/passwd", common::PASSWD), ("etc/group", common::GROUP)]);
    let etc2 = common::files_layer(&[
        ("etc/.wh.group", ""),
        ("etc/passwd", "svc:x:4000:4001::/:/bin/sh\n"),
    ]);
    let layout = common::mkimage(
        dir.path(),
        "app",
        &[common::base_layer(), etc1, etc2],
        &["/bin/sh"],
    );
    let imgs = images(&layout);
    let g = run(
        dir.path(),
        &imgs,
        &pod("    securityContext: {runAsUser: 4000}\n"),
        &Options::default(),
    )
    .unwrap();
    let user = g.document.containers[0].user.as_ref().unwrap();
    assert_eq!(user.group_idnames[0].pattern, "4001");
    assert_eq!(user.group_idnames.len(), 1);
    // uid 1000 is gone from the top passwd: no gid from it, so 0.
    let g = run(
        dir.path(),
        &imgs,
        &pod("    securityContext: {runAsUser: 1000}\n"),
        &Options::default(),
    )
    .unwrap();
    let user = g.document.containers[0].user.as_ref().unwrap();
    assert_eq!(user.group_idnames[0].pattern, "0");
}

#[test]
fn settings_replace_platform_rules_and_annotation_round_trips() {
    let settings = Settings::from_yaml(
        "env_rules:\n- {pattern: \"FOO=.+\", strategy: re2, required: false}\nmounts: []\n",
    )
    .unwrap();
    assert_eq!(settings.env_rules, [EnvRule::re2("FOO=.+", false)]);
    assert!(Settings::from_yaml("bogus: 1\n").is_err());
    assert!(!Settings::default().env_rules.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let yaml = format!(
        "kind: CronJob\nmetadata: {{name: cj}}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{{name: c, image: {REF}}}]\n"
    );
    let options = Options {
        settings,
        ..Options::default()
    };
    let g = run(dir.path(), &imgs, &yaml, &options).unwrap();
    let c = &g.document.containers[0];
    assert_eq!(c.env_rules.last(), Some(&EnvRule::re2("FOO=.+", false)));
    assert!(c.mounts.is_empty());
    assert_eq!(c.command, ["/usr/bin/busybox", "sleep"]);
    let out = annotate(&yaml, &g.template, &g.rego).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&out).unwrap();
    let ann = &doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
        [charter_policygen::POLICY_ANNOTATION];
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(ann.as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, g.rego.as_bytes());
    let summary = g.summary();
    assert_eq!(summary["digest"], g.digest.as_str());
    assert_eq!(summary["images"][0]["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn ignored_volume_kinds_get_no_mount_rule() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let yaml = pod(concat!(
        "    volumeMounts: [{name: p, mountPath: /p}]\n",
        "  volumes: [{name: p, persistentVolumeClaim: {claimName: x}}]\n",
    ));
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.volumes[0].persistentVolumeClaim is not supported"
    );
    let options = Options {
        ignore_unsupported: true,
        ..Options::default()
    };
    let g = run(dir.path(), &imgs, &yaml, &options).unwrap();
    assert_eq!(
        g.warnings,
        ["ignored spec.volumes[0].persistentVolumeClaim"]
    );
    let c = &g.document.containers[0];
    assert!(c.mounts.iter().all(|m| m.destination != "/p"));
}

#[test]
fn env_from_gives_name_anchored_rules_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let objects = "---\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {A: x, B: y}\n\
                   ---\nkind: Secret\nmetadata: {name: sec}\ndata: {K2: eA==}\nstringData: {TOKEN: t}\n";
    let yaml = format!(
        "{}{objects}",
        pod(concat!(
            "    envFrom:\n",
            "    - configMapRef: {name: cm}\n",
            "    - {secretRef: {name: sec, optional: true}, prefix: S_}\n",
            "    - {configMapRef: {name: elsewhere}, prefix: EXT.}\n",
            "    env: [{name: A, value: override}]\n",
        ))
    );
    let g = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap();
    let rules = &g.document.containers[0].env_rules;
    assert_eq!(
        rules[..6],
        [
            EnvRule::string("PATH=/bin:/usr/bin", true),
            EnvRule::string("A=override", true),
            EnvRule::re2("B=(?s:.*)", true),
            EnvRule::re2("S_K2=(?s:.*)", false),
            EnvRule::re2("S_TOKEN=(?s:.*)", false),
            EnvRule::re2("EXT\\.[A-Za-z0-9_.-]+=(?s:.*)", false),
        ]
    );
    // Checked by the enforcer: the families allow their names only.
    let mut e = charter_policy::Enforcer::new(g.rego.as_bytes()).unwrap();
    let hash = g.document.containers[0].layers.clone();
    let mut paths = Vec::new();
    for (i, h) in hash.iter().enumerate() {
        let r = charter_policy::Request::from_rule_input(
            "mount_device",
            serde_json::json!({"target": format!("/run/layers/l{i}"), "deviceHash": h}),
        )
        .unwrap();
        e.check(&r).unwrap().commit().unwrap();
        paths.insert(0, format!("/run/layers/l{i}"));
    }
    let r = charter_policy::Request::from_rule_input(
        "mount_overlay",
        serde_json::json!({"containerID": "c", "layerPaths": paths, "target": "/run/gcs/c/c/rootfs"}),
    )
    .unwrap();
    e.check(&r).unwrap().commit().unwrap();
    let create = |env: &[&str]| {
        charter_policy::Request::from_rule_input(
            "create_container",
            serde_json::json!({"containerID": "c", "argList": ["/usr/bin/busybox", "sleep"],
                "envList": env, "workingDir": "/", "mounts": [],
                "user": {"uid": {"id": "0", "name": "root"}, "groups": [{"id": "0", "name": "root"}], "umask": "0022"},
                "capabilities": {"bounding": charter_policy::DEFAULT_CAPABILITIES, "effective": charter_policy::DEFAULT_CAPABILITIES,
                    "permitted": charter_policy::DEFAULT_CAPABILITIES, "ambient": [], "inheritable": []}}),
        )
        .unwrap()
    };
    let base = ["PATH=/bin:/usr/bin", "A=override", "B=anything"];
    assert!(e
        .check(&create(&[&base[..], &["LD_PRELOAD=/x.so"]].concat()))
        .is_err());
    assert!(e.check(&create(&base[..2])).is_err(), "B is required");
    assert!(e
        .check(&create(
            &[&base[..], &["EXT.url=http://x", "S_TOKEN=t"]].concat()
        ))
        .is_ok());

    // A source that is not in the file and has no prefix: unbounded names, refused.
    let yaml = pod("    envFrom: [{configMapRef: {name: elsewhere}}]\n");
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.containers[0].envFrom[0].configMapRef: the ConfigMap \"elsewhere\" is not in the YAML, so the variables it brings in are unknown: add the ConfigMap to the file, or give envFrom a prefix"
    );
    let yaml = format!(
        "{}{objects}",
        pod("    envFrom: [{configMapRef: {name: cm}}]\n    args: [\"$(A)\"]\n")
    );
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("$(A) refers to a valueFrom or envFrom"),
        "{err}"
    );
    let yaml = pod("    envFrom: [{configMapRef: {name: cm}, bogus: 1}]\n");
    let err = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.containers[0].envFrom[0].bogus is not supported"
    );
}

#[test]
fn projected_and_downward_api_volumes_are_read_only_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let yaml = pod(concat!(
        "    volumeMounts: [{name: p, mountPath: /var/run/p}, {name: d, mountPath: /etc/podinfo}]\n",
        "  volumes:\n",
        "  - name: p\n",
        "    projected:\n",
        "      defaultMode: 0444\n",
        "      sources: [{serviceAccountToken: {path: token, expirationSeconds: 3600}}, {configMap: {name: c}}]\n",
        "  - {name: d, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}\n",
    ));
    let g = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap();
    let m = &g.document.containers[0].mounts;
    assert_eq!(m[0].destination, "/var/run/p");
    assert_eq!(m[0].source, "sandbox:///tmp/atlas/projected/.+");
    assert_eq!(m[0].options, ["rbind", "rshared", "ro"]);
    assert_eq!(m[1].source, "sandbox:///tmp/atlas/downwardapi/.+");
    assert_eq!(m[1].options, ["rbind", "rshared", "ro"]);
}

#[test]
fn seccomp_profiles_are_hashed_as_confcom_does() {
    // Expected strings from confcom's process_seccomp_policy + json.dumps(separators=(',', ':')).
    let src = r#"{"syscalls": [{"comment": "x", "action": "SCMP_ACT_ALLOW", "names": ["read", "write"]}, {"args": [{"op": "SCMP_CMP_EQ", "value": 2080505856, "valueTwo": 0, "index": 0, "extra": 1}], "names": ["clone"], "action": "SCMP_ACT_ALLOW"}, {"errnoRet": 1, "action": "SCMP_ACT_ERRNO"}], "architectures": ["SCMP_ARCH_X86_64"], "defaultErrnoRet": 38, "archMap": [1], "note": "caf\u00e9"}"#;
    let want = r#"{"defaultAction":"","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2080505856,"valueTwo":0,"op":"SCMP_CMP_EQ"}]},{"names":[],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
    let got = charter_policygen::pod::normalize_seccomp(src.as_bytes()).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        charter_policygen::digest_hex(got.as_bytes()),
        "0b144fb1b5f5323dfa95511f13e624792c469642df3cf7fd395d278447aa45e7"
    );
    let src = "{\"listenerMetadata\":\"caf\u{e9}\u{7f}\",\"flags\":[\"SECCOMP_FILTER_FLAG_LOG\"],\"defaultAction\":\"SCMP_ACT_ERRNO\"}";
    assert_eq!(
        charter_policygen::pod::normalize_seccomp(src.as_bytes()).unwrap(),
        r#"{"defaultAction":"SCMP_ACT_ERRNO","flags":["SECCOMP_FILTER_FLAG_LOG"],"listenerMetadata":"caf\u00e9\u007f"}"#
    );
    for bad in [
        "",
        "[]",
        "{\"syscalls\": 1}",
        "{\"syscalls\": [{\"args\": [1]}]}",
    ] {
        assert!(
            charter_policygen::pod::normalize_seccomp(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_warm_run_reads_no_layer() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = charter_image::Cache::open(cache_dir.path()).unwrap();
    let yaml = pod("    securityContext: {runAsUser: 1000}\n");
    let gen = || {
        let measuring = Measuring {
            cache: Some(&cache),
            scratch_dir: dir.path(),
            threads: NonZeroUsize::new(2).unwrap(),
            observer: &(),
        };
        generate(&yaml, &imgs, &Options::default(), &measuring)
    };
    let cold = gen().unwrap();
    assert!(cold.images[0].layers.iter().all(|l| !l.cached));
    let groups = |g: &Generated| -> Vec<String> {
        g.document.containers[0]
            .user
            .as_ref()
            .unwrap()
            .group_idnames
            .iter()
            .map(|r| r.pattern.clone())
            .collect()
    };
    assert_eq!(groups(&cold), ["44", "1001"]);
    // Without the cache the same policy, in one pass per layer.
    let uncached = run(dir.path(), &imgs, &yaml, &Options::default()).unwrap();
    assert_eq!(uncached.rego, cold.rego);

    // The layer blobs gone: a warm run still succeeds, with the same bytes.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_path = layout
        .join("blobs/sha256")
        .join(&index["manifests"][0]["digest"].as_str().unwrap()[7..]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let blobs: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            layout
                .join("blobs/sha256")
                .join(&l["digest"].as_str().unwrap()[7..])
        })
        .collect();
    let saved: Vec<Vec<u8>> = blobs.iter().map(|b| std::fs::read(b).unwrap()).collect();
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
    }
    let warm = gen().unwrap();
    assert!(warm.images[0].layers.iter().all(|l| l.cached));
    assert_eq!(warm.rego, cold.rego);

    // Root hashes cached but no /etc entries (a cache filled by `charter image measure`): the
    // layers are read top first until both files are found, and that is cached in turn.
    std::fs::remove_dir_all(cache_dir.path().join("policygen")).unwrap();
    assert!(gen().is_err(), "needs the layers again");
    for (b, bytes) in blobs.iter().zip(&saved) {
        std::fs::write(b, bytes).unwrap();
    }
    assert_eq!(gen().unwrap().rego, cold.rego);
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
    }
    assert_eq!(gen().unwrap().rego, cold.rego);
}

#[test]
fn sealed_volumes_bind_names_to_broker_resources() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::app_image(dir.path());
    let imgs = images(&layout);
    let sealed = |driver: &str, resource: &str| {
        pod(&format!(
            "    volumeMounts: [{{name: owner-a, mountPath: /data/a}}]\n  volumes:\n  - name: owner-a\n    csi: {{driver: {driver}, readOnly: true, volumeAttributes: {{resource: {resource}}}}}\n"
        ))
    };
    let broker = charter_policy::model::KeyBroker {
        url: "https://kbs.example:8443".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        workload_endpoint: false,
    };
    let options = Options {
        key_broker: Some(broker.clone()),
        ..Options::default()
    };
    let g = run(
        dir.path(),
        &imgs,
        &sealed("sealed.charter.dev", "owner-a/dataset/key"),
        &options,
    )
    .unwrap();
    assert_eq!(g.document.key_broker, Some(broker));
    assert_eq!(g.document.sealed_volumes.len(), 1);
    assert_eq!(g.document.sealed_volumes[0].resource, "owner-a/dataset/key");
    let m = g.document.containers[0]
        .mounts
        .iter()
        .find(|m| m.destination == "/data/a")
        .unwrap();
    assert_eq!(m.source, "sandbox:///tmp/atlas/sealed/owner-a");
    assert!(m.options.contains(&"ro".to_owned()));
    assert!(g.rego.contains("sealed_volumes := ["));

    // Without a broker, with another driver, or with a bad resource: a clear error.
    let err = run(
        dir.path(),
        &imgs,
        &sealed("sealed.charter.dev", "owner-a/dataset/key"),
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("need a key broker"), "{err}");
    let err = run(
        dir.path(),
        &imgs,
        &sealed("other.csi.example", "a/b/c"),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("csi.driver: other.csi.example"), "{err}");
    let err = run(
        dir.path(),
        &imgs,
        &sealed("sealed.charter.dev", "../../etc"),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("repository/type/tag"), "{err}");
}
