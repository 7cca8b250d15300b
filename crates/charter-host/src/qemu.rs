//! The `qemu` launcher (DESIGN.md D6): a real utility VM. QEMU boots the measured UVM image
//! (`charter-uvm`: the Debian cloud kernel, an initramfs with `charter-agent` as PID 1, a fixed
//! command line) with
//!
//! * each layer image as a read-only virtio-blk disk whose serial is the name the host uses
//!   as the `mount_device` source (the guest puts the disk under dm-verity with the policy's
//!   root hash; nothing the host wrote is trusted);
//! * the agent protocol over virtio-serial ports `charter.agent.<n>`, each a unix socket on
//!   the host carrying one connection at a time. [`QemuUvm::connect`] hands out a socket pair
//!   and relays it to a free port, so callers get ordinary concurrent connections;
//! * without SEV-SNP: the INSECURE simulated SNP (HOST_DATA = the policy digest, MEASUREMENT =
//!   SHA-384 over kernel, initrd and command line) on its own port `charter.tee.insecure`,
//!   used by the agent only when the measured command line says so;
//! * with SEV-SNP ([`SnpConfig`]): the `sev-snp-guest` object with `host-data` = the policy
//!   digest and kernel hashes, private memory from `memory-backend-memfd`, OVMF as firmware.
//!
//! TCG is the default: on this machine kind `/dev/kvm` exists but a standard guest kernel
//! hangs under it (`../shared/research/uvm-feasibility.md`).
//!
//! * a scratch disk (a sparse file in the VM's working directory, serial `charter-scratch`):
//!   the guest keeps container writes there under dm-crypt and dm-integrity with keys it makes
//!   itself, so the file holds only ciphertext and tags.
//!
//! * with [`QemuLauncher::broker_ports`]: virtio-serial ports `charter.broker.<n>` that carry the
//!   guest's connections to the policy's key broker as [`charter_agent_api::relay`] frames
//!   ([`QemuUvm::serve_broker`]); sealed-volume files are read-only disks like layers
//!   ([`crate::sealed_disk`]).
//!
//! Not yet: vsock (the guest agent listens on virtio-serial only), hot-plugged layer disks
//! (disks are fixed at launch).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use charter_agent_api::{Client, Request};
use charter_attest::TeeProvider as _;
use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};
use sha2::{Digest, Sha384};

use crate::qemu_ports::{relay_to_port, PortPool};
use crate::{io_err, Error, LaunchConfig, Launcher, Uvm};

const NAME: &str = "qemu";
/// The kernel command line switch that makes the guest agent use the simulated TEE port.
pub const INSECURE_TEE_PARAM: &str = "charter.tee=insecure-simulated";
/// How long the guest may take to boot and answer `status` (TCG on 2 shared cores).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `status` call may take while waiting for the agent to come up.
const READY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `connect` waits for a free agent port.
const PORT_WAIT: Duration = Duration::from_secs(60);
/// The scratch disk's default size (sparse: only what the guest writes takes space). Making
/// its file system costs guest time in proportion (its inode tables go through dm-crypt and
/// dm-integrity: about 0.7 s for 2 GiB under TCG).
pub const DEFAULT_SCRATCH_MIB: u64 = 2048;
/// The scratch disk's serial (the guest never treats it as a layer).
pub const SCRATCH_SERIAL: &str = "charter-scratch";
/// The scratch disk's file name in the VM's working directory.
const SCRATCH_FILE: &str = "scratch.img";

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    /// KVM (required for SEV-SNP).
    Kvm,
}

/// A layer image attached as a read-only virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDisk {
    /// The disk's virtio serial (at most 20 bytes, a plain name): the `mount_device` source.
    pub serial: String,
    /// The layer image file.
    pub path: PathBuf,
}

