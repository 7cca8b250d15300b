//! Execution policies from Kubernetes pod specs and their images.
//!
//! [`generate`] reads Kubernetes YAML (a Pod, or the pod template of a Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, Job or CronJob; multi-document files), opens every image the pod names
//! through an [`ImageResolver`], and in one pass over each layer that is not cached measures it
//! (dm-verity root hash) and scans it for `/etc/passwd` and `/etc/group`; both results are
//! cached by diff_id, so a warm run opens no layer. It renders one deterministic `policy.rego`
//! per pod template (same inputs, same bytes, same digest = HOST_DATA).
//!
//! Choices, matching what confcom and genpolicy users expect:
//! - **One policy per pod template.** A file with several templates needs an explicit
//!   [`Options::pod_index`]; documents of other kinds (Service, ConfigMap, ...) are skipped.
//! - **Containers**: init containers first, then containers, in pod order. argv follows the
//!   k8s rules (`command` replaces Entrypoint and drops Cmd, `args` alone replace Cmd, `$(VAR)`
//!   expanded as kubelet does); env = image env overridden by pod env, every variable a
//!   *required* rule (literal: exact string; `valueFrom`: `NAME=(?s:.*)` regex), `envFrom`
//!   sources whose ConfigMap/Secret is in the same file: one name-anchored `PREFIXKEY=(?s:.*)`
//!   rule per key (required unless the source is optional); not in the file: a
//!   `PREFIX[A-Za-z0-9_.-]+=(?s:.*)` rule when a prefix is given, else an error (the names would
//!   be unbounded); plus the platform rules of [`Settings`]; working dir: pod, else image,
//!   else `/`; user: uid and
//!   groups resolved through the image's own databases ([`userdb`]); capabilities: add/drop over
//!   the framework default set (privileged: the framework's privileged set, `allow_elevated`);
//!   `allowPrivilegeEscalation: false` → `no_new_privileges`; seccomp as ACI's confcom:
//!   Unconfined/none → "", Localhost → SHA-256 of the profile under [`Options::seccomp_dir`]
//!   normalised to the OCI `linux.seccomp` JSON ([`pod::normalize_seccomp`]); RuntimeDefault →
//!   error (confcom writes "", which denies the container the runtime starts); exec probes and
//!   exec lifecycle hooks → `exec_processes`.
//! - **Volumes**: emptyDir, configMap, secret, projected and downwardAPI → bind mounts from
//!   `sandbox:///tmp/atlas/<kind>/.+` (all but emptyDir always read-only), options
//!   `rbind, rshared, rw|ro`; hostPath refused unless [`Options::allow_host_path`].
//! - **Unsupported fields** are errors naming each field's path; with
//!   [`Options::ignore_unsupported`] they become warnings. Ignoring never widens the policy.
//! - **Debug mode** allows `/bin/sh` and `/bin/bash` in every container and the properties,
//!   stacks and logging switches, and starts the policy with a comment saying so.
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

pub mod k8s;
mod measure;
mod output;
pub mod pod;
mod settings;
pub mod userdb;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use charter_image::{
    Cache, Image, ImageSource, LayerMeasurement, MeasureObserver, Platform, RegistryOptions,
};
use charter_policy::PolicyDocument;

pub use k8s::{pod_templates, PodTemplate};
pub use output::{annotate, digest_hex, write_all_atomically, write_atomically, POLICY_ANNOTATION};
pub use settings::Settings;

/// First line of a policy generated in debug mode.
pub const DEBUG_BANNER: &str =
    "# DEBUG MODE: generated with --debug-mode; shell exec and debug switches are allowed. NOT FOR PRODUCTION.\n";

