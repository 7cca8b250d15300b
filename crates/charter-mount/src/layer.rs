//! [`VerifiedLayer`]: a host-provided layer image verified into sealed memory and exposed as a
//! read-only loop device (see the crate documentation for why).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use charter_verity::{FormatOptions, Superblock, VerityParams};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mount::MountFlags;

use crate::loopdev::LoopDevice;
use crate::Error;

/// The data and hash block size of charter layer images (DESIGN.md D4).
pub const LAYER_BLOCK_SIZE: u64 = 4096;

/// Default bound on the EROFS data of one layer: 16 GiB. The data is held in guest memory for
/// as long as the layer is attached.
pub const DEFAULT_MAX_DATA_SIZE: u64 = 16 << 30;

/// The seals that make the copy immutable.
const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE)
    .union(SealFlags::SEAL);

/// Limits and tuning for [`VerifiedLayer::attach_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttachOptions {
    /// Largest EROFS data size accepted, in bytes ([`DEFAULT_MAX_DATA_SIZE`] by default).
    pub max_data_size: u64,
    /// Threads hashing the copy (all available cores by default). Does not change the result.
    pub threads: NonZeroUsize,
    /// Attach with `LOOP_SET_FD` + `LOOP_SET_STATUS64`, the path taken on kernels without
    /// `LOOP_CONFIGURE` (before 5.8), even where `LOOP_CONFIGURE` exists; off by default. The
    /// result is checked the same way; this exists so the fallback is tested.
    pub legacy_loop_setup: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            legacy_loop_setup: false,
        }
    }
}

impl AttachOptions {
    /// Sets [`AttachOptions::max_data_size`].
    pub fn max_data_size(mut self, bytes: u64) -> Self {
        self.max_data_size = bytes;
        self
    }

    /// Sets [`AttachOptions::legacy_loop_setup`].
    pub fn legacy_loop_setup(mut self, legacy: bool) -> Self {
        self.legacy_loop_setup = legacy;
        self
    }

    /// Sets [`AttachOptions::threads`].
    pub fn threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads;
        self
    }
}

/// A layer whose EROFS data hashed to the expected dm-verity root, held in a sealed memfd and
/// attached read-only to a loop device.
///
/// Dropping it detaches the loop device unless [`VerifiedLayer::mount`] succeeded; a mounted
/// device detaches itself (`LO_FLAGS_AUTOCLEAR`) when its last mount is unmounted.
#[derive(Debug)]
pub struct VerifiedLayer {
    source: PathBuf,
    root_hash: [u8; 32],
    data_size: u64,
    // Declared before `memfd`: the device detaches before the copy is closed.
    device: LoopDevice,
    memfd: File,
}

impl VerifiedLayer {
    /// [`VerifiedLayer::attach_with`] with [`AttachOptions::default`].
    pub fn attach(source: &Path, root_hash: &[u8; 32]) -> Result<VerifiedLayer, Error> {
        Self::attach_with(source, root_hash, &AttachOptions::default())
    }

    /// Copies the EROFS data of the layer image at `source` into a sealed memfd, checks that it
    /// hashes to `root_hash` (dm-verity, charter's fixed parameters), and attaches the copy
    /// read-only to a free loop device.
    ///
    /// The image must be a regular file laid out as `charter_image::build_layer_image` writes
    /// it: EROFS with 4096-byte blocks, then a dm-verity v1 superblock for exactly the EROFS
    /// blocks (SHA-256, 4096-byte blocks, 32 zero bytes of salt). The hash tree stored in the
    /// file is not used: the root is recomputed from the data.
    pub fn attach_with(
        source: &Path,
        root_hash: &[u8; 32],
        options: &AttachOptions,
    ) -> Result<VerifiedLayer, Error> {
        let (memfd, data_size) = verified_copy(source, root_hash, options)?;
        let name = format!("charter:{}", hex::encode(root_hash));
        let device = LoopDevice::attach_read_only(&memfd, &name, options.legacy_loop_setup)?;
        Ok(VerifiedLayer {
            source: source.to_path_buf(),
            root_hash: *root_hash,
            data_size,
            device,
            memfd,
        })
    }

    /// The loop device node (`/dev/loopN`) serving the verified copy.
    pub fn device(&self) -> &Path {
        self.device.path()
    }

    /// The dm-verity root hash the data was verified against.
    pub fn root_hash(&self) -> &[u8; 32] {
        &self.root_hash
    }

