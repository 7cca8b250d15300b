//! Measuring an image: each layer's diff_id and dm-verity root hash, using the cache.

use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::path::Path;

use crate::{layer_root_hash, Cache, CachedLayer, Error, Image, LayerReader, Sha256Digest};

/// One measured layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerMeasurement {
    /// Position in the image, base first.
    pub index: usize,
    /// The verified diff_id.
    pub diff_id: Sha256Digest,
    /// The dm-verity root hash of the layer image (lowercase hex): the policy's layer hash.
    pub root_hash: String,
    /// Uncompressed tar size.
    pub tar_size: u64,
    /// Whether the root hash came from the cache.
    pub cached: bool,
}

/// Hooks for progress display; every method has a no-op default.
pub trait MeasureObserver {
    /// A layer is about to be read (`cached`: it will not be).
    fn layer_started(&self, _index: usize, _blob_size: Option<u64>, _cached: bool) {}
    /// `blob_bytes` of layer `index` have been read so far.
    fn progress(&self, _index: usize, _blob_bytes: u64) {}
    /// A layer is done.
    fn layer_finished(&self, _measurement: &LayerMeasurement) {}
}

/// An observer that shows nothing.
impl MeasureObserver for () {}

/// Measures every layer of `image`. Only root hashes are kept (and cached): a converted image
/// is hashed as it is produced and never written ([`layer_root_hash`]), so `_scratch_dir` is
/// not used.
pub fn measure(
    image: &Image,
    cache: Option<&Cache>,
    _scratch_dir: &Path,
    threads: NonZeroUsize,
    observer: &dyn MeasureObserver,
) -> Result<Vec<LayerMeasurement>, Error> {
    let mut out = Vec::with_capacity(image.layers.len());
    for (index, layer) in image.layers.iter().enumerate() {
        if let Some(hit) = cache.and_then(|c| c.get(&layer.diff_id)) {
            observer.layer_started(index, layer.size, true);
            let m = LayerMeasurement {
                index,
                diff_id: hit.diff_id,
                root_hash: hit.root_hash,
                tar_size: hit.tar_size,
                cached: true,
            };
            observer.layer_finished(&m);
            out.push(m);
            continue;
        }
        observer.layer_started(index, layer.size, false);
        let mut reader = ProgressReader {
            inner: image.open_layer(index)?,
            index,
            observer,
            reported: 0,
        };
        let what = format!("layer {index} ({})", layer.diff_id);
        let built = layer_root_hash(&mut reader, threads, &what)?;
        // Only now, with the whole stream hashed, is the image known to be this layer's.
        let digests = reader.inner.finish()?;
        let m = LayerMeasurement {
            index,
            diff_id: digests.diff_id,
            root_hash: built.root_hash.to_string(),
            tar_size: digests.tar_size,
            cached: false,
        };
        if let Some(cache) = cache {
            cache.put(&CachedLayer {
                diff_id: m.diff_id,
                root_hash: m.root_hash.clone(),
                tar_size: m.tar_size,
                data_size: built.data_size,
            })?;
        }
        observer.layer_finished(&m);
        out.push(m);
    }
    Ok(out)
}

/// Reports blob progress about every MiB.
struct ProgressReader<'o> {
    inner: LayerReader<'static>,
    index: usize,
    observer: &'o dyn MeasureObserver,
    reported: u64,
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let now = self.inner.blob_bytes_read();
        if now.saturating_sub(self.reported) >= 1 << 20 {
            self.reported = now;
            self.observer.progress(self.index, now);
        }
        Ok(n)
    }
}
