//! Malformed and hostile tars get typed errors; random corruption never panics, neither in
//! the writer nor in the reader.

use std::io::Cursor;

use charter_erofs::{build_from_tar, BuildOptions, Error, Image};
use proptest::prelude::*;

/// One raw ustar/GNU header with arbitrary name bytes (bypassing the tar crate's checks).
fn raw(name: &[u8], kind: u8, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.as_old_mut().linkflag[0] = kind;
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = entries.concat();
    v.extend_from_slice(&[0u8; 1024]);
    v
}

fn build(tar: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Cursor::new(Vec::new());
    build_from_tar(tar, &mut out, &BuildOptions::default()).map(|_| out.into_inner())
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    raw(name.as_bytes(), b'0', data, b"")
}

#[test]
fn truncated_data() {
    let t = tar_of(&[file("a", &[1u8; 10_000])]);
    let err = build(&t[..512 + 5000]).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { ref path, expected: 10_000, got: 5000 } if path == "a"),
        "{err}"
    );
}

#[test]
fn truncated_inline_tail() {
    // 8192 bytes of full blocks stream to the image, the last 1808 are the inline tail.
    let t = tar_of(&[file("a", &[1u8; 10_000])]);
    let err = build(&t[..512 + 9000]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 10_000,
                got: 9000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_header() {
    let t = tar_of(&[file("a", b"x"), file("b", b"y")]);
    let err = build(&t[..1024 + 100]).unwrap_err();
    assert!(
        matches!(err, Error::Tar { ref after, .. } if after == "a"),
        "{err}"
    );
}

#[test]
fn bad_checksum() {
    let mut t = tar_of(&[file("a", b"x"), file("b", b"y")]);
    t[1024 + 1] = b'Z';
    let err = build(&t).unwrap_err();
    assert!(matches!(err, Error::Tar { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn parent_components() {
    for p in ["../x", "a/../../x", "./..", "a/.."] {
        let err = build(&tar_of(&[file(p, b"x")])).unwrap_err();
        assert!(
            matches!(err, Error::ParentComponent { ref path } if path == p),
            "{p}: {err}"
        );
    }
}

#[test]
fn absolute_paths() {
    let err = build(&tar_of(&[file("/etc/passwd", b"x")])).unwrap_err();
    assert!(matches!(err, Error::AbsolutePath { .. }), "{err}");
}

#[test]
fn leading_dot_slash_is_accepted() {
    let img = build(&tar_of(&[raw(b"./", b'5', b"", b""), file("./a/b", b"x")])).unwrap();
    let walked = Image::open(img.as_slice()).unwrap().walk().unwrap();
    let paths: Vec<&[u8]> = walked.iter().map(|e| e.path.as_slice()).collect();
    assert_eq!(paths, [&b""[..], b"a", b"a/b"]);
}

#[test]
fn duplicates() {
    let cases = [
        vec![file("a", b"1"), file("a", b"2")],
        vec![file("a", b"1"), file("./a", b"2")],
        vec![raw(b"d/", b'5', b"", b""), raw(b"d", b'5', b"", b"")],
        vec![
            file("d/x", b"1"),
            raw(b"d/", b'5', b"", b""),
            raw(b"d/", b'5', b"", b""),
        ],
        vec![file("a", b"1"), raw(b"a", b'5', b"", b"")],
        vec![raw(b"./", b'5', b"", b""), raw(b".", b'5', b"", b"")],
        vec![file("w/.wh.x", b""), file("w/.wh.x", b"")],
        vec![file("w/.wh..wh..opq", b""), file("w/.wh..wh..opq", b"")],
    ];
    for (i, c) in cases.iter().enumerate() {
        let err = build(&tar_of(c)).unwrap_err();
        assert!(matches!(err, Error::Duplicate { .. }), "case {i}: {err}");
    }
    // An implied directory given explicitly later is not a duplicate.
    build(&tar_of(&[file("d/x", b"1"), raw(b"d/", b'5', b"", b"")])).unwrap();
}

#[test]
fn not_a_directory() {
    let err = build(&tar_of(&[file("a", b"1"), file("a/b", b"2")])).unwrap_err();
    assert!(
        matches!(err, Error::NotADirectory { ref path } if path == "a/b"),
        "{err}"
    );
    let err = build(&tar_of(&[raw(b"l", b'2', b"", b"d"), file("l/b", b"2")])).unwrap_err();
    assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
}

#[test]
fn hard_links() {
    let missing = build(&tar_of(&[raw(b"l", b'1', b"", b"nowhere")])).unwrap_err();
    assert!(
        matches!(missing, Error::LinkTargetMissing { ref target, .. } if target == "nowhere"),
        "{missing}"
    );
    let later = build(&tar_of(&[raw(b"l", b'1', b"", b"f"), file("f", b"x")])).unwrap_err();
    assert!(matches!(later, Error::LinkTargetMissing { .. }), "{later}");
    let own = build(&tar_of(&[raw(b"l", b'1', b"", b"l")])).unwrap_err();
    assert!(matches!(own, Error::LinkTargetMissing { .. }), "{own}");
    let dir = build(&tar_of(&[
        raw(b"d/", b'5', b"", b""),
        raw(b"l", b'1', b"", b"d"),
    ]))
    .unwrap_err();
    assert!(matches!(dir, Error::LinkToDirectory { .. }), "{dir}");
    let root = build(&tar_of(&[raw(b"l", b'1', b"", b"./")])).unwrap_err();
    assert!(matches!(root, Error::LinkToDirectory { .. }), "{root}");
    let abs = build(&tar_of(&[file("f", b"x"), raw(b"l", b'1', b"", b"/f")])).unwrap_err();
    assert!(matches!(abs, Error::LinkTargetMissing { .. }), "{abs}");
    // "./f" and "f" name the same entry.
    build(&tar_of(&[file("./f", b"x"), raw(b"l", b'1', b"", b"f")])).unwrap();
}

#[test]
fn absurd_sizes() {
    // Octal size of 8 GiB - 1 with no data behind it.
    let mut t = tar_of(&[file("a", b"")]);
    t[124..135].copy_from_slice(b"77777777777");
    let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
    h.set_cksum();
    t[..512].copy_from_slice(h.as_bytes());
    let err = build(&t).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 0o77777777777,
                ..
            }
        ),
        "{err}"
    );

    // GNU base-256 size near u64::MAX: the tar parser's offset arithmetic overflows.
    let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
    h.as_old_mut().size = [
        0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    h.set_cksum();
    t[..512].copy_from_slice(h.as_bytes());
    let err = build(&t).unwrap_err();
    assert!(
        matches!(err, Error::Tar { .. } | Error::Truncated { .. }),
        "{err}"
    );
}

#[test]
fn long_names() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    let name = format!("ok/{}", "n".repeat(256));
    b.append_data(&mut h, &name, &[][..]).unwrap();
    let err = build(&b.into_inner().unwrap()).unwrap_err();
    assert!(matches!(err, Error::NameTooLong { len: 256, .. }), "{err}");
}

#[test]
fn bad_entries() {
    let err = build(&tar_of(&[raw(b"v", b'V', b"", b"")])).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedEntryType { kind: 'V', .. }),
        "{err}"
    );

    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_path("dev/x").unwrap();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_device_major(5000).unwrap();
    h.set_device_minor(1).unwrap();
    h.set_cksum();
    let err = build(&tar_of(&[h.as_bytes().to_vec()])).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidDevice {
                major: 5000,
                minor: 1,
                ..
            }
        ),
        "{err}"
    );

    let err = build(&tar_of(&[raw(b"s", b'2', b"", b"")])).unwrap_err();
    assert!(matches!(err, Error::InvalidSymlink { .. }), "{err}");

    let err = build(&tar_of(&[file(".", b"")])).unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err}");

    for w in ["d/.wh.", "d/.wh..wh.plnk", "d/.wh.x/y"] {
        let err = build(&tar_of(&[file(w, b"")])).unwrap_err();
        assert!(matches!(err, Error::InvalidWhiteout { .. }), "{w}: {err}");
    }
}

