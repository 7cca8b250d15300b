//! Lockstep differential test of the compiled matcher against the Rego framework: the case
//! table, a table of denial kinds and random request sequences run through two enforcers, one
//! with the matcher and one Rego-only. For every request the decision (allowed, env, caps,
//! stdio), the whole denial (reason errors in order, error objects, policy error, the recorded
//! input; compared as serialized bytes) and the resulting state must agree.

mod common;

use charter_policy::model::{Container, EnvRule};
use charter_policy::request::CapabilitySets;
use charter_policy::{Enforcer, MatcherStats, PolicyDocument, Request, DEFAULT_CAPABILITIES};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One decision as bytes: everything an allow hands out, or the whole denial.
fn decide(e: &mut Enforcer, r: &Request) -> String {
    let d = match e.check(r) {
        Ok(a) => {
            let d = json!({"allowed": true, "env": a.env_list(), "caps": a.caps_list(),
                "stdio": a.allow_stdio_access(), "changes_state": a.changes_state()});
            a.commit().unwrap();
            d
        }
        Err(d) => json!({
            "allowed": false,
            "rule": d.rule(),
            "input": d.input(),
            "reason": d.reason(),
            "policy_error": d.policy_error(),
        }),
    };
    serde_json::to_string(&d).unwrap()
}

/// Runs `steps` through both enforcers; returns the matcher's statistics and the last decision.
fn lockstep(
    policy: &str,
    steps: impl IntoIterator<Item = Request>,
) -> Result<(MatcherStats, String), String> {
    let mut fast = Enforcer::new(policy).unwrap();
    let mut rego = Enforcer::new(policy).unwrap();
    rego.set_compiled_matcher(false);
    let mut last = String::new();
    for (i, r) in steps.into_iter().enumerate() {
        let (a, b) = (decide(&mut fast, &r), decide(&mut rego, &r));
        if a != b {
            return Err(format!("step {i} {}:\nmatcher {a}\nrego    {b}", r.rule()));
        }
        if fast.metadata() != rego.metadata() {
            return Err(format!(
                "step {i} {}: state {} vs {}",
                r.rule(),
                fast.metadata(),
                rego.metadata()
            ));
        }
        last = a;
    }
    assert_eq!(rego.matcher_stats(), MatcherStats::default());
    Ok((fast.matcher_stats(), last))
}

#[test]
fn matcher_agrees_with_rego_on_case_table() {
    let mut active = 0;
    let mut total = MatcherStats::default();
    for case in common::load_cases() {
        if Enforcer::new(&case.policy)
            .unwrap()
            .compiled_matcher_active()
        {
            active += 1;
        }
        let steps = case
            .steps
            .iter()
            .map(|s| Request::from_rule_input(&s.rule, s.input.clone()).unwrap());
        match lockstep(&case.policy, steps) {
            Ok((s, _)) => {
                total.allowed += s.allowed;
                total.denied += s.denied;
                total.unknown += s.unknown;
            }
            Err(e) => panic!("{}/{}: {e}", case.file, case.name),
        }
    }
    assert!(active >= 100, "matcher active for only {active} cases");
    assert!(total.allowed >= 200, "matcher decided only {total:?}");
    assert!(total.denied >= 45, "matcher decided only {total:?}");
    // Every state in the table is one the framework wrote: the matcher is never unsure.
    assert_eq!(total.unknown, 0, "{total:?}");
}

// ---------------------------------------------------------------------------------------------
// Denial kinds, each decided by the matcher (not left to the Rego) and equal to the Rego's.

const H1: &str = "abababababababababababababababababababababababababababababababab";
const H2: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

fn caps(list: &[&str]) -> CapabilitySets {
    let l: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    CapabilitySets {
        bounding: l.clone(),
        effective: l.clone(),
        permitted: l,
        ..CapabilitySets::default()
    }
}

