//! Typed model of a policy document's data (`package policy`), the same shape as ACI's, and a
//! deterministic renderer to Rego for the generator.

use serde::{Deserialize, Serialize};

use crate::request::CapabilitySets;
use crate::ENFORCEMENT_POINTS;

/// API version that documents rendered by [`PolicyDocument::to_rego`] declare by default.
pub const API_VERSION: &str = "0.10.0";
/// Version of charter's embedded framework.
pub const FRAMEWORK_VERSION: &str = "0.1.0";

/// A whole policy document: versions, containers, external processes, fragment imports and the
/// group-wide switches. Enforcement-point bindings are implied (every rendered document binds
/// every point to `data.framework`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyDocument {
    pub api_version: String,
    pub framework_version: String,
    pub fragments: Vec<FragmentImport>,
    pub containers: Vec<Container>,
    pub external_processes: Vec<ExternalProcess>,
    pub allow_properties_access: bool,
    pub allow_dump_stacks: bool,
    pub allow_runtime_logging: bool,
    pub allow_environment_variable_dropping: bool,
    pub allow_unencrypted_scratch: bool,
    pub allow_capability_dropping: bool,
    /// The key broker the agent may fetch keys from (charter's extension; absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_broker: Option<KeyBroker>,
    /// Sealed data volumes the agent may decrypt for the group (charter's extension).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sealed_volumes: Vec<SealedVolume>,
}

/// The key broker named by the policy: since the policy is attested, neither the URL nor the
/// certificate authority the agent trusts for it can be changed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBroker {
    /// `https://host[:port]` of a KBS protocol 0.4.0 broker.
    pub url: String,
    /// PEM certificates the agent trusts for the broker's TLS (only these).
    pub ca_pem: String,
    /// Serve the workload key-release endpoint (ACI SKR API) on 127.0.0.1:8080 in the group.
    #[serde(default)]
    pub workload_endpoint: bool,
}

/// A sealed volume: `name` (the pod volume) is decrypted with the broker resource `resource`
/// (`repository/type/tag`, the data key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedVolume {
    pub name: String,
    pub resource: String,
}

impl Default for PolicyDocument {
    fn default() -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            framework_version: FRAMEWORK_VERSION.to_owned(),
            fragments: Vec::new(),
            containers: Vec::new(),
            external_processes: Vec::new(),
            allow_properties_access: false,
            allow_dump_stacks: false,
            allow_runtime_logging: false,
            allow_environment_variable_dropping: false,
            allow_unencrypted_scratch: false,
            allow_capability_dropping: false,
            key_broker: None,
            sealed_volumes: Vec::new(),
        }
    }
}

/// One allowed container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    /// Informational (image reference); not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Informational (container name); used in explanations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// dm-verity root hashes (hex), base layer first.
    pub layers: Vec<String>,
    /// Exact argv.
    pub command: Vec<String>,
    pub env_rules: Vec<EnvRule>,
    pub working_dir: String,
    pub mounts: Vec<MountConstraint>,
    pub exec_processes: Vec<ExecProcess>,
    /// Signals the init process may receive.
    pub signals: Vec<i64>,
    pub allow_elevated: bool,
    pub allow_stdio_access: bool,
    pub no_new_privileges: bool,
    /// `None`: any user.
    pub user: Option<UserRule>,
    /// `None`: the default (or, when elevated and privileged, the privileged) sets.
    pub capabilities: Option<CapabilitySets>,
    /// SHA-256 (hex) of the JSON OCI `linux.seccomp`, "" for none.
    pub seccomp_profile_sha256: String,
}

impl Default for Container {
    fn default() -> Self {
        Self {
            id: None,
            name: None,
            layers: Vec::new(),
            command: Vec::new(),
            env_rules: Vec::new(),
            working_dir: "/".to_owned(),
            mounts: Vec::new(),
            exec_processes: Vec::new(),
            signals: Vec::new(),
            allow_elevated: false,
            allow_stdio_access: false,
            no_new_privileges: false,
            user: None,
            capabilities: None,
            seccomp_profile_sha256: String::new(),
        }
    }
}

/// Matching strategy of an environment rule part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvStrategy {
    /// Exact equality.
    String,
    /// RE2 regex, always matched as `^(?:pattern)$`.
    Re2,
}

/// An environment rule: on the whole `NAME=value`, or on the name and value parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvRule {
    Whole {
        pattern: String,
        strategy: EnvStrategy,
        #[serde(default)]
        required: bool,
    },
    Split {
        name: String,
        #[serde(default = "string_strategy")]
        name_strategy: EnvStrategy,
        value: String,
        #[serde(default = "string_strategy")]
        value_strategy: EnvStrategy,
        #[serde(default)]
        required: bool,
    },
}

