//! The runtime spec model and its construction from an allowed configuration.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::caps::{capability_number, KNOWN_CAPABILITIES};
use crate::error::{io_err, truncate, Error, Result, SpecError};

/// The OCI runtime spec version written into `config.json` (what runc 1.1 implements).
pub const OCI_VERSION: &str = "1.0.2";

/// Soft and hard `RLIMIT_NOFILE` of every container process (runc's default spec).
pub const NOFILE_LIMIT: u64 = 1024;

/// The paths runc's default spec masks (bind-mounts `/dev/null` or an empty read-only tmpfs
/// over), plus `/sys/devices/virtual/powercap` which newer runc releases add.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
];

/// The paths runc's default spec remounts read-only.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const MAX_PATH: usize = 4096;
const MAX_SHOWN: usize = 200;

// ---------------------------------------------------------------------------------------------
// Inputs.

/// The five capability sets of a process, as names like `"CAP_CHOWN"`.
///
/// Used both as input (from the policy decision) and in the generated spec, where each set is
/// sorted by capability number and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// The bounding set.
    pub bounding: Vec<String>,
    /// The effective set.
    pub effective: Vec<String>,
    /// The inheritable set.
    pub inheritable: Vec<String>,
    /// The permitted set.
    pub permitted: Vec<String>,
    /// The ambient set.
    pub ambient: Vec<String>,
}

/// One process as the policy allowed it: a container's init process, or a process to exec
/// into a running container ([`ExecConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessConfig {
    /// argv; must not be empty. `args[0]` is resolved by runc in the container's `PATH`.
    pub args: Vec<String>,
    /// Environment, each `NAME=value`.
    pub env: Vec<String>,
    /// Working directory inside the container: absolute and canonical.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// File mode creation mask; `None` gets runc's default, 0022 (checked with runc 1.1.5).
    pub umask: Option<u32>,
    /// Capability sets.
    pub capabilities: Capabilities,
    /// Set `no_new_privs` before exec.
    pub no_new_privileges: bool,
}

/// A process to run inside an already running container (`runc exec`).
pub type ExecConfig = ProcessConfig;

/// An extra mount that the policy approved, applied after the default mounts (so it may
/// cover one of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountConfig {
    /// Mount point inside the container: absolute, canonical, not `/`.
    pub destination: String,
    /// Source: for bind mounts (type `bind` or an option `bind`/`rbind`) an absolute canonical
    /// path in the agent's mount namespace; otherwise a free-form name (`tmpfs`, ...).
    pub source: String,
    /// Filesystem type (`bind`, `tmpfs`, ...).
    pub kind: String,
    /// Mount options as runc understands them (`rbind`, `ro`, `nosuid`, `size=64k`, ...).
    pub options: Vec<String>,
}

/// Everything needed to build a container's runtime spec, filled by the agent from an allowed
/// policy decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Container id: 1-128 characters of `[A-Za-z0-9_.+-]`, starting with a letter or digit.
    pub id: String,
    /// The container's root filesystem in the agent's mount namespace: absolute, canonical,
    /// not `/`.
    pub rootfs: PathBuf,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// The init process.
    pub process: ProcessConfig,
    /// Privileged container (see the crate documentation for what this changes).
    pub privileged: bool,
    /// Hostname set in the container's UTS namespace; empty keeps the sandbox's.
    pub hostname: String,
    /// Extra mounts, in order.
    pub mounts: Vec<MountConfig>,
}

// ---------------------------------------------------------------------------------------------
// The spec model: only what runc needs, and nothing that could carry a hook.

/// An OCI runtime spec (`config.json`) as this crate writes it.
///
/// The model has no `hooks`, `annotations`, network, user or cgroup namespace fields, so a
/// spec built here cannot carry them. Every collection is a `Vec`, so serialisation is
/// deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// [`OCI_VERSION`].
    pub oci_version: String,
    /// The init process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Hostname (empty: not set).
    pub hostname: String,
    /// Mounts in order: the default ones, then the extra ones.
    pub mounts: Vec<Mount>,
    /// Linux-specific settings.
    pub linux: Linux,
}

