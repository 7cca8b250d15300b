//! TEE providers: where a guest gets its own evidence.
//!
//! Real SEV-SNP first through configfs-tsm ([`configfs::ConfigfsTsm`], Linux >= 6.7), then the
//! `/dev/sev-guest` ioctls ([`sev_guest::SevGuest`]). The INSECURE simulated AMD-SP in
//! `charter-attest-insecure-sim` implements the same trait.

pub mod configfs;
pub mod insecure_socket;
pub mod sev_guest;

use crate::error::Result;
use crate::evidence::Evidence;

/// Something that can produce attestation evidence binding 64 bytes of guest data.
pub trait TeeProvider {
    /// Provider name for messages ("configfs-tsm", "sev-guest", "insecure-simulated-snp").
    fn name(&self) -> &'static str;
    /// Request a report whose REPORT_DATA is `report_data`, with whatever certificates the
    /// platform supplies.
    fn report(&self, report_data: [u8; 64]) -> Result<Evidence>;
}

/// The first real provider available on this machine: configfs-tsm if
/// `/sys/kernel/config/tsm/report` exists, else `/dev/sev-guest` if present.
pub fn detect() -> Option<Box<dyn TeeProvider + Send + Sync>> {
    if std::path::Path::new(configfs::DEFAULT_ROOT).is_dir() {
        return Some(Box::new(configfs::ConfigfsTsm::new(configfs::DEFAULT_ROOT)));
    }
    if std::path::Path::new(sev_guest::DEFAULT_DEVICE).exists() {
        return Some(Box::new(sev_guest::SevGuest::new(
            sev_guest::DEFAULT_DEVICE,
        )));
    }
    None
}
