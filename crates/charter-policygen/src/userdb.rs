//! The image's own `/etc/passwd` and `/etc/group`, read from its layers, and user resolution.
//!
//! Layer content is untrusted: each file is capped at [`MAX_DB_BYTES`], lines that do not parse
//! are skipped, numbers that do not fit are refused, and nothing here can panic. Layers are
//! read top first; a layer decides a file when it holds it, deletes it (`.wh.` whiteout of the
//! file or of `etc`), or hides lower layers' `etc` (opaque whiteout). Every layer read to the
//! end is verified with [`charter_image::LayerReader::finish`] before its content is used.

use std::io::{Read, Seek};

use charter_image::Image;

use crate::Error;

/// Largest `/etc/passwd` or `/etc/group` read (bytes).
pub const MAX_DB_BYTES: u64 = 1024 * 1024;

/// One file's state as seen so far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum FileState {
    Unknown,
    Absent,
    Present(String),
}

/// The parsed user and group databases of an image (empty when the image has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    /// `(name, uid, gid)` in file order.
    pub users: Vec<(String, u32, u32)>,
    /// `(name, gid, members)` in file order.
    pub groups: Vec<(String, u32, Vec<String>)>,
}

impl UserDb {
    /// Reads both files from `image`'s layers, top layer first, reading only as many layers as
    /// it takes to decide both.
    pub fn read(image: &Image, reference: &str) -> Result<Self, Error> {
        combine(
            (0..image.layers.len())
                .rev()
                .map(|index| scan_layer(image, index, reference)),
        )
    }

    /// Parses passwd and group text; malformed lines are skipped.
    #[must_use]
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let _password = f.next()?;
                let uid = f.next()?.parse().ok()?;
                let gid = f.next()?.parse().ok()?;
                (!name.is_empty()).then(|| (name.to_owned(), uid, gid))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let _password = f.next()?;
                let gid = f.next()?.parse().ok()?;
                let members = f
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                (!name.is_empty()).then(|| (name.to_owned(), gid, members))
            })
            .collect();
        Self { users, groups }
    }

    fn user_by_name(&self, name: &str) -> Option<(u32, u32)> {
        self.users
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, u, g)| (*u, *g))
    }

    fn user_by_id(&self, uid: u32) -> Option<(&str, u32)> {
        self.users
            .iter()
            .find(|(_, u, _)| *u == uid)
            .map(|(n, _, g)| (n.as_str(), *g))
    }

    fn group_by_name(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, g, _)| *g)
    }

    /// Groups that list `user` as a member (the supplementary groups a runtime adds).
    fn memberships(&self, user: &str) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|(_, _, members)| members.iter().any(|m| m == user))
            .map(|(_, g, _)| *g)
            .collect()
    }
}

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from the image's `/etc/group` (sorted, deduplicated).
    pub member_of: Vec<u32>,
}

/// Resolves the identity the runtime would use: `run_as_user`/`run_as_group` from the
/// securityContext over the image's `User` (`name`, `uid`, `name:group`, `uid:gid`, ...), looked
/// up in the image's own databases the way containerd does (a uid without a group takes the
/// passwd entry's gid, else 0; an unknown user *name* is an error).
pub fn resolve(
    db: &UserDb,
    image_user: &str,
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    what: &str,
) -> Result<Identity, Error> {
    let bad = |message: String| Error::User {
        container: what.to_owned(),
        message,
    };
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let (uid, passwd_gid, name) = match run_as_user {
        Some(uid) => {
            let entry = db.user_by_id(uid);
            (uid, entry.map(|e| e.1), entry.map(|e| e.0.to_owned()))
        }
        None if user_part.is_empty() => (0, db.user_by_id(0).map(|e| e.1), Some("root".into())),
        None => match user_part.parse::<u32>() {
            Ok(uid) => {
                let entry = db.user_by_id(uid);
                (uid, entry.map(|e| e.1), entry.map(|e| e.0.to_owned()))
            }
            Err(_) => {
                let (uid, gid) = db.user_by_name(user_part).ok_or_else(|| {
                    bad(format!(
                        "image user {user_part:?} is not in the image's /etc/passwd"
                    ))
                })?;
                (uid, Some(gid), Some(user_part.to_owned()))
            }
        },
    };
    let gid = match (run_as_group, group_part) {
        (Some(gid), _) => gid,
        // The image's group applies only together with the image's user.
        (None, Some(g)) if run_as_user.is_none() && !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => db.group_by_name(g).ok_or_else(|| {
                bad(format!(
                    "image group {g:?} is not in the image's /etc/group"
                ))
            })?,
        },
        _ => passwd_gid.unwrap_or(0),
    };
    let mut member_of = name.map(|n| db.memberships(&n)).unwrap_or_default();
    member_of.sort_unstable();
    member_of.dedup();
    Ok(Identity {
        uid,
        gid,
        member_of,
    })
}

