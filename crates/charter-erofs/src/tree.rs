//! The in-memory model of the layer: one record per inode, names per directory.
//!
//! Only metadata lives here; regular file contents are already in the image when a file is
//! added (`File::blkaddr`), except sub-block tails that will be stored inline.

use std::collections::BTreeMap;

use crate::error::{lossy, Error};
use crate::format::NAME_LEN;

/// Ownership, permissions and time of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission and special bits (`mode & 0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

impl Meta {
    /// Fixed metadata of implied directories (parents present in paths but not in the tar).
    pub(crate) const IMPLIED_DIR: Meta = Meta {
        perm: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
    };
}

/// Directory contents while the tar is read.
#[derive(Debug, Default)]
pub(crate) struct DirData {
    /// Name -> inode index.
    pub children: BTreeMap<Vec<u8>, usize>,
    /// Whiteout name -> inode index (char 0:0), merged into `children` at the end unless the
    /// same name exists as a real entry.
    pub whiteouts: BTreeMap<Vec<u8>, usize>,
    /// Whether the tar had an entry for this directory itself.
    pub explicit: bool,
    /// Whether the tar had `.wh..wh..opq` in this directory.
    pub opaque: bool,
}

/// What an inode is.
#[derive(Debug)]
pub(crate) enum Kind {
    Dir(Box<DirData>),
    /// `blkaddr`: first block of the full blocks (or of all data without `tail`);
    /// `tail`: the last partial block, stored inline after the inode.
    File {
        size: u64,
        blkaddr: u32,
        tail: Option<Box<[u8]>>,
    },
    Symlink(Vec<u8>),
    Char(u32),
    Block(u32),
    Fifo,
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Inode {
    pub kind: Kind,
    pub meta: Meta,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Number of directory entries naming this inode (files); subdirectories are counted at
    /// layout time for directories.
    pub links: u32,
}

/// What a tar entry wants to create.
#[derive(Debug)]
pub(crate) enum NewKind {
    Dir,
    File {
        size: u64,
        blkaddr: u32,
        tail: Option<Box<[u8]>>,
    },
    Symlink(Vec<u8>),
    Char(u32),
    Block(u32),
    Fifo,
    HardLink(Vec<u8>),
}

/// The tree under construction. Inode 0 is the root directory.
#[derive(Debug)]
pub(crate) struct Tree {
    pub inodes: Vec<Inode>,
    max_inodes: usize,
}

/// Whiteout prefix (OCI image spec, layer.md).
const WH_PREFIX: &[u8] = b".wh.";
/// Opaque directory marker.
const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Splits and validates a tar path into components (leading `./`, `.` and empty components
/// are dropped).
pub(crate) fn components(path: &[u8]) -> Result<Vec<&[u8]>, Error> {
    if path.first() == Some(&b'/') {
        return Err(Error::AbsolutePath { path: lossy(path) });
    }
    if path.len() > crate::MAX_PATH {
        return Err(Error::InvalidPath {
            path: lossy(path),
            reason: "path longer than 16384 bytes",
        });
    }
    let mut out = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." {
            return Err(Error::ParentComponent { path: lossy(path) });
        }
        if comp.contains(&0) {
            return Err(Error::InvalidPath {
                path: lossy(path),
                reason: "NUL byte in path",
            });
        }
        if comp.len() > NAME_LEN {
            return Err(Error::NameTooLong {
                path: lossy(path),
                len: comp.len(),
            });
        }
        out.push(comp);
    }
    Ok(out)
}

impl Tree {
    /// An empty tree holding only the (implied) root.
    pub(crate) fn new(max_inodes: usize) -> Tree {
        Tree {
            inodes: vec![Inode {
                kind: Kind::Dir(Box::default()),
                meta: Meta::IMPLIED_DIR,
                xattrs: BTreeMap::new(),
                links: 0,
            }],
            max_inodes,
        }
    }

