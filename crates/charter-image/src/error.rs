//! Errors of image reading and layer measurement; each names the file, blob or layer involved.

use std::path::PathBuf;

use crate::{DigestError, Sha256Digest};

/// An image or layer could not be read, verified or measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the image source could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a layer stream failed (I/O or decompression).
    #[error("layer {index} ({digest}): {source}")]
    LayerRead {
        /// Position of the layer in the image, base first.
        index: usize,
        /// The layer's digest (blob digest, else diff_id).
        digest: Sha256Digest,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The source is neither an OCI layout directory nor a docker archive.
    #[error("{}: not an OCI image layout directory or docker-save archive", .0.display())]
    UnknownSource(PathBuf),
    /// A JSON document of the image (index, manifest, config) is malformed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document is larger than the limit for its kind.
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Which document.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A digest string in the image metadata is malformed.
    #[error("{what}: {source}")]
    Digest {
        /// Where the digest was found.
        what: String,
        /// Why it was refused.
        #[source]
        source: DigestError,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("{what}: content digest is {actual}, expected {expected}")]
    DigestMismatch {
        /// Which blob.
        what: String,
        /// The digest the metadata promised.
        expected: Sha256Digest,
        /// The digest of the bytes read.
        actual: Sha256Digest,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("{what}: {actual} bytes, descriptor says {expected}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// The descriptor size.
        expected: u64,
        /// The bytes read.
        actual: u64,
    },
    /// A blob the metadata refers to is missing.
    #[error("{what}: blob {digest} is missing")]
    MissingBlob {
        /// Who refers to it.
        what: String,
        /// The missing digest.
        digest: String,
    },
    /// The requested tag is not in the source.
    #[error("tag {tag:?} not found; the source has: {}", available.join(", "))]
    TagNotFound {
        /// The tag asked for.
        tag: String,
        /// The tags present.
        available: Vec<String>,
    },
    /// The source holds several images and no tag picked one.
    #[error("the source holds {count} images; pick one with :TAG (tags: {})", tags.join(", "))]
    Ambiguous {
        /// How many images.
        count: usize,
        /// Their tags.
        tags: Vec<String>,
    },
    /// No manifest of a multi-platform index matches the wanted platform.
    #[error("no manifest for platform {wanted}; the index has: {}", available.join(", "))]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: String,
        /// The platforms present.
        available: Vec<String>,
    },
    /// A media type charter does not read.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// Where it was found.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// The manifest's layer count differs from the config's diff_ids.
    #[error("manifest lists {layers} layers but the config lists {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// The image structure is inconsistent in another way.
    #[error("{0}")]
    Malformed(String),
    /// Converting a layer tar to EROFS failed.
    #[error("layer {diff_id}: {source}")]
    Erofs {
        /// The layer.
        diff_id: String,
        /// The builder's error.
        #[source]
        source: charter_erofs::Error,
    },
    /// Building or checking the dm-verity tree failed.
    #[error("{what}: {source}")]
    Verity {
        /// The layer image.
        what: String,
        /// The verity error.
        #[source]
        source: charter_verity::Error,
    },
    /// An image reference is not `[registry[:port]/]repository[:tag][@sha256:digest]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference (truncated).
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// The registry refused the credentials (or their absence) for the repository.
    #[error("registry {registry} denied access to repository {repository} (401/403): check the credentials in the docker config.json")]
    RegistryAuth {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The registry has no such manifest (unknown tag, digest or repository).
    #[error("manifest {reference} not found in the registry (404)")]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
    },
    /// The registry has no such blob.
    #[error("registry {registry}: blob {digest} of repository {repository} not found (404)")]
    BlobNotFound {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: Sha256Digest,
    },
    /// A registry request failed (connection, TLS, unexpected status, bad token response).
    #[error("registry {registry}, repository {repository}: {what}: {detail}")]
    Registry {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was being fetched.
        what: String,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
