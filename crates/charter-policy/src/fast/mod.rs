//! Compiled matcher: the framework's `mount_device`, `mount_overlay` and `create_container`
//! decisions, natively, for policies that are exactly what [`PolicyDocument::to_rego`] renders.
//!
//! The Rego framework stays the specification. For these three points the matcher gives a
//! complete [`Outcome`]: an allow with the framework's result fields and state ops, a denial
//! with the framework's `reason` (the same error strings, in the order regorus returns the
//! `errors` set, and the same `error_objects`, captured from the loaded policy), or
//! [`Outcome::Unknown`] when the state holds something the framework never writes; the
//! enforcer then evaluates the Rego. The lockstep differential tests (`tests/fast_path.rs`)
//! replay the case table and random sequences through both paths and compare every decision,
//! every reason and every state. Data the framework defines (default and privileged mounts and
//! capability sets, the path patterns) is read from the loaded framework, not duplicated here.
//!
//! - [`storage`]: `mount_device` and `mount_overlay` (framework_storage.rego).
//! - [`create`]: `create_container` (framework_containers.rego, framework_common.rego).

mod create;
mod storage;

use std::collections::HashSet;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::deny::Reason;
use crate::metadata::Metadata;
use crate::model::{
    Container, EnvRule, EnvStrategy, IdNameRule, IdNameStrategy, MountConstraint, PolicyDocument,
};
use crate::request::{CapabilitySets, CreateContainer, IdName, Mount, User};

/// Framework data the matcher needs, evaluated from the Rego at load time.
#[derive(Debug, Deserialize)]
pub(crate) struct FrameworkData {
    pub default_mounts: Vec<MountConstraint>,
    pub privileged_mounts: Vec<MountConstraint>,
    pub default_capabilities: CapabilitySets,
    pub privileged_capabilities: CapabilitySets,
}

/// A string matcher: exact, or an anchored regex compiled once.
#[derive(Debug)]
enum Matcher {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    fn new(strategy: EnvStrategy, pattern: &str) -> Option<Self> {
        Some(match strategy {
            EnvStrategy::String => Self::Exact(pattern.to_owned()),
            EnvStrategy::Re2 => Self::Regex(anchored(pattern)?),
        })
    }
    fn is_match(&self, s: &str) -> bool {
        match self {
            Self::Exact(p) => p == s,
            Self::Regex(r) => r.is_match(s),
        }
    }
}

/// Same size cap as regorus (see `check_regex` in load.rs): a pattern the Rego engine
/// could not compile must not compile here either.
fn anchored(pattern: &str) -> Option<Regex> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(100 * 1024)
        .build()
        .ok()
}

#[derive(Debug)]
enum EnvMatcher {
    Whole(Matcher),
    Split(Matcher, Matcher),
}

#[derive(Debug)]
struct CompiledEnvRule {
    matcher: EnvMatcher,
    required: bool,
}

impl CompiledEnvRule {
    fn new(rule: &EnvRule) -> Option<Self> {
        Some(match rule {
            EnvRule::Whole {
                pattern,
                strategy,
                required,
            } => Self {
                matcher: EnvMatcher::Whole(Matcher::new(*strategy, pattern)?),
                required: *required,
            },
            EnvRule::Split {
                name,
                name_strategy,
                value,
                value_strategy,
                required,
            } => Self {
                matcher: EnvMatcher::Split(
                    Matcher::new(*name_strategy, name)?,
                    Matcher::new(*value_strategy, value)?,
                ),
                required: *required,
            },
        })
    }
    fn is_match(&self, env: &str) -> bool {
        match &self.matcher {
            EnvMatcher::Whole(m) => m.is_match(env),
            EnvMatcher::Split(n, v) => env
                .split_once('=')
                .is_some_and(|(a, b)| n.is_match(a) && v.is_match(b)),
        }
    }
}

#[derive(Debug)]
struct CompiledMount {
    constraint: MountConstraint,
    options: HashSet<String>,
    /// For `sandbox://` / `hugepages://` sources: the scheme and the anchored regex.
    prefixed: Option<(Scheme, Regex)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Sandbox,
    HugePages,
    Plan9,
}

impl CompiledMount {
    fn new(c: &MountConstraint) -> Option<Self> {
        let prefixed = if let Some(p) = c.source.strip_prefix("sandbox://") {
            Some((Scheme::Sandbox, anchored(p)?))
        } else if let Some(p) = c.source.strip_prefix("hugepages://") {
            Some((Scheme::HugePages, anchored(p)?))
        } else if let Some(p) = c.source.strip_prefix("plan9://") {
            Some((Scheme::Plan9, anchored(p)?))
        } else {
            None
        };
        Some(Self {
            constraint: c.clone(),
            options: c.options.iter().cloned().collect(),
            prefixed,
        })
    }

