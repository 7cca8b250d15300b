//! dm-verity hash trees exactly as `veritysetup format` (libcryptsetup) builds them.
//!
//! charter identifies a container layer by the dm-verity root hash of its EROFS image
//! (DESIGN.md D4: SHA-256, 4096-byte blocks, 32 zero bytes of salt, format 1). This crate builds
//! and verifies those trees byte for byte as libcryptsetup's `lib/verity/verity_hash.c` does:
//!
//! - the tree is stored top level first; level 0 holds the digests of the data blocks;
//! - each hash block holds the largest power of two of digests that fits; format 1 pads every
//!   digest slot with zeros to a power of two and hashes `salt ‖ block`, format 0 packs digests
//!   and hashes `block ‖ salt`; the rest of a hash block is zero;
//! - the root hash is the digest of the single top block, or of the only data block when there is
//!   one data block (the tree is then empty);
//! - data blocks are `data_size / data_block_size` rounded down (a trailing partial block is not
//!   hashed, as in `veritysetup`); no complete block is an error;
//! - with a superblock (format 1 on-disk header, 512 bytes) it sits at `hash_offset` and the tree
//!   starts at the next hash-block boundary; without one the tree starts at `hash_offset`
//!   rounded down to a hash block. `hash_offset` must be a multiple of 512.
//!
//! Like `veritysetup`, [`format()`] leaves the hash device at least as long as the end of the
//! tree (with a superblock and a single data block: the next hash-block boundary after the
//! superblock). Three deliberate differences: it writes zeros between the end of the superblock
//! and the first tree block, where `veritysetup` leaves whatever the hash device held (on a
//! fresh file the bytes are identical; ours stay deterministic on reused files); and a
//! superblock at an offset that is not 4096-aligned beyond the end of a short hash file is
//! written, where `veritysetup`'s read-modify-write of the enclosing 4 KiB fails; and when data
//! and hash share a file, a superblock-less tree whose start (rounded down to a hash block)
//! falls inside the data is refused, where `veritysetup` overwrites the end of the data.
//!
//! Hashing is streaming with bounded memory (a few MiB per thread, independent of the data
//! size). Each level is hashed in rounds by `threads` scoped worker threads; from a file every
//! worker reads its own share with positional reads in 256 KiB pieces and hashes them while they
//! are in its cache (the calling thread only collects digests and writes hash blocks); from a
//! stream ([`format_reader`]) the calling thread reads the next chunk while the workers hash.
//! With one thread everything runs on the calling thread. Upper levels are read back from the
//! hash device, so it must be open for reading and writing.
//!
//! [`verify()`] checks top-down (root, then each level, then the data) and names the first bad
//! block: the corrupted hash block or data block itself, not merely a block whose stored digest
//! disagrees.
//!
//! ```
//! use charter_verity::{format, verify_with_superblock, FormatOptions, VerityParams};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("layer.img");
//! std::fs::write(&path, vec![0x42u8; 3 * 4096])?;
//! let image = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
//! // Append the tree, with a superblock, after the data (as charter's layer images do).
//! let opts = FormatOptions {
//!     superblock: Some([0; 16]),
//!     ..FormatOptions::default()
//! };
//! let f = format(&image, 3 * 4096, &image, 3 * 4096, &VerityParams::default(), &opts)?;
//! println!("root hash {}", f.root_hash);
//! let sb = verify_with_superblock(&image, &image, 3 * 4096, &f.root_hash, opts.threads)?;
//! assert_eq!(sb.data_blocks, 3);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod format;
mod io;
mod params;
mod root;
mod stream;
mod superblock;
mod tree;
mod verify;

pub use format::{format, format_reader, FormatOptions, Formatted};
pub use params::{
    block_size_ok, HashAlgorithm, HashFormat, RootHash, Salt, VerityParams, MAX_BLOCK_SIZE,
    MAX_DIGEST_SIZE, MAX_SALT_SIZE, MIN_BLOCK_SIZE,
};
pub use root::RootHasher;
pub use stream::VerityWriter;
pub use superblock::{Superblock, SUPERBLOCK_SIZE};
pub use tree::{Level, TreeLayout, MAX_LEVELS};
pub use verify::{verify, verify_with_superblock, VerifyOptions};

