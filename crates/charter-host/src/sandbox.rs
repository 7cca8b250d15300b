//! The `sandbox` launcher (the embedded default, DESIGN.md D6): the agent as a separate
//! process in fresh mount, pid, uts, ipc and net namespaces on a private root, with the
//! INSECURE simulated SNP as its TEE. It runs everything a UVM runs, on any Linux machine with
//! root, loop devices and overlayfs, but isolates nothing from a hostile root on the host: it
//! is for development, CI and demos, and its evidence only verifies with the simulator's root.
//!
//! The simulated launch: HOST_DATA is the policy digest given at launch; MEASUREMENT is the
//! SHA-384 of the agent binary (the sandbox's whole "image").

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charter_agent_api::Client;
use charter_attest_insecure_sim::{
    serve_insecure_simulated, InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams,
};
use sha2::{Digest, Sha384};

use crate::{io_err, Error, LaunchConfig, Launcher, Uvm};

const NAME: &str = "sandbox";
/// How long the agent may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Launches sandbox UVMs.
#[derive(Debug, Clone)]
pub struct SandboxLauncher {
    /// Directory of the simulated AMD-SP's keys.
    pub simulator_dir: PathBuf,
    /// Parent of each UVM's working directory.
    pub work_parent: PathBuf,
}

impl Default for SandboxLauncher {
    fn default() -> Self {
        Self {
            simulator_dir: charter_attest_insecure_sim::default_dir(),
            work_parent: std::env::temp_dir(),
        }
    }
}

fn unsupported(reason: impl Into<String>) -> Error {
    Error::Unsupported {
        launcher: NAME,
        reason: reason.into(),
    }
}

fn launch_failed(reason: impl Into<String>) -> Error {
    Error::Launch {
        launcher: NAME,
        reason: reason.into(),
    }
}

/// What the sandbox needs from the machine, checked before anything starts.
fn preflight(agent: &Path) -> Result<(), Error> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Err(unsupported(
            "it needs root (namespaces, loop devices and mounts); run as root",
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err(unsupported(
            "/dev/loop-control is missing (load the loop module: modprobe loop)",
        ));
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for need in ["overlay", "erofs", "tmpfs"] {
        if !fs
            .lines()
            .any(|l| l.split_whitespace().last() == Some(need))
        {
            return Err(unsupported(format!(
                "the kernel has no {need} filesystem (modprobe {need})"
            )));
        }
    }
    for (bin, pkg) in [("unshare", "util-linux"), ("runc", "runc")] {
        if which(bin).is_none() {
            return Err(unsupported(format!(
                "{bin} is not installed (apt-get install {pkg})"
            )));
        }
    }
    if !agent.is_file() {
        return Err(unsupported(format!(
            "agent binary {} does not exist",
            agent.display()
        )));
    }
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// SHA-384 of the agent binary: the sandbox UVM's launch measurement. Computed once per
/// process for each (device, inode, size, mtime) of the binary, like a VM image that is
/// measured when it is built rather than at every launch.
///
/// # Errors
/// [`Error::Io`] if the binary cannot be read.
pub fn sandbox_measurement(agent: &Path) -> Result<[u8; 48], Error> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::{Mutex, OnceLock, PoisonError};
    type Key = (u64, u64, u64, i64, i64);
    static SEEN: OnceLock<Mutex<HashMap<Key, [u8; 48]>>> = OnceLock::new();
    let mut f = std::fs::File::open(agent).map_err(io_err(agent))?;
    let meta = f.metadata().map_err(io_err(agent))?;
    let key = (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(*m);
    }
    let mut h = Sha384::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(agent))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    let m: [u8; 48] = h.finalize().into();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, m);
    Ok(m)
}

impl Launcher for SandboxLauncher {
    fn name(&self) -> &'static str {
        NAME
    }

    fn launch(&self, config: &LaunchConfig) -> Result<Box<dyn Uvm>, Error> {
        Ok(Box::new(self.launch_sandbox(config)?))
    }
}