fn app(name: Option<&str>) -> Container {
    Container {
        name: name.map(str::to_owned),
        layers: vec![H1.to_owned()],
        command: vec!["/bin/app".into(), "--serve".into()],
        env_rules: vec![
            EnvRule::string("PATH=/bin", true),
            EnvRule::re2("X_[A-Z]+=.*", false),
            EnvRule::Split {
                name: "TZ".into(),
                name_strategy: charter_policy::model::EnvStrategy::String,
                value: "[A-Za-z]+/[A-Za-z_]+".into(),
                value_strategy: charter_policy::model::EnvStrategy::Re2,
                required: false,
            },
        ],
        working_dir: "/srv".into(),
        mounts: vec![charter_policy::model::MountConstraint {
            destination: "/data".into(),
            source: "sandbox:///tmp/atlas/emptydir/.+".into(),
            kind: "bind".into(),
            options: vec!["rbind".into(), "rw".into()],
        }],
        ..Container::default()
    }
}

fn policy(containers: Vec<Container>, dropping: bool) -> String {
    PolicyDocument {
        containers,
        allow_environment_variable_dropping: dropping,
        allow_capability_dropping: dropping,
        ..PolicyDocument::default()
    }
    .to_rego()
}

fn create_input() -> Value {
    json!({
        "containerID": "c1",
        "argList": ["/bin/app", "--serve"],
        "envList": ["PATH=/bin", "X_MODE=fast", "TZ=Europe/Paris"],
        "workingDir": "/srv",
        "sandboxDir": "/run/gcs/c/sb/sandboxMounts",
        "hugePagesDir": "/run/gcs/c/sb/hugepages",
        "mounts": [
            {"destination": "/proc", "source": "proc", "type": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/data", "source": "/run/gcs/c/sb/sandboxMounts/tmp/atlas/emptydir/v", "type": "bind", "options": ["rw", "rbind"]},
        ],
        "privileged": false,
        "noNewPrivileges": false,
        "capabilities": caps(&DEFAULT_CAPABILITIES),
        "seccompProfileSHA256": "",
    })
}

fn req(rule: &str, input: Value) -> Request {
    Request::from_rule_input(rule, input).unwrap()
}

fn mounted(id: &str, hashes: &[&str]) -> Vec<Request> {
    let mut out: Vec<Request> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            req(
                "mount_device",
                json!({"target": format!("/run/layers/{id}-{i}"), "deviceHash": h}),
            )
        })
        .collect();
    let paths: Vec<String> = (0..hashes.len())
        .rev()
        .map(|i| format!("/run/layers/{id}-{i}"))
        .collect();
    out.push(req(
        "mount_overlay",
        json!({"containerID": id, "layerPaths": paths, "target": format!("/run/gcs/c/{id}/rootfs")}),
    ));
    out
}

fn patched(patch: Value) -> Value {
    let mut input = create_input();
    for (k, v) in patch.as_object().unwrap() {
        input[k] = v.clone();
    }
    input
}

/// Runs `steps` in lockstep and checks that the last one was denied by the matcher with
/// exactly `errors` (in the Rego's order) and `objects` error objects.
#[track_caller]
fn denial(policy: &str, steps: Vec<Request>, errors: &[&str], objects: usize) {
    let before = {
        let mut e = Enforcer::new(policy).unwrap();
        for r in &steps[..steps.len() - 1] {
            if let Ok(a) = e.check(r) {
                a.commit().unwrap();
            }
        }
        e.matcher_stats().denied
    };
    let (stats, last) = lockstep(policy, steps).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stats.denied,
        before + 1,
        "not denied by the matcher: {last}"
    );
    assert_eq!(stats.unknown, 0);
    let d: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(d["reason"]["errors"], json!(errors), "{last}");
    assert_eq!(
        d["reason"]["error_objects"].as_array().unwrap().len(),
        objects,
        "{last}"
    );
}

fn with(mut steps: Vec<Request>, last: Request) -> Vec<Request> {
    steps.push(last);
    steps
}

