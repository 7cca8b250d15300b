//! The host side of charter: launchers that start a utility VM (UVM) with the guest agent,
//! and the pod driver that asks the agent to run a pod.
//!
//! The host is untrusted (DESIGN.md §4): nothing here holds a secret or makes a security
//! decision. It only prepares inputs (layer images, the policy) and asks; the agent decides.
#![forbid(unsafe_code)]

mod layers;
mod pod;
mod qemu;
mod qemu_broker;
mod qemu_ports;
mod relay;
mod sandbox;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub use charter_agent_api::Client;
pub use layers::{materialize_image, LayerFile};
pub use pod::{
    plan_pod, pump_stdio, standard_mounts, start_pod, ContainerPlan, PodPlan, RunningPod,
};
pub use qemu::{
    image_measurement, Accel, LayerDisk, QemuLauncher, QemuUvm, SnpConfig, DEFAULT_SCRATCH_MIB,
    INSECURE_TEE_PARAM, SCRATCH_SERIAL,
};
pub use relay::{place_sealed, sealed_disk, start_broker_relay, BrokerRelay};
pub use sandbox::{SandboxLauncher, SandboxUvm};

/// Errors of the host side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The machine lacks something a launcher needs.
    #[error("the {launcher} launcher cannot run here: {reason}")]
    Unsupported {
        launcher: &'static str,
        reason: String,
    },
    /// The UVM did not start.
    #[error("the {launcher} UVM did not start: {reason}")]
    Launch {
        launcher: &'static str,
        reason: String,
    },
    /// A call to the agent failed.
    #[error(transparent)]
    Agent(#[from] charter_agent_api::CallError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] charter_image::Error),
    #[error(transparent)]
    Generate(#[from] charter_policygen::Error),
    #[error(transparent)]
    Attest(#[from] charter_attest::Error),
    /// The pod cannot be driven as written.
    #[error("pod: {0}")]
    Pod(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a UVM is launched with.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// SHA-256 of the exact policy bytes: HOST_DATA.
    pub policy_digest: [u8; 32],
    /// The `charter-agent` binary.
    pub agent: PathBuf,
}

/// Starts utility VMs.
pub trait Launcher {
    /// Short name (`sandbox`, `qemu`).
    fn name(&self) -> &'static str;
    /// Starts a UVM whose agent is listening and closed.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the machine lacks what the launcher needs;
    /// [`Error::Launch`] when the UVM did not come up.
    fn launch(&self, config: &LaunchConfig) -> Result<Box<dyn Uvm>, Error>;
}

/// A running utility VM.
pub trait Uvm: std::fmt::Debug + Send + Sync {
    /// A new connection to the agent.
    ///
    /// # Errors
    /// [`Error::Io`] if the agent does not accept.
    fn connect(&self) -> Result<Client<UnixStream>, Error>;
    /// Where layer images must be put for `mount_device` (sources are file names in it).
    fn layer_dir(&self) -> &Path;
    /// The launch MEASUREMENT the TEE reports for this UVM.
    fn measurement(&self) -> [u8; 48];
    /// For simulated TEEs: the root certificate (PEM) evidence chains up to. `None` on real
    /// hardware (AMD's roots are built in).
    fn insecure_simulated_root_pem(&self) -> Option<String>;
    /// Stops the UVM (everything in it dies).
    ///
    /// # Errors
    /// [`Error::Io`] if it could not be stopped.
    fn stop(&mut self) -> Result<(), Error>;
}

/// The `charter-agent` next to the running executable, or `$CHARTER_AGENT`.
///
/// # Errors
/// [`Error::Unsupported`] when none is found.
pub fn find_agent() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("CHARTER_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err(Path::new("current executable")))?;
    let mut dirs: Vec<PathBuf> = exe.parent().map(Path::to_owned).into_iter().collect();
    // Test binaries live in target/<profile>/deps.
    if let Some(d) = exe.parent().and_then(Path::parent) {
        dirs.push(d.to_owned());
    }
    dirs.into_iter()
        .map(|d| d.join("charter-agent"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Unsupported {
            launcher: "sandbox",
            reason: "no charter-agent binary next to this executable (build the workspace, or set CHARTER_AGENT)".into(),
        })
}
