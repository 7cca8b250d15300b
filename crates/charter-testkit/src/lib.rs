//! Test support shared by charter's integration tests and benchmarks (a dev-dependency only:
//! it panics on failure, as tests do). Layers built here are deterministic: entries in a fixed
//! order, mtime 0.
#![forbid(unsafe_code)]

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use charter_agent_api::{Capabilities, CreateContainer, UserSpec};

/// The `PATH` of the test containers' environment.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether this process runs as root (tests that need root assert it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// A layer tar: the parent directories of `files` (mode 0755), then `files` as
/// `(path, contents, mode)`, then `links` as `(path, target)` symlinks.
pub fn tar_of(files: &[(&str, Vec<u8>, u32)], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (p, _, _) in files {
        let mut cur = PathBuf::new();
        for c in Path::new(p).parent().unwrap().components() {
            cur.push(c);
            dirs.insert(cur.clone());
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (p, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, p, Cursor::new(data)).unwrap();
    }
    for (p, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        b.append_link(&mut h, p, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// A layer image file and its dm-verity root hash (hex).
#[derive(Debug, Clone)]
pub struct Layer {
    pub file: PathBuf,
    pub root_hash: String,
}

/// Builds `<dir>/<name>.img` from a layer tar with `charter_image::build_layer_image`.
pub fn build_layer(dir: &Path, name: &str, tar: Vec<u8>) -> Layer {
    let file = dir.join(format!("{name}.img"));
    let out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&file)
        .unwrap();
    let built =
        charter_image::build_layer_image(Cursor::new(tar), &out, NonZeroUsize::MIN, name).unwrap();
    Layer {
        file,
        root_hash: built.root_hash.to_string(),
    }
}

/// `<dir>/<name>.img`: the static busybox at `/bin/busybox` with `applets` linked in `/bin`,
/// `passwd` and `group` as `/etc/passwd` and `/etc/group`, and `/tmp`.
pub fn busybox_layer(dir: &Path, name: &str, applets: &[&str], passwd: &str, group: &str) -> Layer {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let links: Vec<(String, &str)> = applets
        .iter()
        .map(|a| (format!("bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    build_layer(
        dir,
        name,
        tar_of(
            &[
                ("bin/busybox", busybox, 0o755),
                ("etc/passwd", passwd.as_bytes().to_vec(), 0o644),
                ("etc/group", group.as_bytes().to_vec(), 0o644),
                ("tmp/.keep", Vec::new(), 0o644),
            ],
            &links,
        ),
    )
}

/// The framework's default capabilities in every set but ambient and inheritable.
pub fn default_caps() -> Capabilities {
    let d: Vec<String> = charter_policy::DEFAULT_CAPABILITIES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    Capabilities {
        ambient: vec![],
        bounding: d.clone(),
        effective: d.clone(),
        inheritable: vec![],
        permitted: d,
    }
}

/// A create request for container `id` running `cmd` as root with `PATH_ENV`, the standard
/// mounts and the default capabilities.
pub fn simple_create(id: &str, cmd: &[&str]) -> CreateContainer {
    CreateContainer {
        container_id: id.into(),
        args: cmd.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![PATH_ENV.into()],
        working_dir: "/".into(),
        mounts: charter_host::standard_mounts(),
        privileged: false,
        no_new_privileges: false,
        user: UserSpec::default(),
        capabilities: Some(default_caps()),
        seccomp_profile_sha256: String::new(),
        stdin: false,
    }
}