/// Errors of policy generation; each names the document, field, container or image involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("pod yaml is {size} bytes, over the {limit}-byte limit")]
    YamlTooLarge { size: usize, limit: usize },
    #[error("pod yaml document {document}: {message}")]
    Yaml { document: usize, message: String },
    #[error("no pod template (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) in the yaml")]
    NoPod,
    #[error("the yaml has {count} pod templates ({list}); choose one by index")]
    SeveralPods { count: usize, list: String },
    #[error("pod template index {index} is out of range (the yaml has {count})")]
    PodIndex { index: usize, count: usize },
    #[error("pod template has no containers")]
    NoContainers,
    #[error("{}", unsupported_message(fields))]
    Unsupported { fields: Vec<String> },
    #[error("volume {volume:?}: hostPath {path:?} is refused (allow it explicitly)")]
    HostPath { volume: String, path: String },
    #[error("{container}: {message}")]
    Container { container: String, message: String },
    #[error("{container}: user: {message}")]
    User { container: String, message: String },
    #[error("{container}: seccomp: {message}")]
    Seccomp { container: String, message: String },
    #[error("image mapping {spec:?}: {message}")]
    ImageMapping { spec: String, message: String },
    #[error("image {image}: no local source given (--image) and registry pulls are off")]
    NoImageSource { image: String },
    #[error("image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: Box<charter_image::Error>,
    },
    #[error("image {image}: layer {index}: {message}")]
    Layer {
        image: String,
        index: usize,
        message: String,
    },
    #[error("settings: {0}")]
    Settings(String),
    #[error("sealed volume {volume:?}: {message}")]
    Sealed { volume: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn unsupported_message(fields: &[String]) -> String {
    match fields {
        [one] => format!("{one} is not supported"),
        many => format!("not supported: {}", many.join(", ")),
    }
}

/// Where images come from. Local sources today ([`LocalImages`]); a registry client can
/// implement this trait too (or wrap `LocalImages` as an override map).
pub trait ImageResolver {
    /// Opens the image the pod names as `reference` (exactly as written in `image:`).
    fn open(&self, reference: &str) -> Result<Image, Error>;
}

/// Images mapped to local sources (`REF=oci:DIR[:TAG]`, `REF=docker-archive:FILE`).
#[derive(Debug, Clone, Default)]
pub struct LocalImages {
    sources: BTreeMap<String, ImageSource>,
    platform: Platform,
    /// Where unmapped images are pulled from; `None` refuses them.
    registry: Option<RegistryOptions>,
}

impl LocalImages {
    /// An empty map selecting `platform` from multi-platform indexes.
    #[must_use]
    pub fn new(platform: Platform) -> Self {
        Self {
            sources: BTreeMap::new(),
            platform,
            registry: None,
        }
    }

    /// Pulls images without a mapping from their registries with `options`.
    #[must_use]
    pub fn with_registry(mut self, options: RegistryOptions) -> Self {
        self.registry = Some(options);
        self
    }

    /// Adds one `REF=SOURCE` mapping; SOURCE must name its transport (`oci:` or
    /// `docker-archive:`).
    pub fn add_mapping(&mut self, spec: &str) -> Result<(), Error> {
        let bad = |message: &str| Error::ImageMapping {
            spec: spec.to_owned(),
            message: message.to_owned(),
        };
        let (reference, source) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected REF=oci:DIR[:TAG] or REF=docker-archive:FILE"))?;
        if reference.is_empty() {
            return Err(bad("empty image reference"));
        }
        let rest = source
            .strip_prefix("oci:")
            .or_else(|| source.strip_prefix("docker-archive:"))
            .ok_or_else(|| bad("source must start with oci: or docker-archive:"))?;
        if rest.is_empty() {
            return Err(bad("empty source path"));
        }
        let parsed = ImageSource::parse(source).map_err(|e| bad(&e.to_string()))?;
        if self.sources.insert(reference.to_owned(), parsed).is_some() {
            return Err(bad("image given twice"));
        }
        Ok(())
    }

    /// The mapped references.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }
}

impl ImageResolver for LocalImages {
    fn open(&self, reference: &str) -> Result<Image, Error> {
        let image_error = |source| Error::Image {
            image: reference.to_owned(),
            source: Box::new(source),
        };
        let pulled;
        let source = match (self.sources.get(reference), &self.registry) {
            (Some(mapped), _) => mapped,
            (None, Some(options)) => {
                pulled = ImageSource::registry(reference, options.clone()).map_err(image_error)?;
                &pulled
            }
            (None, None) => {
                return Err(Error::NoImageSource {
                    image: reference.to_owned(),
                })
            }
        };
        source.open(&self.platform).map_err(|source| Error::Image {
            image: reference.to_owned(),
            source: Box::new(source),
        })
    }
}

/// Generation switches.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `allow_stdio_access: false` for every container.
    pub deny_stdio: bool,
    /// Shell exec and debug switches (see the crate docs).
    pub debug_mode: bool,
    /// Allow hostPath volumes.
    pub allow_host_path: bool,
    /// Warn about unsupported fields instead of failing.
    pub ignore_unsupported: bool,
    /// Platform env rules and mounts.
    pub settings: Settings,
    /// Where Localhost seccomp profiles are (kubelet's seccomp root).
    pub seccomp_dir: Option<PathBuf>,
    /// Which pod template of a multi-template file (0-based, in file order).
    pub pod_index: Option<usize>,
    /// The key broker the group may fetch keys from (needed by sealed volumes and the
    /// workload key-release endpoint); attested with the rest of the policy.
    pub key_broker: Option<charter_policy::model::KeyBroker>,
}

