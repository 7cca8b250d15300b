//! Building a hash tree (`veritysetup format`).

use std::fs::File;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;

use crate::io::{self, BlockSource, FileSource, LevelWriter, Pass, ReadSource};
use crate::params::{RootHash, VerityParams};
use crate::superblock::{Superblock, SUPERBLOCK_SIZE};
use crate::tree::{BlockHasher, TreeLayout};
use crate::Error;

/// How to format, beyond the tree parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// Threads reading and hashing blocks. With 1, all work runs on the calling thread.
    pub threads: NonZeroUsize,
    /// Write a superblock with this UUID (`--uuid`) at the hash offset; `None` is
    /// `--no-superblock`.
    pub superblock: Option<[u8; 16]>,
}

impl Default for FormatOptions {
    /// All available cores, no superblock.
    fn default() -> Self {
        FormatOptions {
            threads: default_threads(),
            superblock: None,
        }
    }
}

/// `std::thread::available_parallelism`, or 1.
pub(crate) fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// The outcome of [`format()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    /// The root hash.
    pub root_hash: RootHash,
    /// Number of data blocks hashed.
    pub data_blocks: u64,
    /// Where the superblock and the levels are.
    pub layout: TreeLayout,
    /// Bytes from `hash_offset` to the end of what was written (superblock, zero gap, tree).
    pub hash_area_size: u64,
}

/// Builds the tree of the first `data_size / data_block_size` blocks of `data` into `hash_dev`
/// at `hash_offset`, exactly as `veritysetup format` does.
///
/// `data` and `hash_dev` may be the same file (the tree appended after the data): the hash area
/// must then start at or after the end of the data blocks. `hash_dev` must be open for reading
/// and writing (upper levels are read back). Memory use does not depend on the data size.
pub fn format(
    data: &File,
    data_size: u64,
    hash_dev: &File,
    hash_offset: u64,
    params: &VerityParams,
    opts: &FormatOptions,
) -> Result<Formatted, Error> {
    let data_blocks = data_blocks(data_size, params)?;
    let layout = TreeLayout::new(params, data_blocks, hash_offset, opts.superblock.is_some())?;
    check_overlap(data, hash_dev, &layout, hash_offset, params)?;
    let mut src = FileSource {
        file: data,
        what: "data device",
    };
    build(
        Level0::Source(&mut src),
        layout,
        hash_dev,
        hash_offset,
        params,
        opts,
    )
}

/// Like [`format()`], reading the data from a stream (a pipe, a decompressor...). Exactly
/// `data_size / data_block_size` whole blocks are read; a short stream is
/// [`Error::Truncated`].
pub fn format_reader<R: Read>(
    data: R,
    data_size: u64,
    hash_dev: &File,
    hash_offset: u64,
    params: &VerityParams,
    opts: &FormatOptions,
) -> Result<Formatted, Error> {
    let data_blocks = data_blocks(data_size, params)?;
    let layout = TreeLayout::new(params, data_blocks, hash_offset, opts.superblock.is_some())?;
    let mut src = ReadSource {
        reader: data,
        position: 0,
    };
    build(
        Level0::Source(&mut src),
        layout,
        hash_dev,
        hash_offset,
        params,
        opts,
    )
}

/// Whole data blocks in `data_size` bytes; none is an error (as in `veritysetup`).
pub(crate) fn data_blocks(data_size: u64, params: &VerityParams) -> Result<u64, Error> {
    params.validate()?;
    let blocks = data_size
        .checked_div(u64::from(params.data_block_size))
        .unwrap_or(0);
    if blocks == 0 {
        return Err(Error::NoDataBlocks {
            data_size,
            block_size: params.data_block_size,
        });
    }
    Ok(blocks)
}

/// `veritysetup` refuses a hash area starting inside the data area of the same device. We also
/// refuse a superblock-less tree whose start, rounded down to a hash block, falls inside the
/// data (`veritysetup` then overwrites the end of the data).
pub(crate) fn check_overlap(
    data: &File,
    hash_dev: &File,
    layout: &TreeLayout,
    hash_offset: u64,
    params: &VerityParams,
) -> Result<(), Error> {
    let meta = |f: &File| {
        f.metadata().map_err(|e| Error::Io {
            what: "reading file metadata",
            source: e,
        })
    };
    let (d, h) = (meta(data)?, meta(hash_dev)?);
    let data_end = layout
        .data_blocks
        .checked_mul(u64::from(params.data_block_size))
        .ok_or(Error::SizeOverflow)?;
    let hash_start = hash_offset.min(layout.tree_offset);
    if d.dev() == h.dev() && d.ino() == h.ino() && hash_start < data_end {
        return Err(Error::HashAreaOverlapsData {
            hash_offset,
            data_end,
        });
    }
    Ok(())
}

