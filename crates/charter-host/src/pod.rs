//! Driving a pod: turn the pod's generated policy containers into the requests a container
//! runtime would send (layers, scratch, overlay, create, start), send them, stream stdio.
//!
//! The plan is derived from the same generation the policy came from, so an honest host sends
//! exactly what the policy allows; the agent checks it anyway.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

use charter_agent_api::{
    paths, Capabilities, Client, CreateContainer, MountSpec, Reply, Request, StdioStream, UserSpec,
};
use charter_policy::model::{Container, EnvRule, EnvStrategy};
use charter_policygen::{Generated, ImageResolver};

use crate::layers::{materialize_image, LayerFile};
use crate::{Error, Uvm};

/// One container of a pod plan.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The pod's container name.
    pub name: String,
    /// Layer files, base first.
    pub layers: Vec<LayerFile>,
    /// The create request.
    pub create: CreateContainer,
}

/// Everything needed to start a pod in a UVM.
#[derive(Debug, Clone)]
pub struct PodPlan {
    pub containers: Vec<ContainerPlan>,
    /// Sealed volumes to open before any container: `(volume, file name in the host dir)`.
    pub sealed: Vec<(String, String)>,
}

/// The standard mounts of every container: the framework's default mounts, with `sandbox://`
/// sources made concrete under the sandbox directory.
pub fn standard_mounts() -> Vec<MountSpec> {
    let m = |d: &str, t: &str, s: &str, o: &[&str]| MountSpec {
        destination: d.into(),
        source: s.into(),
        kind: t.into(),
        options: o.iter().map(|s| (*s).to_owned()).collect(),
    };
    let sb = |f: &str| format!("{}/{f}", paths::SANDBOX_DIR);
    vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
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
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        m(
            "/etc/hosts",
            "bind",
            &sb("hosts"),
            &["rbind", "rprivate", "ro"],
        ),
        m(
            "/etc/hostname",
            "bind",
            &sb("hostname"),
            &["rbind", "rprivate", "ro"],
        ),
        m(
            "/etc/resolv.conf",
            "bind",
            &sb("resolv.conf"),
            &["rbind", "rprivate", "ro"],
        ),
    ]
}

/// The environment an honest runtime would pass: every literal rule's `NAME=value`. Rules
/// whose value the runtime computes (regex rules from `valueFrom`) cannot be filled by the
/// host; a required one is an error.
fn env_of(c: &Container, what: &str) -> Result<Vec<String>, Error> {
    let mut env = Vec::new();
    for rule in &c.env_rules {
        match rule {
            EnvRule::Whole {
                pattern,
                strategy: EnvStrategy::String,
                ..
            } => env.push(pattern.clone()),
            EnvRule::Split {
                name,
                name_strategy: EnvStrategy::String,
                value,
                value_strategy: EnvStrategy::String,
                ..
            } => env.push(format!("{name}={value}")),
            EnvRule::Whole { required: true, pattern, .. }
            | EnvRule::Split { required: true, name: pattern, .. } => {
                return Err(Error::Pod(format!(
                    "{what}: required environment rule {pattern:?} takes its value at run time (valueFrom); charter run cannot supply it"
                )))
            }
            _ => {}
        }
    }
    Ok(env)
}

fn mounts_of(c: &Container) -> Vec<MountSpec> {
    let mut out = standard_mounts();
    for m in &c.mounts {
        let source = match m.source.strip_prefix("sandbox://") {
            // A sealed volume's directory is fixed by the policy (the agent opens it there).
            Some(exact) if !exact.ends_with(".+") => format!("{}{exact}", paths::SANDBOX_DIR),
            Some(pattern) => {
                // `/tmp/atlas/<kind>/.+`: one directory per mount point.
                let base = pattern.trim_end_matches(".+").trim_end_matches('/');
                let name: String = m
                    .destination
                    .chars()
                    .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                    .collect();
                format!("{}{base}/{}", paths::SANDBOX_DIR, name.trim_matches('_'))
            }
            None => m.source.clone(),
        };
        out.push(MountSpec {
            destination: m.destination.clone(),
            source,
            kind: m.kind.clone(),
            options: m.options.clone(),
        });
    }
    out
}

fn caps_of(c: &Container, privileged: bool) -> Capabilities {
    if let Some(caps) = &c.capabilities {
        return Capabilities {
            ambient: caps.ambient.clone(),
            bounding: caps.bounding.clone(),
            effective: caps.effective.clone(),
            inheritable: caps.inheritable.clone(),
            permitted: caps.permitted.clone(),
        };
    }
    let default: Vec<String> = charter_policy::DEFAULT_CAPABILITIES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if privileged {
        let all: Vec<String> = charter_policy::PRIVILEGED_CAPABILITIES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Capabilities {
            ambient: vec![],
            bounding: all.clone(),
            effective: all.clone(),
            inheritable: all.clone(),
            permitted: all,
        }
    } else {
        Capabilities {
            ambient: vec![],
            bounding: default.clone(),
            effective: default.clone(),
            inheritable: vec![],
            permitted: default,
        }
    }
}

fn user_of(c: &Container) -> UserSpec {
    let Some(u) = &c.user else {
        return UserSpec::default();
    };
    UserSpec {
        user: u.user_idname.pattern.clone(),
        supplemental_groups: u
            .group_idnames
            .iter()
            .filter_map(|g| g.pattern.parse().ok())
            .collect(),
        umask: u.umask.clone(),
    }
}