/// SEV-SNP launch settings (KVM on an SNP host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpConfig {
    /// OVMF built for SNP (`OVMF.fd` / `OVMF.amdsev.fd`).
    pub ovmf: PathBuf,
    /// C-bit position (51 on Milan/Genoa).
    pub cbitpos: u32,
    /// Physical address bits lost to encryption (1).
    pub reduced_phys_bits: u32,
    /// QEMU CPU model (`EPYC-v4`, `EPYC-Milan`, ...).
    pub cpu: String,
    /// The launch MEASUREMENT expected for this image, firmware and vCPU count (from
    /// `charter_uvm::UvmImage::snp_measurement`).
    pub expected_measurement: [u8; 48],
}

/// Launches QEMU utility VMs.
#[derive(Debug, Clone)]
pub struct QemuLauncher {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// The UVM kernel.
    pub kernel: PathBuf,
    /// The UVM initramfs.
    pub initrd: PathBuf,
    /// The kernel command line (the image's, unchanged: it is measured).
    pub cmdline: String,
    /// Read-only disks (layer images, sealed-volume disks), fixed at launch.
    pub layers: Vec<LayerDisk>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Agent ports (concurrent host connections).
    pub agent_ports: usize,
    /// Key broker ports (concurrent guest connections to the broker); 0: none.
    pub broker_ports: usize,
    /// Size of the scratch disk in MiB (a sparse file); 0: no disk, scratch is guest memory.
    pub scratch_mib: u64,
    /// Directory of the simulated AMD-SP's keys (without SNP).
    pub simulator_dir: PathBuf,
    /// Parent of each UVM's working directory.
    pub work_parent: PathBuf,
    /// SEV-SNP, or `None` for the INSECURE simulated TEE.
    pub snp: Option<SnpConfig>,
}

impl QemuLauncher {
    /// A TCG launcher with 1 GiB, one vCPU, 8 agent ports, a 2 GiB scratch disk, the simulated
    /// TEE and no layers.
    #[must_use]
    pub fn new(kernel: &Path, initrd: &Path, cmdline: &str) -> Self {
        Self {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            cmdline: cmdline.to_owned(),
            layers: Vec::new(),
            memory_mib: 1024,
            vcpus: 1,
            accel: Accel::Tcg,
            agent_ports: 8,
            broker_ports: 0,
            scratch_mib: DEFAULT_SCRATCH_MIB,
            simulator_dir: charter_attest_insecure_sim::default_dir(),
            work_parent: std::env::temp_dir(),
            snp: None,
        }
    }

