//! Platform settings: environment rules and mounts the platform adds to every container.
//!
//! A settings file (YAML) replaces the built-in defaults entirely:
//!
//! ```yaml
//! env_rules:
//!   - {pattern: "HOSTNAME=.+", strategy: re2, required: false}
//!   - {name: "TERM", value: "xterm", required: false}
//! mounts:
//!   - {destination: /dev/termination-log, source: "sandbox:///tmp/atlas/termination/.+",
//!      type: bind, options: [rbind, rshared, rw]}
//! ```
//!
//! The built-in defaults ([`Settings::default`]) are what kubelet adds to every container of
//! a pod: `HOSTNAME`, the service-link variables (`<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT*`,
//! `<SVC>_PORT*`, with values limited to addresses, ports and protocols), `TERM=xterm`, and
//! the termination-log and service-account token mounts. None is required.

use charter_policy::model::{EnvRule, MountConstraint};
use serde::Deserialize;

use crate::Error;

/// Largest settings file accepted (bytes).
pub const MAX_SETTINGS_BYTES: usize = 1024 * 1024;

const IP: &str = "[0-9A-Fa-f.:]+";

/// Platform rules added to every container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Environment rules (ACI form: `{pattern, strategy, required}` or the split form).
    #[serde(default)]
    pub env_rules: Vec<EnvRule>,
    /// Mount constraints.
    #[serde(default)]
    pub mounts: Vec<MountConstraint>,
}

impl Default for Settings {
    fn default() -> Self {
        let svc = "[A-Z_][A-Z0-9_]*";
        let env_rules = vec![
            EnvRule::re2("HOSTNAME=[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", false),
            EnvRule::re2(&format!("{svc}_SERVICE_HOST={IP}"), false),
            EnvRule::re2(&format!("{svc}_SERVICE_PORT(_[A-Z0-9_]+)?=[0-9]{{1,5}}"), false),
            EnvRule::re2(&format!("{svc}_PORT=(tcp|udp|sctp)://\\[?{IP}\\]?:[0-9]{{1,5}}"), false),
            EnvRule::re2(
                &format!("{svc}_PORT_[0-9]{{1,5}}_(TCP|UDP|SCTP)=(tcp|udp|sctp)://\\[?{IP}\\]?:[0-9]{{1,5}}"),
                false,
            ),
            EnvRule::re2(
                &format!("{svc}_PORT_[0-9]{{1,5}}_(TCP|UDP|SCTP)_PROTO=(tcp|udp|sctp)"),
                false,
            ),
            EnvRule::re2(
                &format!("{svc}_PORT_[0-9]{{1,5}}_(TCP|UDP|SCTP)_PORT=[0-9]{{1,5}}"),
                false,
            ),
            EnvRule::re2(
                &format!("{svc}_PORT_[0-9]{{1,5}}_(TCP|UDP|SCTP)_ADDR={IP}"),
                false,
            ),
            EnvRule::string("TERM=xterm", false),
        ];
        let bind = |destination: &str, kind: &str, mode: &str| MountConstraint {
            destination: destination.to_owned(),
            source: format!("sandbox:///tmp/atlas/{kind}/.+"),
            kind: "bind".to_owned(),
            options: vec!["rbind".into(), "rshared".into(), mode.to_owned()],
        };
        Self {
            env_rules,
            mounts: vec![
                bind("/dev/termination-log", "termination", "rw"),
                bind(
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                    "serviceaccount",
                    "ro",
                ),
            ],
        }
    }
}

impl Settings {
    /// Parses a settings file.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_SETTINGS_BYTES {
            return Err(Error::Settings(format!(
                "file is {} bytes, over the {MAX_SETTINGS_BYTES}-byte limit",
                text.len()
            )));
        }
        yaml_serde::from_str(text).map_err(|e| Error::Settings(e.to_string()))
    }
}