/// Everything that can go wrong building, parsing or verifying a hash tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("i/o error {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A device ended before a block that must be there.
    #[error("{what} is truncated: reading blocks at byte offset {offset} hit its end")]
    Truncated {
        /// "data device", "hash device" or "data stream".
        what: &'static str,
        /// Offset where the read that came up short started.
        offset: u64,
    },
    /// The data block size is not a power of two in 512..=524288.
    #[error("data block size {0} is not a power of two between 512 and 524288")]
    InvalidDataBlockSize(u32),
    /// The hash block size is not a power of two in 512..=524288.
    #[error("hash block size {0} is not a power of two between 512 and 524288")]
    InvalidHashBlockSize(u32),
    /// The salt is longer than 256 bytes.
    #[error("salt of {0} bytes is longer than 256 bytes")]
    SaltTooLong(usize),
    /// The salt is not hex.
    #[error("salt is not hex")]
    InvalidSaltHex,
    /// The hash algorithm name is not one this crate implements.
    #[error("hash algorithm {0:?} is not supported")]
    UnsupportedHashAlgorithm(String),
    /// The hash offset is not a multiple of 512.
    #[error("hash offset {0} is not a multiple of 512")]
    InvalidHashOffset(u64),
    /// The data holds no complete data block (`veritysetup` refuses this too).
    #[error("data of {data_size} bytes holds no complete {block_size}-byte data block")]
    NoDataBlocks {
        /// Data size in bytes.
        data_size: u64,
        /// Data block size in bytes.
        block_size: u32,
    },
    /// Data and hash share a file and the hash area starts inside the data area.
    #[error("hash area at offset {hash_offset} overlaps the data area ending at {data_end}")]
    HashAreaOverlapsData {
        /// Requested hash offset.
        hash_offset: u64,
        /// End of the data area in bytes.
        data_end: u64,
    },
    /// Sizes or offsets overflow 64 bits or the level limit.
    #[error("hash tree size or offset overflows")]
    SizeOverflow,
    /// A root hash has a length no supported algorithm produces.
    #[error("root hash of {0} bytes has no supported digest length")]
    InvalidRootHashLength(usize),
    /// A root hash is not hex.
    #[error("root hash is not hex")]
    InvalidRootHashHex,
    /// The root hash length does not match the algorithm.
    #[error("root hash has {actual} bytes but {algorithm} digests have {expected}")]
    RootHashLength {
        /// Algorithm in use.
        algorithm: HashAlgorithm,
        /// Its digest size.
        expected: usize,
        /// Length of the given root hash.
        actual: usize,
    },
    /// Superblock shorter than 512 bytes.
    #[error("superblock needs 512 bytes, got {0}")]
    SuperblockTooShort(usize),
    /// Superblock signature is not `verity\0\0`.
    #[error("superblock signature is not \"verity\"")]
    BadSignature,
    /// Superblock version other than 1.
    #[error("superblock version {0} is not supported (only 1)")]
    UnsupportedSuperblockVersion(u32),
    /// Hash type other than 0 or 1.
    #[error("hash type {0} is not supported (only 0 and 1)")]
    UnsupportedHashType(u32),
    /// Superblock algorithm field is not a NUL-terminated name.
    #[error("superblock algorithm field is not a nul-terminated name")]
    BadAlgorithmField,
    /// A reserved or padding byte of the superblock is not zero.
    #[error("superblock reserved byte at offset {0} is not zero")]
    NonZeroReserved(usize),
    /// Superblock declares zero data blocks.
    #[error("superblock declares zero data blocks")]
    ZeroDataBlocks,
    /// The on-disk superblock disagrees with the parameters given to [`verify()`].
    #[error("superblock {field} does not match the given parameters")]
    SuperblockMismatch {
        /// Name of the field that differs.
        field: &'static str,
    },
    /// A data block does not match its digest in level 0.
    #[error("data block {block} does not match its hash")]
    DataBlockMismatch {
        /// Index of the first bad data block.
        block: u64,
    },
    /// A hash block does not match its digest in the level above.
    #[error("hash block {block} of level {level} does not match its hash")]
    HashBlockMismatch {
        /// Level of the bad block (0 = the level hashing the data).
        level: usize,
        /// Index of the first bad block within that level.
        block: u64,
    },
    /// The top block (or the only data block) does not hash to the expected root.
    #[error("root hash mismatch: expected {expected}, computed {actual}")]
    RootHashMismatch {
        /// Root hash given by the caller.
        expected: Box<RootHash>,
        /// Root hash computed from the device.
        actual: Box<RootHash>,
    },
}
