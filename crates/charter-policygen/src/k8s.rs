//! Kubernetes YAML: finding pod templates in (multi-document) workload files, checking every
//! field of a pod spec against what the generator understands, and typed views of the parts it
//! reads.
//!
//! The check runs on the untyped YAML before the typed decode, so an unsupported field is named
//! by its full path (`spec.containers[0].volumeMounts[1].subPathExpr is not supported`). Fields
//! are in three classes: read (they shape the policy), ignored (scheduling and host-side knobs
//! that change nothing the guest checks), and unsupported (everything else, including unknown
//! names). Ignoring an unsupported field (`ignore_unsupported`) never widens the policy: the
//! request it would have explained is simply denied at run time.

use serde::Deserialize;
use yaml_serde::Value;

use crate::Error;

/// Largest pod YAML accepted (bytes).
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;

/// Workload kinds whose pod template is read, and where the pod spec is.
const KINDS: [(&str, &[&str]); 7] = [
    ("Pod", &["spec"]),
    ("Deployment", &["spec", "template", "spec"]),
    ("StatefulSet", &["spec", "template", "spec"]),
    ("DaemonSet", &["spec", "template", "spec"]),
    ("ReplicaSet", &["spec", "template", "spec"]),
    ("Job", &["spec", "template", "spec"]),
    (
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
];

/// One pod template found in a YAML file.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    /// Index of the YAML document (0-based) in the file.
    pub document: usize,
    /// `kind` of the document.
    pub kind: String,
    /// `metadata.name` of the document ("" when absent).
    pub name: String,
    /// Path of the pod spec inside the document, e.g. `spec.template.spec`.
    pub spec_path: String,
    pub(crate) spec: Value,
}

/// Parses every document of `yaml` and returns the pod templates, in file order. Documents of
/// other kinds (Service, ConfigMap, ...) are skipped.
pub fn pod_templates(yaml: &str) -> Result<Vec<PodTemplate>, Error> {
    documents(yaml)?
        .into_iter()
        .enumerate()
        .filter_map(|(i, doc)| template_of(i, &doc).transpose())
        .collect()
}

pub(crate) fn documents(yaml: &str) -> Result<Vec<Value>, Error> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(Error::YamlTooLarge {
            size: yaml.len(),
            limit: MAX_YAML_BYTES,
        });
    }
    let mut out = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| Error::Yaml {
            document: i,
            message: e.to_string(),
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

fn template_of(index: usize, doc: &Value) -> Result<Option<PodTemplate>, Error> {
    let Some(kind) = doc.get("kind").and_then(Value::as_str) else {
        return Err(Error::Yaml {
            document: index,
            message: "document has no kind".into(),
        });
    };
    let Some((_, path)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        return Ok(None);
    };
    let mut spec = doc;
    for part in *path {
        spec = spec.get(*part).ok_or_else(|| Error::Yaml {
            document: index,
            message: format!("{kind} has no {}", path.join(".")),
        })?;
    }
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(Some(PodTemplate {
        document: index,
        kind: kind.to_owned(),
        name,
        spec_path: path.join("."),
        spec: spec.clone(),
    }))
}

// ------------------------------------------------------------------------------------------
// Field check.

#[derive(Clone, Copy)]
enum Rule {
    /// Read by the generator (type checked by the typed decode).
    Use,
    /// Known and irrelevant to what the guest checks.
    Ignore,
    /// A nested object.
    Obj(&'static [(&'static str, Rule)]),
    /// A list of objects.
    List(&'static [(&'static str, Rule)]),
    /// Supported only when `false` (or absent).
    FalseOnly,
    /// A string that must be one of these values.
    OneOf(&'static [&'static str]),
}

use Rule::{FalseOnly, Ignore, List, Obj, OneOf, Use};