    /// The QEMU arguments for a UVM whose sockets and logs live in `work`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for settings that cannot work (no agent port, a bad layer
    /// serial, SNP without KVM, no TEE at all).
    pub fn args(&self, work: &Path, policy_digest: &[u8; 32]) -> Result<Vec<String>, Error> {
        if self.agent_ports == 0 {
            return Err(unsupported("at least one agent port is needed"));
        }
        let insecure = self
            .cmdline
            .split_whitespace()
            .any(|p| p == INSECURE_TEE_PARAM);
        if self.snp.is_none() && !insecure {
            return Err(unsupported(format!(
                "without SEV-SNP the image's command line must contain {INSECURE_TEE_PARAM} (build the image for the insecure simulated TEE)"
            )));
        }
        if self.snp.is_some() && self.accel != Accel::Kvm {
            return Err(unsupported("SEV-SNP needs KVM"));
        }
        let w = |name: &str| work.join(name).display().to_string();
        let accel = match self.accel {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        };
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
        match &self.snp {
            None => {
                push(&["-machine", &format!("q35,accel={accel}")]);
                push(&["-cpu", "max"]);
                push(&["-m", &format!("{}M", self.memory_mib)]);
            }
            Some(snp) => {
                let host_data = base64::engine::general_purpose::STANDARD.encode(policy_digest);
                push(&[
                    "-machine",
                    &format!(
                        "q35,accel={accel},confidential-guest-support=sev0,memory-backend=ram1"
                    ),
                ]);
                push(&["-cpu", &snp.cpu]);
                push(&["-m", &format!("{}M", self.memory_mib)]);
                push(&[
                    "-object",
                    &format!(
                        "memory-backend-memfd,id=ram1,size={}M,share=true,prealloc=false",
                        self.memory_mib
                    ),
                ]);
                push(&[
                    "-object",
                    &format!(
                        "sev-snp-guest,id=sev0,cbitpos={},reduced-phys-bits={},kernel-hashes=on,host-data={host_data}",
                        snp.cbitpos, snp.reduced_phys_bits
                    ),
                ]);
                push(&["-bios", &snp.ovmf.display().to_string()]);
            }
        }
        push(&["-smp", &self.vcpus.to_string()]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&["-serial", &format!("file:{}", w("console.log"))]);
        push(&["-kernel", &self.kernel.display().to_string()]);
        push(&["-initrd", &self.initrd.display().to_string()]);
        push(&["-append", &self.cmdline]);
        push(&["-device", "virtio-rng-pci"]);
        push(&["-device", "virtio-serial-pci,id=vser0"]);
        for i in 0..self.agent_ports {
            push(&[
                "-chardev",
                &format!(
                    "socket,id=agent{i},path={},server=on,wait=off",
                    w(&format!("agent{i}.sock"))
                ),
            ]);
            push(&[
                "-device",
                &format!("virtserialport,bus=vser0.0,chardev=agent{i},name=charter.agent.{i}"),
            ]);
        }
        for i in 0..self.broker_ports {
            push(&[
                "-chardev",
                &format!(
                    "socket,id=broker{i},path={},server=on,wait=off",
                    w(&format!("broker{i}.sock"))
                ),
            ]);
            push(&[
                "-device",
                &format!("virtserialport,bus=vser0.0,chardev=broker{i},name=charter.broker.{i}"),
            ]);
        }
        if self.snp.is_none() {
            push(&[
                "-chardev",
                &format!("socket,id=tee,path={},server=on,wait=off", w("tee.sock")),
            ]);
            push(&[
                "-device",
                "virtserialport,bus=vser0.0,chardev=tee,name=charter.tee.insecure",
            ]);
        }
        if self.scratch_mib > 0 {
            push(&[
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=scratch,discard=ignore",
                    w(SCRATCH_FILE)
                ),
            ]);
            push(&[
                "-device",
                &format!("virtio-blk-pci,drive=scratch,serial={SCRATCH_SERIAL}"),
            ]);
        }
        for (i, disk) in self.layers.iter().enumerate() {
            if disk.serial == SCRATCH_SERIAL {
                return Err(unsupported(format!(
                    "layer disk serial {SCRATCH_SERIAL:?} is the scratch disk's"
                )));
            }
            if disk.serial.is_empty()
                || disk.serial.len() > 20
                || !charter_agent_api::paths::valid_component(&disk.serial)
                || disk.serial.contains(',')
            {
                return Err(unsupported(format!(
                    "layer disk serial {:?} is not a plain name of at most 20 bytes",
                    disk.serial
                )));
            }
            let file = disk.path.display().to_string();
            if file.contains(',') {
                return Err(unsupported(format!(
                    "layer path {file} contains a comma (QEMU option syntax)"
                )));
            }
            push(&[
                "-drive",
                &format!("file={file},format=raw,if=none,readonly=on,id=layer{i}"),
            ]);
            push(&[
                "-device",
                &format!("virtio-blk-pci,drive=layer{i},serial={}", disk.serial),
            ]);
        }
        Ok(a)
    }

    /// [`Launcher::launch`] with the concrete type.
    ///
    /// # Errors
    /// See [`Launcher::launch`].
    pub fn launch_qemu(&self, config: &LaunchConfig) -> Result<QemuUvm, Error> {
        for f in [&self.kernel, &self.initrd] {
            if !f.is_file() {
                return Err(unsupported(format!(
                    "{} does not exist (build the UVM image with charter-uvm)",
                    f.display()
                )));
            }
        }
        for d in &self.layers {
            if !d.path.is_file() {
                return Err(unsupported(format!(
                    "layer image {} does not exist",
                    d.path.display()
                )));
            }
        }
        let work = tempfile::Builder::new()
            .prefix("charter-qemu-")
            .tempdir_in(&self.work_parent)
            .map_err(io_err(&self.work_parent))?;
        let args = self.args(work.path(), &config.policy_digest)?;
        if self.scratch_mib > 0 {
            let path = work.path().join(SCRATCH_FILE);
            std::fs::File::create(&path)
                .and_then(|f| f.set_len(self.scratch_mib.saturating_mul(1 << 20)))
                .map_err(io_err(&path))?;
        }
        let (measurement, root_pem, tee) = match &self.snp {
            Some(snp) => (snp.expected_measurement, None, None),
            None => {
                let m = image_measurement(&self.kernel, &self.initrd, &self.cmdline)?;
                let sp = InsecureSimulatedSp::load_or_generate(&self.simulator_dir)
                    .map_err(|e| launch_failed(format!("simulated AMD-SP: {e}")))?;
                let pem = sp.root_pem();
                let guest = InsecureSimulatedGuest::new(
                    Arc::new(sp),
                    LaunchParams {
                        host_data: config.policy_digest,
                        measurement: m,
                        ..LaunchParams::default()
                    },
                );
                (m, Some(pem), Some(guest))
            }
        };
        let log_path = work.path().join("qemu.log");
        let log = std::fs::File::create(&log_path).map_err(io_err(&log_path))?;
        let log2 = log.try_clone().map_err(io_err(&log_path))?;
        let started = Instant::now();
        let child = Command::new(&self.qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                unsupported(format!(
                    "cannot run {} ({e}): apt-get install qemu-system-x86",
                    self.qemu.display()
                ))
            })?;
        let ports: Vec<PathBuf> = (0..self.agent_ports)
            .map(|i| work.path().join(format!("agent{i}.sock")))
            .collect();
        let mut uvm = QemuUvm {
            child: Some(child),
            pool: Arc::new(PortPool::new(ports)),
            measurement,
            root_pem,
            work_dir: work.path().to_owned(),
            work: Some(work),
            boot_time: Duration::ZERO,
            broker_ports: self.broker_ports,
        };
        if let Some(guest) = tee {
            serve_tee(uvm.work_dir.join("tee.sock"), guest);
        }
        uvm.wait_ready(started)?;
        uvm.boot_time = started.elapsed();
        Ok(uvm)
    }
}

