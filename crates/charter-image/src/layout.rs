//! OCI image layout directories (image-spec `image-layout.md`): `oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`. Every blob read is checked against the digest that names it.

use std::fs::File;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::image::{diff_ids, parse_digest, parse_json, read_limited, BlobLocation};
use crate::{Error, Image, Layer, Platform, Sha256Digest};

/// Size limits for metadata documents: far above any real index, manifest or config, far
/// below what would hurt a host.
pub(crate) const MAX_INDEX: u64 = 4 << 20;
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
pub(crate) const MAX_CONFIG: u64 = 16 << 20;
/// Nesting of indexes within indexes that is followed before giving up.
const MAX_INDEX_DEPTH: usize = 4;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads the image tagged `tag` (or the only image) from the layout at `dir`.
pub fn open_layout(dir: &Path, tag: Option<&str>, platform: &Platform) -> Result<Image, Error> {
    let marker = dir.join("oci-layout");
    let bytes = read_file(&marker, 4096)?;
    let marker_json: serde_json::Value = parse_json(&bytes, &marker.display().to_string())?;
    if marker_json
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(Error::Malformed(format!(
            "{}: no imageLayoutVersion",
            marker.display()
        )));
    }
    let index_path = dir.join("index.json");
    let index: ImageIndex = parse_json(
        &read_file(&index_path, MAX_INDEX)?,
        &index_path.display().to_string(),
    )?;
    let manifests = index.manifests();
    let chosen = match tag {
        Some(tag) => manifests
            .iter()
            .find(|d| ref_name(d) == Some(tag))
            .ok_or_else(|| Error::TagNotFound {
                tag: tag.to_owned(),
                available: manifests
                    .iter()
                    .filter_map(|d| ref_name(d).map(str::to_owned))
                    .collect(),
            })?,
        None => match manifests.as_slice() {
            [only] => only,
            _ => {
                return Err(Error::Ambiguous {
                    count: manifests.len(),
                    tags: manifests
                        .iter()
                        .filter_map(|d| ref_name(d).map(str::to_owned))
                        .collect(),
                })
            }
        },
    };
    let source = match tag {
        Some(t) => format!("oci:{}:{t}", dir.display()),
        None => format!("oci:{}", dir.display()),
    };
    let manifest_desc = resolve_index(dir, chosen.clone(), platform, 0)?;
    let manifest_digest = parse_digest(manifest_desc.digest().as_ref(), "manifest descriptor")?;
    let manifest_bytes = read_blob(dir, &manifest_desc, MAX_MANIFEST, "manifest")?;
    let manifest: ImageManifest = parse_json(&manifest_bytes, "manifest")?;
    from_manifest(dir, source, Some(manifest_digest), &manifest)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Follows image indexes down to one manifest for `platform`.
fn resolve_index(
    dir: &Path,
    desc: Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<Descriptor, Error> {
    match desc.media_type() {
        MediaType::ImageManifest => Ok(desc),
        MediaType::Other(m) if m == "application/vnd.docker.distribution.manifest.v2+json" => {
            Ok(desc)
        }
        MediaType::ImageIndex => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(Error::Malformed("image indexes nested too deeply".into()));
            }
            let bytes = read_blob(dir, &desc, MAX_INDEX, "image index")?;
            let index: ImageIndex = parse_json(&bytes, "image index")?;
            let next = platform.select(index.manifests())?;
            resolve_index(dir, next.clone(), platform, depth.saturating_add(1))
        }
        MediaType::Other(m) if m == "application/vnd.docker.distribution.manifest.list.v2+json" => {
            let bytes = read_blob(dir, &desc, MAX_INDEX, "manifest list")?;
            let index: ImageIndex = parse_json(&bytes, "manifest list")?;
            let next = platform.select(index.manifests())?;
            resolve_index(dir, next.clone(), platform, depth.saturating_add(1))
        }
        other => Err(Error::UnsupportedMediaType {
            what: "index entry".into(),
            media_type: other.to_string(),
        }),
    }
}

/// Builds the image from a parsed manifest whose blobs live in `dir`.
fn from_manifest(
    dir: &Path,
    source: String,
    manifest_digest: Option<Sha256Digest>,
    manifest: &ImageManifest,
) -> Result<Image, Error> {
    let config_desc = manifest.config();
    let config_digest = parse_digest(config_desc.digest().as_ref(), "config descriptor")?;
    let config_bytes = read_blob(dir, config_desc, MAX_CONFIG, "config")?;
    let config: ImageConfiguration = parse_json(&config_bytes, "config")?;
    let ids = diff_ids(&config, manifest.layers().len())?;
    let layers = layers_from_manifest(manifest, ids, "layer", |digest| {
        BlobLocation::File(blob_path(dir, digest))
    })?;
    Ok(Image {
        source,
        manifest_digest,
        config_digest,
        config,
        layers,
    })
}

/// The manifest's layers with their diff_ids; `location` says where each blob is fetched from.
/// `what` prefixes the per-layer names in errors.
pub(crate) fn layers_from_manifest(
    manifest: &ImageManifest,
    diff_ids: Vec<Sha256Digest>,
    what: &str,
    location: impl Fn(&Sha256Digest) -> BlobLocation,
) -> Result<Vec<Layer>, Error> {
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (desc, diff_id))| {
            let what = format!("{what} {i} descriptor");
            let digest = parse_digest(desc.digest().as_ref(), &what)?;
            check_layer_media_type(desc.media_type(), &what)?;
            Ok(Layer {
                diff_id,
                blob_digest: Some(digest),
                size: Some(desc.size()),
                media_type: desc.media_type().to_string(),
                location: location(&digest),
            })
        })
        .collect()
}

/// Refuses foreign and non-distributable layers whose bytes charter cannot vouch for.
pub(crate) fn check_layer_media_type(mt: &MediaType, what: &str) -> Result<(), Error> {
    let s = mt.to_string();
    let ok = matches!(
        mt,
        MediaType::ImageLayer | MediaType::ImageLayerGzip | MediaType::ImageLayerZstd
    ) || s == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        || s == "application/vnd.docker.image.rootfs.diff.tar"
        || s == "application/vnd.docker.image.rootfs.diff.tar.zstd";
    if ok {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: s,
        })
    }
}

pub(crate) fn blob_path(dir: &Path, digest: &Sha256Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Reads a small blob named by `desc` and checks its size and digest.
fn read_blob(dir: &Path, desc: &Descriptor, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let digest = parse_digest(desc.digest().as_ref(), what)?;
    let path = blob_path(dir, &digest);
    let bytes = match File::open(&path) {
        Ok(f) => read_limited(f, &path.display().to_string(), limit)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingBlob {
                what: what.to_owned(),
                digest: digest.to_string(),
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let actual = Sha256Digest::of(&bytes);
    if actual != digest {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            expected: digest,
            actual,
        });
    }
    if bytes.len() as u64 != desc.size() {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            expected: desc.size(),
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    read_limited(f, &path.display().to_string(), limit)
}
