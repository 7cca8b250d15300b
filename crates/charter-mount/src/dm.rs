//! Layers under the kernel's dm-verity target, for the `qemu` launcher's utility VM, where the
//! layer images are read-only virtio disks and device-mapper exists (DESIGN.md D4, D6).
//!
//! [`DmVerityLayer::open`] reads the disk's EROFS and verity superblocks only as *hints*
//! (how many data blocks, where the tree starts), requires charter's fixed parameters, then
//! creates a read-only device-mapper device with one `verity` target whose root hash is the
//! policy's:
//!
//! ```text
//! 0 <data_blocks*8> verity 1 <maj:min> <maj:min> 4096 4096 <data_blocks> <data_blocks+1>
//!   sha256 <root hash> <32 zero bytes of salt>
//! ```
//!
//! (data and tree are on the same disk: EROFS, then the 4096-byte verity superblock block,
//! then the tree, as `charter_image::build_layer_image` and `veritysetup format` lay it out).
//! From then on the kernel checks every block read against the tree and the root: a disk
//! modified by the host, before or after the open, reads as `EIO`. As a last check the EROFS
//! superblock is read back *through* the verified device and must declare exactly the data
//! size the table covers.
//!
//! The device-mapper interface is five ioctls on `/dev/mapper/control` with one
//! variable-length buffer (`struct dm_ioctl` of `<linux/dm-ioctl.h>`, then the target spec and
//! its parameter string). The buffer is built byte by byte at the header's documented offsets,
//! so the only unsafe code is the ioctl call itself.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use charter_verity::{Superblock, VerityParams};
use rustix::mount::MountFlags;

use crate::layer::{VerifiedLayer, LAYER_BLOCK_SIZE};
use crate::Error;

/// The device-mapper control node.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// `sizeof(struct dm_ioctl)`.
pub(crate) const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub(crate) const DM_TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`.
const DM_NAME_LEN: usize = 128;
/// Interface version asked for (major must be 4).
const DM_VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`.
pub(crate) const DM_READONLY_FLAG: u32 = 1;
/// `DM_DEFERRED_REMOVE`: remove once the last opener (the mount) closes the device.
const DM_DEFERRED_REMOVE: u32 = 1 << 17;
/// How long devtmpfs may take to create a new device's node.
const NODE_WAIT: Duration = Duration::from_secs(5);
/// Parameter strings (the verity table is about 300 bytes).
const MAX_PARAMS: usize = 1024;

/// Offsets in `struct dm_ioctl`.
pub(crate) mod off {
    pub const DATA_SIZE: usize = 12;
    pub const DATA_START: usize = 16;
    pub const TARGET_COUNT: usize = 20;
    pub const FLAGS: usize = 28;
    pub const DEV: usize = 40;
    pub const NAME: usize = 48;
}

/// The header type the ioctl numbers are declared with (its size is what the `_IOWR` number
/// encodes; the kernel reads `data_size` bytes).
#[repr(C, align(8))]
pub struct DmIoctl([u8; DM_IOCTL_SIZE]);

const _: () = assert!(std::mem::size_of::<DmIoctl>() == DM_IOCTL_SIZE);

mod ioctl {
    const DM_IOCTL: u8 = 0xfd;
    nix::ioctl_readwrite!(dm_dev_create, DM_IOCTL, 3, super::DmIoctl);
    nix::ioctl_readwrite!(dm_dev_remove, DM_IOCTL, 4, super::DmIoctl);
    nix::ioctl_readwrite!(dm_dev_suspend, DM_IOCTL, 6, super::DmIoctl);
    nix::ioctl_readwrite!(dm_table_load, DM_IOCTL, 9, super::DmIoctl);
    nix::ioctl_readwrite!(dm_table_status, DM_IOCTL, 12, super::DmIoctl);
}

/// Which ioctl to issue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmd {
    Create,
    Remove,
    Resume,
    TableLoad,
    TableStatus,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Create => "DM_DEV_CREATE",
            Cmd::Remove => "DM_DEV_REMOVE",
            Cmd::Resume => "DM_DEV_SUSPEND (resume)",
            Cmd::TableLoad => "DM_TABLE_LOAD",
            Cmd::TableStatus => "DM_TABLE_STATUS",
        }
    }
}

/// A `struct dm_ioctl` request buffer (8-byte aligned words).
pub(crate) struct Request {
    words: Vec<u64>,
}

