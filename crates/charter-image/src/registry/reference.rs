//! Docker image references: `[registry[:port]/]repository[:tag][@sha256:digest]`, normalised as
//! docker does (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use crate::{Error, Sha256Digest};

/// The registry docker means when a reference names none.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is served.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Longest reference accepted (docker's limit for a repository name is 255 characters).
const MAX_REFERENCE: usize = 1024;
const MAX_REPOSITORY: usize = 255;
const MAX_TAG: usize = 128;

/// A parsed, normalised image reference in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry as docker names it: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository, with `library/` added for official Docker Hub images.
    pub repository: String,
    /// The tag, if the reference has one (`latest` when it has neither tag nor digest).
    pub tag: Option<String>,
    /// The digest the reference pins, if any; the pulled manifest must hash to it.
    pub digest: Option<Sha256Digest>,
}

impl Reference {
    /// Parses and normalises a reference; never panics on hostile input.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: s.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_REFERENCE {
            return Err(bad("too long"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, d)) => {
                let digest: Sha256Digest = d.parse().map_err(|e| bad(&format!("{e}")))?;
                (name, Some(digest))
            }
            None => (s, None),
        };
        // A tag is a colon after the last slash (a colon before it is a port).
        let last_slash = name.rfind('/').map_or(0, |i| i.saturating_add(1));
        let (name, tag) = match name.get(last_slash..).and_then(|last| last.rfind(':')) {
            Some(i) => {
                let at = last_slash.saturating_add(i);
                let tag = name.get(at.saturating_add(1)..).unwrap_or_default();
                (name.get(..at).unwrap_or_default(), Some(tag.to_owned()))
            }
            None => (name, None),
        };
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(bad("invalid tag"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if !valid_registry(&registry) {
            return Err(bad("invalid registry host"));
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(bad(
                "invalid repository (lowercase letters, digits, '.', '_', '-', '/')",
            ));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) the registry API is served at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask `/v2/<name>/manifests/` for: the digest when pinned, else the tag.
    pub(crate) fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/busybox:1.36@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    t.len() <= MAX_TAG
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

fn valid_repository(r: &str) -> bool {
    r.len() <= MAX_REPOSITORY
        && r.split('/').all(|c| {
            let bytes = c.as_bytes();
            !c.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
                && bytes
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(r("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(r("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(r("demo/app:v1"), "docker.io/demo/app:v1");
        assert_eq!(r("index.docker.io/demo/app"), "docker.io/demo/app:latest");
        assert_eq!(r("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(
            r("127.0.0.1:5000/a/b/c:t-1.0"),
            "127.0.0.1:5000/a/b/c:t-1.0"
        );
        let d = Sha256Digest::of(b"x");
        assert_eq!(r(&format!("ghcr.io/x/y@{d}")), format!("ghcr.io/x/y@{d}"));
        assert_eq!(
            r(&format!("ghcr.io/x/y:v2@{d}")),
            format!("ghcr.io/x/y:v2@{d}")
        );
        let p = Reference::parse("busybox").unwrap();
        assert_eq!(p.api_host(), "registry-1.docker.io");
        assert_eq!(p.manifest_ref(), "latest");
        let p = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(p.manifest_ref(), d.to_string());
        // Agrees with the docker-archive normalisation.
        for s in [
            "busybox",
            "busybox:1.36",
            "demo/app:v1",
            "localhost:5000/app",
        ] {
            assert_eq!(r(s), crate::archive::normalise_reference(s));
        }
    }

    #[test]
    fn refuses_bad_references() {
        for s in [
            "",
            "UPPER/case",
            "busybox:",
            "busybox@sha256:00",
            "busybox@md5:00",
            "host:99999/x",
            "host:/x",
            ":tag",
            "a//b",
            "/a",
            "a/",
            "busybox:-tag",
            "-a",
            "a b",
            "busybox:t@",
            "x/y:../../etc",
            "@",
            "héllo",
            "a:b:c",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(Reference::parse(&"a".repeat(2000)).is_err());
        assert!(Reference::parse(&format!("x:{}", "t".repeat(200))).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn never_panics_on_reference_like(s in "[a-z0-9:/@._-]{0,60}") {
            if let Ok(r) = Reference::parse(&s) {
                // What parses prints in a form that parses to the same reference.
                let again = Reference::parse(&r.to_string()).unwrap();
                proptest::prop_assert_eq!(again, r);
            }
        }
    }
}
