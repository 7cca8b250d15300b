//! The one error type of this crate.

use crate::tcb::TcbVersion;

/// Everything that can go wrong while decoding or verifying SEV-SNP evidence.
///
/// Messages are lowercase and name what failed; they never contain secret material
/// (reports and certificates are public).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The report is not exactly 0x4A0 bytes.
    #[error("attestation report length is {0} bytes, expected 1184 (0x4a0)")]
    ReportLength(usize),
    /// VERSION is one this crate does not know.
    #[error("attestation report version {0} is not supported (known: 2, 3, 4, 5)")]
    UnsupportedVersion(u32),
    /// A reserved must-be-zero range holds a non-zero byte.
    #[error("attestation report reserved field {field} (offset {offset:#x}) is not zero")]
    ReservedNotZero {
        /// Name of the reserved range.
        field: &'static str,
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384).
    #[error("attestation report signature algorithm {0} is not supported (expected 1, ecdsa p-384 sha-384)")]
    SignatureAlgorithm(u32),
    /// KEY_INFO says the report is not signed (MASK_CHIP_KEY or SIGNING_KEY=none).
    #[error(
        "attestation report is not signed (key_info {0:#x}: mask_chip_key set or signing key none)"
    )]
    Unsigned(u32),
    /// KEY_INFO.SIGNING_KEY is a reserved value.
    #[error("attestation report key_info signing key {0} is reserved")]
    SigningKeyReserved(u32),
    /// Signature component not a valid zero-padded little-endian P-384 scalar.
    #[error("attestation report signature {0} is malformed (bytes 48..72 must be zero)")]
    SignatureEncoding(&'static str),
    /// ECDSA verification of the report failed.
    #[error("attestation report signature does not verify with the {0} public key")]
    ReportSignature(&'static str),
    /// The product (Milan/Genoa/Turin) could not be determined or is inconsistent.
    #[error("product: {0}")]
    Product(String),
    /// A certificate could not be decoded.
    #[error("{which} certificate is malformed: {reason}")]
    CertDecode {
        /// Which certificate (ARK, ASK, ASVK, VCEK, VLEK).
        which: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A certificate signature does not verify under its issuer.
    #[error("{which} certificate signature does not verify under {issuer}")]
    CertSignature {
        /// The certificate whose signature failed.
        which: &'static str,
        /// The issuer it was checked against.
        issuer: &'static str,
    },
    /// A certificate is outside its validity period.
    #[error("{which} certificate is not valid at the verification time")]
    CertValidity {
        /// Which certificate.
        which: &'static str,
    },
    /// The ARK does not equal the pinned root for the product.
    #[error("ark does not match the pinned {0} root")]
    UntrustedRoot(String),
    /// A VCEK/VLEK extension is missing or malformed.
    #[error("{which} extension {oid} is missing or malformed")]
    Extension {
        /// Which certificate.
        which: &'static str,
        /// Extension OID.
        oid: &'static str,
    },
    /// The VCEK/VLEK TCB extension values differ from REPORTED_TCB.
    #[error("{which} {field} is {cert} but the report's reported_tcb has {report}")]
    TcbMismatch {
        /// Which certificate.
        which: &'static str,
        /// SPL name (blSPL, teeSPL, snpSPL, ucodeSPL, fmcSPL).
        field: &'static str,
        /// Value in the certificate.
        cert: u64,
        /// Value in the report.
        report: u8,
    },
    /// VCEK hwID differs from CHIP_ID.
    #[error("vcek hwid does not match the report's chip_id")]
    ChipIdMismatch,
    /// Signing key kind and supplied certificate differ.
    #[error("report is signed by the {report} but a {cert} certificate was supplied")]
    WrongSigningKey {
        /// Key named by KEY_INFO.
        report: &'static str,
        /// Certificate given.
        cert: &'static str,
    },
    /// No certificate for the signing key was supplied.
    #[error("no {0} certificate supplied")]
    MissingCert(&'static str),
    /// Simulated evidence offered without explicit permission.
    #[error("report chains to the insecure simulated root, which is not allowed (insecure_allow_simulated is off)")]
    SimulatedNotAllowed,
    /// A policy (appraisal) check failed.
    #[error("policy: {0}")]
    Policy(String),
    /// REPORTED_TCB is below the caller's minimum.
    #[error("reported_tcb {reported} is below the minimum {minimum}")]
    TcbTooLow {
        /// The reported TCB.
        reported: TcbVersion,
        /// The required minimum.
        minimum: TcbVersion,
    },
    /// Evidence bundle could not be decoded.
    #[error("evidence: {0}")]
    Evidence(String),
    /// Provider failure (configfs-tsm, /dev/sev-guest).
    #[error("tee provider {provider}: {reason}")]
    Provider {
        /// Provider name.
        provider: &'static str,
        /// What failed.
        reason: String,
    },
    /// Launch-measurement input error.
    #[error("measurement: {0}")]
    Measurement(String),
    /// I/O error with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// Path being accessed.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
    pub(crate) fn cert(which: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::CertDecode {
            which,
            reason: reason.to_string(),
        }
    }
}