    fn dir_mut(&mut self, ino: usize) -> Option<&mut DirData> {
        match self.inodes.get_mut(ino).map(|i| &mut i.kind) {
            Some(Kind::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn push(&mut self, inode: Inode, path: &[u8]) -> Result<usize, Error> {
        if self.inodes.len() >= self.max_inodes {
            return Err(Error::LimitExceeded(format!(
                "more than {} inodes (at tar entry {:?})",
                self.max_inodes,
                lossy(path)
            )));
        }
        self.inodes.push(inode);
        Ok(self.inodes.len().saturating_sub(1))
    }

    /// Walks to the directory holding `comps`' last component, creating implied parents.
    fn parent_dir(&mut self, comps: &[&[u8]], path: &[u8]) -> Result<usize, Error> {
        let mut cur = 0usize;
        let parents = comps.split_last().map(|(_, p)| p).unwrap_or(&[]);
        for comp in parents {
            if comp.starts_with(WH_PREFIX) {
                return Err(Error::InvalidWhiteout {
                    path: lossy(path),
                    reason: "whiteout used as a directory",
                });
            }
            let existing = self
                .dir_mut(cur)
                .ok_or_else(|| Error::NotADirectory { path: lossy(path) })?
                .children
                .get(*comp)
                .copied();
            cur = match existing {
                Some(ino) => ino,
                None => {
                    let ino = self.push(
                        Inode {
                            kind: Kind::Dir(Box::default()),
                            meta: Meta::IMPLIED_DIR,
                            xattrs: BTreeMap::new(),
                            links: 0,
                        },
                        path,
                    )?;
                    self.dir_mut(cur)
                        .ok_or_else(|| Error::NotADirectory { path: lossy(path) })?
                        .children
                        .insert(comp.to_vec(), ino);
                    ino
                }
            };
            if self.dir_mut(cur).is_none() {
                return Err(Error::NotADirectory { path: lossy(path) });
            }
        }
        Ok(cur)
    }

    /// Looks up an existing path without creating anything.
    fn lookup(&self, comps: &[&[u8]]) -> Option<usize> {
        let mut cur = 0usize;
        for comp in comps {
            match &self.inodes.get(cur)?.kind {
                Kind::Dir(d) => cur = *d.children.get(*comp)?,
                _ => return None,
            }
        }
        Some(cur)
    }

    /// Adds one tar entry.
    pub(crate) fn add(
        &mut self,
        path: &[u8],
        kind: NewKind,
        meta: Meta,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), Error> {
        let comps = components(path)?;
        let Some((last, _)) = comps.split_last() else {
            // The root itself ("./").
            return match kind {
                NewKind::Dir => self.set_dir_meta(0, meta, xattrs, path),
                _ => Err(Error::InvalidPath {
                    path: lossy(path),
                    reason: "the root must be a directory",
                }),
            };
        };
        let parent = self.parent_dir(&comps, path)?;

        if let Some(target) = last.strip_prefix(WH_PREFIX) {
            return self.add_whiteout(parent, last, target, meta, path);
        }

        let existing = self
            .dir_mut(parent)
            .and_then(|d| d.children.get(*last).copied());
        if let Some(ino) = existing {
            return match kind {
                NewKind::Dir => self.set_dir_meta(ino, meta, xattrs, path),
                _ => Err(Error::Duplicate { path: lossy(path) }),
            };
        }
        let ino = match kind {
            NewKind::HardLink(target) => {
                let tcomps = components(&target).map_err(|_| Error::LinkTargetMissing {
                    path: lossy(path),
                    target: lossy(&target),
                })?;
                let ino = self
                    .lookup(&tcomps)
                    .ok_or_else(|| Error::LinkTargetMissing {
                        path: lossy(path),
                        target: lossy(&target),
                    })?;
                let inode = self
                    .inodes
                    .get_mut(ino)
                    .ok_or_else(|| Error::LinkTargetMissing {
                        path: lossy(path),
                        target: lossy(&target),
                    })?;
                if matches!(inode.kind, Kind::Dir(_)) {
                    return Err(Error::LinkToDirectory {
                        path: lossy(path),
                        target: lossy(&target),
                    });
                }
                inode.links = inode.links.checked_add(1).ok_or_else(|| {
                    Error::LimitExceeded(format!("too many hard links to {:?}", lossy(&target)))
                })?;
                ino
            }
            other => {
                let (kind, links) = match other {
                    NewKind::Dir => (
                        Kind::Dir(Box::new(DirData {
                            explicit: true,
                            ..DirData::default()
                        })),
                        0,
                    ),
                    NewKind::File {
                        size,
                        blkaddr,
                        tail,
                    } => (
                        Kind::File {
                            size,
                            blkaddr,
                            tail,
                        },
                        1,
                    ),
                    NewKind::Symlink(t) => (Kind::Symlink(t), 1),
                    NewKind::Char(d) => (Kind::Char(d), 1),
                    NewKind::Block(d) => (Kind::Block(d), 1),
                    NewKind::Fifo | NewKind::HardLink(_) => (Kind::Fifo, 1),
                };
                self.push(
                    Inode {
                        kind,
                        meta,
                        xattrs,
                        links,
                    },
                    path,
                )?
            }
        };
        self.dir_mut(parent)
            .ok_or_else(|| Error::NotADirectory { path: lossy(path) })?
            .children
            .insert(last.to_vec(), ino);
        Ok(())
    }

    fn set_dir_meta(
        &mut self,
        ino: usize,
        meta: Meta,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
        path: &[u8],
    ) -> Result<(), Error> {
        let dup = || Error::Duplicate { path: lossy(path) };
        let inode = self.inodes.get_mut(ino).ok_or_else(dup)?;
        match &mut inode.kind {
            Kind::Dir(d) if !d.explicit => d.explicit = true,
            _ => return Err(dup()),
        }
        inode.meta = meta;
        inode.xattrs = xattrs;
        Ok(())
    }

    fn add_whiteout(
        &mut self,
        parent: usize,
        name: &[u8],
        target: &[u8],
        meta: Meta,
        path: &[u8],
    ) -> Result<(), Error> {
        if name == WH_OPAQUE {
            let d = self
                .dir_mut(parent)
                .ok_or_else(|| Error::NotADirectory { path: lossy(path) })?;
            if d.opaque {
                return Err(Error::Duplicate { path: lossy(path) });
            }
            d.opaque = true;
            return Ok(());
        }
        if target.starts_with(WH_PREFIX) {
            return Err(Error::InvalidWhiteout {
                path: lossy(path),
                reason: "unsupported .wh..wh. metadata entry",
            });
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Error::InvalidWhiteout {
                path: lossy(path),
                reason: "whiteout names no file",
            });
        }
        let exists = self
            .dir_mut(parent)
            .is_some_and(|d| d.whiteouts.contains_key(target));
        if exists {
            return Err(Error::Duplicate { path: lossy(path) });
        }
        let ino = self.push(
            Inode {
                kind: Kind::Char(0),
                meta,
                xattrs: BTreeMap::new(),
                links: 1,
            },
            path,
        )?;
        self.dir_mut(parent)
            .ok_or_else(|| Error::NotADirectory { path: lossy(path) })?
            .whiteouts
            .insert(target.to_vec(), ino);
        Ok(())
    }

    /// Merges whiteouts (a real entry of the same name in this layer wins) and turns opaque
    /// markers into `trusted.overlay.opaque=y`.
    pub(crate) fn finish(&mut self) {
        for inode in &mut self.inodes {
            if let Kind::Dir(d) = &mut inode.kind {
                let whiteouts = std::mem::take(&mut d.whiteouts);
                for (name, ino) in whiteouts {
                    d.children.entry(name).or_insert(ino);
                }
                if d.opaque {
                    inode
                        .xattrs
                        .insert(b"trusted.overlay.opaque".to_vec(), b"y".to_vec());
                }
            }
        }
    }
}
