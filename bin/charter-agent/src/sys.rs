//! The few system calls the agent makes itself: signalling a process and, in the sandbox, the
//! private root that stands in for the utility VM's own root filesystem.

use std::path::Path;

use rustix::mount::{mount, mount_bind, mount_bind_recursive, mount_remount, unmount};
use rustix::mount::{MountFlags, UnmountFlags};

/// Sends `signal` to `pid`.
pub fn kill_pid(pid: charter_oci::Pid, signal: i32) -> Result<(), String> {
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| format!("signal {signal} is not a named signal"))?;
    let pid = rustix::process::Pid::from_raw(pid.as_raw())
        .ok_or_else(|| format!("pid {pid} is invalid"))?;
    rustix::process::kill_process(pid, sig).map_err(|e| format!("kill {pid}: {e}"))
}

fn at<'a>(what: &str, path: &'a Path) -> impl FnOnce(rustix::io::Errno) -> String + 'a {
    let what = what.to_owned();
    move |e| format!("{what} {}: {e}", path.display())
}

/// Builds the sandbox's private root at `new_root` and pivots into it. Runs first thing in the
/// fresh mount, pid, uts, ipc and net namespaces the launcher created (mount propagation
/// already private). The root holds read-only binds of the host's system directories (for the
/// OCI runtime), `/dev` and `/sys`, a fresh `/proc`, the host directory at `/host` and a
/// private tmpfs `/run` the host cannot see: layers, scratch and bundles live there.
pub fn enter_sandbox_root(new_root: &Path, host_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(new_root).map_err(|e| format!("{}: {e}", new_root.display()))?;
    mount(
        "charter-root",
        new_root,
        "tmpfs",
        MountFlags::empty(),
        c"mode=0755",
    )
    .map_err(at("mount tmpfs on", new_root))?;
    for dir in ["usr", "bin", "sbin", "lib", "lib64", "etc"] {
        let src = Path::new("/").join(dir);
        let dst = new_root.join(dir);
        let Ok(meta) = std::fs::symlink_metadata(&src) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            std::os::unix::fs::symlink(target, &dst)
                .map_err(|e| format!("{}: {e}", dst.display()))?;
            continue;
        }
        std::fs::create_dir(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        mount_bind_recursive(&src, &dst).map_err(at("bind", &src))?;
        mount_remount(&dst, MountFlags::BIND | MountFlags::RDONLY, c"")
            .map_err(at("remount read-only", &dst))?;
    }
    for (src, dir) in [("/dev", "dev"), ("/sys", "sys")] {
        let dst = new_root.join(dir);
        std::fs::create_dir(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        mount_bind_recursive(src, &dst).map_err(at("bind", Path::new(src)))?;
    }
    let proc_dir = new_root.join("proc");
    std::fs::create_dir(&proc_dir).map_err(|e| format!("{}: {e}", proc_dir.display()))?;
    mount(
        "proc",
        &proc_dir,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"",
    )
    .map_err(at("mount proc on", &proc_dir))?;
    let host = new_root.join("host");
    std::fs::create_dir(&host).map_err(|e| format!("{}: {e}", host.display()))?;
    mount_bind(host_dir, &host).map_err(at("bind", host_dir))?;
    for dir in ["run", "tmp"] {
        let dst = new_root.join(dir);
        std::fs::create_dir(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        mount(
            "tmpfs",
            &dst,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755",
        )
        .map_err(at("mount tmpfs on", &dst))?;
    }
    let old = new_root.join(".old-root");
    std::fs::create_dir(&old).map_err(|e| format!("{}: {e}", old.display()))?;
    rustix::process::pivot_root(new_root, &old).map_err(at("pivot_root to", new_root))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    unmount("/.old-root", UnmountFlags::DETACH).map_err(at("detach", Path::new("/.old-root")))?;
    std::fs::remove_dir("/.old-root").map_err(|e| format!("rmdir /.old-root: {e}"))?;
    rustix::system::sethostname(b"charter").map_err(|e| format!("sethostname: {e}"))?;
    Ok(())
}

/// Creates the agent's own directories under the private `/run`.
pub fn make_run_dirs() -> Result<(), String> {
    for d in [
        charter_agent_api::paths::LAYERS,
        charter_agent_api::paths::SCRATCH,
        charter_agent_api::paths::CONTAINERS,
        charter_agent_api::paths::SANDBOX_DIR,
        "/run/charter/runc",
        "/run/charter/tmp",
    ] {
        std::fs::create_dir_all(d).map_err(|e| format!("{d}: {e}"))?;
    }
    Ok(())
}

/// Brings the loopback interface up in the agent's network namespace (a fresh namespace has
/// `lo` down), with one rtnetlink `RTM_NEWLINK` request for ifindex 1 (always `lo`), so that
/// the workload endpoint on 127.0.0.1 is reachable by the group's containers.
pub fn loopback_up() -> Result<(), String> {
    use rustix::net::{recv, send, AddressFamily, RecvFlags, SendFlags, SocketType};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 1 | 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    // Protocol 0 is NETLINK_ROUTE.
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)
        .map_err(|e| format!("netlink socket: {e}"))?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    msg.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, pad
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    send(&fd, &msg, SendFlags::empty()).map_err(|e| format!("rtnetlink send: {e}"))?;
    let mut buf = [0u8; 512];
    let (n, _) =
        recv(&fd, &mut buf, RecvFlags::empty()).map_err(|e| format!("rtnetlink recv: {e}"))?;
    let field = |at: usize, len: usize| buf.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let errno = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, errno) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(format!(
            "bringing lo up: {}",
            std::io::Error::from_raw_os_error(-e)
        )),
        _ => Err("bringing lo up: unexpected rtnetlink answer".to_owned()),
    }
}
