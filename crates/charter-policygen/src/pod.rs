//! One Kubernetes container plus its measured image → one policy container, with the runtime
//! semantics users of confcom and genpolicy expect.

use std::path::{Component, Path};

use charter_policy::model::{
    Container, EnvRule, ExecProcess, IdNameRule, IdNameStrategy, MountConstraint, UserRule,
};
use charter_policy::request::CapabilitySets;
use sha2::{Digest as _, Sha256};

use crate::k8s::{K8sContainer, Objects, PodSpec, SeccompProfile};
use crate::userdb::{self, UserDb};
use crate::{Error, Options};

pub use charter_policy::DEFAULT_CAPABILITIES;

/// Signals the init process of every container may receive (kubelet stops with TERM, then KILL).
pub const INIT_SIGNALS: [i64; 2] = [9, 15];
/// Signals an exec'd probe or hook may receive (kill on timeout).
pub const EXEC_SIGNALS: [i64; 1] = [9];
/// What `--debug-mode` allows to exec in every container.
pub const DEBUG_SHELLS: [&str; 2] = ["/bin/sh", "/bin/bash"];
/// Largest Localhost seccomp profile read (bytes).
pub const MAX_SECCOMP_BYTES: u64 = 1024 * 1024;
/// umask the policy expects (the OCI runtime default).
pub const UMASK: &str = "0022";

/// What the generator knows about one image.
#[derive(Debug)]
pub(crate) struct ImageFacts<'a> {
    pub reference: &'a str,
    pub root_hashes: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub users: &'a UserDb,
}

/// Builds the policy container for `c` (`field`: its path, e.g. `spec.containers[1]`).
pub(crate) fn container(
    spec: &PodSpec,
    c: &K8sContainer,
    field: &str,
    image: &ImageFacts<'_>,
    options: &Options,
    objects: &Objects,
) -> Result<Container, Error> {
    let what = format!("{field} ({})", c.name);
    let env = Env::build(&image.env, c, field, objects)?;
    let command = argv(&image.entrypoint, &image.cmd, c, &env, field)?;
    if command.is_empty() {
        return Err(Error::Container {
            container: what,
            message: "no command: the image has no Entrypoint or Cmd and the pod gives none".into(),
        });
    }
    let working_dir = match c.working_dir.as_deref() {
        Some(d) if !d.is_empty() => d.to_owned(),
        _ if !image.working_dir.is_empty() => image.working_dir.clone(),
        _ => "/".to_owned(),
    };

    let sc = c.security_context.as_ref();
    let psc = spec.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group));
    let id = |v: Option<i64>, name: &str| {
        v.map(|v| {
            u32::try_from(v).map_err(|_| Error::Container {
                container: what.clone(),
                message: format!("securityContext.{name} {v} is not a valid id"),
            })
        })
        .transpose()
    };
    let identity = userdb::resolve(
        image.users,
        &image.user,
        id(run_as_user, "runAsUser")?,
        id(run_as_group, "runAsGroup")?,
        &what,
    )?;
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| psc.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    if non_root && identity.uid == 0 {
        return Err(Error::Container {
            container: what,
            message: "runAsNonRoot is set but the container would run as uid 0".into(),
        });
    }
    let mut groups = vec![identity.gid];
    let strict = psc.and_then(|p| p.supplemental_groups_policy.as_deref()) == Some("Strict");
    if !strict {
        groups.extend(&identity.member_of);
    }
    for g in psc
        .map(|p| p.supplemental_groups.iter().chain(&p.fs_group))
        .into_iter()
        .flatten()
    {
        groups.push(u32::try_from(*g).map_err(|_| Error::Container {
            container: what.clone(),
            message: format!("supplemental group {g} is not a valid id"),
        })?);
    }
    groups.sort_unstable();
    groups.dedup();
    let user = UserRule {
        user_idname: IdNameRule {
            pattern: identity.uid.to_string(),
            strategy: IdNameStrategy::Id,
        },
        group_idnames: groups
            .iter()
            .map(|g| IdNameRule {
                pattern: g.to_string(),
                strategy: IdNameStrategy::Id,
            })
            .collect(),
        umask: UMASK.to_owned(),
    };

    let capabilities = if privileged {
        None // the framework grants its privileged set to privileged, elevated containers
    } else {
        capabilities(sc.and_then(|s| s.capabilities.as_ref()))
    };

    let seccomp = sc
        .and_then(|s| s.seccomp_profile.clone())
        .or_else(|| psc.and_then(|p| p.seccomp_profile.clone()));
    let seccomp_profile_sha256 = seccomp_hash(seccomp.as_ref(), options, &what)?;

    let mut exec_processes = Vec::new();
    let handlers = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
        .into_iter()
        .chain(
            c.lifecycle
                .iter()
                .flat_map(|l| [&l.post_start, &l.pre_stop]),
        );
    for h in handlers.flatten() {
        if let Some(exec) = &h.exec {
            push_exec(&mut exec_processes, exec.command.clone());
        }
    }
    if options.debug_mode {
        for shell in DEBUG_SHELLS {
            push_exec(&mut exec_processes, vec![shell.to_owned()]);
        }
    }

    let mut env_rules = env.rules();
    for rule in &options.settings.env_rules {
        if !env_rules.contains(rule) {
            env_rules.push(rule.clone());
        }
    }

    Ok(Container {
        id: Some(image.reference.to_owned()),
        name: Some(c.name.clone()),
        layers: image.root_hashes.clone(),
        command,
        env_rules,
        working_dir,
        mounts: mounts(spec, c, field, options)?,
        exec_processes,
        signals: INIT_SIGNALS.to_vec(),
        allow_elevated: privileged,
        allow_stdio_access: !options.deny_stdio,
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        user: Some(user),
        capabilities,
        seccomp_profile_sha256,
    })
}

