//! Hashing data while it is written, so the tree is ready as soon as the data is.
//!
//! [`VerityWriter`] sits between a producer (the EROFS writer) and the file. Bytes written at
//! the end of what was written so far go to the file and, in whole-block chunks, to a hashing
//! thread that computes level 0; the producer's core copies while the other core hashes. Writes
//! that land on blocks already handed to the hasher (the EROFS superblock, written last) go to
//! the file and mark those blocks dirty; [`VerityWriter::finish`] rehashes dirty blocks from
//! the file before building the upper levels exactly as [`crate::format()`] does, so the result
//! is byte-for-byte the tree `format` would build over the final file.
//!
//! Memory: one chunk in flight per queue slot, plus the level-0 digests (one `digest_stride`
//! slot per data block: 8 MiB per GiB of data with SHA-256 and 4 KiB blocks).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::format::{build, check_overlap, data_blocks, Formatted, Level0};
use crate::io::{read_exact_at, write_all_at, FileSource};
use crate::tree::{BlockHasher, TreeLayout};
use crate::{Error, FormatOptions, VerityParams};

/// Bytes sent to the hashing thread at a time.
const CHUNK: usize = 1 << 20;
/// Chunks queued before the producer waits for the hasher.
const QUEUE: usize = 8;

/// A `Write + Seek` over a file whose data blocks are hashed as they are written.
#[derive(Debug)]
pub struct VerityWriter<'f> {
    file: &'f File,
    params: VerityParams,
    block_size: usize,
    /// Current write position.
    pos: u64,
    /// Bytes before this offset have been sent to the hasher (a multiple of the block size).
    frontier: u64,
    /// Bytes after `frontier` not yet sent (already written to the file).
    pending: Vec<u8>,
    /// Blocks rewritten after they were hashed.
    dirty: BTreeSet<u64>,
    sender: Option<SyncSender<Vec<u8>>>,
    hasher: Option<JoinHandle<Vec<u8>>>,
}

impl<'f> VerityWriter<'f> {
    /// Starts writing data at offset 0 of `file` (which must be open for reading and writing).
    pub fn new(file: &'f File, params: VerityParams) -> Result<Self, Error> {
        params.validate()?;
        let block_size =
            usize::try_from(params.data_block_size).map_err(|_| Error::SizeOverflow)?;
        // The digest slot width level 0 uses; any data size gives the same stride.
        let stride = TreeLayout::new(&params, 1, 0, false)?.digest_stride;
        let (sender, receiver) = sync_channel::<Vec<u8>>(QUEUE);
        let thread_params = params.clone();
        let hasher = std::thread::Builder::new()
            .name("verity-leaves".into())
            .spawn(move || hash_leaves(&thread_params, block_size, stride, receiver))
            .map_err(|e| Error::Io {
                what: "starting the hashing thread",
                source: e,
            })?;
        Ok(VerityWriter {
            file,
            params,
            block_size,
            pos: 0,
            frontier: 0,
            pending: Vec::with_capacity(CHUNK),
            dirty: BTreeSet::new(),
            sender: Some(sender),
            hasher: Some(hasher),
        })
    }

    fn pending_end(&self) -> u64 {
        self.frontier.saturating_add(self.pending.len() as u64)
    }

