//! Block sources, the chunked (multi-threaded) hashing loop, and the level writer.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;

use crate::tree::BlockHasher;
use crate::Error;

/// Bytes per read of a streamed source (two chunk buffers are live at a time).
const CHUNK_BYTES: usize = 4 << 20;
/// Bytes per positional read of a worker: small enough to stay in the core's L2 cache between
/// the copy from the page cache and hashing.
const PIECE_BYTES: usize = 256 << 10;
/// Bytes each worker hashes per round (between two synchronisations).
const ROUND_BYTES_PER_WORKER: usize = 8 << 20;
/// Hash output is written in batches of about this size.
const WRITE_BATCH: usize = 1 << 20;

/// Something blocks can be read from, in increasing offset order.
pub(crate) trait BlockSource {
    /// Fills `buf` with the bytes at `offset`.
    fn read_block_run(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error>;

    /// The file and its name, when workers may read it themselves (positional reads).
    fn positional(&self) -> Option<(&File, &'static str)> {
        None
    }
}

/// Positional reads from a file.
pub(crate) struct FileSource<'a> {
    pub(crate) file: &'a File,
    /// "data device" or "hash device", for errors.
    pub(crate) what: &'static str,
}

impl BlockSource for FileSource<'_> {
    fn read_block_run(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        read_exact_at(self.file, buf, offset, self.what)
    }

    fn positional(&self) -> Option<(&File, &'static str)> {
        Some((self.file, self.what))
    }
}

/// Positional read that maps a short read to [`Error::Truncated`].
pub(crate) fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), Error> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            Error::Truncated { what, offset }
        } else {
            Error::Io {
                what: if what == "data device" {
                    "reading the data device"
                } else {
                    "reading the hash device"
                },
                source: e,
            }
        }
    })
}

/// Positional write.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> Result<(), Error> {
    file.write_all_at(buf, offset).map_err(|e| Error::Io {
        what: "writing the hash device",
        source: e,
    })
}

/// A sequential reader; offsets are ignored (reads are always consecutive).
pub(crate) struct ReadSource<R> {
    pub(crate) reader: R,
    pub(crate) position: u64,
}

impl<R: Read> BlockSource for ReadSource<R> {
    fn read_block_run(&mut self, buf: &mut [u8], _offset: u64) -> Result<(), Error> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::Truncated {
                    what: "data stream",
                    offset: self.position,
                }
            } else {
                Error::Io {
                    what: "reading the data stream",
                    source: e,
                }
            }
        })?;
        let len = u64::try_from(buf.len()).map_err(|_| Error::SizeOverflow)?;
        self.position = self.position.saturating_add(len);
        Ok(())
    }
}

/// Geometry of one hashing pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    /// Byte offset of the first block in the source.
    pub(crate) offset: u64,
    /// Number of blocks to hash.
    pub(crate) blocks: u64,
    /// Block size in bytes.
    pub(crate) block_size: usize,
    /// Distance between digests in the output.
    pub(crate) stride: usize,
    /// Hashing threads.
    pub(crate) threads: usize,
}