    fn matches(&self, m: &Mount, req: &CreateContainer, md: &Metadata) -> bool {
        let c = &self.constraint;
        if c.destination.is_empty()
            || c.destination != m.destination
            || c.kind != m.kind
            || self.options.len() != m.options.iter().collect::<HashSet<_>>().len()
            || !m.options.iter().all(|o| self.options.contains(o))
            || has_dotdot(&m.source)
        {
            return false;
        }
        match &self.prefixed {
            None => c.source == m.source,
            Some((Scheme::Plan9, _)) => {
                md.get("p9mounts")
                    .and_then(|p| p.get(&m.source))
                    .and_then(Value::as_str)
                    == Some(req.container_id.as_str())
            }
            Some((scheme, re)) => {
                let dir = if *scheme == Scheme::Sandbox {
                    &req.sandbox_dir
                } else {
                    &req.huge_pages_dir
                };
                !dir.is_empty()
                    && dir.starts_with('/')
                    && !has_dotdot(dir)
                    && m.source.len() > dir.len()
                    && m.source.starts_with(dir.as_str())
                    && m.source.as_bytes().get(dir.len()) == Some(&b'/')
                    && m.source
                        .get(dir.len()..)
                        .is_some_and(|rest| re.is_match(rest))
            }
        }
    }
}

fn has_dotdot(path: &str) -> bool {
    path.split('/').any(|p| p == "..")
}

#[derive(Debug)]
struct CompiledIdName {
    strategy: IdNameStrategy,
    pattern: String,
    regex: Option<Regex>,
}

impl CompiledIdName {
    fn new(r: &IdNameRule) -> Option<Self> {
        let regex = if r.strategy == IdNameStrategy::Re2 {
            Some(anchored(&r.pattern)?)
        } else {
            None
        };
        Some(Self {
            strategy: r.strategy,
            pattern: r.pattern.clone(),
            regex,
        })
    }
    fn is_match(&self, x: &IdName) -> bool {
        match self.strategy {
            IdNameStrategy::Any => true,
            IdNameStrategy::Id => self.pattern == x.id,
            IdNameStrategy::Name => self.pattern == x.name,
            IdNameStrategy::Re2 => self.regex.as_ref().is_some_and(|r| r.is_match(&x.name)),
        }
    }
}

#[derive(Debug)]
struct CompiledContainer {
    c: Container,
    env: Vec<CompiledEnvRule>,
    mounts: Vec<CompiledMount>,
    user: Option<(CompiledIdName, Vec<CompiledIdName>, String)>,
}

/// The compiled policy.
#[derive(Debug)]
pub(crate) struct FastPolicy {
    containers: Vec<CompiledContainer>,
    layer_hashes: HashSet<String>,
    default_mounts: Vec<CompiledMount>,
    privileged_mounts: Vec<CompiledMount>,
    default_caps: CapabilitySets,
    privileged_caps: CapabilitySets,
    device_target: Regex,
    container_id: Regex,
    env_dropping: bool,
    cap_dropping: bool,
    unencrypted_scratch: bool,
    /// `data.framework.policy_containers` as the loaded policy holds them (the
    /// `error_objects` of create denials), one per container.
    objects: Vec<Value>,
}

/// The matcher's answer for one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Allow(FastAllow),
    Deny(Reason),
    /// The matcher cannot be sure what the framework decides: evaluate the Rego.
    Unknown,
}

/// A native allow: the same fields the framework's result object carries.
#[derive(Debug)]
pub(crate) struct FastAllow {
    pub ops: Value,
    pub env_list: Option<Vec<String>>,
    pub caps_list: Option<CapabilitySets>,
    pub allow_stdio_access: bool,
}

fn set_eq(a: &[String], b: &[String]) -> bool {
    let a: HashSet<&String> = a.iter().collect();
    let b: HashSet<&String> = b.iter().collect();
    a == b
}

