//! The image model shared by all sources: a verified config and the layer list, with
//! streaming access to each layer that checks its blob digest and diff_id.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::compression::{decompress, Compression};
use crate::{Error, Sha256Digest};

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum BlobLocation {
    /// A whole file (OCI layout blob).
    File(PathBuf),
    /// A byte range of a file (a member of an uncompressed docker archive).
    Range {
        /// The archive.
        path: PathBuf,
        /// Offset of the member's data.
        offset: u64,
        /// Length of the member's data.
        len: u64,
    },
    /// A blob in a registry, fetched when the layer is opened.
    Registry {
        /// The repository's client (shared by the image's layers).
        client: std::sync::Arc<crate::registry::Client>,
        /// The blob.
        digest: Sha256Digest,
    },
}

impl BlobLocation {
    pub(crate) fn open(&self) -> Result<Box<dyn Read>, Error> {
        match self {
            BlobLocation::File(path) => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                Ok(Box::new(f))
            }
            BlobLocation::Range { path, offset, len } => {
                let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
                io::Seek::seek(&mut f, io::SeekFrom::Start(*offset))
                    .map_err(|e| Error::io(path, e))?;
                Ok(Box::new(f.take(*len)))
            }
            BlobLocation::Registry { client, digest } => crate::registry::open_blob(client, digest),
        }
    }
}

/// One layer of an image, base first.
#[derive(Debug, Clone)]
pub struct Layer {
    /// SHA-256 of the uncompressed tar (from the verified config).
    pub diff_id: Sha256Digest,
    /// SHA-256 of the blob as stored, when the source names it.
    pub blob_digest: Option<Sha256Digest>,
    /// The blob's size, when the source states it.
    pub size: Option<u64>,
    /// The media type the source gives (advisory; compression is detected from the bytes).
    pub media_type: String,
    pub(crate) location: BlobLocation,
}

impl Layer {
    /// The digest used to name this layer in messages.
    pub fn display_digest(&self) -> Sha256Digest {
        self.blob_digest.unwrap_or(self.diff_id)
    }
}

/// An image read from a local source, its config verified against its digest.
#[derive(Debug, Clone)]
pub struct Image {
    /// Human description of the source (path and tag).
    pub source: String,
    /// Digest of the manifest, when the source has one.
    pub manifest_digest: Option<Sha256Digest>,
    /// Digest of the config blob.
    pub config_digest: Sha256Digest,
    /// The parsed image config (entrypoint, cmd, env, user, working dir, ...).
    pub config: oci_spec::image::ImageConfiguration,
    /// Layers, base first.
    pub layers: Vec<Layer>,
}

impl Image {
    /// Opens layer `index` for streaming. The reader yields the uncompressed tar; call
    /// [`LayerReader::finish`] after consuming it to check both digests. Nothing derived from
    /// the stream may be trusted before `finish` succeeds.
    pub fn open_layer(&self, index: usize) -> Result<LayerReader<'static>, Error> {
        let layer = self
            .layers
            .get(index)
            .ok_or_else(|| Error::Malformed(format!("{}: no layer {index}", self.source)))?;
        let raw = layer.location.open()?;
        LayerReader::new(index, layer.clone(), raw)
    }
}

#[derive(Debug, Default)]
struct BlobTally {
    hasher: Sha256,
    count: u64,
}

/// Hashes the compressed bytes into a tally the [`LayerReader`] reads at the end.
struct TallyReader<R> {
    inner: R,
    tally: Rc<RefCell<BlobTally>>,
}

impl<R: Read> Read for TallyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut t = self.tally.borrow_mut();
        t.hasher.update(buf.get(..n).unwrap_or_default());
        t.count = t.count.saturating_add(n as u64);
        Ok(n)
    }
}

/// A layer's uncompressed tar stream whose digests are checked by [`LayerReader::finish`].
pub struct LayerReader<'a> {
    index: usize,
    layer: Layer,
    compression: Compression,
    tar: Box<dyn Read + 'a>,
    /// SHA-256 and length of the tar bytes read so far (the diff_id when the stream ends).
    tar_hasher: Sha256,
    tar_size: u64,
    tally: Rc<RefCell<BlobTally>>,
}

