//! Layer image files for a UVM: built once per diff_id into a cache directory, then linked into
//! the UVM's layer directory. The host builds them, but the agent trusts none of their bytes:
//! it verifies each against the root hash the policy lists.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use charter_image::{build_layer_image, Image};

use crate::{io_err, Error};

/// A layer image placed for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// File name in the UVM's layer directory (`mount_device` source).
    pub file_name: String,
    /// dm-verity root hash (hex).
    pub root_hash: String,
}

/// Builds (or reuses from `cache_dir`) the layer images of `image`, base first, and links them
/// into `dest`.
///
/// # Errors
/// [`Error::Image`] when a layer does not match its digests; [`Error::Io`].
pub fn materialize_image(
    image: &Image,
    cache_dir: &Path,
    dest: &Path,
) -> Result<Vec<LayerFile>, Error> {
    let store = cache_dir.join("layer-images");
    std::fs::create_dir_all(&store).map_err(io_err(&store))?;
    let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let mut out = Vec::with_capacity(image.layers.len());
    for (index, layer) in image.layers.iter().enumerate() {
        let key = layer.diff_id.hex();
        let img = store.join(format!("{key}.img"));
        let root_file = store.join(format!("{key}.root"));
        let cached = std::fs::read_to_string(&root_file)
            .ok()
            .filter(|r| r.len() == 64 && img.is_file());
        let root_hash = match cached {
            Some(r) => r,
            None => {
                let tmp = tempfile::NamedTempFile::new_in(&store).map_err(io_err(&store))?;
                let mut reader = image.open_layer(index)?;
                let what = format!("layer {index} ({})", layer.diff_id);
                let built = build_layer_image(&mut reader, tmp.as_file(), threads, &what)?;
                reader.finish()?;
                tmp.persist(&img).map_err(|e| Error::Io {
                    path: img.display().to_string(),
                    source: e.error,
                })?;
                let r = built.root_hash.to_string();
                std::fs::write(&root_file, &r).map_err(io_err(&root_file))?;
                r
            }
        };
        let file_name = format!("{root_hash}.img");
        let placed = dest.join(&file_name);
        if !placed.exists() {
            link_or_copy(&img, &placed)?;
        }
        out.push(LayerFile {
            file_name,
            root_hash,
        });
    }
    Ok(out)
}

fn link_or_copy(from: &Path, to: &PathBuf) -> Result<(), Error> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(io_err(to)).map(drop)
}
