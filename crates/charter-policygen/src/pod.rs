//! One Kubernetes container plus its measured image → one policy container, with the runtime
//! semantics users of confcom and genpolicy expect.

use std::path::{Component, Path};

use charter_policy::model::{
    Container, EnvRule, ExecProcess, IdNameRule, IdNameStrategy, MountConstraint, UserRule,
};
use charter_policy::request::CapabilitySets;
use sha2::{Digest as _, Sha256};

use crate::k8s::{K8sContainer, PodSpec, SeccompProfile};
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
) -> Result<Container, Error> {
    let what = format!("{field} ({})", c.name);
    let env = Env::build(&image.env, c, field)?;
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

/// A container's environment: image variables overridden by pod variables, in order.
struct Env {
    /// `(name, Some(value))` for literal values, `(name, None)` for `valueFrom`; image
    /// variables first, a pod variable replacing an image one in place.
    vars: Vec<(String, Option<String>)>,
    /// Names the pod defined so far (what `$(NAME)` may refer to).
    pod_names: Vec<String>,
}

impl Env {
    fn build(image_env: &[String], c: &K8sContainer, field: &str) -> Result<Self, Error> {
        let mut env = Self {
            vars: Vec::new(),
            pod_names: Vec::new(),
        };
        for entry in image_env {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            env.set(name, Some(value.to_owned()));
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
                (_, Some(_)) => None,
                (Some(v), None) => Some(env.expand(v, &format!("{here}.value"))?),
                (None, None) => Some(String::new()),
            };
            env.set(&var.name, value);
            env.pod_names.push(var.name.clone());
        }
        Ok(env)
    }

    fn set(&mut self, name: &str, value: Option<String>) {
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
                            Some((_, Some(v))) if defined => out.push_str(v),
                            Some((_, None)) if defined => {
                                return Err(Error::Unsupported {
                                    fields: vec![format!(
                                        "{field}: $({name}) refers to a valueFrom variable"
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

    /// Literal variables as exact rules, `valueFrom` variables as `NAME=<anything>`; all
    /// required, so the host can neither drop nor change them.
    fn rules(&self) -> Vec<EnvRule> {
        self.vars
            .iter()
            .map(|(name, value)| match value {
                Some(v) => EnvRule::string(&format!("{name}={v}"), true),
                None => EnvRule::re2(&format!("{}=(?s:.*)", regex_escape(name)), true),
            })
            .collect()
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

/// Unconfined (or none): "". Localhost: SHA-256 of the profile file (the OCI `linux.seccomp`
/// JSON) under `--seccomp-dir`. RuntimeDefault: refused, since the runtime's default profile
/// is not known here.
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
            Ok(hex::encode(Sha256::digest(&bytes)))
        }
        other => Err(err(format!(
            "seccomp profile type {other:?} is not supported (Unconfined and Localhost are)"
        ))),
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
                    "volume {:?} (mounted at {here}): only emptyDir, configMap, secret and hostPath are supported",
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