impl std::fmt::Debug for LayerReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("index", &self.index)
            .field("diff_id", &self.layer.diff_id)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// What [`LayerReader::finish`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDigests {
    /// The verified diff_id.
    pub diff_id: Sha256Digest,
    /// Uncompressed tar size.
    pub tar_size: u64,
    /// Digest of the compressed blob as read.
    pub blob_digest: Sha256Digest,
    /// Size of the compressed blob as read.
    pub blob_size: u64,
    /// Detected compression.
    pub compression: Compression,
}

/// A piece of a layer's tar stream, shared by its consumers (see
/// [`LayerReader::stream_chunks`]).
pub type TarChunk = Arc<Vec<u8>>;

/// Chunks queued to the diff_id hashing thread of [`LayerReader::stream_chunks`].
const DIFF_ID_QUEUE: usize = 6;

impl<'a> LayerReader<'a> {
    pub(crate) fn new(index: usize, layer: Layer, raw: Box<dyn Read + 'a>) -> Result<Self, Error> {
        let tally = Rc::new(RefCell::new(BlobTally::default()));
        // Read at most one byte past the stated size, so an oversized blob is detected without
        // reading an unbounded stream.
        let limit = layer.size.map_or(u64::MAX, |s| s.saturating_add(1));
        let counted = TallyReader {
            inner: raw.take(limit),
            tally: Rc::clone(&tally),
        };
        let (compression, tar) = decompress(counted).map_err(|source| Error::LayerRead {
            index,
            digest: layer.display_digest(),
            source,
        })?;
        Ok(Self {
            index,
            layer,
            compression,
            tar,
            tar_hasher: Sha256::new(),
            tar_size: 0,
            tally,
        })
    }

    /// The layer being read.
    pub fn layer(&self) -> &Layer {
        &self.layer
    }

    /// Bytes of the compressed blob consumed so far (for progress reporting).
    pub fn blob_bytes_read(&self) -> u64 {
        self.tally.borrow().count
    }

    fn read_error(&self, source: io::Error) -> Error {
        Error::LayerRead {
            index: self.index,
            digest: self.layer.display_digest(),
            source,
        }
    }

    /// Drains the rest of the stream and checks the blob digest, blob size and diff_id.
    pub fn finish(mut self) -> Result<LayerDigests, Error> {
        if let Err(e) = io::copy(&mut self, &mut io::sink()) {
            return Err(self.read_error(e));
        }
        let diff_id =
            Sha256Digest::from_bytes(std::mem::take(&mut self.tar_hasher).finalize().into());
        let tar_size = self.tar_size;
        self.verify(diff_id, tar_size)
    }

