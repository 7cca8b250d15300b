//! Metadata layout and serialisation: directory blocks, inodes, superblock.
//!
//! Image order: block 0 (superblock at 1024), regular file full blocks (tar order), directory and
//! symlink blocks that are not inlined (inode order), then the metadata area (`meta_blkaddr`)
//! holding every inode with its inline xattrs and inline tail, root first (nid 0).

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

use crate::build::Sink;
use crate::error::Error;
use crate::format::*;
use crate::tree::{Inode, Kind, Tree};

/// What the superblock needs.
#[derive(Debug)]
pub(crate) struct Summary {
    pub image_size: u64,
    pub inodes: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub root_nid: u16,
}

/// Per-inode layout decisions.
#[derive(Debug, Clone, Copy)]
struct Plan {
    ino: usize,
    /// Parent directory inode (directories only; the root is its own parent).
    parent: usize,
    nid: u64,
    extended: bool,
    layout: u16,
    xattr_size: u64,
    inline_len: u64,
    blkaddr: u32,
    size: u64,
    nlink: u32,
}

fn over(what: &str) -> Error {
    Error::LimitExceeded(what.to_string())
}

fn add(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b)
        .ok_or_else(|| over("image offsets overflow u64"))
}

fn align(v: u64, to: u64) -> Result<u64, Error> {
    let r = v.checked_rem(to).unwrap_or(0);
    if r == 0 {
        Ok(v)
    } else {
        add(v, to.saturating_sub(r))
    }
}

/// Sorted directory entries including `.` and `..`: (name, inode index).
fn dir_entries<'a>(
    tree: &'a Tree,
    inode: &'a Inode,
    ino: usize,
    parent: usize,
) -> Vec<(&'a [u8], usize)> {
    let _ = tree;
    let mut v: Vec<(&[u8], usize)> = vec![(b".", ino), (b"..", parent)];
    if let Kind::Dir(d) = &inode.kind {
        v.extend(d.children.iter().map(|(n, i)| (n.as_slice(), *i)));
    }
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// Splits sorted entries into directory blocks: (first, end) index ranges.
fn dir_blocks(names: &[(&[u8], usize)]) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut start = 0usize;
    let mut used = 0u64;
    for (i, (name, _)) in names.iter().enumerate() {
        let need = DIRENT_SIZE.saturating_add(name.len() as u64);
        if used.saturating_add(need) > BLOCK_SIZE {
            blocks.push((start, i));
            start = i;
            used = 0;
        }
        used = used.saturating_add(need);
    }
    blocks.push((start, names.len()));
    blocks
}

fn block_used(names: &[(&[u8], usize)]) -> u64 {
    names.iter().fold(0u64, |acc, (n, _)| {
        acc.saturating_add(DIRENT_SIZE)
            .saturating_add(n.len() as u64)
    })
}

/// Directory size in bytes: full blocks plus the used part of the last one.
fn dir_size(names: &[(&[u8], usize)]) -> u64 {
    let blocks = dir_blocks(names);
    let full = (blocks.len() as u64).saturating_sub(1);
    let last = blocks
        .last()
        .and_then(|(s, e)| names.get(*s..*e))
        .map_or(0, block_used);
    full.saturating_mul(BLOCK_SIZE).saturating_add(last)
}

fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::Dir(_) => FT_DIR,
        Kind::File { .. } => FT_REG,
        Kind::Symlink(_) => FT_SYMLINK,
        Kind::Char(_) => FT_CHR,
        Kind::Block(_) => FT_BLK,
        Kind::Fifo => FT_FIFO,
    }
}

/// Serialises a directory: blocks of dirents followed by their names.
fn dir_content(tree: &Tree, names: &[(&[u8], usize)], nids: &[u64]) -> Result<Vec<u8>, Error> {
    let blocks = dir_blocks(names);
    let mut out = Vec::new();
    let nblocks = blocks.len();
    for (bi, (s, e)) in blocks.into_iter().enumerate() {
        let block_start = out.len();
        let chunk = names.get(s..e).unwrap_or(&[]);
        let mut nameoff = (chunk.len() as u64).saturating_mul(DIRENT_SIZE);
        for (name, ino) in chunk {
            let nid = *nids
                .get(*ino)
                .ok_or_else(|| over("dangling directory entry"))?;
            let ft = tree.inodes.get(*ino).map_or(0, |i| file_type(&i.kind));
            out.extend_from_slice(&nid.to_le_bytes());
            let off = u16::try_from(nameoff).map_err(|_| over("directory block overflow"))?;
            out.extend_from_slice(&off.to_le_bytes());
            out.push(ft);
            out.push(0);
            nameoff = nameoff.saturating_add(name.len() as u64);
        }
        for (name, _) in chunk {
            out.extend_from_slice(name);
        }
        if bi.saturating_add(1) < nblocks {
            out.resize(block_start.saturating_add(BLOCK_SIZE as usize), 0);
        }
    }
    Ok(out)
}