/// What one layer says about `/etc/passwd` and `/etc/group` (an opaque `etc` already folded
/// in: files the layer does not hold are then absent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerEtc {
    pub(crate) passwd: FileState,
    pub(crate) group: FileState,
}

/// Combines per-layer states, top layer first, into the image's databases. `layers` yields
/// `(index, state)` from the top down and is consumed only until both files are decided.
pub(crate) fn combine<I>(layers: I) -> Result<UserDb, Error>
where
    I: IntoIterator<Item = Result<LayerEtc, Error>>,
{
    let mut passwd = FileState::Unknown;
    let mut group = FileState::Unknown;
    for etc in layers {
        if passwd != FileState::Unknown && group != FileState::Unknown {
            break;
        }
        let etc = etc?;
        if passwd == FileState::Unknown {
            passwd = etc.passwd;
        }
        if group == FileState::Unknown {
            group = etc.group;
        }
    }
    let text = |s: FileState| match s {
        FileState::Present(t) => t,
        _ => String::new(),
    };
    Ok(UserDb::parse(&text(passwd), &text(group)))
}

/// Reads layer `index` of `image` to the end (verified by [`charter_image::LayerReader::finish`]
/// before anything it holds is used) and returns what it says about the two files.
pub(crate) fn scan_layer(image: &Image, index: usize, reference: &str) -> Result<LayerEtc, Error> {
    let layer_err = |source: charter_image::Error| Error::Image {
        image: reference.to_owned(),
        source: Box::new(source),
    };
    let mut reader = image.open_layer(index).map_err(layer_err)?;
    let etc = scan_tar(&mut reader).map_err(|e| e.into_error(reference, index))?;
    reader.finish().map_err(layer_err)?;
    Ok(etc)
}

/// Why a tar stream could not be scanned (turned into an [`Error`] by the caller, who knows
/// the image and layer).
#[derive(Debug)]
pub(crate) enum ScanError {
    Io(std::io::Error),
    TooLarge(String),
}

impl ScanError {
    pub(crate) fn into_error(self, reference: &str, index: usize) -> Error {
        Error::Layer {
            image: reference.to_owned(),
            index,
            message: match self {
                Self::Io(e) => e.to_string(),
                Self::TooLarge(path) => format!("/{path} is larger than {MAX_DB_BYTES} bytes"),
            },
        }
    }
}

/// Reads a layer tar stream to its end, keeping the state of `etc/passwd` and `etc/group` it
/// decides. The caller verifies the stream's digests before using the result.
pub(crate) fn scan_tar<R: Read>(reader: R) -> Result<LayerEtc, ScanError> {
    let mut archive = tar::Archive::new(reader);
    let etc = scan_entries(archive.entries().map_err(ScanError::Io)?)?;
    // Drain whatever follows the archive's end marker so the digests cover the whole blob.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(ScanError::Io)?;
    Ok(etc)
}