/// How layers are measured.
pub struct Measuring<'a> {
    /// The diff_id → root hash cache, if any.
    pub cache: Option<&'a Cache>,
    /// Scratch space. Unused by measurement: a converted layer is hashed as it is produced
    /// and never written.
    pub scratch_dir: &'a Path,
    /// Hashing threads.
    pub threads: NonZeroUsize,
    /// Progress hooks.
    pub observer: &'a dyn Observer,
}

/// Progress hooks of [`generate`]: the layer hooks of [`MeasureObserver`] (called for every
/// layer, cached or not; a layer that is not cached is pulled or read while it is hashed) plus
/// the resolution of each image. Every method has a no-op default.
pub trait Observer: MeasureObserver {
    /// `reference` is being resolved (manifest and config fetched or read).
    fn image_opening(&self, _reference: &str) {}
    /// `reference` resolved to `image` (its `source` pins the digest); its layers follow.
    fn image_opened(&self, _reference: &str, _image: &Image) {}
}

/// An observer that shows nothing.
impl Observer for () {}

impl std::fmt::Debug for Measuring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measuring")
            .field("cache", &self.cache)
            .field("scratch_dir", &self.scratch_dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// One image as measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// The reference as the pod writes it.
    pub reference: String,
    /// Where it was read from.
    pub source: String,
    pub manifest_digest: Option<String>,
    pub config_digest: String,
    /// Layers, base first.
    pub layers: Vec<LayerMeasurement>,
}

/// A generated policy.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The policy data.
    pub document: PolicyDocument,
    /// The exact policy bytes.
    pub rego: String,
    /// SHA-256 of `rego` (lowercase hex): HOST_DATA.
    pub digest: String,
    /// The pod template the policy is for.
    pub template: PodTemplate,
    /// Every image, in first-use order.
    pub images: Vec<ImageSummary>,
    /// Ignored unsupported fields and other notes.
    pub warnings: Vec<String>,
    /// Whether debug mode was on.
    pub debug_mode: bool,
}

impl Generated {
    /// A JSON summary: pod, digest, containers, images and layers.
    #[must_use]
    pub fn summary(&self) -> serde_json::Value {
        let containers: Vec<_> = self
            .document
            .containers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "image": c.id, "layers": c.layers, "command": c.command,
                    "allow_elevated": c.allow_elevated, "exec_processes": c.exec_processes.len(),
                })
            })
            .collect();
        serde_json::json!({
            "pod": {"kind": self.template.kind, "name": self.template.name, "document": self.template.document},
            "digest": self.digest,
            "debug_mode": self.debug_mode,
            "containers": containers,
            "images": self.images,
            "warnings": self.warnings,
        })
    }
}

