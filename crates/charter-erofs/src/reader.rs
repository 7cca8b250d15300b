//! A bounded EROFS reader for uncompressed images (`FLAT_PLAIN`, `FLAT_INLINE`, inline and
//! shared xattrs). Every offset is checked against the image length; directory loops, unsorted
//! or malformed directories and unsupported features are typed errors, never panics.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

use crate::error::Error;
use crate::format::*;

/// Random-access byte source for [`Image`].
pub trait ReadAt {
    /// Total length in bytes.
    fn byte_len(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`; fails past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for [u8] {
    fn byte_len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = self.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn byte_len(&self) -> io::Result<u64> {
        ReadAt::byte_len(self.as_slice())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl ReadAt for std::fs::File {
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn byte_len(&self) -> io::Result<u64> {
        (**self).byte_len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// Regular file of `size` bytes.
    File {
        /// Content length in bytes.
        size: u64,
    },
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink {
        /// Link target bytes.
        target: Vec<u8>,
    },
    /// Character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// One directory entry of the image, as found by [`Image::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root, `/`-separated, no leading `/` (the root itself is empty).
    pub path: Vec<u8>,
    /// Type and type-specific data.
    pub kind: EntryKind,
    /// Permission and special bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Extended attributes by full name (`user.x`, `security.capability`, ...).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Link count stored in the inode.
    pub nlink: u32,
    /// Inode number (nid); hard links share it.
    pub nid: u64,
}

/// A parsed inode.
#[derive(Debug, Clone)]
struct Inode {
    nid: u64,
    /// Byte offset of the inode in the image.
    offset: u64,
    header_size: u64,
    xattr_size: u64,
    layout: u16,
    mode: u16,
    size: u64,
    i_u: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: u32,
    nlink: u32,
}

/// An opened EROFS image.
#[derive(Debug)]
pub struct Image<S> {
    src: S,
    len: u64,
    blksz: u64,
    meta_start: u64,
    xattr_start: u64,
    root_nid: u64,
    build_time: u64,
    build_time_nsec: u32,
    data_size: u64,
}

/// Largest directory the reader loads.
const MAX_DIR_BYTES: u64 = 1 << 30;
/// Bound on path, xattr and link target bytes returned by one walk.
const WALK_BUDGET: u64 = 1 << 30;

impl<S: ReadAt> Image<S> {
    /// Opens and validates the superblock and the root inode.
    pub fn open(src: S) -> Result<Self, Error> {
        let len = src.byte_len().map_err(|e| Error::Read {
            offset: 0,
            source: e,
        })?;
        let mut sb = [0u8; SUPER_SIZE];
        src.read_exact_at(&mut sb, SUPER_OFFSET).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::BadSuperblock("image too short for a superblock".into())
            } else {
                Error::Read {
                    offset: SUPER_OFFSET,
                    source: e,
                }
            }
        })?;
        let f32 = |o| le32(&sb, o).unwrap_or(0);
        if f32(0) != MAGIC {
            return Err(Error::BadSuperblock(format!("bad magic {:#x}", f32(0))));
        }
        let bits = sb.get(12).copied().unwrap_or(0);
        if !(9..=16).contains(&bits) {
            return Err(Error::BadSuperblock(format!(
                "unsupported block size 2^{bits}"
            )));
        }
        let incompat = f32(80);
        // ZERO_PADDING only concerns compressed data, which is rejected per inode.
        if incompat & !1 != 0 {
            return Err(Error::BadSuperblock(format!(
                "unsupported incompatible features {incompat:#x}"
            )));
        }
        let blksz = 1u64 << bits;
        let blocks = u64::from(f32(36));
        if blocks.saturating_mul(blksz) > len {
            return Err(Error::BadSuperblock(format!(
                "{blocks} blocks do not fit an image of {len} bytes"
            )));
        }
        let img = Image {
            len,
            blksz,
            meta_start: u64::from(f32(40)).saturating_mul(blksz),
            xattr_start: u64::from(f32(44)).saturating_mul(blksz),
            root_nid: u64::from(le16(&sb, 14).unwrap_or(0)),
            build_time: le64(&sb, 24).unwrap_or(0),
            build_time_nsec: f32(32),
            data_size: blocks.saturating_mul(blksz),
            src,
        };
        let root = img.inode(img.root_nid)?;
        if root.mode & S_IFMT != S_IFDIR {
            return Err(Error::BadSuperblock("root inode is not a directory".into()));
        }
        Ok(img)
    }

    /// The image size the superblock declares (blocks × block size); bytes after it (such as
    /// an appended dm-verity tree) are not part of the file system.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.blksz
    }

    /// The root directory's nid.
    pub fn root_nid(&self) -> u64 {
        self.root_nid
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::Read {
                offset,
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        self.src
            .read_exact_at(buf, offset)
            .map_err(|e| Error::Read { offset, source: e })
    }

    fn inode(&self, nid: u64) -> Result<Inode, Error> {
        let corrupt = |r: &str| Error::Corrupt {
            nid,
            reason: r.to_string(),
        };
        let offset = nid
            .checked_mul(NID_SLOT)
            .and_then(|o| o.checked_add(self.meta_start))
            .ok_or_else(|| corrupt("nid out of range"))?;
        let mut b = [0u8; EXTENDED_SIZE as usize];
        self.read(
            b.get_mut(..COMPACT_SIZE as usize).unwrap_or(&mut []),
            offset,
        )?;
        let format = le16(&b, 0).unwrap_or(0);
        if format & !0xf != 0 {
            return Err(corrupt("unknown i_format bits"));
        }
        let extended = format & 1 == 1;
        let layout = (format >> 1) & 7;
        let f16 = |o| le16(&b, o).unwrap_or(0);
        let icount = f16(2);
        let mode = f16(4);
        let mut ino = Inode {
            nid,
            offset,
            header_size: COMPACT_SIZE,
            xattr_size: if icount == 0 {
                0
            } else {
                XATTR_IBODY_HEADER.saturating_add(u64::from(icount.saturating_sub(1)) * 4)
            },
            layout,
            mode,
            size: 0,
            i_u: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            nlink: 0,
        };
        if extended {
            self.read(&mut b, offset)?;
            let f32 = |o| le32(&b, o).unwrap_or(0);
            ino.header_size = EXTENDED_SIZE;
            ino.size = le64(&b, 8).unwrap_or(0);
            ino.i_u = f32(16);
            ino.uid = f32(24);
            ino.gid = f32(28);
            ino.mtime = le64(&b, 32).unwrap_or(0) as i64;
            ino.mtime_nsec = f32(40);
            ino.nlink = f32(44);
        } else {
            let f32 = |o| le32(&b, o).unwrap_or(0);
            ino.nlink = u32::from(f16(6));
            ino.size = u64::from(f32(8));
            ino.i_u = f32(16);
            ino.uid = u32::from(f16(24));
            ino.gid = u32::from(f16(26));
            ino.mtime = (self.build_time as i64).wrapping_add(i64::from(f32(12)));
            ino.mtime_nsec = self.build_time_nsec;
        }
        let has_data = matches!(mode & S_IFMT, S_IFREG | S_IFDIR | S_IFLNK);
        if !matches!(
            mode & S_IFMT,
            S_IFREG | S_IFDIR | S_IFLNK | S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK
        ) {
            return Err(corrupt("unknown file type in i_mode"));
        }
        if has_data && layout != LAYOUT_FLAT_PLAIN && layout != LAYOUT_FLAT_INLINE {
            return Err(corrupt("unsupported data layout (compressed or chunked)"));
        }
        if !has_data && ino.size != 0 {
            return Err(corrupt("special file with non-zero size"));
        }
        if ino.size > self.len.saturating_add(self.blksz) {
            return Err(corrupt("size larger than the image"));
        }
        Ok(ino)
    }

    /// Where the data lives: (bytes in blocks at raw_blkaddr, inline tail offset, tail len).
    fn data_map(&self, ino: &Inode) -> Result<(u64, u64, u64), Error> {
        let corrupt = |r: &str| Error::Corrupt {
            nid: ino.nid,
            reason: r.to_string(),
        };
        let start = u64::from(ino.i_u).saturating_mul(self.blksz);
        let (plain, tail) = if ino.layout == LAYOUT_FLAT_INLINE && ino.size > 0 {
            let nblocks = ino.size.div_ceil(self.blksz);
            let plain = nblocks.saturating_sub(1).saturating_mul(self.blksz);
            (plain, ino.size.saturating_sub(plain))
        } else {
            (ino.size, 0)
        };
        if plain > 0 && start.checked_add(plain).is_none_or(|e| e > self.len) {
            return Err(corrupt("data blocks beyond the end of the image"));
        }
        let tail_off = ino
            .offset
            .saturating_add(ino.header_size)
            .saturating_add(ino.xattr_size);
        if tail > 0
            && tail_off
                .checked_rem(self.blksz)
                .unwrap_or(0)
                .saturating_add(tail)
                > self.blksz
        {
            return Err(corrupt("inline data crosses a block boundary"));
        }
        Ok((plain, tail_off, tail))
    }

    fn read_data(&self, ino: &Inode, off: u64, buf: &mut [u8]) -> Result<(), Error> {
        let (plain, tail_off, _) = self.data_map(ino)?;
        let start = u64::from(ino.i_u).saturating_mul(self.blksz);
        let end = off.saturating_add(buf.len() as u64);
        if end > ino.size {
            return Err(Error::Corrupt {
                nid: ino.nid,
                reason: "read past the end of the file".into(),
            });
        }
        let split =
            usize::try_from(plain.saturating_sub(off).min(buf.len() as u64)).unwrap_or(buf.len());
        let (a, b) = buf.split_at_mut(split);
        if !a.is_empty() {
            self.read(a, start.saturating_add(off))?;
        }
        if !b.is_empty() {
            let within = off.saturating_add(split as u64).saturating_sub(plain);
            self.read(b, tail_off.saturating_add(within))?;
        }
        Ok(())
    }

    fn read_all(&self, ino: &Inode, max: u64) -> Result<Vec<u8>, Error> {
        if ino.size > max {
            return Err(Error::Corrupt {
                nid: ino.nid,
                reason: format!("size {} exceeds the limit of {max} bytes", ino.size),
            });
        }
        let mut v = vec![0u8; usize::try_from(ino.size).unwrap_or(0)];
        self.read_data(ino, 0, &mut v)?;
        Ok(v)
    }

    /// Reads a whole file (or symlink target) into memory; fails if larger than `max` bytes.
    pub fn read_file(&self, nid: u64, max: u64) -> Result<Vec<u8>, Error> {
        let ino = self.inode(nid)?;
        self.read_all(&ino, max)
    }

    /// Streams a file's content into `w`; returns the byte count.
    pub fn copy_file<W: Write>(&self, nid: u64, mut w: W) -> Result<u64, Error> {
        let ino = self.inode(nid)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < ino.size {
            let n =
                usize::try_from((ino.size.saturating_sub(off)).min(buf.len() as u64)).unwrap_or(0);
            let chunk = buf.get_mut(..n).unwrap_or(&mut []);
            self.read_data(&ino, off, chunk)?;
            w.write_all(chunk).map_err(Error::Write)?;
            off = off.saturating_add(n as u64);
        }
        Ok(off)
    }

    fn xattr_entry(
        &self,
        buf: &[u8],
        pos: usize,
        nid: u64,
    ) -> Result<(Vec<u8>, Vec<u8>, usize), Error> {
        let corrupt = |r: &str| Error::Corrupt {
            nid,
            reason: r.to_string(),
        };
        let name_len = usize::from(
            *buf.get(pos)
                .ok_or_else(|| corrupt("xattr entry truncated"))?,
        );
        let index = *buf
            .get(pos.saturating_add(1))
            .ok_or_else(|| corrupt("xattr entry truncated"))?;
        let vlen = usize::from(
            le16(buf, pos.saturating_add(2)).ok_or_else(|| corrupt("xattr entry truncated"))?,
        );
        let prefix = xattr_prefix(index).ok_or_else(|| corrupt("unknown xattr name index"))?;
        let ns = pos.saturating_add(4);
        let vs = ns.saturating_add(name_len);
        let ve = vs.saturating_add(vlen);
        let suffix = buf
            .get(ns..vs)
            .ok_or_else(|| corrupt("xattr name out of range"))?;
        let value = buf
            .get(vs..ve)
            .ok_or_else(|| corrupt("xattr value out of range"))?;
        let mut name = prefix.to_vec();
        name.extend_from_slice(suffix);
        let size = 4usize
            .saturating_add(name_len)
            .saturating_add(vlen)
            .next_multiple_of(4);
        Ok((name, value.to_vec(), size))
    }

    fn xattrs(&self, ino: &Inode) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
        let mut out = BTreeMap::new();
        if ino.xattr_size == 0 {
            return Ok(out);
        }
        let corrupt = |r: &str| Error::Corrupt {
            nid: ino.nid,
            reason: r.to_string(),
        };
        let mut body = vec![0u8; usize::try_from(ino.xattr_size).unwrap_or(0)];
        self.read(&mut body, ino.offset.saturating_add(ino.header_size))?;
        let shared = usize::from(
            *body
                .get(4)
                .ok_or_else(|| corrupt("xattr header truncated"))?,
        );
        let mut pos = 12usize;
        for _ in 0..shared {
            let id = le32(&body, pos).ok_or_else(|| corrupt("shared xattr ids out of range"))?;
            pos = pos.saturating_add(4);
            let off = self
                .xattr_start
                .saturating_add(u64::from(id).saturating_mul(4));
            let mut hdr = [0u8; 4];
            self.read(&mut hdr, off)?;
            let total = 4usize
                .saturating_add(usize::from(hdr[0]))
                .saturating_add(usize::from(le16(&hdr, 2).unwrap_or(0)));
            let mut e = vec![0u8; total];
            self.read(&mut e, off)?;
            let (name, value, _) = self.xattr_entry(&e, 0, ino.nid)?;
            out.insert(name, value);
        }
        while pos < body.len() {
            let (name, value, size) = self.xattr_entry(&body, pos, ino.nid)?;
            out.insert(name, value);
            pos = pos.saturating_add(size);
        }
        Ok(out)
    }

    /// Parses one directory into (name, nid, file type), checking structure and order.
    fn dir_entries(&self, ino: &Inode, parent: u64) -> Result<Vec<(Vec<u8>, u64, u8)>, Error> {
        let corrupt = |r: String| Error::Corrupt {
            nid: ino.nid,
            reason: r,
        };
        let content = self.read_all(ino, MAX_DIR_BYTES)?;
        let mut out: Vec<(Vec<u8>, u64, u8)> = Vec::new();
        let bs = usize::try_from(self.blksz).unwrap_or(4096);
        for block in content.chunks(bs) {
            let first = usize::from(
                le16(block, 8).ok_or_else(|| corrupt("directory block too short".into()))?,
            );
            if first < DIRENT_SIZE as usize
                || !first.is_multiple_of(DIRENT_SIZE as usize)
                || first >= block.len()
            {
                return Err(corrupt(format!("bad first nameoff {first}")));
            }
            let count = first.checked_div(DIRENT_SIZE as usize).unwrap_or(0);
            for i in 0..count {
                let d = i.saturating_mul(DIRENT_SIZE as usize);
                let nid = le64(block, d).unwrap_or(0);
                let off = usize::from(le16(block, d.saturating_add(8)).unwrap_or(0));
                let ft = block.get(d.saturating_add(10)).copied().unwrap_or(0);
                let end = if i.saturating_add(1) < count {
                    usize::from(le16(block, d.saturating_add(20)).unwrap_or(0))
                } else {
                    let rest = block.get(off..).unwrap_or(&[]);
                    off.saturating_add(rest.iter().position(|b| *b == 0).unwrap_or(rest.len()))
                };
                let name = block
                    .get(off..end)
                    .filter(|n| !n.is_empty() && n.len() <= NAME_LEN)
                    .ok_or_else(|| corrupt(format!("bad name offsets {off}..{end}")))?;
                if name.contains(&b'/') || name.contains(&0) {
                    return Err(corrupt("name contains '/' or NUL".into()));
                }
                if let Some((prev, _, _)) = out.last() {
                    if prev.as_slice() >= name {
                        return Err(corrupt("directory entries not strictly sorted".into()));
                    }
                }
                out.push((name.to_vec(), nid, ft));
            }
        }
        let find = |n: &[u8]| out.iter().find(|(name, _, _)| name == n).map(|e| e.1);
        if find(b".") != Some(ino.nid) || find(b"..") != Some(parent) {
            return Err(corrupt("'.' or '..' missing or wrong".into()));
        }
        Ok(out)
    }

    fn entry(&self, path: Vec<u8>, ino: &Inode) -> Result<Entry, Error> {
        let corrupt = |r: &str| Error::Corrupt {
            nid: ino.nid,
            reason: r.to_string(),
        };
        let kind = match ino.mode & S_IFMT {
            S_IFREG => EntryKind::File { size: ino.size },
            S_IFDIR => EntryKind::Dir,
            S_IFLNK => EntryKind::Symlink {
                target: self.read_all(ino, 4096)?,
            },
            S_IFCHR | S_IFBLK => {
                let (major, minor) = decode_dev(ino.i_u);
                if ino.mode & S_IFMT == S_IFCHR {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            S_IFIFO => EntryKind::Fifo,
            S_IFSOCK => EntryKind::Socket,
            _ => return Err(corrupt("unknown file type")),
        };
        Ok(Entry {
            path,
            kind,
            mode: u32::from(ino.mode & 0o7777),
            uid: ino.uid,
            gid: ino.gid,
            mtime: ino.mtime,
            mtime_nsec: ino.mtime_nsec,
            xattrs: self.xattrs(ino)?,
            nlink: ino.nlink,
            nid: ino.nid,
        })
    }

    /// Walks the whole tree: the root (empty path) first, then each directory's entries in
    /// on-disk (sorted) order, subdirectories expanded depth-first.
    ///
    /// Every directory must be reachable exactly once (no loops, no hard-linked
    /// directories); paths are limited to [`crate::MAX_PATH`] bytes and the xattrs and link
    /// targets returned to 1 GiB in total (hard links repeat them).
    pub fn walk(&self) -> Result<Vec<Entry>, Error> {
        let root = self.inode(self.root_nid)?;
        let mut out = vec![self.entry(Vec::new(), &root)?];
        let mut budget: u64 = WALK_BUDGET;
        let mut seen = HashSet::new();
        seen.insert(self.root_nid);
        let mut stack = vec![(root, self.root_nid, Vec::new())];
        while let Some((dir, parent, prefix)) = stack.pop() {
            let mut subdirs = Vec::new();
            for (name, nid, ft) in self.dir_entries(&dir, parent)? {
                if name == b"." || name == b".." {
                    continue;
                }
                let child = self.inode(nid)?;
                let expect = match child.mode & S_IFMT {
                    S_IFREG => FT_REG,
                    S_IFDIR => FT_DIR,
                    S_IFCHR => FT_CHR,
                    S_IFBLK => FT_BLK,
                    S_IFIFO => FT_FIFO,
                    S_IFSOCK => FT_SOCK,
                    _ => FT_SYMLINK,
                };
                if ft != expect {
                    return Err(Error::Corrupt {
                        nid,
                        reason: format!("dirent file type {ft} does not match the inode mode"),
                    });
                }
                let mut path = prefix.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&name);
                if path.len() > crate::MAX_PATH {
                    return Err(Error::Corrupt {
                        nid,
                        reason: "path longer than 16384 bytes".into(),
                    });
                }
                let entry = self.entry(path.clone(), &child)?;
                let base = match &entry.kind {
                    EntryKind::Symlink { target } => target.len().saturating_add(path.len()),
                    _ => path.len(),
                };
                let cost = entry.xattrs.iter().fold(base as u64, |acc, (k, v)| {
                    acc.saturating_add(k.len() as u64)
                        .saturating_add(v.len() as u64)
                });
                budget = budget.checked_sub(cost).ok_or_else(|| Error::Corrupt {
                    nid,
                    reason: "walk output exceeds 1 GiB of names, xattrs and link targets".into(),
                })?;
                out.push(entry);
                if child.mode & S_IFMT == S_IFDIR {
                    if !seen.insert(nid) {
                        return Err(Error::Corrupt {
                            nid,
                            reason: "directory reachable twice (loop or hard-linked directory)"
                                .into(),
                        });
                    }
                    subdirs.push((child, dir.nid, path));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }
}