fn push_exec(list: &mut Vec<ExecProcess>, command: Vec<String>) {
    if !list.iter().any(|p| p.command == command) {
        list.push(ExecProcess {
            command,
            signals: EXEC_SIGNALS.to_vec(),
        });
    }
}

/// The k8s rules: `command` replaces Entrypoint and drops Cmd; `args` alone replace Cmd.
/// `$(VAR)` references to the container's env are expanded as kubelet does.
fn argv(
    entrypoint: &[String],
    cmd: &[String],
    c: &K8sContainer,
    env: &Env,
    field: &str,
) -> Result<Vec<String>, Error> {
    let expand_all = |list: &[String], name: &str| -> Result<Vec<String>, Error> {
        list.iter()
            .enumerate()
            .map(|(i, s)| env.expand(s, &format!("{field}.{name}[{i}]")))
            .collect()
    };
    Ok(match (&c.command, &c.args) {
        (Some(command), args) => {
            let mut out = expand_all(command, "command")?;
            out.extend(expand_all(args.as_deref().unwrap_or_default(), "args")?);
            out
        }
        (None, Some(args)) => {
            let mut out = entrypoint.to_vec();
            out.extend(expand_all(args, "args")?);
            out
        }
        (None, None) => entrypoint.iter().chain(cmd).cloned().collect(),
    })
}

/// A container's environment: image variables overridden by `envFrom` and then `env`
/// variables (kubelet's order), in order.
struct Env {
    /// Image variables first, a pod variable replacing an image one in place.
    vars: Vec<(String, EnvValue)>,
    /// Names the pod defined so far (what `$(NAME)` may refer to).
    pod_names: Vec<String>,
    /// Rules for whole families of names (`envFrom` with a prefix and unknown keys).
    patterns: Vec<EnvRule>,
}

/// A variable's value as known at generation time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvValue {
    /// A literal: an exact rule.
    Literal(String),
    /// Set at run time (`valueFrom`, `envFrom`): any value, the name anchored.
    Unknown { required: bool },
}

/// Characters kubelet accepts in variable names that come from `envFrom` keys.
const ENV_FROM_NAME: &str = "[A-Za-z0-9_.-]+";

