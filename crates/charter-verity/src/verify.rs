//! Verifying a hash tree against a root hash, naming the first bad block.

use std::fs::File;
use std::num::NonZeroUsize;

use crate::format::{data_blocks, default_threads};
use crate::io::{self, FileSource, Pass};
use crate::params::{RootHash, VerityParams};
use crate::superblock::Superblock;
use crate::tree::{BlockHasher, TreeLayout};
use crate::Error;

/// How to verify, beyond the tree parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Hashing threads (as [`crate::FormatOptions::threads`]).
    pub threads: NonZeroUsize,
    /// Whether a superblock sits at the hash offset. It is then read and must agree with the
    /// parameters and the data size.
    pub superblock: bool,
}

impl Default for VerifyOptions {
    /// All available cores, no superblock.
    fn default() -> Self {
        VerifyOptions {
            threads: default_threads(),
            superblock: false,
        }
    }
}

/// Checks `data` (its first `data_size / data_block_size` blocks) and the tree in `hash_dev` at
/// `hash_offset` against `root_hash`.
///
/// Checks run top-down: the top block against the root, each level against the one above, then
/// the data blocks against level 0. The error names the first bad block in that order:
/// [`Error::RootHashMismatch`], [`Error::HashBlockMismatch`] or [`Error::DataBlockMismatch`].
/// Zero padding inside hash blocks is covered because whole blocks are hashed.
pub fn verify(
    data: &File,
    data_size: u64,
    hash_dev: &File,
    hash_offset: u64,
    params: &VerityParams,
    root_hash: &RootHash,
    opts: &VerifyOptions,
) -> Result<(), Error> {
    let blocks = data_blocks(data_size, params)?;
    if opts.superblock {
        let sb = Superblock::read_at(hash_dev, hash_offset)?;
        check_superblock(&sb, params, blocks)?;
    }
    verify_tree(
        data,
        blocks,
        hash_dev,
        hash_offset,
        params,
        root_hash,
        opts.superblock,
        opts.threads,
    )
}

/// Reads the superblock at `hash_offset` of `hash_dev` and verifies with its parameters and
/// data block count. For a layer image with an appended tree pass the same file twice.
/// Returns the superblock.
pub fn verify_with_superblock(
    data: &File,
    hash_dev: &File,
    hash_offset: u64,
    root_hash: &RootHash,
    threads: NonZeroUsize,
) -> Result<Superblock, Error> {
    let sb = Superblock::read_at(hash_dev, hash_offset)?;
    let params = sb.params();
    verify_tree(
        data,
        sb.data_blocks,
        hash_dev,
        hash_offset,
        &params,
        root_hash,
        true,
        threads,
    )?;
    Ok(sb)
}

