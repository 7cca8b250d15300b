//! PID 1 mode: the agent as `/init` of the `qemu` launcher's utility VM (DESIGN.md D6).
//!
//! Runs when the agent is process 1 without arguments or is given `--init` as its only
//! argument (refused unless it is process 1: it mounts over `/dev`, `/run`, ...). It mounts the
//! kernel file systems, loads the modules the initramfs carries (in the order `charter-uvm`
//! computed from `modules.dep`), names the layer disks by their virtio serial numbers, then
//! serves the ordinary agent on a private unix socket and bridges the host's channels to it:
//!
//! * every virtio-serial port named `charter.agent.<n>` carries one host connection at a time
//!   (a port is a single byte stream; the host opens a session by writing, and closes it by
//!   disconnecting its end, which the guest sees as `POLLHUP`);
//! * the port `charter.tee.insecure` reaches the INSECURE simulated SNP on the host. It is
//!   used only when the measured kernel command line says `charter.tee=insecure-simulated`;
//!   otherwise the agent looks for a real TEE (`--tee auto`);
//! * the ports `charter.broker.<n>`, when the host offers them, carry the agent's connections
//!   to the policy's key broker (`broker_port`): the agent's broker client finds the bridge's
//!   socket `broker.sock` in the host directory, as in the sandbox.
//!
//! Layer disks: each virtio disk whose serial is a plain name appears as
//! `/run/charter/disks/<serial>` (a symlink to `/dev/vdX`); that directory is the agent's host
//! directory, so a `mount_device` source is the serial the host gave the disk. The disk's
//! contents are never trusted: the agent puts it under dm-verity with the policy's root hash.
//! The disk with serial `charter-scratch` is not a layer: scratch goes there, encrypted and
//! authenticated with keys made in the guest (`charter_mount::EncryptedScratch`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::mount::{mount, MountFlags};

use crate::Args;

/// The agent's own socket inside the VM (the bridges connect to it).
const AGENT_SOCKET: &str = "/run/charter/agent.sock";
/// The simulated TEE's socket inside the VM (bridged to the host's port).
const TEE_SOCKET: &str = "/run/charter/tee.sock";
/// Layer disks by serial.
const DISK_DIR: &str = "/run/charter/disks";
/// The serial of the host's scratch disk (never a layer source).
const SCRATCH_SERIAL: &str = "charter-scratch";
/// Where the scratch disk is linked (outside the host directory).
const SCRATCH_DISK: &str = "/run/charter/scratch.disk";
/// `mke2fs` in the initramfs (`charter_uvm::MKE2FS_PATH`).
const MKE2FS: &str = "/usr/sbin/mke2fs";
/// Virtio-serial port names.
const AGENT_PORT_PREFIX: &str = "charter.agent.";
const TEE_PORT: &str = "charter.tee.insecure";
const BROKER_PORT_PREFIX: &str = "charter.broker.";
/// The cmdline switch for the simulated TEE.
const INSECURE_TEE_PARAM: &str = "charter.tee=insecure-simulated";
/// Where `charter-uvm` puts the modules and their load order.
const MODULE_ORDER: &str = "/lib/charter/modules.order";
const MODULE_DIR: &str = "/lib/charter/modules";
/// How long the set of virtio-serial ports must stay the same before init uses it.
const PORTS_SETTLED: Duration = Duration::from_millis(50);
/// How often an agent port without a host connection is looked at again.
const NO_HOST_NAP: Duration = Duration::from_millis(25);
/// Largest simulated-TEE answer relayed (matches the provider's limit).
const MAX_TEE_ANSWER: u32 = 256 * 1024;

/// Whether to run as the VM's init: `--init` as the only argument, or process 1 started
/// without arguments (the kernel runs `/init` so). The sandbox launcher's agent is also
/// process 1 (of its pid namespace) but always gets `--listen`.
pub fn requested() -> bool {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [] => std::process::id() == 1,
        [only] => only == "--init",
        _ => false,
    }
}

/// PID 1: set the VM up, serve, and power off if serving ever stops (PID 1 must not exit).
pub fn main() -> ExitCode {
    let start = Instant::now();
    if std::process::id() != 1 {
        eprintln!("charter-agent: --init is only for process 1 of the utility VM");
        return ExitCode::FAILURE;
    }
    if let Err(e) = run(start) {
        eprintln!("charter-agent (init): {e}");
    }
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    ExitCode::FAILURE
}