impl Launcher for QemuLauncher {
    fn name(&self) -> &'static str {
        NAME
    }

    fn launch(&self, config: &LaunchConfig) -> Result<Box<dyn Uvm>, Error> {
        Ok(Box::new(self.launch_qemu(config)?))
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

/// The simulated launch MEASUREMENT: SHA-384 over `kernel || initrd || cmdline`.
///
/// # Errors
/// [`Error::Io`] if a file cannot be read.
pub fn image_measurement(kernel: &Path, initrd: &Path, cmdline: &str) -> Result<[u8; 48], Error> {
    let mut h = Sha384::new();
    for f in [kernel, initrd] {
        let mut file = std::fs::File::open(f).map_err(io_err(f))?;
        std::io::copy(&mut file, &mut HashWriter(&mut h)).map_err(io_err(f))?;
    }
    h.update(cmdline.as_bytes());
    Ok(h.finalize().into())
}

struct HashWriter<'a>(&'a mut Sha384);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves the simulated AMD-SP on the guest's TEE port: one persistent stream, requests of 64
/// bytes of REPORT_DATA answered with a 4-byte big-endian length and the evidence JSON. Ends
/// when QEMU closes the socket.
fn serve_tee(socket: PathBuf, guest: InsecureSimulatedGuest) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut conn = loop {
            match UnixStream::connect(&socket) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        };
        let mut request = [0u8; 64];
        while conn.read_exact(&mut request).is_ok() {
            let Ok(evidence) = guest.report(request) else {
                return;
            };
            let body = evidence.to_json().into_bytes();
            let Ok(len) = u32::try_from(body.len()) else {
                return;
            };
            if conn
                .write_all(&len.to_be_bytes())
                .and_then(|()| conn.write_all(&body))
                .is_err()
            {
                return;
            }
        }
    });
}

