//! Images pulled from OCI registries (distribution-spec pull side): manifests resolved through
//! indexes to one platform, tags pinned to digests, and every document and blob checked against
//! the digest that names it. Layers are not downloaded ahead: [`crate::Image::open_layer`]
//! streams each blob from the registry through the same digest, size and diff_id checks as a
//! local layer.

mod auth;
mod client;
mod reference;

use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

pub use auth::{Challenge, Credentials};
pub(crate) use client::Client;
pub use reference::Reference;

use crate::image::{diff_ids, parse_digest, parse_json, BlobLocation};
use crate::layout::{layers_from_manifest, MAX_CONFIG, MAX_INDEX, MAX_MANIFEST};
use crate::{Error, Image, Platform, Sha256Digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_INDEX_DEPTH: usize = 4;

/// How to reach registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// Registries (as written in references, `host[:port]`) spoken to over plain HTTP, without
    /// TLS. Only for loopback test registries.
    pub insecure_hosts: Vec<String>,
    /// Where credentials come from.
    pub credentials: Credentials,
    /// A PEM file of CA certificates trusted instead of the built-in (webpki) roots.
    pub ca_file: Option<PathBuf>,
}

impl RegistryOptions {
    /// Also speak plain HTTP to `host` (`host[:port]` as in the reference).
    pub fn insecure_host(mut self, host: impl Into<String>) -> Self {
        self.insecure_hosts.push(host.into());
        self
    }

    /// Takes credentials from `source`.
    pub fn credentials(mut self, source: Credentials) -> Self {
        self.credentials = source;
        self
    }

    /// Trusts the CA certificates in `path` instead of the built-in roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// Pulls the manifest and config of `reference` for `platform`. The image's `source` is the
/// reference pinned to the digest the tag resolved to (`docker://host/repo:tag@sha256:...`);
/// its `manifest_digest` is that of the platform's manifest.
pub fn open_registry(
    reference: &Reference,
    options: &RegistryOptions,
    platform: &Platform,
) -> Result<Image, Error> {
    let client = Arc::new(Client::new(reference, options)?);
    let name = format!("{}/{}", reference.registry, reference.repository);
    let wanted = reference.manifest_ref();
    let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
    let top = fetch_manifest(&client, &wanted, &accept, &name)?;
    if let Some(pinned) = reference.digest {
        if top.digest != pinned {
            return Err(Error::DigestMismatch {
                what: format!("manifest {name}@{pinned}"),
                expected: pinned,
                actual: top.digest,
            });
        }
    }
    let pinned = top.digest;
    let mut doc = top;
    let mut depth = 0usize;
    while doc.media_type == OCI_INDEX || doc.media_type == DOCKER_LIST {
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::Malformed(format!(
                "{name}: image indexes nested too deeply"
            )));
        }
        depth = depth.saturating_add(1);
        let what = format!("image index {name}@{}", doc.digest);
        let index: ImageIndex = parse_json(&doc.bytes, &what)?;
        let desc = platform.select(index.manifests())?;
        let digest = parse_digest(desc.digest().as_ref(), &format!("{what} entry"))?;
        let next = fetch_manifest(&client, &digest.to_string(), &accept, &name)?;
        if next.digest != digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest {name}@{digest}"),
                expected: digest,
                actual: next.digest,
            });
        }
        if next.bytes.len() as u64 != desc.size() {
            return Err(Error::SizeMismatch {
                what: format!("manifest {name}@{digest}"),
                expected: desc.size(),
                actual: next.bytes.len() as u64,
            });
        }
        doc = next;
    }
    if doc.media_type != OCI_MANIFEST && doc.media_type != DOCKER_MANIFEST {
        return Err(Error::UnsupportedMediaType {
            what: format!("manifest {name}@{}", doc.digest),
            media_type: doc.media_type,
        });
    }
    let what = format!("manifest {name}@{}", doc.digest);
    let manifest: ImageManifest = parse_json(&doc.bytes, &what)?;
    let config_desc = manifest.config();
    let config_digest = parse_digest(config_desc.digest().as_ref(), &format!("{what} config"))?;
    let config_what = format!("config {name}@{config_digest}");
    let config_bytes = fetch_blob(&client, &config_digest, &config_what, MAX_CONFIG)?;
    if config_bytes.len() as u64 != config_desc.size() {
        return Err(Error::SizeMismatch {
            what: config_what,
            expected: config_desc.size(),
            actual: config_bytes.len() as u64,
        });
    }
    let config: ImageConfiguration = parse_json(&config_bytes, &config_what)?;
    let ids = diff_ids(&config, manifest.layers().len())?;
    let layers = layers_from_manifest(&manifest, ids, &format!("{what} layer"), |digest| {
        BlobLocation::Registry {
            client: Arc::clone(&client),
            digest: *digest,
        }
    })?;
    let tag = reference
        .tag
        .as_deref()
        .map(|t| format!(":{t}"))
        .unwrap_or_default();
    Ok(Image {
        source: format!("docker://{name}{tag}@{pinned}"),
        manifest_digest: Some(doc.digest),
        config_digest,
        config,
        layers,
    })
}

struct Document {
    bytes: Vec<u8>,
    digest: Sha256Digest,
    media_type: String,
}

fn fetch_manifest(
    client: &Client,
    reference: &str,
    accept: &str,
    name: &str,
) -> Result<Document, Error> {
    let resp = client
        .manifest(reference, accept)?
        .ok_or_else(|| Error::ManifestNotFound {
            reference: format!("{name}:{reference}").replace(":sha256:", "@sha256:"),
        })?;
    let header_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let declared_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let what = format!("manifest {name}:{reference}");
    let bytes = client::read_body(resp, &what, MAX_MANIFEST.max(MAX_INDEX))?;
    let digest = Sha256Digest::of(&bytes);
    if let Some(declared) = declared_digest {
        let declared = parse_digest(&declared, &format!("{what} Docker-Content-Digest"))?;
        if declared != digest {
            return Err(Error::DigestMismatch {
                what,
                expected: declared,
                actual: digest,
            });
        }
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    let probe: Probe = parse_json(&bytes, &what)?;
    // The document's own mediaType wins over the header: it is covered by the digest.
    let media_type = probe
        .media_type
        .or(header_type)
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    Ok(Document {
        bytes,
        digest,
        media_type,
    })
}

/// Fetches a small blob whole and checks its digest.
fn fetch_blob(
    client: &Client,
    digest: &Sha256Digest,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    let resp = client.blob(digest)?.ok_or_else(|| Error::BlobNotFound {
        registry: client.registry().to_owned(),
        repository: client.repository().to_owned(),
        digest: *digest,
    })?;
    let bytes = client::read_body(resp, what, limit)?;
    let actual = Sha256Digest::of(&bytes);
    if actual != *digest {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            expected: *digest,
            actual,
        });
    }
    Ok(bytes)
}

/// Opens a layer blob for streaming; the caller checks digest and size while reading.
pub(crate) fn open_blob(
    client: &Client,
    digest: &Sha256Digest,
) -> Result<Box<dyn std::io::Read>, Error> {
    let resp = client.blob(digest)?.ok_or_else(|| Error::BlobNotFound {
        registry: client.registry().to_owned(),
        repository: client.repository().to_owned(),
        digest: *digest,
    })?;
    Ok(Box::new(client::body_reader(resp)))
}
