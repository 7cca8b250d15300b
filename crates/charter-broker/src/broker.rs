//! The KBS protocol logic, independent of HTTP: sessions and nonces, evidence verification,
//! REPORT_DATA binding, attestation tokens, release policies, JWE release, admin operations.
//!
//! Every refusal is logged with its cause (`tracing`, target `charter_broker`) and returned
//! to the caller as a coarse [`ApiError`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use charter_attest::{Evidence, RootSet, VerifiedReport, Verifier, VerifyOptions};
use charter_kbs_client::{binding, ResourcePath, KBS_PROTOCOL_VERSION};
use kbs_types::{Attestation, Challenge, Request, Response, Tee, TeePubKey};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::policy::ReleasePolicy;
use crate::store::{Store, DEFAULT_POLICY};
use crate::{jwe, jwt, ApiError, Error, Result};

/// Normalised claims (the attestation token's payload; the release policy's `input`).
pub type Claims = Value;

/// How a resource request authenticates.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The `kbs-session-id` cookie of an attested session.
    Session(String),
    /// `Authorization: Bearer <attestation token>`.
    Bearer(String),
}

/// Broker settings that are not about the transport.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Lifetime of a session (challenge to last use), refreshed on attestation.
    pub session_ttl: Duration,
    /// Lifetime of attestation tokens.
    pub token_ttl: Duration,
    /// Accept evidence from the INSECURE simulated AMD-SP (needs the root below).
    pub insecure_allow_simulated: bool,
    /// The simulator's ARK+ASK PEM.
    pub insecure_simulated_root_pem: Option<String>,
    /// The admin's Ed25519 public key (`PUBLIC KEY` PEM).
    pub admin_public_key_pem: String,
}

impl BrokerOptions {
    /// Defaults: 5-minute sessions and tokens, no simulated evidence.
    pub fn new(admin_public_key_pem: impl Into<String>) -> BrokerOptions {
        BrokerOptions {
            session_ttl: Duration::from_secs(300),
            token_ttl: Duration::from_secs(300),
            insecure_allow_simulated: false,
            insecure_simulated_root_pem: None,
            admin_public_key_pem: admin_public_key_pem.into(),
        }
    }
}

enum State {
    Pending { nonce: String },
    Consumed,
    Attested { claims: Arc<Claims>, key: TeePubKey },
}

struct Session {
    expires: Instant,
    state: State,
}

/// Upper bound on live sessions (beyond it, expired ones are purged, then new ones refused).
pub const MAX_SESSIONS: usize = 100_000;

/// The broker.
pub struct Broker {
    store: Arc<Store>,
    verifier: Verifier,
    verify_opts: VerifyOptions,
    sessions: Mutex<HashMap<String, Session>>,
    policies: Mutex<HashMap<String, Option<Arc<ReleasePolicy>>>>,
    session_ttl: Duration,
    token_ttl: Duration,
    token_key: Ed25519KeyPair,
    token_public: Vec<u8>,
    admin_public: [u8; 32],
    rng: SystemRandom,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store)
            .field(
                "insecure_allow_simulated",
                &self.verify_opts.insecure_allow_simulated,
            )
            .finish_non_exhaustive()
    }
}

fn log_deny(what: &str, e: &dyn std::fmt::Display, out: ApiError) -> ApiError {
    warn!(target: "charter_broker", "{what}: {e}");
    out
}