/// [`scan_tar`] over a stream that seeks forward over file data instead of reading it. What
/// follows the end marker is left unread: the caller owns the stream and its verification.
pub(crate) fn scan_tar_seekable<R: Read + Seek>(reader: R) -> Result<LayerEtc, ScanError> {
    let mut archive = tar::Archive::new(reader);
    scan_entries(archive.entries_with_seek().map_err(ScanError::Io)?)
}

fn scan_entries<R: Read>(entries: tar::Entries<'_, R>) -> Result<LayerEtc, ScanError> {
    let mut passwd = FileState::Unknown;
    let mut group = FileState::Unknown;
    let mut opaque_etc = false;
    for entry in entries {
        let mut entry = entry.map_err(ScanError::Io)?;
        let path = entry.path().map_err(ScanError::Io)?.into_owned();
        let path = path.to_string_lossy();
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let path = path.trim_end_matches('/');
        let slot = match path {
            "etc/passwd" => Some(&mut passwd),
            "etc/group" => Some(&mut group),
            "etc/.wh.passwd" => {
                passwd = FileState::Absent;
                None
            }
            "etc/.wh.group" => {
                group = FileState::Absent;
                None
            }
            "etc/.wh..wh..opq" => {
                opaque_etc = true;
                None
            }
            ".wh.etc" => {
                passwd = FileState::Absent;
                group = FileState::Absent;
                None
            }
            _ => None,
        };
        let Some(slot) = slot else { continue };
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            *slot = FileState::Absent;
            continue;
        }
        let mut limited = (&mut entry).take(MAX_DB_BYTES.saturating_add(1));
        let mut bytes = Vec::new();
        limited.read_to_end(&mut bytes).map_err(ScanError::Io)?;
        if bytes.len() as u64 > MAX_DB_BYTES {
            return Err(ScanError::TooLarge(path.to_owned()));
        }
        *slot = FileState::Present(String::from_utf8_lossy(&bytes).into_owned());
    }
    if opaque_etc {
        // The layer's own etc is all there is: files it does not hold do not exist.
        for state in [&mut passwd, &mut group] {
            if *state == FileState::Unknown {
                *state = FileState::Absent;
            }
        }
    }
    Ok(LayerEtc { passwd, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> UserDb {
        UserDb::parse(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbroken line\nbig:x:99999999999:1:\n",
            "root:x:0:\napp:x:1001:\nvideo:x:44:app,other\nwheel:x:10:root\n",
        )
    }

    #[test]
    fn resolves_names_ids_and_overrides() {
        let db = db();
        let id = resolve(&db, "app", None, None, "c").unwrap();
        assert_eq!(
            (id.uid, id.gid, id.member_of.clone()),
            (1000, 1001, vec![44])
        );
        let id = resolve(&db, "", None, None, "c").unwrap();
        assert_eq!((id.uid, id.gid, id.member_of), (0, 0, vec![10]));
        let id = resolve(&db, "1000:44", None, None, "c").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 44));
        let id = resolve(&db, "app:video", None, None, "c").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 44));
        let id = resolve(&db, "app", Some(2000), None, "c").unwrap();
        assert_eq!((id.uid, id.gid, id.member_of), (2000, 0, vec![]));
        let id = resolve(&db, "app", Some(1000), Some(7), "c").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 7));
        let err = resolve(&db, "nobody", None, None, "c").unwrap_err();
        assert!(err.to_string().contains("\"nobody\""), "{err}");
        let err = resolve(&db, "app:nogroup", None, None, "c").unwrap_err();
        assert!(err.to_string().contains("nogroup"), "{err}");
    }

    #[test]
    fn hostile_text_never_panics() {
        for text in [
            "",
            ":::",
            "a:b:c:d",
            "x:x:-1:-1",
            "\u{0}:\u{0}",
            "a:x:1:1:::::::",
        ] {
            let db = UserDb::parse(text, text);
            let _ = resolve(&db, text, None, None, "c");
        }
    }
}
