//! A blocking client for the pull side of the OCI distribution API, with anonymous, basic and
//! bearer-token auth. Every response is untrusted: callers bound what they read and check
//! digests.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{Response, StatusCode};
use ureq::Body;

use super::auth::{self, Basic, Challenge};
use super::{Reference, RegistryOptions};
use crate::image::{parse_json, read_limited};
use crate::{Error, Sha256Digest};

/// Largest token response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// A connection to one repository of one registry.
pub(crate) struct Client {
    agent: ureq::Agent,
    /// The registry as docker names it (for messages and credentials).
    registry: String,
    /// `https://host[:port]` or, for insecure hosts, `http://...`.
    base: String,
    repository: String,
    insecure: bool,
    basic: Option<Basic>,
    /// The `Authorization` value that last worked (or was obtained), if any.
    authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(reference: &Reference, options: &RegistryOptions) -> Result<Self, Error> {
        let insecure = options
            .insecure_hosts
            .iter()
            .any(|h| h == &reference.registry || h == reference.api_host());
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Malformed(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(Error::Malformed(format!(
                    "{}: no PEM certificate",
                    ca.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .https_only(!insecure)
                .max_redirects(8)
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(120)))
                .user_agent(concat!("charter/", env!("CARGO_PKG_VERSION")))
                .tls_config(tls.build())
                .build(),
        );
        let scheme = if insecure { "http" } else { "https" };
        Ok(Self {
            agent,
            registry: reference.registry.clone(),
            base: format!("{scheme}://{}", reference.api_host()),
            repository: reference.repository.clone(),
            insecure,
            basic: auth::lookup(&options.credentials, &reference.registry)?,
            authorization: Mutex::new(None),
        })
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    /// `GET /v2/<repository>/manifests/<reference>`; `None` on 404.
    pub(crate) fn manifest(
        &self,
        reference: &str,
        accept: &str,
    ) -> Result<Option<Response<Body>>, Error> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        self.get(&url, Some(accept), &format!("manifest {reference}"))
    }

    /// `GET /v2/<repository>/blobs/<digest>` (redirects followed, without credentials);
    /// `None` on 404.
    pub(crate) fn blob(&self, digest: &Sha256Digest) -> Result<Option<Response<Body>>, Error> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        self.get(&url, None, &format!("blob {digest}"))
    }

    /// A GET that answers one auth challenge, then maps statuses to errors.
    fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Option<Response<Body>>, Error> {
        let mut retried = false;
        loop {
            let current = self
                .authorization
                .lock()
                .map_err(|_| self.failure(what, "auth state poisoned".into()))?
                .clone();
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(auth) = &current {
                req = req.header("Authorization", auth);
            }
            let resp = req.call().map_err(|e| self.failure(what, e.to_string()))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                let challenge = resp
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(Challenge::parse)
                    .find(|c| c.scheme == "bearer" || c.scheme == "basic");
                let next = match challenge {
                    Some(c) if c.scheme == "bearer" => Some(self.token(&c)?),
                    Some(_) => self.basic.as_ref().map(Basic::header),
                    None => None,
                };
                match next {
                    Some(auth) if Some(&auth) != current.as_ref() => {
                        *self
                            .authorization
                            .lock()
                            .map_err(|_| self.failure(what, "auth state poisoned".into()))? =
                            Some(auth);
                        continue;
                    }
                    _ => return Err(self.auth_error()),
                }
            }
            return match status {
                s if s.is_success() => Ok(Some(resp)),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.auth_error()),
                StatusCode::NOT_FOUND => Ok(None),
                s => Err(self.failure(what, format!("HTTP {s}"))),
            };
        }
    }

    /// Runs the token flow for a bearer challenge and returns the `Authorization` value.
    fn token(&self, challenge: &Challenge) -> Result<String, Error> {
        let what = "token request";
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| self.failure(what, "bearer challenge without realm".into()))?;
        let realm_ok =
            realm.starts_with("https://") || (self.insecure && realm.starts_with("http://"));
        if !realm_ok {
            return Err(self.failure(what, format!("refusing token realm {realm:?} (not https)")));
        }
        let scope = challenge
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let mut url = realm.clone();
        url.push(if realm.contains('?') { '&' } else { '?' });
        if let Some(service) = challenge.params.get("service") {
            url.push_str("service=");
            url.push_str(&percent_encode(service));
            url.push('&');
        }
        url.push_str("scope=");
        url.push_str(&percent_encode(&scope));
        let mut req = self.agent.get(&url);
        if let Some(b) = &self.basic {
            req = req.header("Authorization", b.header());
        }
        let resp = req.call().map_err(|e| self.failure(what, e.to_string()))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.auth_error()),
            s => return Err(self.failure(what, format!("HTTP {s}"))),
        }
        let bytes = read_limited(
            resp.into_body().into_reader(),
            &format!("{} token response", self.registry),
            MAX_TOKEN_RESPONSE,
        )?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let t: Token = parse_json(&bytes, &format!("{} token response", self.registry))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| self.failure(what, "token response without a usable token".into()))?;
        Ok(format!("Bearer {token}"))
    }

    fn auth_error(&self) -> Error {
        Error::RegistryAuth {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        }
    }

    pub(crate) fn failure(&self, what: &str, detail: String) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: what.to_owned(),
            detail,
        }
    }
}

/// Reads a whole response body of at most `limit` bytes.
pub(crate) fn read_body(resp: Response<Body>, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
    if let Some(len) = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                size: len,
                limit,
            });
        }
    }
    read_limited(resp.into_body().into_reader(), what, limit)
}

/// A streaming body as a plain reader.
pub(crate) fn body_reader(resp: Response<Body>) -> impl Read + Send + 'static {
    resp.into_body().into_reader()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encodes() {
        assert_eq!(
            super::percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