#[test]
fn matcher_explains_storage_denials() {
    let p = policy(vec![app(Some("app"))], false);
    let dev = |t: &str, h: &str| req("mount_device", json!({"target": t, "deviceHash": h}));
    denial(
        &p,
        vec![dev("/run/layers/a", H2)],
        &["deviceHash not found"],
        0,
    );
    denial(&p, vec![dev("/etc/passwd", H1)], &["mountpoint invalid"], 0);
    denial(
        &p,
        vec![dev("/run/layers/../x", H1)],
        &["mountpoint invalid"],
        0,
    );
    denial(
        &p,
        vec![dev("/run/layers/a", H1), dev("/run/layers/a", H1)],
        &["device already mounted at path"],
        0,
    );
    denial(
        &p,
        vec![dev("/run/layers/a", H1), dev("/run/layers/a", H2)],
        &["device already mounted at path", "deviceHash not found"],
        0,
    );
    denial(
        &p,
        vec![dev("", "")],
        &["deviceHash not found", "mountpoint invalid"],
        0,
    );

    let ov = |id: &str, paths: &[&str], target: &str| {
        req(
            "mount_overlay",
            json!({"containerID": id, "layerPaths": paths, "target": target}),
        )
    };
    let m = || vec![dev("/run/layers/a", H1), dev("/run/layers/b", H1)];
    denial(
        &p,
        with(m(), ov("../c", &["/run/layers/a"], "/t")),
        &["invalid containerID"],
        0,
    );
    // An empty target is refused without an error of its own.
    denial(&p, with(m(), ov("c1", &["/run/layers/a"], "")), &[], 0);
    denial(
        &p,
        with(m(), ov("c1", &[], "/t")),
        &["no matching containers for overlay"],
        0,
    );
    denial(
        &p,
        with(m(), ov("c1", &["/run/layers/a", "/run/layers/zz"], "/t")),
        &[
            "no matching containers for overlay",
            "overlay layer is not a mounted device",
        ],
        0,
    );
    denial(
        &p,
        with(m(), ov("c1", &["/run/layers/a", "/run/layers/b"], "/t")),
        &["no matching containers for overlay"],
        0,
    );
    let mut s = m();
    s.push(ov("c1", &["/run/layers/a"], "/t"));
    s.push(ov("c1", &["/run/layers/b"], "/t"));
    denial(
        &p,
        s,
        &[
            "container already has an overlay",
            "overlay target already mounted",
        ],
        0,
    );
    let mut s = mounted("c1", &[H1]);
    s.push(req("create_container", create_input()));
    s.push(req("shutdown_container", json!({"containerID": "c1"})));
    s.push(ov("c1", &["/run/layers/c1-0"], "/run/gcs/c/c1/rootfs2"));
    denial(&p, s, &["container already started"], 0);
}

#[test]
fn matcher_decides_scratch_mounts() {
    let p = policy(vec![app(Some("app"))], false);
    let scratch = |t: &str, enc: bool| req("scratch_mount", json!({"target": t, "encrypted": enc}));
    denial(
        &p,
        vec![scratch("/run/scratch/a", false)],
        &["unencrypted scratch not allowed"],
        0,
    );
    denial(
        &p,
        vec![
            scratch("/run/scratch/a", true),
            scratch("/run/scratch/a", true),
        ],
        &["scratch already mounted at path"],
        0,
    );
    denial(
        &p,
        vec![
            scratch("/run/scratch/a", true),
            scratch("/run/scratch/a", false),
        ],
        &[
            "scratch already mounted at path",
            "unencrypted scratch not allowed",
        ],
        0,
    );
    let (stats, last) = lockstep(&p, vec![scratch("/run/scratch/b", true)]).unwrap();
    assert_eq!((stats.allowed, stats.unknown), (1, 0), "{last}");
    let open = PolicyDocument {
        containers: vec![app(Some("app"))],
        allow_unencrypted_scratch: true,
        ..PolicyDocument::default()
    }
    .to_rego();
    let (stats, last) = lockstep(&open, vec![scratch("/run/scratch/c", false)]).unwrap();
    assert_eq!((stats.allowed, stats.unknown), (1, 0), "{last}");
}

