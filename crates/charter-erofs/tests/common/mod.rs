//! Shared test helpers: a declarative layer spec that yields both a tar (built with the `tar`
//! crate, independent of the writer) and the expected tree, plus oracles (fsck.erofs, the
//! reader, the kernel via a loop mount).
#![allow(dead_code, clippy::too_many_arguments)]

pub mod layers;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use charter_erofs::{build_from_tar, BuildOptions, EntryKind, Image};

/// Expected state of one path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Regular file content.
    pub content: Option<Vec<u8>>,
}

/// Expected image tree: path -> state, plus hard-link groups (paths sharing one inode).
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub entries: BTreeMap<Vec<u8>, Expect>,
    pub links: Vec<Vec<Vec<u8>>>,
}

impl Model {
    pub fn dir(&mut self, path: &[u8], mode: u32, uid: u32, gid: u32, mtime: i64) {
        self.entries.insert(
            path.to_vec(),
            Expect {
                kind: EntryKind::Dir,
                mode,
                uid,
                gid,
                mtime,
                xattrs: BTreeMap::new(),
                content: None,
            },
        );
    }
    /// Adds implied parents (0755 root:root mtime 0) for every entry lacking one.
    pub fn imply_parents(&mut self) {
        let paths: Vec<Vec<u8>> = self.entries.keys().cloned().collect();
        for p in paths {
            let mut cur = p.as_slice();
            while let Some(i) = cur.iter().rposition(|b| *b == b'/') {
                cur = &cur[..i];
                if !self.entries.contains_key(cur) {
                    self.dir(cur, 0o755, 0, 0, 0);
                }
            }
        }
        if !self.entries.contains_key(&b""[..]) {
            self.dir(b"", 0o755, 0, 0, 0);
        }
    }
}

/// A tar being built together with its model.
pub struct Layer {
    pub builder: tar::Builder<Vec<u8>>,
    pub model: Model,
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
            model: Model::default(),
        }
    }

    fn pax(&mut self, xattrs: &[(&[u8], &[u8])]) {
        if xattrs.is_empty() {
            return;
        }
        let recs: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), *v))
            .collect();
        self.builder
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
    }

    fn expect(
        &mut self,
        path: &[u8],
        kind: EntryKind,
        mode: u32,
        owner: (u32, u32),
        mtime: i64,
        xattrs: &[(&[u8], &[u8])],
        content: Option<Vec<u8>>,
    ) {
        self.model.entries.insert(
            path.to_vec(),
            Expect {
                kind,
                mode,
                uid: owner.0,
                gid: owner.1,
                mtime,
                xattrs: xattrs
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
                content,
            },
        );
    }

    pub fn file(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: (u32, u32),
        mtime: u64,
        xattrs: &[(&[u8], &[u8])],
    ) {
        self.pax(xattrs);
        let mut h = header(
            tar::EntryType::Regular,
            mode,
            owner.0.into(),
            owner.1.into(),
            mtime,
        );
        h.set_size(data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        let p = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .as_bytes();
        let kind = EntryKind::File {
            size: data.len() as u64,
        };
        self.expect(
            p,
            kind,
            mode & 0o7777,
            owner,
            mtime as i64,
            xattrs,
            Some(data.to_vec()),
        );
    }

    pub fn dir(
        &mut self,
        path: &str,
        mode: u32,
        owner: (u32, u32),
        mtime: u64,
        xattrs: &[(&[u8], &[u8])],
    ) {
        self.pax(xattrs);
        let mut h = header(
            tar::EntryType::Directory,
            mode,
            owner.0.into(),
            owner.1.into(),
            mtime,
        );
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        let p = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .as_bytes();
        self.expect(
            p,
            EntryKind::Dir,
            mode & 0o7777,
            owner,
            mtime as i64,
            xattrs,
            None,
        );
    }

    pub fn symlink(&mut self, path: &str, target: &str, owner: (u32, u32), mtime: u64) {
        let mut h = header(
            tar::EntryType::Symlink,
            0o777,
            owner.0.into(),
            owner.1.into(),
            mtime,
        );
        self.builder.append_link(&mut h, path, target).unwrap();
        let kind = EntryKind::Symlink {
            target: target.as_bytes().to_vec(),
        };
        self.expect(path.as_bytes(), kind, 0o777, owner, mtime as i64, &[], None);
    }

    /// Hard link `path` to the earlier entry `target`.
    pub fn hardlink(&mut self, path: &str, target: &str) {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        let e = self.model.entries[target.as_bytes()].clone();
        self.model.entries.insert(path.as_bytes().to_vec(), e);
        let t = target.as_bytes().to_vec();
        match self.model.links.iter_mut().find(|g| g.contains(&t)) {
            Some(g) => g.push(path.as_bytes().to_vec()),
            None => self.model.links.push(vec![t, path.as_bytes().to_vec()]),
        }
    }

    pub fn device(
        &mut self,
        path: &str,
        block: bool,
        major: u32,
        minor: u32,
        mode: u32,
        owner: (u32, u32),
        mtime: u64,
    ) {
        let kind = if block {
            tar::EntryType::Block
        } else {
            tar::EntryType::Char
        };
        let mut h = header(kind, mode, owner.0.into(), owner.1.into(), mtime);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        let kind = if block {
            EntryKind::BlockDevice { major, minor }
        } else {
            EntryKind::CharDevice { major, minor }
        };
        self.expect(
            path.as_bytes(),
            kind,
            mode & 0o7777,
            owner,
            mtime as i64,
            &[],
            None,
        );
    }

    pub fn fifo(&mut self, path: &str, mode: u32, owner: (u32, u32), mtime: u64) {
        let mut h = header(
            tar::EntryType::Fifo,
            mode,
            owner.0.into(),
            owner.1.into(),
            mtime,
        );
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self.expect(
            path.as_bytes(),
            EntryKind::Fifo,
            mode & 0o7777,
            owner,
            mtime as i64,
            &[],
            None,
        );
    }

    /// A raw entry that the model does not describe (whiteouts, markers).
    pub fn raw(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        owner: (u32, u32),
        mtime: u64,
    ) {
        let mut h = header(kind, mode, owner.0.into(), owner.1.into(), mtime);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
    }

    pub fn finish(self) -> (Vec<u8>, Model) {
        let mut model = self.model;
        model.imply_parents();
        (self.builder.into_inner().unwrap(), model)
    }
}