impl Broker {
    /// A broker over `store`.
    pub fn new(store: Arc<Store>, opts: &BrokerOptions) -> Result<Broker> {
        let mut verifier = Verifier::new().map_err(|e| Error::Config(format!("amd roots: {e}")))?;
        if opts.insecure_allow_simulated {
            let pem = opts.insecure_simulated_root_pem.as_deref().ok_or_else(|| {
                Error::Config("insecure_allow_simulated needs the simulator's root PEM".into())
            })?;
            let root = RootSet::insecure_simulated_pem(pem)
                .map_err(|e| Error::Config(format!("insecure simulated root: {e}")))?;
            warn!(target: "charter_broker", "INSECURE: accepting simulated SNP evidence");
            verifier = verifier.with_insecure_simulated_root(root);
        }
        let token_key = Ed25519KeyPair::generate().map_err(|_| Error::Crypto("token key"))?;
        let token_public = token_key.public_key().as_ref().to_vec();
        Ok(Broker {
            store,
            verifier,
            verify_opts: VerifyOptions {
                // The release policy decides about debug guests (policy_new refuses them by
                // default); the verifier still checks signatures, chain, TCB consistency.
                allow_debug: true,
                insecure_allow_simulated: opts.insecure_allow_simulated,
                ..VerifyOptions::default()
            },
            sessions: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            session_ttl: opts.session_ttl,
            token_ttl: opts.token_ttl,
            token_key,
            token_public,
            admin_public: jwt::ed25519_public_key_from_pem(&opts.admin_public_key_pem)?,
            rng: SystemRandom::new(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The raw Ed25519 key that verifies this broker's attestation tokens.
    pub fn token_public_key(&self) -> &[u8] {
        &self.token_public
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn random(&self, n: usize) -> Result<Vec<u8>, ApiError> {
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b).map_err(|_| ApiError::Internal)?;
        Ok(b)
    }

    /// `POST /auth`: a new session and its challenge.
    pub fn auth(&self, body: &[u8]) -> Result<(String, Challenge), ApiError> {
        let req: Request = serde_json::from_slice(body)
            .map_err(|e| log_deny("auth: request", &e, ApiError::BadRequest))?;
        if req.version != KBS_PROTOCOL_VERSION {
            return Err(log_deny(
                "auth",
                &format!(
                    "protocol version {:?}, only {KBS_PROTOCOL_VERSION}",
                    req.version
                ),
                ApiError::BadRequest,
            ));
        }
        if req.tee != Tee::Snp {
            return Err(log_deny(
                "auth",
                &format!("tee {}, only snp", req.tee),
                ApiError::BadRequest,
            ));
        }
        if let Some(list) = req
            .extra_params
            .get("supported-hash-algorithms")
            .and_then(Value::as_array)
        {
            if !list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(binding::HASH_ALGORITHM))
            }) {
                return Err(log_deny(
                    "auth",
                    &"client does not support sha384",
                    ApiError::BadRequest,
                ));
            }
        }
        let id = hex::encode(self.random(16)?);
        let nonce = B64.encode(self.random(32)?);
        let now = Instant::now();
        {
            let mut s = self.sessions();
            if s.len() >= MAX_SESSIONS / 2 {
                s.retain(|_, v| v.expires > now);
            }
            if s.len() >= MAX_SESSIONS {
                return Err(log_deny("auth", &"session table full", ApiError::Internal));
            }
            s.insert(
                id.clone(),
                Session {
                    expires: now + self.session_ttl,
                    state: State::Pending {
                        nonce: nonce.clone(),
                    },
                },
            );
        }
        Ok((
            id,
            Challenge {
                nonce,
                extra_params: json!({"selected-hash-algorithm": binding::HASH_ALGORITHM}),
            },
        ))
    }

    /// `POST /attest` in session `session_id`: verify, bind, issue the token.
    pub fn attest(&self, session_id: &str, body: &[u8]) -> Result<String, ApiError> {
        let att: Attestation = serde_json::from_slice(body)
            .map_err(|e| log_deny("attest: body", &e, ApiError::BadRequest))?;
        // The nonce is single-use: whatever happens next, this session's challenge is spent.
        let nonce = {
            let mut s = self.sessions();
            let now = Instant::now();
            let session = match s.get_mut(session_id) {
                Some(v) if v.expires > now => v,
                Some(_) => {
                    s.remove(session_id);
                    return Err(log_deny(
                        "attest",
                        &"session expired",
                        ApiError::Unauthorized,
                    ));
                }
                None => {
                    return Err(log_deny(
                        "attest",
                        &"unknown session",
                        ApiError::Unauthorized,
                    ))
                }
            };
            match std::mem::replace(&mut session.state, State::Consumed) {
                State::Pending { nonce } => nonce,
                other => {
                    session.state = other;
                    return Err(log_deny(
                        "attest",
                        &"challenge already used (replay)",
                        ApiError::AttestationFailed,
                    ));
                }
            }
        };
        let (claims, key) = self
            .verify_attestation(&nonce, &att)
            .map_err(|e| log_deny("attest", &e, ApiError::AttestationFailed))?;
        let now = jwt::now();
        let mut payload = claims;
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("iss".into(), json!("charter-broker"));
            obj.insert("iat".into(), json!(now));
            obj.insert(
                "exp".into(),
                json!(now.saturating_add(self.token_ttl.as_secs())),
            );
            obj.insert("jti".into(), json!(session_id));
            obj.insert(
                "tee-pubkey".into(),
                serde_json::to_value(&key).map_err(|_| ApiError::Internal)?,
            );
        }
        let token = jwt::sign(&self.token_key, &payload)
            .map_err(|e| log_deny("attest: token", &e, ApiError::Internal))?;
        info!(target: "charter_broker",
            "attested session {session_id}: platform {} host_data {}",
            payload.get("platform").unwrap_or(&serde_json::Value::Null),
            payload.get("host_data").unwrap_or(&serde_json::Value::Null));
        let mut s = self.sessions();
        if let Some(session) = s.get_mut(session_id) {
            session.expires = Instant::now() + self.session_ttl;
            session.state = State::Attested {
                claims: Arc::new(payload),
                key,
            };
        }
        Ok(token)
    }