/// Where level 0 (the digests of the data blocks) comes from.
pub(crate) enum Level0<'s, S> {
    /// Hash the data blocks of this source.
    Source(&'s mut S),
    /// Already hashed: `data_blocks` slots of `digest_stride` bytes, digest first, zero padded.
    Digests(&'s [u8]),
}

pub(crate) fn build<S: BlockSource>(
    level0_input: Level0<'_, S>,
    layout: TreeLayout,
    hash_dev: &File,
    hash_offset: u64,
    params: &VerityParams,
    opts: &FormatOptions,
) -> Result<Formatted, Error> {
    let data_blocks = layout.data_blocks;
    let hasher = BlockHasher::new(params);
    let hbs = usize::try_from(params.hash_block_size).map_err(|_| Error::SizeOverflow)?;
    let dbs = usize::try_from(params.data_block_size).map_err(|_| Error::SizeOverflow)?;
    let per_block = usize::try_from(layout.hashes_per_block)
        .ok()
        .and_then(|h| h.checked_mul(layout.digest_stride))
        .ok_or(Error::SizeOverflow)?;
    let threads = opts.threads.get();

    let root_hash = match layout.levels.split_first() {
        None => match level0_input {
            // One data block: the root is its digest and there is no tree.
            Level0::Source(src) => {
                let mut block = vec![0u8; dbs];
                src.read_block_run(&mut block, 0)?;
                hasher.hash_one(&block)?
            }
            Level0::Digests(d) => {
                RootHash::from_bytes(d.get(..hasher.digest_size()).ok_or(Error::SizeOverflow)?)?
            }
        },
        Some((level0, _)) => {
            let mut w = LevelWriter::new(hash_dev, level0.offset, hbs, per_block);
            let pass = Pass {
                offset: 0,
                blocks: data_blocks,
                block_size: dbs,
                stride: layout.digest_stride,
                threads,
            };
            match level0_input {
                Level0::Source(src) => io::hash_pass(src, pass, &hasher, |_, d| w.push(d))?,
                Level0::Digests(d) => {
                    let want = usize::try_from(data_blocks)
                        .ok()
                        .and_then(|b| b.checked_mul(layout.digest_stride))
                        .ok_or(Error::SizeOverflow)?;
                    w.push(d.get(..want).ok_or(Error::SizeOverflow)?)?;
                }
            }
            w.finish()?;
            // Upper levels hash the level below, read back from the hash device.
            for pair in layout.levels.windows(2) {
                let [below, level] = pair else { continue };
                let mut w = LevelWriter::new(hash_dev, level.offset, hbs, per_block);
                let mut hsrc = FileSource {
                    file: hash_dev,
                    what: "hash device",
                };
                let pass = Pass {
                    offset: below.offset,
                    blocks: below.blocks,
                    block_size: hbs,
                    stride: layout.digest_stride,
                    threads,
                };
                io::hash_pass(&mut hsrc, pass, &hasher, |_, d| w.push(d))?;
                w.finish()?;
            }
            let top = layout.levels.last().ok_or(Error::SizeOverflow)?;
            let mut block = vec![0u8; hbs];
            io::read_exact_at(hash_dev, &mut block, top.offset, "hash device")?;
            hasher.hash_one(&block)?
        }
    };

    if let (Some(uuid), Some(sb_offset)) = (opts.superblock, layout.superblock_offset) {
        let sb = Superblock::new(params, data_blocks, uuid).encode();
        io::write_all_at(hash_dev, &sb, sb_offset)?;
        // Zero the gap up to the tree. veritysetup extends the hash device to the end of the
        // tree (to `tree_offset` when there is no tree) but leaves old bytes there; a fresh file
        // holds zeros, which we write explicitly to stay deterministic on reused files.
        let sb_end = sb_offset.saturating_add(SUPERBLOCK_SIZE as u64);
        if layout.tree_offset > sb_end {
            let gap = usize::try_from(layout.tree_offset.saturating_sub(sb_end))
                .map_err(|_| Error::SizeOverflow)?;
            io::write_all_at(hash_dev, &vec![0u8; gap], sb_end)?;
        }
    }

    let end = layout.tree_end();
    Ok(Formatted {
        root_hash,
        data_blocks,
        hash_area_size: end.saturating_sub(hash_offset),
        layout,
    })
}