#[test]
fn matcher_explains_every_create_failure() {
    let p = policy(vec![app(Some("app"))], false);
    let nearest = |what: &str| format!("nearest container app (policy index 0) differs in: {what}");
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"argList": ["/bin/sh"]}),
            vec!["invalid command".into(), nearest("command")],
        ),
        (
            json!({"workingDir": "/"}),
            vec!["invalid working directory".into(), nearest("working_dir")],
        ),
        (
            json!({"envList": ["PATH=/bin", "LD_PRELOAD=/x.so", "X_mode=1", "NOEQ", "TZ=Europe/Paris\n"]}),
            vec![
                "invalid env list: LD_PRELOAD,X_mode,NOEQ,TZ".into(),
                nearest("env"),
            ],
        ),
        (
            json!({"envList": ["X_A=1"]}),
            vec![
                "missing required environment variable".into(),
                nearest("env"),
            ],
        ),
        (
            json!({"mounts": [
                {"destination": "/etc", "source": "/etc", "type": "bind", "options": ["rbind"]},
                {"destination": "/proc", "source": "proc", "type": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/data", "source": "/run/gcs/c/sb/sandboxMounts/../x", "type": "bind", "options": ["rw", "rbind"]},
                {"destination": "/sys", "source": "sysfs", "type": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]},
            ]}),
            vec![
                "invalid mount list: /etc,/data,/sys".into(),
                nearest("mounts"),
            ],
        ),
        (
            json!({"privileged": true}),
            vec![
                "privileged escalation not allowed".into(),
                nearest("privileged"),
            ],
        ),
        (
            json!({"user": {"uid": {"id": "0", "name": "root"}, "groups": [], "umask": "0022"}, "seccompProfileSHA256": "ab"}),
            vec!["invalid seccomp".into(), nearest("seccomp")],
        ),
        (
            json!({"capabilities": caps(&["CAP_SYS_ADMIN"])}),
            vec!["capabilities don't match".into(), nearest("capabilities")],
        ),
        (
            json!({"capabilities": null}),
            vec!["capabilities don't match".into(), nearest("capabilities")],
        ),
        (
            json!({"argList": [], "workingDir": "", "envList": [], "privileged": true, "capabilities": null, "seccompProfileSHA256": "x"}),
            vec![
                "invalid command".into(),
                nearest("command, working_dir, env, privileged, seccomp, capabilities"),
            ],
        ),
    ];
    for (patch, errors) in cases {
        let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
        let mut sorted = errors.clone();
        sorted.sort_unstable();
        denial(
            &p,
            with(
                mounted("c1", &[H1]),
                req("create_container", patched(patch)),
            ),
            &sorted,
            1,
        );
    }

    // User, umask and no_new_privileges rules, on a candidate named by its id.
    let mut strict = app(None);
    strict.id = Some("img:1".into());
    strict.layers = vec![H2.to_owned()];
    strict.no_new_privileges = true;
    strict.user = strict_user();
    let p = policy(vec![app(None), strict], false);
    let user = json!({"uid": {"id": "1000", "name": "app"}, "groups": [{"id": "1000", "name": "app"}], "umask": "0022"});
    for (patch, first, what) in [
        (
            json!({"user": user}),
            "invalid noNewPrivileges",
            "no_new_privileges",
        ),
        (
            json!({"noNewPrivileges": true, "user": {"uid": {"id": "0", "name": "root"}, "groups": [], "umask": "0022"}}),
            "invalid user",
            "user",
        ),
        (
            json!({"noNewPrivileges": true, "user": {"uid": {"id": "1000", "name": "app"}, "groups": [{"id": "0", "name": "root"}], "umask": "0022"}}),
            "invalid user",
            "user",
        ),
        (
            json!({"noNewPrivileges": true, "user": {"uid": {"id": "1000", "name": "app"}, "groups": [], "umask": "0000"}}),
            "invalid user",
            "user",
        ),
        (json!({"noNewPrivileges": true}), "invalid user", "user"),
        (
            json!({"user": {"uid": {"id": "0", "name": "root"}, "groups": [], "umask": "0022"}}),
            "invalid noNewPrivileges",
            "no_new_privileges, user",
        ),
    ] {
        let nearest = format!("nearest container img:1 (policy index 1) differs in: {what}");
        let mut errors = vec![first, nearest.as_str()];
        errors.sort_unstable();
        denial(
            &p,
            with(
                mounted("c1", &[H2]),
                req("create_container", patched(patch)),
            ),
            &errors,
            1,
        );
    }
    // Neither name nor id: `#<index>`.
    denial(
        &p,
        with(
            mounted("c1", &[H1]),
            req("create_container", patched(json!({"argList": ["/bin/sh"]}))),
        ),
        &[
            "invalid command",
            "nearest container #0 (policy index 0) differs in: command",
        ],
        1,
    );

    // Nearest: fewest failures, then the lowest index.
    let mut far = app(Some("far"));
    far.working_dir = "/other".into();
    let p = policy(vec![far, app(Some("near")), app(Some("tie"))], false);
    denial(
        &p,
        with(
            mounted("c1", &[H1]),
            req("create_container", patched(json!({"argList": ["/bin/sh"]}))),
        ),
        &[
            "invalid command",
            "nearest container near (policy index 1) differs in: command",
        ],
        3,
    );
}