/// A process (the init process, or a `process.json` for `runc exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Process {
    /// Always `false`: no console.
    pub terminal: bool,
    /// Credentials.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets, sorted by number.
    pub capabilities: Capabilities,
    /// Resource limits (`RLIMIT_NOFILE` = [`NOFILE_LIMIT`]).
    pub rlimits: Vec<Rlimit>,
    /// `no_new_privs`.
    pub no_new_privileges: bool,
}

/// Process credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// umask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// A POSIX resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Absolute path.
    pub path: String,
    /// Read-only root.
    pub readonly: bool,
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Mount point in the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options.
    pub options: Vec<String>,
}

/// Linux-specific settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Linux {
    /// Namespaces to create: pid, ipc, uts, mount; never network or user.
    pub namespaces: Vec<Namespace>,
    /// Cgroup resources.
    pub resources: Resources,
    /// Masked paths.
    pub masked_paths: Vec<String>,
    /// Read-only paths.
    pub readonly_paths: Vec<String>,
}

/// A namespace to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// Which one.
    #[serde(rename = "type")]
    pub kind: NamespaceKind,
}

/// The namespaces a container gets. The network namespace is the sandbox's (shared by the
/// containers of a group, as in a pod); there is no user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// PID namespace.
    Pid,
    /// IPC namespace.
    Ipc,
    /// UTS namespace.
    Uts,
    /// Mount namespace.
    Mount,
}

/// Cgroup resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Device cgroup rules.
    pub devices: Vec<DeviceRule>,
}

/// A device cgroup rule covering all devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `rwm`.
    pub access: String,
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn shown(s: &str) -> String {
    truncate(s, MAX_SHOWN)
}

/// Checks a container id: 1-128 characters of `[A-Za-z0-9_.+-]`, starting with a letter or a
/// digit (so it can never be read as a runc flag nor name `.`/`..`).
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let bad = |reason| SpecError::InvalidId {
        id: shown(id),
        reason,
    };
    let Some(first) = id.chars().next() else {
        return Err(bad("empty"));
    };
    if id.len() > 128 {
        return Err(bad("longer than 128 characters"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
    {
        return Err(bad("characters outside [A-Za-z0-9_.+-]"));
    }
    Ok(())
}

/// Checks that `path` is absolute and lexically canonical: starts with `/`, no empty, `.` or
/// `..` component, no trailing `/` (except `/` itself), no NUL, at most 4096 bytes.
pub fn check_canonical(field: &str, path: &str) -> Result<(), SpecError> {
    let bad = |reason| SpecError::NotCanonical {
        field: field.to_owned(),
        path: shown(path),
        reason,
    };
    if path.contains('\0') {
        return Err(SpecError::NulByte {
            field: field.to_owned(),
        });
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("not absolute"));
    };
    if path.len() > MAX_PATH {
        return Err(bad("longer than 4096 bytes"));
    }
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        match component {
            "" => return Err(bad("empty component (`//` or trailing `/`)")),
            "." | ".." => return Err(bad("`.` or `..` component")),
            _ => {}
        }
    }
    Ok(())
}

fn path_str<'a>(field: &str, path: &'a Path) -> Result<&'a str, SpecError> {
    path.to_str().ok_or_else(|| SpecError::NotUtf8 {
        field: field.to_owned(),
    })
}

fn no_nul(field: impl FnOnce() -> String, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        Err(SpecError::NulByte { field: field() })
    } else {
        Ok(())
    }
}

fn check_hostname(hostname: &str) -> Result<(), SpecError> {
    if hostname.len() > 64 {
        return Err(SpecError::InvalidHostname("longer than 64 bytes"));
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(SpecError::InvalidHostname(
            "characters outside [A-Za-z0-9.-]",
        ));
    }
    Ok(())
}

