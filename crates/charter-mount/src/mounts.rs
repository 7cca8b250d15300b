//! Overlay and tmpfs mounts, and unmounting.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::mount::{MountFlags, UnmountFlags};

use crate::Error;

/// mount(2) copies at most one page of option data.
const MAX_MOUNT_DATA: usize = 4095;

/// Overlay options beyond the directories. `index=off`: the verified layers are fresh loop
/// devices each time, so origin file handles into them would be meaningless (and `index=on`
/// ties an upper dir to one set of lowers). `redirect_dir=off`, `metacopy=off`: never follow
/// redirect or metacopy xattrs, whatever the kernel's build defaults are; the container gets
/// plain copy-up semantics (renaming a lower directory gives `EXDEV`, which tools handle).
const OVERLAY_FIXED_OPTIONS: &str = "index=off,redirect_dir=off,metacopy=off";

fn check_overlay_path(role: &'static str, path: &Path) -> Result<(), Error> {
    let bad = |reason| Error::OverlayPath {
        role,
        path: path.to_path_buf(),
        reason,
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(bad("empty path"));
    }
    for (c, reason) in [
        (b':', "contains ':' (the lowerdir separator)"),
        (b',', "contains ',' (the mount option separator)"),
        (b'\\', "contains '\\' (overlayfs's escape character)"),
        (0, "contains a NUL byte"),
    ] {
        if bytes.contains(&c) {
            return Err(bad(reason));
        }
    }
    Ok(())
}

/// Mounts an overlay on `target`: `lowers` top layer first (as overlayfs's `lowerdir` lists
/// them, the reverse of the policy's base-first layer order), a writable `upper` and its `work`
/// directory (same file system as `upper`, empty).
///
/// Paths containing `:`, `,`, `\` or NUL are refused rather than escaped. Mounted with `nodev`
/// (device nodes in layers are not usable; the runtime provides `/dev`) but not `nosuid`, so
/// set-user-ID programs in images keep working.
pub fn mount_overlay(
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), Error> {
    if lowers.is_empty() {
        return Err(Error::NoLowerLayers {
            target: target.to_path_buf(),
        });
    }
    let mut data = b"lowerdir=".to_vec();
    for (i, lower) in lowers.iter().enumerate() {
        check_overlay_path("lowerdir", lower)?;
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(lower.as_os_str().as_bytes());
    }
    for (role, path) in [("upperdir", upper), ("workdir", work)] {
        check_overlay_path(role, path)?;
        data.push(b',');
        data.extend_from_slice(role.as_bytes());
        data.push(b'=');
        data.extend_from_slice(path.as_os_str().as_bytes());
    }
    data.push(b',');
    data.extend_from_slice(OVERLAY_FIXED_OPTIONS.as_bytes());
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::OverlayOptionsTooLong {
            target: target.to_path_buf(),
            len: data.len(),
            max: MAX_MOUNT_DATA,
        });
    }
    // No NUL can be in `data`: every path was checked above.
    let data = CString::new(data).map_err(|_| Error::OverlayPath {
        role: "lowerdir",
        path: target.to_path_buf(),
        reason: "contains a NUL byte",
    })?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| Error::Mount {
        fstype: "overlay",
        source_desc: "overlay".to_owned(),
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Mounts a tmpfs of at most `size_bytes` bytes (non-zero: tmpfs reads 0 as unlimited) with
/// root directory mode `mode` (permission bits only, at most `0o7777`) on `target`, with
/// `nodev` and `nosuid`.
pub fn mount_tmpfs(target: &Path, size_bytes: u64, mode: u32) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidTmpfs {
        target: target.to_path_buf(),
        reason,
    };
    if size_bytes == 0 {
        return Err(invalid("size 0 would make the tmpfs unbounded".to_owned()));
    }
    if mode & !0o7777 != 0 {
        return Err(invalid(format!(
            "mode {mode:#o} has bits beyond the permission bits 0o7777"
        )));
    }
    let data = CString::new(format!("size={size_bytes},mode={mode:o}"))
        .map_err(|_| invalid("option string contains NUL".to_owned()))?;
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        data.as_c_str(),
    )
    .map_err(|e| Error::Mount {
        fstype: "tmpfs",
        source_desc: "tmpfs".to_owned(),
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Bind-mounts the directory `source` on `target` (`nodev`, `nosuid`; not recursive).
pub fn bind_mount(source: &Path, target: &Path) -> Result<(), Error> {
    rustix::mount::mount_bind(source, target).map_err(|e| Error::Mount {
        fstype: "bind",
        source_desc: source.display().to_string(),
        target: target.to_path_buf(),
        source: e.into(),
    })?;
    rustix::mount::mount_remount(
        target,
        MountFlags::BIND | MountFlags::NODEV | MountFlags::NOSUID,
        c"",
    )
    .map_err(|e| Error::Mount {
        fstype: "bind",
        source_desc: format!("remount nodev,nosuid of {}", source.display()),
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Unmounts the file system mounted on `target` (`umount2` without `MNT_DETACH` or
/// `MNT_FORCE`, not following a symlink at `target`): fails with `EBUSY` while it is in use.
pub fn unmount(target: &Path) -> Result<(), Error> {
    rustix::mount::unmount(target, UnmountFlags::NOFOLLOW).map_err(|e| Error::Unmount {
        target: target.to_path_buf(),
        source: e.into(),
    })
}