impl Request {
    pub(crate) fn new(name: &str, flags: u32, payload: &[u8], target_count: u32) -> Request {
        let total = DM_IOCTL_SIZE.saturating_add(payload.len());
        let mut r = Request {
            words: vec![0u64; total.div_ceil(8)],
        };
        for (i, v) in DM_VERSION.iter().enumerate() {
            r.put(i.saturating_mul(4), &v.to_ne_bytes());
        }
        let size = u32::try_from(r.words.len().saturating_mul(8)).unwrap_or(u32::MAX);
        r.put(off::DATA_SIZE, &size.to_ne_bytes());
        r.put(off::DATA_START, &(DM_IOCTL_SIZE as u32).to_ne_bytes());
        r.put(off::TARGET_COUNT, &target_count.to_ne_bytes());
        r.put(off::FLAGS, &flags.to_ne_bytes());
        let name = name.as_bytes();
        let n = name.len().min(DM_NAME_LEN.saturating_sub(1));
        r.put(off::NAME, name.get(..n).unwrap_or_default());
        r.put(DM_IOCTL_SIZE, payload);
        r
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.words.len().saturating_mul(8);
        // SAFETY: a `Vec<u64>` of `len / 8` words is `len` initialised bytes; u8 has no
        // alignment or validity requirements, and the slice borrows `self` mutably.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) }
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        if let Some(dst) = self.bytes_mut().get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }

    pub(crate) fn get_u64(&mut self, at: usize) -> u64 {
        self.bytes_mut()
            .get(at..at.saturating_add(8))
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    }

    pub(crate) fn get_u32(&mut self, at: usize) -> u32 {
        self.bytes_mut()
            .get(at..at.saturating_add(4))
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    }

    /// The NUL-terminated string at byte `at` (empty if out of bounds or not UTF-8).
    pub(crate) fn get_str(&mut self, at: usize) -> String {
        let bytes = self.bytes_mut().get(at..).unwrap_or_default();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned()
    }

    pub(crate) fn issue(&mut self, control: &File, cmd: Cmd, what: &Path) -> Result<(), Error> {
        let fd = control.as_raw_fd();
        let ptr = self.words.as_mut_ptr().cast::<DmIoctl>();
        // SAFETY: `ptr` points to `data_size` (>= sizeof(struct dm_ioctl)) initialised,
        // 8-byte aligned, writable bytes owned by `self` for the whole call, laid out as
        // `<linux/dm-ioctl.h>` specifies; the kernel reads and writes at most `data_size` bytes
        // of it. `control` is an open descriptor of /dev/mapper/control.
        let r = unsafe {
            match cmd {
                Cmd::Create => ioctl::dm_dev_create(fd, ptr),
                Cmd::Remove => ioctl::dm_dev_remove(fd, ptr),
                Cmd::Resume => ioctl::dm_dev_suspend(fd, ptr),
                Cmd::TableLoad => ioctl::dm_table_load(fd, ptr),
                Cmd::TableStatus => ioctl::dm_table_status(fd, ptr),
            }
        };
        r.map(drop)
            .map_err(|e| Error::io(cmd.name(), what, std::io::Error::from(e)))
    }
}

impl Drop for Request {
    /// Tables can hold keys (the scratch's dm-crypt and dm-integrity keys).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.words);
    }
}

/// `struct dm_target_spec` followed by the NUL-terminated parameter string, padded to 8.
pub(crate) fn target_payload(sectors: u64, target_type: &str, params: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(
        DM_TARGET_SPEC_SIZE
            .saturating_add(params.len())
            .saturating_add(8),
    );
    p.extend_from_slice(&0u64.to_ne_bytes()); // sector_start
    p.extend_from_slice(&sectors.to_ne_bytes()); // length
    p.extend_from_slice(&0i32.to_ne_bytes()); // status
    p.extend_from_slice(&0u32.to_ne_bytes()); // next (patched below)
    let mut ty = [0u8; 16];
    let n = target_type.len().min(15);
    if let (Some(d), Some(s)) = (ty.get_mut(..n), target_type.as_bytes().get(..n)) {
        d.copy_from_slice(s);
    }
    p.extend_from_slice(&ty);
    p.extend_from_slice(params.as_bytes());
    p.push(0);
    while p.len() % 8 != 0 {
        p.push(0);
    }
    let next = u32::try_from(p.len()).unwrap_or(0).to_ne_bytes();
    if let Some(d) = p.get_mut(20..24) {
        d.copy_from_slice(&next);
    }
    p
}

