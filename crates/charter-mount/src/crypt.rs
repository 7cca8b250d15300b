//! Encrypted, integrity-protected scratch on a host disk, for the `qemu` launcher's utility VM
//! (DESIGN.md D6). Container writes (overlay upper directories) go to a virtio disk the host
//! owns, so the guest stores them there only as ciphertext it can authenticate:
//!
//! ```text
//! ext4 (mke2fs in the guest)
//!   dm-crypt      aes-xts-plain64, 512-bit key, 4096-byte sectors
//!     dm-integrity  hmac(sha256) tag per 4096-byte block, over (sector, ciphertext),
//!                   direct mode (no journal: the scratch never outlives the VM)
//!       /dev/vdX      the host's disk
//! ```
//!
//! Both keys come from the guest kernel's CSPRNG (`getrandom(2)`) when the store is opened,
//! live only in the kernel's device-mapper tables and in this process for the length of the
//! table loads (then zeroed), and are never written anywhere: the scratch is unreadable, and
//! any block the host changes reads as `EIO`, from the moment the VM stops or the store is
//! closed. A block the guest never wrote also reads as `EIO` (its tag was never computed), so
//! the file system is created by the guest over the encrypted device, and ext4 never reads a
//! block it has not written.
//!
//! The integrity target formats the disk itself on first use (the kernel does so when the
//! superblock area is all zero, which [`EncryptedScratch::open`] makes sure of), and reports
//! how many sectors it provides through `DM_TABLE_STATUS`; the tables then cover exactly that.
//! Residual risks (`docs/threat-model.md`): the host sees which blocks are written and when,
//! and can replay an older version of a block it saw before (dm-integrity binds a tag to its
//! sector, not to a version); it cannot read or forge one.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::mount::MountFlags;
use zeroize::Zeroizing;

use crate::dm::{self, off, Cmd, Request};
use crate::Error;