/// Builds an image in memory.
pub fn build(tar: &[u8]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let summary = build_from_tar(tar, &mut out, &BuildOptions::default()).unwrap();
    let img = out.into_inner();
    assert_eq!(img.len() as u64, summary.image_size);
    assert_eq!(img.len() % 4096, 0);
    img
}

/// Runs `fsck.erofs --extract` on an image file; returns the extraction dir.
pub fn fsck(image: &Path, dir: &Path) -> std::path::PathBuf {
    let x = dir.join("extract");
    let out = Command::new("fsck.erofs")
        .arg(format!("--extract={}", x.display()))
        .arg(image)
        .output()
        .expect("fsck.erofs is installed");
    assert!(
        out.status.success(),
        "fsck.erofs failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    x
}

/// Compares the reader's walk of `img` with the model exactly.
pub fn check_image<S: charter_erofs::ReadAt>(img: &Image<S>, model: &Model) {
    let walked = img.walk().unwrap();
    let by_path: BTreeMap<Vec<u8>, charter_erofs::Entry> =
        walked.iter().map(|e| (e.path.clone(), e.clone())).collect();
    assert_eq!(by_path.len(), walked.len(), "paths are unique");
    let got: Vec<&Vec<u8>> = by_path.keys().collect();
    let want: Vec<&Vec<u8>> = model.entries.keys().collect();
    assert_eq!(got, want, "path sets differ");
    for (path, exp) in &model.entries {
        let e = &by_path[path];
        let p = String::from_utf8_lossy(path);
        assert_eq!(e.kind, exp.kind, "kind of {p}");
        assert_eq!(e.mode, exp.mode, "mode of {p}");
        assert_eq!((e.uid, e.gid), (exp.uid, exp.gid), "owner of {p}");
        assert_eq!(e.mtime, exp.mtime, "mtime of {p}");
        assert_eq!(e.xattrs, exp.xattrs, "xattrs of {p}");
        if let Some(c) = &exp.content {
            assert_eq!(&img.read_file(e.nid, 1 << 30).unwrap(), c, "content of {p}");
        }
        let group = model.links.iter().find(|g| g.contains(path));
        match (&e.kind, group) {
            (EntryKind::Dir, _) => {
                let subdirs = walked
                    .iter()
                    .filter(|c| {
                        c.kind == EntryKind::Dir
                            && !c.path.is_empty()
                            && parent(&c.path) == path.as_slice()
                    })
                    .count() as u32;
                assert_eq!(e.nlink, 2 + subdirs, "nlink of dir {p}");
            }
            (_, None) => assert_eq!(e.nlink, 1, "nlink of {p}"),
            (_, Some(g)) => {
                assert_eq!(e.nlink as usize, g.len(), "nlink of {p}");
                for other in g {
                    assert_eq!(
                        by_path[other].nid, e.nid,
                        "{p} and its hard link share an inode"
                    );
                }
            }
        }
    }
    // Inodes not in one link group are distinct.
    let mut nids: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &walked {
        *nids.entry(e.nid).or_default() += 1;
    }
    let shared: usize = model.links.iter().map(|g| g.len() - 1).sum();
    assert_eq!(
        walked.len() - nids.len(),
        shared,
        "only hard links share inodes"
    );
}

pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// How much of an on-disk tree [`check_dir`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Paths, types, sizes, content, symlink targets.
    Content,
    /// Also modes, owners, mtimes and device numbers (what `fsck.erofs --extract` restores).
    Metadata,
    /// Also xattrs and hard-link identity (a mount).
    Full,
}

