//! What exists in the guest: verified layers, scratch, overlays, containers and processes,
//! and the storage effects. Every effect takes the policy's [`Allowed`] decision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use charter_agent_api::{paths, AgentError, ErrorKind, Reply, Request, StdioStream};
use charter_mount::AttachedLayer;
use charter_policy::request::{
    MountDevice, MountOverlay, MountSealed, NoInput, ScratchMount, Unmount,
};
use charter_policy::{Allowed, Enforcer, Request as PolicyRequest};

use crate::agent::{enforce, refuse, Config, Fail};
use crate::containers::{Container, Proc, Stdin};
use crate::streams::{ExitCell, LogRing, StreamBuf};

mod sealed;

/// Scratch is encrypted either way, so the policy input says `encrypted: true`: in the utility
/// VM it lives on the host's scratch disk under dm-crypt and dm-integrity with keys made in the
/// guest ([`charter_mount::EncryptedScratch`]); without a scratch disk it is a tmpfs in guest
/// memory, which SEV-SNP encrypts (in the insecure sandbox nothing is encrypted, and the whole
/// TEE is simulated).
const SCRATCH_ENCRYPTED: bool = true;
/// Scratch tmpfs size limit per container.
const SCRATCH_BYTES: u64 = 1 << 30;
/// Where the encrypted scratch disk's file system is mounted; each container's scratch is a
/// directory in it, bind-mounted at its scratch target.
const SCRATCH_STORE: &str = "/run/charter/scratch-store";
/// Where `mke2fs` writes the new file system first (a sparse file on the `/run` tmpfs).
const SCRATCH_STAGING: &str = "/run/charter/scratch-fs.staging";

pub(crate) struct Guest {
    pub config: Config,
    layers: BTreeMap<String, AttachedLayer>,
    scratch: BTreeMap<String, PathBuf>,
    /// overlay target -> container id
    overlays: BTreeMap<String, String>,
    pub containers: BTreeMap<String, Container>,
    /// Processes started by `exec_external` (container id "").
    pub external: Container,
    /// The policy's key broker, once a policy that names one is set.
    pub broker: Option<Arc<crate::keys::Broker>>,
    /// Opened sealed volumes: name -> tmpfs.
    sealed: BTreeMap<String, PathBuf>,
    /// The encrypted scratch disk, once the first scratch is mounted.
    scratch_store: Option<charter_mount::EncryptedScratch>,
}

pub(crate) fn failed(what: impl std::fmt::Display) -> AgentError {
    refuse(ErrorKind::Failed, what.to_string())
}

fn refused(what: impl Into<String>) -> AgentError {
    refuse(ErrorKind::Refused, what)
}

