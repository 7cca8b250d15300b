//! Property: random host request sequences never create a container that no policy container
//! matches (checked by an independent oracle written here, not by the framework), and denied
//! requests never change the state.

mod common;

use std::collections::BTreeMap;

use charter_policy::model::{Container, EnvRule, EnvStrategy};
use charter_policy::{Enforcer, PolicyDocument, Request};
use proptest::prelude::*;
use serde_json::{json, Value};

fn fixtures() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::cases_dir().join("fixtures.json")).unwrap(),
    )
    .unwrap()
}

const TARGETS: [&str; 4] = [
    "/run/layers/p1",
    "/run/layers/p2",
    "/run/layers/p3",
    "/run/layers/p4",
];
const CIDS: [&str; 2] = ["c1", "c2"];

fn hashes() -> Vec<String> {
    ["1", "2", "3", "a", "7", "f"]
        .iter()
        .map(|c| c.repeat(64))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Mount(usize, usize),
    Unmount(usize),
    Overlay(usize, Vec<usize>),
    /// `argv`/`workdir` `None`: the template's own value.
    Create {
        cid: usize,
        template: usize,
        argv: Option<usize>,
        inject: bool,
        workdir: Option<usize>,
        privileged: bool,
    },
    Shutdown(usize),
    /// The exact mounts and overlay the `web` container needs, to reach deep states often.
    WebOverlay(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..6usize).prop_map(|(t, h)| Op::Mount(t, h)),
        1 => (0..4usize).prop_map(Op::Unmount),
        3 => (0..2usize, prop::collection::vec(0..4usize, 0..4)).prop_map(|(c, l)| Op::Overlay(c, l)),
        4 => (0..2usize, 0..3usize, prop::option::weighted(0.3, 0..3usize), prop::bool::weighted(0.25), prop::option::weighted(0.3, 0..2usize), prop::bool::weighted(0.25)).prop_map(
            |(cid, template, argv, inject, workdir, privileged)| Op::Create { cid, template, argv, inject, workdir, privileged }
        ),
        1 => (0..2usize).prop_map(Op::Shutdown),
        2 => (0..2usize).prop_map(Op::WebOverlay),
    ]
}

fn env_rule_matches(rule: &EnvRule, env: &str) -> bool {
    let m = |strategy: EnvStrategy, pattern: &str, value: &str| match strategy {
        EnvStrategy::String => pattern == value,
        EnvStrategy::Re2 => regex::Regex::new(&format!("^(?:{pattern})$"))
            .unwrap()
            .is_match(value),
    };
    match rule {
        EnvRule::Whole {
            pattern, strategy, ..
        } => m(*strategy, pattern, env),
        EnvRule::Split {
            name,
            name_strategy,
            value,
            value_strategy,
            ..
        } => match env.split_once('=') {
            Some((n, v)) => m(*name_strategy, name, n) && m(*value_strategy, value, v),
            None => false,
        },
    }
}

/// Independent oracle: some policy container has exactly these layers, argv, working dir and
/// env rules accepting every variable, and allows elevation if privileged.
fn some_container_matches(doc: &PolicyDocument, layers: &[String], input: &Value) -> bool {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let argv = strs(&input["argList"]);
    let env = strs(&input["envList"]);
    doc.containers.iter().any(|c: &Container| {
        c.layers == layers
            && c.command == argv
            && c.working_dir == input["workingDir"].as_str().unwrap()
            && env
                .iter()
                .all(|e| c.env_rules.iter().any(|r| env_rule_matches(r, e)))
            && (!input["privileged"].as_bool().unwrap() || c.allow_elevated)
    })
}

/// How an allowed request changes the test's own model (devices, overlays).
type Effect = Box<dyn Fn(&mut BTreeMap<&str, String>, &mut BTreeMap<&str, Vec<String>>)>;

