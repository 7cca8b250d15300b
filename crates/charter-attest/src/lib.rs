//! AMD SEV-SNP attestation for charter.
//!
//! * [`report`]: the ATTESTATION_REPORT codec (v2, v3, v5; offsets asserted at compile time).
//! * [`verify`]: verification to the pinned AMD roots (built in for Milan, Genoa, Turin),
//!   VCEK/VLEK extension checks, appraisal, typed [`Claims`]. Only [`Verifier`] makes a
//!   [`VerifiedReport`].
//! * [`evidence`]: evidence bundles (JSON), Azure THIM certificate JSON, GHCB cert tables.
//! * [`provider`]: the [`TeeProvider`] trait, configfs-tsm and `/dev/sev-guest`.
//! * [`measure`]: expected launch MEASUREMENT (as PyPI `sev-snp-measure` computes it).
#![deny(unsafe_code)] // not forbid: provider::sev_guest needs the two ioctl calls
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
#![warn(missing_docs)]

pub mod cert;
pub mod error;
pub mod evidence;
mod hexser;
pub mod measure;
pub mod provider;
pub mod report;
pub mod tcb;
pub mod verify;

pub use error::{Error, Result};
pub use evidence::{CertBundle, Evidence};
pub use provider::TeeProvider;
pub use report::{Report, SigningKey, REPORT_LEN};
pub use tcb::{Product, TcbLayout, TcbVersion};
pub use verify::{Claims, Platform, RootSet, VerifiedReport, Verifier, VerifyOptions};

impl Verifier {
    /// Verify an evidence bundle.
    pub fn verify_evidence(
        &self,
        evidence: &Evidence,
        opts: &VerifyOptions,
    ) -> Result<VerifiedReport> {
        let vek = evidence
            .vek
            .as_deref()
            .ok_or(Error::MissingCert("vcek or vlek"))?;
        self.verify(&evidence.report, vek, &evidence.chain, opts)
    }
}