    /// Reads the rest of the stream in chunks of `chunk_size` bytes (the last may be shorter)
    /// and hands each, shared, to `sink` with the blob bytes read so far; `sink` returns false
    /// to stop reading (the result is then `None` and nothing was verified). At the end of the
    /// stream the blob digest, blob size and diff_id are checked as [`LayerReader::finish`]
    /// does, `sink` having been dropped first so its consumers see the end.
    ///
    /// The diff_id is hashed on another thread from the same chunks, so it overlaps with
    /// reading, hashing the blob and decompressing here. A chunk that neither `sink`'s
    /// consumers nor the hasher hold any more is filled again: the steady state allocates
    /// nothing.
    pub fn stream_chunks<F>(
        mut self,
        chunk_size: usize,
        mut sink: F,
    ) -> Result<Option<LayerDigests>, Error>
    where
        F: FnMut(&TarChunk, u64) -> bool,
    {
        let chunk_size = chunk_size.max(1);
        let hasher = std::mem::take(&mut self.tar_hasher);
        let hashed_before = self.tar_size;
        let (to_hasher, for_hasher) = sync_channel::<TarChunk>(DIFF_ID_QUEUE);
        std::thread::scope(|s| {
            let hashing = std::thread::Builder::new()
                .name("layer-diff-id".into())
                .spawn_scoped(s, move || {
                    let mut hasher = hasher;
                    let mut size = hashed_before;
                    for chunk in for_hasher {
                        hasher.update(chunk.as_slice());
                        size = size.saturating_add(chunk.len() as u64);
                    }
                    (Sha256Digest::from_bytes(hasher.finalize().into()), size)
                })
                .map_err(|e| self.read_error(e))?;
            let mut in_flight: VecDeque<TarChunk> = VecDeque::new();
            let read = loop {
                // The oldest chunk is free once every consumer has moved past it.
                let reusable = in_flight
                    .front()
                    .is_some_and(|oldest| Arc::strong_count(oldest) == 1);
                let mut buf = match in_flight.pop_front() {
                    Some(oldest) if reusable => Arc::try_unwrap(oldest).unwrap_or_default(),
                    Some(busy) => {
                        in_flight.push_front(busy);
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                buf.resize(chunk_size, 0);
                let filled = match fill(&mut self.tar, &mut buf) {
                    Ok(n) => n,
                    Err(e) => break Err(e),
                };
                if filled == 0 {
                    break Ok(true);
                }
                buf.truncate(filled);
                let chunk = Arc::new(buf);
                if to_hasher.send(Arc::clone(&chunk)).is_err() {
                    break Err(io::Error::other("the diff_id hashing thread stopped"));
                }
                let go_on = sink(&chunk, self.blob_bytes_read());
                in_flight.push_back(chunk);
                if !go_on {
                    break Ok(false);
                }
            };
            drop(sink);
            drop(to_hasher);
            drop(in_flight);
            let hashed = hashing.join();
            match (read, hashed) {
                (Err(e), _) => Err(self.read_error(e)),
                (Ok(_), Err(_)) => {
                    Err(self.read_error(io::Error::other("the diff_id hashing thread panicked")))
                }
                (Ok(false), Ok(_)) => Ok(None),
                (Ok(true), Ok((diff_id, tar_size))) => self.verify(diff_id, tar_size).map(Some),
            }
        })
    }

    /// Checks the stream's digests against the layer's.
    fn verify(&self, diff_id: Sha256Digest, tar_size: u64) -> Result<LayerDigests, Error> {
        let index = self.index;
        let layer = &self.layer;
        let tally = std::mem::take(&mut *self.tally.borrow_mut());
        let blob_digest = Sha256Digest::from_bytes(tally.hasher.finalize().into());
        let what = format!("layer {index}");
        if let Some(expected) = layer.size {
            if tally.count != expected {
                return Err(Error::SizeMismatch {
                    what,
                    expected,
                    actual: tally.count,
                });
            }
        }
        if let Some(expected) = layer.blob_digest {
            if blob_digest != expected {
                return Err(Error::DigestMismatch {
                    what,
                    expected,
                    actual: blob_digest,
                });
            }
        }
        if diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {index} diff_id"),
                expected: layer.diff_id,
                actual: diff_id,
            });
        }
        Ok(LayerDigests {
            diff_id,
            tar_size,
            blob_digest,
            blob_size: tally.count,
            compression: self.compression,
        })
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tar.read(buf)?;
        self.tar_hasher.update(buf.get(..n).unwrap_or_default());
        self.tar_size = self.tar_size.saturating_add(n as u64);
        Ok(n)
    }
}

/// Reads a whole small document (index, manifest, config), refusing more than `limit` bytes.
pub(crate) fn read_limited(mut r: impl Read, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    (&mut r)
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(what, e))?;
    let size = buf.len() as u64;
    if size > limit {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            size,
            limit,
        });
    }
    Ok(buf)
}

/// Parses JSON, naming the document on failure.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_owned(),
        source,
    })
}

/// Parses a digest string, naming where it came from on failure.
pub(crate) fn parse_digest(s: &str, what: &str) -> Result<Sha256Digest, Error> {
    s.parse().map_err(|source| Error::Digest {
        what: what.to_owned(),
        source,
    })
}

/// Checks a config's diff_ids against the manifest's layer count and returns them.
pub(crate) fn diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    layer_count: usize,
) -> Result<Vec<Sha256Digest>, Error> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layer_count {
        return Err(Error::LayerCountMismatch {
            layers: layer_count,
            diff_ids: ids.len(),
        });
    }
    ids.iter()
        .enumerate()
        .map(|(i, s)| parse_digest(s, &format!("config diff_id {i}")))
        .collect()
}