    /// Bytes of EROFS data (the loop device's size).
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// The image path the layer was read from (it is not read again).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The sealed memfd holding the verified bytes (for inspection, e.g. `F_GET_SEALS`).
    pub fn sealed_copy(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// Mounts the layer read-only as `erofs` on `target`, with `nodev` and `nosuid`. May be
    /// called more than once (each call adds a mount).
    pub fn mount(&self, target: &Path) -> Result<(), Error> {
        rustix::mount::mount(
            self.device.path(),
            target,
            "erofs",
            MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID,
            None,
        )
        .map_err(|e| Error::Mount {
            fstype: "erofs",
            source_desc: self.device.path().display().to_string(),
            target: target.to_path_buf(),
            source: e.into(),
        })?;
        self.device.mark_mounted();
        Ok(())
    }
}

/// Everything up to (not including) the loop device: needs no privilege.
fn verified_copy(
    source: &Path,
    root_hash: &[u8; 32],
    options: &AttachOptions,
) -> Result<(File, u64), Error> {
    let path = || source.to_path_buf();
    // Non-blocking so that a FIFO planted at the path cannot hang the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(source)
        .map_err(|e| Error::io("open", path(), e))?;
    let meta = file.metadata().map_err(|e| Error::io("fstat", path(), e))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "directory"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_fifo() {
            "fifo"
        } else if kind.is_socket() {
            "socket"
        } else {
            "other"
        };
        return Err(Error::NotAFile { path: path(), kind });
    }

    let data_size = data_size(&file, source, options)?;

    let memfd: File = rustix::fs::memfd_create(
        format!("charter-layer:{}", hex::encode(root_hash)),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| Error::io("memfd_create", path(), e.into()))?
    .into();
    (&file)
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("lseek", path(), e))?;
    // Exactly the data region; the kernel copies (copy_file_range/sendfile where it can).
    let copied = std::io::copy(&mut std::io::Read::take(&file, data_size), &mut (&memfd))
        .map_err(|e| Error::io("copy into memfd", path(), e))?;
    drop(file);
    let copy_len = memfd
        .metadata()
        .map_err(|e| Error::io("fstat memfd", path(), e))?
        .len();
    if copied != data_size || copy_len != data_size {
        return Err(Error::Truncated {
            path: path(),
            expected: data_size,
            copied: copied.min(copy_len),
        });
    }

    rustix::fs::fcntl_add_seals(&memfd, REQUIRED_SEALS)
        .map_err(|e| Error::io("fcntl(F_ADD_SEALS)", path(), e.into()))?;
    let seals = rustix::fs::fcntl_get_seals(&memfd)
        .map_err(|e| Error::io("fcntl(F_GET_SEALS)", path(), e.into()))?;
    if !seals.contains(REQUIRED_SEALS) {
        return Err(Error::NotSealed {
            path: path(),
            found: seals.bits(),
            missing: REQUIRED_SEALS.difference(seals).bits(),
        });
    }

    // Hash the sealed bytes: whatever happened to the memfd before the seals shows here.
    let tree: File = rustix::fs::memfd_create("charter-layer-tree", MemfdFlags::CLOEXEC)
        .map_err(|e| Error::io("memfd_create", path(), e.into()))?
        .into();
    let formatted = charter_verity::format(
        &memfd,
        data_size,
        &tree,
        0,
        &VerityParams::default(),
        &FormatOptions {
            threads: options.threads,
            superblock: None,
        },
    )
    .map_err(|source| Error::Hash {
        path: path(),
        source,
    })?;
    drop(tree);
    if formatted.root_hash.as_bytes() != root_hash.as_slice() {
        return Err(Error::RootHashMismatch {
            path: path(),
            expected: hex::encode(root_hash),
            actual: formatted.root_hash.to_string(),
        });
    }
    Ok((memfd, data_size))
}

/// The EROFS data size, from the EROFS superblock, cross-checked against the verity
/// superblock after it and bounded by the options.
fn data_size(file: &File, source: &Path, options: &AttachOptions) -> Result<u64, Error> {
    let path = || source.to_path_buf();
    let image = charter_erofs::Image::open(file).map_err(|source| Error::Erofs {
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
    if data_size > options.max_data_size {
        return Err(Error::TooLarge {
            path: path(),
            data_size,
            limit: options.max_data_size,
        });
    }
    let sb = Superblock::read_at(file, data_size).map_err(|source| Error::VeritySuperblock {
        path: path(),
        offset: data_size,
        source,
    })?;
    let want = VerityParams::default();
    let blocks = data_size.checked_div(LAYER_BLOCK_SIZE).unwrap_or(0);
    let mismatch = |field, found: String, expected: String| Error::VerityParams {
        path: path(),
        field,
        found,
        expected,
    };
    if sb.format != want.format {
        return Err(mismatch(
            "hash type",
            sb.format.hash_type().to_string(),
            want.format.hash_type().to_string(),
        ));
    }
    if sb.hash != want.hash {
        return Err(mismatch(
            "algorithm",
            sb.hash.to_string(),
            want.hash.to_string(),
        ));
    }
    if sb.data_block_size != want.data_block_size {
        return Err(mismatch(
            "data block size",
            sb.data_block_size.to_string(),
            want.data_block_size.to_string(),
        ));
    }
    if sb.hash_block_size != want.hash_block_size {
        return Err(mismatch(
            "hash block size",
            sb.hash_block_size.to_string(),
            want.hash_block_size.to_string(),
        ));
    }
    if sb.salt != want.salt {
        return Err(mismatch("salt", sb.salt.to_string(), want.salt.to_string()));
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
