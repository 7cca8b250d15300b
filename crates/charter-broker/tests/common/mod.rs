//! Shared test fixtures: the insecure simulated AMD-SP, admin keys, a broker on loopback.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};
use charter_broker::{jwt, spawn, Config, RunningBroker};

pub const HOST_DATA: [u8; 32] = [0x5a; 32];
pub const MEASUREMENT: [u8; 48] = [0x3c; 48];
/// SNP guest policy bit 19: DEBUG.
pub const POLICY_DEBUG: u64 = 1 << 19;

pub fn sp() -> Arc<InsecureSimulatedSp> {
    static SP: OnceLock<(tempfile::TempDir, Arc<InsecureSimulatedSp>)> = OnceLock::new();
    SP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sp = InsecureSimulatedSp::load_or_generate(dir.path()).unwrap();
        (dir, Arc::new(sp))
    })
    .1
    .clone()
}

pub fn launch() -> LaunchParams {
    LaunchParams {
        host_data: HOST_DATA,
        measurement: MEASUREMENT,
        ..LaunchParams::default()
    }
}

pub fn guest(launch: LaunchParams) -> InsecureSimulatedGuest {
    InsecureSimulatedGuest::new(sp(), launch)
}

pub struct Admin {
    pub private_pem: String,
    pub public_pem: String,
}

impl Admin {
    pub fn new() -> Admin {
        let (private_pem, public_pem) = jwt::admin_keygen().unwrap();
        Admin {
            private_pem,
            public_pem,
        }
    }
    pub fn token(&self) -> String {
        let k = jwt::admin_key_from_pem(&self.private_pem).unwrap();
        jwt::admin_token(&k, Duration::from_secs(120)).unwrap()
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub admin: Admin,
    pub broker: RunningBroker,
    pub http: ureq::Agent,
}

pub fn agent(ca_pem: &str) -> ureq::Agent {
    let certs: Vec<_> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i.unwrap() {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            )
            .build(),
    )
}

pub fn start(insecure_sim: bool, session_ttl: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::new();
    let mut config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("broker.db"),
        &admin.public_pem,
    );
    config.master_key = charter_broker::MasterKeySource::File(dir.path().join("master.key"));
    config.broker.session_ttl = session_ttl;
    if insecure_sim {
        config.broker.insecure_allow_simulated = true;
        config.broker.insecure_simulated_root_pem = Some(sp().root_pem());
    }
    let broker = spawn(config, 2).unwrap();
    let http = agent(broker.ca_pem());
    Fixture {
        dir,
        admin,
        broker,
        http,
    }
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.url())
    }

    /// Admin POST; returns the status.
    pub fn admin_post(&self, path: &str, token: &str, body: &[u8]) -> u16 {
        self.http
            .post(self.url(path))
            .header("Authorization", format!("Bearer {token}"))
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn set_resource(&self, path: &str, value: &[u8]) {
        let s = self.admin_post(
            &format!("/kbs/v0/resource/{path}"),
            &self.admin.token(),
            value,
        );
        assert_eq!(s, 200, "set resource {path}");
    }

    pub fn set_policy(&self, path: &str, rego: &str) {
        use base64::Engine as _;
        let body = serde_json::json!({
            "policy": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rego)
        });
        let s = self.admin_post(
            &format!("/kbs/v0/resource-policy/{path}"),
            &self.admin.token(),
            body.to_string().as_bytes(),
        );
        assert_eq!(s, 200, "set policy {path}");
    }

    pub fn client(&self) -> charter_kbs_client::KbsClient {
        charter_kbs_client::KbsClient::new(&self.broker.url(), self.broker.ca_pem().as_bytes())
            .unwrap()
    }
}

pub fn standard_policy() -> String {
    charter_broker::policy_new(
        &hex::encode(HOST_DATA),
        Some(&hex::encode(MEASUREMENT)),
        false,
        Some(&launch().tcb),
    )
}