/// `huge_encode_dev` as the kernel returns it in `dm_ioctl.dev`.
pub(crate) fn decode_dev(dev: u64) -> (u64, u64) {
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff_ff00);
    (major, minor)
}

pub(crate) fn open_control() -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(DM_CONTROL)
        .map_err(|e| Error::io("open", DM_CONTROL, e))
}

/// Removes the mapped device `name`; with `deferred`, once its last opener closes it.
pub(crate) fn remove(name: &str, deferred: bool) -> Result<(), Error> {
    let control = open_control()?;
    let flags = if deferred { DM_DEFERRED_REMOVE } else { 0 };
    Request::new(name, flags, &[], 0).issue(&control, Cmd::Remove, Path::new(name))
}

/// A block device and its size, as an EROFS byte source.
struct BlockSource<'a> {
    file: &'a File,
    len: u64,
}

impl charter_erofs::ReadAt for BlockSource<'_> {
    fn byte_len(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self.file, buf, offset)
    }
}

pub(crate) fn block_len(file: &File, path: &Path) -> Result<u64, Error> {
    let mut f = file;
    f.seek(SeekFrom::End(0))
        .map_err(|e| Error::io("lseek(SEEK_END)", path, e))
}

/// A layer disk mapped through dm-verity with the policy's root hash.
///
/// Dropping it removes the mapping; once mounted, the removal is deferred until the last
/// unmount.
#[derive(Debug)]
pub struct DmVerityLayer {
    name: String,
    device: PathBuf,
    source: PathBuf,
    root_hash: [u8; 32],
    data_size: u64,
    mounted: std::sync::atomic::AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl DmVerityLayer {
    /// Maps the layer disk `source` (a block device: `/dev/vdX`, or a symlink to it) through
    /// dm-verity with `root_hash`, read-only. Bounded by `max_data_size` bytes of EROFS data.
    ///
    /// # Errors
    /// [`Error::NotAFile`] if `source` is not a block device; the image errors of
    /// [`VerifiedLayer::attach`] for superblocks that do not describe a charter layer;
    /// [`Error::Io`] naming the device-mapper ioctl that failed; [`Error::RootHashMismatch`]
    /// when the data read through the verified device does not match the table.
    pub fn open(source: &Path, root_hash: &[u8; 32], max_data_size: u64) -> Result<Self, Error> {
        let path = || source.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(source)
            .map_err(|e| Error::io("open", path(), e))?;
        let meta = file.metadata().map_err(|e| Error::io("fstat", path(), e))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::NotAFile {
                path: path(),
                kind: "not a block device",
            });
        }
        let rdev = meta.rdev();
        let (major, minor) = (nix::libc::major(rdev), nix::libc::minor(rdev));
        let disk_len = block_len(&file, source)?;
        let data_size = hinted_data_size(&file, disk_len, source, max_data_size)?;
        let data_blocks = data_size / LAYER_BLOCK_SIZE;
        let hash_start = data_blocks.saturating_add(1);
        let tree_end = hash_start.saturating_mul(LAYER_BLOCK_SIZE);
        if tree_end > disk_len {
            return Err(Error::Truncated {
                path: path(),
                expected: tree_end,
                copied: disk_len,
            });
        }
        let root = hex::encode(root_hash);
        let params = format!(
            "1 {major}:{minor} {major}:{minor} {bs} {bs} {data_blocks} {hash_start} sha256 {root} {salt}",
            bs = LAYER_BLOCK_SIZE,
            salt = "00".repeat(32),
        );
        if params.len() > MAX_PARAMS {
            return Err(Error::io(
                "DM_TABLE_LOAD",
                path(),
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        let name = format!(
            "charter-{}-{}",
            root.get(..16).unwrap_or_default(),
            NEXT_ID.fetch_add(1, Ordering::SeqCst)
        );
        let control = open_control()?;
        let mut create = Request::new(&name, 0, &[], 0);
        create.issue(&control, Cmd::Create, source)?;
        let (_, dm_minor) = decode_dev(create.get_u64(off::DEV));
        let mut layer = DmVerityLayer {
            device: PathBuf::from(format!("/dev/dm-{dm_minor}")),
            name,
            source: path(),
            root_hash: *root_hash,
            data_size,
            mounted: std::sync::atomic::AtomicBool::new(false),
        };
        // From here on, dropping `layer` removes the mapping.
        let payload = target_payload(data_size / 512, "verity", &params);
        Request::new(&layer.name, DM_READONLY_FLAG, &payload, 1).issue(
            &control,
            Cmd::TableLoad,
            source,
        )?;
        Request::new(&layer.name, 0, &[], 0).issue(&control, Cmd::Resume, source)?;
        layer.device = wait_for_node(&layer.device)?;
        layer.check_through_verity()?;
        Ok(layer)
    }

    /// Reads the EROFS superblock through the verified device: it must be intact and declare
    /// the data size the table covers.
    fn check_through_verity(&self) -> Result<(), Error> {
        let dev = File::open(&self.device).map_err(|e| Error::io("open", &self.device, e))?;
        let src = BlockSource {
            file: &dev,
            len: self.data_size,
        };
        let image = charter_erofs::Image::open(&src).map_err(|source| match source {
            // The kernel refused a block whose hash does not lead to the root.
            charter_erofs::Error::Read { offset, source } => Error::RootHashMismatch {
                path: self.source.clone(),
                expected: hex::encode(self.root_hash),
                actual: format!("(dm-verity refused the block at offset {offset}: {source})"),
            },
            source => Error::Erofs {
                path: self.device.clone(),
                source,
            },
        })?;
        if image.data_size() != self.data_size {
            return Err(Error::RootHashMismatch {
                path: self.source.clone(),
                expected: hex::encode(self.root_hash),
                actual: format!(
                    "(verified EROFS declares {} bytes, the disk's hints said {})",
                    image.data_size(),
                    self.data_size
                ),
            });
        }
        Ok(())
    }

    /// The verified device node (`/dev/dm-N`).
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// The device-mapper name (`charter-<root prefix>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root hash the table enforces.
    pub fn root_hash(&self) -> &[u8; 32] {
        &self.root_hash
    }

    /// Bytes of EROFS data the table covers.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Mounts the verified device read-only as `erofs` on `target` (`nodev`, `nosuid`).
    ///
    /// # Errors
    /// [`Error::Mount`].
    pub fn mount(&self, target: &Path) -> Result<(), Error> {
        mount_mapped(
            &self.device,
            target,
            "erofs",
            MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID,
            &self.mounted,
        )
    }
}

impl Drop for DmVerityLayer {
    fn drop(&mut self) {
        // Best effort: a mounted device goes away at its last unmount.
        let _ = remove(&self.name, self.mounted.load(Ordering::SeqCst));
    }
}

/// Mounts the mapped `device` on `target` and records that it is mounted (its removal is
/// then deferred to the last unmount).
pub(crate) fn mount_mapped(
    device: &Path,
    target: &Path,
    fstype: &'static str,
    flags: MountFlags,
    mounted: &std::sync::atomic::AtomicBool,
) -> Result<(), Error> {
    rustix::mount::mount(device, target, fstype, flags, None).map_err(|e| Error::Mount {
        fstype,
        source_desc: device.display().to_string(),
        target: target.to_path_buf(),
        source: e.into(),
    })?;
    mounted.store(true, Ordering::SeqCst);
    Ok(())
}

pub(crate) fn wait_for_node(node: &Path) -> Result<PathBuf, Error> {
    // devtmpfs creates the node asynchronously after the resume.
    let start = Instant::now();
    loop {
        match std::fs::metadata(node) {
            Ok(m) if m.file_type().is_block_device() => return Ok(node.to_path_buf()),
            _ if start.elapsed() >= NODE_WAIT => {
                return Err(Error::io(
                    "wait for device node",
                    node,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// The EROFS data size the disk claims, checked against the verity superblock after it and
/// charter's fixed parameters. Only a hint: the table built from it is checked by the kernel
/// against the policy's root, and [`DmVerityLayer::check_through_verity`] re-reads it.
fn hinted_data_size(
    file: &File,
    disk_len: u64,
    source: &Path,
    max_data_size: u64,
) -> Result<u64, Error> {
    let path = || source.to_path_buf();
    let src = BlockSource {
        file,
        len: disk_len,
    };
    let image = charter_erofs::Image::open(&src).map_err(|source| Error::Erofs {
        path: path(),
        source,
    })?;
    if image.block_size() != LAYER_BLOCK_SIZE {
        return Err(Error::BlockSize {
            path: path(),
            block_size: image.block_size(),
        });
    }
    let data_size = image.data_size();
    if data_size > max_data_size {
        return Err(Error::TooLarge {
            path: path(),
            data_size,
            limit: max_data_size,
        });
    }
    let sb = Superblock::read_at(file, data_size).map_err(|source| Error::VeritySuperblock {
        path: path(),
        offset: data_size,
        source,
    })?;
    let want = VerityParams::default();
    let blocks = data_size / LAYER_BLOCK_SIZE;
    let mismatch = |field, found: String, expected: String| Error::VerityParams {
        path: path(),
        field,
        found,
        expected,
    };
    if sb.format != want.format
        || sb.hash != want.hash
        || sb.data_block_size != want.data_block_size
        || sb.hash_block_size != want.hash_block_size
        || sb.salt != want.salt
    {
        return Err(mismatch(
            "parameters",
            format!(
                "{} {} {}/{} salt {}",
                sb.format.hash_type(),
                sb.hash,
                sb.data_block_size,
                sb.hash_block_size,
                sb.salt
            ),
            format!(
                "{} {} {}/{} salt {}",
                want.format.hash_type(),
                want.hash,
                want.data_block_size,
                want.hash_block_size,
                want.salt
            ),
        ));
    }
    if sb.data_blocks != blocks {
        return Err(mismatch(
            "data blocks",
            sb.data_blocks.to_string(),
            format!("{blocks} (the EROFS block count)"),
        ));
    }
    Ok(data_size)
}

/// A verified layer as the agent holds it: dm-verity on a disk in the VM, or a sealed,
/// verified copy on a loop device in the sandbox.
#[derive(Debug)]
pub enum AttachedLayer {
    /// A layer image file verified into sealed memory (the sandbox).
    Sealed(VerifiedLayer),
    /// A layer disk under dm-verity (the utility VM).
    DmVerity(DmVerityLayer),
}

impl AttachedLayer {
    /// A block device goes under dm-verity ([`DmVerityLayer::open`]); anything else is
    /// verified into sealed memory ([`VerifiedLayer::attach`]).
    ///
    /// # Errors
    /// Those of the chosen path.
    pub fn attach(source: &Path, root_hash: &[u8; 32]) -> Result<AttachedLayer, Error> {
        let is_block = std::fs::metadata(source)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if is_block {
            DmVerityLayer::open(source, root_hash, crate::DEFAULT_MAX_DATA_SIZE)
                .map(AttachedLayer::DmVerity)
        } else {
            VerifiedLayer::attach(source, root_hash).map(AttachedLayer::Sealed)
        }
    }

    /// Mounts the layer read-only on `target`.
    ///
    /// # Errors
    /// [`Error::Mount`].
    pub fn mount(&self, target: &Path) -> Result<(), Error> {
        match self {
            AttachedLayer::Sealed(l) => l.mount(target),
            AttachedLayer::DmVerity(l) => l.mount(target),
        }
    }

    /// The device node serving the verified bytes.
    pub fn device(&self) -> &Path {
        match self {
            AttachedLayer::Sealed(l) => l.device(),
            AttachedLayer::DmVerity(l) => l.device(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_spec_layout() {
        let p = target_payload(16, "verity", "1 2 3");
        assert_eq!(p.len() % 8, 0);
        assert_eq!(&p[8..16], &16u64.to_ne_bytes());
        assert_eq!(&p[20..24], &(p.len() as u32).to_ne_bytes());
        assert_eq!(&p[24..30], b"verity");
        assert_eq!(&p[40..46], b"1 2 3\0");
    }

    #[test]
    fn request_header_layout() {
        let mut r = Request::new("x", DM_READONLY_FLAG, &[1, 2, 3], 1);
        let b = r.bytes_mut().to_vec();
        assert_eq!(&b[0..4], &4u32.to_ne_bytes());
        assert_eq!(b.len(), 320);
        assert_eq!(&b[12..16], &320u32.to_ne_bytes());
        assert_eq!(&b[16..20], &312u32.to_ne_bytes());
        assert_eq!(&b[20..24], &1u32.to_ne_bytes());
        assert_eq!(&b[28..32], &1u32.to_ne_bytes());
        assert_eq!(b[48], b'x');
        assert_eq!(&b[312..315], &[1, 2, 3]);
    }

    #[test]
    fn dev_numbers_decode() {
        // major 253, minor 3 and minor 300.
        assert_eq!(decode_dev((253 << 8) | 3), (253, 3));
        assert_eq!(
            decode_dev((253 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)),
            (253, 300)
        );
    }

    #[test]
    fn files_are_not_block_devices() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = DmVerityLayer::open(f.path(), &[0; 32], 1 << 20).unwrap_err();
        assert!(matches!(e, Error::NotAFile { .. }), "{e}");
    }
}
