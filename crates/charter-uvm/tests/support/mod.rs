//! What the UVM boot test and the pod-start benchmark share: the static agent, busybox layers,
//! a one-container policy and its create request.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use charter_agent_api::CreateContainer;
use charter_policy::model::{Container, EnvRule, PolicyDocument};
#[allow(unused_imports)]
pub use charter_testkit::{build_layer, default_caps, tar_of, Layer, PATH_ENV};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn static_agent() -> PathBuf {
    let started = Instant::now();
    let agent = charter_uvm::workspace_static_agent(&workspace()).unwrap();
    eprintln!("static agent ready in {:?}", started.elapsed());
    agent
}

/// A layer `base` with the static busybox at `/bin/busybox`, `applets` linked in `/bin`, a
/// root-only `/etc/passwd` and `/etc/group`, and `/tmp`.
pub fn busybox_layer(dir: &Path, applets: &[&str]) -> Layer {
    charter_testkit::busybox_layer(
        dir,
        "base",
        applets,
        "root:x:0:0:root:/root:/bin/sh\n",
        "root:x:0:\n",
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

/// The create request [`policy_for`] allows.
pub fn create_request(id: &str, command: &[&str]) -> CreateContainer {
    charter_testkit::simple_create(id, command)
}