impl SandboxLauncher {
    /// [`Launcher::launch`] with the concrete type.
    ///
    /// # Errors
    /// See [`Launcher::launch`].
    pub fn launch_sandbox(&self, config: &LaunchConfig) -> Result<SandboxUvm, Error> {
        preflight(&config.agent)?;
        let measurement = sandbox_measurement(&config.agent)?;
        let sp = InsecureSimulatedSp::load_or_generate(&self.simulator_dir)
            .map_err(|e| launch_failed(format!("simulated AMD-SP: {e}")))?;
        let root_pem = sp.root_pem();
        let work = tempfile::Builder::new()
            .prefix("charter-sandbox-")
            .tempdir_in(&self.work_parent)
            .map_err(io_err(&self.work_parent))?;
        let host_dir = work.path().join("host");
        let root_dir = work.path().join("root");
        for d in [&host_dir, &root_dir] {
            std::fs::create_dir(d).map_err(io_err(d))?;
        }
        let tee_sock = host_dir.join("tee.sock");
        let listener = UnixListener::bind(&tee_sock).map_err(io_err(&tee_sock))?;
        let guest = InsecureSimulatedGuest::new(
            Arc::new(sp),
            LaunchParams {
                host_data: config.policy_digest,
                measurement,
                ..LaunchParams::default()
            },
        );
        serve_insecure_simulated(listener, guest);
        let err_path = work.path().join("agent.stderr");
        let err_file = std::fs::File::create(&err_path).map_err(io_err(&err_path))?;
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--uts",
                "--ipc",
                "--net",
                "--propagation",
                "private",
                "--kill-child",
                "--",
            ])
            .arg(&config.agent)
            .arg("--listen")
            .arg("/host/agent.sock")
            .arg("--sandbox-root")
            .arg(&root_dir)
            .arg("--host-dir")
            .arg(&host_dir)
            .arg("--tee")
            .arg("insecure-simulated-socket=/host/tee.sock")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .map_err(|e| launch_failed(format!("spawning unshare: {e}")))?;
        let mut uvm = SandboxUvm {
            child: Some(child),
            socket: host_dir.join("agent.sock"),
            host_dir,
            measurement,
            root_pem,
            work: Some(work),
        };
        uvm.wait_ready(&err_path)?;
        Ok(uvm)
    }
}

/// A running sandbox UVM. Dropping it stops the sandbox.
#[derive(Debug)]
pub struct SandboxUvm {
    child: Option<Child>,
    socket: PathBuf,
    host_dir: PathBuf,
    measurement: [u8; 48],
    root_pem: String,
    work: Option<tempfile::TempDir>,
}

impl SandboxUvm {
    fn wait_ready(&mut self, err_path: &Path) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = std::fs::read_to_string(err_path).unwrap_or_default();
                    self.child = None;
                    return Err(launch_failed(format!(
                        "the agent exited ({status}): {}",
                        err.trim()
                    )));
                }
            }
            if start.elapsed() > START_TIMEOUT {
                let _ = self.stop();
                return Err(launch_failed(format!(
                    "the agent did not listen within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The host directory shared with the sandbox.
    #[must_use]
    pub fn host_dir(&self) -> &Path {
        &self.host_dir
    }

    /// The agent's socket (for tests that write raw bytes).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Uvm for SandboxUvm {
    fn connect(&self) -> Result<Client<UnixStream>, Error> {
        let s = UnixStream::connect(&self.socket).map_err(io_err(&self.socket))?;
        Ok(Client::new(s))
    }

    fn layer_dir(&self) -> &Path {
        &self.host_dir
    }

    fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    fn insecure_simulated_root_pem(&self) -> Option<String> {
        Some(self.root_pem.clone())
    }

    fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            // unshare --kill-child: the agent (pid 1 of the sandbox) and with it every process
            // in the sandbox die; the mount namespace, its loop devices and tmpfs go with them.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(work) = self.work.take() {
            let path = work.path().to_owned();
            work.close().map_err(io_err(&path))?;
        }
        Ok(())
    }
}

impl Drop for SandboxUvm {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