fn run(start: Instant) -> Result<(), String> {
    move_root_to_tmpfs()?;
    mount_kernel_filesystems()?;
    load_modules();
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let ports = wait_for_ports(Duration::from_secs(5));
    let scratch_disk = name_disks()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let insecure_tee = cmdline.split_whitespace().any(|p| p == INSECURE_TEE_PARAM);
    let tee = if insecure_tee {
        let port = ports
            .iter()
            .find(|(name, _)| name == TEE_PORT)
            .map(|(_, dev)| dev.clone())
            .ok_or_else(|| format!("{INSECURE_TEE_PARAM} is set but no {TEE_PORT} port exists"))?;
        tee_bridge(&port)?;
        format!("insecure-simulated-socket={TEE_SOCKET}")
    } else {
        "auto".to_owned()
    };
    let mut agent_ports = 0;
    for (name, dev) in &ports {
        if name.starts_with(AGENT_PORT_PREFIX) {
            let dev = dev.clone();
            std::thread::spawn(move || port_bridge(&dev));
            agent_ports += 1;
        }
    }
    let mut broker_ports = Vec::new();
    for (name, dev) in &ports {
        if name.starts_with(BROKER_PORT_PREFIX) {
            // A port that does not open only costs the broker a concurrent connection.
            match open_port(dev) {
                Ok(port) => broker_ports.push((dev.clone(), port)),
                Err(e) => eprintln!("charter-agent (init): {e}"),
            }
        }
    }
    let broker_count = broker_ports.len();
    if broker_count > 0 {
        // Bound before the agent starts: the broker client looks for it when the policy is set.
        let socket = Path::new(DISK_DIR).join(charter_agent_api::paths::BROKER_RELAY);
        crate::broker_port::start(broker_ports, &socket)?;
    }
    eprintln!(
        "charter-agent (init): ready after {} ms: {agent_ports} agent port(s), {broker_count} broker port(s), tee {tee}",
        start.elapsed().as_millis()
    );
    crate::run_with(Args {
        listen: PathBuf::from(AGENT_SOCKET),
        host_dir: PathBuf::from(DISK_DIR),
        sandbox_root: None,
        tee,
        runc: PathBuf::from("/usr/sbin/runc"),
        scratch_disk,
        mke2fs: PathBuf::from(MKE2FS),
    })
}

