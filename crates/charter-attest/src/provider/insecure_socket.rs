//! INSECURE: a client for the simulated AMD-SP served over a unix socket by
//! `charter-attest-insecure-sim` (the sandbox launcher runs it; the guest agent cannot link the
//! simulator and its keys).
//!
//! Protocol: the guest sends the 64 bytes of REPORT_DATA; the server answers with a 4-byte
//! big-endian length and that many bytes of evidence JSON ([`Evidence::to_json`]). Evidence
//! from here is accepted by a verifier only with `insecure_allow_simulated` and the
//! simulator's root.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TeeProvider;
use crate::error::{Error, Result};
use crate::evidence::Evidence;

const NAME: &str = "insecure-simulated-snp";

/// Largest evidence answer accepted (a report plus a certificate chain is a few KiB).
pub const MAX_EVIDENCE_BYTES: u32 = 256 * 1024;

/// The simulated AMD-SP reached over a unix socket.
#[derive(Debug, Clone)]
pub struct InsecureSimulatedSocket {
    path: PathBuf,
}

impl InsecureSimulatedSocket {
    /// A provider talking to the simulator listening at `path`.
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

fn err(reason: impl Into<String>) -> Error {
    Error::Provider {
        provider: NAME,
        reason: reason.into(),
    }
}

impl TeeProvider for InsecureSimulatedSocket {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report(&self, report_data: [u8; 64]) -> Result<Evidence> {
        let at = |e: std::io::Error| err(format!("{}: {e}", self.path.display()));
        let mut s = UnixStream::connect(&self.path).map_err(at)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(at)?;
        s.write_all(&report_data).map_err(at)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(at)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_EVIDENCE_BYTES {
            return Err(err(format!(
                "answer of {len} bytes exceeds {MAX_EVIDENCE_BYTES}"
            )));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).map_err(at)?;
        let evidence = Evidence::from_json(&body)?;
        let report = crate::Report::from_bytes(&evidence.report)?;
        if report.report_data() != &report_data {
            return Err(err("report does not carry the requested REPORT_DATA"));
        }
        Ok(evidence)
    }
}
