//! Platform selection in multi-architecture indexes.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Descriptor;

use crate::Error;

/// An `os/architecture[/variant]` platform, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture, e.g. `amd64`.
    pub architecture: String,
    /// Variant, e.g. `v8`.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`: the confidential VMs charter targets (AMD SEV-SNP) are x86-64.
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: (*os).into(),
                    architecture: (*arch).into(),
                    variant: Some((*variant).into()),
                })
            }
            _ => Err(Error::Malformed(format!(
                "platform {s:?} is not os/architecture[/variant]"
            ))),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Picks the one manifest of an index entry list that matches this platform.
    pub(crate) fn select<'a>(&self, manifests: &'a [Descriptor]) -> Result<&'a Descriptor, Error> {
        let describe = |d: &Descriptor| match d.platform() {
            Some(p) => match p.variant() {
                Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                None => format!("{}/{}", p.os(), p.architecture()),
            },
            None => "unknown".to_owned(),
        };
        manifests
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == self.os
                        && p.architecture().to_string() == self.architecture
                        && match &self.variant {
                            Some(v) => p.variant().as_deref() == Some(v.as_str()),
                            None => true,
                        }
                })
            })
            .ok_or_else(|| Error::NoMatchingPlatform {
                wanted: self.to_string(),
                available: manifests.iter().map(describe).collect(),
            })
    }
}
