//! The demo's image: busybox-static (Debian's static build) plus the demo workload script,
//! written as an OCI image layout with uncompressed layers. No network.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The workload: reads a data file from its own (verified) layer, computes, writes to its
/// volume and prints the result.
pub const WORKLOAD: &str = r#"#!/bin/sh
echo "$GREETING"
total=0
count=0
while IFS=, read -r name amount; do
  [ "$name" = name ] && continue
  total=$((total + amount))
  count=$((count + 1))
done < /app/data.csv
echo "rows=$count total=$total" | tee /data/result.txt
echo "uid=$(id -u) result written to /data/result.txt"
"#;

pub const DATA: &str = "name,amount\nalice,12\nbob,30\ncarol,0\ndave,58\n";

const APPLETS: [&str; 10] = [
    "sh", "echo", "cat", "tee", "id", "sleep", "ls", "env", "wc", "true",
];

fn dir_header(path: &str) -> (tar::Header, String) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    (h, path.to_owned())
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

fn base_tar() -> Result<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (install busybox-static: apt-get install busybox-static)")?;
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "tmp", "data"] {
        let (mut h, p) = dir_header(d);
        b.append_data(&mut h, p, std::io::empty())?;
    }
    file(&mut b, "bin/busybox", &busybox, 0o755)?;
    for a in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")?;
    }
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000::/tmp:/bin/sh\n",
        0o644,
    )?;
    file(&mut b, "etc/group", b"root:x:0:\nworker:x:1000:\n", 0o644)?;
    Ok(b.into_inner()?)
}

fn app_tar() -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let (mut h, p) = dir_header("app");
    b.append_data(&mut h, p, std::io::empty())?;
    file(&mut b, "app/run.sh", WORKLOAD.as_bytes(), 0o755)?;
    file(&mut b, "app/data.csv", DATA.as_bytes(), 0o644)?;
    Ok(b.into_inner()?)
}

fn put_blob(layout: &Path, bytes: &[u8]) -> Result<String> {
    let hex = hex::encode(Sha256::digest(bytes));
    let path = layout.join("blobs/sha256").join(&hex);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(format!("sha256:{hex}"))
}

/// Writes the demo image as an OCI layout at `layout` with tag `tag`.
pub fn write_layout(layout: &Path, tag: &str) -> Result<()> {
    std::fs::create_dir_all(layout.join("blobs/sha256"))
        .with_context(|| format!("creating {}", layout.display()))?;
    let layers = [base_tar()?, app_tar()?];
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        let digest = put_blob(layout, l)?;
        diff_ids.push(digest.clone());
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": l.len(),
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh", "/app/run.sh"],
            "WorkingDir": "/",
            "User": "worker",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = put_blob(layout, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))?;
    let manifest_digest = put_blob(layout, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(())
}
