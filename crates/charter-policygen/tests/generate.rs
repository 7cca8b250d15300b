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
        "    envFrom: [{configMapRef: {name: x}}]\n    securityContext: {seLinuxOptions: {level: s0}}\n    volumeMounts: [{name: v, mountPath: /v, subPathExpr: x}]\n  hostNetwork: true\n  volumes: [{name: v, emptyDir: {}}]\n",
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
            "spec.containers[0].envFrom",
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