fn with_pax(key: &str, value: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([(key, value)]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn bad_xattrs_and_pax() {
    for (k, v) in [
        ("SCHILY.xattr.foo.bar", &b"v"[..]),
        ("SCHILY.xattr.user.", b"v"),
        ("SCHILY.xattr.system.posix_acl_accessx", b"v"),
    ] {
        let err = build(&with_pax(k, v)).unwrap_err();
        assert!(matches!(err, Error::InvalidXattr { .. }), "{k}: {err}");
    }
    let big = vec![0u8; 70_000];
    let err = build(&with_pax("SCHILY.xattr.user.big", &big)).unwrap_err();
    assert!(matches!(err, Error::InvalidXattr { .. }), "{err}");
    let long = format!("SCHILY.xattr.user.{}", "x".repeat(300));
    let err = build(&with_pax(&long, b"v")).unwrap_err();
    assert!(matches!(err, Error::InvalidXattr { .. }), "{err}");
    let err = build(&with_pax("mtime", b"soon")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                field: "pax mtime",
                ..
            }
        ),
        "{err}"
    );
    let err = build(&with_pax("LIBARCHIVE.xattr.user.x", b"!!")).unwrap_err();
    assert!(matches!(err, Error::InvalidHeader { .. }), "{err}");
    let err = build(&with_pax("gid", b"abc")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                field: "pax gid",
                ..
            }
        ),
        "{err}"
    );
    let err = build(&with_pax("GNU.sparse.major", b"1")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                field: "pax GNU.sparse",
                ..
            }
        ),
        "{err}"
    );
    let err = build(&with_pax("uid", b"99999999999")).unwrap_err();
    assert!(
        matches!(err, Error::InvalidHeader { field: "uid", .. }),
        "{err}"
    );
}

