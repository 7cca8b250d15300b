//! charter layer images: a deterministic EROFS image of the layer tar, then a dm-verity v1
//! superblock and hash tree appended right after it (DESIGN.md D4).
//!
//! ```text
//! 0                     data_size           data_size + 4096
//! | EROFS (4 KiB blocks) | verity superblock | hash tree (top level first) |
//! ```
//!
//! The verity parameters are fixed: SHA-256, 4096-byte data and hash blocks, 32 zero bytes of
//! salt, format v1, as `veritysetup format --hash-offset=<data_size>` writes them. The
//! superblock's UUID is all zero so that the whole file, not just the root hash, is a function
//! of the tar.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;

use charter_verity::{
    FormatOptions, RootHash, RootHasher, VerifyOptions, VerityParams, VerityWriter,
};

use crate::Error;

/// Names the layer image format; part of the cache key. Bump it whenever the bytes of a layer
/// image for the same tar could change.
pub const LAYER_FORMAT: &str = "erofs1-verity1-sha256-4k";

/// A built layer image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerImage {
    /// The dm-verity root hash: the layer's identity in policies.
    pub root_hash: RootHash,
    /// Bytes of EROFS data (the verity data device size).
    pub data_size: u64,
    /// Total size of the image file, tree included.
    pub total_size: u64,
    /// What the EROFS writer reported.
    pub erofs: charter_erofs::BuildSummary,
}

/// Converts the tar stream `tar` into a layer image written to `out` (which must be empty and
/// seekable, open for reading and writing), with the verity tree appended. With more than one
/// thread the data blocks are hashed on another core while they are written. `threads` does
/// not change a single output byte.
pub fn build_layer_image<R: Read>(
    tar: R,
    out: &File,
    threads: NonZeroUsize,
    what: &str,
) -> Result<LayerImage, Error> {
    let verity_error = |source| Error::Verity {
        what: what.to_owned(),
        source,
    };
    let params = VerityParams::default();
    let options = FormatOptions {
        threads,
        superblock: Some([0u8; 16]),
    };
    let (erofs, formatted) = if threads.get() > 1 {
        // Hash level 0 on another core while the EROFS writer copies file data.
        let mut tee = VerityWriter::new(out, params).map_err(verity_error)?;
        let erofs = write_erofs(tar, &mut tee, what)?;
        let data_size = erofs.image_size;
        let formatted = tee
            .finish(data_size, data_size, &options)
            .map_err(verity_error)?;
        (erofs, formatted)
    } else {
        let mut file = out;
        let erofs = write_erofs(tar, &mut file, what)?;
        let data_size = erofs.image_size;
        let formatted = charter_verity::format(out, data_size, out, data_size, &params, &options)
            .map_err(verity_error)?;
        (erofs, formatted)
    };
    let total_size = (&*out)
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(what, e))?;
    Ok(LayerImage {
        root_hash: formatted.root_hash,
        data_size: erofs.image_size,
        total_size,
        erofs,
    })
}

/// What [`layer_root_hash`] computed: the layer image's identity without the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRoot {
    /// The dm-verity root hash [`build_layer_image`] would give for the same tar.
    pub root_hash: RootHash,
    /// Bytes of EROFS data (the verity data device size).
    pub data_size: u64,
    /// What the EROFS writer reported.
    pub erofs: charter_erofs::BuildSummary,
}

/// Bytes at the start of the EROFS image the writer rewrites at the end (block 0: the
/// superblock sits at 1024); the root hasher holds them in memory until then.
const EROFS_REWRITTEN_HEAD: usize = 4096;

/// Computes the root hash of the layer image of the tar stream `tar`, byte for byte the one
/// [`build_layer_image`] gives, without writing the image anywhere: the EROFS bytes are hashed
/// into level 0 as they are produced (on another core when `threads` > 1) and dropped, and the
/// upper levels are built in memory. For measuring layers (policies, the cache), where only
/// the root hash is kept.
pub fn layer_root_hash<R: Read>(
    tar: R,
    threads: NonZeroUsize,
    what: &str,
) -> Result<LayerRoot, Error> {
    let verity_error = |source| Error::Verity {
        what: what.to_owned(),
        source,
    };
    let mut sink = RootHasher::new(
        VerityParams::default(),
        EROFS_REWRITTEN_HEAD,
        threads.get() > 1,
    )
    .map_err(verity_error)?;
    // The EROFS writer buffers its output itself: no second buffer here.
    let erofs =
        charter_erofs::build_from_tar(tar, &mut sink, &charter_erofs::BuildOptions::default())
            .map_err(|source| Error::Erofs {
                diff_id: what.to_owned(),
                source,
            })?;
    let root_hash = sink.finish(erofs.image_size).map_err(verity_error)?;
    Ok(LayerRoot {
        root_hash,
        data_size: erofs.image_size,
        erofs,
    })
}

fn write_erofs<R: Read, W: Write + Seek>(
    tar: R,
    out: W,
    what: &str,
) -> Result<charter_erofs::BuildSummary, Error> {
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let summary =
        charter_erofs::build_from_tar(tar, &mut writer, &charter_erofs::BuildOptions::default())
            .map_err(|source| Error::Erofs {
                diff_id: what.to_owned(),
                source,
            })?;
    writer.flush().map_err(|e| Error::io(what, e))?;
    Ok(summary)
}

/// Checks a layer image against `root_hash`: the data size comes from the EROFS superblock, the
/// verity superblock after it must carry charter's fixed parameters, and every block is
/// rehashed. The error names the first block that does not match.
pub fn verify_layer_image(
    image: &File,
    root_hash: &RootHash,
    threads: NonZeroUsize,
    what: &str,
) -> Result<u64, Error> {
    let erofs_error = |source| Error::Erofs {
        diff_id: what.to_owned(),
        source,
    };
    let erofs = charter_erofs::Image::open(image).map_err(erofs_error)?;
    if erofs.block_size() != 4096 {
        return Err(Error::Malformed(format!(
            "{what}: EROFS block size {} is not charter's 4096",
            erofs.block_size()
        )));
    }
    let data_size = erofs.data_size();
    // The superblock must be there and agree with charter's fixed parameters and the data size
    // read from EROFS; the root comes from the caller (the policy), never from the image.
    let options = VerifyOptions {
        threads,
        superblock: true,
    };
    let params = VerityParams::default();
    charter_verity::verify(
        image, data_size, image, data_size, &params, root_hash, &options,
    )
    .map_err(|source| Error::Verity {
        what: what.to_owned(),
        source,
    })?;
    Ok(data_size)
}
