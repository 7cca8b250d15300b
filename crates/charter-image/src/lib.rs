//! Container images from local sources and OCI registries, read without a daemon, and their
//! layers measured.
//!
//! ```text
//!  oci:DIR[:TAG] ──┐                      ┌─ blob digest + size checked at EOF
//!  docker-archive ─┼─ Image { config, layers } ── open_layer ─ decompress ─ diff_id checked at EOF
//!  docker://REF ───┘                                                │
//!                                                        tar → EROFS → dm-verity root hash
//! ```
//!
//! Every document and blob is checked against the digest that names it while it streams;
//! [`LayerReader::finish`] must succeed before anything built from a layer is used. Layer
//! identity in charter is the dm-verity root hash of the deterministic EROFS image of the
//! layer's uncompressed tar (DESIGN.md D4); [`measure`] computes it, with a cache keyed by
//! diff_id so a layer is hashed once.
//!
//! This crate refuses: unknown media types for layers, manifests whose layer count differs from
//! the config's diff_ids, metadata documents over fixed size limits, and any digest mismatch.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod archive;
mod cache;
mod compression;
mod digest;
mod error;
mod hashing;
mod image;
mod layer;
mod layout;
mod measure;
mod platform;
mod registry;
mod source;

pub use archive::open_docker_archive;
pub use cache::{Cache, CachedLayer};
pub use compression::{decompress, Compression};
pub use digest::{DigestError, Sha256Digest};
pub use error::Error;
pub use hashing::HashingReader;
pub use image::{Image, Layer, LayerDigests, LayerReader, TarChunk};
pub use layer::{build_layer_image, layer_root_hash, verify_layer_image, LayerImage, LayerRoot};
pub use layout::open_layout;
pub use measure::{measure, LayerMeasurement, MeasureObserver};
pub use platform::Platform;
pub use registry::{open_registry, Challenge, Credentials, Reference, RegistryOptions};
pub use source::ImageSource;
