//! The key broker the policy names, reached from inside the group: through the host's byte
//! relay (`/host/broker.sock`) when the host offers one, directly otherwise. Either way TLS
//! ends here, checked against the CA in the attested policy, so the host can refuse service
//! but cannot see or substitute a key.

use std::path::Path;
use std::sync::Arc;

use charter_agent_api::paths;
use charter_attest::TeeProvider;
use charter_kbs_client::KbsClient;
use charter_policy::model::KeyBroker;

/// A broker client bound to this agent's TEE.
pub(crate) struct Broker {
    client: KbsClient,
    tee: Arc<dyn TeeProvider + Send + Sync>,
    url: String,
}

impl Broker {
    /// The broker of `kb`, through `host_dir`'s relay if there is one.
    pub fn new(
        kb: &KeyBroker,
        host_dir: &Path,
        tee: Arc<dyn TeeProvider + Send + Sync>,
    ) -> Result<Broker, String> {
        let relay = host_dir.join(paths::BROKER_RELAY);
        let client = if relay.exists() {
            KbsClient::via_relay(&kb.url, kb.ca_pem.as_bytes(), &relay)
        } else {
            KbsClient::new(&kb.url, kb.ca_pem.as_bytes())
        }
        .map_err(|e| format!("key broker of the policy: {e}"))?;
        Ok(Broker {
            client,
            tee,
            url: kb.url.clone(),
        })
    }

    /// Attests and fetches the resource `path` (`repository/type/tag`).
    pub fn fetch(&self, path: &str) -> Result<Vec<u8>, charter_kbs_client::Error> {
        self.client.get_resource(path, &*self.tee)
    }

    /// The broker URL (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The agent's TEE (the workload endpoint's raw reports).
    pub fn tee(&self) -> &(dyn TeeProvider + Send + Sync) {
        &*self.tee
    }
}
