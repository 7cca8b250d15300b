//! A minimal blocking client of the trustee KBS attestation protocol 0.4.0.
//!
//! This crate is linked by the guest agent and is therefore part of the trusted computing
//! base: it does one thing (auth -> attest -> resource, decrypting the JWE the broker wraps to
//! an ephemeral key) with few dependencies, no async runtime and no panicking code paths.
//!
//! * [`binding`]: the REPORT_DATA binding (SHA-384 of the JCS form of
//!   `{"additional-evidence", "nonce", "tee-pubkey"}`, zero-padded to 64 bytes), shared with
//!   the broker so both sides compute it with the same code.
//! * [`jcs`]: RFC 8785 canonical JSON for the values the protocol hashes.
//! * [`keys`]: the ephemeral TEE key pair (P-256 for `ECDH-ES+A256KW`, or RSA for
//!   `RSA-OAEP-256`) and JWE decryption (RFC 7516 flattened JSON, `A256GCM`).
//! * [`KbsClient`]: the HTTP(S) exchange.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod binding;
pub mod jcs;
pub mod keys;

mod client;
mod relay;

pub use client::{AttestedSession, KbsClient, ResourcePath};
pub use keys::{KeyAlgorithm, TeeKeyPair};

/// The protocol version this client speaks (the trustee KBS requires an exact match).
pub const KBS_PROTOCOL_VERSION: &str = "0.4.0";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// Largest response body the client reads (resources are small).
pub const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker URL is unusable.
    #[error("broker url {0:?}: must be https://host[:port] without a path")]
    Url(String),
    /// The CA PEM holds no usable certificate.
    #[error("ca certificate: {0}")]
    Ca(String),
    /// The resource path is not `repository/type/tag` of safe characters.
    #[error("resource path {0:?}: expected repository/type/tag of [A-Za-z0-9._-]")]
    Path(String),
    /// Transport failure (connection, TLS, reading the body).
    #[error("{endpoint}: {reason}")]
    Transport {
        /// Which endpoint.
        endpoint: &'static str,
        /// What failed.
        reason: String,
    },
    /// The broker answered with an error status.
    #[error("{endpoint}: broker answered {status}: {detail}")]
    Status {
        /// Which endpoint.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The broker's (coarse) error detail.
        detail: String,
    },
    /// The broker's answer does not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TEE provider failed to produce evidence.
    #[error("evidence: {0}")]
    Evidence(#[from] charter_attest::Error),
    /// A cryptographic operation failed (key generation, key agreement).
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// The JWE is malformed or does not decrypt (tampered, or for another key).
    #[error("jwe: {0}")]
    Jwe(String),
    /// Canonical JSON could not be produced (only integers are supported as numbers).
    #[error("canonical json: {0}")]
    Jcs(&'static str),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
