//! Reading the tar stream: entries into the [`Tree`], file data straight into the image.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use crate::error::{lossy, Error};
use crate::format::{encode_dev, xattr_split, BLOCK_SIZE, EXTENDED_SIZE, NAME_LEN};
use crate::tree::{Meta, NewKind, Tree};
use crate::{layout, BuildOptions, BuildSummary};

/// Copy buffer size for file data.
const BUF_SIZE: usize = 1 << 20;
/// Capacity of the input and output buffers. Small on purpose: reads and writes of file data
/// at least this large bypass them, so a file's bytes are copied once from the tar stream into
/// the copy buffer and once out of it, not through a buffer on either side as well (the
/// headers and metadata they are for are small). Does not change a byte of the image.
const STREAM_BUF: usize = 64 << 10;
/// Largest xattr value EROFS can store (`e_value_size` is 16 bits).
const XATTR_VALUE_MAX: usize = 65535;
/// Total bytes of file tails kept in memory for inlining; later tails are block-padded in
/// the data area. Part of the format: changing it changes images.
const INLINE_TAIL_BUDGET: u64 = if cfg!(test) { 8192 } else { 256 << 20 };
/// Longest symlink target Linux accepts (PATH_MAX - 1).
const SYMLINK_MAX: usize = 4095;

/// Output with position tracking and optional holes for all-zero blocks.
pub(crate) struct Sink<W: Write + Seek> {
    w: BufWriter<W>,
    /// Position relative to the start of the image.
    pub pos: u64,
    /// Bytes to skip (seek over) before the next write.
    hole: u64,
    sparse: bool,
}

static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

impl<W: Write + Seek> Sink<W> {
    fn new(w: W, sparse: bool) -> Sink<W> {
        Sink {
            w: BufWriter::with_capacity(STREAM_BUF, w),
            pos: 0,
            hole: 0,
            sparse,
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Error> {
        self.pos = self
            .pos
            .checked_add(n as u64)
            .ok_or_else(|| Error::LimitExceeded("image size overflows u64".into()))?;
        Ok(())
    }

    fn fill_hole(&mut self) -> Result<(), Error> {
        if self.hole > 0 {
            let off = i64::try_from(self.hole)
                .map_err(|_| Error::LimitExceeded("hole too large".into()))?;
            self.w.seek(SeekFrom::Current(off)).map_err(Error::Write)?;
            self.hole = 0;
        }
        Ok(())
    }

    /// Writes metadata or data bytes.
    pub(crate) fn write(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.fill_hole()?;
        self.w.write_all(buf).map_err(Error::Write)?;
        self.advance(buf.len())
    }

    /// Writes `n` zero bytes.
    pub(crate) fn zeros(&mut self, mut n: u64) -> Result<(), Error> {
        while n > 0 {
            let k = n.min(BLOCK_SIZE);
            let chunk = ZEROS.get(..k as usize).unwrap_or(&[]);
            self.write(chunk)?;
            n = n.saturating_sub(k);
        }
        Ok(())
    }

    /// Pads with zeros to the next block boundary.
    pub(crate) fn pad_block(&mut self) -> Result<(), Error> {
        let rem = self.pos % BLOCK_SIZE;
        if rem != 0 {
            self.zeros(BLOCK_SIZE.saturating_sub(rem))?;
        }
        Ok(())
    }

    /// Writes file data; with `sparse`, whole zero blocks become holes. `buf` must start on a
    /// block boundary.
    fn data(&mut self, buf: &[u8]) -> Result<(), Error> {
        if !self.sparse {
            return self.write(buf);
        }
        for chunk in buf.chunks(BLOCK_SIZE as usize) {
            if chunk.len() as u64 == BLOCK_SIZE && chunk.iter().all(|b| *b == 0) {
                self.hole = self.hole.saturating_add(BLOCK_SIZE);
                self.advance(chunk.len())?;
            } else {
                self.write(chunk)?;
            }
        }
        Ok(())
    }

    /// Flushes and returns the writer; the caller writes the superblock.
    pub(crate) fn finish(mut self) -> Result<W, Error> {
        self.fill_hole()?;
        self.w.flush().map_err(Error::Write)?;
        self.w
            .into_inner()
            .map_err(|e| Error::Write(io::Error::other(e.to_string())))
    }

    /// Current block number (position must be block aligned).
    pub(crate) fn block(&self) -> Result<u32, Error> {
        u32::try_from(self.pos / BLOCK_SIZE)
            .map_err(|_| Error::LimitExceeded("image exceeds 2^32 blocks".into()))
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An all-NUL or all-space numeric header field reads as 0, as in GNU tar, Go's archive/tar and
/// Python's tarfile (image builders leave unused fields empty); anything else must parse.
fn or_zero(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if raw.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        parsed
    }
}

fn invalid(path: &[u8], field: &'static str, detail: impl ToString) -> Error {
    Error::InvalidHeader {
        path: lossy(path),
        field,
        detail: detail.to_string(),
    }
}

/// Parses a PAX time ("-12.5", "1700000000.123456789") into (seconds, nanoseconds).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        let digit = u32::from(d.checked_sub(b'0')?);
        let scale = 10u32.checked_pow(8u32.checked_sub(i as u32)?)?;
        nsec = nsec.checked_add(digit.checked_mul(scale)?)?;
    }
    if !neg {
        return Some((secs, nsec));
    }
    // -12.5 is 12.5 seconds before the epoch: secs -13, nsec 500000000.
    if nsec == 0 {
        Some((secs.checked_neg()?, 0))
    } else {
        Some((
            secs.checked_neg()?.checked_sub(1)?,
            1_000_000_000u32.checked_sub(nsec)?,
        ))
    }
}

/// Decodes `%XX` escapes (libarchive's xattr name encoding).
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hi = (*it.next()? as char).to_digit(16)?;
            let lo = (*it.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi.checked_mul(16)?.checked_add(lo)?).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Decodes standard base64 with optional padding (libarchive's xattr value encoding).
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len().saturating_mul(3) / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c.checked_sub(b'A')?,
            b'a'..=b'z' => c.checked_sub(b'a')?.checked_add(26)?,
            b'0'..=b'9' => c.checked_sub(b'0')?.checked_add(52)?,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits = bits.checked_add(6)?;
        if bits >= 8 {
            bits = bits.checked_sub(8)?;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1u32 << bits).wrapping_sub(1);
    }
    Some(out)
}

