//! The crate's error type.

use std::io;

/// Everything that can go wrong building or reading an EROFS image.
///
/// Paths in messages are the tar entry paths (lossily decoded as UTF-8 for display).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the tar stream failed (bad header checksum, bad numeric field, I/O error, ...).
    #[error("reading tar stream after entry {after:?}: {source}")]
    Tar {
        /// The last entry read successfully before the failure ("" at the start).
        after: String,
        /// The underlying error from the tar parser or the input.
        #[source]
        source: io::Error,
    },
    /// A header field of one tar entry could not be parsed.
    #[error("tar entry {path:?}: invalid {field}: {detail}")]
    InvalidHeader {
        /// The entry path.
        path: String,
        /// The header or PAX field that failed.
        field: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The tar stream ended inside a file's data.
    #[error("tar entry {path:?}: data truncated (header says {expected} bytes, got {got})")]
    Truncated {
        /// The entry path.
        path: String,
        /// Size from the header.
        expected: u64,
        /// Bytes actually present.
        got: u64,
    },
    /// An absolute path (leading `/`).
    #[error("tar entry {path:?}: absolute paths are not allowed")]
    AbsolutePath {
        /// The entry path.
        path: String,
    },
    /// A `..` path component.
    #[error("tar entry {path:?}: '..' components are not allowed")]
    ParentComponent {
        /// The entry path.
        path: String,
    },
    /// A path that is otherwise unusable (NUL byte, non-directory root, ...).
    #[error("tar entry {path:?}: invalid path: {reason}")]
    InvalidPath {
        /// The entry path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A path component longer than EROFS allows (255 bytes).
    #[error("tar entry {path:?}: path component of {len} bytes exceeds the 255-byte limit")]
    NameTooLong {
        /// The entry path.
        path: String,
        /// Length of the offending component.
        len: usize,
    },
    /// Two entries for the same path.
    #[error("tar entry {path:?}: duplicate entry for this path")]
    Duplicate {
        /// The entry path.
        path: String,
    },
    /// A path goes through something that is not a directory.
    #[error("tar entry {path:?}: a parent component is not a directory")]
    NotADirectory {
        /// The entry path.
        path: String,
    },
    /// A hard link names a target that does not exist (yet) in the archive.
    #[error("tar entry {path:?}: hard link target {target:?} not found earlier in the archive")]
    LinkTargetMissing {
        /// The entry path.
        path: String,
        /// The link target.
        target: String,
    },
    /// A hard link names a directory.
    #[error("tar entry {path:?}: hard link target {target:?} is a directory")]
    LinkToDirectory {
        /// The entry path.
        path: String,
        /// The link target.
        target: String,
    },
    /// A symlink target that cannot be stored (empty, NUL byte, longer than 4095 bytes).
    #[error("tar entry {path:?}: invalid symlink target: {reason}")]
    InvalidSymlink {
        /// The entry path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A tar entry type that has no EROFS equivalent.
    #[error("tar entry {path:?}: unsupported entry type {kind:?}")]
    UnsupportedEntryType {
        /// The entry path.
        path: String,
        /// The raw type flag.
        kind: char,
    },
    /// Device numbers that do not fit the 32-bit encoded dev_t (major < 4096, minor < 2^20).
    #[error("tar entry {path:?}: device number {major}:{minor} out of range")]
    InvalidDevice {
        /// The entry path.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// An extended attribute EROFS cannot store (unknown namespace, too long, too large).
    #[error("tar entry {path:?}: extended attribute {name:?}: {reason}")]
    InvalidXattr {
        /// The entry path.
        path: String,
        /// The attribute name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An OCI whiteout that cannot be represented (e.g. `.wh.` alone, AUFS metadata).
    #[error("tar entry {path:?}: invalid whiteout: {reason}")]
    InvalidWhiteout {
        /// The entry path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A limit of the EROFS format or of [`crate::BuildOptions`] was exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// Writing the image failed.
    #[error("writing the image: {0}")]
    Write(#[source] io::Error),
    /// Reading the image failed (I/O error or read past its end).
    #[error("reading the image at offset {offset}: {source}")]
    Read {
        /// Byte offset of the failed read.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The image superblock is missing, corrupt or uses unsupported features.
    #[error("bad superblock: {0}")]
    BadSuperblock(String),
    /// An inode or directory in the image is corrupt or unsupported.
    #[error("corrupt image at nid {nid}: {reason}")]
    Corrupt {
        /// The inode number (nid) concerned.
        nid: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Lossy display form of a byte path for error messages.
pub(crate) fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