fn strict_user() -> Option<charter_policy::model::UserRule> {
    Some(
        serde_json::from_value(json!({
            "user_idname": {"pattern": "app", "strategy": "name"},
            "group_idnames": [{"pattern": "1000", "strategy": "id"}],
            "umask": "0022",
        }))
        .unwrap(),
    )
}

#[test]
fn matcher_explains_lifecycle_and_ambiguity() {
    let p = policy(vec![app(Some("app"))], false);
    // No overlay for the ID.
    denial(
        &p,
        vec![req("create_container", create_input())],
        &["container has no matching overlay"],
        0,
    );
    // Created twice.
    let mut s = mounted("c1", &[H1]);
    s.push(req("create_container", create_input()));
    s.push(req("create_container", create_input()));
    denial(&p, s, &["container already started"], 1);
    // Created again after shutdown: started, and the candidates are gone.
    let mut s = mounted("c1", &[H1]);
    s.push(req("create_container", create_input()));
    s.push(req("shutdown_container", json!({"containerID": "c1"})));
    s.push(req("create_container", create_input()));
    denial(
        &p,
        s,
        &[
            "container already started",
            "container has no matching overlay",
        ],
        0,
    );

    // Survivors that differ in stdio.
    let mut loud = app(Some("loud"));
    loud.allow_stdio_access = true;
    let p = policy(vec![app(Some("quiet")), loud], false);
    denial(
        &p,
        with(
            mounted("c1", &[H1]),
            req("create_container", create_input()),
        ),
        &["containers only distinguishable by allow_stdio_access"],
        2,
    );

    // Survivors that keep different environments / capabilities (dropping on).
    let mut a = app(Some("a"));
    a.env_rules.push(EnvRule::string("A=1", false));
    let mut b = app(Some("b"));
    b.env_rules.push(EnvRule::string("B=1", false));
    b.capabilities = Some(caps(&["CAP_CHOWN"]));
    let p = policy(vec![a, b, app(Some("c"))], true);
    let mut input = create_input();
    input["envList"] = json!(["PATH=/bin", "A=1", "B=1"]);
    denial(
        &p,
        with(mounted("c1", &[H1]), req("create_container", input)),
        &[
            "containers only distinguishable by dropped capabilities",
            "containers only distinguishable by dropped environment variables",
        ],
        3,
    );
    // Dropping still needs the required variables.
    let mut input = create_input();
    input["envList"] = json!(["X_A=1", "JUNK=1"]);
    denial(
        &p,
        with(mounted("c1", &[H1]), req("create_container", input)),
        &[
            "missing required environment variable",
            "nearest container a (policy index 0) differs in: env",
        ],
        3,
    );
}

// ---------------------------------------------------------------------------------------------
// Random sequences.

