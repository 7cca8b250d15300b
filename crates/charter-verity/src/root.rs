//! The root hash of data written through a sink that stores none of it.
//!
//! [`RootHasher`] is for callers that need a tree's root hash but not the data or the tree
//! (measuring a layer for a policy): bytes written at or past the end of what was written so
//! far are hashed into level 0 (on another thread when asked), never stored; the upper levels
//! are built in memory from level 0 at [`RootHasher::finish`]. The first `hold` bytes are kept
//! in memory and hashed last, so a producer may rewrite them (the EROFS writer writes its
//! superblock into block 0 at the end); a write to any other byte already hashed is an error,
//! never a wrong root.
//!
//! The root is the one [`crate::format()`] computes over the same final bytes: the tree's
//! contents do not depend on where it is stored. Memory: the held bytes, two chunks per queue
//! slot, and the level-0 digests (8 MiB per GiB of data with SHA-256 and 4 KiB blocks).

use std::io::{self, Seek, SeekFrom, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::format::data_blocks;
use crate::params::{RootHash, VerityParams};
use crate::tree::{BlockHasher, TreeLayout};
use crate::Error;

/// Whole blocks are handed to level 0 once this many bytes are pending.
const CHUNK: usize = 1 << 20;
/// Chunks queued before the producer waits for the hashing thread.
const QUEUE: usize = 4;

/// A `Write + Seek` sink that computes the dm-verity root hash of what is written through it
/// without storing the data (see the module documentation).
#[derive(Debug)]
pub struct RootHasher {
    params: VerityParams,
    block_size: usize,
    stride: usize,
    /// The first bytes, kept until [`RootHasher::finish`] (a whole number of blocks).
    head: Vec<u8>,
    /// Current write position.
    pos: u64,
    /// Bytes before this offset (and at or after `head.len()`) have gone to level 0.
    frontier: u64,
    /// Bytes from `frontier` on, not yet hashed.
    pending: Vec<u8>,
    /// One past the last byte written.
    written: u64,
    /// Level-0 digests of the blocks from `head.len()` on, when hashed on this thread.
    digests: Vec<u8>,
    worker: Option<Worker>,
}

/// The level-0 hashing thread and its queues.
#[derive(Debug)]
struct Worker {
    chunks: SyncSender<Vec<u8>>,
    /// Hashed chunks come back here to be refilled, so steady state allocates nothing.
    spent: Receiver<Vec<u8>>,
    thread: JoinHandle<Vec<u8>>,
}

impl RootHasher {
    /// Starts at offset 0, keeping the first `hold` bytes (rounded up to whole blocks) in
    /// memory so they may be rewritten. With `threaded`, level 0 is hashed on another thread
    /// while the caller produces the next bytes; the root does not depend on it.
    pub fn new(params: VerityParams, hold: usize, threaded: bool) -> Result<Self, Error> {
        params.validate()?;
        let block_size =
            usize::try_from(params.data_block_size).map_err(|_| Error::SizeOverflow)?;
        // The digest slot width level 0 uses; any data size gives the same stride.
        let stride = TreeLayout::new(&params, 1, 0, false)?.digest_stride;
        let hold = hold
            .checked_next_multiple_of(block_size)
            .ok_or(Error::SizeOverflow)?;
        let worker = if threaded {
            let (chunks, for_worker) = sync_channel::<Vec<u8>>(QUEUE);
            let (give_back, spent) = sync_channel::<Vec<u8>>(QUEUE.saturating_add(2));
            let thread_params = params.clone();
            let thread = std::thread::Builder::new()
                .name("verity-root".into())
                .spawn(move || {
                    hash_chunks(&thread_params, block_size, stride, for_worker, give_back)
                })
                .map_err(|e| Error::Io {
                    what: "starting the hashing thread",
                    source: e,
                })?;
            Some(Worker {
                chunks,
                spent,
                thread,
            })
        } else {
            None
        };
        Ok(RootHasher {
            params,
            block_size,
            stride,
            head: vec![0u8; hold],
            pos: 0,
            frontier: hold as u64,
            pending: Vec::with_capacity(CHUNK.saturating_mul(2)),
            written: 0,
            digests: Vec::new(),
            worker,
        })
    }

    fn pending_end(&self) -> u64 {
        self.frontier.saturating_add(self.pending.len() as u64)
    }

    /// Hashes the whole blocks of `pending`, keeping the partial last block pending.
    fn flush_blocks(&mut self) -> io::Result<()> {
        let len = self.pending.len();
        let take = len.saturating_sub(len.checked_rem(self.block_size).unwrap_or(0));
        if take == 0 {
            return Ok(());
        }
        let tail = self.pending.get(take..).unwrap_or_default();
        match &self.worker {
            Some(worker) => {
                let mut next = worker
                    .spent
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK.saturating_mul(2)));
                next.clear();
                next.extend_from_slice(tail);
                let mut chunk = std::mem::replace(&mut self.pending, next);
                chunk.truncate(take);
                worker
                    .chunks
                    .send(chunk)
                    .map_err(|_| io::Error::other("the verity hashing thread stopped"))?;
            }
            None => {
                let hasher = BlockHasher::new(&self.params);
                let blocks = take.checked_div(self.block_size).unwrap_or(0);
                let start = self.digests.len();
                self.digests
                    .resize(start.saturating_add(blocks.saturating_mul(self.stride)), 0);
                if let (Some(data), Some(slots)) =
                    (self.pending.get(..take), self.digests.get_mut(start..))
                {
                    hasher.hash_blocks(data, self.block_size, slots, self.stride);
                }
                self.pending.drain(..take);
            }
        }
        self.frontier = self.frontier.saturating_add(take as u64);
        Ok(())
    }

    /// Hashes what is left and returns the root hash of the first
    /// `data_size / data_block_size` blocks, as [`crate::format()`] would compute it over the
    /// bytes written (a hole reads as zeros).
    pub fn finish(mut self, data_size: u64) -> Result<RootHash, Error> {
        let blocks = data_blocks(data_size, &self.params)?;
        let data_end = blocks
            .checked_mul(u64::from(self.params.data_block_size))
            .ok_or(Error::SizeOverflow)?;
        if data_end > self.written {
            return Err(Error::Truncated {
                what: "data device",
                offset: self.written,
            });
        }
        self.flush_blocks().map_err(|e| Error::Io {
            what: "hashing written data",
            source: e,
        })?;
        let tail = match self.worker.take() {
            Some(worker) => {
                drop(worker.chunks);
                worker.thread.join().map_err(|_| Error::Io {
                    what: "hashing written data",
                    source: io::Error::other("the hashing thread panicked"),
                })?
            }
            None => std::mem::take(&mut self.digests),
        };
        let head_blocks = self.head.len().checked_div(self.block_size).unwrap_or(0);
        let blocks = usize::try_from(blocks).map_err(|_| Error::SizeOverflow)?;
        let want = blocks.checked_mul(self.stride).ok_or(Error::SizeOverflow)?;
        let mut level0 = vec![0u8; head_blocks.min(blocks).saturating_mul(self.stride)];
        let head_len = level0
            .len()
            .checked_div(self.stride)
            .unwrap_or(0)
            .saturating_mul(self.block_size);
        let hasher = BlockHasher::new(&self.params);
        let head = self.head.get(..head_len).ok_or(Error::SizeOverflow)?;
        hasher.hash_blocks(head, self.block_size, &mut level0, self.stride);
        let rest = want.saturating_sub(level0.len());
        level0.extend_from_slice(tail.get(..rest).ok_or(Error::SizeOverflow)?);
        root_of_level0(&self.params, &level0, blocks as u64)
    }
}