/// Compares an on-disk tree (fsck extraction or a mount) with the model at `level`.
pub fn check_dir(root: &Path, model: &Model, level: Level) {
    let full = level >= Level::Metadata;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut seen = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap() {
            let ent = ent.unwrap();
            let md = std::fs::symlink_metadata(ent.path()).unwrap();
            if md.is_dir() {
                stack.push(ent.path());
            }
            seen.push(
                ent.path()
                    .strip_prefix(root)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            );
        }
    }
    seen.push(Vec::new());
    seen.sort();
    let want: Vec<Vec<u8>> = model.entries.keys().cloned().collect();
    assert_eq!(seen, want, "path sets differ under {}", root.display());
    let mut inos: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (path, exp) in &model.entries {
        let fs_path = root.join(std::ffi::OsStr::from_bytes(path));
        let md = std::fs::symlink_metadata(&fs_path).unwrap();
        let ft = md.file_type();
        let p = String::from_utf8_lossy(path);
        inos.insert(path.clone(), md.ino());
        match &exp.kind {
            EntryKind::File { size } => {
                assert!(ft.is_file(), "{p} is a file");
                assert_eq!(md.len(), *size, "size of {p}");
                if let Some(c) = &exp.content {
                    assert_eq!(&std::fs::read(&fs_path).unwrap(), c, "content of {p}");
                }
            }
            EntryKind::Dir => assert!(ft.is_dir(), "{p} is a dir"),
            EntryKind::Symlink { target } => {
                assert!(ft.is_symlink(), "{p} is a symlink");
                assert_eq!(
                    std::fs::read_link(&fs_path).unwrap().as_os_str().as_bytes(),
                    target.as_slice()
                );
            }
            EntryKind::CharDevice { major, minor } => {
                assert!(ft.is_char_device(), "{p} is a char device");
                if full {
                    assert_eq!(
                        (libc_major(md.rdev()), libc_minor(md.rdev())),
                        (*major, *minor),
                        "rdev of {p}"
                    );
                }
            }
            EntryKind::BlockDevice { major, minor } => {
                assert!(ft.is_block_device(), "{p} is a block device");
                if full {
                    assert_eq!(
                        (libc_major(md.rdev()), libc_minor(md.rdev())),
                        (*major, *minor),
                        "rdev of {p}"
                    );
                }
            }
            EntryKind::Fifo => assert!(ft.is_fifo(), "{p} is a fifo"),
            EntryKind::Socket => assert!(ft.is_socket(), "{p} is a socket"),
        }
        if full {
            // fsck.erofs 1.5 chowns after chmod, which clears setuid/setgid on extraction.
            let mask = if level == Level::Full { 0o7777 } else { 0o1777 };
            assert_eq!(md.mode() & mask, exp.mode & mask, "mode of {p}");
            assert_eq!((md.uid(), md.gid()), (exp.uid, exp.gid), "owner of {p}");
            assert_eq!(md.mtime(), exp.mtime, "mtime of {p}");
        }
        if level == Level::Full {
            let mut xattrs = BTreeMap::new();
            for name in xattr::list(&fs_path).unwrap() {
                let v = xattr::get(&fs_path, &name).unwrap().unwrap_or_default();
                xattrs.insert(name.as_bytes().to_vec(), v);
            }
            assert_eq!(xattrs, exp.xattrs, "xattrs of {p}");
        }
    }
    if level == Level::Full {
        for g in &model.links {
            let first = inos[&g[0]];
            for p in g {
                assert_eq!(inos[p], first, "hard links share an inode");
            }
        }
    }
}

/// glibc `major()`/`minor()`.
pub fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}
pub fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// Loop-mounts an image read-only; unmounts on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn new(image: &Path) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-o", "loop,ro", "-t", "erofs"])
            .arg(image)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount failed");
        Mount { dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