    fn verify_attestation(&self, nonce: &str, att: &Attestation) -> Result<(Claims, TeePubKey)> {
        if att.runtime_data.nonce != nonce {
            return Err(Error::Attestation(
                "runtime-data nonce is not the session's challenge".into(),
            ));
        }
        if att.init_data.is_some() {
            return Err(Error::Attestation(
                "init-data is not supported (HOST_DATA carries the policy digest)".into(),
            ));
        }
        if !att.tee_evidence.additional_evidence.is_empty() {
            return Err(Error::Attestation(
                "additional (device) evidence is not supported".into(),
            ));
        }
        let key = &att.runtime_data.tee_pubkey;
        jwe::check_key(key)?;
        let expected = binding::report_data(nonce, key, &att.tee_evidence.additional_evidence)
            .map_err(|e| Error::Attestation(e.to_string()))?;
        let raw = serde_json::to_vec(&att.tee_evidence.primary_evidence)
            .map_err(|e| Error::Attestation(e.to_string()))?;
        let evidence =
            Evidence::from_json(&raw).map_err(|e| Error::Attestation(format!("evidence: {e}")))?;
        let verified = self
            .verifier
            .verify_evidence(&evidence, &self.verify_opts)
            .map_err(|e| Error::Attestation(format!("verification: {e}")))?;
        if verified.report().report_data() != &expected {
            return Err(Error::Attestation(
                "REPORT_DATA does not bind the nonce and tee-pubkey".into(),
            ));
        }
        Ok((normalise(&verified), key.clone()))
    }

    fn credential_claims(&self, cred: &Credential) -> Result<(Arc<Claims>, TeePubKey), ApiError> {
        match cred {
            Credential::Session(id) => {
                let mut s = self.sessions();
                match s.get(id) {
                    Some(v) if v.expires <= Instant::now() => {
                        s.remove(id);
                        Err(log_deny(
                            "resource",
                            &"session expired",
                            ApiError::Unauthorized,
                        ))
                    }
                    Some(Session {
                        state: State::Attested { claims, key },
                        ..
                    }) => Ok((Arc::clone(claims), key.clone())),
                    Some(_) => Err(log_deny(
                        "resource",
                        &"session not attested",
                        ApiError::Unauthorized,
                    )),
                    None => Err(log_deny(
                        "resource",
                        &"unknown session",
                        ApiError::Unauthorized,
                    )),
                }
            }
            Credential::Bearer(token) => {
                let claims = jwt::verify(&self.token_public, token, None)
                    .map_err(|e| log_deny("resource: bearer", &e, ApiError::Unauthorized))?;
                let key: TeePubKey = claims
                    .get("tee-pubkey")
                    .cloned()
                    .and_then(|k| serde_json::from_value(k).ok())
                    .ok_or_else(|| {
                        log_deny(
                            "resource",
                            &"token has no tee-pubkey",
                            ApiError::Unauthorized,
                        )
                    })?;
                Ok((Arc::new(claims), key))
            }
        }
    }

    fn policy_for(&self, path: &str) -> Result<Option<Arc<ReleasePolicy>>> {
        if let Some(p) = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return Ok(p.clone());
        }
        let text = match self.store.get_policy(path)? {
            Some(t) => Some(t),
            None => self.store.get_policy(DEFAULT_POLICY)?,
        };
        let compiled = text
            .map(|t| ReleasePolicy::compile(&t).map(Arc::new))
            .transpose()?;
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// `GET /resource/<path>`: the resource as a JWE to the attested key, if the policy
    /// allows.
    pub fn resource(&self, cred: &Credential, path: &str) -> Result<Response, ApiError> {
        let (claims, key) = self.credential_claims(cred)?;
        let path =
            ResourcePath::parse(path).map_err(|e| log_deny("resource", &e, ApiError::NotFound))?;
        let value = self
            .store
            .get_resource(path.as_str())
            .map_err(|e| log_deny("resource: store", &e, ApiError::Internal))?
            .ok_or_else(|| {
                log_deny(
                    "resource",
                    &format!("{path}: no such resource"),
                    ApiError::NotFound,
                )
            })?;
        let policy = self
            .policy_for(path.as_str())
            .map_err(|e| log_deny("resource: policy", &e, ApiError::Internal))?
            .ok_or_else(|| {
                log_deny(
                    "resource",
                    &format!("{path}: no release policy"),
                    ApiError::PolicyDeny,
                )
            })?;
        let allowed = policy
            .allows(&claims, path.as_str())
            .map_err(|e| log_deny("resource: policy evaluation", &e, ApiError::PolicyDeny))?;
        if !allowed {
            return Err(log_deny(
                "resource",
                &format!(
                    "{path}: release policy denied host_data {}",
                    claims.get("host_data").unwrap_or(&serde_json::Value::Null)
                ),
                ApiError::PolicyDeny,
            ));
        }
        let out = jwe::encrypt(&key, &value)
            .map_err(|e| log_deny("resource: jwe", &e, ApiError::Internal))?;
        info!(target: "charter_broker", "released {path}");
        Ok(out)
    }

