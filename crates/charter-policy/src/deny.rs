//! Denials: structured reasons, redaction, and the ≤ 3 KiB wire form ACI sends to the host.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::limits::MAX_DENIAL_BYTES;

/// The framework's `reason`: error strings and the candidate objects of the failed step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub error_objects: Vec<Value>,
}

/// A denied request. Nothing changed. Environment values in the recorded input are redacted.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub(crate) rule: String,
    pub(crate) input: Value,
    pub(crate) reason: Reason,
    pub(crate) policy_error: Option<String>,
}

/// Replacement for environment values in anything that leaves the enforcer.
pub const REDACTED: &str = "<<redacted>>";

impl Denied {
    pub(crate) fn new(
        rule: &str,
        input: &Value,
        reason: Reason,
        policy_error: Option<String>,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            input: redact(input),
            reason,
            policy_error,
        }
    }

    /// The enforcement point that denied.
    #[must_use]
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The structured reason.
    #[must_use]
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// Set when the policy could not be evaluated (error, limit exceeded, malformed result).
    #[must_use]
    pub fn policy_error(&self) -> Option<&str> {
        self.policy_error.as_deref()
    }

    /// The request input with environment values redacted.
    #[must_use]
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// One human-readable line: the rule, the nearest candidate and the first field that differs
    /// (when the framework found one), then the other errors.
    #[must_use]
    pub fn explanation(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        // The "nearest ..." line first: it names the candidate and the differing fields.
        for e in &self.reason.errors {
            if e.starts_with("nearest ") {
                parts.push(e);
            }
        }
        for e in &self.reason.errors {
            if !e.starts_with("nearest ") {
                parts.push(e);
            }
        }
        if let Some(p) = &self.policy_error {
            parts.push(p);
        }
        if parts.is_empty() {
            format!("{} denied by policy", self.rule)
        } else {
            format!("{} denied: {}", self.rule, parts.join("; "))
        }
    }

    /// The decision object ACI returns to the host, at most 3 KiB of JSON: error objects are
    /// dropped first, then the input, then the reason (recorded in `truncated`).
    #[must_use]
    pub fn decision_json(&self) -> Value {
        let mut d = json!({
            "decision": "deny",
            "input": self.input,
            "reason": self.reason,
        });
        if let (Some(p), Some(o)) = (&self.policy_error, d.as_object_mut()) {
            o.insert("policyError".to_owned(), Value::String(p.clone()));
        }
        let mut truncated = Vec::new();
        for step in ["reason.error_objects", "input", "reason"] {
            if size(&d) <= MAX_DENIAL_BYTES {
                break;
            }
            if let Some(o) = d.as_object_mut() {
                if step == "reason.error_objects" {
                    if let Some(Value::Object(r)) = o.get_mut("reason") {
                        r.remove("error_objects");
                    }
                } else {
                    o.remove(step);
                }
                truncated.push(step);
                o.insert("truncated".to_owned(), json!(truncated));
            }
        }
        if size(&d) > MAX_DENIAL_BYTES {
            if let Some(o) = d.as_object_mut() {
                o.remove("policyError");
                truncated.push("policyError");
                o.insert("truncated".to_owned(), json!(truncated));
            }
        }
        d
    }

    /// `policyDecision< base64(decision JSON) >policyDecision`, the error text ACI's guest returns.
    #[must_use]
    pub fn to_wire(&self) -> String {
        let json = self.decision_json().to_string();
        format!(
            "policyDecision< {} >policyDecision",
            base64::engine::general_purpose::STANDARD.encode(json)
        )
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.explanation())
    }
}

impl std::error::Error for Denied {}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Redacts `envList` values (`NAME=value` -> `NAME=<<redacted>>`) anywhere in the input.
pub(crate) fn redact(input: &Value) -> Value {
    let mut out = input.clone();
    if let Some(Value::Array(envs)) = out.get_mut("envList") {
        for e in envs.iter_mut() {
            if let Value::String(s) = e {
                let name = s.split_once('=').map_or(s.as_str(), |(n, _)| n);
                *s = format!("{name}={REDACTED}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_env_values() {
        let d = Denied::new(
            "create_container",
            &json!({"envList": ["SECRET=hunter2", "NOEQ"]}),
            Reason::default(),
            None,
        );
        let s = d.to_wire();
        assert!(!d.decision_json().to_string().contains("hunter2"));
        assert!(s.starts_with("policyDecision< ") && s.ends_with(" >policyDecision"));
        assert_eq!(d.input()["envList"][0], "SECRET=<<redacted>>");
    }

    #[test]
    fn truncates_in_aci_order() {
        let big = "x".repeat(2000);
        let d = Denied::new(
            "create_container",
            &json!({"argList": [big.clone(), big.clone()]}),
            Reason {
                errors: vec!["invalid command".into()],
                error_objects: vec![json!(big)],
            },
            None,
        );
        let j = d.decision_json();
        assert!(size(&j) <= MAX_DENIAL_BYTES);
        assert_eq!(j["truncated"], json!(["reason.error_objects", "input"]));
        assert_eq!(j["reason"]["errors"][0], "invalid command");
    }
}
