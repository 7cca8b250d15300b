//! Enforcer API behaviour: loading, digest, the typed model, limits, commit/rollback.

mod common;

use charter_policy::model::{Container, EnvRule};
use charter_policy::model::{KeyBroker, SealedVolume};
use charter_policy::request::{MountDevice, MountSealed, NoInput, ScratchMount, Unmount};
use charter_policy::{limits, Enforcer, Error, PolicyDocument, Request};
use sha2::{Digest, Sha256};

fn doc() -> PolicyDocument {
    PolicyDocument {
        containers: vec![Container {
            name: Some("app".into()),
            layers: vec!["ab".repeat(32)],
            command: vec!["/app".into()],
            env_rules: vec![
                EnvRule::string("PATH=/bin", true),
                EnvRule::re2("X=[0-9]+", false),
            ],
            ..Container::default()
        }],
        ..PolicyDocument::default()
    }
}

fn mount(target: &str, hash: &str) -> Request {
    Request::MountDevice(MountDevice {
        target: target.into(),
        device_hash: hash.into(),
    })
}

#[test]
fn aci_allow_all_policy_loads_and_allows() {
    let text = std::fs::read("/work/shared/testdata/snp/aci-milan-v2-policy/security_policy.rego")
        .or_else(|_| std::fs::read(common::cases_dir().join("policies/aci-allow-all.rego")))
        .unwrap();
    let mut e = Enforcer::new(&text).unwrap();
    assert_eq!(e.policy_digest(), <[u8; 32]>::from(Sha256::digest(&text)));
    // HOST_DATA of the real ACI SNP report that was launched with this policy.
    assert_eq!(
        hex::encode(e.policy_digest()),
        "cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c"
    );
    let s = e.summary();
    assert_eq!(s.api_version, "0.10.0");
    assert_eq!(s.enforcement_points.len(), 17);
    // charter's one extension point; an ACI policy does not bind it, so it is denied there.
    assert_eq!(s.missing_points, ["mount_sealed"]);
    e.check(&mount("/anywhere", "00"))
        .unwrap()
        .commit()
        .unwrap();
    e.check(&Request::DumpStacks(NoInput {}))
        .unwrap()
        .commit()
        .unwrap();
}

#[test]
fn rendering_is_deterministic_and_round_trips() {
    let d = doc();
    let text = d.to_rego();
    assert_eq!(text, d.clone().to_rego());
    assert!(text.starts_with("package policy\n"));
    assert!(text.contains("mount_device := data.framework.mount_device\n"));
    assert!(text.contains("reason := data.framework.reason\n"));
    let e = Enforcer::new(&text).unwrap();
    assert_eq!(e.document(), Some(&d));
    assert_eq!(
        e.policy_digest(),
        <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
    );
    // One byte more is another policy.
    let e2 = Enforcer::new(format!("{text} ")).unwrap();
    assert_ne!(e.policy_digest(), e2.policy_digest());
}

#[test]
fn api_svn_spelling_and_v0_syntax_accepted() {
    let v0 = "package policy\napi_svn := \"0.10.0\"\ndefault get_properties = {\"allowed\": false}\nget_properties = {\"allowed\": true} { true }\n";
    let mut e = Enforcer::new(v0).unwrap();
    assert!(e.summary().rego_v0);
    e.check(&Request::GetProperties(NoInput {}))
        .unwrap()
        .rollback();
}

#[test]
fn bad_policies_are_rejected() {
    assert!(matches!(
        Enforcer::new("package other\napi_version := \"0.10.0\""),
        Err(Error::PolicyPackage(_))
    ));
    assert!(matches!(
        Enforcer::new("package policy\nx := 1"),
        Err(Error::MissingApiVersion)
    ));
    assert!(matches!(
        Enforcer::new("package policy\napi_version := \"ten\""),
        Err(Error::BadApiVersion(_))
    ));
    assert!(matches!(
        Enforcer::new("package policy\napi_version := "),
        Err(Error::PolicyParse(_))
    ));
    assert!(matches!(
        Enforcer::new([0xff, 0xfe]),
        Err(Error::PolicyNotUtf8)
    ));
    let big = vec![b' '; limits::MAX_POLICY_BYTES + 1];
    assert!(matches!(
        Enforcer::new(big),
        Err(Error::PolicyTooLarge { .. })
    ));
    let mut d = doc();
    d.containers[0].env_rules.push(EnvRule::re2("A=(", false));
    assert!(matches!(
        Enforcer::new(d.to_rego()),
        Err(Error::BadRegex { .. })
    ));
    // Over regorus's 100 KiB compiled-regex cap: refused up front, not silently unmatched.
    let mut d = doc();
    d.containers[0]
        .env_rules
        .push(EnvRule::re2(&"[a-z0-9._-]{1,64}".repeat(40), false));
    assert!(matches!(
        Enforcer::new(d.to_rego()),
        Err(Error::BadRegex { .. })
    ));
    let shaped = "package policy\napi_version := \"0.10.0\"\ncontainers := [{\"layers\": 5}]\n";
    assert!(matches!(
        Enforcer::new(shaped),
        Err(Error::PolicyData { .. })
    ));
}

