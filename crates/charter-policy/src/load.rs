//! Reading a loaded policy's data into the typed model, with the checks every engine (and the
//! compiled matcher) needs to see the same policy.

use serde_json::Value;

use crate::model::{Container, EnvRule, IdNameStrategy, KeyBroker, PolicyDocument, SealedVolume};
use crate::Error;

pub(crate) fn typed_document(
    eval: &mut impl FnMut(&str) -> Result<Option<Value>, Error>,
    containers: Option<Value>,
    external: Option<Value>,
    fragments: Option<Value>,
    api_version: &str,
    framework_version: &Option<String>,
) -> Result<Option<PolicyDocument>, Error> {
    let field_err = |field: &str, e: serde_json::Error| Error::PolicyData {
        field: field.to_owned(),
        message: e.to_string(),
    };
    let containers: Vec<Container> = match containers {
        Some(v) => serde_json::from_value(v).map_err(|e| field_err("containers", e))?,
        None => Vec::new(),
    };
    let external_processes: Vec<crate::model::ExternalProcess> = match external {
        Some(v) => serde_json::from_value(v).map_err(|e| field_err("external_processes", e))?,
        None => Vec::new(),
    };
    for rules in containers
        .iter()
        .map(|c| &c.env_rules)
        .chain(external_processes.iter().map(|p| &p.env_rules))
    {
        check_env_regexes(rules)?;
    }
    for c in &containers {
        if let Some(user) = &c.user {
            for rule in std::iter::once(&user.user_idname).chain(&user.group_idnames) {
                if rule.strategy == IdNameStrategy::Re2 {
                    check_regex(&rule.pattern)?;
                }
            }
        }
        for m in &c.mounts {
            for scheme in ["sandbox://", "hugepages://"] {
                if let Some(p) = m.source.strip_prefix(scheme) {
                    check_regex(p)?;
                }
            }
        }
    }
    // Fragments are informational until charter loads them; a hand-written shape is tolerated.
    let fragments = fragments
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let flag = |eval: &mut dyn FnMut(&str) -> Result<Option<Value>, Error>,
                name: &str|
     -> Result<bool, Error> {
        Ok(eval(&format!("data.policy.{name}"))? == Some(Value::Bool(true)))
    };
    let key_broker: Option<KeyBroker> = match eval("data.policy.key_broker")? {
        Some(v) => Some(serde_json::from_value(v).map_err(|e| field_err("key_broker", e))?),
        None => None,
    };
    let sealed_volumes: Vec<SealedVolume> = match eval("data.policy.sealed_volumes")? {
        Some(v) => serde_json::from_value(v).map_err(|e| field_err("sealed_volumes", e))?,
        None => Vec::new(),
    };
    if !sealed_volumes.is_empty() && key_broker.is_none() {
        return Err(Error::PolicyData {
            field: "sealed_volumes".to_owned(),
            message: "sealed volumes need a key_broker to fetch their keys from".to_owned(),
        });
    }
    let mut e = |p: &str| eval(p);
    Ok(Some(PolicyDocument {
        api_version: api_version.to_owned(),
        framework_version: framework_version.clone().unwrap_or_default(),
        fragments,
        containers,
        external_processes,
        allow_properties_access: flag(&mut e, "allow_properties_access")?,
        allow_dump_stacks: flag(&mut e, "allow_dump_stacks")?,
        allow_runtime_logging: flag(&mut e, "allow_runtime_logging")?,
        allow_environment_variable_dropping: flag(&mut e, "allow_environment_variable_dropping")?,
        allow_unencrypted_scratch: flag(&mut e, "allow_unencrypted_scratch")?,
        allow_capability_dropping: flag(&mut e, "allow_capability_dropping")?,
        key_broker,
        sealed_volumes,
    }))
}

fn check_env_regexes(rules: &[EnvRule]) -> Result<(), Error> {
    for rule in rules {
        for p in rule.regexes() {
            check_regex(p)?;
        }
    }
    Ok(())
}

/// regorus refuses to compile a regex whose NFA exceeds 100 KiB (and then the rule using it
/// fails), while Go's RE2 has no such cap; reject such patterns when loading so every engine,
/// and the compiled matcher, sees the same policy.
const REGEX_SIZE_LIMIT: usize = 100 * 1024;

fn check_regex(pattern: &str) -> Result<(), Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| Error::BadRegex {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })
}