/// A running QEMU utility VM. Dropping it stops the VM.
#[derive(Debug)]
pub struct QemuUvm {
    child: Option<Child>,
    pool: Arc<PortPool>,
    measurement: [u8; 48],
    root_pem: Option<String>,
    pub(crate) work_dir: PathBuf,
    work: Option<tempfile::TempDir>,
    boot_time: Duration,
    pub(crate) broker_ports: usize,
}

impl QemuUvm {
    fn wait_ready(&mut self, started: Instant) -> Result<(), Error> {
        loop {
            // Bounded: a boot that never answers must not hang the launch.
            if let Ok(mut c) = self.connect_with(Duration::from_secs(1), Some(READY_CALL_TIMEOUT)) {
                if c.call(Request::Status {}).is_ok() {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(launch_failed(format!(
                        "QEMU exited ({status}): {}\nconsole:\n{}",
                        self.log_tail("qemu.log"),
                        self.log_tail("console.log")
                    )));
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let console = self.log_tail("console.log");
                let _ = self.stop();
                return Err(launch_failed(format!(
                    "the agent did not answer within {START_TIMEOUT:?}; console:\n{console}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.work_dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(40)..)
            .unwrap_or_default()
            .join("\n")
    }

    /// The guest's serial console so far (kernel messages and the agent's stderr).
    #[must_use]
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.work_dir.join("console.log")).unwrap_or_default()
    }

    /// The scratch disk's file on the host (`None` without one): the guest writes only
    /// ciphertext and integrity tags to it.
    #[must_use]
    pub fn scratch_disk(&self) -> Option<PathBuf> {
        let p = self.work_dir.join(SCRATCH_FILE);
        p.is_file().then_some(p)
    }

    /// Wall time from starting QEMU until the agent first answered `status`.
    #[must_use]
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    fn connect_with(
        &self,
        wait: Duration,
        read_timeout: Option<Duration>,
    ) -> Result<Client<UnixStream>, Error> {
        let (client, relay) = UnixStream::pair().map_err(io_err(&self.work_dir))?;
        client
            .set_read_timeout(read_timeout)
            .map_err(io_err(&self.work_dir))?;
        relay_to_port(&self.pool, relay, wait)?;
        Ok(Client::new(client))
    }

    /// Serves the agent protocol on the unix socket `<work dir>/agent.sock` (what
    /// [`Uvm::layer_dir`]`.join("agent.sock")` names, as for the sandbox), each connection
    /// relayed to a free agent port, so that other processes (`charter exec`, `charter stop`)
    /// reach the agent. Runs until the VM stops.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot be bound.
    pub fn serve_agent_socket(&self) -> Result<PathBuf, Error> {
        let path = self.work_dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(io_err(&path))?;
        let pool = Arc::clone(&self.pool);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // A caller that finds every port busy gets its connection closed.
                let _ = relay_to_port(&pool, conn, PORT_WAIT);
            }
        });
        Ok(path)
    }
}

impl Uvm for QemuUvm {
    fn connect(&self) -> Result<Client<UnixStream>, Error> {
        self.connect_with(PORT_WAIT, None)
    }

    /// The VM's working directory. Layers cannot be added here after launch: they are disks
    /// given to [`QemuLauncher::layers`], and `mount_device` sources are their serials.
    fn layer_dir(&self) -> &Path {
        &self.work_dir
    }

    fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    fn insecure_simulated_root_pem(&self) -> Option<String> {
        self.root_pem.clone()
    }

    fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
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

impl Drop for QemuUvm {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_after<'a>(args: &'a [String], flag: &str, containing: &str) -> Option<&'a str> {
        args.windows(2)
            .find(|w| w[0] == flag && w[1].contains(containing))
            .map(|w| w[1].as_str())
    }