/// The root hash of a tree whose level 0 (`data_blocks` digest slots of `digest_stride`
/// bytes, digest first, zero padded) is given: the upper levels are built in memory.
pub(crate) fn root_of_level0(
    params: &VerityParams,
    level0: &[u8],
    data_blocks: u64,
) -> Result<RootHash, Error> {
    let layout = TreeLayout::new(params, data_blocks, 0, false)?;
    let hasher = BlockHasher::new(params);
    if layout.levels.is_empty() {
        // One data block: the root is its digest.
        return RootHash::from_bytes(
            level0
                .get(..hasher.digest_size())
                .ok_or(Error::SizeOverflow)?,
        );
    }
    let stride = layout.digest_stride;
    let hbs = usize::try_from(params.hash_block_size).map_err(|_| Error::SizeOverflow)?;
    let per_block = usize::try_from(layout.hashes_per_block)
        .ok()
        .and_then(|h| h.checked_mul(stride))
        .filter(|&p| p > 0 && p <= hbs)
        .ok_or(Error::SizeOverflow)?;
    let mut below: Vec<u8> = level0.to_vec();
    for _ in 0..layout.levels.len() {
        // Pack the digests of the level below into zero-padded hash blocks.
        let count = below.len().div_ceil(per_block);
        let mut level = vec![0u8; count.checked_mul(hbs).ok_or(Error::SizeOverflow)?];
        for (block, digests) in level.chunks_mut(hbs).zip(below.chunks(per_block)) {
            if let Some(dst) = block.get_mut(..digests.len()) {
                dst.copy_from_slice(digests);
            }
        }
        if count == 1 {
            return hasher.hash_one(&level);
        }
        below = vec![0u8; count.checked_mul(stride).ok_or(Error::SizeOverflow)?];
        hasher.hash_blocks(&level, hbs, &mut below, stride);
    }
    Err(Error::SizeOverflow)
}

