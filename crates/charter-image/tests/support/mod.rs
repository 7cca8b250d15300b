//! Test fixtures: tars and OCI layouts written directly, so tests control every byte.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use charter_image::Sha256Digest;
use serde_json::json;

/// A deterministic tar of regular files (parents implied).
pub fn sample_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn read_all(mut f: &fs::File) -> Vec<u8> {
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

#[derive(Clone, Copy)]
pub enum Blob {
    Plain,
    Gzip,
    Zstd,
}

/// Layer tars with the compression of their blobs.
type Layers = Vec<(Vec<u8>, Blob)>;

struct Entry {
    tag: String,
    /// One manifest (architecture None) or one per architecture.
    manifests: Vec<(Option<&'static str>, Layers)>,
}

pub struct LayoutBuilder {
    dir: PathBuf,
    entries: Vec<Entry>,
    diff_id_override: Option<Vec<Sha256Digest>>,
}

impl LayoutBuilder {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            entries: vec![],
            diff_id_override: None,
        }
    }

    pub fn image(mut self, tag: &str, layers: &[(Vec<u8>, Blob)]) -> Self {
        self.entries.push(Entry {
            tag: tag.into(),
            manifests: vec![(None, layers.to_vec())],
        });
        self
    }

    pub fn multi_arch(mut self, tag: &str, arches: &[(&'static str, Vec<u8>)]) -> Self {
        self.entries.push(Entry {
            tag: tag.into(),
            manifests: arches
                .iter()
                .map(|(a, t)| (Some(*a), vec![(t.clone(), Blob::Gzip)]))
                .collect(),
        });
        self
    }

    pub fn override_diff_ids(mut self, ids: Vec<Sha256Digest>) -> Self {
        self.diff_id_override = Some(ids);
        self
    }

    fn blob(&self, data: &[u8]) -> (String, usize) {
        let d = Sha256Digest::of(data);
        let dir = self.dir.join("blobs/sha256");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(d.hex()), data).unwrap();
        (d.to_string(), data.len())
    }

    fn manifest(&self, arch: &str, layers: &[(Vec<u8>, Blob)]) -> serde_json::Value {
        let mut descs = vec![];
        let mut ids = vec![];
        for (tar, kind) in layers {
            ids.push(Sha256Digest::of(tar).to_string());
            let (bytes, mt) = match kind {
                Blob::Plain => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
                Blob::Gzip => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(tar).unwrap();
                    (
                        e.finish().unwrap(),
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                    )
                }
                Blob::Zstd => (
                    zstd::encode_all(&tar[..], 3).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
            };
            let (digest, size) = self.blob(&bytes);
            descs.push(json!({"mediaType": mt, "digest": digest, "size": size}));
        }
        if let Some(o) = &self.diff_id_override {
            ids = o.iter().map(|d| d.to_string()).collect();
        }
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": ids},
        });
        let (cd, cs) = self.blob(config.to_string().as_bytes());
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": descs,
        })
    }

    pub fn write(self) {
        fs::create_dir_all(&self.dir).unwrap();
        fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let mut top = vec![];
        for e in &self.entries {
            let annotations = json!({"org.opencontainers.image.ref.name": e.tag});
            if let [(None, layers)] = e.manifests.as_slice() {
                let m = self.manifest("amd64", layers);
                let (d, s) = self.blob(m.to_string().as_bytes());
                top.push(
                    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": d, "size": s, "annotations": annotations}),
                );
            } else {
                let mut list = vec![];
                for (arch, layers) in &e.manifests {
                    let arch = arch.unwrap();
                    let m = self.manifest(arch, layers);
                    let (d, s) = self.blob(m.to_string().as_bytes());
                    list.push(
                        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": d, "size": s, "platform": {"os": "linux", "architecture": arch}}),
                    );
                }
                let idx = json!({"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list});
                let (d, s) = self.blob(idx.to_string().as_bytes());
                top.push(
                    json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": d, "size": s, "annotations": annotations}),
                );
            }
        }
        let index = json!({"schemaVersion": 2, "manifests": top});
        fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}