/// The initramfs is the kernel's initial root mount, which `pivot_root(2)` cannot leave, so
/// the OCI runtime could not pivot into a container root. Copies the initramfs into a fresh
/// tmpfs and makes that the root (`switch_root`: move the mount onto `/`, then `chroot`).
fn move_root_to_tmpfs() -> Result<(), String> {
    let new_root = Path::new("/.charter-root");
    std::fs::create_dir_all(new_root).map_err(|e| format!("mkdir {}: {e}", new_root.display()))?;
    mount(
        "charter-root",
        new_root,
        "tmpfs",
        MountFlags::empty(),
        c"mode=0755",
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", new_root.display()))?;
    copy_tree(Path::new("/"), new_root, new_root)?;
    std::env::set_current_dir(new_root).map_err(|e| format!("chdir: {e}"))?;
    rustix::mount::mount_move(".", "/").map_err(|e| format!("move the new root onto /: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Copies directories, regular files (with their modes) and symlinks of `from` into `to`,
/// skipping `skip`. Device nodes are left out (devtmpfs provides them).
fn copy_tree(from: &Path, to: &Path, skip: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let rd = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("read {}: {e}", from.display()))?;
        let src = entry.path();
        if src == skip {
            continue;
        }
        let dst = to.join(entry.file_name());
        let meta =
            std::fs::symlink_metadata(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let ft = meta.file_type();
        let err = |e: std::io::Error| format!("copy {}: {e}", src.display());
        if ft.is_dir() {
            std::fs::create_dir(&dst).map_err(err)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(err)?;
            copy_tree(&src, &dst, skip)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src).map_err(err)?;
            std::os::unix::fs::symlink(target, &dst).map_err(err)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(err)?;
        }
    }
    Ok(())
}

fn mount_kernel_filesystems() -> Result<(), String> {
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let table: [(&str, &str, MountFlags, &std::ffi::CStr); 6] = [
        ("/proc", "proc", nosuid, c""),
        ("/sys", "sysfs", nosuid, c""),
        ("/dev", "devtmpfs", MountFlags::NOSUID, c"mode=0755"),
        (
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755",
        ),
        (
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=1777",
        ),
        ("/sys/fs/cgroup", "cgroup2", nosuid, c""),
    ];
    for (target, fstype, flags, data) in table {
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        match mount(fstype, target, fstype, flags, data) {
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {target}: {e}")),
        }
    }
    for dir in ["/dev/pts", "/dev/shm"] {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    let _ = mount("devpts", "/dev/pts", "devpts", MountFlags::NOSUID, c"");
    let _ = mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777",
    );
    Ok(())
}

/// Loads the initramfs's modules in order. A module that fails is reported and skipped (the
/// feature it provides then fails where it is used, with its own error).
fn load_modules() {
    let Ok(order) = std::fs::read_to_string(MODULE_ORDER) else {
        eprintln!("charter-agent (init): no {MODULE_ORDER}: loading no modules");
        return;
    };
    for name in order.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let path = Path::new(MODULE_DIR).join(format!("{name}.ko"));
        let result = File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
            match rustix::system::finit_module(&f, c"", 0) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Err(e) = result {
            eprintln!("charter-agent (init): module {name}: {e}");
        }
    }
}

/// `(name, /dev/vportNpM)` of every virtio-serial port, waiting up to `timeout` for the first
/// one to appear with its device node and then until the set has not changed for
/// `PORTS_SETTLED` (the host announces ports one control message at a time: returning at the
/// first would leave later ports, the simulated TEE's among them, without a bridge).
fn wait_for_ports(timeout: Duration) -> Vec<(String, PathBuf)> {
    let deadline = Instant::now() + timeout;
    let mut last: Vec<(String, PathBuf)> = Vec::new();
    let mut since = Instant::now();
    loop {
        let mut ports = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                let dev = Path::new("/dev").join(e.file_name());
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                let name = name.trim().to_owned();
                if !name.is_empty() && dev.exists() {
                    ports.push((name, dev));
                }
            }
        }
        ports.sort();
        if ports != last {
            last = ports;
            since = Instant::now();
        } else if !last.is_empty() && since.elapsed() >= PORTS_SETTLED {
            return last;
        }
        if Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `/run/charter/disks/<serial>` -> `/dev/vdX` for each virtio disk with a plain serial, except
/// the scratch disk (serial `charter-scratch`), which is linked at `SCRATCH_DISK` and returned.
fn name_disks() -> Result<Option<PathBuf>, String> {
    std::fs::create_dir_all(DISK_DIR).map_err(|e| format!("{DISK_DIR}: {e}"))?;
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    let mut scratch = None;
    for e in rd.flatten() {
        let dev = e.file_name().to_string_lossy().into_owned();
        if !dev.starts_with("vd") {
            continue;
        }
        let serial = std::fs::read_to_string(e.path().join("serial")).unwrap_or_default();
        let serial = serial.trim();
        if !charter_agent_api::paths::valid_component(serial) {
            continue;
        }
        let node = Path::new("/dev").join(&dev);
        // devtmpfs creates the node asynchronously.
        for _ in 0..200 {
            if node.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let link = if serial == SCRATCH_SERIAL {
            if scratch.is_some() {
                return Err(format!(
                    "more than one disk has the serial {SCRATCH_SERIAL}"
                ));
            }
            scratch = Some(PathBuf::from(SCRATCH_DISK));
            PathBuf::from(SCRATCH_DISK)
        } else {
            Path::new(DISK_DIR).join(serial)
        };
        std::os::unix::fs::symlink(&node, &link)
            .map_err(|e| format!("{} -> {}: {e}", link.display(), node.display()))?;
    }
    Ok(scratch)
}

fn open_port(dev: &Path) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(dev)
        .map_err(|e| format!("open {}: {e}", dev.display()))
}

/// Serves one agent port forever: each host session becomes one agent connection.
fn port_bridge(dev: &Path) {
    let port = match open_port(dev) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("charter-agent (init): {e}");
            return;
        }
    };
    loop {
        // Wait for the host to connect and write. While no host is connected the port polls
        // as `POLLHUP` (and `POLLIN`: a read would not block, it returns end-of-file), level
        // triggered, and nothing signals a connection: look again after a nap.
        let mut fds = [PollFd::new(&port, PollFlags::IN)];
        let ready = poll(&mut fds, Some(&secs(1))).unwrap_or(0);
        let revents = fds[0].revents();
        if revents.contains(PollFlags::HUP) {
            std::thread::sleep(NO_HOST_NAP);
            continue;
        }
        if ready == 0 || !revents.contains(PollFlags::IN) {
            continue;
        }
        let conn = match connect_agent() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("charter-agent (init): {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = session(&port, conn) {
            eprintln!("charter-agent (init): port {}: {e}", dev.display());
        }
    }
}

fn connect_agent() -> Result<UnixStream, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(AGENT_SOCKET) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("connect {AGENT_SOCKET}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn secs(s: i64) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: s,
        tv_nsec: 0,
    }
}