/// The hashing thread: level-0 digests of every chunk, in order; spent chunks go back.
fn hash_chunks(
    params: &VerityParams,
    block_size: usize,
    stride: usize,
    chunks: Receiver<Vec<u8>>,
    give_back: SyncSender<Vec<u8>>,
) -> Vec<u8> {
    let hasher = BlockHasher::new(params);
    let mut out = Vec::new();
    for chunk in chunks {
        let blocks = chunk.len().checked_div(block_size).unwrap_or(0);
        let start = out.len();
        out.resize(start.saturating_add(blocks.saturating_mul(stride)), 0);
        if let Some(slots) = out.get_mut(start..) {
            hasher.hash_blocks(&chunk, block_size, slots, stride);
        }
        // The producer may have enough buffers already; dropping this one is fine then.
        let _ = give_back.try_send(chunk);
    }
    out
}

impl Write for RootHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let start = self.pos;
        let end = start
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::other("write position overflows"))?;
        let hold = self.head.len() as u64;
        // Bytes already hashed (and not held) are gone: refuse rather than be wrong.
        if start.max(hold) < end.min(self.frontier) {
            return Err(io::Error::other(format!(
                "rewrite at byte {} of data already hashed into the verity tree",
                start.max(hold)
            )));
        }
        // Held bytes: kept in memory.
        if start < hold {
            let upto = usize::try_from(end.min(hold)).map_err(io::Error::other)?;
            let from = usize::try_from(start).map_err(io::Error::other)?;
            let n = upto.saturating_sub(from);
            if let (Some(dst), Some(src)) = (self.head.get_mut(from..upto), buf.get(..n)) {
                dst.copy_from_slice(src);
            }
        }
        if end > self.frontier {
            let from = start.max(self.frontier);
            let pend_end = self.pending_end();
            if from > pend_end {
                // A hole (seek past the end) reads back as zeros.
                let gap =
                    usize::try_from(from.saturating_sub(pend_end)).map_err(io::Error::other)?;
                self.pending
                    .resize(self.pending.len().saturating_add(gap), 0);
            }
            let skip = usize::try_from(from.saturating_sub(start)).map_err(io::Error::other)?;
            let at =
                usize::try_from(from.saturating_sub(self.frontier)).map_err(io::Error::other)?;
            let src = buf.get(skip..).unwrap_or_default();
            let overlap = self.pending.len().saturating_sub(at).min(src.len());
            let (over, append) = src.split_at(overlap);
            if let Some(dst) = self.pending.get_mut(at..at.saturating_add(overlap)) {
                dst.copy_from_slice(over);
            }
            self.pending.extend_from_slice(append);
        }
        self.pos = end;
        self.written = self.written.max(end);
        if self.pending.len() >= CHUNK {
            self.flush_blocks()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for RootHasher {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.written.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}