static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_stay_inside_policy(ops in prop::collection::vec(op(), 1..24)) {
        let fx = fixtures();
        let doc: PolicyDocument = serde_json::from_value(fx["policies"]["closed"].clone()).unwrap();
        let mut enforcer = Enforcer::new(doc.to_rego()).unwrap();
        let hashes = hashes();
        let templates = ["create_web", "create_pause", "create_twin"];
        let argvs = [json!(["/bin/server", "--port", "8080"]), json!(["/pause"]), json!(["/bin/sh"])];
        // The test's own model of mounted devices and overlays.
        let mut devices: BTreeMap<&str, String> = BTreeMap::new();
        let mut overlays: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let ops: Vec<Op> = ops
            .into_iter()
            .flat_map(|op| match op {
                Op::WebOverlay(c) => vec![Op::Mount(0, 0), Op::Mount(1, 1), Op::Mount(2, 2), Op::Overlay(c, vec![2, 1, 0])],
                other => vec![other],
            })
            .collect();
        for op in ops {
            let (request, effect): (Value, Effect) = match op.clone() {
                Op::Mount(t, h) => {
                    let h2 = hashes[h].clone();
                    (json!({"rule": "mount_device", "input": {"target": TARGETS[t], "deviceHash": hashes[h]}}),
                     Box::new(move |d, _| { d.insert(TARGETS[t], h2.clone()); }))
                }
                Op::Unmount(t) => (json!({"rule": "unmount_device", "input": {"unmountTarget": TARGETS[t]}}),
                    Box::new(move |d, _| { d.remove(TARGETS[t]); })),
                Op::Overlay(c, paths) => {
                    let layer_paths: Vec<&str> = paths.iter().map(|&i| TARGETS[i]).collect();
                    let base_first: Vec<String> = layer_paths.iter().rev().map(|p| devices.get(p).cloned().unwrap_or_default()).collect();
                    (json!({"rule": "mount_overlay", "input": {"containerID": CIDS[c], "layerPaths": layer_paths, "target": format!("/run/gcs/c/{}/rootfs", CIDS[c])}}),
                     Box::new(move |_, o| { o.insert(CIDS[c], base_first.clone()); }))
                }
                Op::Create { cid, template, argv, inject, workdir, privileged } => {
                    let mut input = fx["inputs"][templates[template]].clone();
                    input["containerID"] = json!(CIDS[cid]);
                    if let Some(argv) = argv {
                        input["argList"] = argvs[argv].clone();
                    }
                    if inject {
                        input["envList"].as_array_mut().unwrap().push(json!("LD_PRELOAD=/x.so"));
                    }
                    if let Some(workdir) = workdir {
                        input["workingDir"] = json!(["/", "/app"][workdir]);
                    }
                    input["privileged"] = json!(privileged);
                    (json!({"rule": "create_container", "input": input}), Box::new(|_, _| {}))
                }
                Op::WebOverlay(_) => unreachable!(),
                Op::Shutdown(c) => (json!({"rule": "shutdown_container", "input": {"containerID": CIDS[c]}}), Box::new(|_, _| {})),
            };
            let req = Request::from_rule_input(request["rule"].as_str().unwrap(), request["input"].clone()).unwrap();
            let before = enforcer.metadata();
            match enforcer.check(&req) {
                Ok(allowed) => {
                    if let Op::Create { cid, .. } = op {
                        let layers = overlays.get(CIDS[cid]).cloned().unwrap_or_default();
                        prop_assert!(some_container_matches(&doc, &layers, &request["input"]),
                            "created a container no policy container matches: {request}");
                    }
                    if let Op::Create { .. } = op {
                        CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    allowed.commit().unwrap();
                    effect(&mut devices, &mut overlays);
                }
                Err(_) => prop_assert_eq!(enforcer.metadata(), before, "denial changed state"),
            }
        }
        if std::env::var_os("CHARTER_SEQ_VERBOSE").is_some() {
            println!("allowed creates so far: {}", CREATED.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}
