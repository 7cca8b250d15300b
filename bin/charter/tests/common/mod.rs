//! What the CLI tests share: layer tars built in memory (mtime 0, fixed modes), OCI layouts
//! written by `scripts/mkimage.py`, and the QEMU UVM image.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A layer tar built in memory.
pub struct Tar(tar::Builder<Vec<u8>>);

fn header(size: usize, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h
}

impl Tar {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }
    pub fn dirs(mut self, dirs: &[&str]) -> Self {
        for d in dirs {
            self.0
                .append_data(&mut header(0, tar::EntryType::Directory, 0o755), d, &[][..])
                .unwrap();
        }
        self
    }
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        self.0
            .append_data(
                &mut header(data.len(), tar::EntryType::Regular, mode),
                path,
                data,
            )
            .unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.0
            .append_link(&mut header(0, tar::EntryType::Symlink, 0o777), path, target)
            .unwrap();
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// busybox-static as `busybox_at`, with `links` symlinked to it.
pub fn busybox(dirs: &[&str], busybox_at: &str, links: &[(&str, &str)]) -> Tar {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    let mut t = Tar::new().dirs(dirs).file(busybox_at, &bb, 0o755);
    for (path, target) in links {
        t = t.symlink(path, target);
    }
    t
}

/// Adds image `tag` to the OCI layout `out`: `layers` (base first) stored with `compression`
/// (`gzip`, `zstd` or `none`), and `entrypoint`.
pub fn mkimage(out: &Path, tag: &str, layers: &[Vec<u8>], compression: &str, entrypoint: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkimage.py");
    let dir = out.parent().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(out).arg(tag);
    for (i, layer) in layers.iter().enumerate() {
        let p = dir.join(format!("{tag}-layer{i}.tar"));
        std::fs::write(&p, layer).unwrap();
        cmd.arg(format!("{}:{compression}", p.display()));
    }
    let o = cmd.arg("--entrypoint").args(entrypoint).output().unwrap();
    assert!(
        o.status.success(),
        "mkimage: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The QEMU UVM image for the INSECURE simulated TEE (`charter uvm build
/// --insecure-simulated-tee` with the workspace's static agent), built once per test binary.
pub fn uvm_image() -> &'static Path {
    static IMAGE: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let agent = charter_uvm::workspace_static_agent(&workspace).unwrap();
        let image = dir.path().join("uvm");
        let o = Command::new(env!("CARGO_BIN_EXE_charter"))
            .args(["uvm", "build", "--insecure-simulated-tee", "--out"])
            .arg(&image)
            .arg("--agent")
            .arg(&agent)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (dir, image)
    });
    path
}
