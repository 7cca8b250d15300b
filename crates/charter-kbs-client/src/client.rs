//! The blocking HTTPS exchange: `POST /kbs/v0/auth`, `POST /kbs/v0/attest`,
//! `GET /kbs/v0/resource/<repo>/<type>/<tag>`.

use std::sync::Arc;
use std::time::Duration;

use charter_attest::TeeProvider;
use kbs_types::{Attestation, Challenge, CompositeEvidence, Request, RuntimeData, Tee};
use serde::Deserialize;
use serde_json::json;
use ureq::http::Response;
use ureq::Body;

use crate::keys::{KeyAlgorithm, TeeKeyPair};
use crate::{binding, Error, Result, KBS_PROTOCOL_VERSION, MAX_RESPONSE_BYTES, SESSION_COOKIE};

/// A resource path `repository/type/tag`, each segment of `[A-Za-z0-9._-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath(String);

impl ResourcePath {
    /// Validate a path.
    pub fn parse(path: &str) -> Result<ResourcePath> {
        let segments: Vec<&str> = path.split('/').collect();
        let ok = segments.len() == 3
            && segments.iter().all(|s| {
                !s.is_empty()
                    && s.len() <= 128
                    && *s != "."
                    && *s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if ok {
            Ok(ResourcePath(path.to_owned()))
        } else {
            Err(Error::Path(path.to_owned()))
        }
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blocking KBS client for one broker.
#[derive(Debug)]
pub struct KbsClient {
    agent: ureq::Agent,
    base: String,
    key_algorithm: KeyAlgorithm,
}

/// An attested session: the session cookie, the attestation token and the key the broker
/// wraps resources to.
#[derive(Debug)]
pub struct AttestedSession {
    cookie: String,
    token: String,
    key: TeeKeyPair,
}

impl AttestedSession {
    /// The session id (value of the `kbs-session-id` cookie).
    pub fn session_id(&self) -> &str {
        &self.cookie
    }
    /// The attestation token the broker returned (usable as `Authorization: Bearer`).
    pub fn token(&self) -> &str {
        &self.token
    }
    /// The ephemeral key pair bound into the evidence.
    pub fn key(&self) -> &TeeKeyPair {
        &self.key
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

impl KbsClient {
    /// A client for `url` (`https://host:port`) trusting only the certificates in `ca_pem`.
    pub fn new(url: &str, ca_pem: &[u8]) -> Result<KbsClient> {
        KbsClient::build(url, ca_pem, None)
    }

    /// Like [`KbsClient::new`], but every connection goes to the unix socket `relay` (a byte
    /// relay the host provides to the broker's address) instead of resolving and dialing the
    /// URL's host. TLS stays end to end: the certificate is checked against `ca_pem` for the
    /// URL's host name.
    pub fn via_relay(url: &str, ca_pem: &[u8], relay: &std::path::Path) -> Result<KbsClient> {
        KbsClient::build(url, ca_pem, Some(relay.to_path_buf()))
    }

    fn build(url: &str, ca_pem: &[u8], relay: Option<std::path::PathBuf>) -> Result<KbsClient> {
        let base = url.trim_end_matches('/');
        let rest = base
            .strip_prefix("https://")
            .ok_or_else(|| Error::Url(url.to_owned()))?;
        if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(Error::Url(url.to_owned()));
        }
        let certs = ureq::tls::parse_pem(ca_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(Error::Ca("no PEM certificate".into()));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(true)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(concat!("charter-kbs-client/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        let agent = match relay {
            None => ureq::Agent::new_with_config(config),
            Some(path) => {
                use ureq::unversioned::transport::{Connector as _, RustlsConnector};
                let connector =
                    ().chain(crate::relay::UnixRelayConnector { path })
                        .chain(RustlsConnector::default());
                ureq::Agent::with_parts(config, connector, crate::relay::NoResolver)
            }
        };
        Ok(KbsClient {
            agent,
            base: base.to_owned(),
            key_algorithm: KeyAlgorithm::default(),
        })
    }

    /// Use another ephemeral key algorithm (default P-256 `ECDH-ES+A256KW`).
    pub fn with_key_algorithm(mut self, alg: KeyAlgorithm) -> KbsClient {
        self.key_algorithm = alg;
        self
    }

    /// Attest with `tee`, then fetch and decrypt the resource at `path`
    /// (`repository/type/tag`).
    pub fn get_resource(&self, path: &str, tee: &dyn TeeProvider) -> Result<Vec<u8>> {
        let path = ResourcePath::parse(path)?;
        let session = self.attest(tee)?;
        self.fetch(&session, &path)
    }

    /// `auth` then `attest`: a fresh key pair, REPORT_DATA binding the challenge nonce and
    /// the key, evidence from `tee`.
    pub fn attest(&self, tee: &dyn TeeProvider) -> Result<AttestedSession> {
        let request = Request {
            version: KBS_PROTOCOL_VERSION.to_owned(),
            tee: Tee::Snp,
            extra_params: json!({ "supported-hash-algorithms": [binding::HASH_ALGORITHM] }),
        };
        let body = serde_json::to_vec(&request).map_err(|e| Error::Protocol(e.to_string()))?;
        let mut resp = self.post("auth", "/kbs/v0/auth", None, body)?;
        let cookie = session_cookie(&resp)
            .ok_or_else(|| Error::Protocol(format!("auth: no {SESSION_COOKIE} cookie")))?;
        let challenge: Challenge = read_json("auth", &mut resp)?;
        if let Some(alg) = challenge.extra_params.get("selected-hash-algorithm") {
            if alg.as_str() != Some(binding::HASH_ALGORITHM) {
                return Err(Error::Protocol(format!(
                    "broker selected hash algorithm {alg}, only {} is supported",
                    binding::HASH_ALGORITHM
                )));
            }
        }

        let key = TeeKeyPair::generate(self.key_algorithm)?;
        let additional_evidence = String::new();
        let report_data =
            binding::report_data(&challenge.nonce, key.public_key(), &additional_evidence)?;
        let evidence = tee.report(report_data)?;
        let primary_evidence: serde_json::Value = serde_json::from_str(&evidence.to_json())
            .map_err(|e| Error::Protocol(format!("evidence json: {e}")))?;
        let attestation = Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey: key.public_key().clone(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence,
            },
        };
        let body = serde_json::to_vec(&attestation).map_err(|e| Error::Protocol(e.to_string()))?;
        let mut resp = self.post("attest", "/kbs/v0/attest", Some(&cookie), body)?;
        let token: TokenResponse = read_json("attest", &mut resp)?;
        Ok(AttestedSession {
            cookie,
            token: token.token,
            key,
        })
    }

    /// `GET /kbs/v0/resource/<path>` with the session cookie; decrypts the JWE.
    pub fn fetch(&self, session: &AttestedSession, path: &ResourcePath) -> Result<Vec<u8>> {
        let url = format!("{}/kbs/v0/resource/{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("Cookie", format!("{SESSION_COOKIE}={}", session.cookie))
            .call()
            .map_err(|e| transport("resource", e))?;
        check("resource", &mut resp)?;
        let body = read_body("resource", &mut resp)?;
        session.key.decrypt(&body)
    }

    fn post(
        &self,
        endpoint: &'static str,
        path: &str,
        cookie: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Response<Body>> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("{SESSION_COOKIE}={c}"));
        }
        let mut resp = req.send(&body[..]).map_err(|e| transport(endpoint, e))?;
        check(endpoint, &mut resp)?;
        Ok(resp)
    }
}

fn transport(endpoint: &'static str, e: ureq::Error) -> Error {
    Error::Transport {
        endpoint,
        reason: e.to_string(),
    }
}

fn check(endpoint: &'static str, resp: &mut Response<Body>) -> Result<()> {
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let detail = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .ok()
        .and_then(|b| serde_json::from_slice::<kbs_types::ErrorInformation>(&b).ok())
        .map(|e| e.detail)
        .unwrap_or_default();
    Err(Error::Status {
        endpoint,
        status,
        detail,
    })
}

fn read_body(endpoint: &'static str, resp: &mut Response<Body>) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| transport(endpoint, e))
}

fn read_json<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    resp: &mut Response<Body>,
) -> Result<T> {
    let body = read_body(endpoint, resp)?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("{endpoint}: {e}")))
}

fn session_cookie(resp: &Response<Body>) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let value = first.strip_prefix(SESSION_COOKIE)?.strip_prefix('=')?;
            (!value.is_empty()).then(|| value.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths() {
        assert!(ResourcePath::parse("default/key/one").is_ok());
        for bad in ["a/b", "a/b/c/d", "a/../c", "a//c", "a/b/c d", "/a/b"] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(KbsClient::new("http://x", b"").is_err());
        assert!(KbsClient::new("https://x/path", b"").is_err());
        assert!(matches!(
            KbsClient::new("https://x:1", b"nope"),
            Err(Error::Ca(_))
        ));
    }
}