/// Bytes per block of every layer of the stack (ext4, dm-crypt sectors, integrity blocks).
pub const SCRATCH_BLOCK_SIZE: u64 = 4096;
/// The dm-integrity superblock area the kernel formats when it is all zero (one block).
const SUPERBLOCK_BYTES: usize = 4096;
/// HMAC-SHA256 tags.
const TAG_BYTES: u32 = 32;
/// AES-256-XTS takes two 256-bit keys.
const XTS_KEY_BYTES: usize = 64;
const HMAC_KEY_BYTES: usize = 32;
/// 512-byte sectors per block (device-mapper tables count 512-byte sectors).
const SECTORS_PER_BLOCK: u64 = SCRATCH_BLOCK_SIZE / 512;
/// Bytes copied per write from the staging file (a multiple of the block size).
const COPY_CHUNK: usize = 1 << 20;
/// Disks smaller than this cannot hold a useful file system.
const MIN_DISK_BYTES: u64 = 16 << 20;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A key (or a table holding one) that is zeroed when dropped.
struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    fn random(len: usize) -> Result<Secret, Error> {
        let mut s = Secret(Zeroizing::new(vec![0u8; len]));
        let mut filled = 0;
        while filled < len {
            let rest = s.0.get_mut(filled..).unwrap_or_default();
            let n = rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::io("getrandom", "(kernel CSPRNG)", e.into()))?;
            filled = filled.saturating_add(n);
        }
        Ok(s)
    }

    fn text(text: String) -> Secret {
        Secret(Zeroizing::new(text.into_bytes()))
    }

    fn hex(&self) -> Secret {
        Secret::text(hex::encode(&*self.0))
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The host's scratch disk under dm-integrity and dm-crypt with fresh keys.
///
/// Dropping it removes both mappings (deferred while the file system is mounted); the keys die
/// with them.
#[derive(Debug)]
pub struct EncryptedScratch {
    integrity_name: String,
    crypt_name: String,
    device: PathBuf,
    disk: PathBuf,
    data_bytes: u64,
    mounted: AtomicBool,
}

impl EncryptedScratch {
    /// Puts `disk` (a block device the host provides; its contents are discarded) under
    /// dm-integrity (`hmac(sha256)`) and dm-crypt (`aes-xts-plain64`) with keys drawn now.
    ///
    /// # Errors
    /// [`Error::NotAFile`] if `disk` is not a block device, [`Error::Io`] naming the
    /// operation or device-mapper ioctl that failed (the guest kernel lacks `dm-integrity`,
    /// `dm-crypt`, `xts` or `aes`), [`Error::Scratch`] when the disk is too small or the
    /// integrity target reports something unexpected.
    pub fn open(disk: &Path) -> Result<EncryptedScratch, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk)
            .map_err(|e| Error::io("open", disk, e))?;
        let meta = file.metadata().map_err(|e| Error::io("fstat", disk, e))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::NotAFile {
                path: disk.to_owned(),
                kind: "not a block device",
            });
        }
        let disk_len = dm::block_len(&file, disk)?;
        if disk_len < MIN_DISK_BYTES {
            return Err(scratch(
                disk,
                format!("{disk_len} bytes is less than the minimum of {MIN_DISK_BYTES}"),
            ));
        }
        // Whatever the host left there: the integrity target formats an all-zero superblock.
        file.write_all_at(&[0u8; SUPERBLOCK_BYTES], 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("zero the integrity superblock", disk, e))?;
        let rdev = meta.rdev();
        let disk_dev = format!("{}:{}", nix::libc::major(rdev), nix::libc::minor(rdev));
        drop(file);

        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let mut store = EncryptedScratch {
            integrity_name: format!("charter-scratch-integrity-{id}"),
            crypt_name: format!("charter-scratch-{id}"),
            device: PathBuf::new(),
            disk: disk.to_owned(),
            data_bytes: 0,
            mounted: AtomicBool::new(false),
        };
        let control = dm::open_control()?;

        // 1. dm-integrity, first over one block: the constructor formats the disk and computes
        //    how many sectors it provides.
        let hmac_key = Secret::random(HMAC_KEY_BYTES)?.hex();
        let params = Secret::text(format!(
            "{disk_dev} 0 {TAG_BYTES} D 4 block_size:{SCRATCH_BLOCK_SIZE} internal_hash:hmac(sha256):{} fix_padding fix_hmac",
            hmac_key.as_str()
        ));
        drop(hmac_key);
        Request::new(&store.integrity_name, 0, &[], 0).issue(&control, Cmd::Create, disk)?;
        let created = Created(&store.integrity_name);
        let payload = Secret(Zeroizing::new(dm::target_payload(
            SECTORS_PER_BLOCK,
            "integrity",
            params.as_str(),
        )));
        load_and_resume(&control, &store.integrity_name, &payload.0, disk)?;
        let provided = provided_sectors(&control, &store.integrity_name, disk)?;
        let sectors = (provided / SECTORS_PER_BLOCK).saturating_mul(SECTORS_PER_BLOCK);
        if sectors < MIN_DISK_BYTES / 2 / 512 {
            return Err(scratch(
                disk,
                format!("dm-integrity provides only {provided} sectors"),
            ));
        }
        // 2. The same target over everything it provides.
        let payload = Secret(Zeroizing::new(dm::target_payload(
            sectors,
            "integrity",
            params.as_str(),
        )));
        drop(params);
        load_and_resume(&control, &store.integrity_name, &payload.0, disk)?;
        drop(payload);
        let integrity_node = node_of(&control, &store.integrity_name, disk)?;
        created.keep();

        // 3. dm-crypt over the integrity device.
        let xts_key = Secret::random(XTS_KEY_BYTES)?.hex();
        let crypt_params = Secret::text(format!(
            "aes-xts-plain64 {} 0 {integrity_node} 0 3 sector_size:{SCRATCH_BLOCK_SIZE} no_read_workqueue no_write_workqueue",
            xts_key.as_str()
        ));
        drop(xts_key);
        let mut create = Request::new(&store.crypt_name, 0, &[], 0);
        if let Err(e) = create.issue(&control, Cmd::Create, disk) {
            let _ = dm::remove(&store.integrity_name, false);
            return Err(e);
        }
        let (_, minor) = dm::decode_dev(create.get_u64(off::DEV));
        store.device = PathBuf::from(format!("/dev/dm-{minor}"));
        store.data_bytes = sectors.saturating_mul(512);
        // From here on, dropping `store` removes both mappings.
        let payload = Secret(Zeroizing::new(dm::target_payload(
            sectors,
            "crypt",
            crypt_params.as_str(),
        )));
        drop(crypt_params);
        load_and_resume(&control, &store.crypt_name, &payload.0, disk)?;
        drop(payload);
        store.device = dm::wait_for_node(&store.device)?;
        Ok(store)
    }

    /// Creates an ext2 file system (4096-byte blocks, one inode per 128 KiB, no reserved
    /// blocks) for the encrypted device with `mke2fs` (busybox's), then mounts it on `target`
    /// with `nodev`, `nosuid`.
    ///
    /// `mke2fs` writes parts of blocks, which the page cache would complete by reading blocks
    /// that were never written (and so have no valid tag: `EIO`). It therefore runs on a sparse
    /// file of the device's size in guest memory (`staging`, on a tmpfs), and only the blocks it
    /// wrote are copied to the device, whole.
    ///
    /// # Errors
    /// [`Error::Scratch`] if `mke2fs` cannot run or fails, [`Error::Io`] for the staging file
    /// or the copy, [`Error::Mount`].
    pub fn format_and_mount(
        &self,
        mke2fs: &Path,
        staging: &Path,
        target: &Path,
    ) -> Result<(), Error> {
        let _ = std::fs::remove_file(staging);
        let result = self.format(mke2fs, staging);
        let _ = std::fs::remove_file(staging);
        result?;
        dm::mount_mapped(
            &self.device,
            target,
            "ext4",
            MountFlags::NODEV | MountFlags::NOSUID,
            &self.mounted,
        )
    }

    fn format(&self, mke2fs: &Path, staging: &Path) -> Result<(), Error> {
        let image = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(staging)
            .map_err(|e| Error::io("create", staging, e))?;
        image
            .set_len(self.data_bytes)
            .map_err(|e| Error::io("ftruncate", staging, e))?;
        let out = Command::new(mke2fs)
            .args(["-q", "-F", "-b", "4096", "-i", "131072", "-m", "0"])
            .arg(staging)
            .output()
            .map_err(|e| scratch(&self.disk, format!("running {}: {e}", mke2fs.display())))?;
        if !out.status.success() {
            return Err(scratch(
                &self.disk,
                format!(
                    "{} {} failed ({}): {}",
                    mke2fs.display(),
                    staging.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let device = OpenOptions::new()
            .write(true)
            .open(&self.device)
            .map_err(|e| Error::io("open", &self.device, e))?;
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut at = 0u64;
        while at < self.data_bytes {
            // The next written extent of the staging file (tmpfs tracks pages).
            let start = match rustix::fs::seek(&image, rustix::fs::SeekFrom::Data(at)) {
                Ok(s) => s,
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(Error::io("lseek(SEEK_DATA)", staging, e.into())),
            };
            let end = rustix::fs::seek(&image, rustix::fs::SeekFrom::Hole(start))
                .map_err(|e| Error::io("lseek(SEEK_HOLE)", staging, e.into()))?;
            let mut pos = (start / SCRATCH_BLOCK_SIZE).saturating_mul(SCRATCH_BLOCK_SIZE);
            let end = end
                .div_ceil(SCRATCH_BLOCK_SIZE)
                .saturating_mul(SCRATCH_BLOCK_SIZE);
            let end = end.min(self.data_bytes);
            while pos < end {
                let n = usize::try_from(end.saturating_sub(pos))
                    .unwrap_or(COPY_CHUNK)
                    .min(COPY_CHUNK);
                let chunk = buf.get_mut(..n).unwrap_or_default();
                image
                    .read_exact_at(chunk, pos)
                    .map_err(|e| Error::io("read", staging, e))?;
                device
                    .write_all_at(chunk, pos)
                    .map_err(|e| Error::io("write", &self.device, e))?;
                pos = pos.saturating_add(n as u64);
            }
            at = end;
        }
        device
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.device, e))
    }

    /// The decrypted device (`/dev/dm-N`).
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Bytes the encrypted device provides.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
}

impl Drop for EncryptedScratch {
    fn drop(&mut self) {
        let deferred = self.mounted.load(Ordering::SeqCst);
        let _ = dm::remove(&self.crypt_name, deferred);
        let _ = dm::remove(&self.integrity_name, true);
    }
}

/// Removes a half-built mapping unless [`Created::keep`] is called.
struct Created<'a>(&'a str);

