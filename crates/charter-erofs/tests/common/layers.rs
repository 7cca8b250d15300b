//! Corpus layers: tars built in the tests together with their expected models.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use charter_erofs::{build_from_tar, BuildOptions, EntryKind};

use super::*;

/// A `security.capability` value (VFS_CAP_REVISION_2, cap_net_bind_service permitted).
pub const CAP: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

pub fn every_type_layer() -> (Vec<u8>, Model) {
    let mut l = Layer::new();
    l.dir("./", 0o755, (0, 0), 1_600_000_000, &[]);
    l.dir("etc/", 0o755, (0, 0), 1_600_000_001, &[]);
    l.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
        (0, 0),
        1_600_000_002,
        &[],
    );
    l.file(
        "bin/ping",
        &[0x7f, b'E', b'L', b'F', 0, 1, 2],
        0o4755,
        (0, 0),
        1_600_000_003,
        &[(b"security.capability", CAP)],
    );
    l.file("usr/bin/sg", b"x", 0o2711, (0, 42), 1, &[]);
    l.dir("tmp", 0o1777, (0, 0), 0, &[]);
    l.file("data/empty", b"", 0o600, (1000, 1000), 0, &[]);
    l.file("data/block", &vec![0xab; 4096], 0o644, (0, 0), 5, &[]);
    l.file("data/block+1", &vec![0xcd; 4097], 0o644, (0, 0), 5, &[]);
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    l.file("data/random", &big, 0o640, (65534, 65534), 7, &[]);
    l.file(
        "data/bigids",
        b"ids",
        0o644,
        (1_000_000, 4_000_000_000),
        0,
        &[],
    );
    l.file(
        "data/xattrs",
        b"x",
        0o644,
        (0, 0),
        9,
        &[
            (b"user.mime_type", b"text/plain"),
            (b"trusted.overlay.origin", b"\x00\x01\x02"),
            (b"security.selinux", b"system_u:object_r:bin_t:s0\0"),
            (
                b"system.posix_acl_access",
                &[
                    2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32,
                    0, 4, 0, 255, 255, 255, 255,
                ],
            ),
        ],
    );
    let v3000 = vec![b'v'; 3000];
    l.file(
        "data/hugexattrs",
        b"h",
        0o644,
        (0, 0),
        9,
        &[(b"user.a", &v3000), (b"user.b", &v3000)],
    );
    l.dir(
        "xdir",
        0o750,
        (5, 6),
        11,
        &[(b"user.big", &v3000), (b"user.small", b"1")],
    );
    for i in 0..60 {
        l.file(
            &format!("xdir/entry-with-a-fairly-long-name-{i:03}"),
            b"",
            0o644,
            (0, 0),
            0,
            &[],
        );
    }
    l.symlink("bin/sh", "busybox", (0, 0), 3);
    l.symlink("lib/abs", "/usr/lib/x86_64-linux-gnu/libc.so.6", (0, 0), 3);
    l.symlink("lib/long", &"../".repeat(40).to_string(), (0, 0), 3);
    l.symlink("lib/max", &"x".repeat(4095), (0, 0), 3);
    l.hardlink("etc/passwd-", "etc/passwd");
    l.hardlink("bin/ping6", "bin/ping");
    l.hardlink("bin/ping4", "bin/ping");
    l.device("dev/null", false, 1, 3, 0o666, (0, 0), 0);
    l.device("dev/sda1", true, 8, 1, 0o660, (0, 6), 4);
    l.device("dev/big", true, 4095, (1 << 20) - 1, 0o600, (0, 0), 4);
    l.fifo("run/fifo", 0o620, (0, 0), 8);
    l.hardlink("run/fifo2", "run/fifo");
    l.finish()
}