/// Picks the pod template `options.pod_index` selects (or the only one).
pub fn select_template(yaml: &str, pod_index: Option<usize>) -> Result<PodTemplate, Error> {
    let mut templates = pod_templates(yaml)?;
    let count = templates.len();
    match (pod_index, count) {
        (_, 0) => Err(Error::NoPod),
        (None, 1) => templates.pop().ok_or(Error::NoPod),
        (None, _) => Err(Error::SeveralPods {
            count,
            list: templates
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{i}: {} {:?}", t.kind, t.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        (Some(index), _) => {
            if index >= count {
                return Err(Error::PodIndex { index, count });
            }
            Ok(templates.swap_remove(index))
        }
    }
}

/// Generates the policy for the pod template of `yaml` (see the crate docs for semantics).
pub fn generate(
    yaml: &str,
    images: &dyn ImageResolver,
    options: &Options,
    measuring: &Measuring<'_>,
) -> Result<Generated, Error> {
    let template = select_template(yaml, options.pod_index)?;
    let unsupported = k8s::unsupported_fields(&template.spec, &template.spec_path);
    let mut warnings = Vec::new();
    if !unsupported.is_empty() {
        if !options.ignore_unsupported {
            return Err(Error::Unsupported {
                fields: unsupported,
            });
        }
        warnings.extend(unsupported.into_iter().map(|f| format!("ignored {f}")));
    }
    let spec = k8s::decode(&template)?;
    let objects = k8s::Objects::from_yaml(yaml)?;
    if spec.containers.is_empty() {
        return Err(Error::NoContainers);
    }
    let listed = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{}.initContainers[{i}]", template.spec_path), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{}.containers[{i}]", template.spec_path), c)),
        );

    let mut measured: BTreeMap<String, (Image, Vec<LayerMeasurement>, userdb::UserDb)> =
        BTreeMap::new();
    let mut summaries = Vec::new();
    let mut containers = Vec::new();
    for (field, c) in listed {
        if c.image.is_empty() {
            return Err(Error::Container {
                container: format!("{field} ({})", c.name),
                message: "no image".into(),
            });
        }
        if !measured.contains_key(&c.image) {
            measuring.observer.image_opening(&c.image);
            let image = images.open(&c.image)?;
            measuring.observer.image_opened(&c.image, &image);
            let (layers, users) = measure::measure_image(&image, &c.image, measuring)?;
            summaries.push(ImageSummary {
                reference: c.image.clone(),
                source: image.source.clone(),
                manifest_digest: image.manifest_digest.map(|d| d.to_string()),
                config_digest: image.config_digest.to_string(),
                layers: layers.clone(),
            });
            measured.insert(c.image.clone(), (image, layers, users));
        }
        let Some((image, layers, users)) = measured.get(&c.image) else {
            continue; // inserted just above
        };
        let cfg = image.config.config().as_ref();
        let facts = pod::ImageFacts {
            reference: &c.image,
            root_hashes: layers.iter().map(|l| l.root_hash.clone()).collect(),
            entrypoint: cfg.and_then(|x| x.entrypoint().clone()).unwrap_or_default(),
            cmd: cfg.and_then(|x| x.cmd().clone()).unwrap_or_default(),
            env: cfg.and_then(|x| x.env().clone()).unwrap_or_default(),
            working_dir: cfg
                .and_then(|x| x.working_dir().clone())
                .unwrap_or_default(),
            user: cfg.and_then(|x| x.user().clone()).unwrap_or_default(),
            users,
        };
        if facts.root_hashes.is_empty() {
            return Err(Error::Container {
                container: format!("{field} ({})", c.name),
                message: format!("image {} has no layers", c.image),
            });
        }
        containers.push(pod::container(&spec, c, &field, &facts, options, &objects)?);
    }

    let sealed_volumes = pod::sealed_volumes(&spec, options)?;
    let document = PolicyDocument {
        containers,
        key_broker: options.key_broker.clone(),
        sealed_volumes,
        allow_properties_access: options.debug_mode,
        allow_dump_stacks: options.debug_mode,
        allow_runtime_logging: options.debug_mode,
        ..PolicyDocument::default()
    };
    let mut rego = String::new();
    if options.debug_mode {
        rego.push_str(DEBUG_BANNER);
    }
    rego.push_str(&document.to_rego());
    Ok(Generated {
        digest: digest_hex(rego.as_bytes()),
        document,
        rego,
        template,
        images: summaries,
        warnings,
        debug_mode: options.debug_mode,
    })
}