const SECCOMP: &[(&str, Rule)] = &[("type", Use), ("localhostProfile", Use)];
const CAPS: &[(&str, Rule)] = &[("add", Use), ("drop", Use)];
const EXEC: &[(&str, Rule)] = &[("command", Use)];
const PROBE: &[(&str, Rule)] = &[
    ("exec", Obj(EXEC)),
    ("httpGet", Ignore),
    ("tcpSocket", Ignore),
    ("grpc", Ignore),
    ("initialDelaySeconds", Ignore),
    ("timeoutSeconds", Ignore),
    ("periodSeconds", Ignore),
    ("successThreshold", Ignore),
    ("failureThreshold", Ignore),
    ("terminationGracePeriodSeconds", Ignore),
];
const HANDLER: &[(&str, Rule)] = &[
    ("exec", Obj(EXEC)),
    ("httpGet", Ignore),
    ("tcpSocket", Ignore),
    ("sleep", Ignore),
];
const LIFECYCLE: &[(&str, Rule)] = &[
    ("postStart", Obj(HANDLER)),
    ("preStop", Obj(HANDLER)),
    ("stopSignal", OneOf(&["SIGTERM"])),
];
const VALUE_FROM: &[(&str, Rule)] = &[
    ("fieldRef", Ignore),
    ("secretKeyRef", Ignore),
    ("configMapKeyRef", Ignore),
    ("resourceFieldRef", Ignore),
];
const ENV: &[(&str, Rule)] = &[
    ("name", Use),
    ("value", Use),
    ("valueFrom", Obj(VALUE_FROM)),
];
const ENV_FROM_REF: &[(&str, Rule)] = &[("name", Use), ("optional", Use)];
const ENV_FROM: &[(&str, Rule)] = &[
    ("configMapRef", Obj(ENV_FROM_REF)),
    ("secretRef", Obj(ENV_FROM_REF)),
    ("prefix", Use),
];
const VOLUME_MOUNT: &[(&str, Rule)] = &[
    ("name", Use),
    ("mountPath", Use),
    ("readOnly", Use),
    ("subPath", Ignore),
    ("mountPropagation", OneOf(&["None"])),
];
const SECURITY_CONTEXT: &[(&str, Rule)] = &[
    ("privileged", Use),
    ("allowPrivilegeEscalation", Use),
    ("capabilities", Obj(CAPS)),
    ("runAsUser", Use),
    ("runAsGroup", Use),
    ("runAsNonRoot", Use),
    ("seccompProfile", Obj(SECCOMP)),
    ("readOnlyRootFilesystem", Ignore),
    ("procMount", OneOf(&["Default"])),
    ("windowsOptions", Ignore),
];
const CONTAINER: &[(&str, Rule)] = &[
    ("name", Use),
    ("image", Use),
    ("command", Use),
    ("args", Use),
    ("workingDir", Use),
    ("env", List(ENV)),
    ("envFrom", List(ENV_FROM)),
    ("volumeMounts", List(VOLUME_MOUNT)),
    ("securityContext", Obj(SECURITY_CONTEXT)),
    ("livenessProbe", Obj(PROBE)),
    ("readinessProbe", Obj(PROBE)),
    ("startupProbe", Obj(PROBE)),
    ("lifecycle", Obj(LIFECYCLE)),
    ("ports", Ignore),
    ("resources", Ignore),
    ("resizePolicy", Ignore),
    ("imagePullPolicy", Ignore),
    ("terminationMessagePath", Ignore),
    ("terminationMessagePolicy", Ignore),
    ("stdin", Ignore),
    ("stdinOnce", Ignore),
    ("tty", Ignore),
    ("restartPolicy", Ignore),
];
const POD_SECURITY_CONTEXT: &[(&str, Rule)] = &[
    ("runAsUser", Use),
    ("runAsGroup", Use),
    ("runAsNonRoot", Use),
    ("supplementalGroups", Use),
    ("supplementalGroupsPolicy", OneOf(&["Merge", "Strict"])),
    ("fsGroup", Use),
    ("fsGroupChangePolicy", Ignore),
    ("seccompProfile", Obj(SECCOMP)),
    ("windowsOptions", Ignore),
];
const EMPTY_DIR: &[(&str, Rule)] = &[("medium", OneOf(&["", "Memory"])), ("sizeLimit", Ignore)];
const CONFIG_MAP: &[(&str, Rule)] = &[
    ("name", Use),
    ("items", Ignore),
    ("defaultMode", Ignore),
    ("optional", Ignore),
];
const SECRET: &[(&str, Rule)] = &[
    ("secretName", Use),
    ("items", Ignore),
    ("defaultMode", Ignore),
    ("optional", Ignore),
];
const HOST_PATH: &[(&str, Rule)] = &[("path", Use), ("type", Ignore)];
/// Every projected source (configMap, secret, downwardAPI, serviceAccountToken,
/// clusterTrustBundle, ...) ends up as a file in the one read-only directory the guest sees.
const PROJECTED: &[(&str, Rule)] = &[("sources", Ignore), ("defaultMode", Ignore)];
const DOWNWARD_API: &[(&str, Rule)] = &[("items", Ignore), ("defaultMode", Ignore)];
/// charter's sealed data volumes: a CSI volume of the `sealed.charter.dev` driver naming the
/// broker resource that holds its data key.
const CSI: &[(&str, Rule)] = &[
    ("driver", OneOf(&[crate::pod::SEALED_DRIVER])),
    ("readOnly", Use),
    ("volumeAttributes", Obj(SEALED_ATTRIBUTES)),
];
const SEALED_ATTRIBUTES: &[(&str, Rule)] = &[("resource", Use)];
const VOLUME: &[(&str, Rule)] = &[
    ("name", Use),
    ("csi", Obj(CSI)),
    ("emptyDir", Obj(EMPTY_DIR)),
    ("configMap", Obj(CONFIG_MAP)),
    ("secret", Obj(SECRET)),
    ("hostPath", Obj(HOST_PATH)),
    ("projected", Obj(PROJECTED)),
    ("downwardAPI", Obj(DOWNWARD_API)),
];
const POD_SPEC: &[(&str, Rule)] = &[
    ("containers", List(CONTAINER)),
    ("initContainers", List(CONTAINER)),
    ("volumes", List(VOLUME)),
    ("securityContext", Obj(POD_SECURITY_CONTEXT)),
    ("hostNetwork", FalseOnly),
    ("hostPID", FalseOnly),
    ("hostIPC", FalseOnly),
    ("shareProcessNamespace", FalseOnly),
    ("automountServiceAccountToken", Ignore),
    ("serviceAccountName", Ignore),
    ("serviceAccount", Ignore),
    ("nodeName", Ignore),
    ("nodeSelector", Ignore),
    ("affinity", Ignore),
    ("tolerations", Ignore),
    ("topologySpreadConstraints", Ignore),
    ("schedulerName", Ignore),
    ("schedulingGates", Ignore),
    ("priority", Ignore),
    ("priorityClassName", Ignore),
    ("preemptionPolicy", Ignore),
    ("restartPolicy", Ignore),
    ("terminationGracePeriodSeconds", Ignore),
    ("activeDeadlineSeconds", Ignore),
    ("dnsPolicy", Ignore),
    ("dnsConfig", Ignore),
    ("hostAliases", Ignore),
    ("hostname", Ignore),
    ("subdomain", Ignore),
    ("setHostnameAsFQDN", Ignore),
    ("imagePullSecrets", Ignore),
    ("runtimeClassName", Ignore),
    ("enableServiceLinks", Ignore),
    ("readinessGates", Ignore),
    ("overhead", Ignore),
];