/// Inline xattr body size (0 when there are none).
pub(crate) fn xattr_size_of(xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<u64, Error> {
    if xattrs.is_empty() {
        return Ok(0);
    }
    let mut size = XATTR_IBODY_HEADER;
    for (name, value) in xattrs {
        let suffix = xattr_split(name).map_or(name.len(), |(_, s)| s.len());
        let e = XATTR_ENTRY_HEADER
            .saturating_add(suffix as u64)
            .saturating_add(value.len() as u64);
        size = add(size, align(e, 4)?)?;
    }
    // i_xattr_icount = 1 + (size - 12) / 4 must fit 16 bits.
    if (size.saturating_sub(XATTR_IBODY_HEADER) / 4).saturating_add(1) > u64::from(u16::MAX) {
        return Err(over("extended attributes of one inode exceed 256 KiB"));
    }
    Ok(size)
}

fn write_xattrs(inode: &Inode, out: &mut Vec<u8>) -> Result<(), Error> {
    if inode.xattrs.is_empty() {
        return Ok(());
    }
    out.extend_from_slice(&[0u8; XATTR_IBODY_HEADER as usize]);
    for (name, value) in &inode.xattrs {
        let (index, suffix) = xattr_split(name).ok_or_else(|| over("unstorable xattr"))?;
        let start = out.len();
        out.push(u8::try_from(suffix.len()).map_err(|_| over("xattr name too long"))?);
        out.push(index);
        let vlen = u16::try_from(value.len()).map_err(|_| over("xattr value too large"))?;
        out.extend_from_slice(&vlen.to_le_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        while !out.len().saturating_sub(start).is_multiple_of(4) {
            out.push(0);
        }
    }
    Ok(())
}

fn mode_bits(inode: &Inode) -> u16 {
    let fmt = match inode.kind {
        Kind::Dir(_) => S_IFDIR,
        Kind::File { .. } => S_IFREG,
        Kind::Symlink(_) => S_IFLNK,
        Kind::Char(_) => S_IFCHR,
        Kind::Block(_) => S_IFBLK,
        Kind::Fifo => S_IFIFO,
    };
    fmt | (inode.meta.perm & 0o7777)
}

fn inode_header(inode: &Inode, p: &Plan, ino_no: u32) -> Result<Vec<u8>, Error> {
    let icount: u16 = if p.xattr_size == 0 {
        0
    } else {
        u16::try_from((p.xattr_size.saturating_sub(XATTR_IBODY_HEADER) / 4).saturating_add(1))
            .map_err(|_| over("xattr icount"))?
    };
    let i_u = match inode.kind {
        Kind::Char(d) | Kind::Block(d) => d,
        _ => p.blkaddr,
    };
    let mut h = Vec::with_capacity(EXTENDED_SIZE as usize);
    h.extend_from_slice(&((p.layout << 1) | u16::from(p.extended)).to_le_bytes());
    h.extend_from_slice(&icount.to_le_bytes());
    h.extend_from_slice(&mode_bits(inode).to_le_bytes());
    let m = &inode.meta;
    if p.extended {
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&p.size.to_le_bytes());
        h.extend_from_slice(&i_u.to_le_bytes());
        h.extend_from_slice(&ino_no.to_le_bytes());
        h.extend_from_slice(&m.uid.to_le_bytes());
        h.extend_from_slice(&m.gid.to_le_bytes());
        h.extend_from_slice(&m.mtime.to_le_bytes());
        h.extend_from_slice(&m.mtime_nsec.to_le_bytes());
        h.extend_from_slice(&p.nlink.to_le_bytes());
        h.extend_from_slice(&[0u8; 16]);
    } else {
        let small = |v: u64| u32::try_from(v).map_err(|_| over("compact inode field"));
        h.extend_from_slice(
            &u16::try_from(p.nlink)
                .map_err(|_| over("nlink"))?
                .to_le_bytes(),
        );
        h.extend_from_slice(&small(p.size)?.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&i_u.to_le_bytes());
        h.extend_from_slice(&ino_no.to_le_bytes());
        h.extend_from_slice(&u16::try_from(m.uid).map_err(|_| over("uid"))?.to_le_bytes());
        h.extend_from_slice(&u16::try_from(m.gid).map_err(|_| over("gid"))?.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
    }
    Ok(h)
}

/// Orders inodes (depth-first, names sorted, root first), decides layouts, writes directory
/// and symlink blocks and the metadata area. `sink` must be block aligned after file data.
pub(crate) fn write<W: Write + Seek>(tree: &Tree, sink: &mut Sink<W>) -> Result<Summary, Error> {
    let n = tree.inodes.len();
    let mut slot = vec![usize::MAX; n];
    let mut plans: Vec<Plan> = Vec::new();
    let mut stack = vec![(0usize, 0usize)];
    while let Some((ino, parent)) = stack.pop() {
        let s = slot.get_mut(ino).ok_or_else(|| over("bad inode index"))?;
        if *s != usize::MAX {
            continue; // a hard link seen before
        }
        *s = plans.len();
        let inode = tree
            .inodes
            .get(ino)
            .ok_or_else(|| over("bad inode index"))?;
        let mut nlink = inode.links;
        if let Kind::Dir(d) = &inode.kind {
            let subdirs = d
                .children
                .values()
                .filter(|c| matches!(tree.inodes.get(**c).map(|i| &i.kind), Some(Kind::Dir(_))))
                .count();
            nlink = u32::try_from(subdirs)
                .ok()
                .and_then(|s| s.checked_add(2))
                .ok_or_else(|| over("too many subdirectories"))?;
            for child in d.children.values().rev() {
                stack.push((*child, ino));
            }
        }
        plans.push(Plan {
            ino,
            parent,
            nid: 0,
            extended: false,
            layout: LAYOUT_FLAT_PLAIN,
            xattr_size: 0,
            inline_len: 0,
            blkaddr: 0,
            size: 0,
            nlink,
        });
    }

    // Sizes and layouts; directory/symlink blocks go right after the file data.
    let mut next_block = u64::from(sink.block()?);
    for p in &mut plans {
        let inode = tree
            .inodes
            .get(p.ino)
            .ok_or_else(|| over("bad inode index"))?;
        p.xattr_size = xattr_size_of(&inode.xattrs)?;
        p.size = match &inode.kind {
            Kind::File {
                size,
                blkaddr,
                tail,
            } => {
                p.blkaddr = *blkaddr;
                if let Some(t) = tail {
                    p.layout = LAYOUT_FLAT_INLINE;
                    p.inline_len = t.len() as u64;
                }
                *size
            }
            Kind::Dir(_) => dir_size(&dir_entries(tree, inode, p.ino, p.parent)),
            Kind::Symlink(t) => t.len() as u64,
            _ => 0,
        };
        let m = &inode.meta;
        p.extended = p.size > u64::from(u32::MAX)
            || m.uid > u32::from(u16::MAX)
            || m.gid > u32::from(u16::MAX)
            || p.nlink > u32::from(u16::MAX)
            || m.mtime != 0
            || m.mtime_nsec != 0;
        if matches!(inode.kind, Kind::Dir(_) | Kind::Symlink(_)) {
            let hdr = if p.extended {
                EXTENDED_SIZE
            } else {
                COMPACT_SIZE
            };
            let tail = p.size % BLOCK_SIZE;
            let mut nblocks = p.size / BLOCK_SIZE;
            if tail != 0 && hdr.saturating_add(p.xattr_size).saturating_add(tail) <= BLOCK_SIZE {
                p.layout = LAYOUT_FLAT_INLINE;
                p.inline_len = tail;
            } else if tail != 0 {
                nblocks = nblocks.saturating_add(1);
            }
            if nblocks > 0 {
                p.blkaddr =
                    u32::try_from(next_block).map_err(|_| over("image exceeds 2^32 blocks"))?;
                next_block = add(next_block, nblocks)?;
            }
        }
    }
    let meta_blkaddr = u32::try_from(next_block).map_err(|_| over("image exceeds 2^32 blocks"))?;

    // nids: 32-byte slots; a record that fits a block never crosses a block boundary.
    let mut cursor = 0u64;
    let mut nids = vec![0u64; n];
    for p in &mut plans {
        let hdr = if p.extended {
            EXTENDED_SIZE
        } else {
            COMPACT_SIZE
        };
        let rec = add(add(hdr, p.xattr_size)?, p.inline_len)?;
        cursor = align(cursor, NID_SLOT)?;
        if rec <= BLOCK_SIZE && (cursor % BLOCK_SIZE).saturating_add(rec) > BLOCK_SIZE {
            cursor = align(cursor, BLOCK_SIZE)?;
        }
        p.nid = cursor / NID_SLOT;
        if let Some(slot) = nids.get_mut(p.ino) {
            *slot = p.nid;
        }
        cursor = add(cursor, rec)?;
    }
    let meta_end_block = add(
        u64::from(meta_blkaddr),
        align(cursor, BLOCK_SIZE)? / BLOCK_SIZE,
    )?;
    let blocks = u32::try_from(meta_end_block).map_err(|_| over("image exceeds 2^32 blocks"))?;

    // Directory and symlink blocks.
    for p in &plans {
        if p.blkaddr == 0 || p.size == 0 {
            continue;
        }
        let inode = tree
            .inodes
            .get(p.ino)
            .ok_or_else(|| over("bad inode index"))?;
        let content = match &inode.kind {
            Kind::Dir(_) => dir_content(tree, &dir_entries(tree, inode, p.ino, p.parent), &nids)?,
            Kind::Symlink(t) => t.clone(),
            _ => continue,
        };
        let in_blocks = content.len().saturating_sub(p.inline_len as usize);
        sink.write(content.get(..in_blocks).unwrap_or(&[]))?;
        sink.pad_block()?;
    }
    if sink.pos != u64::from(meta_blkaddr).saturating_mul(BLOCK_SIZE) {
        return Err(over("internal layout mismatch before metadata"));
    }

    // Metadata area.
    let meta_start = sink.pos;
    let mut rec = Vec::with_capacity(BLOCK_SIZE as usize);
    for (i, p) in plans.iter().enumerate() {
        let inode = tree
            .inodes
            .get(p.ino)
            .ok_or_else(|| over("bad inode index"))?;
        let at = add(meta_start, p.nid.saturating_mul(NID_SLOT))?;
        sink.zeros(at.saturating_sub(sink.pos))?;
        let ino_no =
            u32::try_from(i.saturating_add(1)).map_err(|_| over("more than 2^32 inodes"))?;
        rec.clear();
        rec.extend_from_slice(&inode_header(inode, p, ino_no)?);
        write_xattrs(inode, &mut rec)?;
        if p.inline_len > 0 {
            let content = match &inode.kind {
                Kind::Dir(_) => {
                    dir_content(tree, &dir_entries(tree, inode, p.ino, p.parent), &nids)?
                }
                Kind::Symlink(t) => t.clone(),
                Kind::File { tail: Some(t), .. } => t.to_vec(),
                _ => Vec::new(),
            };
            let from = content.len().saturating_sub(p.inline_len as usize);
            rec.extend_from_slice(content.get(from..).unwrap_or(&[]));
        }
        sink.write(&rec)?;
    }
    sink.pad_block()?;
    if sink.pos != u64::from(blocks).saturating_mul(BLOCK_SIZE) {
        return Err(over("internal layout mismatch after metadata"));
    }
    let root_nid = u16::try_from(plans.first().map_or(0, |p| p.nid))
        .map_err(|_| over("root nid exceeds 16 bits"))?;
    Ok(Summary {
        image_size: sink.pos,
        inodes: plans.len() as u64,
        blocks,
        meta_blkaddr,
        root_nid,
    })
}

/// Writes the superblock at offset 1024 of the image (which starts at `base` in `out`) and
/// leaves `out` positioned at the image end.
pub(crate) fn write_superblock<W: Write + Seek>(
    out: &mut W,
    base: u64,
    s: &Summary,
) -> Result<(), Error> {
    let mut sb = [0u8; SUPER_SIZE];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = sb.get_mut(off..off.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &MAGIC.to_le_bytes());
    // checksum (4), feature_compat (8): 0; no SB_CHKSUM, no MTIME.
    put(12, &[BLOCK_BITS]);
    put(14, &s.root_nid.to_le_bytes());
    put(16, &s.inodes.to_le_bytes());
    // build_time (24) and build_time_nsec (32): 0.
    put(36, &s.blocks.to_le_bytes());
    put(40, &s.meta_blkaddr.to_le_bytes());
    // xattr_blkaddr (44), uuid (48), volume_name (64), feature_incompat (80): 0.
    out.seek(SeekFrom::Start(add(base, SUPER_OFFSET)?))
        .map_err(Error::Write)?;
    out.write_all(&sb).map_err(Error::Write)?;
    out.seek(SeekFrom::Start(add(base, s.image_size)?))
        .map_err(Error::Write)?;
    out.flush().map_err(Error::Write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_size_matches_content() {
        let names: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("name-{i:05}").into_bytes())
            .collect();
        let mut entries: Vec<(&[u8], usize)> = names.iter().map(|n| (n.as_slice(), 0)).collect();
        entries.push((b".", 0));
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let tree = Tree::new(10);
        let content = dir_content(&tree, &entries, &[7]).unwrap();
        assert_eq!(content.len() as u64, dir_size(&entries));
        assert!(content.len() > 4096 * 5);
        // First block: nameoff of the first dirent / 12 = dirent count.
        let first_off = u16::from_le_bytes([content[8], content[9]]);
        assert_eq!(u64::from(first_off) % DIRENT_SIZE, 0);
    }
}
