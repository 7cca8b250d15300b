//! A deterministic writer of the `newc` cpio format (the kernel's initramfs format,
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Determinism: entries are emitted sorted by path (parents before children, since a parent's
//! path is a prefix of its children's and `/` sorts before every other printable byte), every
//! missing parent directory is added with mode 0755, inode numbers count up from 1 in that
//! order, and uid, gid, mtime and the device fields are zero. The same set of entries always
//! gives the same bytes, whatever order they were added in.

use std::collections::BTreeMap;

use crate::Error;

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory with these permission bits.
    Dir { mode: u32 },
    /// A regular file.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link to `target`.
    Symlink { target: String },
    /// A character device node.
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An initramfs under construction: paths (relative, `/`-separated, no `.` or `..`) to entries.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `entry` at `path` (leading `/` ignored), creating missing parent directories.
    ///
    /// # Errors
    /// [`Error::ArchivePath`] for an empty path, `.`/`..` components, or a path already taken
    /// by a different entry (two identical directories are fine).
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<(), Error> {
        let path = path.trim_start_matches('/');
        let bad = |reason: &str| Error::ArchivePath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if path.is_empty() || path.ends_with('/') {
            return Err(bad("empty name"));
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("empty, `.` or `..` component"));
        }
        let mut parent = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match self.entries.get(&parent) {
                Some(Entry::Dir { .. }) => {}
                Some(_) => return Err(bad("a parent is not a directory")),
                None => {
                    self.entries
                        .insert(parent.clone(), Entry::Dir { mode: 0o755 });
                }
            }
        }
        match self.entries.get(path) {
            None => {
                self.entries.insert(path.to_owned(), entry);
                Ok(())
            }
            Some(old) if *old == entry => Ok(()),
            Some(Entry::Dir { .. }) if matches!(entry, Entry::Dir { .. }) => {
                self.entries.insert(path.to_owned(), entry);
                Ok(())
            }
            Some(_) => Err(bad("added twice with different contents")),
        }
    }

    /// Adds a regular file.
    ///
    /// # Errors
    /// See [`Archive::add`].
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), Error> {
        self.add(path, Entry::File { mode, data })
    }

    /// Whether `path` is present.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The paths, in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The `newc` bytes, ending with the `TRAILER!!!` record.
    ///
    /// # Errors
    /// [`Error::ArchivePath`] when a member exceeds the format's 32-bit sizes.
    pub fn to_newc(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut ino: u32 = 0;
        for (path, entry) in &self.entries {
            ino = ino.saturating_add(1);
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { mode } => (S_IFDIR | (mode & 0o7777), 2, &[], (0, 0)),
                Entry::File { mode, data } => (S_IFREG | (mode & 0o7777), 1, data, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Entry::CharDev { mode, major, minor } => {
                    (S_IFCHR | (mode & 0o7777), 1, &[], (*major, *minor))
                }
            };
            let size = u32::try_from(data.len()).map_err(|_| Error::ArchivePath {
                path: path.clone(),
                reason: "larger than 4 GiB".into(),
            })?;
            write_record(&mut out, ino, mode, nlink, size, rdev, path, data)?;
        }
        write_record(&mut out, 0, 0, 1, 0, (0, 0), "TRAILER!!!", &[])?;
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
fn write_record(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> Result<(), Error> {
    // namesize counts the terminating NUL.
    let namesize = u32::try_from(name.len().saturating_add(1)).map_err(|_| Error::ArchivePath {
        path: name.to_owned(),
        reason: "name too long".into(),
    })?;
    let fields = [
        ino, mode, 0, // uid
        0, // gid
        nlink, 0, // mtime
        size, 0, // devmajor
        0, // devminor
        rdev.0, rdev.1, namesize, 0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_order_does_not_matter() {
        let mut a = Archive::new();
        a.file("usr/sbin/runc", 0o755, b"x".to_vec()).unwrap();
        a.file("init", 0o755, b"init".to_vec()).unwrap();
        let mut b = Archive::new();
        b.file("init", 0o755, b"init".to_vec()).unwrap();
        b.file("/usr/sbin/runc", 0o755, b"x".to_vec()).unwrap();
        assert_eq!(a.to_newc().unwrap(), b.to_newc().unwrap());
        assert_eq!(
            a.paths().collect::<Vec<_>>(),
            ["init", "usr", "usr/sbin", "usr/sbin/runc"]
        );
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut a = Archive::new();
        assert!(a.file("a/../b", 0o644, vec![]).is_err());
        assert!(a.file("", 0o644, vec![]).is_err());
        a.file("a", 0o644, vec![1]).unwrap();
        assert!(a.file("a", 0o644, vec![2]).is_err());
        assert!(a.file("a/b", 0o644, vec![]).is_err());
        a.file("a", 0o644, vec![1]).unwrap();
    }

    #[test]
    fn record_layout() {
        let mut a = Archive::new();
        a.file("x", 0o644, b"abc".to_vec()).unwrap();
        let bytes = a.to_newc().unwrap();
        // 110-byte header, "x\0" padded to 112, 3 data bytes padded to 116.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001");
        assert_eq!(&bytes[14..22], b"000081A4");
        assert_eq!(&bytes[110..112], b"x\0");
        assert_eq!(&bytes[112..115], b"abc");
        assert_eq!(&bytes[116..122], b"070701");
        assert!(bytes.len().is_multiple_of(4) && bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
    }
}
