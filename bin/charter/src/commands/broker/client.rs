//! The admin client: blocking HTTPS (ureq, rustls) to a running broker, trusting only the
//! given CA, every request carrying a short-lived Ed25519 admin token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Args;
use serde_json::Value;

/// Lifetime of the admin token minted for each command.
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Largest answer read from the broker.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// How to reach and authenticate to a running broker.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The broker: https://HOST:PORT
    #[arg(long)]
    url: String,
    /// CA certificate PEM the broker's TLS certificate must chain to (tls-ca.pem next to its db).
    #[arg(long)]
    ca: PathBuf,
    /// The admin's Ed25519 private key PEM (`charter broker keygen` writes admin.key).
    #[arg(long)]
    admin_key: PathBuf,
}

/// A connected admin: agent, base URL, admin token.
pub struct Admin {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A validated `repository/type/tag`.
pub fn resource_path(path: &str) -> Result<charter_kbs_client::ResourcePath> {
    Ok(charter_kbs_client::ResourcePath::parse(path)?)
}

/// `https://host[:port]` without path, query or fragment; returned without a trailing `/`.
fn base_url(url: &str) -> Result<String> {
    let base = url.trim_end_matches('/');
    let ok = base.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@'])
            && !rest.contains(char::is_whitespace)
    });
    if !ok {
        bail!("--url {url:?}: expected https://HOST[:PORT] without a path");
    }
    Ok(base.to_owned())
}

impl AdminArgs {
    /// Check the URL, load the CA and the admin key, mint a token.
    pub fn connect(&self) -> Result<Admin> {
        let base = base_url(&self.url)?;
        let ca = std::fs::read(&self.ca)
            .with_context(|| format!("reading CA certificate {}", self.ca.display()))?;
        let certs = ureq::tls::parse_pem(&ca)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("CA certificate {}", self.ca.display()))?;
        if certs.is_empty() {
            bail!(
                "CA certificate {}: no PEM CERTIFICATE in it",
                self.ca.display()
            );
        }
        let key_pem = std::fs::read_to_string(&self.admin_key)
            .with_context(|| format!("reading admin key {}", self.admin_key.display()))?;
        let key = charter_broker::jwt::admin_key_from_pem(&key_pem)
            .with_context(|| format!("admin key {}", self.admin_key.display()))?;
        let token = charter_broker::jwt::admin_token(&key, TOKEN_TTL).context("admin token")?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .https_only(true)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(60)))
                .user_agent(concat!("charter/", env!("CARGO_PKG_VERSION")))
                .tls_config(tls)
                .build(),
        );
        Ok(Admin { agent, base, token })
    }
}

impl Admin {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// POST `body` to `path`; any answer but 200 is an error naming the URL and status.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<()> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("Authorization", self.bearer())
            .content_type("application/octet-stream")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        answer("POST", &url, resp).map(drop)
    }

    /// GET `path` as JSON; any answer but 200 is an error naming the URL and status.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .get(&url)
            .header("Authorization", self.bearer())
            .call()
            .with_context(|| format!("GET {url}"))?;
        let body = answer("GET", &url, resp)?;
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: answer is not JSON"))
    }

    /// Set a release policy (the default one without `resource`).
    pub fn set_policy(
        &self,
        resource: Option<&charter_kbs_client::ResourcePath>,
        rego: &str,
    ) -> Result<()> {
        let body = serde_json::json!({ "policy": URL_SAFE_NO_PAD.encode(rego) });
        self.post(&policy_endpoint(resource), body.to_string().as_bytes())
    }

    /// Read a release policy (the default one without `resource`).
    pub fn get_policy(
        &self,
        resource: Option<&charter_kbs_client::ResourcePath>,
    ) -> Result<String> {
        let endpoint = policy_endpoint(resource);
        let v = self.get_json(&endpoint)?;
        let b64 = v
            .get("policy")
            .and_then(Value::as_str)
            .with_context(|| format!("{}{endpoint}: answer has no \"policy\"", self.base))?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .with_context(|| format!("{}{endpoint}: policy is not base64url", self.base))?;
        String::from_utf8(raw)
            .with_context(|| format!("{}{endpoint}: policy is not UTF-8", self.base))
    }

    /// The resource paths the broker holds.
    pub fn list_resources(&self) -> Result<Vec<String>> {
        let endpoint = "/kbs/v0/admin/resources";
        let v = self.get_json(endpoint)?;
        v.get("resources")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|p| p.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .with_context(|| {
                format!(
                    "{}{endpoint}: answer is not {{\"resources\": [strings]}}",
                    self.base
                )
            })
    }
}

fn policy_endpoint(resource: Option<&charter_kbs_client::ResourcePath>) -> String {
    match resource {
        Some(p) => format!("/kbs/v0/resource-policy/{p}"),
        None => "/kbs/v0/resource-policy".to_owned(),
    }
}

/// The body of a 200 answer, or an error with the method, URL, status and the broker's detail.
fn answer(method: &str, url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec();
    if status != ureq::http::StatusCode::OK {
        let detail = body
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
            .filter(|d| !d.is_empty())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        bail!("{method} {url}: broker answered {status}{detail}");
    }
    body.with_context(|| format!("{method} {url}: reading the answer"))
}
