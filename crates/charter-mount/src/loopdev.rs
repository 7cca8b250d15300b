//! Loop devices through their ioctls: the only unsafe code of this crate.
//!
//! There is no maintained pure-Rust loop crate without bindgen (the `loopdev` crate needs
//! libclang), and the interface is six ioctls on two fixed structs, so they are declared here
//! with nix's ioctl macros. The struct layouts are those of `<linux/loop.h>` and their sizes are
//! asserted at compile time.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use crate::Error;

/// The loop control device.
pub(crate) const LOOP_CONTROL: &str = "/dev/loop-control";
/// `LO_FLAGS_READ_ONLY`.
const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR`: the device detaches itself when its last opener closes it.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_NAME_SIZE`.
const LO_NAME_SIZE: usize = 64;
/// How many free devices to try before giving up on a race for them.
const MAX_ATTEMPTS: u32 = 64;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>` (Linux 5.8+).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopInfo64 {
    fn zeroed() -> Self {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

mod ioctl {
    // The loop ioctls predate the _IOC encoding: they are "bad" ioctl numbers.
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, super::LoopInfo64);
    nix::ioctl_read_bad!(loop_get_status64, 0x4C05, super::LoopInfo64);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, super::LoopConfig);
}

/// An attached loop device, held open (std opens every file `O_CLOEXEC`). Dropping it detaches the device unless it was marked
/// as mounted (then `LO_FLAGS_AUTOCLEAR` detaches it when the last mount goes away).
#[derive(Debug)]
pub(crate) struct LoopDevice {
    dev: File,
    path: PathBuf,
    mounted: AtomicBool,
}

fn loop_err(syscall: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(syscall, path, std::io::Error::from(e))
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device, read-only, autoclear, without partition scan,
    /// and checks that the device is read-only and backed by `backing`'s inode. `name` goes to
    /// `lo_file_name` (truncated to 63 bytes). With `legacy`, skips `LOOP_CONFIGURE`.
    pub(crate) fn attach_read_only(
        backing: &File,
        name: &str,
        legacy: bool,
    ) -> Result<LoopDevice, Error> {
        let backing_meta = backing
            .metadata()
            .map_err(|e| Error::io("fstat", "memfd", e))?;
        let backing_fd = u32::try_from(backing.as_raw_fd()).map_err(|_| {
            Error::io(
                "LOOP_CONFIGURE",
                LOOP_CONTROL,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        let ctl = OpenOptions::new()
            .read(true)
            .write(true)
            .open(LOOP_CONTROL)
            .map_err(|e| Error::io("open", LOOP_CONTROL, e))?;
        let mut info = LoopInfo64::zeroed();
        info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        let name = name.as_bytes();
        let n = name.len().min(LO_NAME_SIZE.saturating_sub(1));
        if let (Some(dst), Some(src)) = (info.lo_file_name.get_mut(..n), name.get(..n)) {
            dst.copy_from_slice(src);
        }
        let mut configure_supported = !legacy;
        for _ in 0..MAX_ATTEMPTS {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns a device number;
            // `ctl` is an open descriptor of /dev/loop-control for the whole call.
            let number = unsafe { ioctl::loop_ctl_get_free(ctl.as_raw_fd()) }
                .map_err(|e| loop_err("LOOP_CTL_GET_FREE", Path::new(LOOP_CONTROL), e))?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            // Opened read-only: the kernel then makes the device read-only whatever the flags.
            let dev = OpenOptions::new()
                .read(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            if configure_supported {
                let config = LoopConfig {
                    fd: backing_fd,
                    block_size: 0,
                    info,
                    reserved: [0; 8],
                };
                // SAFETY: LOOP_CONFIGURE reads one `struct loop_config` (layout and size
                // asserted above) from the pointer, which refers to a live local for the whole
                // call; `dev` is an open loop device and `config.fd` an open file.
                match unsafe { ioctl::loop_configure(dev.as_raw_fd(), &config) } {
                    Ok(_) => {}
                    // Someone else claimed this device between GET_FREE and now.
                    Err(Errno::EBUSY) => continue,
                    // Kernels before 5.8 do not know LOOP_CONFIGURE.
                    Err(Errno::EINVAL | Errno::ENOTTY) => configure_supported = false,
                    Err(e) => return Err(loop_err("LOOP_CONFIGURE", &path, e)),
                }
            }
            if !configure_supported {
                // SAFETY: LOOP_SET_FD takes a file descriptor by value; `backing` is open for
                // the whole call and `dev` is an open loop device.
                match unsafe { ioctl::loop_set_fd(dev.as_raw_fd(), backing.as_raw_fd()) } {
                    Ok(_) => {}
                    Err(Errno::EBUSY) => continue,
                    Err(e) => return Err(loop_err("LOOP_SET_FD", &path, e)),
                }
                let device = LoopDevice {
                    dev,
                    path,
                    mounted: AtomicBool::new(false),
                };
                // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64` (layout asserted
                // above) from a pointer to a live local; `device.dev` is an open loop device.
                unsafe { ioctl::loop_set_status64(device.dev.as_raw_fd(), &info) }
                    .map_err(|e| loop_err("LOOP_SET_STATUS64", &device.path, e))?;
                device.check(backing_meta.dev(), backing_meta.ino())?;
                return Ok(device);
            }
            let device = LoopDevice {
                dev,
                path,
                mounted: AtomicBool::new(false),
            };
            // On error `device` is dropped, which detaches it.
            device.check(backing_meta.dev(), backing_meta.ino())?;
            return Ok(device);
        }
        Err(Error::NoFreeLoopDevice {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The device node, `/dev/loopN`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Do not detach on drop: a mount holds the device, autoclear detaches it after the last
    /// unmount.
    pub(crate) fn mark_mounted(&self) {
        self.mounted.store(true, Ordering::SeqCst);
    }

    fn status(&self) -> Result<LoopInfo64, Error> {
        let mut info = LoopInfo64::zeroed();
        // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64` (layout asserted above)
        // through the pointer, which refers to a live, writable local for the whole call.
        unsafe { ioctl::loop_get_status64(self.dev.as_raw_fd(), &mut info) }
            .map_err(|e| loop_err("LOOP_GET_STATUS64", &self.path, e))?;
        Ok(info)
    }

    /// The device must be read-only, unshifted and backed by the inode we attached.
    fn check(&self, dev: u64, ino: u64) -> Result<(), Error> {
        let info = self.status()?;
        let bad = |what: String| Error::LoopState {
            device: self.path.clone(),
            what,
        };
        if info.lo_flags & LO_FLAGS_READ_ONLY == 0 {
            return Err(bad(format!(
                "is not read-only (flags {:#x})",
                info.lo_flags
            )));
        }
        if info.lo_inode != ino || info.lo_device != dev {
            return Err(bad(format!(
                "is backed by device {:#x} inode {}, not the verified copy (device {dev:#x} inode {ino})",
                info.lo_device, info.lo_inode
            )));
        }
        if info.lo_offset != 0 || info.lo_sizelimit != 0 {
            return Err(bad(format!(
                "has offset {} and size limit {}, expected none",
                info.lo_offset, info.lo_sizelimit
            )));
        }
        Ok(())
    }

    fn detach(&self) -> Result<(), Error> {
        // SAFETY: LOOP_CLR_FD takes no argument; `self.dev` is an open loop device.
        unsafe { ioctl::loop_clr_fd(self.dev.as_raw_fd()) }
            .map(drop)
            .map_err(|e| loop_err("LOOP_CLR_FD", &self.path, e))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if !self.mounted.load(Ordering::SeqCst) {
            // Best effort: with LO_FLAGS_AUTOCLEAR closing `dev` detaches it anyway.
            let _ = self.detach();
        }
    }
}