fn string_strategy() -> EnvStrategy {
    EnvStrategy::String
}

impl EnvRule {
    /// Exact `NAME=value` rule.
    #[must_use]
    pub fn string(pattern: &str, required: bool) -> Self {
        Self::Whole {
            pattern: pattern.to_owned(),
            strategy: EnvStrategy::String,
            required,
        }
    }
    /// RE2 rule on the whole `NAME=value`.
    #[must_use]
    pub fn re2(pattern: &str, required: bool) -> Self {
        Self::Whole {
            pattern: pattern.to_owned(),
            strategy: EnvStrategy::Re2,
            required,
        }
    }
    pub(crate) fn regexes(&self) -> Vec<&str> {
        match self {
            Self::Whole {
                pattern,
                strategy: EnvStrategy::Re2,
                ..
            } => vec![pattern.as_str()],
            Self::Whole { .. } => Vec::new(),
            Self::Split {
                name,
                name_strategy,
                value,
                value_strategy,
                ..
            } => {
                let mut out = Vec::new();
                if *name_strategy == EnvStrategy::Re2 {
                    out.push(name.as_str());
                }
                if *value_strategy == EnvStrategy::Re2 {
                    out.push(value.as_str());
                }
                out
            }
        }
    }
}

/// A mount constraint: `source` is literal, or `sandbox://<re2>`, `hugepages://<re2>`,
/// `plan9://`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountConstraint {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub options: Vec<String>,
}

/// An allowed `exec` inside a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProcess {
    pub command: Vec<String>,
    #[serde(default)]
    pub signals: Vec<i64>,
}

/// A process allowed to run in the utility VM outside every container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalProcess {
    pub command: Vec<String>,
    #[serde(default)]
    pub env_rules: Vec<EnvRule>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub allow_stdio_access: bool,
}

/// User rule: `{user_idname, group_idnames, umask}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRule {
    pub user_idname: IdNameRule,
    #[serde(default)]
    pub group_idnames: Vec<IdNameRule>,
    #[serde(default)]
    pub umask: String,
}

/// How a user or group is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdNameStrategy {
    Any,
    Id,
    Name,
    Re2,
}

/// One user or group matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdNameRule {
    #[serde(default)]
    pub pattern: String,
    pub strategy: IdNameStrategy,
}

/// An acceptable fragment (not loaded by charter yet; kept for documents that list them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentImport {
    pub issuer: String,
    pub feed: String,
    pub minimum_svn: String,
    #[serde(default)]
    pub includes: Vec<String>,
}

impl PolicyDocument {
    /// Renders the document as a `package policy` Rego module. Deterministic: the same document
    /// always gives the same bytes (and so the same digest).
    #[must_use]
    pub fn to_rego(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("package policy\n\n");
        push_binding(&mut out, "api_version", &self.api_version);
        push_binding(&mut out, "framework_version", &self.framework_version);
        out.push('\n');
        push_binding(&mut out, "fragments", &self.fragments);
        push_binding(&mut out, "containers", &self.containers);
        push_binding(&mut out, "external_processes", &self.external_processes);
        out.push('\n');
        push_binding(
            &mut out,
            "allow_properties_access",
            &self.allow_properties_access,
        );
        push_binding(&mut out, "allow_dump_stacks", &self.allow_dump_stacks);
        push_binding(
            &mut out,
            "allow_runtime_logging",
            &self.allow_runtime_logging,
        );
        push_binding(
            &mut out,
            "allow_environment_variable_dropping",
            &self.allow_environment_variable_dropping,
        );
        push_binding(
            &mut out,
            "allow_unencrypted_scratch",
            &self.allow_unencrypted_scratch,
        );
        push_binding(
            &mut out,
            "allow_capability_dropping",
            &self.allow_capability_dropping,
        );
        // charter's extensions are bound only when used, so documents without them render
        // exactly as before.
        if let Some(kb) = &self.key_broker {
            push_binding(&mut out, "key_broker", kb);
        }
        if !self.sealed_volumes.is_empty() {
            push_binding(&mut out, "sealed_volumes", &self.sealed_volumes);
        }
        out.push('\n');
        for point in ENFORCEMENT_POINTS {
            out.push_str(point);
            out.push_str(" := data.framework.");
            out.push_str(point);
            out.push('\n');
        }
        out.push_str("reason := data.framework.reason\n");
        out
    }
}

fn push_binding<T: Serialize>(out: &mut String, name: &str, value: &T) {
    // Serialising plain data (strings, bools, vectors, structs with string keys) cannot fail;
    // fall back to `null` rather than panic if it ever did.
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    out.push_str(name);
    out.push_str(" := ");
    out.push_str(&text);
    out.push('\n');
}