#[test]
fn rollback_keeps_state_and_commit_applies_it() {
    let mut e = Enforcer::new(doc().to_rego()).unwrap();
    let hash = "ab".repeat(32);
    let a = e.check(&mount("/run/layers/p0", &hash)).unwrap();
    assert!(a.changes_state());
    a.rollback();
    assert_eq!(e.metadata(), serde_json::json!({}));
    // Dropping without commit is a rollback too.
    drop(e.check(&mount("/run/layers/p0", &hash)).unwrap());
    e.check(&mount("/run/layers/p0", &hash))
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(e.metadata()["devices"]["/run/layers/p0"], hash.as_str());
    let denied = e.check(&mount("/run/layers/p0", &hash)).unwrap_err();
    assert!(denied
        .explanation()
        .contains("device already mounted at path"));
    e.check(&Request::UnmountDevice(Unmount {
        unmount_target: "/run/layers/p0".into(),
    }))
    .unwrap()
    .commit()
    .unwrap();
    assert_eq!(e.metadata()["devices"], serde_json::json!({}));
}

#[test]
fn oversized_input_is_denied() {
    let mut e = Enforcer::new(doc().to_rego()).unwrap();
    let huge = "x".repeat(limits::MAX_INPUT_BYTES);
    let d = e.check(&mount(&huge, "00")).unwrap_err();
    assert!(d.policy_error().unwrap().contains("limit"));
}

#[test]
fn runaway_custom_rule_is_denied_by_the_time_limit() {
    // 10^8 iterations: far beyond the evaluation budget.
    let policy = "package policy\napi_version := \"0.10.0\"\nget_properties := {\"allowed\": count([x | some x in numbers.range(1, 100000000)]) > 0}\n";
    let mut e = Enforcer::new(policy).unwrap();
    let d = e.check(&Request::GetProperties(NoInput {})).unwrap_err();
    let err = d.policy_error().unwrap_or_default();
    assert!(err.contains("time") || err.contains("limit"), "{err}");
}

#[test]
fn strict_request_decoding() {
    let err = Request::from_rule_input(
        "mount_device",
        serde_json::json!({"target": "/x", "deviceHash": "a", "extra": 1}),
    );
    assert!(matches!(err, Err(Error::Request(_))));
    assert!(Request::from_rule_input("format_disk", serde_json::json!({})).is_err());
    assert!(Request::from_rule_input("get_properties", serde_json::Value::Null).is_ok());
    let r = Request::ScratchMount(ScratchMount {
        target: "/s".into(),
        encrypted: true,
    });
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"rule": "scratch_mount", "input": {"target": "/s", "encrypted": true}})
    );
}

#[test]
fn enforcer_is_send_and_sync_and_matcher_only_for_rendered_documents() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Enforcer>();
    let text = doc().to_rego();
    assert!(Enforcer::new(&text).unwrap().compiled_matcher_active());
    // Any byte of difference (a custom rule, other formatting) means Rego only.
    let custom = format!("{text}\nextra := 1\n");
    assert!(!Enforcer::new(custom).unwrap().compiled_matcher_active());
    let aci = std::fs::read(common::cases_dir().join("policies/aci-allow-all.rego")).unwrap();
    assert!(!Enforcer::new(aci).unwrap().compiled_matcher_active());
}

fn sealed(name: &str, target: &str) -> Request {
    Request::MountSealed(MountSealed {
        name: name.into(),
        target: target.into(),
    })
}

#[test]
fn sealed_volumes_are_bound_to_the_policy() {
    let d = PolicyDocument {
        key_broker: Some(KeyBroker {
            url: "https://broker.example:8443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            workload_endpoint: true,
        }),
        sealed_volumes: vec![SealedVolume {
            name: "owner-a".into(),
            resource: "owner-a/data/key".into(),
        }],
        ..doc()
    };
    let text = d.to_rego();
    assert!(text.contains("key_broker := {"), "{text}");
    let mut e = Enforcer::new(&text).unwrap();
    assert_eq!(e.document(), Some(&d), "the extension fields round-trip");
    assert!(e.summary().missing_points.is_empty());
    let dir = "/run/charter/sandbox/tmp/atlas/sealed";
    // Not listed, or somewhere else: denied with the reason.
    let err = e
        .check(&sealed("owner-b", &format!("{dir}/owner-b")))
        .unwrap_err();
    assert!(
        err.explanation().contains("sealed volume not in policy"),
        "{}",
        err.explanation()
    );
    let err = e
        .check(&sealed(
            "owner-a",
            "/run/charter/sandbox/tmp/atlas/emptydir/owner-a",
        ))
        .unwrap_err();
    assert!(
        err.explanation().contains("not its sandbox directory"),
        "{}",
        err.explanation()
    );
    // Listed: allowed once, and the state names the resource.
    e.check(&sealed("owner-a", &format!("{dir}/owner-a")))
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(e.metadata()["sealed_mounts"]["owner-a"], "owner-a/data/key");
    let err = e
        .check(&sealed("owner-a", &format!("{dir}/owner-a")))
        .unwrap_err();
    assert!(
        err.explanation().contains("already mounted"),
        "{}",
        err.explanation()
    );

    // A policy without sealed volumes allows none.
    let mut plain = Enforcer::new(doc().to_rego()).unwrap();
    assert!(plain
        .check(&sealed("owner-a", &format!("{dir}/owner-a")))
        .is_err());
    // Sealed volumes without a broker to fetch keys from do not load.
    let orphan = PolicyDocument {
        key_broker: None,
        ..d
    };
    assert!(matches!(
        Enforcer::new(orphan.to_rego()),
        Err(Error::PolicyData { .. })
    ));
}
