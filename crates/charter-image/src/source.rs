//! Image sources as a user names them, with skopeo-style transports.

use std::path::{Path, PathBuf};

use crate::{
    open_docker_archive, open_layout, open_registry, Error, Image, Platform, Reference,
    RegistryOptions,
};

/// An image source: a local layout or archive, or a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageSource {
    /// An OCI image layout directory, optionally with the tag (`ref.name` annotation) to use.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// A `docker save` archive, optionally with the `RepoTags` entry to use.
    DockerArchive {
        /// The archive.
        path: PathBuf,
        /// The reference.
        reference: Option<String>,
    },
    /// An image in an OCI registry (`docker://REF`).
    Registry {
        /// The image reference.
        reference: Reference,
        /// How to reach the registry.
        options: RegistryOptions,
    },
}

impl ImageSource {
    /// Parses `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, `docker://REF` (a registry, with
    /// default [`RegistryOptions`]), or a bare `PATH[:TAG]` whose kind is taken from the file
    /// system (a directory is a layout, a file an archive). A path that exists as written is
    /// never split at a colon.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        if let Some(rest) = spec.strip_prefix("docker://") {
            return Self::registry(rest, RegistryOptions::default());
        }
        if let Some(rest) = spec.strip_prefix("oci:") {
            let (dir, tag) = split_existing(rest);
            return Ok(Self::Layout { dir, tag });
        }
        if let Some(rest) = spec.strip_prefix("docker-archive:") {
            let (path, reference) = split_existing(rest);
            return Ok(Self::DockerArchive { path, reference });
        }
        let (path, tag) = split_existing(spec);
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            Ok(Self::Layout { dir: path, tag })
        } else {
            Ok(Self::DockerArchive {
                path,
                reference: tag,
            })
        }
    }

    /// A registry source for a docker reference such as `busybox:1.36` or
    /// `127.0.0.1:5000/demo@sha256:...`.
    pub fn registry(reference: &str, options: RegistryOptions) -> Result<Self, Error> {
        Ok(Self::Registry {
            reference: Reference::parse(reference)?,
            options,
        })
    }

    /// Opens the image, verifying its manifest and config digests. For a registry this pulls
    /// the manifest and config only; layers stream from the registry when opened.
    pub fn open(&self, platform: &Platform) -> Result<Image, Error> {
        match self {
            Self::Layout { dir, tag } => {
                if !dir.join("oci-layout").exists() {
                    return Err(Error::UnknownSource(dir.clone()));
                }
                open_layout(dir, tag.as_deref(), platform)
            }
            Self::DockerArchive { path, reference } => {
                open_docker_archive(path, reference.as_deref())
            }
            Self::Registry { reference, options } => open_registry(reference, options, platform),
        }
    }
}

/// Splits `PATH[:TAG]`: the whole string when it names an existing path, else the shortest
/// existing prefix before a colon (a docker reference such as `busybox:1.36` has colons of its
/// own), else the last colon.
fn split_existing(s: &str) -> (PathBuf, Option<String>) {
    if Path::new(s).exists() {
        return (PathBuf::from(s), None);
    }
    let existing = s
        .match_indices(':')
        .map(|(i, _)| i)
        .find(|&i| s.get(..i).is_some_and(|p| Path::new(p).exists()));
    let split = existing.or_else(|| s.rfind(':'));
    match split.and_then(|i| Some((s.get(..i)?, s.get(i.saturating_add(1)..)?))) {
        Some((path, tag)) if !tag.is_empty() => (PathBuf::from(path), Some(tag.to_owned())),
        _ => (PathBuf::from(s), None),
    }
}