impl Env {
    fn build(
        image_env: &[String],
        c: &K8sContainer,
        field: &str,
        objects: &Objects,
    ) -> Result<Self, Error> {
        let mut env = Self {
            vars: Vec::new(),
            pod_names: Vec::new(),
            patterns: Vec::new(),
        };
        for entry in image_env {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            env.set(name, EnvValue::Literal(value.to_owned()));
        }
        for (i, from) in c.env_from.iter().enumerate() {
            let here = format!("{field}.envFrom[{i}]");
            let (kind, key, r) = match (&from.config_map_ref, &from.secret_ref) {
                (Some(r), None) => ("ConfigMap", "configMapRef", r),
                (None, Some(r)) => ("Secret", "secretRef", r),
                _ => {
                    return Err(Error::Container {
                        container: here,
                        message: "needs exactly one of configMapRef and secretRef".into(),
                    })
                }
            };
            if from.prefix.contains('=') {
                return Err(Error::Container {
                    container: here,
                    message: format!("invalid prefix {:?}", from.prefix),
                });
            }
            match objects.keys(kind, &r.name) {
                Some(keys) => {
                    for k in keys.iter().filter(|k| !k.is_empty() && !k.contains('=')) {
                        let name = format!("{}{k}", from.prefix);
                        env.set(
                            &name,
                            EnvValue::Unknown {
                                required: !r.optional,
                            },
                        );
                        env.pod_names.push(name);
                    }
                }
                None if !from.prefix.is_empty() => {
                    env.patterns.push(EnvRule::re2(
                        &format!("{}{ENV_FROM_NAME}=(?s:.*)", regex_escape(&from.prefix)),
                        false,
                    ));
                }
                None => {
                    return Err(Error::Container {
                        container: format!("{here}.{key}"),
                        message: format!(
                            "the {kind} {:?} is not in the YAML, so the variables it brings in are unknown: add the {kind} to the file, or give envFrom a prefix",
                            r.name
                        ),
                    })
                }
            }
        }
        for (i, var) in c.env.iter().enumerate() {
            let here = format!("{field}.env[{i}]");
            if var.name.is_empty() || var.name.contains('=') {
                return Err(Error::Container {
                    container: here,
                    message: format!("invalid variable name {:?}", var.name),
                });
            }
            let value = match (&var.value, &var.value_from) {
                (_, Some(_)) => EnvValue::Unknown { required: true },
                (Some(v), None) => EnvValue::Literal(env.expand(v, &format!("{here}.value"))?),
                (None, None) => EnvValue::Literal(String::new()),
            };
            env.set(&var.name, value);
            env.pod_names.push(var.name.clone());
        }
        Ok(env)
    }

