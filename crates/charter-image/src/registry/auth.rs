//! Registry credentials from a docker `config.json`, and `WWW-Authenticate` challenges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::image::{parse_json, read_limited};
use crate::Error;

/// Largest docker config file read.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Where registry credentials come from. Only `auths.<registry>` entries (`auth` as base64
/// `user:password`, or `username` and `password`) are read; credential helpers (`credsStore`,
/// `credHelpers`) are not run, so a registry served by one is pulled anonymously.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`, if it exists.
    #[default]
    DockerConfig,
    /// This docker `config.json` (it must exist).
    File(PathBuf),
    /// None: pull anonymously.
    Anonymous,
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Basic {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Basic {
    pub(crate) fn header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials `source` holds for `registry` (as docker names it), if any.
pub(crate) fn lookup(source: &Credentials, registry: &str) -> Result<Option<Basic>, Error> {
    let path = match source {
        Credentials::Anonymous => return Ok(None),
        Credentials::File(p) => p.clone(),
        Credentials::DockerConfig => match default_config_path() {
            Some(p) if p.exists() => p,
            _ => return Ok(None),
        },
    };
    from_file(&path, registry)
}

fn default_config_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("DOCKER_CONFIG")
        .map(|d| d.join("config.json"))
        .or_else(|| env("HOME").map(|h| h.join(".docker").join("config.json")))
}

fn from_file(path: &Path, registry: &str) -> Result<Option<Basic>, Error> {
    let what = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bytes = read_limited(f, &what, MAX_CONFIG_FILE)?;
    let config: DockerConfig = parse_json(&bytes, &what)?;
    let wanted = |key: &str| {
        let host = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let host = host.split('/').next().unwrap_or_default();
        host == registry
            || (registry == super::reference::DOCKER_HUB
                && matches!(host, "index.docker.io" | "registry-1.docker.io"))
    };
    let Some(entry) = config
        .auths
        .iter()
        .find_map(|(k, v)| wanted(k).then_some(v))
    else {
        return Ok(None);
    };
    let bad =
        |reason: &str| Error::Malformed(format!("{what}: auths entry for {registry}: {reason}"));
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("auth is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("auth is not user:password"))?;
        return Ok(Some(Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Basic {
            user: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// One `WWW-Authenticate` challenge: the scheme (lowercased) and its parameters (keys
/// lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer`, `basic`, ...
    pub scheme: String,
    /// `realm`, `service`, `scope`, ...
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses `Scheme key=value, key="quoted \" value", ...`; `None` when there is no scheme.
    /// Never panics; unparseable trailing parameters are dropped.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim_start();
        let end = header.find([' ', '\t']).unwrap_or(header.len());
        let scheme = header.get(..end)?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut chars = header.get(end..)?.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)) {
                key.push(c.to_ascii_lowercase());
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if key.is_empty() || chars.next() != Some('=') {
                break;
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                loop {
                    match chars.next() {
                        None | Some('"') => break,
                        Some('\\') => {
                            if let Some(c) = chars.next() {
                                value.push(c);
                            }
                        }
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                    value.push(c);
                }
            }
            params.insert(key, value);
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = Challenge::parse(r#"Basic realm="a \"quoted\", realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], r#"a "quoted", realm"#);
        let c = Challenge::parse("BEARER Realm = http://x/t , service=s").unwrap();
        assert_eq!(c.params["realm"], "http://x/t");
        assert_eq!(c.params["service"], "s");
        assert_eq!(Challenge::parse("Basic").unwrap().params.len(), 0);
        assert!(Challenge::parse("").is_none());
        assert!(Challenge::parse("=x").is_none());
        // Unterminated quotes and garbage do not panic.
        let c = Challenge::parse(r#"Bearer realm="unterminated\"#).unwrap();
        assert_eq!(c.params["realm"], "unterminated");
        let c = Challenge::parse("Bearer realm=a,,,=b,c").unwrap();
        assert_eq!(c.params.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn challenge_parse_never_panics(s in "\\PC{0,120}") {
            let _ = Challenge::parse(&s);
        }
    }

    #[test]
    fn reads_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{enc}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        let f = Credentials::File(path.clone());
        let a = lookup(&f, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((a.user.as_str(), a.password.as_str()), ("alice", "s3:cret"));
        assert_eq!(a.header(), format!("Basic {enc}"));
        assert!(!format!("{a:?}").contains("s3:cret"));
        let b = lookup(&f, "docker.io").unwrap().unwrap();
        assert_eq!(b.user, "bob");
        assert_eq!(lookup(&f, "ghcr.io").unwrap(), None);
        assert_eq!(lookup(&Credentials::Anonymous, "docker.io").unwrap(), None);
        std::fs::write(&path, r#"{"auths":{"h":{"auth":"!!!"}}}"#).unwrap();
        assert!(lookup(&f, "h").is_err());
        assert!(lookup(&Credentials::File(dir.path().join("none")), "h").is_err());
    }
}
