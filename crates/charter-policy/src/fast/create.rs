//! `create_container`, as `rego/framework_containers.rego` decides and explains it: every
//! candidate recorded by the overlay is checked (`create_checks`, in order), the survivors must
//! agree on env, capabilities and stdio, and a denial names the nearest candidate and its
//! first failed check, or the ambiguity.

use std::collections::BTreeSet;

use serde_json::json;

use super::{
    candidates, set_eq, truthy, user_ok, CompiledContainer, CompiledEnvRule, FastAllow, FastPolicy,
    Outcome,
};
use crate::deny::Reason;
use crate::metadata::Metadata;
use crate::model::Container;
use crate::request::{CapabilitySets, CreateContainer};

/// `create_checks`, in the framework's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Command,
    WorkingDir,
    Env,
    Mounts,
    Privileged,
    NoNewPrivileges,
    User,
    Seccomp,
    Capabilities,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::WorkingDir => "working_dir",
            Self::Env => "env",
            Self::Mounts => "mounts",
            Self::Privileged => "privileged",
            Self::NoNewPrivileges => "no_new_privileges",
            Self::User => "user",
            Self::Seccomp => "seccomp",
            Self::Capabilities => "capabilities",
        }
    }
}

/// One candidate, checked: its failed checks and, when it survives, what it runs with.
struct Checked<'a> {
    index: usize,
    cc: &'a CompiledContainer,
    failures: Vec<Check>,
    env: Option<Vec<String>>,
    caps: Option<CapabilitySets>,
}

/// Appends `x` unless an equal element is there (a Rego set of at most a few elements).
fn insert<T: PartialEq>(set: &mut Vec<T>, x: T) {
    if !set.contains(&x) {
        set.push(x);
    }
}

impl FastPolicy {
    pub(crate) fn create_container(&self, r: &CreateContainer, md: &Metadata) -> Outcome {
        let Some(started) = truthy(md, "started", &r.container_id) else {
            return Outcome::Unknown;
        };
        let Some(cands) = candidates(md, &r.container_id, self.containers.len()) else {
            return Outcome::Unknown;
        };
        let mut checked = Vec::with_capacity(cands.len());
        for &index in &cands {
            let Some(cc) = self.containers.get(index) else {
                return Outcome::Unknown;
            };
            checked.push(self.check(index, cc, r, md));
        }

        let mut survivors = Vec::new();
        let mut envs: Vec<&Vec<String>> = Vec::new();
        let mut caps: Vec<&CapabilitySets> = Vec::new();
        let mut stdio: Vec<bool> = Vec::new();
        for c in checked.iter().filter(|c| c.failures.is_empty()) {
            let (Some(env), Some(cap)) = (&c.env, &c.caps) else {
                return Outcome::Unknown;
            };
            survivors.push(c.index);
            insert(&mut envs, env);
            insert(&mut caps, cap);
            insert(&mut stdio, c.cc.c.allow_stdio_access);
        }
        if let (false, [env], [cap], [io]) =
            (started, envs.as_slice(), caps.as_slice(), stdio.as_slice())
        {
            if !survivors.is_empty() {
                return Outcome::Allow(FastAllow {
                    ops: json!([
                        {"name": "matches", "action": "update", "key": r.container_id, "value": survivors},
                        {"name": "started", "action": "add", "key": r.container_id, "value": {"privileged": r.privileged}},
                    ]),
                    env_list: Some((*env).clone()),
                    caps_list: Some((*cap).clone()),
                    allow_stdio_access: *io,
                });
            }
        }

        let mut errors = BTreeSet::new();
        if started {
            errors.insert("container already started".to_owned());
        }
        if cands.is_empty() {
            errors.insert("container has no matching overlay".to_owned());
        }
        if survivors.is_empty() {
            // nearest: fewest failed checks, then the lowest policy index.
            if let Some(n) = checked.iter().min_by_key(|c| (c.failures.len(), c.index)) {
                let names: Vec<&str> = n.failures.iter().map(|f| f.name()).collect();
                errors.insert(format!(
                    "nearest container {} (policy index {}) differs in: {}",
                    candidate_name(&n.cc.c, n.index),
                    n.index,
                    names.join(", ")
                ));
                if let Some(first) = n.failures.first() {
                    errors.insert(self.create_error(*first, n.cc, r, md));
                }
            }
        }
        if stdio.len() > 1 {
            errors.insert("containers only distinguishable by allow_stdio_access".to_owned());
        }
        if envs.len() > 1 {
            errors.insert(
                "containers only distinguishable by dropped environment variables".to_owned(),
            );
        }
        if caps.len() > 1 {
            errors.insert("containers only distinguishable by dropped capabilities".to_owned());
        }
        let mut error_objects = Vec::with_capacity(cands.len());
        for i in &cands {
            let Some(o) = self.objects.get(*i) else {
                return Outcome::Unknown;
            };
            error_objects.push(o.clone());
        }
        Outcome::Deny(Reason {
            errors: errors.into_iter().collect(),
            error_objects,
        })
    }

