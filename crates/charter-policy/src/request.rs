//! Typed host requests, one variant per enforcement point, with the ACI `input` field names.
//!
//! Decoding is strict (`deny_unknown_fields`): the host is untrusted and an unknown field is more
//! likely an attack or a version mismatch than something safe to ignore.

use serde::{Deserialize, Serialize};

/// A request to one enforcement point. Serialised as `{"rule": "<point>", "input": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "rule",
    content = "input",
    rename_all = "snake_case",
    deny_unknown_fields
)]
#[non_exhaustive]
pub enum Request {
    MountDevice(MountDevice),
    UnmountDevice(Unmount),
    MountOverlay(MountOverlay),
    UnmountOverlay(Unmount),
    CreateContainer(CreateContainer),
    ExecInContainer(ExecInContainer),
    ExecExternal(ExecExternal),
    ShutdownContainer(ContainerRef),
    SignalContainerProcess(SignalContainerProcess),
    Plan9Mount(Plan9Mount),
    Plan9Unmount(Unmount),
    GetProperties(NoInput),
    DumpStacks(NoInput),
    RuntimeLogging(NoInput),
    LoadFragment(LoadFragment),
    ScratchMount(ScratchMount),
    ScratchUnmount(Unmount),
    MountSealed(MountSealed),
}

impl Request {
    /// The enforcement point (rule name) this request is checked by.
    #[must_use]
    pub fn rule(&self) -> &'static str {
        match self {
            Self::MountDevice(_) => "mount_device",
            Self::UnmountDevice(_) => "unmount_device",
            Self::MountOverlay(_) => "mount_overlay",
            Self::UnmountOverlay(_) => "unmount_overlay",
            Self::CreateContainer(_) => "create_container",
            Self::ExecInContainer(_) => "exec_in_container",
            Self::ExecExternal(_) => "exec_external",
            Self::ShutdownContainer(_) => "shutdown_container",
            Self::SignalContainerProcess(_) => "signal_container_process",
            Self::Plan9Mount(_) => "plan9_mount",
            Self::Plan9Unmount(_) => "plan9_unmount",
            Self::GetProperties(_) => "get_properties",
            Self::DumpStacks(_) => "dump_stacks",
            Self::RuntimeLogging(_) => "runtime_logging",
            Self::LoadFragment(_) => "load_fragment",
            Self::ScratchMount(_) => "scratch_mount",
            Self::ScratchUnmount(_) => "scratch_unmount",
            Self::MountSealed(_) => "mount_sealed",
        }
    }

    /// Decodes a request from a rule name and its `input` object (a missing input counts as `{}`).
    ///
    /// # Errors
    /// [`crate::Error::Request`] when the rule is unknown or the input does not have the fields
    /// and types that rule takes.
    pub fn from_rule_input(rule: &str, input: serde_json::Value) -> Result<Self, crate::Error> {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "rule".to_owned(),
            serde_json::Value::String(rule.to_owned()),
        );
        let input = if input.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            input
        };
        obj.insert("input".to_owned(), input);
        serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| crate::Error::Request(format!("{rule}: {e}")))
    }

    /// The `input` object as the framework sees it (ACI names, plus `rule`).
    ///
    /// # Errors
    /// [`crate::Error::Request`] if the request cannot be serialised (it always can).
    pub fn input_json(&self) -> Result<serde_json::Value, crate::Error> {
        let mut whole =
            serde_json::to_value(self).map_err(|e| crate::Error::Request(e.to_string()))?;
        let input = whole
            .as_object_mut()
            .and_then(|o| o.remove("input"))
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let mut input = match input {
            serde_json::Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        input.insert(
            "rule".to_owned(),
            serde_json::Value::String(self.rule().to_owned()),
        );
        Ok(serde_json::Value::Object(input))
    }
}

/// For points without input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountDevice {
    pub target: String,
    #[serde(rename = "deviceHash")]
    pub device_hash: String,
}

/// `unmount_device`, `unmount_overlay`, `plan9_unmount`, `scratch_unmount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unmount {
    #[serde(rename = "unmountTarget")]
    pub unmount_target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountOverlay {
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Mounted device paths, top layer first.
    #[serde(rename = "layerPaths")]
    pub layer_paths: Vec<String>,
    pub target: String,
}

/// One OCI mount of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// A user or group, as resolved by the guest from the container's own `/etc/passwd`/`group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: IdName,
    #[serde(default)]
    pub groups: Vec<IdName>,
    #[serde(default)]
    pub umask: String,
}

/// The five Linux capability sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySets {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "argList")]
    pub arg_list: Vec<String>,
    #[serde(rename = "envList", default)]
    pub env_list: Vec<String>,
    #[serde(rename = "workingDir")]
    pub working_dir: String,
    #[serde(rename = "sandboxDir", default)]
    pub sandbox_dir: String,
    #[serde(rename = "hugePagesDir", default)]
    pub huge_pages_dir: String,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(rename = "noNewPrivileges", default)]
    pub no_new_privileges: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default)]
    pub capabilities: Option<CapabilitySets>,
    #[serde(rename = "seccompProfileSHA256", default)]
    pub seccomp_profile_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecInContainer {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "argList")]
    pub arg_list: Vec<String>,
    #[serde(rename = "envList", default)]
    pub env_list: Vec<String>,
    #[serde(rename = "workingDir")]
    pub working_dir: String,
    #[serde(rename = "noNewPrivileges", default)]
    pub no_new_privileges: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default)]
    pub capabilities: Option<CapabilitySets>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecExternal {
    #[serde(rename = "argList")]
    pub arg_list: Vec<String>,
    #[serde(rename = "envList", default)]
    pub env_list: Vec<String>,
    #[serde(rename = "workingDir")]
    pub working_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRef {
    #[serde(rename = "containerID")]
    pub container_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalContainerProcess {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub signal: i64,
    #[serde(rename = "isInitProcess")]
    pub is_init_process: bool,
    #[serde(rename = "argList", default)]
    pub arg_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan9Mount {
    pub target: String,
    #[serde(rename = "rootPrefix", default = "default_root_prefix")]
    pub root_prefix: String,
    #[serde(rename = "mountPathPrefix", default = "default_mount_path_prefix")]
    pub mount_path_prefix: String,
}

fn default_root_prefix() -> String {
    "/run/gcs/c".to_owned()
}

fn default_mount_path_prefix() -> String {
    "/mounts/m[0-9]+".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadFragment {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub feed: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub fragment_loaded: bool,
    #[serde(default)]
    pub has_header_svn: bool,
    #[serde(default)]
    pub header_svn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchMount {
    pub target: String,
    pub encrypted: bool,
}

/// `mount_sealed`: the sealed volume `name` (one the policy lists under `sealed_volumes`),
/// decrypted by the agent with the key the policy's broker releases, at `target` (the
/// group's `sandbox:///tmp/atlas/sealed/<name>` directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSealed {
    pub name: String,
    pub target: String,
}
