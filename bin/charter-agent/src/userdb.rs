//! The process identity, resolved the way the OCI runtime will apply it: from the container's
//! own `/etc/passwd` and `/etc/group` (integrity-protected layers, but still parsed as hostile
//! bytes: bounded, never panicking).

use std::path::Path;

use charter_policy::request::{IdName, User};

/// Largest passwd/group file read.
const MAX_DB_BYTES: u64 = 1024 * 1024;

/// umask when the request gives none (the OCI runtime's default).
pub const DEFAULT_UMASK: &str = "0022";

/// A resolved identity: numeric ids for the runtime, names for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    /// The policy's view (`input.user`).
    pub policy: User,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} is not in the container's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the container's /etc/group")]
    UnknownGroup(String),
    #[error("umask {0:?} is not an octal mode like 0022")]
    BadUmask(String),
    #[error("user spec {0:?} is malformed")]
    Malformed(String),
}

struct Entry {
    name: String,
    id: u32,
    gid: u32,
}

fn read_db(path: &Path, gid_field: bool) -> Vec<Entry> {
    use std::io::Read as _;
    let mut text = String::new();
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if f.take(MAX_DB_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let id = fields.next()?.parse().ok()?;
            let gid = if gid_field {
                fields.next()?.parse().ok()?
            } else {
                id
            };
            (!name.is_empty()).then(|| Entry {
                name: name.to_owned(),
                id,
                gid,
            })
        })
        .collect()
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against `rootfs`.
///
/// # Errors
/// [`UserError`] when a name is unknown or the spec is malformed.
pub fn resolve(
    rootfs: &Path,
    user: &str,
    supplemental: &[u32],
    umask: &str,
) -> Result<Identity, UserError> {
    let passwd = read_db(&rootfs.join("etc/passwd"), true);
    let groups = read_db(&rootfs.join("etc/group"), false);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    if g == Some("") {
        return Err(UserError::Malformed(user.to_owned()));
    }
    let (uid, uname, mut gid) = match u.parse::<u32>() {
        Ok(id) => {
            let e = passwd.iter().find(|e| e.id == id);
            (
                id,
                e.map(|e| e.name.clone()).unwrap_or_default(),
                e.map_or(0, |e| e.gid),
            )
        }
        Err(_) => {
            let e = passwd
                .iter()
                .find(|e| e.name == u)
                .ok_or_else(|| UserError::UnknownUser(u.to_owned()))?;
            (e.id, e.name.clone(), e.gid)
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_owned()))?
                    .id
            }
        };
    }
    let group_name = |id: u32| {
        groups
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    };
    let mut policy_groups = vec![IdName {
        id: gid.to_string(),
        name: group_name(gid),
    }];
    for g in supplemental {
        if *g != gid && !supplemental_seen(&policy_groups, *g) {
            policy_groups.push(IdName {
                id: g.to_string(),
                name: group_name(*g),
            });
        }
    }
    let umask_text = if umask.is_empty() {
        DEFAULT_UMASK
    } else {
        umask
    };
    let umask_val = u32::from_str_radix(umask_text, 8)
        .ok()
        .filter(|m| *m <= 0o777 && umask_text.len() <= 4)
        .ok_or_else(|| UserError::BadUmask(umask.to_owned()))?;
    Ok(Identity {
        uid,
        gid,
        additional_gids: supplemental.to_vec(),
        umask: umask_val,
        policy: User {
            uid: IdName {
                id: uid.to_string(),
                name: uname,
            },
            groups: policy_groups,
            umask: umask_text.to_owned(),
        },
    })
}

fn supplemental_seen(groups: &[IdName], id: u32) -> bool {
    let id = id.to_string();
    groups.iter().any(|g| g.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_the_runtime() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbad:line\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nvideo:x:44:app\n",
        )
        .unwrap();
        let id = resolve(d.path(), "", &[], "").unwrap();
        assert_eq!((id.uid, id.gid, id.umask), (0, 0, 0o022));
        assert_eq!(id.policy.uid.name, "root");
        let id = resolve(d.path(), "app:video", &[1000], "0077").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 44));
        assert_eq!(id.policy.groups.len(), 2);
        assert_eq!(id.policy.groups[0].name, "video");
        let id = resolve(d.path(), "4242", &[], "").unwrap();
        assert_eq!(id.policy.uid.name, "");
        assert!(resolve(d.path(), "nobody", &[], "").is_err());
        assert!(resolve(d.path(), "app:", &[], "").is_err());
        assert!(resolve(d.path(), "app", &[], "9999").is_err());
    }
}
