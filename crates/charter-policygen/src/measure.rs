//! Measuring an image for a policy: every layer's dm-verity root hash and what it says about
//! `/etc/passwd` and `/etc/group`, in **one pass** over each layer that is not cached.
//!
//! A layer that must be converted streams once (from the registry, the layout or the archive):
//! a reader thread checks the blob digest and size and decompresses, and
//! [`charter_image::LayerReader::stream_chunks`] hands the tar in bounded 1 MiB chunks (shared,
//! not copied, and recycled) to a thread hashing the diff_id, to the EROFS builder on the
//! calling thread, whose output is hashed into the verity tree as it is produced (level 0 on
//! another thread) and never stored, and to a thread that scans the tar for the two files
//! (seeking over file data, so it copies nothing but headers and those two files). Both results
//! are used, and cached by diff_id, only after the blob digest, size and diff_id of the whole
//! stream have been verified. Cache entries are written on a thread of their own while the
//! next layer is measured. A warm run (every root hash and the top layers' `etc` state cached)
//! opens no layer at all.
//!
//! The `etc` cache lives beside the layer cache, in `<cache>/policygen/etc-v1/<diff_id>.json`,
//! written through a temporary file and a rename; an entry that does not parse or names
//! another diff_id is a miss.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use charter_image::{
    layer_root_hash, Cache, CachedLayer, Image, LayerDigests, LayerMeasurement, MeasureObserver,
    Sha256Digest, TarChunk,
};

use crate::userdb::{self, LayerEtc, UserDb};
use crate::{Error, Measuring};

/// Bytes per chunk handed to the builder and the scanning thread.
const CHUNK: usize = 1 << 20;
/// Chunks queued to each of them (bounds the memory used: about CHUNK × 2 × DEPTH).
const DEPTH: usize = 6;
/// Names the `etc` cache format; bump when [`LayerEtc`] or the scan changes.
const ETC_FORMAT: &str = "etc-v1";
/// Largest `etc` cache entry read (two capped files plus JSON escaping).
const MAX_ETC_ENTRY: u64 = 16 * 1024 * 1024;

/// What a layer's `etc` scan is cached as.
#[derive(serde::Serialize, serde::Deserialize)]
struct EtcEntry {
    diff_id: Sha256Digest,
    etc: LayerEtc,
}

fn etc_path(cache: &Cache, diff_id: &Sha256Digest) -> PathBuf {
    cache
        .dir()
        .join("policygen")
        .join(ETC_FORMAT)
        .join(format!("{}.json", diff_id.hex()))
}

fn etc_get(cache: Option<&Cache>, diff_id: &Sha256Digest) -> Option<LayerEtc> {
    let file = fs::File::open(etc_path(cache?, diff_id)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_ETC_ENTRY).read_to_end(&mut bytes).ok()?;
    let entry: EtcEntry = serde_json::from_slice(&bytes).ok()?;
    (entry.diff_id == *diff_id).then_some(entry.etc)
}

