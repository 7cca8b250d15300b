//! The one error type of this crate: every variant names what it was working on.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong attaching a layer or mounting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a file or device failed.
    #[error("{syscall} on {path}: {source}")]
    Io {
        /// The system call or operation (`open`, `fstat`, `copy`, `LOOP_CONFIGURE`, ...).
        syscall: &'static str,
        /// The file or device it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer image is neither a regular file nor a block device.
    #[error("layer image {path} is not a regular file or block device ({kind})")]
    NotAFile {
        /// The layer image.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The layer image does not start with a usable EROFS superblock.
    #[error("layer image {path}: bad EROFS image: {source}")]
    Erofs {
        /// The layer image.
        path: PathBuf,
        /// What the EROFS reader found.
        #[source]
        source: charter_erofs::Error,
    },
    /// The EROFS image does not use charter's 4096-byte blocks.
    #[error("layer image {path}: EROFS block size {block_size} is not charter's 4096")]
    BlockSize {
        /// The layer image.
        path: PathBuf,
        /// The block size the superblock declares.
        block_size: u64,
    },
    /// The EROFS data is larger than the caller allows.
    #[error("layer image {path}: EROFS data of {data_size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The layer image.
        path: PathBuf,
        /// Declared data size.
        data_size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The verity superblock after the EROFS data is missing or malformed.
    #[error("layer image {path}: bad dm-verity superblock at offset {offset}: {source}")]
    VeritySuperblock {
        /// The layer image.
        path: PathBuf,
        /// Where it was expected (the EROFS data size).
        offset: u64,
        /// What the superblock decoder found.
        #[source]
        source: charter_verity::Error,
    },
    /// The verity superblock is well formed but does not describe charter's layer format.
    #[error("layer image {path}: dm-verity superblock {field} is {found}, charter layers use {expected}")]
    VerityParams {
        /// The layer image.
        path: PathBuf,
        /// The field that differs.
        field: &'static str,
        /// Its value in the image.
        found: String,
        /// The only value charter accepts.
        expected: String,
    },
    /// The image ended (or was cut while being copied) before the end of the EROFS data.
    #[error("layer image {path}: copied {copied} of {expected} bytes of EROFS data")]
    Truncated {
        /// The layer image.
        path: PathBuf,
        /// Bytes the EROFS superblock declares.
        expected: u64,
        /// Bytes actually obtained.
        copied: u64,
    },
    /// Computing the dm-verity tree of the copied data failed.
    #[error("layer image {path}: hashing the sealed copy: {source}")]
    Hash {
        /// The layer image.
        path: PathBuf,
        /// What charter-verity reported.
        #[source]
        source: charter_verity::Error,
    },
    /// The data does not hash to the expected root: the layer is not the one the policy names.
    #[error(
        "layer image {path}: dm-verity root hash mismatch: expected {expected}, computed {actual}"
    )]
    RootHashMismatch {
        /// The layer image.
        path: PathBuf,
        /// The root hash asked for (hex).
        expected: String,
        /// The root hash of the image's data (hex).
        actual: String,
    },
    /// The memfd did not end up with the seals this crate relies on.
    #[error("memfd copy of {path}: seals {found:#x} lack {missing:#x}")]
    NotSealed {
        /// The layer image the memfd holds.
        path: PathBuf,
        /// Seals present.
        found: u32,
        /// Required seals absent.
        missing: u32,
    },
    /// No loop device could be claimed: every free one was taken by someone else first.
    #[error("no free loop device after {attempts} attempts (each was claimed concurrently)")]
    NoFreeLoopDevice {
        /// Devices tried.
        attempts: u32,
    },
    /// A loop device did not come out as configured (not read-only, or another backing file).
    #[error("loop device {device}: {what}")]
    LoopState {
        /// The loop device.
        device: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// mount(2) failed.
    #[error("mount of {fstype} {source_desc} on {target}: {source}")]
    Mount {
        /// File system type.
        fstype: &'static str,
        /// The mount source (device or `tmpfs`/`overlay`).
        source_desc: String,
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// umount2(2) failed.
    #[error("umount2 of {target}: {source}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A path cannot be passed in an overlay option string.
    #[error("overlay {role} path {path} is not usable: {reason}")]
    OverlayPath {
        /// `lowerdir`, `upperdir`, `workdir`.
        role: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// An overlay needs at least one lower layer.
    #[error("overlay on {target} has no lower layers")]
    NoLowerLayers {
        /// The mount point.
        target: PathBuf,
    },
    /// The overlay option string exceeds what mount(2) accepts.
    #[error("overlay on {target}: option string of {len} bytes exceeds the {max}-byte limit of mount(2)")]
    OverlayOptionsTooLong {
        /// The mount point.
        target: PathBuf,
        /// Length of the options.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The encrypted scratch could not be set up on the host's disk.
    #[error("encrypted scratch on {disk}: {reason}")]
    Scratch {
        /// The host's scratch disk.
        disk: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tmpfs request the crate refuses (unbounded size, mode bits beyond 0o7777).
    #[error("tmpfs on {target}: {reason}")]
    InvalidTmpfs {
        /// The mount point.
        target: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether the layer image itself was refused: it is not a well-formed charter layer image
    /// or does not hash to the requested root. `false` for failures of the guest's own
    /// operations (memfd, loop devices, mounts), which say nothing about the image.
    pub fn is_rejected_image(&self) -> bool {
        matches!(
            self,
            Error::NotAFile { .. }
                | Error::Erofs { .. }
                | Error::BlockSize { .. }
                | Error::TooLarge { .. }
                | Error::VeritySuperblock { .. }
                | Error::VerityParams { .. }
                | Error::Truncated { .. }
                | Error::RootHashMismatch { .. }
        )
    }

    pub(crate) fn io(syscall: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            syscall,
            path: path.into(),
            source,
        }
    }
}
