//! Arbitrary host inputs (any rule, any mix of ACI field names and JSON values) never panic the
//! decoder or the enforcer, every decoded request is decided, denials fit in 3 KiB, and a
//! denial never changes the state.

mod common;

use charter_policy::{limits, Enforcer, PolicyDocument, Request, ENFORCEMENT_POINTS};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIELDS: [&str; 24] = [
    "target",
    "deviceHash",
    "unmountTarget",
    "containerID",
    "layerPaths",
    "argList",
    "envList",
    "workingDir",
    "sandboxDir",
    "hugePagesDir",
    "mounts",
    "privileged",
    "noNewPrivileges",
    "user",
    "capabilities",
    "seccompProfileSHA256",
    "signal",
    "isInitProcess",
    "rootPrefix",
    "mountPathPrefix",
    "encrypted",
    "issuer",
    "feed",
    "namespace",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~\\n]{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "/run/layers/p1",
            "/run/gcs/c/web1/rootfs",
            "web1",
            "PATH=/bin",
            "..",
            "1111111111111111111111111111111111111111111111111111111111111111"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn input() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 0..8).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_inputs_are_decided_safely(
        steps in prop::collection::vec((prop::sample::select(ENFORCEMENT_POINTS.to_vec()), input()), 1..6),
    ) {
        let fx: Value = serde_json::from_str(&std::fs::read_to_string(common::cases_dir().join("fixtures.json")).unwrap()).unwrap();
        let doc: PolicyDocument = serde_json::from_value(fx["policies"]["open"].clone()).unwrap();
        let mut e = Enforcer::new(doc.to_rego()).unwrap();
        for (rule, input) in steps {
            let Ok(request) = Request::from_rule_input(rule, input) else { continue };
            let before = e.metadata();
            match e.check(&request) {
                Ok(a) => a.commit().unwrap(),
                Err(d) => {
                    prop_assert!(d.decision_json().to_string().len() <= limits::MAX_DENIAL_BYTES);
                    prop_assert_eq!(e.metadata(), before);
                }
            }
        }
    }
}
