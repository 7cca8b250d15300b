//! Errors: [`Error`] for operators (detailed, logged), [`ApiError`] for clients (coarse).

use std::path::Path;

/// Library errors (detailed; never sent to clients as is).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS setup.
    #[error("tls: {0}")]
    Tls(String),
    /// Cryptographic failure.
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// A sealed record failed to open (wrong master key or corrupted row).
    #[error("sealed record {0:?} does not open with the master key")]
    Sealed(String),
    /// A policy does not compile or evaluate.
    #[error("policy: {0}")]
    Policy(String),
    /// A token is malformed, badly signed or expired.
    #[error("token: {0}")]
    Token(&'static str),
    /// A PEM or key is malformed.
    #[error("key: {0}")]
    Key(String),
    /// Evidence failed verification.
    #[error("attestation: {0}")]
    Attestation(String),
    /// Protocol violation by the client.
    #[error("protocol: {0}")]
    Protocol(String),
    /// JWE construction.
    #[error("jwe: {0}")]
    Jwe(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a client is told. Deliberately coarse: the detail goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: no valid session, token or admin token.
    Unauthorized,
    /// 401: the evidence did not verify or is not bound to the challenge.
    AttestationFailed,
    /// 401: the release policy said no.
    PolicyDeny,
    /// 404: no such resource or endpoint.
    NotFound,
    /// 500.
    Internal,
}

impl ApiError {
    /// HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            ApiError::BadRequest => 400,
            ApiError::Unauthorized | ApiError::AttestationFailed | ApiError::PolicyDeny => 401,
            ApiError::NotFound => 404,
            ApiError::Internal => 500,
        }
    }
    /// Error type suffix (trustee style: `.../errors/<T>`).
    pub fn kind(self) -> &'static str {
        match self {
            ApiError::BadRequest => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::AttestationFailed => "AttestationError",
            ApiError::PolicyDeny => "PolicyDeny",
            ApiError::NotFound => "NotFound",
            ApiError::Internal => "InternalError",
        }
    }
    /// The message clients see.
    pub fn detail(self) -> &'static str {
        match self {
            ApiError::BadRequest => "bad request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::AttestationFailed => "attestation failed",
            ApiError::PolicyDeny => "unauthorized",
            ApiError::NotFound => "not found",
            ApiError::Internal => "internal error",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}
