//! The workload key-release endpoint (the ACI secure key release sidecar's HTTP API) on
//! 127.0.0.1:8080 in the group's network namespace, served when the policy enables it: raw
//! reports from the agent's own TEE, keys from the policy's broker.

use std::net::TcpListener;
use std::sync::Arc;

use charter_skr::{Backend, BackendError};

use crate::keys::Broker;

/// Where the endpoint listens (the sidecar's default port).
pub(crate) const ADDR: &str = "127.0.0.1:8080";

struct AgentBackend(Arc<Broker>);

impl Backend for AgentBackend {
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, BackendError> {
        self.0
            .tee()
            .report(report_data)
            .map(|e| e.report)
            .map_err(|e| BackendError::Other(e.to_string()))
    }

    fn release(&self, kid: &str) -> Result<Vec<u8>, BackendError> {
        self.0.fetch(kid).map_err(BackendError::from)
    }
}

/// Binds the endpoint and serves it on its own threads for the agent's lifetime.
pub(crate) fn start(broker: Arc<Broker>) -> Result<(), String> {
    let listener = TcpListener::bind(ADDR).map_err(|e| format!("{ADDR}: {e}"))?;
    drop(charter_skr::serve(listener, Arc::new(AgentBackend(broker))));
    Ok(())
}
