//! `docker save` archives: an uncompressed tar holding `manifest.json`
//! (`[{"Config", "RepoTags", "Layers"}]`) and the files it names. Both the legacy layout
//! (`<id>/layer.tar`, `<hex>.json`) and Docker 25's OCI-in-archive layout (`blobs/sha256/<hex>`)
//! are read by following the paths in `manifest.json`. Layers are streamed from their byte range
//! in the archive; nothing is extracted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::image::{diff_ids, parse_json, read_limited, BlobLocation};
use crate::layout::{MAX_CONFIG, MAX_MANIFEST};
use crate::{Error, Image, Layer, Sha256Digest};

#[derive(Debug, serde::Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Members of the archive: normalised path -> (data offset, length).
type Members = BTreeMap<String, (u64, u64)>;

/// Most members an archive may have before it is refused (a docker archive has a few per layer).
const MAX_MEMBERS: usize = 100_000;

/// Reads the image `reference` (a `RepoTags` entry; or the only image) from a docker archive.
pub fn open_docker_archive(path: &Path, reference: Option<&str>) -> Result<Image, Error> {
    let members = index_members(path)?;
    let manifest_bytes = read_member(path, &members, "manifest.json", MAX_MANIFEST)?;
    let entries: Vec<ManifestEntry> = parse_json(&manifest_bytes, "docker archive manifest.json")?;
    let all_tags = || {
        entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
            .collect::<Vec<_>>()
    };
    let entry = match reference {
        Some(r) => {
            let wanted = normalise_reference(r);
            entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| normalise_reference(t) == wanted)
                })
                .ok_or_else(|| Error::TagNotFound {
                    tag: r.to_owned(),
                    available: all_tags(),
                })?
        }
        None => match entries.as_slice() {
            [only] => only,
            _ => {
                return Err(Error::Ambiguous {
                    count: entries.len(),
                    tags: all_tags(),
                })
            }
        },
    };

    let config_bytes = read_member(path, &members, &entry.config, MAX_CONFIG)?;
    let config_digest = Sha256Digest::of(&config_bytes);
    if let Some(named) = digest_from_name(&entry.config) {
        if named != config_digest {
            return Err(Error::DigestMismatch {
                what: format!("config {}", entry.config),
                expected: named,
                actual: config_digest,
            });
        }
    }
    let config = parse_json(&config_bytes, &format!("config {}", entry.config))?;
    let ids = diff_ids(&config, entry.layers.len())?;
    let layers = entry
        .layers
        .iter()
        .zip(ids)
        .map(|(name, diff_id)| {
            let (offset, len) = member(&members, path, name)?;
            Ok(Layer {
                diff_id,
                blob_digest: digest_from_name(name),
                size: Some(len),
                media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                location: BlobLocation::Range {
                    path: path.to_owned(),
                    offset,
                    len,
                },
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let source = match reference {
        Some(r) => format!("docker-archive:{}:{r}", path.display()),
        None => format!("docker-archive:{}", path.display()),
    };
    Ok(Image {
        source,
        manifest_digest: None,
        config_digest,
        config,
        layers,
    })
}

/// The digest a member's name promises: `blobs/sha256/<hex>` or `<hex>.json` (legacy config).
fn digest_from_name(name: &str) -> Option<Sha256Digest> {
    let name = normalise(name);
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json").filter(|h| !h.contains('/')))?;
    format!("sha256:{hex}").parse().ok()
}

/// The fully qualified form of a docker reference, as docker compares them:
/// `busybox` -> `docker.io/library/busybox:latest`, `demo/app:v1` -> `docker.io/demo/app:v1`.
pub(crate) fn normalise_reference(r: &str) -> String {
    let (first, rest) = r.split_once('/').unwrap_or(("", r));
    let has_domain =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        r.to_owned()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{r}")
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

fn normalise(name: &str) -> &str {
    name.trim_start_matches("./")
}

fn member(members: &Members, archive: &Path, name: &str) -> Result<(u64, u64), Error> {
    members
        .get(normalise(name))
        .copied()
        .ok_or_else(|| Error::Malformed(format!("{}: no member {name:?}", archive.display())))
}

fn read_member(
    archive: &Path,
    members: &Members,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    let (offset, len) = member(members, archive, name)?;
    if len > limit {
        return Err(Error::TooLarge {
            what: format!("{}: {name}", archive.display()),
            size: len,
            limit,
        });
    }
    let mut f = File::open(archive).map_err(|e| Error::io(archive, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(archive, e))?;
    read_limited(
        f.take(len),
        &format!("{}: {name}", archive.display()),
        limit,
    )
}

/// Lists the regular-file members of the archive with their data ranges.
fn index_members(path: &Path) -> Result<Members, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let mut members = Members::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| Error::io(path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path_bytes();
        let name = String::from_utf8_lossy(&name);
        let name = normalise(&name).to_owned();
        if members.len() >= MAX_MEMBERS {
            return Err(Error::Malformed(format!(
                "{}: more than {MAX_MEMBERS} members",
                path.display()
            )));
        }
        members.insert(name, (entry.raw_file_position(), entry.size()));
    }
    if members.is_empty() {
        return Err(Error::UnknownSource(path.to_owned()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::normalise_reference as n;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("demo/app:v1"), "docker.io/demo/app:v1");
        assert_eq!(n("docker.io/demo/app:v1"), "docker.io/demo/app:v1");
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(
            n("registry.example/x/y@sha256:ab"),
            "registry.example/x/y@sha256:ab"
        );
    }
}