    /// Check an admin `Authorization: Bearer` token.
    pub fn check_admin(&self, bearer: Option<&str>) -> Result<(), ApiError> {
        let token =
            bearer.ok_or_else(|| log_deny("admin", &"no bearer token", ApiError::Unauthorized))?;
        jwt::verify(&self.admin_public, token, Some(jwt::MAX_ADMIN_TOKEN_TTL))
            .map_err(|e| log_deny("admin", &e, ApiError::Unauthorized))?;
        Ok(())
    }

    /// Admin: store a resource (durable when this returns).
    pub fn set_resource(&self, path: &str, value: &[u8]) -> Result<(), ApiError> {
        let path =
            ResourcePath::parse(path).map_err(|e| log_deny("admin", &e, ApiError::BadRequest))?;
        self.store
            .put_resource(path.as_str(), value)
            .map_err(|e| log_deny("admin: store", &e, ApiError::Internal))
    }

    /// Admin: set the release policy of `path` (`None`: the default policy). The policy must
    /// compile.
    pub fn set_policy(&self, path: Option<&str>, rego: &str) -> Result<(), ApiError> {
        let key = match path {
            Some(p) => ResourcePath::parse(p)
                .map_err(|e| log_deny("admin", &e, ApiError::BadRequest))?
                .as_str()
                .to_owned(),
            None => DEFAULT_POLICY.to_owned(),
        };
        ReleasePolicy::compile(rego)
            .map_err(|e| log_deny("admin: policy", &e, ApiError::BadRequest))?;
        self.store
            .put_policy(&key, rego)
            .map_err(|e| log_deny("admin: store", &e, ApiError::Internal))?;
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    /// Admin: the policy stored for `path` (`None`: the default).
    pub fn get_policy(&self, path: Option<&str>) -> Result<Option<String>, ApiError> {
        self.store
            .get_policy(path.unwrap_or(DEFAULT_POLICY))
            .map_err(|e| log_deny("admin: store", &e, ApiError::Internal))
    }

    /// Admin: resource paths.
    pub fn list_resources(&self) -> Result<Vec<String>, ApiError> {
        self.store
            .list_resources()
            .map_err(|e| log_deny("admin: store", &e, ApiError::Internal))
    }
}

/// The normalised claims of a verified report (the policy `input`, the token payload).
pub fn normalise(v: &VerifiedReport) -> Claims {
    let c = v.claims();
    let r = &c.report;
    json!({
        "tee": "snp",
        "platform": c.platform,
        "product": c.product,
        "signing_key": c.signing_key,
        "host_data": hex::encode(r.host_data),
        "measurement": hex::encode(r.measurement),
        "report_data": hex::encode(r.report_data),
        "debug": r.policy.debug,
        "migrate_ma": r.policy.migrate_ma,
        "smt": r.policy.smt,
        "single_socket": r.policy.single_socket,
        "guest_policy": r.policy.raw,
        "abi_major": r.policy.abi_major,
        "abi_minor": r.policy.abi_minor,
        "vmpl": r.vmpl,
        "guest_svn": r.guest_svn,
        "report_version": r.version,
        "family_id": hex::encode(r.family_id),
        "image_id": hex::encode(r.image_id),
        "id_key_digest": hex::encode(r.id_key_digest),
        "author_key_digest": hex::encode(r.author_key_digest),
        "report_id": hex::encode(r.report_id),
        "chip_id": hex::encode(r.chip_id),
        "tcb": r.reported_tcb.decoded,
        "committed_tcb": r.committed_tcb.decoded,
        "launch_tcb": r.launch_tcb.decoded,
    })
}