fn add_xattr(
    xattrs: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    path: &[u8],
    name: Vec<u8>,
    value: Vec<u8>,
) -> Result<(), Error> {
    let bad = |reason| Error::InvalidXattr {
        path: lossy(path),
        name: lossy(&name),
        reason,
    };
    if xattr_split(&name).is_none() {
        return Err(bad("namespace not storable in EROFS"));
    }
    if name.len() > NAME_LEN {
        return Err(bad("name longer than 255 bytes"));
    }
    if value.len() > XATTR_VALUE_MAX {
        return Err(bad("value larger than 65535 bytes"));
    }
    xattrs.insert(name, value);
    Ok(())
}

/// See [`crate::build_from_tar`].
pub(crate) fn build<R: Read, W: Write + Seek>(
    tar: R,
    mut out: W,
    opts: &BuildOptions,
) -> Result<BuildSummary, Error> {
    let base = out.stream_position().map_err(Error::Write)?;
    let mut sink = Sink::new(out, opts.sparse);
    // Block 0 holds the superblock at 1024, written last.
    sink.zeros(BLOCK_SIZE)?;

    let mut tree = Tree::new(opts.max_inodes);
    let mut archive = tar::Archive::new(BufReader::with_capacity(STREAM_BUF, tar));
    let mut buf = vec![0u8; BUF_SIZE];
    let mut files = 0u64;
    let mut tail_budget = INLINE_TAIL_BUDGET;
    let mut data_bytes = 0u64;
    let mut last = String::new();
    let entries = archive.entries().map_err(|e| Error::Tar {
        after: String::new(),
        source: e,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Tar {
            after: last.clone(),
            source: e,
        })?;
        let path = entry.path_bytes().into_owned();
        let header = entry.header();
        let typeflag = header.as_old().linkflag[0];
        if typeflag == b'g' {
            // Global PAX headers carry no entry; their defaults are ignored (documented).
            last = lossy(&path);
            continue;
        }
        let old = header.as_old();
        let mode = or_zero(&old.mode, header.mode().map(u64::from))
            .map_err(|e| invalid(&path, "mode", e))?;
        let uid = or_zero(&old.uid, header.uid()).map_err(|e| invalid(&path, "uid", e))?;
        let gid = or_zero(&old.gid, header.gid()).map_err(|e| invalid(&path, "gid", e))?;
        let header_mtime =
            or_zero(&old.mtime, header.mtime()).map_err(|e| invalid(&path, "mtime", e))?;
        let uid = u32::try_from(uid).map_err(|_| invalid(&path, "uid", "exceeds 32 bits"))?;
        let gid = u32::try_from(gid).map_err(|_| invalid(&path, "gid", "exceeds 32 bits"))?;
        let mut meta = Meta {
            perm: (mode & 0o7777) as u16,
            uid,
            gid,
            mtime: 0,
            mtime_nsec: 0,
        };
        let dev = match typeflag {
            b'3' | b'4' => {
                let major = header
                    .device_major()
                    .map_err(|e| invalid(&path, "devmajor", e))?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(|e| invalid(&path, "devminor", e))?
                    .unwrap_or(0);
                encode_dev(major, minor).ok_or(Error::InvalidDevice {
                    path: lossy(&path),
                    major,
                    minor,
                })?
            }
            _ => 0,
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let size = entry.size();

        let mut xattrs = BTreeMap::new();
        let mut pax_mtime = None;
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| invalid(&path, "pax header", e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| invalid(&path, "pax header", e))?;
                let (key, value) = (ext.key_bytes(), ext.value_bytes());
                if key == b"mtime" {
                    pax_mtime = Some(
                        parse_pax_time(value)
                            .ok_or_else(|| invalid(&path, "pax mtime", lossy(value)))?,
                    );
                } else if key == b"uid" || key == b"gid" {
                    // The tar crate silently ignores unparsable values; we do not.
                    let field = if key == b"uid" { "pax uid" } else { "pax gid" };
                    let id = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u32>().ok())
                        .ok_or_else(|| invalid(&path, field, lossy(value)))?;
                    if key == b"uid" {
                        meta.uid = id;
                    } else {
                        meta.gid = id;
                    }
                } else if key.starts_with(b"GNU.sparse.") {
                    return Err(invalid(
                        &path,
                        "pax GNU.sparse",
                        "PAX-format sparse files are not supported",
                    ));
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    add_xattr(&mut xattrs, &path, name.to_vec(), value.to_vec())?;
                } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                    let name = url_decode(name)
                        .ok_or_else(|| invalid(&path, "pax xattr name", lossy(name)))?;
                    let value = base64_decode(value)
                        .ok_or_else(|| invalid(&path, "pax xattr value", "bad base64"))?;
                    add_xattr(&mut xattrs, &path, name, value)?;
                }
            }
        }
        match pax_mtime {
            Some((s, ns)) => (meta.mtime, meta.mtime_nsec) = (s, ns),
            None => {
                meta.mtime = i64::try_from(header_mtime)
                    .map_err(|_| invalid(&path, "mtime", "exceeds 63 bits"))?;
            }
        }

        let is_dir_v7 = matches!(typeflag, 0 | b'0') && path.last() == Some(&b'/');
        let kind = match typeflag {
            _ if is_dir_v7 => NewKind::Dir,
            0 | b'0' | b'7' | b'S' => {
                // The last partial block goes inline after the inode when it fits next to
                // a 64-byte inode and its xattrs, while the tail budget lasts.
                let tail_len = size % BLOCK_SIZE;
                let inline = tail_len > 0
                    && tail_len <= tail_budget
                    && EXTENDED_SIZE
                        .saturating_add(layout::xattr_size_of(&xattrs)?)
                        .saturating_add(tail_len)
                        <= BLOCK_SIZE;
                let streamed = if inline {
                    size.saturating_sub(tail_len)
                } else {
                    size
                };
                let blkaddr = if streamed == 0 && inline {
                    0
                } else {
                    sink.block()?
                };
                let mut remaining = streamed;
                while remaining > 0 {
                    let want = remaining.min(BUF_SIZE as u64) as usize;
                    let chunk = buf.get_mut(..want).unwrap_or(&mut []);
                    let n = read_full(&mut entry, chunk).map_err(|e| Error::Tar {
                        after: lossy(&path),
                        source: e,
                    })?;
                    if n < want {
                        return Err(Error::Truncated {
                            path: lossy(&path),
                            expected: size,
                            got: streamed.saturating_sub(remaining).saturating_add(n as u64),
                        });
                    }
                    sink.data(chunk)?;
                    remaining = remaining.saturating_sub(n as u64);
                }
                let tail = if inline {
                    let mut t = vec![0u8; tail_len as usize];
                    let n = read_full(&mut entry, &mut t).map_err(|e| Error::Tar {
                        after: lossy(&path),
                        source: e,
                    })?;
                    if n < t.len() {
                        return Err(Error::Truncated {
                            path: lossy(&path),
                            expected: size,
                            got: streamed.saturating_add(n as u64),
                        });
                    }
                    tail_budget = tail_budget.saturating_sub(tail_len);
                    Some(t.into_boxed_slice())
                } else {
                    sink.pad_block()?;
                    None
                };
                sink.block()?;
                files = files.saturating_add(1);
                data_bytes = data_bytes.saturating_add(size);
                NewKind::File {
                    size,
                    blkaddr,
                    tail,
                }
            }
            b'1' => NewKind::HardLink(link.unwrap_or_default()),
            b'2' => {
                let target = link.unwrap_or_default();
                let reason = if target.is_empty() {
                    Some("empty target")
                } else if target.contains(&0) {
                    Some("NUL byte in target")
                } else if target.len() > SYMLINK_MAX {
                    Some("target longer than 4095 bytes")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(Error::InvalidSymlink {
                        path: lossy(&path),
                        reason,
                    });
                }
                NewKind::Symlink(target)
            }
            b'3' => NewKind::Char(dev),
            b'4' => NewKind::Block(dev),
            b'5' => NewKind::Dir,
            b'6' => NewKind::Fifo,
            other => {
                return Err(Error::UnsupportedEntryType {
                    path: lossy(&path),
                    kind: char::from(other),
                })
            }
        };
        tree.add(&path, kind, meta, xattrs)?;
        last = lossy(&path);
    }
    drop(archive);
    tree.finish();
    let summary = layout::write(&tree, &mut sink)?;
    let mut out = sink.finish()?;
    layout::write_superblock(&mut out, base, &summary)?;
    Ok(BuildSummary {
        image_size: summary.image_size,
        inodes: summary.inodes,
        files,
        data_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-12.5"), Some((-13, 500_000_000)));
        assert_eq!(parse_pax_time(b"-12"), Some((-12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"99999999999999999999"), None);
    }

    #[test]
    fn tails_past_the_budget_go_to_data_blocks() {
        // The unit-test budget is 8 KiB: the first two 3000-byte tails are inlined, the
        // rest are block padded; fsck.erofs and the reader agree on every byte.
        let mut b = tar::Builder::new(Vec::new());
        let mut contents = Vec::new();
        for i in 0..5u8 {
            let data = vec![i.wrapping_add(1); 4096 * usize::from(i % 2) + 3000];
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            b.append_data(&mut h, format!("f{i}"), data.as_slice())
                .unwrap();
            contents.push(data);
        }
        let tar = b.into_inner().unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        build(tar.as_slice(), &mut out, &BuildOptions::default()).unwrap();
        let img = out.into_inner();
        // f0 (inline, no blocks) + f1 (1 block + inline tail) + f2..f4 block padded
        // (1 + 2 + 1 blocks) after block 0.
        let image = crate::Image::open(img.as_slice()).unwrap();
        let meta_blkaddr = u32::from_le_bytes(img[1064..1068].try_into().unwrap());
        assert_eq!(meta_blkaddr, 1 + 1 + 4);
        for e in image.walk().unwrap().iter().skip(1) {
            let i = usize::from(e.path[1] - b'0');
            assert_eq!(image.read_file(e.nid, 1 << 20).unwrap(), contents[i]);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        std::fs::write(&path, &img).unwrap();
        let st = std::process::Command::new("fsck.erofs")
            .arg(format!("--extract={}", dir.path().join("x").display()))
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        for (i, c) in contents.iter().enumerate() {
            assert_eq!(
                &std::fs::read(dir.path().join(format!("x/f{i}"))).unwrap(),
                c
            );
        }
    }

    #[test]
    fn decoders() {
        assert_eq!(url_decode(b"user.a%3Db").unwrap(), b"user.a=b");
        assert_eq!(url_decode(b"%zz"), None);
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode(b"AQAAAg==").unwrap(), [1, 0, 0, 2]);
        assert_eq!(base64_decode(b"*"), None);
    }
}