    fn set(&mut self, name: &str, value: EnvValue) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    /// kubelet's expansion: `$$` is `$`, `$(NAME)` of a defined pod variable is its value,
    /// anything else stays as written. A reference to a `valueFrom` variable cannot be known at
    /// generation time and is refused.
    fn expand(&self, s: &str, field: &str) -> Result<String, Error> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(rest.get(..i).unwrap_or_default());
            let after = rest.get(i.saturating_add(1)..).unwrap_or_default();
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('(') {
                match inner.find(')') {
                    Some(end) => {
                        let name = inner.get(..end).unwrap_or_default();
                        let tail = inner.get(end.saturating_add(1)..).unwrap_or_default();
                        let defined = self.pod_names.iter().any(|n| n == name);
                        match self.vars.iter().find(|(n, _)| n == name) {
                            Some((_, EnvValue::Literal(v))) if defined => out.push_str(v),
                            Some((_, EnvValue::Unknown { .. })) if defined => {
                                return Err(Error::Unsupported {
                                    fields: vec![format!(
                                        "{field}: $({name}) refers to a valueFrom or envFrom variable, set only at run time"
                                    )],
                                })
                            }
                            _ => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        rest = tail;
                    }
                    None => {
                        out.push_str("$(");
                        rest = inner;
                    }
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Literal variables as exact rules, run-time variables as name-anchored
    /// `NAME=<anything>`; required (except those of optional `envFrom` sources), so the host
    /// can neither drop nor change them. Then the `envFrom` prefix families.
    fn rules(&self) -> Vec<EnvRule> {
        let mut out: Vec<EnvRule> = self
            .vars
            .iter()
            .map(|(name, value)| match value {
                EnvValue::Literal(v) => EnvRule::string(&format!("{name}={v}"), true),
                EnvValue::Unknown { required } => {
                    EnvRule::re2(&format!("{}=(?s:.*)", regex_escape(name)), *required)
                }
            })
            .collect();
        for p in &self.patterns {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// Escapes RE2 metacharacters.
#[must_use]
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn cap_name(s: &str) -> String {
    let upper = s.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// add/drop over the default set, or `None` when that is just the default.
fn capabilities(caps: Option<&crate::k8s::Capabilities>) -> Option<CapabilitySets> {
    let caps = caps?;
    if caps.add.is_empty() && caps.drop.is_empty() {
        return None;
    }
    let mut set: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for d in &caps.drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            let d = cap_name(d);
            set.retain(|c| *c != d);
        }
    }
    for a in &caps.add {
        let a = if a.eq_ignore_ascii_case("ALL") {
            continue;
        } else {
            cap_name(a)
        };
        if !set.contains(&a) {
            set.push(a);
        }
    }
    set.sort();
    Some(CapabilitySets {
        ambient: Vec::new(),
        bounding: set.clone(),
        effective: set.clone(),
        inheritable: Vec::new(),
        permitted: set,
    })
}

/// What ACI's confcom does: Unconfined (or none) → ""; Localhost → SHA-256 of the profile
/// file (under `--seccomp-dir`) normalised to the OCI `linux.seccomp` JSON the runtime hands
/// the guest ([`normalize_seccomp`]). RuntimeDefault is refused with an error, where confcom
/// silently writes "": the runtime's default profile is not known here, and a policy that
/// expects no profile would deny the container the runtime actually starts.
fn seccomp_hash(
    profile: Option<&SeccompProfile>,
    options: &Options,
    what: &str,
) -> Result<String, Error> {
    let err = |message: String| Error::Seccomp {
        container: what.to_owned(),
        message,
    };
    let Some(profile) = profile else {
        return Ok(String::new());
    };
    match profile.kind.as_str() {
        "Unconfined" => Ok(String::new()),
        "Localhost" => {
            let name = profile
                .localhost_profile
                .as_deref()
                .ok_or_else(|| err("Localhost profile without localhostProfile".into()))?;
            let dir = options.seccomp_dir.as_deref().ok_or_else(|| {
                err(format!(
                    "Localhost profile {name:?} needs the profile directory (--seccomp-dir)"
                ))
            })?;
            let rel = Path::new(name);
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(err(format!(
                    "localhostProfile {name:?} must be a relative path"
                )));
            }
            let path = dir.join(rel);
            let file =
                std::fs::File::open(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_SECCOMP_BYTES.saturating_add(1)),
                &mut bytes,
            )
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
            if bytes.len() as u64 > MAX_SECCOMP_BYTES {
                return Err(err(format!("{} is too large", path.display())));
            }
            let normalized = normalize_seccomp(&bytes)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            Ok(hex::encode(Sha256::digest(normalized.as_bytes())))
        }
        "RuntimeDefault" => Err(err(
            "RuntimeDefault cannot be honoured: the runtime's default profile is not known at generation time; use a Localhost profile (with --seccomp-dir) or Unconfined".into(),
        )),
        other => Err(err(format!(
            "seccomp profile type {other:?} is not supported (Unconfined and Localhost are)"
        ))),
    }
}

/// A seccomp profile (Docker/Kubernetes JSON) as the OCI `linux.seccomp` object, serialised
/// the way ACI's confcom hashes it: only `defaultAction` (default ""), `defaultErrnoRet`,
/// `architectures`, `flags`, `listenerPath`, `listenerMetadata` and `syscalls` (each with
/// `names` (default []), `action` (default ""), `errnoRet`, `args` (each `index` (default 0),
/// `value` (default 0), `valueTwo`, `op` (default ""))), in that order, compact, non-ASCII
/// escaped.
pub fn normalize_seccomp(bytes: &[u8]) -> Result<String, String> {
    use serde_json::{Map, Value};
    let profile: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON seccomp profile: {e}"))?;
    let obj = profile
        .as_object()
        .ok_or("a seccomp profile must be a JSON object")?;
    fn pick(obj: &Map<String, Value>, fields: &[(&str, Option<Value>)]) -> Vec<(String, Value)> {
        fields
            .iter()
            .filter_map(|(k, default)| {
                obj.get(*k)
                    .cloned()
                    .or_else(|| default.clone())
                    .map(|v| ((*k).to_owned(), v))
            })
            .collect()
    }
    let mut top = pick(
        obj,
        &[
            ("defaultAction", Some(Value::from(""))),
            ("defaultErrnoRet", None),
            ("architectures", None),
            ("flags", None),
            ("listenerPath", None),
            ("listenerMetadata", None),
            ("syscalls", None),
        ],
    );
    for (key, value) in &mut top {
        if key != "syscalls" {
            continue;
        }
        let list = value.as_array().ok_or("syscalls must be a list")?;
        let mut syscalls = Vec::with_capacity(list.len());
        for s in list {
            let s = s.as_object().ok_or("each syscall rule must be an object")?;
            let mut fields = pick(
                s,
                &[
                    ("names", Some(Value::Array(Vec::new()))),
                    ("action", Some(Value::from(""))),
                    ("errnoRet", None),
                    ("args", None),
                ],
            );
            for (k, v) in &mut fields {
                if k != "args" {
                    continue;
                }
                let args = v.as_array().ok_or("syscall args must be a list")?;
                let mut out = Vec::with_capacity(args.len());
                for a in args {
                    let a = a.as_object().ok_or("each syscall arg must be an object")?;
                    out.push(ordered(pick(
                        a,
                        &[
                            ("index", Some(Value::from(0))),
                            ("value", Some(Value::from(0))),
                            ("valueTwo", None),
                            ("op", Some(Value::from(""))),
                        ],
                    )));
                }
                *v = Value::Array(out);
            }
            syscalls.push(ordered(fields));
        }
        *value = Value::Array(syscalls);
    }
    let mut out = String::new();
    write_ordered(&ordered(top), &mut out);
    Ok(out)
}

/// An object whose keys keep the given order (serialised by [`write_ordered`]).
fn ordered(fields: Vec<(String, serde_json::Value)>) -> serde_json::Value {
    // Keys are prefixed with their position so the order survives serde_json's sorted map.
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in fields.into_iter().enumerate() {
        map.insert(format!("{i:04}\u{0}{k}"), v);
    }
    serde_json::Value::Object(map)
}

/// Compact JSON like Python's `json.dumps(..., separators=(',', ':'))` (ASCII only).
fn write_ordered(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let key = k.split_once('\u{0}').map_or(k.as_str(), |(_, k)| k);
                write_ascii_json(&Value::from(key), out);
                out.push(':');
                write_ordered(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ordered(v, out);
            }
            out.push(']');
        }
        leaf => write_ascii_json(leaf, out),
    }
}

fn write_ascii_json(leaf: &serde_json::Value, out: &mut String) {
    let text = leaf.to_string();
    for ch in text.chars() {
        if (ch as u32) < 0x7f {
            out.push(ch);
        } else {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}

/// Volume mounts → mount constraints, plus the platform's mounts.
fn mounts(
    spec: &PodSpec,
    c: &K8sContainer,
    field: &str,
    options: &Options,
) -> Result<Vec<MountConstraint>, Error> {
    let mut out = Vec::new();
    for (i, vm) in c.volume_mounts.iter().enumerate() {
        let here = format!("{field}.volumeMounts[{i}]");
        let volume = spec
            .volumes
            .iter()
            .find(|v| v.name == vm.name)
            .ok_or_else(|| Error::Container {
                container: here.clone(),
                message: format!("volume {:?} is not in spec.volumes", vm.name),
            })?;
        if !vm.mount_path.starts_with('/') {
            return Err(Error::Container {
                container: here,
                message: format!("mountPath {:?} is not absolute", vm.mount_path),
            });
        }
        let (source, read_only) = if volume.empty_dir.is_some() {
            ("sandbox:///tmp/atlas/emptydir/.+".to_owned(), vm.read_only)
        } else if volume.config_map.is_some() {
            ("sandbox:///tmp/atlas/configmap/.+".to_owned(), true)
        } else if volume.secret.is_some() {
            ("sandbox:///tmp/atlas/secret/.+".to_owned(), true)
        } else if volume.projected.is_some() {
            ("sandbox:///tmp/atlas/projected/.+".to_owned(), true)
        } else if volume.downward_api.is_some() {
            ("sandbox:///tmp/atlas/downwardapi/.+".to_owned(), true)
        } else if volume.csi.is_some() {
            // Checked by `sealed_volumes`: the agent decrypts it into this directory.
            (format!("sandbox:///tmp/atlas/sealed/{}", volume.name), true)
        } else if let Some(hp) = &volume.host_path {
            if !options.allow_host_path {
                return Err(Error::HostPath {
                    volume: volume.name.clone(),
                    path: hp.path.clone(),
                });
            }
            (hp.path.clone(), vm.read_only)
        } else if options.ignore_unsupported {
            // Its (unsupported) source was reported; without a rule the mount is denied.
            continue;
        } else {
            return Err(Error::Unsupported {
                fields: vec![format!(
                    "volume {:?} (mounted at {here}): only emptyDir, configMap, secret, projected, downwardAPI, hostPath and sealed.charter.dev csi volumes are supported",
                    volume.name
                )],
            });
        };
        let mode = if read_only { "ro" } else { "rw" };
        out.push(MountConstraint {
            destination: vm.mount_path.clone(),
            source,
            kind: "bind".to_owned(),
            options: vec!["rbind".into(), "rshared".into(), mode.into()],
        });
    }
    for m in &options.settings.mounts {
        if !out.iter().any(|o| o.destination == m.destination) {
            out.push(m.clone());
        }
    }
    Ok(out)
}

/// The CSI driver name of sealed data volumes.
pub(crate) const SEALED_DRIVER: &str = "sealed.charter.dev";

/// The pod's sealed volumes (CSI volumes of [`SEALED_DRIVER`]) with the broker resource of
/// each one's data key; they need a key broker.
pub(crate) fn sealed_volumes(
    spec: &PodSpec,
    options: &Options,
) -> Result<Vec<charter_policy::model::SealedVolume>, Error> {
    let mut out = Vec::new();
    for v in &spec.volumes {
        let Some(csi) = &v.csi else { continue };
        let err = |message: String| Error::Sealed {
            volume: v.name.clone(),
            message,
        };
        if csi.driver != SEALED_DRIVER {
            return Err(err(format!(
                "csi driver {:?} is not supported (only {SEALED_DRIVER})",
                csi.driver
            )));
        }
        let name_ok = !v.name.is_empty()
            && v.name.len() <= 63
            && v.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.name.starts_with('-')
            && !v.name.ends_with('-');
        if !name_ok {
            return Err(err("the name is not a DNS-1123 label".to_owned()));
        }
        let resource = csi.volume_attributes.get("resource").ok_or_else(|| {
            err(
                "volumeAttributes.resource (repository/type/tag of its data key) is missing"
                    .to_owned(),
            )
        })?;
        let parts: Vec<&str> = resource.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if parts.len() != 3 || !parts.iter().all(part_ok) {
            return Err(err(format!(
                "resource {resource:?} is not repository/type/tag of [A-Za-z0-9._-]"
            )));
        }
        if options.key_broker.is_none() {
            return Err(err(
                "sealed volumes need a key broker in the policy (--key-broker URL --key-broker-ca PEM)"
                    .to_owned(),
            ));
        }
        out.push(charter_policy::model::SealedVolume {
            name: v.name.clone(),
            resource: resource.clone(),
        });
    }
    Ok(out)
}