    /// Sends the whole blocks of `pending` (all of it when `all`) to the hasher.
    fn send(&mut self, all: bool) -> io::Result<()> {
        let len = self.pending.len();
        let whole = len.saturating_sub(len.checked_rem(self.block_size).unwrap_or(0));
        let take = if all { whole } else { whole.min(CHUNK) };
        if take == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(take);
        let chunk = std::mem::replace(&mut self.pending, rest);
        self.frontier = self.frontier.saturating_add(take as u64);
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| io::Error::other("writer finished"))?;
        sender
            .send(chunk)
            .map_err(|_| io::Error::other("the verity hashing thread stopped"))
    }

    /// Flushes the data, rehashes rewritten blocks, and builds the tree of the first
    /// `data_size / data_block_size` blocks into `file` at `hash_offset` (at or after the end of
    /// the data), as [`crate::format()`] would over the same file.
    pub fn finish(
        mut self,
        data_size: u64,
        hash_offset: u64,
        opts: &FormatOptions,
    ) -> Result<Formatted, Error> {
        let blocks = data_blocks(data_size, &self.params)?;
        let written = self.pending_end();
        let data_end = blocks
            .checked_mul(u64::from(self.params.data_block_size))
            .ok_or(Error::SizeOverflow)?;
        if data_end > written {
            return Err(Error::Truncated {
                what: "data device",
                offset: written,
            });
        }
        self.send(true).map_err(|e| Error::Io {
            what: "hashing written data",
            source: e,
        })?;
        drop(self.sender.take());
        let mut digests = self
            .hasher
            .take()
            .ok_or(Error::SizeOverflow)?
            .join()
            .map_err(|_| Error::Io {
                what: "hashing written data",
                source: io::Error::other("the hashing thread panicked"),
            })?;
        let layout = TreeLayout::new(&self.params, blocks, hash_offset, opts.superblock.is_some())?;
        check_overlap(self.file, self.file, &layout, hash_offset, &self.params)?;
        let stride = layout.digest_stride;
        let hasher = BlockHasher::new(&self.params);
        let mut block = vec![0u8; self.block_size];
        for &b in self.dirty.range(..blocks) {
            let offset = b
                .checked_mul(block.len() as u64)
                .ok_or(Error::SizeOverflow)?;
            read_exact_at(self.file, &mut block, offset, "data device")?;
            let start = usize::try_from(b)
                .ok()
                .and_then(|i| i.checked_mul(stride))
                .ok_or(Error::SizeOverflow)?;
            let slot = digests
                .get_mut(start..start.saturating_add(stride))
                .ok_or(Error::SizeOverflow)?;
            slot.fill(0);
            hasher.hash_blocks(&block, block.len(), slot, stride);
        }
        build::<FileSource<'_>>(
            Level0::Digests(&digests),
            layout,
            self.file,
            hash_offset,
            &self.params,
            opts,
        )
    }
}

fn hash_leaves(
    params: &VerityParams,
    block_size: usize,
    stride: usize,
    chunks: Receiver<Vec<u8>>,
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
    }
    out
}

impl Write for VerityWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let io_err = |e: Error| io::Error::other(e.to_string());
        write_all_at(self.file, buf, self.pos).map_err(io_err)?;
        let start = self.pos;
        let end = start.saturating_add(buf.len() as u64);
        let bs = self.block_size as u64;
        // Blocks already with the hasher: rehash them at the end.
        if start < self.frontier && !buf.is_empty() {
            let first = start.checked_div(bs).unwrap_or(0);
            let last = end
                .min(self.frontier)
                .saturating_sub(1)
                .checked_div(bs)
                .unwrap_or(0);
            self.dirty.extend(first..=last);
        }
        // Bytes past the frontier: a hole first (seek past the end) reads back as zeros.
        let pend_end = self.pending_end();
        if end > self.frontier {
            let from = start.max(self.frontier);
            if from > pend_end {
                let gap =
                    usize::try_from(from.saturating_sub(pend_end)).map_err(io::Error::other)?;
                self.pending
                    .resize(self.pending.len().saturating_add(gap), 0);
            }
            let skip = usize::try_from(from.saturating_sub(start)).map_err(io::Error::other)?;
            let at =
                usize::try_from(from.saturating_sub(self.frontier)).map_err(io::Error::other)?;
            let src = buf.get(skip..).unwrap_or_default();
            let need = at.saturating_add(src.len());
            if need > self.pending.len() {
                self.pending.resize(need, 0);
            }
            if let Some(dst) = self.pending.get_mut(at..need) {
                dst.copy_from_slice(src);
            }
        }
        self.pos = end;
        while self.pending.len() >= CHUNK {
            self.send(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for VerityWriter<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.pending_end().max(self.file.metadata()?.len());
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => end.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}