fn fixtures() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::cases_dir().join("fixtures.json")).unwrap(),
    )
    .unwrap()
}

/// Requests built from the fixtures with random mutations of the fields the matcher reads.
fn request() -> impl Strategy<Value = (String, Value)> {
    let t = prop::sample::select(vec![
        "/run/layers/p1",
        "/run/layers/p2",
        "/run/layers/p3",
        "/run/layers/x",
        "/run/layers/../p1",
        "/tmp/p1",
    ]);
    let h = prop::sample::select(vec!["1", "2", "3", "7", "a", "f"]);
    let cid = prop::sample::select(vec!["c1", "c2", "-bad"]);
    let ot = prop::sample::select(vec!["rootfs", "rootfs2", ""]);
    prop_oneof![
        3 => (t.clone(), h).prop_map(|(t, h)| ("mount_device".to_owned(), json!({"target": t, "deviceHash": h.repeat(64)}))),
        2 => (cid.clone(), prop::collection::vec(t.clone(), 0..4), ot.clone()).prop_map(|(c, l, o)| ("mount_overlay".to_owned(),
            json!({"containerID": c, "layerPaths": l, "target": if o.is_empty() { String::new() } else { format!("/run/gcs/c/{c}/{o}") }}))),
        2 => (cid.clone(), ot).prop_map(|(c, o)| ("mount_overlay".to_owned(),
            json!({"containerID": c, "layerPaths": ["/run/layers/p3", "/run/layers/p2", "/run/layers/p1"], "target": format!("/run/gcs/c/{c}/{o}")}))),
        5 => (cid.clone(), 0..3usize, prop::collection::vec(0..16usize, 0..4)).prop_map(|(c, tpl, muts)| {
            let fx = fixtures();
            let mut input = fx["inputs"][["create_web", "create_twin", "create_admin"][tpl]].clone();
            input["containerID"] = json!(c);
            for m in muts {
                match m {
                    0 => input["envList"].as_array_mut().unwrap().push(json!("MODE=prod\nX=1")),
                    1 => input["envList"].as_array_mut().unwrap().push(json!("GREETING=hi")),
                    2 => input["privileged"] = json!(true),
                    3 => input["noNewPrivileges"] = json!(false),
                    4 => input["workingDir"] = json!("/"),
                    5 => input["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]),
                    6 => input["mounts"].as_array_mut().unwrap().push(json!({"destination": "/sys", "source": "sysfs", "type": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]})),
                    7 => input["user"] = json!({"uid": {"id": "0", "name": "root"}, "groups": [], "umask": "0022"}),
                    8 => input["envList"] = json!(["PATH=/bin"]),
                    9 => input["seccompProfileSHA256"] = json!(""),
                    10 => input["argList"] = json!(["/bin/sh", "-c", "id"]),
                    11 => input["envList"] = json!([]),
                    12 => input["capabilities"] = json!(null),
                    13 => input["mounts"].as_array_mut().unwrap().push(json!({"destination": "/host", "source": "/", "type": "bind", "options": ["rbind"]})),
                    14 => input["envList"].as_array_mut().unwrap().push(json!("A=1")),
                    _ => input["user"] = json!({"uid": {"id": "1000", "name": "app"}, "groups": [], "umask": "0077"}),
                }
            }
            ("create_container".to_owned(), input)
        }),
        1 => cid.prop_map(|c| ("shutdown_container".to_owned(), json!({"containerID": c}))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn matcher_agrees_with_rego_on_random_sequences(
        policy in prop::sample::select(vec!["closed", "open", "dropping"]),
        reqs in prop::collection::vec(request(), 1..16),
    ) {
        let doc: PolicyDocument = serde_json::from_value(fixtures()["policies"][policy].clone()).unwrap();
        let steps = reqs.into_iter().map(|(rule, input)| Request::from_rule_input(&rule, input).unwrap());
        match lockstep(&doc.to_rego(), steps) {
            Ok((stats, _)) => prop_assert_eq!(stats.unknown, 0),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