fn etc_put(cache: Option<&Cache>, diff_id: &Sha256Digest, etc: &LayerEtc) -> Result<(), Error> {
    let Some(cache) = cache else { return Ok(()) };
    let path = etc_path(cache, diff_id);
    let dir = path.parent().unwrap_or(cache.dir()).to_owned();
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(&dir).map_err(io)?;
    let json = serde_json::to_vec(&EtcEntry {
        diff_id: *diff_id,
        etc: etc.clone(),
    })
    .map_err(|e| io(io::Error::other(e)))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.write_all(&json).map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Measures every layer of `image` (base first) and reads its user databases.
pub(crate) fn measure_image(
    image: &Image,
    reference: &str,
    measuring: &Measuring<'_>,
) -> Result<(Vec<LayerMeasurement>, UserDb), Error> {
    let cache = measuring.cache;
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut etcs: Vec<Option<LayerEtc>> = Vec::with_capacity(image.layers.len());
    // Cache entries are written (each synced to disk, then renamed into place) on another
    // thread, so the next layer is measured while the disk catches up; every entry is written,
    // or its error returned, before this function returns.
    std::thread::scope(|s| -> Result<(), Error> {
        let (to_writer, entries) = std::sync::mpsc::channel::<(CachedLayer, LayerEtc)>();
        let writer = cache.map(|cache| s.spawn(move || write_entries(cache, reference, entries)));
        for (index, layer) in image.layers.iter().enumerate() {
            if let Some(hit) = cache.and_then(|c| c.get(&layer.diff_id)) {
                measuring.observer.layer_started(index, layer.size, true);
                let m = LayerMeasurement {
                    index,
                    diff_id: hit.diff_id,
                    root_hash: hit.root_hash,
                    tar_size: hit.tar_size,
                    cached: true,
                };
                measuring.observer.layer_finished(&m);
                layers.push(m);
                etcs.push(etc_get(cache, &layer.diff_id));
                continue;
            }
            measuring.observer.layer_started(index, layer.size, false);
            let (m, data_size, etc) = measure_layer(image, index, reference, measuring)?;
            if writer.is_some() {
                let entry = CachedLayer {
                    diff_id: m.diff_id,
                    root_hash: m.root_hash.clone(),
                    tar_size: m.tar_size,
                    data_size,
                };
                // A writer that stopped has an error, returned below.
                let _ = to_writer.send((entry, etc.clone()));
            }
            measuring.observer.layer_finished(&m);
            layers.push(m);
            etcs.push(Some(etc));
        }
        drop(to_writer);
        match writer.map(|w| w.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(Error::Io {
                path: cache.map(|c| c.dir().to_owned()).unwrap_or_default(),
                source: io::Error::other("the cache writer failed"),
            }),
        }
    })?;
    // Top layer first; a cached layer whose etc state is unknown is read (and that cached).
    let users = userdb::combine(etcs.into_iter().enumerate().rev().map(|(index, etc)| {
        if let Some(etc) = etc {
            return Ok(etc);
        }
        let etc = userdb::scan_layer(image, index, reference)?;
        if let Some(layer) = image.layers.get(index) {
            etc_put(cache, &layer.diff_id, &etc)?;
        }
        Ok(etc)
    }))?;
    Ok((layers, users))
}

/// Records measured layers in the cache, in order: the root hash, then the `etc` state.
fn write_entries(
    cache: &Cache,
    reference: &str,
    entries: Receiver<(CachedLayer, LayerEtc)>,
) -> Result<(), Error> {
    for (entry, etc) in entries {
        cache.put(&entry).map_err(|source| Error::Image {
            image: reference.to_owned(),
            source: Box::new(source),
        })?;
        etc_put(Some(cache), &entry.diff_id, &etc)?;
    }
    Ok(())
}

/// Converts and hashes layer `index`: one thread reads the layer (blob digest, decompression,
/// diff_id), the builder converts what it reads on this thread and hashes it (level 0 of the
/// tree on another thread; the image itself is not kept), and a third scans the same chunks
/// for `etc`.
fn measure_layer(
    image: &Image,
    index: usize,
    reference: &str,
    measuring: &Measuring<'_>,
) -> Result<(LayerMeasurement, u64, LayerEtc), Error> {
    let image_err = |source: charter_image::Error| Error::Image {
        image: reference.to_owned(),
        source: Box::new(source),
    };
    let layer_err = |message: String| Error::Layer {
        image: reference.to_owned(),
        index,
        message,
    };
    let diff_id = image
        .layers
        .get(index)
        .map(|l| l.diff_id.to_string())
        .unwrap_or_default();
    // Errors of the builder read "layer {what}: ...".
    let what = format!("{index} ({diff_id})");
    let (to_build, from_reader) = sync_channel::<Chunk>(DEPTH);
    let (to_scan, for_scan) = sync_channel::<Chunk>(DEPTH);
    let abort = AtomicBool::new(false);
    let (read, built, scanned) = std::thread::scope(|s| {
        let abort = &abort;
        let reader = s.spawn(move || read_layer(image, index, to_build, to_scan, abort));
        let scanner =
            s.spawn(move || userdb::scan_tar_seekable(ChannelReader::new(for_scan, None)));
        let mut input = ChannelReader::new(from_reader, Some((index, measuring.observer)));
        let built = layer_root_hash(&mut input, measuring.threads, &what);
        if built.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        drop(input); // a builder that stopped at the end marker lets the reader go on
        (reader.join(), built, scanner.join())
    });
    let digests = match (read, built.as_ref()) {
        (Err(_), _) => return Err(layer_err("the layer reader failed".into())),
        (Ok(Err(ReadError::Read(e))), _) => {
            return Err(layer_err(format!("reading the layer: {e}")))
        }
        (Ok(Err(ReadError::Image(e))), _) => return Err(image_err(e)),
        (Ok(Ok(_)), Err(_)) | (Ok(Err(ReadError::Aborted)), _) => {
            return Err(built
                .err()
                .map_or_else(|| layer_err("the layer reader stopped".into()), image_err))
        }
        (Ok(Ok(digests)), Ok(_)) => digests,
    };
    let built = built.map_err(image_err)?;
    // Only now, with the whole stream verified, is the image known to be this layer's.
    let etc = match scanned {
        Ok(Ok(etc)) => etc,
        Ok(Err(e)) => return Err(e.into_error(reference, index)),
        Err(_) => return Err(layer_err("the /etc scan failed".into())),
    };
    let m = LayerMeasurement {
        index,
        diff_id: digests.diff_id,
        root_hash: built.root_hash.to_string(),
        tar_size: digests.tar_size,
        cached: false,
    };
    Ok((m, built.data_size, etc))
}

/// A piece of the uncompressed layer stream and how many blob bytes were read to produce it.
type Chunk = (TarChunk, u64);

enum ReadError {
    /// Opening or verifying the layer failed.
    Image(charter_image::Error),
    /// Reading (decompressing, fetching) the stream failed.
    Read(io::Error),
    /// The builder failed; reading stopped.
    Aborted,
}

/// Reads layer `index` to the end in shared chunks (the diff_id hashed from them on another
/// thread), hands each to the builder and the scanner (while they listen), and verifies the
/// whole stream.
fn read_layer(
    image: &Image,
    index: usize,
    to_build: SyncSender<Chunk>,
    to_scan: SyncSender<Chunk>,
    abort: &AtomicBool,
) -> Result<LayerDigests, ReadError> {
    let reader = image.open_layer(index).map_err(ReadError::Image)?;
    let mut build = Some(to_build);
    let mut scan = Some(to_scan);
    let streamed = reader.stream_chunks(CHUNK, |chunk, blob_bytes| {
        if abort.load(Ordering::Relaxed) {
            return false;
        }
        for tx in [&mut build, &mut scan] {
            if let Some(sender) = tx {
                if sender.send((Arc::clone(chunk), blob_bytes)).is_err() {
                    *tx = None;
                }
            }
        }
        true
    });
    match streamed {
        Ok(Some(digests)) => Ok(digests),
        Ok(None) => Err(ReadError::Aborted),
        Err(charter_image::Error::LayerRead { source, .. }) => Err(ReadError::Read(source)),
        Err(e) => Err(ReadError::Image(e)),
    }
}

/// The receiving end of the chunks as a byte stream (EOF when the reader is done), reporting
/// blob progress about every MiB when it has an observer. It seeks forward without copying
/// (what the scanner does over file data); any other seek is refused.
struct ChannelReader<'o> {
    rx: Receiver<Chunk>,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    /// Stream offset of the start of `chunk`.
    base: u64,
    progress: Option<(usize, &'o dyn MeasureObserver)>,
    reported: u64,
}

impl<'o> ChannelReader<'o> {
    fn new(rx: Receiver<Chunk>, progress: Option<(usize, &'o dyn MeasureObserver)>) -> Self {
        Self {
            rx,
            chunk: Arc::new(Vec::new()),
            pos: 0,
            base: 0,
            progress,
            reported: 0,
        }
    }

    /// Makes the next chunk current once this one is used up; false at the end of the stream.
    fn next_chunk(&mut self) -> bool {
        while self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok((next, blob_bytes)) => {
                    self.base = self.base.saturating_add(self.chunk.len() as u64);
                    self.chunk = next;
                    self.pos = 0;
                    if let Some((index, observer)) = self.progress {
                        if blob_bytes.saturating_sub(self.reported) >= 1 << 20 {
                            self.reported = blob_bytes;
                            observer.progress(index, blob_bytes);
                        }
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn position(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.next_chunk() {
            return Ok(0);
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos = self.pos.saturating_add(n);
        Ok(n)
    }
}

impl Seek for ChannelReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let here = self.position();
        let target = match to {
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(_) => None,
        }
        .filter(|&t| t >= here)
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "only forward seeks"))?;
        let mut left = target.saturating_sub(here);
        while left > 0 {
            if !self.next_chunk() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "unexpected EOF during skip",
                ));
            }
            let avail = self.chunk.len().saturating_sub(self.pos);
            let step = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
            self.pos = self.pos.saturating_add(step);
            left = left.saturating_sub(step as u64);
        }
        Ok(self.position())
    }
}