impl Guest {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            layers: BTreeMap::new(),
            scratch: BTreeMap::new(),
            overlays: BTreeMap::new(),
            containers: BTreeMap::new(),
            external: Container::external(),
            broker: None,
            sealed: BTreeMap::new(),
            scratch_store: None,
        }
    }

    /// Writes the group's sandbox files (`hosts`, `hostname`, `resolv.conf`).
    pub fn prepare_sandbox(&self) -> Result<(), String> {
        let dir = Path::new(paths::SANDBOX_DIR);
        let w = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| format!("{}/{name}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        w("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")?;
        w("hostname", "charter\n")?;
        w("resolv.conf", "")?;
        Ok(())
    }

    pub fn container_ids(&self) -> Vec<String> {
        self.containers.keys().cloned().collect()
    }

    /// Routes a policy-covered request through the chokepoint to its effect.
    pub fn apply(
        &mut self,
        enforcer: &mut Enforcer,
        request: Request,
        logs: &LogRing,
    ) -> Result<Reply, Fail> {
        let done = |()| Reply::Done {};
        match request {
            Request::MountDevice {
                source,
                target,
                device_hash,
            } => {
                let src = self.layer_source(&source)?;
                let pr = PolicyRequest::MountDevice(MountDevice {
                    target: target.clone(),
                    device_hash: device_hash.clone(),
                });
                enforce(enforcer, &pr, |a| {
                    self.mount_device(a, &src, &target, &device_hash)
                })
                .map(done)
            }
            Request::UnmountDevice { target } => {
                let pr = PolicyRequest::UnmountDevice(Unmount {
                    unmount_target: target.clone(),
                });
                enforce(enforcer, &pr, |a| self.unmount_device(a, &target)).map(done)
            }
            Request::ScratchMount { target } => {
                let pr = PolicyRequest::ScratchMount(ScratchMount {
                    target: target.clone(),
                    encrypted: SCRATCH_ENCRYPTED,
                });
                enforce(enforcer, &pr, |a| self.scratch_mount(a, &target)).map(done)
            }
            Request::ScratchUnmount { target } => {
                let pr = PolicyRequest::ScratchUnmount(Unmount {
                    unmount_target: target.clone(),
                });
                enforce(enforcer, &pr, |a| self.scratch_unmount(a, &target)).map(done)
            }
            Request::MountSealed { name, source } => {
                if !paths::valid_component(&name) {
                    return Err(refused(format!("sealed volume name {name:?} is not valid")).into());
                }
                let src = self.layer_source(&source)?;
                let target = paths::sealed(&name);
                let resource = enforcer.document().and_then(|d| {
                    d.sealed_volumes
                        .iter()
                        .find(|v| v.name == name)
                        .map(|v| v.resource.clone())
                });
                let pr = PolicyRequest::MountSealed(MountSealed {
                    name: name.clone(),
                    target: target.clone(),
                });
                enforce(enforcer, &pr, |a| {
                    self.mount_sealed(a, &name, &src, &target, resource.as_deref())
                })
                .map(done)
            }
            Request::MountOverlay {
                container_id,
                layer_paths,
                target,
            } => {
                let pr = PolicyRequest::MountOverlay(MountOverlay {
                    container_id: container_id.clone(),
                    layer_paths: layer_paths.clone(),
                    target: target.clone(),
                });
                enforce(enforcer, &pr, |a| {
                    self.mount_overlay(a, &container_id, &layer_paths, &target)
                })
                .map(done)
            }
            Request::UnmountOverlay { target } => {
                let pr = PolicyRequest::UnmountOverlay(Unmount {
                    unmount_target: target.clone(),
                });
                enforce(enforcer, &pr, |a| self.unmount_overlay(a, &target)).map(done)
            }
            Request::GetProperties {} => {
                let pr = PolicyRequest::GetProperties(NoInput {});
                let ids = self.container_ids();
                enforce(enforcer, &pr, |_a: &Allowed<'_>| {
                    Ok(Reply::Properties {
                        properties: serde_json::json!({"containers": ids}),
                    })
                })
            }
            Request::DumpStacks {} => {
                let pr = PolicyRequest::DumpStacks(NoInput {});
                enforce(enforcer, &pr, |_a: &Allowed<'_>| {
                    Ok(Reply::Stacks {
                        stacks: thread_dump(),
                    })
                })
            }
            Request::RuntimeLogging { max_lines } => {
                let pr = PolicyRequest::RuntimeLogging(NoInput {});
                enforce(enforcer, &pr, |_a: &Allowed<'_>| {
                    Ok(Reply::Logs {
                        lines: logs.tail(max_lines as usize),
                    })
                })
            }
            other => self.apply_container(enforcer, other),
        }
    }

    fn layer_source(&self, source: &str) -> Result<PathBuf, AgentError> {
        if !paths::valid_component(source) {
            return Err(refused(format!(
                "source {source:?} is not a plain file name in the host directory"
            )));
        }
        Ok(self.config.host_dir.join(source))
    }

    fn mount_device(
        &mut self,
        _allowed: &Allowed<'_>,
        source: &Path,
        target: &str,
        device_hash: &str,
    ) -> Result<(), AgentError> {
        let mut root = [0u8; 32];
        hex::decode_to_slice(device_hash, &mut root).map_err(|_| {
            refuse(
                ErrorKind::BadRequest,
                format!("deviceHash {device_hash:?} is not 64 hex digits"),
            )
        })?;
        std::fs::create_dir_all(target).map_err(|e| failed(format!("{target}: {e}")))?;
        let layer = AttachedLayer::attach(source, &root).map_err(|e| {
            let kind = if e.is_rejected_image() {
                ErrorKind::Integrity
            } else {
                ErrorKind::Failed
            };
            refuse(kind, e.to_string())
        })?;
        layer.mount(Path::new(target)).map_err(failed)?;
        self.layers.insert(target.to_owned(), layer);
        Ok(())
    }

    fn unmount_device(&mut self, _allowed: &Allowed<'_>, target: &str) -> Result<(), AgentError> {
        if !self.layers.contains_key(target) {
            return Err(refused(format!("no layer is mounted at {target}")));
        }
        charter_mount::unmount(Path::new(target)).map_err(failed)?;
        self.layers.remove(target);
        Ok(())
    }

    fn scratch_mount(&mut self, _allowed: &Allowed<'_>, target: &str) -> Result<(), AgentError> {
        let name = target
            .strip_prefix(paths::SCRATCH)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|n| paths::valid_container_id(n))
            .ok_or_else(|| {
                refused(format!(
                    "scratch target {target:?} is not {}/<container id>",
                    paths::SCRATCH
                ))
            })?;
        if self.scratch.contains_key(name) {
            return Err(refused(format!("scratch already mounted at {target}")));
        }
        std::fs::create_dir_all(target).map_err(|e| failed(format!("{target}: {e}")))?;
        match self.scratch_store_dir()? {
            Some(store) => {
                use std::os::unix::fs::DirBuilderExt;
                let dir = store.join(name);
                // Left over from an earlier scratch of the same name: start empty.
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
                charter_mount::bind_mount(&dir, Path::new(target)).map_err(failed)?;
            }
            None => charter_mount::mount_tmpfs(Path::new(target), SCRATCH_BYTES, 0o700)
                .map_err(failed)?,
        }
        self.scratch.insert(name.to_owned(), PathBuf::from(target));
        Ok(())
    }

    /// The encrypted scratch store's mount point, setting it up on first use; `None` without
    /// a scratch disk. A failure is an error, never a fallback to plaintext on the host's disk.
    fn scratch_store_dir(&mut self) -> Result<Option<PathBuf>, AgentError> {
        let Some(disk) = self.config.scratch_disk.clone() else {
            return Ok(None);
        };
        let dir = PathBuf::from(SCRATCH_STORE);
        if self.scratch_store.is_none() {
            let store = charter_mount::EncryptedScratch::open(&disk).map_err(failed)?;
            std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{SCRATCH_STORE}: {e}")))?;
            store
                .format_and_mount(&self.config.mke2fs, Path::new(SCRATCH_STAGING), &dir)
                .map_err(failed)?;
            self.scratch_store = Some(store);
        }
        Ok(Some(dir))
    }

    fn scratch_unmount(&mut self, _allowed: &Allowed<'_>, target: &str) -> Result<(), AgentError> {
        let Some(name) = self
            .scratch
            .iter()
            .find(|(_, p)| p.as_os_str() == target)
            .map(|(n, _)| n.clone())
        else {
            return Err(refused(format!("no scratch is mounted at {target}")));
        };
        if self.overlays.values().any(|c| *c == name) {
            return Err(refused(format!(
                "scratch {target} is in use by the overlay of container {name}"
            )));
        }
        charter_mount::unmount(Path::new(target)).map_err(failed)?;
        if self.scratch_store.is_some() {
            let dir = Path::new(SCRATCH_STORE).join(&name);
            std::fs::remove_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        }
        self.scratch.remove(&name);
        Ok(())
    }

    fn mount_overlay(
        &mut self,
        _allowed: &Allowed<'_>,
        container_id: &str,
        layer_paths: &[String],
        target: &str,
    ) -> Result<(), AgentError> {
        if target != paths::rootfs(container_id) {
            return Err(refused(format!(
                "overlay target {target:?} is not the canonical {}",
                paths::rootfs(container_id)
            )));
        }
        let scratch = self.scratch.get(container_id).ok_or_else(|| {
            refused(format!(
                "no scratch is mounted at {} for container {container_id}",
                paths::scratch(container_id)
            ))
        })?;
        let mut lowers = Vec::with_capacity(layer_paths.len());
        for p in layer_paths {
            if !self.layers.contains_key(p) {
                return Err(refused(format!("layer path {p} is not a mounted layer")));
            }
            lowers.push(Path::new(p.as_str()));
        }
        let upper = scratch.join("upper");
        let work = scratch.join("work");
        for d in [&upper, &work, Path::new(target)] {
            std::fs::create_dir_all(d).map_err(|e| failed(format!("{}: {e}", d.display())))?;
        }
        charter_mount::mount_overlay(&lowers, &upper, &work, Path::new(target)).map_err(failed)?;
        self.overlays
            .insert(target.to_owned(), container_id.to_owned());
        Ok(())
    }

    fn unmount_overlay(&mut self, _allowed: &Allowed<'_>, target: &str) -> Result<(), AgentError> {
        let Some(cid) = self.overlays.get(target).cloned() else {
            return Err(refused(format!("no overlay is mounted at {target}")));
        };
        if self.containers.get(&cid).is_some_and(Container::is_live) {
            return Err(refused(format!(
                "container {cid} is still running on the overlay at {target}"
            )));
        }
        charter_mount::unmount(Path::new(target)).map_err(failed)?;
        self.overlays.remove(target);
        Ok(())
    }

    /// The overlay root filesystem of `container_id`, if mounted.
    pub fn rootfs_of(&self, container_id: &str) -> Option<PathBuf> {
        let t = paths::rootfs(container_id);
        self.overlays
            .get(&t)
            .filter(|c| *c == container_id)
            .map(|_| PathBuf::from(t))
    }

    fn process(&self, container_id: &str, process_id: Option<u32>) -> Result<&Proc, AgentError> {
        let c = if container_id.is_empty() {
            &self.external
        } else {
            self.containers
                .get(container_id)
                .ok_or_else(|| refused(format!("no container {container_id:?}")))?
        };
        c.process(process_id).ok_or_else(|| {
            refused(format!(
                "container {container_id:?} has no process {}",
                process_id.map_or("init".to_owned(), |p| p.to_string())
            ))
        })
    }

    pub fn exit_cell(
        &self,
        container_id: &str,
        process_id: Option<u32>,
    ) -> Result<Arc<ExitCell>, AgentError> {
        Ok(Arc::clone(&self.process(container_id, process_id)?.exit))
    }

    pub fn stream(
        &self,
        container_id: &str,
        process_id: Option<u32>,
        stream: StdioStream,
    ) -> Result<Arc<StreamBuf>, AgentError> {
        let p = self.process(container_id, process_id)?;
        let s = match stream {
            StdioStream::Stdout => &p.stdout,
            StdioStream::Stderr => &p.stderr,
        };
        s.clone().ok_or_else(|| {
            refused(format!(
                "the policy does not allow stdio access for container {container_id:?}"
            ))
        })
    }

    pub fn stdin(&self, container_id: &str, process_id: Option<u32>) -> Result<Stdin, AgentError> {
        let p = self.process(container_id, process_id)?;
        p.stdin.clone().ok_or_else(|| {
            refused(format!(
                "process has no stdin the host may write (container {container_id:?})"
            ))
        })
    }
}

/// The agent's threads and what they wait on (Rust has no portable stack dump; this is what
/// `/proc/self/task` tells).
fn thread_dump() -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let dir = e.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
            out.push_str(&format!(
                "thread {} {} wchan={}\n",
                e.file_name().to_string_lossy(),
                comm.trim(),
                wchan.trim()
            ));
        }
    }
    out
}