fn normalize_set(set: &'static str, names: &[String]) -> Result<Vec<String>, SpecError> {
    let mut numbers = BTreeSet::new();
    for name in names {
        let number = capability_number(name).ok_or_else(|| SpecError::UnknownCapability {
            set,
            name: shown(name),
        })?;
        numbers.insert(number);
    }
    Ok(numbers
        .into_iter()
        .filter_map(|n| {
            usize::try_from(n)
                .ok()
                .and_then(|n| KNOWN_CAPABILITIES.get(n))
        })
        .map(|s| (*s).to_owned())
        .collect())
}

fn all_capabilities() -> Vec<String> {
    KNOWN_CAPABILITIES.iter().map(|s| (*s).to_owned()).collect()
}

/// Validates the capability sets and returns them sorted by number and deduplicated.
pub fn normalize_capabilities(caps: &Capabilities) -> Result<Capabilities, SpecError> {
    Ok(Capabilities {
        bounding: normalize_set("bounding", &caps.bounding)?,
        effective: normalize_set("effective", &caps.effective)?,
        inheritable: normalize_set("inheritable", &caps.inheritable)?,
        permitted: normalize_set("permitted", &caps.permitted)?,
        ambient: normalize_set("ambient", &caps.ambient)?,
    })
}

/// Builds the [`Process`] of a [`ProcessConfig`] (used for the init process and as the
/// `process.json` of `runc exec`): validated, capability sets normalised, no terminal,
/// `RLIMIT_NOFILE` = [`NOFILE_LIMIT`].
pub fn build_process(config: &ProcessConfig) -> Result<Process, SpecError> {
    if config.args.is_empty() {
        return Err(SpecError::EmptyArgs);
    }
    for (i, arg) in config.args.iter().enumerate() {
        no_nul(|| format!("args[{i}]"), arg)?;
    }
    for (index, entry) in config.env.iter().enumerate() {
        let bad = |reason| SpecError::InvalidEnv { index, reason };
        if entry.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        match entry.split_once('=') {
            None => return Err(bad("no `=`")),
            Some(("", _)) => return Err(bad("empty name")),
            Some(_) => {}
        }
    }
    check_canonical("cwd", &config.cwd)?;
    if let Some(umask) = config.umask {
        if umask & !0o777 != 0 {
            return Err(SpecError::InvalidUmask(umask));
        }
    }
    Ok(Process {
        terminal: false,
        user: User {
            uid: config.uid,
            gid: config.gid,
            umask: config.umask,
            additional_gids: config.additional_gids.clone(),
        },
        args: config.args.clone(),
        env: config.env.clone(),
        cwd: config.cwd.clone(),
        capabilities: normalize_capabilities(&config.capabilities)?,
        rlimits: vec![Rlimit {
            kind: "RLIMIT_NOFILE".to_owned(),
            hard: NOFILE_LIMIT,
            soft: NOFILE_LIMIT,
        }],
        no_new_privileges: config.no_new_privileges,
    })
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.to_owned(),
        kind: kind.to_owned(),
        source: source.to_owned(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
    }
}

/// runc's default mounts; a privileged container gets `/sys` and the cgroup tree read-write.
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
    ]
}

