//! The enforcer: one policy, its digest, the metadata state and the single `check` call.

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU32, NonZeroUsize};

use regorus::utils::limits::{ExecutionTimerConfig, PolicyLengthConfig};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::deny::{Denied, Reason};
use crate::fast::{FastPolicy, FrameworkData, Outcome};
use crate::limits;
use crate::load::typed_document;
use crate::metadata::{self, Metadata};
use crate::model::PolicyDocument;
use crate::request::{CapabilitySets, Request};
use crate::{Error, API_REGO, ENFORCEMENT_POINTS, FRAMEWORK_REGO};

const POLICY_PATH: &str = "policy.rego";

/// A version `major.minor.patch` (missing parts are 0).
type Version = (u64, u64, u64);

fn parse_version(s: &str) -> Option<Version> {
    let mut parts = s.trim().split('.');
    let mut next = || -> Option<u64> {
        match parts.next() {
            None => Some(0),
            Some(p) => p.parse().ok(),
        }
    };
    let v = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(v)
}

/// What the API table says about one enforcement point.
#[derive(Debug, Clone)]
struct PointInfo {
    introduced: Version,
    default_results: Value,
}

/// A loaded policy and the state of the container group it governs.
///
/// Every host request goes through [`Enforcer::check`]. An allowed request returns an
/// [`Allowed`] that borrows the enforcer mutably, so no other request can be checked until the
/// caller has performed the action and called [`Allowed::commit`] (or [`Allowed::rollback`], or
/// dropped it, when the action failed). State changes are applied only by `commit`.
pub struct Enforcer {
    engine: regorus::Engine,
    digest: [u8; 32],
    api_version: String,
    api: Version,
    framework_version: Option<String>,
    rego_v0: bool,
    declared: Vec<&'static str>,
    has_reason: bool,
    points: BTreeMap<String, PointInfo>,
    document: Option<PolicyDocument>,
    metadata: Metadata,
    /// The engine's `data.metadata` lags `metadata` (updated lazily before the next Rego use).
    engine_stale: bool,
    poisoned: bool,
    fast: Option<FastPolicy>,
    fast_enabled: bool,
    matcher_stats: MatcherStats,
    /// `data.charter_static` (see framework_common.rego), converted once.
    static_data: Option<regorus::Value>,
    /// The framework's default and privileged capability lists, shown in denials as
    /// `[unprivileged]` / `[privileged]` (as ACI does) to keep them within 3 KiB.
    cap_placeholders: Vec<(BTreeSet<String>, &'static str)>,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("digest", &hex::encode(self.digest))
            .field("api_version", &self.api_version)
            .field("declared", &self.declared)
            .field("metadata", &self.metadata)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Decisions of the compiled matcher (see [`Enforcer::matcher_stats`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatcherStats {
    pub allowed: u64,
    pub denied: u64,
    /// Requests for the matcher's points it could not decide (evaluated in Rego).
    pub unknown: u64,
}

/// A short description of a loaded policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    /// SHA-256 of the exact policy bytes (HOST_DATA), hex.
    pub digest: String,
    pub api_version: String,
    pub framework_version: Option<String>,
    /// Whether the policy needed legacy (v0) Rego syntax.
    pub rego_v0: bool,
    pub containers: Vec<String>,
    pub external_processes: usize,
    pub fragments: usize,
    /// Group flags that are on.
    pub flags: Vec<String>,
    /// Enforcement points the policy defines.
    pub enforcement_points: Vec<String>,
    /// Points the policy does not define, answered by the API defaults (they are newer than
    /// the policy's api_version) or denied ("rule ... is missing").
    pub missing_points: Vec<String>,
    /// Whether the typed model could read the policy data (false for hand-written shapes).
    pub typed_model: bool,
    /// Whether the compiled matcher serves the hot points (documents exactly as rendered by
    /// `PolicyDocument::to_rego`); otherwise every decision is evaluated in Rego.
    pub compiled_matcher: bool,
}

fn base_engine() -> Result<regorus::Engine, Error> {
    let mut engine = regorus::Engine::new();
    engine.set_policy_length_config(PolicyLengthConfig {
        max_col: NonZeroU32::new(limits::MAX_POLICY_LINE_BYTES).unwrap_or(NonZeroU32::MIN),
        max_file_bytes: NonZeroUsize::new(limits::MAX_POLICY_BYTES).unwrap_or(NonZeroUsize::MIN),
        max_lines: NonZeroUsize::new(limits::MAX_POLICY_LINES).unwrap_or(NonZeroUsize::MIN),
    });
    engine.set_rego_v0(false);
    engine
        .add_policy("api.rego".to_owned(), API_REGO.to_owned())
        .map_err(|e| Error::Framework(format!("api.rego: {e}")))?;
    for (path, text) in FRAMEWORK_REGO {
        engine
            .add_policy(path.to_owned(), text.to_owned())
            .map_err(|e| Error::Framework(format!("{path}: {e}")))?;
    }
    Ok(engine)
}

fn to_json(v: &regorus::Value) -> Option<Value> {
    if *v == regorus::Value::Undefined {
        return None;
    }
    serde_json::to_value(v).ok()
}

impl Enforcer {
    /// Loads a policy. The digest is SHA-256 of exactly these bytes.
    ///
    /// # Errors
    /// The policy is too large, not UTF-8, does not parse (as Rego v1, or failing that v0), is
    /// not `package policy`, has no usable `api_version`/`api_svn`, or has `containers` /
    /// `external_processes` the typed model rejects (for example a regex that does not compile).
    pub fn new(policy: impl AsRef<[u8]>) -> Result<Self, Error> {
        let bytes = policy.as_ref();
        if bytes.len() > limits::MAX_POLICY_BYTES {
            return Err(Error::PolicyTooLarge {
                size: bytes.len(),
                limit: limits::MAX_POLICY_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Error::PolicyNotUtf8)?;
        let digest: [u8; 32] = Sha256::digest(bytes).into();

        let (mut engine, package, rego_v0) = {
            let mut engine = base_engine()?;
            match engine.add_policy(POLICY_PATH.to_owned(), text.to_owned()) {
                Ok(pkg) => (engine, pkg, false),
                Err(v1_err) => {
                    let mut engine = base_engine()?;
                    engine.set_rego_v0(true);
                    match engine.add_policy(POLICY_PATH.to_owned(), text.to_owned()) {
                        Ok(pkg) => (engine, pkg, true),
                        Err(_) => return Err(Error::PolicyParse(v1_err.to_string())),
                    }
                }
            }
        };
        if package != "data.policy" {
            return Err(Error::PolicyPackage(package));
        }
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: limits::EVAL_TIME_LIMIT,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        engine.set_input(regorus::Value::from(serde_json::json!({})));

        let mut eval = |path: &str| -> Result<Option<Value>, Error> {
            if let Some(name) = path.strip_prefix("data.policy.") {
                if !engine
                    .has_declared_rule_rooted_at(POLICY_PATH, name)
                    .unwrap_or(false)
                {
                    return Ok(None);
                }
            }
            engine
                .eval_rule(path.to_owned())
                .map(|v| to_json(&v))
                .map_err(|e| Error::PolicyData {
                    field: path.to_owned(),
                    message: e.to_string(),
                })
        };
        let api_version = match eval("data.policy.api_version")? {
            Some(v) => Some(v),
            None => eval("data.policy.api_svn")?,
        };
        let api_version = match api_version {
            Some(Value::String(s)) => s,
            Some(other) => return Err(Error::BadApiVersion(other.to_string())),
            None => return Err(Error::MissingApiVersion),
        };
        let api =
            parse_version(&api_version).ok_or_else(|| Error::BadApiVersion(api_version.clone()))?;
        let framework_version = match eval("data.policy.framework_version")? {
            Some(v) => Some(v),
            None => eval("data.policy.framework_svn")?,
        }
        .and_then(|v| v.as_str().map(str::to_owned));

        let table = eval("data.api.enforcement_points")?
            .ok_or_else(|| Error::Framework("api.enforcement_points is undefined".to_owned()))?;
        let mut points = BTreeMap::new();
        for point in ENFORCEMENT_POINTS {
            let info = table
                .get(point)
                .ok_or_else(|| Error::Framework(format!("api table has no {point}")))?;
            let introduced = info
                .get("introducedVersion")
                .and_then(Value::as_str)
                .and_then(parse_version)
                .ok_or_else(|| Error::Framework(format!("api table {point} has no version")))?;
            let default_results = info.get("default_results").cloned().unwrap_or(Value::Null);
            points.insert(
                point.to_owned(),
                PointInfo {
                    introduced,
                    default_results,
                },
            );
        }

        let containers = eval("data.policy.containers")?;
        let external = eval("data.policy.external_processes")?;
        let fragments = eval("data.policy.fragments")?;
        let document = typed_document(
            &mut eval,
            containers,
            external,
            fragments,
            &api_version,
            &framework_version,
        )?;

        // The compiled matcher serves only documents that are exactly what the typed model
        // renders (no custom rules, standard bindings); everything else is Rego only.
        let rendered = document.as_ref().is_some_and(|doc| doc.to_rego() == text);
        let static_data = match &document {
            Some(doc) if rendered => Some(regorus::Value::from(serde_json::json!({
                "containers": doc.containers,
                "external_processes": doc.external_processes,
            }))),
            _ => None,
        };
        let fast = match &document {
            Some(doc) if rendered => {
                let mut fw = serde_json::Map::new();
                for name in [
                    "default_mounts",
                    "privileged_mounts",
                    "default_capabilities",
                    "privileged_capabilities",
                ] {
                    if let Some(v) = eval(&format!("data.framework.{name}"))? {
                        fw.insert(name.to_owned(), v);
                    }
                }
                let fw = serde_json::from_value::<FrameworkData>(Value::Object(fw)).ok();
                fw.and_then(|fw| FastPolicy::compile(doc, fw))
            }
            _ => None,
        };

        let mut cap_placeholders = Vec::new();
        for (list, name) in [
            ("default_capability_list", "[unprivileged]"),
            ("privileged_capability_list", "[privileged]"),
        ] {
            let caps = eval(&format!("data.framework.{list}"))?
                .and_then(|v| serde_json::from_value::<BTreeSet<String>>(v).ok())
                .ok_or_else(|| Error::Framework(format!("framework has no {list}")))?;
            cap_placeholders.push((caps, name));
        }

        let declared_in_policy = |name: &str| -> bool {
            engine
                .has_declared_rule_rooted_at(POLICY_PATH, name)
                .unwrap_or(false)
        };
        let declared: Vec<&'static str> = ENFORCEMENT_POINTS
            .into_iter()
            .filter(|p| declared_in_policy(p))
            .collect();
        let has_reason = declared_in_policy("reason");

        let mut enforcer = Self {
            engine,
            digest,
            api_version,
            api,
            framework_version,
            rego_v0,
            declared,
            has_reason,
            points,
            document,
            metadata: Metadata::new(),
            engine_stale: true,
            poisoned: false,
            fast,
            fast_enabled: true,
            matcher_stats: MatcherStats::default(),
            static_data,
            cap_placeholders,
        };
        enforcer.sync_engine()?;
        // Denials carry the container objects exactly as the Rego evaluates them.
        if let Some(fast) = enforcer.fast.take() {
            let objects = enforcer
                .engine
                .eval_rule("data.framework.policy_containers".to_owned())
                .ok()
                .and_then(|v| to_json(&v))
                .and_then(|v| match v {
                    Value::Array(a) => Some(a),
                    _ => None,
                });
            enforcer.fast = objects.and_then(|o| fast.with_objects(o));
        }
        Ok(enforcer)
    }

    /// SHA-256 of the exact policy bytes: the value bound into HOST_DATA.
    #[must_use]
    pub fn policy_digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The policy's data read into the typed model, when it has that shape.
    #[must_use]
    pub fn document(&self) -> Option<&PolicyDocument> {
        self.document.as_ref()
    }

    /// The current metadata (the inductive state), as JSON.
    #[must_use]
    pub fn metadata(&self) -> Value {
        Value::Object(self.metadata.clone())
    }

    /// A short description for `charter policy check`.
    #[must_use]
    pub fn summary(&self) -> PolicySummary {
        let doc = self.document.as_ref();
        let flags = doc
            .map(|d| {
                [
                    ("allow_properties_access", d.allow_properties_access),
                    ("allow_dump_stacks", d.allow_dump_stacks),
                    ("allow_runtime_logging", d.allow_runtime_logging),
                    (
                        "allow_environment_variable_dropping",
                        d.allow_environment_variable_dropping,
                    ),
                    ("allow_unencrypted_scratch", d.allow_unencrypted_scratch),
                    ("allow_capability_dropping", d.allow_capability_dropping),
                ]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_owned())
                .collect()
            })
            .unwrap_or_default();
        PolicySummary {
            digest: hex::encode(self.digest),
            api_version: self.api_version.clone(),
            framework_version: self.framework_version.clone(),
            rego_v0: self.rego_v0,
            containers: doc
                .map(|d| {
                    d.containers
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            c.name
                                .clone()
                                .or_else(|| c.id.clone())
                                .unwrap_or_else(|| format!("#{i}"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            external_processes: doc.map_or(0, |d| d.external_processes.len()),
            fragments: doc.map_or(0, |d| d.fragments.len()),
            flags,
            enforcement_points: self.declared.iter().map(|s| (*s).to_owned()).collect(),
            missing_points: ENFORCEMENT_POINTS
                .iter()
                .filter(|p| !self.declared.contains(p))
                .map(|s| (*s).to_owned())
                .collect(),
            typed_model: doc.is_some(),
            compiled_matcher: self.compiled_matcher_active(),
        }
    }

    /// Checks one host request. Allowed: the returned [`Allowed`] carries the environment,
    /// capabilities and stdio decision to apply, and the pending state change. Denied: nothing
    /// changed. Evaluation errors, malformed results and exceeded limits are denials.
    ///
    /// # Errors
    /// [`Denied`] for every request the policy does not allow.
    pub fn check(&mut self, request: &Request) -> Result<Allowed<'_>, Box<Denied>> {
        let rule = request.rule();
        let input = match request.input_json() {
            Ok(v) => v,
            Err(e) => return Err(self.deny_error(rule, &Value::Null, e.to_string())),
        };
        let input_len = serde_json::to_vec(&input).map_or(usize::MAX, |b| b.len());
        if input_len > limits::MAX_INPUT_BYTES {
            let msg = format!(
                "input is {input_len} bytes, more than the limit of {}",
                limits::MAX_INPUT_BYTES
            );
            return Err(self.deny_error(rule, &Value::Null, msg));
        }
        if self.poisoned {
            return Err(self.deny_error(
                rule,
                &input,
                "enforcer state is unusable after a failed update".to_owned(),
            ));
        }
        match self.fast_decision(request) {
            Outcome::Allow(fa) => {
                self.matcher_stats.allowed += 1;
                return match metadata::apply(&self.metadata, &fa.ops) {
                    Ok(next) => Ok(Allowed {
                        enforcer: self,
                        rule,
                        env_list: fa.env_list,
                        caps_list: fa.caps_list,
                        allow_stdio_access: fa.allow_stdio_access,
                        pending: Some(next),
                        by_matcher: true,
                    }),
                    Err(e) => {
                        Err(self.deny_error(rule, &input, format!("metadata update refused: {e}")))
                    }
                };
            }
            Outcome::Deny(reason) => {
                self.matcher_stats.denied += 1;
                let reason = if self.has_reason {
                    reason
                } else {
                    Reason::default()
                };
                return Err(Box::new(Denied::new(
                    rule,
                    &self.shrink(&input),
                    reason,
                    None,
                )));
            }
            Outcome::Unknown => {
                if self.compiled_matcher_active()
                    && matches!(rule, "mount_device" | "mount_overlay" | "create_container")
                {
                    self.matcher_stats.unknown += 1;
                }
            }
        }
        if let Err(e) = self.sync_engine() {
            return Err(self.deny_error(rule, &input, e.to_string()));
        }
        // When the compiled matcher could not decide, a denial is likely: evaluate the decision
        // and the reason in one query, so the framework's rules are computed once.
        let likely_deny = self.has_reason
            && self.compiled_matcher_active()
            && matches!(rule, "mount_device" | "mount_overlay" | "create_container");
        let mut prefetched_reason = None;
        let result = if self.declared.contains(&rule) {
            self.engine.set_input(regorus::Value::from(input.clone()));
            let combined = if likely_deny {
                self.engine
                    .eval_query(format!("data.policy.{rule}; data.policy.reason"), false)
                    .ok()
                    .and_then(|r| r.result.into_iter().next())
                    .filter(|r| r.expressions.len() == 2)
            } else {
                None
            };
            if let Some(r) = combined {
                prefetched_reason = r.expressions.get(1).and_then(|e| to_json(&e.value));
                r.expressions.first().and_then(|e| to_json(&e.value))
            } else {
                match self.engine.eval_rule(format!("data.policy.{rule}")) {
                    Ok(v) => to_json(&v),
                    Err(e) => {
                        return Err(self.deny_error(
                            rule,
                            &input,
                            format!("policy evaluation failed: {e}"),
                        ))
                    }
                }
            }
        } else {
            match self.points.get(rule) {
                Some(info) if info.introduced > self.api => Some(info.default_results.clone()),
                _ => {
                    return Err(self.deny_error(
                        rule,
                        &input,
                        format!("rule for {rule} is missing from policy"),
                    ))
                }
            }
        };
        let allowed = result.as_ref().and_then(|r| r.get("allowed")) == Some(&Value::Bool(true));
        if !allowed {
            return Err(self.deny(rule, &input, prefetched_reason));
        }
        let result = result.unwrap_or(Value::Null);
        let pending = match result.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ops)) if ops.is_empty() => None,
            Some(ops) => match metadata::apply(&self.metadata, ops) {
                Ok(m) => Some(m),
                Err(e) => {
                    return Err(self.deny_error(
                        rule,
                        &input,
                        format!("metadata update refused: {e}"),
                    ))
                }
            },
        };
        let env_list = match result.get("env_list") {
            None | Some(Value::Null) => None,
            Some(v) => match serde_json::from_value::<Vec<String>>(v.clone()) {
                Ok(l) => Some(l),
                Err(_) => {
                    return Err(self.deny_error(
                        rule,
                        &input,
                        "policy returned a malformed env_list".to_owned(),
                    ))
                }
            },
        };
        let caps_list = match result.get("caps_list") {
            None | Some(Value::Null) => None,
            Some(v) => match serde_json::from_value::<CapabilitySets>(v.clone()) {
                Ok(l) => Some(l),
                Err(_) => {
                    return Err(self.deny_error(
                        rule,
                        &input,
                        "policy returned a malformed caps_list".to_owned(),
                    ))
                }
            },
        };
        let allow_stdio_access = result.get("allow_stdio_access") == Some(&Value::Bool(true));
        Ok(Allowed {
            enforcer: self,
            rule,
            env_list,
            caps_list,
            allow_stdio_access,
            pending,
            by_matcher: false,
        })
    }

    fn deny(&mut self, rule: &str, input: &Value, prefetched: Option<Value>) -> Box<Denied> {
        let shown = self.shrink(input);
        if !self.has_reason {
            return Box::new(Denied::new(rule, &shown, Reason::default(), None));
        }
        if let Some(reason) = prefetched.and_then(|r| serde_json::from_value::<Reason>(r).ok()) {
            return Box::new(Denied::new(rule, &shown, reason, None));
        }
        match self.engine.eval_rule("data.policy.reason".to_owned()) {
            Ok(v) => {
                let reason = to_json(&v)
                    .and_then(|r| serde_json::from_value::<Reason>(r).ok())
                    .unwrap_or_default();
                Box::new(Denied::new(rule, &shown, reason, None))
            }
            Err(e) => Box::new(Denied::new(
                rule,
                &shown,
                Reason::default(),
                Some(format!("reason evaluation failed: {e}")),
            )),
        }
    }

    fn deny_error(&self, rule: &str, input: &Value, message: String) -> Box<Denied> {
        Box::new(Denied::new(
            rule,
            &self.shrink(input),
            Reason::default(),
            Some(message),
        ))
    }

    /// Replaces capability sets equal to the framework's default or privileged list with a
    /// placeholder (the denial's copy of the input only).
    fn shrink(&self, input: &Value) -> Value {
        let mut out = input.clone();
        if let Some(Value::Object(caps)) = out.get_mut("capabilities") {
            for set in caps.values_mut() {
                let Some(list) = set.as_array() else { continue };
                let names: BTreeSet<String> = list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                if names.len() != list.len() {
                    continue;
                }
                if let Some((_, placeholder)) = self
                    .cap_placeholders
                    .iter()
                    .find(|(known, _)| *known == names)
                {
                    *set = Value::String((*placeholder).to_owned());
                }
            }
        }
        out
    }

    fn sync_engine(&mut self) -> Result<(), Error> {
        if !self.engine_stale {
            return Ok(());
        }
        self.engine.clear_data();
        let mut data = regorus::Value::new_object();
        let added = data.as_object_mut().map(|o| {
            o.insert(
                "metadata".into(),
                regorus::Value::from(Value::Object(self.metadata.clone())),
            );
            if let Some(s) = &self.static_data {
                o.insert("charter_static".into(), s.clone());
            }
        });
        if let Err(e) = added.and_then(|()| self.engine.add_data(data)) {
            self.poisoned = true;
            return Err(Error::State(e.to_string()));
        }
        self.engine_stale = false;
        Ok(())
    }

    fn commit_metadata(&mut self, next: Metadata) {
        self.metadata = next;
        self.engine_stale = true;
    }

    /// Whether the compiled matcher serves `mount_device`, `mount_overlay` and
    /// `create_container` for this policy (see the `fast` module).
    #[must_use]
    pub fn compiled_matcher_active(&self) -> bool {
        self.fast.is_some() && self.fast_enabled
    }

    /// Turns the compiled matcher off (Rego only). For differential tests and benchmarks.
    #[doc(hidden)]
    pub fn set_compiled_matcher(&mut self, enabled: bool) {
        self.fast_enabled = enabled;
    }

    /// How often the compiled matcher allowed, denied, or left the decision to the Rego. For
    /// tests and benchmarks.
    #[doc(hidden)]
    #[must_use]
    pub fn matcher_stats(&self) -> MatcherStats {
        self.matcher_stats
    }

    fn fast_decision(&self, request: &Request) -> Outcome {
        let Some(fast) = self.fast.as_ref().filter(|_| self.fast_enabled) else {
            return Outcome::Unknown;
        };
        match request {
            Request::MountDevice(r) => fast.mount_device(r, &self.metadata),
            Request::MountOverlay(r) => fast.mount_overlay(r, &self.metadata),
            Request::CreateContainer(r) => fast.create_container(r, &self.metadata),
            Request::ScratchMount(r) => fast.scratch_mount(r, &self.metadata),
            _ => Outcome::Unknown,
        }
    }
}

/// An allowed request. Perform the action, then [`commit`](Allowed::commit) the state change;
/// if the action failed, [`rollback`](Allowed::rollback) (or drop) instead. Only the enforcer
/// can construct it, and while it lives the enforcer is mutably borrowed: no other request can
/// be checked against a state that is about to change.
#[must_use = "commit the state change after performing the action, or roll back"]
pub struct Allowed<'a> {
    enforcer: &'a mut Enforcer,
    rule: &'static str,
    env_list: Option<Vec<String>>,
    caps_list: Option<CapabilitySets>,
    allow_stdio_access: bool,
    pending: Option<Metadata>,
    by_matcher: bool,
}

impl std::fmt::Debug for Allowed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allowed")
            .field("rule", &self.rule)
            .field("env_list_len", &self.env_list.as_ref().map(Vec::len))
            .field("caps_list", &self.caps_list)
            .field("allow_stdio_access", &self.allow_stdio_access)
            .field("changes_state", &self.pending.is_some())
            .finish()
    }
}

impl Allowed<'_> {
    /// The enforcement point that allowed.
    #[must_use]
    pub fn rule(&self) -> &'static str {
        self.rule
    }
    /// The environment to run with (may be a subset of the request's when dropping is on);
    /// `None` when the rule does not decide it (keep the request's).
    #[must_use]
    pub fn env_list(&self) -> Option<&[String]> {
        self.env_list.as_deref()
    }
    /// The capability sets to run with; `None` when the rule does not decide them.
    #[must_use]
    pub fn caps_list(&self) -> Option<&CapabilitySets> {
        self.caps_list.as_ref()
    }
    /// Whether the host may see the process's stdio.
    #[must_use]
    pub fn allow_stdio_access(&self) -> bool {
        self.allow_stdio_access
    }
    /// Whether committing changes the state.
    #[must_use]
    pub fn changes_state(&self) -> bool {
        self.pending.is_some()
    }
    /// The action succeeded: apply the state change.
    ///
    /// # Errors
    /// [`Error::State`] if the engine refused the new state; the enforcer then denies every
    /// later request (it can no longer prove what state the group is in).
    pub fn commit(self) -> Result<(), Error> {
        match self.pending {
            Some(next) => {
                self.enforcer.commit_metadata(next);
                Ok(())
            }
            None => Ok(()),
        }
    }
    /// Whether the compiled matcher (rather than the Rego) decided. For tests and benchmarks.
    #[doc(hidden)]
    #[must_use]
    pub fn decided_by_matcher(&self) -> bool {
        self.by_matcher
    }
    /// The action failed: keep the state as it was.
    pub fn rollback(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("0.10.0"), Some((0, 10, 0)));
        assert_eq!(parse_version("1.2"), Some((1, 2, 0)));
        assert!(parse_version("0.1.x").is_none());
        assert!(parse_version("1.2.3.4").is_none());
        assert!(parse_version("0.9.0") < parse_version("0.10.0"));
    }
}