pub fn whiteout_layer() -> (Vec<u8>, Model) {
    let mut l = Layer::new();
    l.dir("a", 0o700, (1, 1), 100, &[]);
    l.raw("a/.wh.gone", tar::EntryType::Regular, 0o644, (3, 4), 200);
    l.raw("a/.wh..wh..opq", tar::EntryType::Regular, 0o644, (0, 0), 0);
    l.raw(
        "implied/.wh..wh..opq",
        tar::EntryType::Regular,
        0o644,
        (0, 0),
        0,
    );
    l.raw(".wh.top", tar::EntryType::Regular, 0o600, (0, 0), 300);
    // A whiteout and a real entry of the same name in one layer: the real entry wins.
    l.raw("both/.wh.x", tar::EntryType::Regular, 0o644, (0, 0), 0);
    l.file("both/x", b"real", 0o644, (0, 0), 1, &[]);
    l.file("both/y", b"real", 0o644, (0, 0), 1, &[]);
    l.raw("both/.wh.y", tar::EntryType::Regular, 0o644, (0, 0), 0);
    let (tar, mut m) = l.finish();
    let wh = |mode, uid, gid, mtime| Expect {
        kind: EntryKind::CharDevice { major: 0, minor: 0 },
        mode,
        uid,
        gid,
        mtime,
        xattrs: Default::default(),
        content: None,
    };
    m.entries.insert(b"a/gone".to_vec(), wh(0o644, 3, 4, 200));
    m.entries.insert(b"top".to_vec(), wh(0o600, 0, 0, 300));
    let opaque = (b"trusted.overlay.opaque".to_vec(), b"y".to_vec());
    m.entries
        .get_mut(&b"a"[..])
        .unwrap()
        .xattrs
        .insert(opaque.0.clone(), opaque.1.clone());
    m.dir(b"implied", 0o755, 0, 0, 0);
    m.entries
        .get_mut(&b"implied"[..])
        .unwrap()
        .xattrs
        .insert(opaque.0, opaque.1);
    (tar, m)
}

pub fn names_layer() -> (Vec<u8>, Model) {
    let mut l = Layer::new();
    l.file(
        "日本語/ファイル.txt",
        "こんにちは".as_bytes(),
        0o644,
        (0, 0),
        1,
        &[],
    );
    l.file("emoji/🦀🚀.rs", b"fn main() {}", 0o644, (0, 0), 1, &[]);
    l.file(&"n".repeat(255), b"255", 0o644, (0, 0), 1, &[]);
    let long = format!(
        "{}/{}/{}",
        "a".repeat(200),
        "b".repeat(200),
        "c".repeat(250)
    );
    l.file(&long, b"long path", 0o644, (0, 0), 1, &[]);
    let deep: Vec<String> = (0..150).map(|i| format!("d{i}")).collect();
    l.file(
        &format!("{}/leaf", deep.join("/")),
        b"deep",
        0o644,
        (0, 0),
        1,
        &[],
    );
    l.symlink(
        "linklong",
        &format!("{}/target", "t".repeat(300)),
        (0, 0),
        1,
    );
    // Names around '.' and '..' in byte order.
    for n in [
        "-", "+", "!", ",", "a", "a.b", "a-b", ".hidden", "..x", "~", "\u{7f}",
    ] {
        l.file(&format!("order/{n}"), n.as_bytes(), 0o644, (0, 0), 1, &[]);
    }
    let (tar, model) = l.finish();
    (tar, model)
}

/// Non-UTF-8 names need raw header bytes.
pub fn non_utf8_layer() -> (Vec<u8>, Model) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut l = Layer::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(3);
    l.builder
        .append_data(
            &mut h,
            std::path::Path::new(OsStr::from_bytes(b"bad\xff\xfename")),
            &b"abc"[..],
        )
        .unwrap();
    let (tar, mut m) = l.finish();
    m.entries.insert(
        b"bad\xff\xfename".to_vec(),
        Expect {
            kind: EntryKind::File { size: 3 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
            content: Some(b"abc".to_vec()),
        },
    );
    m.imply_parents();
    (tar, m)
}

pub fn many_files_layer() -> (Vec<u8>, Model) {
    let mut l = Layer::new();
    for i in 0..10_000u32 {
        let dir = if i % 2 == 0 {
            "flat".to_string()
        } else {
            format!("tree/{:02}", i % 97)
        };
        let data = if i % 7 == 0 {
            format!("file {i}").repeat((i % 50) as usize)
        } else {
            String::new()
        };
        l.file(
            &format!("{dir}/f{i:05}-{}", "x".repeat((i % 40) as usize)),
            data.as_bytes(),
            0o644,
            (i % 3, i % 5),
            u64::from(i % 2),
            &[],
        );
    }
    l.finish()
}

/// Every corpus tar with its model.
pub fn corpus() -> Vec<(&'static str, Vec<u8>, Model)> {
    let mut v = Vec::new();
    for (name, f) in [
        ("every-type", every_type_layer as fn() -> (Vec<u8>, Model)),
        ("whiteouts", whiteout_layer),
        ("names", names_layer),
        ("non-utf8", non_utf8_layer),
        ("10000-files", many_files_layer),
    ] {
        let (t, m) = f();
        v.push((name, t, m));
    }
    v
}