fn check_superblock(sb: &Superblock, params: &VerityParams, blocks: u64) -> Result<(), Error> {
    let checks = [
        (sb.format == params.format, "hash type"),
        (sb.hash == params.hash, "algorithm"),
        (
            sb.data_block_size == params.data_block_size,
            "data block size",
        ),
        (
            sb.hash_block_size == params.hash_block_size,
            "hash block size",
        ),
        (sb.salt == params.salt, "salt"),
        (sb.data_blocks == blocks, "data blocks"),
    ];
    match checks.into_iter().find(|(ok, _)| !ok) {
        Some((_, field)) => Err(Error::SuperblockMismatch { field }),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_tree(
    data: &File,
    blocks: u64,
    hash_dev: &File,
    hash_offset: u64,
    params: &VerityParams,
    root_hash: &RootHash,
    superblock: bool,
    threads: NonZeroUsize,
) -> Result<(), Error> {
    let layout = TreeLayout::new(params, blocks, hash_offset, superblock)?;
    let hasher = BlockHasher::new(params);
    let digest = hasher.digest_size();
    if root_hash.len() != digest {
        return Err(Error::RootHashLength {
            algorithm: params.hash,
            expected: digest,
            actual: root_hash.len(),
        });
    }
    let hbs = usize::try_from(params.hash_block_size).map_err(|_| Error::SizeOverflow)?;
    let dbs = usize::try_from(params.data_block_size).map_err(|_| Error::SizeOverflow)?;

    // Root: the top block, or the only data block.
    let (top_file, top_offset, top_size, top_what) = match layout.levels.last() {
        Some(top) => (hash_dev, top.offset, hbs, "hash device"),
        None => (data, 0, dbs, "data device"),
    };
    let mut block = vec![0u8; top_size];
    io::read_exact_at(top_file, &mut block, top_offset, top_what)?;
    let actual = hasher.hash_one(&block)?;
    if actual != *root_hash {
        return Err(Error::RootHashMismatch {
            expected: Box::new(*root_hash),
            actual: Box::new(actual),
        });
    }

    // Each level below the top against its parent, then the data against level 0.
    for (index, parent) in layout.levels.iter().enumerate().rev() {
        let (file, what, offset, count, block_size) = match index.checked_sub(1) {
            Some(child) => {
                let l = layout.levels.get(child).ok_or(Error::SizeOverflow)?;
                (hash_dev, "hash device", l.offset, l.blocks, hbs)
            }
            None => (data, "data device", 0, blocks, dbs),
        };
        let mut src = FileSource { file, what };
        let pass = Pass {
            offset,
            blocks: count,
            block_size,
            stride: layout.digest_stride,
            threads: threads.get(),
        };
        let mut parent_buf = Vec::new();
        io::hash_pass(&mut src, pass, &hasher, |first, digests| {
            let bad = compare_run(
                hash_dev,
                &layout,
                parent.offset,
                first,
                digests,
                digest,
                &mut parent_buf,
            )?;
            match (bad, index.checked_sub(1)) {
                (None, _) => Ok(()),
                (Some(block), None) => Err(Error::DataBlockMismatch { block }),
                (Some(block), Some(level)) => Err(Error::HashBlockMismatch { level, block }),
            }
        })?;
    }
    Ok(())
}

/// Compares computed digests of children `first..` with those stored in the parent level at
/// `parent_offset`; returns the first mismatching child index.
fn compare_run(
    hash_dev: &File,
    layout: &TreeLayout,
    parent_offset: u64,
    first: u64,
    digests: &[u8],
    digest: usize,
    parent_buf: &mut Vec<u8>,
) -> Result<Option<u64>, Error> {
    let stride = layout.digest_stride;
    let hpb = layout.hashes_per_block;
    let hbs = layout.hash_block_size;
    let count = digests.len().checked_div(stride).unwrap_or(0);
    let count = u64::try_from(count).map_err(|_| Error::SizeOverflow)?;
    if count == 0 {
        return Ok(None);
    }
    let div = |x: u64| x.checked_div(hpb).ok_or(Error::SizeOverflow);
    let first_pb = div(first)?;
    let last_pb = div(first.saturating_add(count).saturating_sub(1))?;
    let pblocks = last_pb.saturating_sub(first_pb).saturating_add(1);
    let len = usize::try_from(pblocks.saturating_mul(hbs)).map_err(|_| Error::SizeOverflow)?;
    parent_buf.resize(len, 0);
    let at = parent_offset.saturating_add(first_pb.saturating_mul(hbs));
    io::read_exact_at(hash_dev, parent_buf, at, "hash device")?;
    for (k, computed) in (first..).zip(digests.chunks_exact(stride)) {
        let slot = k.checked_rem(hpb).ok_or(Error::SizeOverflow)?;
        let pos = div(k)?
            .saturating_sub(first_pb)
            .saturating_mul(hbs)
            .saturating_add(slot.saturating_mul(stride as u64));
        let pos = usize::try_from(pos).map_err(|_| Error::SizeOverflow)?;
        let stored = parent_buf.get(pos..pos.saturating_add(digest));
        if stored != computed.get(..digest) {
            return Ok(Some(k));
        }
    }
    Ok(None)
}