/// Copies bytes both ways between the port and one agent connection until the host
/// disconnects (`POLLHUP` on the port) or the agent closes the connection. Bytes the agent
/// still had for a host that left are dropped, never delivered to the next session.
fn session(port: &File, conn: UnixStream) -> Result<(), String> {
    conn.set_nonblocking(true)
        .map_err(|e| format!("agent socket: {e}"))?;
    let mut to_agent: Vec<u8> = Vec::new();
    let mut to_host: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut conn_ref = &conn;
    let mut port_ref = port;
    loop {
        let mut port_ev = PollFlags::empty();
        let mut conn_ev = PollFlags::empty();
        if to_agent.is_empty() {
            port_ev |= PollFlags::IN;
        } else {
            conn_ev |= PollFlags::OUT;
        }
        if to_host.is_empty() {
            conn_ev |= PollFlags::IN;
        } else {
            port_ev |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(port, port_ev), PollFd::new(&conn, conn_ev)];
        match poll(&mut fds, Some(&secs(1))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let (pr, cr) = (fds[0].revents(), fds[1].revents());
        if pr.contains(PollFlags::IN) {
            match port_ref.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => to_agent.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read port: {e}")),
            }
        } else if pr.contains(PollFlags::HUP) {
            // The host closed its end: the session is over.
            return Ok(());
        }
        if pr.contains(PollFlags::OUT) && !to_host.is_empty() {
            match port_ref.write(&to_host) {
                Ok(n) => drop(to_host.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write port: {e}")),
            }
        }
        if cr.contains(PollFlags::OUT) && !to_agent.is_empty() {
            match conn_ref.write(&to_agent) {
                Ok(n) => drop(to_agent.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write agent: {e}")),
            }
        }
        if cr.intersects(PollFlags::IN | PollFlags::HUP) {
            match conn_ref.read(&mut buf) {
                // The agent closed the connection (after a frame it could not recover from).
                Ok(0) => return Ok(()),
                Ok(n) => to_host.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read agent: {e}")),
            }
        }
    }
}

/// Relays the simulated TEE protocol (64 bytes of REPORT_DATA out, a 4-byte big-endian
/// length and that much evidence JSON back) between `TEE_SOCKET` and the host's port, one
/// request at a time.
fn tee_bridge(dev: &Path) -> Result<(), String> {
    let port = Arc::new(Mutex::new(open_port(dev)?));
    let _ = std::fs::remove_file(TEE_SOCKET);
    let listener =
        UnixListener::bind(TEE_SOCKET).map_err(|e| format!("listen on {TEE_SOCKET}: {e}"))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let port = Arc::clone(&port);
            std::thread::spawn(move || {
                let port = port.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = tee_exchange(&port, &mut conn) {
                    eprintln!("charter-agent (init): simulated TEE relay: {e}");
                }
            });
        }
    });
    Ok(())
}

fn tee_exchange(port: &File, conn: &mut UnixStream) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut request = [0u8; 64];
    conn.read_exact(&mut request)
        .map_err(|e| format!("read request: {e}"))?;
    // Drop anything a previous, abandoned exchange left in the port.
    let mut scratch = [0u8; 4096];
    while matches!((&*port).read(&mut scratch), Ok(n) if n > 0) {}
    port_write_all(port, &request, deadline)?;
    let mut len = [0u8; 4];
    port_read_exact(port, &mut len, deadline)?;
    let n = u32::from_be_bytes(len);
    if n > MAX_TEE_ANSWER {
        return Err(format!("answer of {n} bytes exceeds {MAX_TEE_ANSWER}"));
    }
    let mut body = vec![0u8; n as usize];
    port_read_exact(port, &mut body, deadline)?;
    conn.write_all(&len)
        .and_then(|()| conn.write_all(&body))
        .map_err(|e| format!("write answer: {e}"))
}

fn wait_port(port: &File, ev: PollFlags, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("the host's simulated TEE did not answer in time".into());
    }
    let fd = port.as_fd();
    let mut fds = [PollFd::new(&fd, ev)];
    let t = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: left.min(Duration::from_millis(100)).subsec_nanos().into(),
    };
    let _ = poll(&mut fds, Some(&t));
    Ok(())
}

fn port_write_all(port: &File, mut data: &[u8], deadline: Instant) -> Result<(), String> {
    while !data.is_empty() {
        wait_port(port, PollFlags::OUT, deadline)?;
        match (&*port).write(data) {
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("write port: {e}")),
        }
    }
    Ok(())
}

fn port_read_exact(port: &File, mut data: &mut [u8], deadline: Instant) -> Result<(), String> {
    while !data.is_empty() {
        wait_port(port, PollFlags::IN, deadline)?;
        match (&*port).read(data) {
            Ok(0) => {}
            Ok(n) => data = data.get_mut(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("read port: {e}")),
        }
    }
    Ok(())
}