#[test]
fn pax_values_are_used() {
    // LIBARCHIVE names are URL-encoded, values base64; PAX mtime may carry nanoseconds.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("LIBARCHIVE.xattr.user.a%3Db", &b"aGVsbG8="[..]),
        ("mtime", b"1700000000.25"),
        ("uid", b"3000000000"),
        ("path", b"pax/long/path/name"),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "short", &b"x"[..]).unwrap();
    let img = build(&b.into_inner().unwrap()).unwrap();
    let walked = Image::open(img.as_slice()).unwrap().walk().unwrap();
    let e = walked
        .iter()
        .find(|e| e.path == b"pax/long/path/name")
        .unwrap();
    assert_eq!(
        e.xattrs.get(&b"user.a=b"[..]).map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!((e.mtime, e.mtime_nsec), (1_700_000_000, 250_000_000));
    assert_eq!(e.uid, 3_000_000_000);
}

#[test]
fn inode_limit() {
    let mut opts = BuildOptions::default();
    opts.max_inodes = 3;
    let t = tar_of(&[file("a", b""), file("b", b""), file("c", b"")]);
    let err = build_from_tar(t.as_slice(), Cursor::new(Vec::new()), &opts).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
}

#[test]
fn reader_rejects_garbage() {
    assert!(matches!(Image::open(&[][..]), Err(Error::BadSuperblock(_))));
    assert!(matches!(
        Image::open(&[0u8; 8192][..]),
        Err(Error::BadSuperblock(_))
    ));
    let mut img = build(&tar_of(&[
        raw(b"d/", b'5', b"", b""),
        raw(b"d/e/", b'5', b"", b""),
    ]))
    .unwrap();
    let walked = Image::open(img.as_slice()).unwrap().walk().unwrap();
    assert_eq!(walked.len(), 3);
    let e_nid = walked[2].nid;
    // Point d's dirent "e" (third dirent, name offset 36 + 1 + 2) back at the root: a loop.
    let mut pat = e_nid.to_le_bytes().to_vec();
    pat.extend_from_slice(&39u16.to_le_bytes());
    pat.push(2);
    let at = img
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .unwrap();
    img[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    let err = Image::open(img.as_slice()).unwrap().walk().unwrap_err();
    assert!(matches!(err, Error::Corrupt { nid: 0, .. }), "{err}");
    // Bad magic and truncation.
    let good = build(&tar_of(&[file("f", b"x")])).unwrap();
    let mut bad = good.clone();
    bad[1024] ^= 1;
    assert!(matches!(
        Image::open(bad.as_slice()),
        Err(Error::BadSuperblock(_))
    ));
    assert!(Image::open(&good[..4096]).is_err());
}

fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_uid(1);
    h.set_gid(2);
    h.set_mtime(3);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h.clone(), "d/", &[][..]).unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
        .unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(600);
    b.append_data(&mut h.clone(), "d/f", &[7u8; 600][..])
        .unwrap();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h.clone(), "d/l", "f").unwrap();
    h.set_entry_type(tar::EntryType::Link);
    b.append_link(&mut h.clone(), "d/h", "d/f").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h.clone(), "d/.wh.x", &[][..]).unwrap();
    b.append_data(&mut h.clone(), format!("{}/deep", "p".repeat(120)), &[][..])
        .unwrap();
    b.into_inner().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tars_never_panic(muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>(), do_cut in any::<bool>()) {
        let mut t = sample_tar();
        for (i, v) in &muts {
            let i = i.index(t.len());
            t[i] = *v;
        }
        if do_cut {
            t.truncate(cut.index(t.len()));
        }
        if let Ok(img) = build(&t) {
            // Whatever the writer accepts, the reader reads.
            let image = Image::open(img.as_slice()).expect("own image opens");
            let entries = image.walk().expect("own image walks");
            for e in entries {
                if let charter_erofs::EntryKind::File { size } = e.kind {
                    prop_assert_eq!(image.read_file(e.nid, 1 << 20).unwrap().len() as u64, size);
                }
            }
        }
    }

    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let mut img = build(&sample_tar()).unwrap();
        // Half of the mutations hit the superblock or the metadata area (inodes, xattrs,
        // inline directories), the rest anywhere.
        let meta = u32::from_le_bytes(img[1064..1068].try_into().unwrap()) as usize * 4096;
        for (n, (i, v)) in muts.iter().enumerate() {
            let i = match n % 4 {
                0 => 1024 + i.index(128),
                1 => meta + i.index(img.len() - meta),
                _ => i.index(img.len()),
            };
            img[i] = *v;
        }
        if let Ok(image) = Image::open(img.as_slice()) {
            if let Ok(entries) = image.walk() {
                for e in entries {
                    let _ = image.read_file(e.nid, 1 << 20);
                }
            }
        }
    }
}
