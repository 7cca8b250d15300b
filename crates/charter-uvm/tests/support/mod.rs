//! What the UVM boot test and the pod-start benchmark share: the static agent, busybox layers,
//! a one-container policy and its create request.
#![allow(dead_code)]

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use charter_agent_api::{Capabilities, CreateContainer, UserSpec};
use charter_policy::model::{Container, EnvRule, PolicyDocument};

pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn static_agent() -> PathBuf {
    let started = Instant::now();
    let agent = charter_uvm::workspace_static_agent(&workspace()).unwrap();
    eprintln!("static agent ready in {:?}", started.elapsed());
    agent
}

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

pub struct Layer {
    pub file: PathBuf,
    pub root_hash: String,
}

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

/// A layer with the static busybox at `/bin/busybox`, `applets` linked in `/bin`, a root-only
/// `/etc/passwd` and `/etc/group`, and `/tmp`.
pub fn busybox_layer(dir: &Path, applets: &[&str]) -> Layer {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let links: Vec<(String, &str)> = applets
        .iter()
        .map(|a| (format!("bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    build_layer(
        dir,
        "base",
        tar_of(
            &[
                ("bin/busybox", busybox, 0o755),
                (
                    "etc/passwd",
                    b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
                    0o644,
                ),
                ("etc/group", b"root:x:0:\n".to_vec(), 0o644),
                ("tmp/.keep", Vec::new(), 0o644),
            ],
            &links,
        ),
    )
}

/// A policy with one container `name` running `command` over `layers` (base first), stdio
/// allowed.
pub fn policy_for(name: &str, command: &[&str], layers: &[&Layer]) -> String {
    PolicyDocument {
        containers: vec![Container {
            name: Some(name.into()),
            layers: layers.iter().map(|l| l.root_hash.clone()).collect(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env_rules: vec![EnvRule::string(PATH_ENV, false)],
            working_dir: "/".into(),
            allow_stdio_access: true,
            ..Container::default()
        }],
        ..PolicyDocument::default()
    }
    .to_rego()
}

pub fn caps() -> Capabilities {
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

/// The create request [`policy_for`] allows.
pub fn create_request(id: &str, command: &[&str]) -> CreateContainer {
    CreateContainer {
        container_id: id.into(),
        args: command.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![PATH_ENV.into()],
        working_dir: "/".into(),
        mounts: charter_host::standard_mounts(),
        privileged: false,
        no_new_privileges: false,
        user: UserSpec::default(),
        capabilities: Some(caps()),
        seccomp_profile_sha256: String::new(),
        stdin: false,
    }
}