fn extra_mount(index: usize, m: &MountConfig) -> Result<Mount, SpecError> {
    let bad = |reason| SpecError::InvalidMount { index, reason };
    check_canonical(&format!("mounts[{index}].destination"), &m.destination)?;
    if m.destination == "/" {
        return Err(bad("destination must not be `/`"));
    }
    if m.kind.is_empty()
        || !m
            .kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(bad("type must be non-empty [A-Za-z0-9_.-]"));
    }
    for (i, option) in m.options.iter().enumerate() {
        no_nul(|| format!("mounts[{index}].options[{i}]"), option)?;
        if option.is_empty() {
            return Err(bad("empty option"));
        }
    }
    let bind_option = m.options.iter().any(|o| o == "bind" || o == "rbind");
    if m.kind == "bind" && !bind_option {
        // runc would pass "bind" to mount(2) as a filesystem type and fail with ENODEV.
        return Err(bad("type bind needs a `bind` or `rbind` option"));
    }
    if bind_option {
        check_canonical(&format!("mounts[{index}].source"), &m.source)?;
    } else {
        no_nul(|| format!("mounts[{index}].source"), &m.source)?;
        if m.source.is_empty() {
            return Err(bad("empty source"));
        }
    }
    Ok(Mount {
        destination: m.destination.clone(),
        kind: m.kind.clone(),
        source: m.source.clone(),
        options: m.options.clone(),
    })
}

/// Builds the runtime spec of a container from an allowed configuration.
///
/// Pure and deterministic: the same configuration gives an equal [`Spec`] and the same
/// [`spec_json`] bytes. See the crate documentation for what the spec contains.
pub fn build_spec(config: &ContainerConfig) -> Result<Spec, SpecError> {
    validate_id(&config.id)?;
    let rootfs = path_str("rootfs", &config.rootfs)?;
    check_canonical("rootfs", rootfs)?;
    if rootfs == "/" {
        return Err(SpecError::NotCanonical {
            field: "rootfs".to_owned(),
            path: "/".to_owned(),
            reason: "the agent's own root cannot be a container rootfs",
        });
    }
    check_hostname(&config.hostname)?;
    let mut process = build_process(&config.process)?;
    if config.privileged {
        // The given names were validated above; their union with every known name is every
        // known name.
        let caps = &mut process.capabilities;
        caps.bounding = all_capabilities();
        caps.effective = all_capabilities();
        caps.permitted = all_capabilities();
    }
    let mut mounts = default_mounts(config.privileged);
    for (index, m) in config.mounts.iter().enumerate() {
        mounts.push(extra_mount(index, m)?);
    }
    let (masked_paths, readonly_paths) = if config.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            DEFAULT_MASKED_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        )
    };
    Ok(Spec {
        oci_version: OCI_VERSION.to_owned(),
        process,
        root: Root {
            path: rootfs.to_owned(),
            readonly: config.readonly_rootfs,
        },
        hostname: config.hostname.clone(),
        mounts,
        linux: Linux {
            namespaces: [
                NamespaceKind::Pid,
                NamespaceKind::Ipc,
                NamespaceKind::Uts,
                NamespaceKind::Mount,
            ]
            .into_iter()
            .map(|kind| Namespace { kind })
            .collect(),
            resources: Resources {
                devices: vec![DeviceRule {
                    allow: config.privileged,
                    access: "rwm".to_owned(),
                }],
            },
            masked_paths,
            readonly_paths,
        },
    })
}

/// The JSON bytes of `value` (pretty-printed, trailing newline). Deterministic for [`Spec`]
/// and [`Process`].
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(Error::Json)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The `config.json` bytes of `spec`.
pub fn spec_json(spec: &Spec) -> Result<Vec<u8>> {
    to_json(spec)
}

/// Writes `bytes` to `dir/name` atomically: a temporary file in `dir` (mode 0600), fsynced,
/// renamed over `name`.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let target = dir.join(name);
    let what = || format!("write {}", target.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err(what()))?;
    tmp.write_all(bytes).map_err(io_err(what()))?;
    tmp.as_file().sync_all().map_err(io_err(what()))?;
    tmp.persist(&target).map_err(|e| io_err(what())(e.error))?;
    if let Ok(d) = fs::File::open(dir) {
        // Best effort: make the rename durable.
        let _ = d.sync_all();
    }
    Ok(target)
}

/// Writes `spec` as `dir/config.json` atomically; returns the path written.
///
/// `dir` is the bundle directory given to [`crate::Runc::create`].
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<PathBuf> {
    write_atomic(dir, "config.json", &spec_json(spec)?)
}
