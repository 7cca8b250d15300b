//! charter's key broker: the trustee KBS attestation protocol 0.4.0 over HTTPS.
//!
//! * [`server`]: configuration, TLS (rustls), routes (`/kbs/v0/auth`, `/attest`,
//!   `/resource/<repo>/<type>/<tag>`, admin `/resource`, `/resource-policy`), sessions.
//! * [`broker`]: the protocol logic without HTTP ([`Broker`]): challenge, evidence
//!   verification with `charter-attest`, REPORT_DATA binding, tokens, policy, release.
//! * [`store`]: one SQLite file, resources sealed with AES-256-GCM under a master key.
//! * [`policy`]: Rego release policies over the normalised claims ([`policy_new`]).
//! * [`jwe`]: resources wrapped to the TEE key (`ECDH-ES+A256KW` or `RSA-OAEP-256`, `A256GCM`).
//! * [`jwt`]: EdDSA JWTs (attestation tokens, admin tokens) and the admin key helpers.
//!
//! Simulated SNP evidence is accepted only with [`Config::insecure_allow_simulated`] and the
//! simulator's root; tokens then say `"platform": "insecure-simulated-snp"`.
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

pub mod broker;
pub mod error;
pub mod jwe;
pub mod jwt;
pub mod pem;
pub mod policy;
pub mod server;
pub mod store;

pub use broker::{Broker, Claims, Credential};
pub use error::{ApiError, Error, Result};
pub use policy::policy_new;
pub use server::{
    serve_until_ctrl_c, spawn, Config, MasterKeySource, RunningBroker, ServeOptions, Server,
    TlsSource,
};
pub use store::Store;