/// Hashes `pass.blocks` blocks from `src`, calling `sink(first_index, digests)` in order with
/// the digests of consecutive runs of blocks (`stride` bytes apart, slot padding zero).
///
/// Files are read by the workers themselves ([`hash_pass_positional`]); streams by the calling
/// thread, one chunk ahead of the workers ([`hash_pass_streamed`]).
pub(crate) fn hash_pass<S: BlockSource>(
    src: &mut S,
    pass: Pass,
    hasher: &BlockHasher<'_>,
    sink: impl FnMut(u64, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    match src.positional() {
        Some((file, what)) => hash_pass_positional(file, what, pass, hasher, sink),
        None => hash_pass_streamed(src, pass, hasher, sink),
    }
}

/// Positional sources: each worker reads its own share of a round in small pieces and hashes
/// them while they are hot in its cache; the calling thread only collects digests.
fn hash_pass_positional(
    file: &File,
    what: &'static str,
    pass: Pass,
    hasher: &BlockHasher<'_>,
    mut sink: impl FnMut(u64, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let Pass {
        offset,
        blocks,
        block_size,
        stride,
        threads,
    } = pass;
    if blocks == 0 || block_size == 0 || stride == 0 {
        return Ok(());
    }
    // No more workers than pieces: small (upper) levels run on the calling thread.
    let pieces_total = blocks
        .saturating_mul(u64::try_from(block_size).map_err(|_| Error::SizeOverflow)?)
        .div_ceil(PIECE_BYTES as u64);
    let threads = threads
        .min(usize::try_from(pieces_total).unwrap_or(usize::MAX))
        .max(1);
    let piece_blocks = PIECE_BYTES.checked_div(block_size).unwrap_or(1).max(1);
    let worker_blocks = ROUND_BYTES_PER_WORKER
        .checked_div(block_size)
        .unwrap_or(1)
        .max(piece_blocks);
    let round_blocks = worker_blocks.saturating_mul(threads);
    let round_u64 = u64::try_from(round_blocks).map_err(|_| Error::SizeOverflow)?;
    let round_blocks = usize::try_from(blocks.min(round_u64)).map_err(|_| Error::SizeOverflow)?;
    let mut digests = vec![
        0u8;
        round_blocks
            .checked_mul(stride)
            .ok_or(Error::SizeOverflow)?
    ];
    let piece_len = piece_blocks
        .checked_mul(block_size)
        .ok_or(Error::SizeOverflow)?;
    let mut pieces = vec![0u8; piece_len.checked_mul(threads).ok_or(Error::SizeOverflow)?];
    let bs_u64 = u64::try_from(block_size).map_err(|_| Error::SizeOverflow)?;
    let round_u64 = round_u64.min(blocks);

    let mut done: u64 = 0;
    while done < blocks {
        let n = blocks.saturating_sub(done).min(round_u64);
        let n_usize = usize::try_from(n).map_err(|_| Error::SizeOverflow)?;
        let out = digests
            .get_mut(..n_usize.saturating_mul(stride))
            .ok_or(Error::SizeOverflow)?;
        let start = offset.saturating_add(done.saturating_mul(bs_u64));
        let per = n_usize.div_ceil(threads).max(1);
        let work = out
            .chunks_mut(per.saturating_mul(stride))
            .zip(pieces.chunks_mut(piece_len))
            .zip((0u64..).map(|k| {
                let k_blocks = k.saturating_mul(u64::try_from(per).unwrap_or(u64::MAX));
                start.saturating_add(k_blocks.saturating_mul(bs_u64))
            }));
        if threads == 1 {
            for ((o, buf), at) in work {
                read_and_hash(file, what, at, o, buf, block_size, stride, hasher)?;
            }
        } else {
            std::thread::scope(|s| -> Result<(), Error> {
                let handles: Vec<_> = work
                    .map(|((o, buf), at)| {
                        s.spawn(move || {
                            read_and_hash(file, what, at, o, buf, block_size, stride, hasher)
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| Error::Io {
                        what: "hashing blocks",
                        source: std::io::Error::other("hashing thread panicked"),
                    })??;
                }
                Ok(())
            })?;
        }
        sink(done, out)?;
        done = done.saturating_add(n);
    }
    Ok(())
}

/// Reads the blocks whose digests go to `out` (one per `stride` bytes) from `at` on, a piece
/// at a time through `buf`, and hashes them.
#[allow(clippy::too_many_arguments)]
fn read_and_hash(
    file: &File,
    what: &'static str,
    mut at: u64,
    out: &mut [u8],
    buf: &mut [u8],
    block_size: usize,
    stride: usize,
    hasher: &BlockHasher<'_>,
) -> Result<(), Error> {
    let piece_blocks = buf.len().checked_div(block_size).unwrap_or(0).max(1);
    for o in out.chunks_mut(piece_blocks.saturating_mul(stride)) {
        let m = o.len().checked_div(stride).unwrap_or(0);
        let len = m.saturating_mul(block_size);
        let data = buf.get_mut(..len).ok_or(Error::SizeOverflow)?;
        read_exact_at(file, data, at, what)?;
        hasher.hash_blocks(data, block_size, o, stride);
        at = at.saturating_add(u64::try_from(len).map_err(|_| Error::SizeOverflow)?);
    }
    Ok(())
}

/// Streamed sources: the calling thread reads the next chunk while workers hash this one.
fn hash_pass_streamed<S: BlockSource>(
    src: &mut S,
    pass: Pass,
    hasher: &BlockHasher<'_>,
    mut sink: impl FnMut(u64, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let Pass {
        offset,
        blocks,
        block_size,
        stride,
        threads,
    } = pass;
    if blocks == 0 || block_size == 0 {
        return Ok(());
    }
    let threads = threads.max(1);
    let chunk_blocks = CHUNK_BYTES
        .checked_div(block_size)
        .unwrap_or(1)
        .max(threads)
        .max(1);
    let chunk_blocks_u64 = u64::try_from(chunk_blocks).map_err(|_| Error::SizeOverflow)?;
    let first = usize::try_from(blocks.min(chunk_blocks_u64)).map_err(|_| Error::SizeOverflow)?;
    let buf_len = first.checked_mul(block_size).ok_or(Error::SizeOverflow)?;
    let mut cur = vec![0u8; buf_len];
    let mut next = if blocks > chunk_blocks_u64 {
        vec![0u8; buf_len]
    } else {
        Vec::new()
    };
    let mut digests = vec![0u8; first.checked_mul(stride).ok_or(Error::SizeOverflow)?];
    let bs_u64 = u64::try_from(block_size).map_err(|_| Error::SizeOverflow)?;

    src.read_block_run(&mut cur, offset)?;
    let mut done: u64 = 0;
    while done < blocks {
        let n = blocks.saturating_sub(done).min(chunk_blocks_u64);
        let after = done.saturating_add(n);
        let n_next = blocks.saturating_sub(after).min(chunk_blocks_u64);
        let n_usize = usize::try_from(n).map_err(|_| Error::SizeOverflow)?;
        let next_usize = usize::try_from(n_next).map_err(|_| Error::SizeOverflow)?;
        let data = cur
            .get(..n_usize.saturating_mul(block_size))
            .ok_or(Error::SizeOverflow)?;
        let out = digests
            .get_mut(..n_usize.saturating_mul(stride))
            .ok_or(Error::SizeOverflow)?;
        let next_buf = next
            .get_mut(..next_usize.saturating_mul(block_size))
            .ok_or(Error::SizeOverflow)?;
        let next_offset = offset.saturating_add(after.saturating_mul(bs_u64));

        if threads == 1 {
            hasher.hash_blocks(data, block_size, out, stride);
            if n_next > 0 {
                src.read_block_run(next_buf, next_offset)?;
            }
        } else {
            let per = n_usize.div_ceil(threads).max(1);
            std::thread::scope(|s| -> Result<(), Error> {
                for (d, o) in data
                    .chunks(per.saturating_mul(block_size))
                    .zip(out.chunks_mut(per.saturating_mul(stride)))
                {
                    s.spawn(move || hasher.hash_blocks(d, block_size, o, stride));
                }
                if n_next > 0 {
                    src.read_block_run(next_buf, next_offset)?;
                }
                Ok(())
            })?;
        }
        sink(done, out)?;
        std::mem::swap(&mut cur, &mut next);
        done = after;
    }
    Ok(())
}

/// Writes one level: digests in, zero-padded hash blocks out, sequentially from an offset.
pub(crate) struct LevelWriter<'a> {
    file: &'a File,
    /// Offset where `batch` goes.
    position: u64,
    block_size: usize,
    /// Digest bytes per full block (`hashes_per_block * stride`).
    per_block: usize,
    batch: Vec<u8>,
    /// Digest bytes in the last (open) block of `batch`; 0 when no block is open.
    in_block: usize,
    /// Blocks written so far.
    pub(crate) blocks: u64,
}

impl<'a> LevelWriter<'a> {
    pub(crate) fn new(file: &'a File, position: u64, block_size: usize, per_block: usize) -> Self {
        LevelWriter {
            file,
            position,
            block_size,
            per_block,
            batch: Vec::with_capacity(WRITE_BATCH.saturating_add(block_size)),
            in_block: 0,
            blocks: 0,
        }
    }

    /// Appends digests (a whole number of `stride`-byte slots).
    pub(crate) fn push(&mut self, mut digests: &[u8]) -> Result<(), Error> {
        while !digests.is_empty() {
            if self.in_block == 0 {
                let len = self.batch.len();
                self.batch.resize(len.saturating_add(self.block_size), 0);
                self.blocks = self.blocks.saturating_add(1);
            }
            let room = self.per_block.saturating_sub(self.in_block);
            let (now, rest) = digests.split_at(room.min(digests.len()));
            let start = self
                .batch
                .len()
                .saturating_sub(self.block_size)
                .saturating_add(self.in_block);
            let dst = self
                .batch
                .get_mut(start..start.saturating_add(now.len()))
                .ok_or(Error::SizeOverflow)?;
            dst.copy_from_slice(now);
            self.in_block = self.in_block.saturating_add(now.len());
            digests = rest;
            if self.in_block >= self.per_block {
                self.in_block = 0;
                if self.batch.len() >= WRITE_BATCH {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        write_all_at(self.file, &self.batch, self.position)?;
        let len = u64::try_from(self.batch.len()).map_err(|_| Error::SizeOverflow)?;
        self.position = self.position.saturating_add(len);
        self.batch.clear();
        Ok(())
    }

    /// Writes out everything, including a partial last block (zero padded).
    pub(crate) fn finish(mut self) -> Result<u64, Error> {
        self.flush()?;
        Ok(self.blocks)
    }
}