/// Every unsupported field of `spec` (paths under `prefix`), in document order.
pub(crate) fn unsupported_fields(spec: &Value, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    check(spec, prefix, Obj(POD_SPEC), &mut out);
    out
}

fn check(value: &Value, path: &str, rule: Rule, out: &mut Vec<String>) {
    match rule {
        Use | Ignore => {}
        FalseOnly => {
            if value.as_bool() == Some(true) {
                out.push(format!("{path}: true"));
            }
        }
        OneOf(allowed) => {
            if let Some(s) = value.as_str() {
                if !allowed.contains(&s) {
                    out.push(format!("{path}: {s}"));
                }
            }
        }
        Obj(fields) => {
            let Some(map) = value.as_mapping() else {
                return; // the typed decode reports the wrong type
            };
            for (key, child) in map {
                let key = key.as_str().unwrap_or("?");
                let child_path = format!("{path}.{key}");
                match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, rule)) => check(child, &child_path, *rule, out),
                    None => out.push(child_path),
                }
            }
        }
        List(fields) => {
            if let Some(items) = value.as_sequence() {
                for (i, item) in items.iter().enumerate() {
                    check(item, &format!("{path}[{i}]"), Obj(fields), out);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Typed views (only what the generator reads).

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PodSpec {
    pub containers: Vec<K8sContainer>,
    pub init_containers: Vec<K8sContainer>,
    pub volumes: Vec<Volume>,
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct K8sContainer {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromSource>,
    pub volume_mounts: Vec<VolumeMount>,
    pub security_context: Option<SecurityContext>,
    pub liveness_probe: Option<Handler>,
    pub readiness_probe: Option<Handler>,
    pub startup_probe: Option<Handler>,
    pub lifecycle: Option<Lifecycle>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct EnvFromSource {
    pub config_map_ref: Option<ObjectRef>,
    pub secret_ref: Option<ObjectRef>,
    pub prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ObjectRef {
    pub name: String,
    pub optional: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Volume {
    pub name: String,
    pub empty_dir: Option<Value>,
    pub config_map: Option<Value>,
    pub secret: Option<Value>,
    pub host_path: Option<HostPath>,
    pub projected: Option<Value>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<Value>,
    pub csi: Option<Csi>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Csi {
    pub driver: String,
    pub volume_attributes: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct HostPath {
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PodSecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub supplemental_groups: Vec<i64>,
    pub supplemental_groups_policy: Option<String>,
    pub fs_group: Option<i64>,
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: String,
    pub localhost_profile: Option<String>,
}

/// A probe or lifecycle handler: only `exec` runs anything inside the container.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Handler {
    pub exec: Option<ExecAction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Lifecycle {
    pub post_start: Option<Handler>,
    pub pre_stop: Option<Handler>,
}

/// Decodes a checked pod spec.
pub(crate) fn decode(template: &PodTemplate) -> Result<PodSpec, Error> {
    yaml_serde::from_value(template.spec.clone()).map_err(|e| Error::Yaml {
        document: template.document,
        message: format!("{}: {e}", template.spec_path),
    })
}

/// The ConfigMaps and Secrets of the YAML file: their names and data keys (never values), so
/// `envFrom` can name the variables it brings in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    /// `("ConfigMap" | "Secret", name)` -> data keys, sorted.
    keys: std::collections::BTreeMap<(String, String), Vec<String>>,
}

impl Objects {
    /// Collects the ConfigMap and Secret documents of `yaml`.
    pub(crate) fn from_yaml(yaml: &str) -> Result<Self, Error> {
        let mut keys = std::collections::BTreeMap::new();
        for doc in documents(yaml)? {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            // kubelet's envFrom reads ConfigMap `data` and Secret `data` (`stringData` is
            // merged into `data` when the Secret is stored).
            let fields: &[&str] = match kind {
                "ConfigMap" => &["data"],
                "Secret" => &["data", "stringData"],
                _ => continue,
            };
            let Some(name) = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let mut names: Vec<String> = fields
                .iter()
                .filter_map(|f| doc.get(*f).and_then(Value::as_mapping))
                .flat_map(|m| m.keys().filter_map(Value::as_str).map(str::to_owned))
                .collect();
            names.sort();
            names.dedup();
            keys.insert((kind.to_owned(), name.to_owned()), names);
        }
        Ok(Self { keys })
    }

    /// The data keys of `kind`/`name`, if the YAML has that object.
    pub(crate) fn keys(&self, kind: &str, name: &str) -> Option<&[String]> {
        self.keys
            .get(&(kind.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
    }
}