/// Plans `generated` (the pod's policy generation): builds the layer images of its images into
/// `layer_dir` (a UVM's [`Uvm::layer_dir`], or a staging directory for a launcher that takes
/// its layers at launch), reusing `cache_dir`, and derives each container's requests.
///
/// # Errors
/// [`Error::Pod`] when a container cannot be driven; image and I/O errors.
pub fn plan_pod(
    generated: &Generated,
    images: &dyn ImageResolver,
    cache_dir: &Path,
    layer_dir: &Path,
) -> Result<PodPlan, Error> {
    let mut layers_of = std::collections::BTreeMap::new();
    for summary in &generated.images {
        let image = images.open(&summary.reference)?;
        let files = materialize_image(&image, cache_dir, layer_dir)?;
        layers_of.insert(summary.reference.clone(), files);
    }
    let mut containers = Vec::new();
    for (i, c) in generated.document.containers.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("c{i}"));
        let what = format!("container {name}");
        if !paths::valid_container_id(&name) {
            return Err(Error::Pod(format!(
                "{what}: name is not a valid container id"
            )));
        }
        let reference = c.id.clone().unwrap_or_default();
        let layers = layers_of
            .get(&reference)
            .cloned()
            .ok_or_else(|| Error::Pod(format!("{what}: image {reference:?} was not measured")))?;
        let hashes: Vec<&str> = layers.iter().map(|l| l.root_hash.as_str()).collect();
        if hashes != c.layers.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(Error::Pod(format!(
                "{what}: the image's layers changed since the policy was generated"
            )));
        }
        let privileged = c.allow_elevated;
        containers.push(ContainerPlan {
            create: CreateContainer {
                container_id: name.clone(),
                args: c.command.clone(),
                env: env_of(c, &what)?,
                working_dir: c.working_dir.clone(),
                mounts: mounts_of(c),
                privileged,
                no_new_privileges: c.no_new_privileges,
                user: user_of(c),
                capabilities: Some(caps_of(c, privileged)),
                seccomp_profile_sha256: c.seccomp_profile_sha256.clone(),
                stdin: false,
            },
            name,
            layers,
        });
    }
    Ok(PodPlan {
        containers,
        sealed: Vec::new(),
    })
}

/// A started pod.
#[derive(Debug)]
pub struct RunningPod {
    /// Container ids with whether the host may read their stdio.
    pub containers: Vec<(String, bool)>,
}

/// Sends the plan: layers, scratch, overlays, create, start.
///
/// # Errors
/// The first request the agent refuses (with its denial).
pub fn start_pod(client: &mut Client<UnixStream>, plan: &PodPlan) -> Result<RunningPod, Error> {
    let mut mounted = std::collections::BTreeSet::new();
    for c in &plan.containers {
        for l in &c.layers {
            if mounted.insert(l.root_hash.clone()) {
                client.call(Request::MountDevice {
                    source: l.file_name.clone(),
                    target: paths::layer(&l.root_hash),
                    device_hash: l.root_hash.clone(),
                })?;
            }
        }
    }
    for (name, source) in &plan.sealed {
        client.call(Request::MountSealed {
            name: name.clone(),
            source: source.clone(),
        })?;
    }
    let mut started = Vec::new();
    for c in &plan.containers {
        let id = &c.create.container_id;
        client.call(Request::ScratchMount {
            target: paths::scratch(id),
        })?;
        client.call(Request::MountOverlay {
            container_id: id.clone(),
            layer_paths: c
                .layers
                .iter()
                .rev()
                .map(|l| paths::layer(&l.root_hash))
                .collect(),
            target: paths::rootfs(id),
        })?;
        let reply = client.call(Request::CreateContainer(c.create.clone()))?;
        let access = matches!(
            reply,
            Reply::Process {
                stdio_access: true,
                ..
            }
        );
        client.call(Request::StartContainer {
            container_id: id.clone(),
        })?;
        started.push((id.clone(), access));
    }
    Ok(RunningPod {
        containers: started,
    })
}

/// Copies one stdio stream of a process to `out` until it ends (one connection of its own).
///
/// # Errors
/// Agent and channel errors.
pub fn pump_stdio(
    uvm: &dyn Uvm,
    container_id: &str,
    process_id: Option<u32>,
    stream: StdioStream,
    out: &mut dyn Write,
) -> Result<(), Error> {
    use base64::Engine as _;
    let mut client = uvm.connect()?;
    loop {
        let reply = client.call(Request::ReadStdio {
            container_id: container_id.to_owned(),
            process_id,
            stream,
            max_bytes: 64 * 1024,
        })?;
        match reply {
            Reply::Stdio { eof: true, .. } => return Ok(()),
            Reply::Stdio { data, .. } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| Error::Pod(format!("stdio from the agent is not base64: {e}")))?;
                out.write_all(&bytes).map_err(|e| Error::Io {
                    path: "stdout".into(),
                    source: e,
                })?;
                let _ = out.flush();
            }
            other => {
                return Err(Error::Pod(format!(
                    "unexpected reply to read_stdio: {other:?}"
                )))
            }
        }
    }
}
