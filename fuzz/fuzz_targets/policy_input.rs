//! Untrusted host requests (JSON Lines, as in `charter policy simulate`) replayed against a fixed
//! policy, and untrusted policy text: neither may panic; every request is decided.
#![no_main]

use charter_policy::model::{Container, EnvRule, MountConstraint};
use charter_policy::{Enforcer, PolicyDocument, Request};
use libfuzzer_sys::fuzz_target;

fn policy() -> String {
    PolicyDocument {
        containers: vec![Container {
            name: Some("web".into()),
            layers: vec!["1".repeat(64), "2".repeat(64)],
            command: vec!["/bin/server".into()],
            env_rules: vec![
                EnvRule::string("PATH=/bin", true),
                EnvRule::re2("MODE=(a|b)", false),
            ],
            mounts: vec![MountConstraint {
                destination: "/data".into(),
                source: "sandbox:///tmp/atlas/emptydir/.+".into(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "rw".into()],
            }],
            signals: vec![15],
            ..Container::default()
        }],
        ..PolicyDocument::default()
    }
    .to_rego()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Arbitrary policy text.
        if let Ok(mut e) = Enforcer::new(rest) {
            let _ = e
                .check(&Request::GetProperties(Default::default()))
                .map(|a| a.commit());
        }
        return;
    }
    let Ok(mut enforcer) = Enforcer::new(policy()) else {
        return;
    };
    for line in rest.split(|&b| b == b'\n').take(32) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let rule = v
            .get("rule")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned();
        let input = v.get("input").cloned().unwrap_or(serde_json::Value::Null);
        let Ok(request) = Request::from_rule_input(&rule, input) else {
            continue;
        };
        match enforcer.check(&request) {
            Ok(allowed) => {
                let _ = allowed.commit();
            }
            Err(denied) => {
                assert!(
                    denied.decision_json().to_string().len()
                        <= charter_policy::limits::MAX_DENIAL_BYTES
                );
            }
        }
    }
});
