//! charter execution policies: ACI-compatible policy documents, charter's own Rego framework,
//! and the stateful enforcer that checks every host request.
//!
//! A policy is a Rego module `package policy` (ACI api 0.10.0 and later): versions, the
//! `containers`, `external_processes` and `fragments` data, group flags, and one binding per
//! enforcement point, normally `mount_device := data.framework.mount_device`. The framework
//! (`package framework`) and the API table (`package api`) are embedded from `rego/`.
//!
//! ```
//! use charter_policy::{Enforcer, PolicyDocument, Request};
//! let doc = PolicyDocument::default();
//! let mut enforcer = Enforcer::new(doc.to_rego().as_bytes())?;
//! let denied = enforcer
//!     .check(&Request::GetProperties(Default::default()))
//!     .expect_err("properties access is off by default");
//! assert!(denied.explanation().contains("properties access not allowed"));
//! # Ok::<(), charter_policy::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod deny;
mod enforcer;
mod fast;
mod load;
mod metadata;
pub mod model;
pub mod request;

pub use deny::{Denied, Reason};
pub use enforcer::{Allowed, Enforcer, MatcherStats, PolicySummary};
pub use model::PolicyDocument;
pub use request::Request;

/// The embedded API table (`package api`).
pub const API_REGO: &str = include_str!("../rego/api.rego");
/// The framework's default (unprivileged) capability set, `default_capability_list` in
/// `rego/framework_common.rego`; a test keeps the two equal.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The framework's privileged capability set (`privileged_capability_list`), granted to
/// privileged containers that allow elevation; a test keeps the two equal.
pub const PRIVILEGED_CAPABILITIES: [&str; 41] = [
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// The embedded framework (`package framework`), one module per enforcement-point family.
pub const FRAMEWORK_REGO: [(&str, &str); 3] = [
    (
        "framework_common.rego",
        include_str!("../rego/framework_common.rego"),
    ),
    (
        "framework_storage.rego",
        include_str!("../rego/framework_storage.rego"),
    ),
    (
        "framework_containers.rego",
        include_str!("../rego/framework_containers.rego"),
    ),
];

/// Every Linux enforcement point, in API order.
pub const ENFORCEMENT_POINTS: [&str; 18] = [
    "mount_device",
    "unmount_device",
    "mount_overlay",
    "unmount_overlay",
    "create_container",
    "exec_in_container",
    "exec_external",
    "shutdown_container",
    "signal_container_process",
    "plan9_mount",
    "plan9_unmount",
    "get_properties",
    "dump_stacks",
    "runtime_logging",
    "load_fragment",
    "scratch_mount",
    "scratch_unmount",
    "mount_sealed",
];

/// Limits on untrusted policy and request bytes and on evaluation. Every limit exceeded during a
/// check is a denial.
pub mod limits {
    use std::time::Duration;

    /// Largest accepted policy (bytes). ACI policies travel in an ARM template (4 MB limit); the
    /// largest real policies seen are a few hundred KiB.
    pub const MAX_POLICY_BYTES: usize = 4 * 1024 * 1024;
    /// Longest policy line (bytes). regorus's default of 1024 rejects real policies (Kata raised
    /// it to 64 KiB for a 1.3 KB NVIDIA env value).
    pub const MAX_POLICY_LINE_BYTES: u32 = 64 * 1024;
    /// Most policy lines.
    pub const MAX_POLICY_LINES: usize = 200_000;
    /// Largest serialized request `input` (bytes). A create request with a few hundred env vars
    /// and mounts is under 64 KiB; 256 KiB leaves room and bounds evaluation memory.
    pub const MAX_INPUT_BYTES: usize = 256 * 1024;
    /// Wall-clock budget of one evaluation. Decisions take well under 10 ms; a policy that needs
    /// longer is broken or hostile.
    pub const EVAL_TIME_LIMIT: Duration = Duration::from_millis(250);
    /// Most metadata entries over all maps. Every entry comes from an allowed request, so this
    /// bounds the state (and thus evaluation memory) a host can build up.
    pub const MAX_METADATA_ENTRIES: usize = 65_536;
    /// Largest serialized metadata value of one op (bytes).
    pub const MAX_METADATA_VALUE_BYTES: usize = 64 * 1024;
    /// ACI's limit on the deny decision sent back to the host (bytes of JSON).
    pub const MAX_DENIAL_BYTES: usize = 3 * 1024;
}

/// Errors of this crate. Request denials are not errors: see [`Denied`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("policy is {size} bytes, more than the limit of {limit}")]
    PolicyTooLarge { size: usize, limit: usize },
    #[error("policy is not utf-8 text")]
    PolicyNotUtf8,
    #[error("policy does not parse as rego: {0}")]
    PolicyParse(String),
    #[error("policy module must be `package policy`, found {0}")]
    PolicyPackage(String),
    #[error("policy has no api_version (or api_svn)")]
    MissingApiVersion,
    #[error("policy api_version {0:?} is not a version like 0.10.0")]
    BadApiVersion(String),
    #[error("policy data {field} is invalid: {message}")]
    PolicyData { field: String, message: String },
    #[error("policy env rule regex {pattern:?} does not compile: {message}")]
    BadRegex { pattern: String, message: String },
    #[error("embedded framework failed to load: {0}")]
    Framework(String),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("policy state update failed: {0}")]
    State(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_capabilities_match_the_framework() {
        let common = super::FRAMEWORK_REGO[0].1;
        let start = common.find("default_capability_list := [").unwrap();
        let end = start + common[start..].find(']').unwrap();
        let in_rego: Vec<&str> = common[start..end]
            .split('"')
            .filter(|s| s.starts_with("CAP_"))
            .collect();
        assert_eq!(in_rego, super::DEFAULT_CAPABILITIES);
    }

    #[test]
    fn privileged_capabilities_match_the_framework() {
        let common = super::FRAMEWORK_REGO[0].1;
        let start = common.find("privileged_capability_list := [").unwrap();
        let end = start + common[start..].find(']').unwrap();
        let in_rego: Vec<&str> = common[start..end]
            .split('"')
            .filter(|s| s.starts_with("CAP_"))
            .collect();
        assert_eq!(in_rego, super::PRIVILEGED_CAPABILITIES);
    }
}
