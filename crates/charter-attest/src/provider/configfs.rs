//! configfs-tsm report provider (Linux >= 6.7, `Documentation/ABI/testing/configfs-tsm-report`).
//!
//! Protocol: make an entry directory under `/sys/kernel/config/tsm/report/`, write
//! `inblob` (REPORT_DATA) and optionally `privlevel` (VMPL), read `generation`, read `outblob`
//! (the raw report; reading triggers the request) and `auxblob` (the GHCB certificate table,
//! when the host supplies certificates), then read `generation` again: if it changed, someone
//! else wrote to the entry in between and the outblob may not be ours.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::TeeProvider;
use crate::error::{Error, Result};
use crate::evidence::{parse_cert_table, Evidence};

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

const NAME: &str = "configfs-tsm";

/// configfs-tsm provider.
#[derive(Debug)]
pub struct ConfigfsTsm {
    root: PathBuf,
    entry: Option<String>,
    privlevel: Option<u32>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn err(reason: impl Into<String>) -> Error {
    Error::Provider {
        provider: NAME,
        reason: reason.into(),
    }
}

fn read_generation(dir: &Path) -> Result<u64> {
    let p = dir.join("generation");
    let s = fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    s.trim()
        .parse()
        .map_err(|e| err(format!("{}: not a number: {e}", p.display())))
}

impl ConfigfsTsm {
    /// Provider using entries under `root` (normally [`DEFAULT_ROOT`]).
    pub fn new(root: impl Into<PathBuf>) -> ConfigfsTsm {
        ConfigfsTsm {
            root: root.into(),
            entry: None,
            privlevel: None,
        }
    }

    /// Use a fixed entry name (an existing entry is reused and kept); default is a fresh
    /// `charter-<pid>-<n>` entry removed afterwards.
    pub fn with_entry(mut self, name: impl Into<String>) -> ConfigfsTsm {
        self.entry = Some(name.into());
        self
    }

    /// Request this VMPL (written to `privlevel`).
    pub fn with_privlevel(mut self, vmpl: u32) -> ConfigfsTsm {
        self.privlevel = Some(vmpl);
        self
    }

    fn request(&self, dir: &Path, report_data: &[u8; 64]) -> Result<Evidence> {
        let write = |name: &str, data: &[u8]| {
            let p = dir.join(name);
            fs::write(&p, data).map_err(|e| Error::io(&p, e))
        };
        write("inblob", report_data)?;
        if let Some(level) = self.privlevel {
            write("privlevel", level.to_string().as_bytes())?;
        }
        let provider_path = dir.join("provider");
        let provider =
            fs::read_to_string(&provider_path).map_err(|e| Error::io(&provider_path, e))?;
        if provider.trim() != "sev_guest" {
            return Err(err(format!(
                "provider is {:?}, only sev_guest is supported",
                provider.trim()
            )));
        }
        let before = read_generation(dir)?;
        let out_path = dir.join("outblob");
        let report = fs::read(&out_path).map_err(|e| Error::io(&out_path, e))?;
        let aux_path = dir.join("auxblob");
        let aux = match fs::read(&aux_path) {
            Ok(a) if !a.is_empty() => Some(a),
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&aux_path, e)),
        };
        let after = read_generation(dir)?;
        if before != after {
            return Err(err(format!(
                "generation changed from {before} to {after} while reading outblob: the entry is used concurrently, retry"
            )));
        }
        let mut ev = Evidence {
            report,
            ..Evidence::default()
        };
        if let Some(aux) = aux {
            let certs = parse_cert_table(&aux)?;
            ev.vek = certs.vek;
            ev.chain = certs.chain;
        }
        Ok(ev)
    }
}

impl TeeProvider for ConfigfsTsm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report(&self, report_data: [u8; 64]) -> Result<Evidence> {
        let (name, fixed) = match &self.entry {
            Some(n) => (n.clone(), true),
            None => (
                format!(
                    "charter-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ),
                false,
            ),
        };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(err(format!("invalid entry name {name:?}")));
        }
        let dir = self.root.join(&name);
        let created = match fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && fixed => false,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let result = self.request(&dir, &report_data);
        if created && !fixed {
            // configfs removes the attributes with the directory.
            let _ = fs::remove_dir(&dir);
        }
        result
    }
}