impl Created<'_> {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        let _ = dm::remove(self.0, false);
    }
}

fn scratch(disk: &Path, reason: String) -> Error {
    Error::Scratch {
        disk: disk.to_owned(),
        reason,
    }
}

fn load_and_resume(
    control: &std::fs::File,
    name: &str,
    payload: &[u8],
    what: &Path,
) -> Result<(), Error> {
    Request::new(name, 0, payload, 1).issue(control, Cmd::TableLoad, what)?;
    Request::new(name, 0, &[], 0).issue(control, Cmd::Resume, what)
}

/// `<major>:<minor>` of the mapped device `name`.
fn node_of(control: &std::fs::File, name: &str, what: &Path) -> Result<String, Error> {
    let mut r = Request::new(name, 0, &[0u8; 512], 0);
    r.issue(control, Cmd::TableStatus, what)?;
    let (major, minor) = dm::decode_dev(r.get_u64(off::DEV));
    Ok(format!("{major}:{minor}"))
}

/// The integrity target's status line: `<mismatches> <provided sectors> <recalc sector|->`.
fn provided_sectors(control: &std::fs::File, name: &str, what: &Path) -> Result<u64, Error> {
    let mut r = Request::new(name, 0, &[0u8; 4096], 0);
    r.issue(control, Cmd::TableStatus, what)?;
    let start = r.get_u32(off::DATA_START) as usize;
    let status = r.get_str(start.saturating_add(dm::DM_TARGET_SPEC_SIZE));
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            scratch(
                what,
                format!("unexpected dm-integrity status {status:?} (want mismatches, provided sectors, ...)"),
            )
        })
}
