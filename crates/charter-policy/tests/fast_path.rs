//! Lockstep differential test of the compiled matcher against the Rego framework: the case
//! table and random request sequences run through two enforcers, one with the matcher and one
//! Rego-only; every decision (allowed, env, caps, stdio) and every resulting state must agree.

mod common;

use charter_policy::{Enforcer, PolicyDocument, Request};
use proptest::prelude::*;
use serde_json::{json, Value};

static BY_MATCHER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn decide(e: &mut Enforcer, r: &Request) -> Value {
    match e.check(r) {
        Ok(a) => {
            if a.decided_by_matcher() {
                BY_MATCHER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let d = json!({"allowed": true, "env": a.env_list(), "caps": a.caps_list(), "stdio": a.allow_stdio_access()});
            a.commit().unwrap();
            d
        }
        Err(d) => json!({"allowed": false, "errors": d.reason().errors}),
    }
}

fn lockstep(policy: &str, steps: impl IntoIterator<Item = Request>) -> Result<usize, String> {
    let mut fast = Enforcer::new(policy).unwrap();
    let mut rego = Enforcer::new(policy).unwrap();
    rego.set_compiled_matcher(false);
    let mut n = 0;
    for (i, r) in steps.into_iter().enumerate() {
        let (a, b) = (decide(&mut fast, &r), decide(&mut rego, &r));
        if a != b {
            return Err(format!("step {i} {}: matcher {a} vs rego {b}", r.rule()));
        }
        if fast.metadata() != rego.metadata() {
            return Err(format!(
                "step {i} {}: state {} vs {}",
                r.rule(),
                fast.metadata(),
                rego.metadata()
            ));
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn matcher_agrees_with_rego_on_case_table() {
    let mut active = 0;
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
        if let Err(e) = lockstep(&case.policy, steps) {
            panic!("{}/{}: {e}", case.file, case.name);
        }
    }
    assert!(active >= 100, "matcher active for only {active} cases");
    let by_matcher = BY_MATCHER.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        by_matcher >= 200,
        "matcher decided only {by_matcher} allows"
    );
}

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
    ]);
    let h = prop::sample::select(vec!["1", "2", "3", "7", "a", "f"]);
    let cid = prop::sample::select(vec!["c1", "c2"]);
    prop_oneof![
        3 => (t.clone(), h).prop_map(|(t, h)| ("mount_device".to_owned(), json!({"target": t, "deviceHash": h.repeat(64)}))),
        2 => (cid.clone(), prop::collection::vec(t.clone(), 0..4)).prop_map(|(c, l)| ("mount_overlay".to_owned(),
            json!({"containerID": c, "layerPaths": l, "target": format!("/run/gcs/c/{c}/rootfs")}))),
        2 => cid.clone().prop_map(|c| ("mount_overlay".to_owned(),
            json!({"containerID": c, "layerPaths": ["/run/layers/p3", "/run/layers/p2", "/run/layers/p1"], "target": format!("/run/gcs/c/{c}/rootfs")}))),
        4 => (cid.clone(), 0..3usize, prop::collection::vec(0..10usize, 0..3)).prop_map(|(c, tpl, muts)| {
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
                    _ => input["seccompProfileSHA256"] = json!(""),
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
        if let Err(e) = lockstep(&doc.to_rego(), steps) {
            prop_assert!(false, "{}", e);
        }
    }
}
