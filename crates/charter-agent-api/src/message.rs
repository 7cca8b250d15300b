//! Requests, replies and their payloads.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// One request from the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFrame {
    pub version: u32,
    /// Chosen by the host; echoed in the response.
    pub id: u64,
    pub request: Request,
}

impl RequestFrame {
    /// A frame of the current protocol version.
    #[must_use]
    pub fn new(id: u64, request: Request) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            id,
            request,
        }
    }
}

/// The agent's answer to the request with the same `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFrame {
    pub version: u32,
    /// The request's id (0 when the request was too malformed to have one).
    pub id: u64,
    pub outcome: Outcome,
}

impl ResponseFrame {
    /// A frame of the current protocol version.
    #[must_use]
    pub fn new(id: u64, outcome: Outcome) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            id,
            outcome,
        }
    }
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Done.
    Ok { reply: Reply },
    /// The execution policy denied the request (nothing happened).
    Denied(Denial),
    /// The request was refused or failed for a reason outside the policy.
    Error(AgentError),
}

/// A policy denial as the host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// The enforcement point that denied.
    pub rule: String,
    /// One line naming the nearest candidate and the first field that differs.
    pub explanation: String,
    /// ACI's decision object (`{"decision":"deny","input":…,"reason":…}`), at most 3 KiB,
    /// environment values redacted.
    pub decision: serde_json::Value,
}

/// A refusal or failure outside the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The class of an [`AgentError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame could not be decoded (malformed, unknown field, wrong version, too large).
    BadRequest,
    /// No policy is set yet: the agent is closed.
    Closed,
    /// The policy cannot be set: already set, or its digest is not the attested HOST_DATA.
    PolicyRejected,
    /// A request that no enforcement point covers, refused by the agent's own checks
    /// (unknown container or process, non-canonical path, stdio not allowed, ...).
    Refused,
    /// A layer image does not match its policy-approved root hash.
    Integrity,
    /// The allowed action failed in the guest (mount, runtime, ...). State was rolled back.
    Failed,
    /// The TEE could not produce a report.
    Tee,
}

/// Host requests. Operations named after an enforcement point are checked by that point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The agent's state; allowed at any time.
    Status {},
    /// Installs the execution policy (once). The agent hashes the exact bytes and compares the
    /// digest with HOST_DATA from its own attestation report.
    SetPolicy {
        policy: String,
    },
    /// An attestation report binding `report_data` (128 hex digits), with its certificates.
    Attest {
        report_data: String,
    },
    /// Verifies the layer image at `source` against `device_hash` (the dm-verity root hash the
    /// policy lists) and mounts it read-only at `target`.
    MountDevice {
        source: String,
        target: String,
        device_hash: String,
    },
    UnmountDevice {
        target: String,
    },
    /// Guest-private writable scratch at `target`.
    ScratchMount {
        target: String,
    },
    ScratchUnmount {
        target: String,
    },
    /// Decrypts the sealed file `source` (a plain file name in the host directory) as the
    /// policy's sealed volume `name`, with the key the policy's broker releases to this
    /// group, onto a guest-private read-only tmpfs at `sandbox:///tmp/atlas/sealed/<name>`.
    MountSealed {
        name: String,
        source: String,
    },
    /// A container root filesystem at `target` from mounted layers (top first).
    MountOverlay {
        container_id: String,
        layer_paths: Vec<String>,
        target: String,
    },
    UnmountOverlay {
        target: String,
    },
    CreateContainer(CreateContainer),
    /// Starts a created container's init process.
    StartContainer {
        container_id: String,
    },
    ExecInContainer(ExecInContainer),
    /// Runs a process in the utility VM itself (outside any container).
    ExecExternal(ExecExternal),
    /// Sends `signal` to a process (`process_id` absent: the container's init).
    SignalContainerProcess {
        container_id: String,
        #[serde(default)]
        process_id: Option<u32>,
        signal: i32,
    },
    /// Blocks until the process exits.
    WaitProcess {
        container_id: String,
        #[serde(default)]
        process_id: Option<u32>,
    },
    /// Stops a container (SIGTERM, or SIGKILL when `force`) and removes it.
    ShutdownContainer {
        container_id: String,
        #[serde(default)]
        force: bool,
    },
    /// Up to `max_bytes` of a process's stdout or stderr; blocks until data or end of stream.
    ReadStdio {
        container_id: String,
        #[serde(default)]
        process_id: Option<u32>,
        stream: StdioStream,
        max_bytes: u32,
    },
    /// Writes base64 `data` to a process's stdin, then closes it if `close`.
    WriteStdin {
        container_id: String,
        #[serde(default)]
        process_id: Option<u32>,
        data: String,
        #[serde(default)]
        close: bool,
    },
    GetProperties {},
    DumpStacks {},
    /// The agent's own log lines (up to `max_lines`, oldest first).
    RuntimeLogging {
        max_lines: u32,
    },
}