/// Builds a busybox-static root filesystem and tars it with GNU tar.
pub fn busybox_rootfs(dir: &std::path::Path) -> (std::path::PathBuf, Model) {
    use std::os::unix::ffi::OsStrExt;
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root", "usr/share/empty"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    let st = Command::new(root.join("bin/busybox"))
        .args(["--install", "-s"])
        .arg(root.join("bin"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(root.join("etc/hostname"), "charter\n").unwrap();
    std::fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd-")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(root.join("etc/hostname"), Some(1234), Some(5678)).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());

    // Model from lstat of the source tree, independent of the tar and the writer.
    let mut model = Model::default();
    let mut inodes: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
    let mut stack = vec![root.clone()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(&root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = md.file_type();
        let (kind, content) = if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            (EntryKind::Dir, None)
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            (EntryKind::Symlink { target: t }, None)
        } else {
            let c = std::fs::read(&p).unwrap();
            inodes.entry(md.ino()).or_default().push(rel.clone());
            (
                EntryKind::File {
                    size: c.len() as u64,
                },
                Some(c),
            )
        };
        model.entries.insert(
            rel,
            Expect {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                xattrs: Default::default(),
                content,
            },
        );
    }
    model.links = inodes.into_values().filter(|g| g.len() > 1).collect();
    (tar, model)
}

/// A tar stream with one file of 4 GiB + 12345 bytes, generated on the fly. Its content is
/// zero except one marker block every 256 MiB and a non-zero tail.
pub struct HugeTar {
    pos: u64,
    header: Vec<u8>,
    size: u64,
}

pub const HUGE: u64 = (4 << 30) + 12345;

/// Whether the 4 KiB block holding `off` has non-zero content.
pub fn is_marker_block(off: u64) -> bool {
    (off >> 12).is_multiple_of(65536) || off >= 4 << 30
}

pub fn huge_byte(off: u64) -> u8 {
    if (off >> 12).is_multiple_of(65536) || off >= 4 << 30 {
        (off.wrapping_mul(31) as u8) | 1
    } else {
        0
    }
}

impl HugeTar {
    pub fn new() -> HugeTar {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("big/huge.bin").unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(HUGE);
        h.set_mtime(42);
        h.set_cksum();
        b.append(&h, std::io::empty()).ok();
        let mut header = h.as_bytes().to_vec();
        header.truncate(512);
        HugeTar {
            pos: 0,
            header,
            size: HUGE.div_ceil(512) * 512,
        }
    }
}

impl Read for HugeTar {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let total = 512 + self.size + 1024;
        if self.pos >= total {
            return Ok(0);
        }
        let mut n = buf.len().min((total - self.pos) as usize);
        if self.pos < 512 {
            n = n.min((512 - self.pos) as usize);
            buf[..n].copy_from_slice(&self.header[self.pos as usize..self.pos as usize + n]);
        } else {
            let d = self.pos - 512;
            if d < HUGE && is_marker_block(d) {
                // Marker blocks and the tail: byte by byte up to the end of the block.
                n = n.min((4096 - d % 4096) as usize).min((HUGE - d) as usize);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = huge_byte(d + i as u64);
                }
            } else {
                // Zeros up to the next marker block (or the end of the stream).
                if d < HUGE {
                    let next = ((d >> 12) / 65536 + 1) * 65536 * 4096;
                    n = n.min((next.min(4 << 30) - d) as usize);
                }
                buf[..n].fill(0);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Checks streamed content against [`huge_byte`].
pub struct HugeCheck(pub u64);

impl Write for HugeCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Writes come in 1 MiB pieces at 1 MiB-aligned offsets: check block by block.
        for (k, block) in buf.chunks(4096).enumerate() {
            let off = self.0 + (k as u64) * 4096;
            if is_marker_block(off) {
                for (i, b) in block.iter().enumerate() {
                    assert_eq!(*b, huge_byte(off + i as u64), "byte {}", off + i as u64);
                }
            } else {
                assert!(block.iter().all(|b| *b == 0), "zero block at {off}");
            }
        }
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn build_huge(path: &std::path::Path) {
    let mut opts = BuildOptions::default();
    opts.sparse = true;
    let f = std::fs::File::create(path).unwrap();
    let s = build_from_tar(HugeTar::new(), f, &opts).unwrap();
    assert_eq!(s.data_bytes, HUGE);
    assert!(s.image_size > HUGE);
}
