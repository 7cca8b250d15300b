//! Deterministic EROFS images from OCI layer tar streams, and a bounded EROFS reader.
//!
//! In charter a layer's identity is the dm-verity root hash of the EROFS image built here
//! from the layer's uncompressed tar (DESIGN.md, D4). The same tar always gives the same
//! image bytes: no timestamps, UUIDs, randomness or threads influence the output.
//!
//! * [`build_from_tar`] reads the tar once, streaming regular file data straight into the
//!   image, keeps only per-entry metadata (and sub-block file tails, at most 256 MiB, which
//!   are stored inline after their inodes) in memory, then writes directories, inodes and
//!   finally the superblock (one seek back). The image length is a multiple of 4096.
//! * [`Image`] opens an image (from memory or a file), validates it and walks it.
//!
//! The exact on-disk choices and determinism rules are in `FORMAT.md` next to this crate.
//!
//! ```
//! use std::io::Cursor;
//! use charter_erofs::{build_from_tar, BuildOptions, EntryKind, Image};
//!
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut h = tar::Header::new_gnu();
//! h.set_size(5);
//! h.set_mode(0o644);
//! h.set_uid(0);
//! h.set_gid(0);
//! h.set_mtime(1_700_000_000);
//! tar.append_data(&mut h, "etc/motd", &b"hello"[..])?;
//! let tar = tar.into_inner()?;
//!
//! let mut img = Cursor::new(Vec::new());
//! let summary = build_from_tar(tar.as_slice(), &mut img, &BuildOptions::default())?;
//! assert_eq!(summary.image_size % 4096, 0);
//!
//! let image = Image::open(img.into_inner())?;
//! let entries = image.walk()?;
//! let motd = entries.iter().find(|e| e.path == b"etc/motd").expect("present");
//! assert_eq!(motd.kind, EntryKind::File { size: 5 });
//! assert_eq!(image.read_file(motd.nid, 1 << 20)?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Tar semantics: paths may start with `./`; absolute paths, `..` components, duplicate
//! entries, hard links to missing or later entries or to directories are errors. OCI
//! whiteouts `.wh.NAME` become overlay whiteouts (char device 0:0 named NAME, keeping the
//! whiteout entry's permissions, owner and mtime); if NAME also exists as a real entry of the
//! same layer the real entry wins (a whiteout only applies to lower layers). `.wh..wh..opq`
//! sets `trusted.overlay.opaque=y` on its directory. Other `.wh..wh.*` names are rejected.
//! PAX global headers are ignored; PAX-format sparse files (`GNU.sparse.*`) are rejected. Xattrs come from `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`
//! PAX records; only the `user.`, `trusted.`, `security.` and `system.posix_acl_*`
//! namespaces can be stored.

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

mod build;
mod error;
mod format;
mod layout;
mod reader;
mod tree;

use std::io::{Read, Seek, Write};

pub use error::Error;
pub use reader::{Entry, EntryKind, Image, ReadAt};

/// Longest path (in bytes) accepted from a tar or reported by the reader.
pub const MAX_PATH: usize = 16384;

/// Options for [`build_from_tar`]. None of them changes the image bytes as read back.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Seek over whole all-zero blocks of file data instead of writing them, leaving holes
    /// in a sparse output file. Only valid for outputs where a seek past the end followed
    /// by a write reads back as zeros (files, `Cursor<Vec<u8>>`). Default: false.
    pub sparse: bool,
    /// Maximum number of inodes (bounds memory on hostile input). Default: 16 Mi.
    pub max_inodes: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            sparse: false,
            max_inodes: 16 << 20,
        }
    }
}

/// What [`build_from_tar`] produced.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildSummary {
    /// Image length in bytes (a multiple of 4096).
    pub image_size: u64,
    /// Inodes in the image (hard links counted once).
    pub inodes: u64,
    /// Regular file entries with data in the tar (hard links not counted).
    pub files: u64,
    /// Total bytes of regular file content.
    pub data_bytes: u64,
}

/// Builds a deterministic EROFS image from an uncompressed layer tar stream.
///
/// The image is written to `out` starting at its current position, which is left at the
/// image end. `out` is written sequentially except for one seek back to write the
/// superblock (and holes if [`BuildOptions::sparse`]).
pub fn build_from_tar<R: Read, W: Write + Seek>(
    tar: R,
    out: W,
    opts: &BuildOptions,
) -> Result<BuildSummary, Error> {
    build::build(tar, out, opts)
}