    #[test]
    fn tcg_command_line() {
        let mut l = QemuLauncher::new(
            Path::new("/k"),
            Path::new("/i"),
            &format!("console=ttyS0 {INSECURE_TEE_PARAM}"),
        );
        l.layers.push(LayerDisk {
            serial: "layer0".into(),
            path: PathBuf::from("/l/base.img"),
        });
        let args = l.args(Path::new("/w"), &[7; 32]).unwrap();
        assert_eq!(arg_after(&args, "-machine", "q35"), Some("q35,accel=tcg"));
        assert_eq!(arg_after(&args, "-append", ""), Some(l.cmdline.as_str()));
        assert!(arg_after(
            &args,
            "-drive",
            "file=/l/base.img,format=raw,if=none,readonly=on"
        )
        .is_some());
        assert!(arg_after(
            &args,
            "-device",
            "virtio-blk-pci,drive=layer0,serial=layer0"
        )
        .is_some());
        assert!(arg_after(&args, "-device", "name=charter.tee.insecure").is_some());
        assert!(arg_after(&args, "-device", "name=charter.agent.7").is_some());
        assert_eq!(
            arg_after(&args, "-device", "drive=scratch"),
            Some("virtio-blk-pci,drive=scratch,serial=charter-scratch")
        );
        assert_eq!(
            arg_after(&args, "-drive", "id=scratch"),
            Some("file=/w/scratch.img,format=raw,if=none,id=scratch,discard=ignore")
        );
        assert!(arg_after(&args, "-object", "sev-snp-guest").is_none());
        assert!(arg_after(&args, "-device", "charter.broker").is_none());
        l.broker_ports = 2;
        let args = l.args(Path::new("/w"), &[7; 32]).unwrap();
        assert_eq!(
            arg_after(&args, "-chardev", "id=broker1"),
            Some("socket,id=broker1,path=/w/broker1.sock,server=on,wait=off")
        );
        assert_eq!(
            arg_after(&args, "-device", "chardev=broker1"),
            Some("virtserialport,bus=vser0.0,chardev=broker1,name=charter.broker.1")
        );
    }

    #[test]
    fn snp_command_line() {
        let mut l = QemuLauncher::new(Path::new("/k"), Path::new("/i"), "console=ttyS0");
        l.accel = Accel::Kvm;
        l.snp = Some(SnpConfig {
            ovmf: PathBuf::from("/usr/share/ovmf/OVMF.amdsev.fd"),
            cbitpos: 51,
            reduced_phys_bits: 1,
            cpu: "EPYC-v4".into(),
            expected_measurement: [0; 48],
        });
        let digest = [0xabu8; 32];
        let args = l.args(Path::new("/w"), &digest).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert_eq!(
            arg_after(&args, "-object", "sev-snp-guest"),
            Some(
                format!(
                    "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,host-data={b64}"
                )
                .as_str()
            )
        );
        assert_eq!(
            arg_after(&args, "-object", "memory-backend-memfd"),
            Some("memory-backend-memfd,id=ram1,size=1024M,share=true,prealloc=false")
        );
        assert_eq!(
            arg_after(&args, "-machine", "q35"),
            Some("q35,accel=kvm,confidential-guest-support=sev0,memory-backend=ram1")
        );
        assert_eq!(arg_after(&args, "-cpu", ""), Some("EPYC-v4"));
        assert_eq!(
            arg_after(&args, "-bios", ""),
            Some("/usr/share/ovmf/OVMF.amdsev.fd")
        );
        // No simulated TEE next to a real one.
        assert!(arg_after(&args, "-device", "charter.tee.insecure").is_none());
    }

    #[test]
    fn refused_settings() {
        let l = QemuLauncher::new(Path::new("/k"), Path::new("/i"), "console=ttyS0");
        assert!(l.args(Path::new("/w"), &[0; 32]).is_err(), "no TEE at all");
        let mut l = QemuLauncher::new(Path::new("/k"), Path::new("/i"), INSECURE_TEE_PARAM);
        l.layers.push(LayerDisk {
            serial: "a,b".into(),
            path: PathBuf::from("/x"),
        });
        assert!(l.args(Path::new("/w"), &[0; 32]).is_err());
        l.layers[0].serial = "much-too-long-for-virtio".into();
        assert!(l.args(Path::new("/w"), &[0; 32]).is_err());
        l.layers[0].serial = SCRATCH_SERIAL.into();
        assert!(
            l.args(Path::new("/w"), &[0; 32]).is_err(),
            "a layer posing as scratch"
        );
    }
}