impl Request {
    /// The operation name as it appears on the wire.
    #[must_use]
    pub fn op(&self) -> &'static str {
        match self {
            Self::Status {} => "status",
            Self::SetPolicy { .. } => "set_policy",
            Self::Attest { .. } => "attest",
            Self::MountDevice { .. } => "mount_device",
            Self::UnmountDevice { .. } => "unmount_device",
            Self::ScratchMount { .. } => "scratch_mount",
            Self::ScratchUnmount { .. } => "scratch_unmount",
            Self::MountSealed { .. } => "mount_sealed",
            Self::MountOverlay { .. } => "mount_overlay",
            Self::UnmountOverlay { .. } => "unmount_overlay",
            Self::CreateContainer(_) => "create_container",
            Self::StartContainer { .. } => "start_container",
            Self::ExecInContainer(_) => "exec_in_container",
            Self::ExecExternal(_) => "exec_external",
            Self::SignalContainerProcess { .. } => "signal_container_process",
            Self::WaitProcess { .. } => "wait_process",
            Self::ShutdownContainer { .. } => "shutdown_container",
            Self::ReadStdio { .. } => "read_stdio",
            Self::WriteStdin { .. } => "write_stdin",
            Self::GetProperties {} => "get_properties",
            Self::DumpStacks {} => "dump_stacks",
            Self::RuntimeLogging { .. } => "runtime_logging",
        }
    }
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioStream {
    Stdout,
    Stderr,
}

/// A mount the container asks for (an OCI spec mount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// The user a process runs as, the way an OCI image or a pod writes it; the agent resolves
/// names and ids from the container's own `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// `name`, `uid`, `name:group` or `uid:gid`; empty = root.
    #[serde(default)]
    pub user: String,
    /// Supplementary group ids.
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Octal umask such as `0022`; empty = the default.
    #[serde(default)]
    pub umask: String,
}

/// Capability sets (names like `CAP_CHOWN`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub ambient: Vec<String>,
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
}

/// `create_container`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    pub container_id: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: String,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub user: UserSpec,
    /// Absent: the default set the policy expects.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// SHA-256 (hex) of the seccomp profile; empty for none.
    #[serde(default)]
    pub seccomp_profile_sha256: String,
    /// Whether the host wants a stdin pipe.
    #[serde(default)]
    pub stdin: bool,
}

/// `exec_in_container`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecInContainer {
    pub container_id: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: String,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub user: UserSpec,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub stdin: bool,
}

/// `exec_external`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecExternal {
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: String,
}

/// Successful results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Nothing to report.
    Done {},
    Status(AgentStatus),
    /// The TEE's evidence (`charter_attest::Evidence` as JSON).
    Evidence {
        evidence: serde_json::Value,
    },
    /// A process was started (`process_id` 0 for a container's init).
    Process {
        process_id: u32,
        /// Whether the host may read this process's stdio.
        stdio_access: bool,
    },
    /// A process exited: `code`, or the `signal` that killed it.
    Exit {
        #[serde(default)]
        code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
    },
    /// Stdio bytes (base64); `eof` when the stream has ended and `data` is empty.
    Stdio {
        data: String,
        eof: bool,
    },
    Properties {
        properties: serde_json::Value,
    },
    Stacks {
        stacks: String,
    },
    Logs {
        lines: Vec<String>,
    },
}

/// `status` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    /// `closed` until a policy is accepted, then `enforcing`.
    pub state: String,
    /// SHA-256 of the accepted policy (hex), once set.
    #[serde(default)]
    pub policy_digest: Option<String>,
    /// The TEE provider the agent attests with.
    pub tee: String,
    /// Running or created containers.
    #[serde(default)]
    pub containers: Vec<String>,
}