    /// Every create check for one candidate (`create_failures(i)`).
    fn check<'a>(
        &self,
        index: usize,
        cc: &'a CompiledContainer,
        r: &CreateContainer,
        md: &Metadata,
    ) -> Checked<'a> {
        let c = &cc.c;
        let env = self.env_result(&cc.env, &r.env_list);
        let caps = self.caps_result(c, r.privileged, r.capabilities.as_ref());
        let mut failures = Vec::new();
        let mut fail = |ok: bool, check: Check| {
            if !ok {
                failures.push(check);
            }
        };
        fail(c.command == r.arg_list, Check::Command);
        fail(c.working_dir == r.working_dir, Check::WorkingDir);
        fail(env.is_some(), Check::Env);
        fail(
            r.mounts.iter().all(|m| self.mount_allowed(cc, m, r, md)),
            Check::Mounts,
        );
        fail(!r.privileged || c.allow_elevated, Check::Privileged);
        fail(
            !c.no_new_privileges || r.no_new_privileges,
            Check::NoNewPrivileges,
        );
        fail(user_ok(cc, r.user.as_ref()), Check::User);
        fail(
            c.seccomp_profile_sha256 == r.seccomp_profile_sha256,
            Check::Seccomp,
        );
        fail(caps.is_some(), Check::Capabilities);
        Checked {
            index,
            cc,
            failures,
            env,
            caps,
        }
    }

    /// `mount_allowed(c, input_privileged, m)`.
    fn mount_allowed(
        &self,
        cc: &CompiledContainer,
        m: &crate::request::Mount,
        r: &CreateContainer,
        md: &Metadata,
    ) -> bool {
        cc.mounts.iter().any(|k| k.matches(m, r, md))
            || self.default_mounts.iter().any(|k| k.matches(m, r, md))
            || (r.privileged
                && cc.c.allow_elevated
                && self.privileged_mounts.iter().any(|k| k.matches(m, r, md)))
    }

    /// `create_error(check, c)`: the message for the nearest candidate's first failed check.
    fn create_error(
        &self,
        check: Check,
        cc: &CompiledContainer,
        r: &CreateContainer,
        md: &Metadata,
    ) -> String {
        match check {
            Check::Command => "invalid command".to_owned(),
            Check::WorkingDir => "invalid working directory".to_owned(),
            Check::Env => {
                let bad: Vec<&str> = r
                    .env_list
                    .iter()
                    .filter(|e| !cc.env.iter().any(|rule| rule.is_match(e)))
                    .map(|e| e.split_once('=').map_or(e.as_str(), |(name, _)| name))
                    .collect();
                if !bad.is_empty() && !self.env_dropping {
                    format!("invalid env list: {}", bad.join(","))
                } else {
                    "missing required environment variable".to_owned()
                }
            }
            Check::Mounts => {
                let bad: Vec<&str> = r
                    .mounts
                    .iter()
                    .filter(|m| !self.mount_allowed(cc, m, r, md))
                    .map(|m| m.destination.as_str())
                    .collect();
                format!("invalid mount list: {}", bad.join(","))
            }
            Check::Privileged => "privileged escalation not allowed".to_owned(),
            Check::NoNewPrivileges => "invalid noNewPrivileges".to_owned(),
            Check::User => "invalid user".to_owned(),
            Check::Seccomp => "invalid seccomp".to_owned(),
            Check::Capabilities => "capabilities don't match".to_owned(),
        }
    }

    /// `env_result(rules, envs)`: the environment the candidate runs with, `None` if refused.
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

    /// `caps_result(c, privileged, caps)`: the sets the candidate grants, `None` if refused.
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
        let pairs = [
            (&input.ambient, &allowed.ambient),
            (&input.bounding, &allowed.bounding),
            (&input.effective, &allowed.effective),
            (&input.inheritable, &allowed.inheritable),
            (&input.permitted, &allowed.permitted),
        ];
        if !self.cap_dropping && !pairs.iter().all(|(i, a)| set_eq(i, a)) {
            return None;
        }
        let [ambient, bounding, effective, inheritable, permitted] = pairs.map(|(i, a)| {
            if self.cap_dropping {
                i.iter().filter(|x| a.contains(x)).cloned().collect()
            } else {
                i.clone()
            }
        });
        Some(CapabilitySets {
            ambient,
            bounding,
            effective,
            inheritable,
            permitted,
        })
    }
}

/// `candidate_name(c, i)`: the name, else the id, else `#<index>`.
fn candidate_name(c: &Container, index: usize) -> String {
    c.name
        .clone()
        .or_else(|| c.id.clone())
        .unwrap_or_else(|| format!("#{index}"))
}
