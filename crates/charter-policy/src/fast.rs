//! Compiled matcher: the framework's `mount_device`, `mount_overlay` and `create_container`
//! decisions, natively, for policies that are exactly what [`PolicyDocument::to_rego`] renders.
//!
//! The Rego framework stays the specification. This path only ever *allows*: when it finds no
//! allowing answer the enforcer evaluates the Rego (which then also produces the deny reason),
//! so a matcher bug can only make a request slower, or (if it allowed what the Rego denies)
//! show up in the lockstep differential tests (`tests/fast_path.rs`), which replay the case
//! table and random sequences through both paths and compare every decision and state.
//! Data the framework defines (default and privileged mounts and capability sets, the path
//! patterns) is read from the loaded framework, not duplicated here.

use std::collections::HashSet;

use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metadata::Metadata;
use crate::model::{
    Container, EnvRule, EnvStrategy, IdNameRule, IdNameStrategy, MountConstraint, PolicyDocument,
};
use crate::request::{
    CapabilitySets, CreateContainer, IdName, Mount, MountDevice, MountOverlay, User,
};

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

/// Same size cap as regorus (see `check_regex` in enforcer.rs): a pattern the Rego engine
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
        })
    }

    pub(crate) fn mount_device(&self, r: &MountDevice, md: &Metadata) -> Option<FastAllow> {
        let ok = self.device_target.is_match(&r.target)
            && !has_key(md, "devices", &r.target)
            && self.layer_hashes.contains(&r.device_hash);
        ok.then(|| FastAllow {
            ops: json!([{"name": "devices", "action": "add", "key": r.target, "value": r.device_hash}]),
            env_list: None,
            caps_list: None,
            allow_stdio_access: false,
        })
    }

    pub(crate) fn mount_overlay(&self, r: &MountOverlay, md: &Metadata) -> Option<FastAllow> {
        if !self.container_id.is_match(&r.container_id)
            || r.target.is_empty()
            || r.layer_paths.is_empty()
            || has_key(md, "overlayTargets", &r.target)
            || has_key(md, "matches", &r.container_id)
            || has_key(md, "started", &r.container_id)
        {
            return None;
        }
        let devices = md.get("devices")?;
        let mut hashes = Vec::with_capacity(r.layer_paths.len());
        for p in r.layer_paths.iter().rev() {
            hashes.push(devices.get(p)?.as_str()?);
        }
        let candidates: Vec<usize> = self
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.c.layers
                    .iter()
                    .map(String::as_str)
                    .eq(hashes.iter().copied())
            })
            .map(|(i, _)| i)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(FastAllow {
            ops: json!([
                {"name": "matches", "action": "add", "key": r.container_id, "value": candidates},
                {"name": "overlayTargets", "action": "add", "key": r.target, "value": true},
            ]),
            env_list: None,
            caps_list: None,
            allow_stdio_access: false,
        })
    }

    pub(crate) fn create_container(&self, r: &CreateContainer, md: &Metadata) -> Option<FastAllow> {
        if has_key(md, "started", &r.container_id) {
            return None;
        }
        let candidates = md.get("matches")?.get(&r.container_id)?.as_array()?;
        let mut survivors = Vec::new();
        let mut env_out: Option<Vec<String>> = None;
        let mut caps_out: Option<CapabilitySets> = None;
        let mut stdio_out: Option<bool> = None;
        for idx in candidates {
            let i = usize::try_from(idx.as_u64()?).ok()?;
            let cc = self.containers.get(i)?;
            let Some((env, caps)) = self.create_ok(cc, r, md) else {
                continue;
            };
            // Survivors must agree on everything that shapes the process.
            if env_out.get_or_insert_with(|| env.clone()) != &env
                || caps_out.get_or_insert_with(|| caps.clone()) != &caps
                || *stdio_out.get_or_insert(cc.c.allow_stdio_access) != cc.c.allow_stdio_access
            {
                return None;
            }
            survivors.push(i);
        }
        if survivors.is_empty() {
            return None;
        }
        Some(FastAllow {
            ops: json!([
                {"name": "matches", "action": "update", "key": r.container_id, "value": survivors},
                {"name": "started", "action": "add", "key": r.container_id, "value": {"privileged": r.privileged}},
            ]),
            env_list: env_out,
            caps_list: caps_out,
            allow_stdio_access: stdio_out.unwrap_or(false),
        })
    }

    /// All create checks for one candidate; on success the env and caps it would run with.
    fn create_ok(
        &self,
        cc: &CompiledContainer,
        r: &CreateContainer,
        md: &Metadata,
    ) -> Option<(Vec<String>, CapabilitySets)> {
        let c = &cc.c;
        if c.command != r.arg_list
            || c.working_dir != r.working_dir
            || (r.privileged && !c.allow_elevated)
            || (c.no_new_privileges && !r.no_new_privileges)
            || c.seccomp_profile_sha256 != r.seccomp_profile_sha256
            || !user_ok(cc, r.user.as_ref())
        {
            return None;
        }
        let env = self.env_result(&cc.env, &r.env_list)?;
        let elevated = r.privileged && c.allow_elevated;
        let mounts_ok = r.mounts.iter().all(|m| {
            cc.mounts.iter().any(|k| k.matches(m, r, md))
                || self.default_mounts.iter().any(|k| k.matches(m, r, md))
                || (elevated && self.privileged_mounts.iter().any(|k| k.matches(m, r, md)))
        });
        if !mounts_ok {
            return None;
        }
        let caps = self.caps_result(c, r.privileged, r.capabilities.as_ref())?;
        Some((env, caps))
    }

    fn env_result(&self, rules: &[CompiledEnvRule], envs: &[String]) -> Option<Vec<String>> {
        let kept: Vec<String> = envs
            .iter()
            .filter(|e| rules.iter().any(|r| r.is_match(e)))
            .cloned()
            .collect();
        if !self.env_dropping && kept.len() != envs.len() {
            return None;
        }
        let missing = rules
            .iter()
            .any(|r| r.required && !kept.iter().any(|e| r.is_match(e)));
        (!missing).then_some(kept)
    }

    fn caps_result(
        &self,
        c: &Container,
        privileged: bool,
        input: Option<&CapabilitySets>,
    ) -> Option<CapabilitySets> {
        let allowed = match &c.capabilities {
            Some(caps) => caps,
            None if c.allow_elevated && privileged => &self.privileged_caps,
            None => &self.default_caps,
        };
        let empty = CapabilitySets::default();
        let input = input.unwrap_or(&empty);
        let sets = |s: &CapabilitySets| {
            [
                &s.ambient,
                &s.bounding,
                &s.effective,
                &s.inheritable,
                &s.permitted,
            ]
            .map(|v| v.clone())
        };
        let [ia, ib, ie, ii, ip] = sets(input);
        let [aa, ab, ae, ai, ap] = sets(allowed);
        if self.cap_dropping {
            let keep = |i: Vec<String>, a: &[String]| -> Vec<String> {
                i.into_iter().filter(|x| a.contains(x)).collect()
            };
            return Some(CapabilitySets {
                ambient: keep(ia, &aa),
                bounding: keep(ib, &ab),
                effective: keep(ie, &ae),
                inheritable: keep(ii, &ai),
                permitted: keep(ip, &ap),
            });
        }
        let all = set_eq(&ia, &aa)
            && set_eq(&ib, &ab)
            && set_eq(&ie, &ae)
            && set_eq(&ii, &ai)
            && set_eq(&ip, &ap);
        all.then_some(CapabilitySets {
            ambient: ia,
            bounding: ib,
            effective: ie,
            inheritable: ii,
            permitted: ip,
        })
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

fn has_key(md: &Metadata, map: &str, key: &str) -> bool {
    md.get(map)
        .and_then(|m| m.get(key))
        .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
}
