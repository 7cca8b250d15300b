//! Test images: OCI layouts built by `scripts/mkimage.py` from a busybox-static rootfs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\napp:x:1001:\nvideo:x:44:app\n";

fn append_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn append_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

fn append_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, path, target).unwrap();
}

/// The busybox base layer: `/usr/bin/busybox` and `/bin/sh`.
pub fn base_layer() -> Vec<u8> {
    let busybox = std::fs::read("/usr/bin/busybox").expect("busybox-static at /usr/bin/busybox");
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin/", "usr/", "usr/bin/", "etc/", "tmp/"] {
        append_dir(&mut b, d);
    }
    append_file(&mut b, "usr/bin/busybox", &busybox, 0o755);
    append_symlink(&mut b, "bin/sh", "/usr/bin/busybox");
    b.into_inner().unwrap()
}

/// A layer with the given files (path, content).
pub fn files_layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        append_file(&mut b, path, data.as_bytes(), 0o644);
    }
    b.into_inner().unwrap()
}

/// Builds an OCI layout at `dir` with tag `tag` from `layers` (base first).
pub fn mkimage(dir: &Path, tag: &str, layers: &[Vec<u8>], entrypoint: &[&str]) -> PathBuf {
    let out = dir.join(tag);
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkimage.py"))
        .arg(&out)
        .arg(tag);
    for (i, layer) in layers.iter().enumerate() {
        let p = dir.join(format!("{tag}-layer{i}.tar"));
        std::fs::write(&p, layer).unwrap();
        cmd.arg(format!("{}:gzip", p.display()));
    }
    cmd.arg("--entrypoint").args(entrypoint);
    let status = cmd.output().unwrap();
    assert!(status.status.success(), "mkimage: {status:?}");
    out
}

/// The standard app image: busybox base + /etc/passwd and /etc/group; Entrypoint
/// `/usr/bin/busybox sleep`, no Cmd.
pub fn app_image(dir: &Path) -> PathBuf {
    let etc = files_layer(&[("etc/passwd", PASSWD), ("etc/group", GROUP)]);
    mkimage(
        dir,
        "app",
        &[base_layer(), etc],
        &["/usr/bin/busybox", "sleep"],
    )
}
