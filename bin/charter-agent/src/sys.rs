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
