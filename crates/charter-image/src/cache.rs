//! The layer measurement cache: diff_id -> root hash, so a layer is converted and hashed once.
//!
//! Entries live in `<dir>/layers/<format>/<diff_id hex>.json`, where `<format>` names the layer
//! image format ([`crate::layer::LAYER_FORMAT`]): a change to the EROFS writer or verity
//! parameters starts a fresh namespace instead of serving stale roots. Entries are written to a
//! temporary file and renamed into place, so a crash never leaves a half-written entry; an entry
//! that does not parse is treated as absent and overwritten.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::layer::LAYER_FORMAT;
use crate::{Error, Sha256Digest};

/// A cached measurement of one layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedLayer {
    /// The layer's diff_id (verified when the entry was made).
    pub diff_id: Sha256Digest,
    /// dm-verity root hash of the layer image, lowercase hex.
    pub root_hash: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Size of the EROFS part of the layer image (the verity data size).
    pub data_size: u64,
}

/// A directory of cached layer measurements.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) a cache rooted at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let layers = dir.join("layers").join(LAYER_FORMAT);
        fs::create_dir_all(&layers).map_err(|e| Error::io(&layers, e))?;
        Ok(Self { dir })
    }

    /// `$CHARTER_CACHE_DIR`, else `$XDG_CACHE_HOME/charter`, else `$HOME/.cache/charter`.
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("CHARTER_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("charter")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("charter")))
    }

    /// The cache's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, diff_id: &Sha256Digest) -> PathBuf {
        self.dir
            .join("layers")
            .join(LAYER_FORMAT)
            .join(format!("{}.json", diff_id.hex()))
    }

    /// The cached measurement of `diff_id`, if there is a valid one.
    pub fn get(&self, diff_id: &Sha256Digest) -> Option<CachedLayer> {
        let bytes = fs::read(self.entry_path(diff_id)).ok()?;
        let entry: CachedLayer = serde_json::from_slice(&bytes).ok()?;
        let valid_root = entry.root_hash.len() == 64
            && entry
                .root_hash
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        (entry.diff_id == *diff_id && valid_root).then_some(entry)
    }

    /// Records a measurement atomically.
    pub fn put(&self, entry: &CachedLayer) -> Result<(), Error> {
        let path = self.entry_path(&entry.diff_id);
        let parent = path.parent().unwrap_or(&self.dir);
        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| Error::io(parent, e))?;
        let json = serde_json::to_vec_pretty(entry).map_err(|source| Error::Json {
            what: "cache entry".into(),
            source,
        })?;
        tmp.write_all(&json).map_err(|e| Error::io(&path, e))?;
        tmp.as_file().sync_data().map_err(|e| Error::io(&path, e))?;
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_corrupt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let diff_id = Sha256Digest::of(b"layer");
        assert_eq!(cache.get(&diff_id), None);
        let entry = CachedLayer {
            diff_id,
            root_hash: "ab".repeat(32),
            tar_size: 10240,
            data_size: 8192,
        };
        cache.put(&entry).unwrap();
        assert_eq!(cache.get(&diff_id), Some(entry.clone()));
        // A truncated entry is a miss, not an error, and is replaced on the next put.
        fs::write(cache.entry_path(&diff_id), b"{\"diff_id\":").unwrap();
        assert_eq!(cache.get(&diff_id), None);
        // An entry filed under the wrong diff_id is refused.
        let other = Sha256Digest::of(b"other");
        fs::copy(cache.entry_path(&diff_id), cache.entry_path(&other)).unwrap();
        cache.put(&entry).unwrap();
        fs::copy(cache.entry_path(&diff_id), cache.entry_path(&other)).unwrap();
        assert_eq!(cache.get(&other), None);
    }
}
