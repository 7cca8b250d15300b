//! Runs the table-driven cases in `tests/cases/*.json` through the enforcer.

mod common;

use charter_policy::{Enforcer, Request};

#[test]
fn case_table() {
    let cases = common::load_cases();
    let hostile = cases.iter().filter(|c| c.hostile).count();
    assert!(cases.len() >= 80, "only {} cases", cases.len());
    assert!(hostile >= 40, "only {hostile} hostile cases");
    let mut failures = Vec::new();
    for case in &cases {
        let mut enforcer = Enforcer::new(case.policy.as_bytes())
            .unwrap_or_else(|e| panic!("{}: policy {}: {e}", case.name, case.policy_name));
        for (i, step) in case.steps.iter().enumerate() {
            let label = format!("{}/{} step {i} ({})", case.file, case.name, step.rule);
            let request = match Request::from_rule_input(&step.rule, step.input.clone()) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{label}: request does not decode: {e}"));
                    break;
                }
            };
            let before = enforcer.metadata();
            match enforcer.check(&request) {
                Ok(allowed) => {
                    if !step.allowed {
                        failures.push(format!(
                            "{label}: allowed, expected denial {:?}",
                            step.error
                        ));
                        allowed.rollback();
                        continue;
                    }
                    if let Some(stdio) = step.stdio {
                        if allowed.allow_stdio_access() != stdio {
                            failures
                                .push(format!("{label}: stdio {}", allowed.allow_stdio_access()));
                        }
                    }
                    if let Some(env) = &step.env_list {
                        if allowed.env_list() != Some(env.as_slice()) {
                            failures.push(format!("{label}: env_list {:?}", allowed.env_list()));
                        }
                    }
                    if let Some(b) = &step.caps_bounding {
                        if allowed.caps_list().map(|c| &c.bounding) != Some(b) {
                            failures.push(format!("{label}: caps {:?}", allowed.caps_list()));
                        }
                    }
                    allowed.commit().unwrap();
                }
                Err(denied) => {
                    assert_eq!(enforcer.metadata(), before, "{label}: denial changed state");
                    let text = denied.explanation();
                    if std::env::var_os("CHARTER_CASES_VERBOSE").is_some() {
                        println!("{label}: {text}");
                    }
                    if step.allowed {
                        failures.push(format!("{label}: denied: {text}"));
                        break;
                    }
                    if let Some(want) = &step.error {
                        if !text.contains(want.as_str()) {
                            failures.push(format!("{label}: explanation {text:?} lacks {want:?}"));
                        }
                    }
                    // Denials never leak environment values and fit ACI's wire limit.
                    let wire = denied.decision_json().to_string();
                    assert!(
                        wire.len() <= charter_policy::limits::MAX_DENIAL_BYTES,
                        "{label}"
                    );
                    let decision = denied.decision_json();
                    // Default capability lists are shown as ACI's placeholder.
                    if let Some(b) = decision["input"]["capabilities"]["bounding"].as_array() {
                        assert!(b.len() != 14, "{label}: default caps not replaced");
                    }
                    for env in decision["input"]["envList"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let env = env.as_str().unwrap();
                        assert!(
                            env.ends_with("=<<redacted>>"),
                            "{label}: env not redacted: {env:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