impl FastPolicy {
    /// `None` when something does not compile (the Rego path then handles everything).
    pub(crate) fn compile(doc: &PolicyDocument, fw: FrameworkData) -> Option<Self> {
        let mut containers = Vec::with_capacity(doc.containers.len());
        for c in &doc.containers {
            let env = c
                .env_rules
                .iter()
                .map(CompiledEnvRule::new)
                .collect::<Option<Vec<_>>>()?;
            let mounts = c
                .mounts
                .iter()
                .map(CompiledMount::new)
                .collect::<Option<Vec<_>>>()?;
            let user = match &c.user {
                None => None,
                Some(u) => Some((
                    CompiledIdName::new(&u.user_idname)?,
                    u.group_idnames
                        .iter()
                        .map(CompiledIdName::new)
                        .collect::<Option<Vec<_>>>()?,
                    u.umask.clone(),
                )),
            };
            containers.push(CompiledContainer {
                c: c.clone(),
                env,
                mounts,
                user,
            });
        }
        Some(Self {
            layer_hashes: doc
                .containers
                .iter()
                .flat_map(|c| c.layers.iter().cloned())
                .collect(),
            containers,
            default_mounts: fw
                .default_mounts
                .iter()
                .map(CompiledMount::new)
                .collect::<Option<Vec<_>>>()?,
            privileged_mounts: fw
                .privileged_mounts
                .iter()
                .map(CompiledMount::new)
                .collect::<Option<Vec<_>>>()?,
            default_caps: fw.default_capabilities,
            privileged_caps: fw.privileged_capabilities,
            device_target: Regex::new(r"^/run/(layers|mounts)(/[0-9A-Za-z_-]+)+$").ok()?,
            container_id: Regex::new(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$").ok()?,
            env_dropping: doc.allow_environment_variable_dropping,
            cap_dropping: doc.allow_capability_dropping,
            unencrypted_scratch: doc.allow_unencrypted_scratch,
            objects: Vec::new(),
        })
    }

    /// Attaches the policy's container objects as the Rego evaluates them
    /// (`data.framework.policy_containers`); `None` unless there is one per container.
    pub(crate) fn with_objects(mut self, objects: Vec<Value>) -> Option<Self> {
        if objects.len() != self.containers.len() {
            return None;
        }
        self.objects = objects;
        Some(self)
    }
}

fn user_ok(cc: &CompiledContainer, user: Option<&User>) -> bool {
    let Some((uid_rule, group_rules, umask)) = &cc.user else {
        return true;
    };
    let Some(user) = user else { return false };
    uid_rule.is_match(&user.uid)
        && user
            .groups
            .iter()
            .all(|g| group_rules.iter().any(|r| r.is_match(g)))
        && (umask.is_empty() || *umask == user.umask)
}

/// Whether `data.metadata.<map>[key]` holds as a Rego expression: undefined and `false` do
/// not, other values do. `None` (unknown) for shapes the framework never writes (a map that is
/// not an object, a `null` value), where engines may differ.
fn truthy(md: &Metadata, map: &str, key: &str) -> Option<bool> {
    match md.get(map) {
        None => Some(false),
        Some(Value::Object(m)) => match m.get(key) {
            None | Some(Value::Bool(false)) => Some(false),
            Some(Value::Null) => None,
            Some(_) => Some(true),
        },
        Some(_) => None,
    }
}

/// `candidate_indices(id)`: the policy indices recorded in `matches[id]`, or empty when the
/// container has none. `None` unless they are distinct in-range integers (as the framework
/// writes them).
fn candidates(md: &Metadata, id: &str, containers: usize) -> Option<Vec<usize>> {
    let v = match md.get("matches") {
        None => return Some(Vec::new()),
        Some(Value::Object(m)) => match m.get(id) {
            None => return Some(Vec::new()),
            Some(v) => v,
        },
        Some(_) => return None,
    };
    let list = v.as_array()?;
    let mut out: Vec<usize> = Vec::with_capacity(list.len());
    for x in list {
        let i = usize::try_from(x.as_u64()?).ok()?;
        if i >= containers || out.contains(&i) {
            return None;
        }
        out.push(i);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn truthiness_follows_rego_and_refuses_odd_shapes() {
        let m = md(json!({"devices": {"a": "h", "f": false, "n": null}, "odd": [1]}));
        assert_eq!(truthy(&m, "devices", "a"), Some(true));
        assert_eq!(truthy(&m, "devices", "f"), Some(false));
        assert_eq!(truthy(&m, "devices", "missing"), Some(false));
        assert_eq!(truthy(&m, "absent", "a"), Some(false));
        assert_eq!(truthy(&m, "devices", "n"), None);
        assert_eq!(truthy(&m, "odd", "a"), None);
    }

    #[test]
    fn candidates_must_be_what_the_framework_writes() {
        let m = md(json!({"matches": {
            "ok": [0, 2], "dup": [1, 1], "range": [3], "neg": [-1], "float": [0.5],
            "obj": {"0": true}, "empty": []
        }}));
        assert_eq!(candidates(&m, "ok", 3), Some(vec![0, 2]));
        assert_eq!(candidates(&m, "empty", 3), Some(vec![]));
        assert_eq!(candidates(&m, "none", 3), Some(vec![]));
        for odd in ["dup", "range", "neg", "float", "obj"] {
            assert_eq!(candidates(&m, odd, 3), None, "{odd}");
        }
        assert_eq!(candidates(&md(json!({"matches": []})), "ok", 3), None);
        assert_eq!(candidates(&md(json!({})), "ok", 3), Some(vec![]));
    }
}
