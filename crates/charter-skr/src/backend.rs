//! Where reports and keys come from: the [`Backend`] trait and the key broker backend.

use charter_attest::TeeProvider;
use charter_kbs_client::{Error as ClientError, KbsClient};

/// Why a backend could not produce a report or a key. The text is for the server's owner;
/// clients only see a coarse message chosen by the variant.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The broker refused (evidence not accepted, or the release policy said no): 403.
    #[error("refused: {0}")]
    Refused(String),
    /// The broker could not be reached, or did not answer per the protocol: 502.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No such key: 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else (the TEE failed to produce a report, a local crypto failure): 500.
    #[error("{0}")]
    Other(String),
}

impl BackendError {
    /// The HTTP status a client sees.
    pub fn status(&self) -> u16 {
        match self {
            BackendError::Refused(_) => 403,
            BackendError::Unreachable(_) => 502,
            BackendError::NotFound(_) => 404,
            BackendError::Other(_) => 500,
        }
    }
}

impl From<ClientError> for BackendError {
    /// 401/403 from the broker are refusals, 404 is an unknown resource, other 4xx mean this
    /// side sent something wrong, 5xx, transport and protocol failures mean the broker is not
    /// usable; local failures (evidence, crypto, JWE) are `Other`.
    fn from(e: ClientError) -> Self {
        let text = e.to_string();
        match e {
            ClientError::Status { status, .. } => match status {
                401 | 403 => BackendError::Refused(text),
                404 => BackendError::NotFound(text),
                500..=599 => BackendError::Unreachable(text),
                _ => BackendError::Other(text),
            },
            ClientError::Transport { .. } | ClientError::Protocol(_) => {
                BackendError::Unreachable(text)
            }
            ClientError::Path(_) => BackendError::NotFound(text),
            ClientError::Url(_)
            | ClientError::Ca(_)
            | ClientError::Evidence(_)
            | ClientError::Crypto(_)
            | ClientError::Jwe(_)
            | ClientError::Jcs(_) => BackendError::Other(text),
        }
    }
}

/// What the endpoint needs from the platform and the key broker.
pub trait Backend: Send + Sync {
    /// The raw SNP report (1184 bytes on real hardware) whose REPORT_DATA is `report_data`.
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, BackendError>;
    /// The key bytes stored at `kid` (a validated `repository/type/tag`), released to this
    /// guest after attestation.
    fn release(&self, kid: &str) -> Result<Vec<u8>, BackendError>;
}

/// The production backend: reports from a [`TeeProvider`], keys from the trustee-protocol key
/// broker through [`KbsClient`] (a fresh attestation and ephemeral key for every release).
pub struct KbsBackend {
    client: KbsClient,
    tee: Box<dyn TeeProvider + Send + Sync>,
}

impl KbsBackend {
    /// A backend releasing keys from the broker `client` talks to, with evidence from `tee`.
    pub fn new(client: KbsClient, tee: Box<dyn TeeProvider + Send + Sync>) -> KbsBackend {
        KbsBackend { client, tee }
    }
}

impl std::fmt::Debug for KbsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsBackend")
            .field("client", &self.client)
            .field("tee", &self.tee.name())
            .finish()
    }
}

impl Backend for KbsBackend {
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, BackendError> {
        self.tee
            .report(report_data)
            .map(|evidence| evidence.report)
            .map_err(|e| BackendError::Other(format!("{}: {e}", self.tee.name())))
    }

    fn release(&self, kid: &str) -> Result<Vec<u8>, BackendError> {
        let tee: &dyn TeeProvider = self.tee.as_ref();
        Ok(self.client.get_resource(kid, tee)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> u16 {
        BackendError::from(ClientError::Status {
            endpoint: "resource",
            status,
            detail: String::new(),
        })
        .status()
    }

    #[test]
    fn client_errors_map_to_statuses() {
        assert_eq!(status(401), 403);
        assert_eq!(status(403), 403);
        assert_eq!(status(404), 404);
        assert_eq!(status(400), 500);
        assert_eq!(status(500), 502);
        assert_eq!(status(503), 502);
        let transport = ClientError::Transport {
            endpoint: "auth",
            reason: "connection refused".into(),
        };
        assert_eq!(BackendError::from(transport).status(), 502);
        assert_eq!(
            BackendError::from(ClientError::Protocol("x".into())).status(),
            502
        );
        assert_eq!(BackendError::from(ClientError::Crypto("x")).status(), 500);
        assert_eq!(
            BackendError::from(ClientError::Path("a/b".into())).status(),
            404
        );
    }
}
