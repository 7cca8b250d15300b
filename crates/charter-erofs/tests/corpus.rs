//! Images built from a corpus of tars pass fsck.erofs and read back exactly as the tar says
//! (the reader and fsck's extraction are the oracles; `mount.rs` adds the kernel).

mod common;

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use charter_erofs::{build_from_tar, BuildOptions, EntryKind, Image};
use common::layers::*;
use common::*;

#[test]
fn corpus_passes_fsck_and_reads_back_exactly() {
    for (name, tar, model) in corpus() {
        let img = build(&tar);
        assert!(build(&tar) == img, "{name}: same tar, same bytes");
        check_image(&Image::open(img.as_slice()).unwrap(), &model);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.img");
        std::fs::write(&path, &img).unwrap();
        let x = fsck(&path, dir.path());
        check_dir(&x, &model, Level::Metadata);
        // The reader also works over a file.
        check_image(
            &Image::open(std::fs::File::open(&path).unwrap()).unwrap(),
            &model,
        );
        eprintln!("{name}: {} bytes, fsck ok", img.len());
    }
}

#[test]
fn entries_use_expected_inode_formats() {
    let (tar, _) = every_type_layer();
    let img = build(&tar);
    let image = Image::open(img.as_slice()).unwrap();
    let walked = image.walk().unwrap();
    let get = |p: &str| {
        walked
            .iter()
            .find(|e| e.path == p.as_bytes())
            .unwrap()
            .clone()
    };
    assert_eq!(get("data/bigids").uid, 1_000_000);
    assert_eq!(get("data/bigids").gid, 4_000_000_000);
    assert_eq!(get("bin/ping").nlink, 3);
    assert_eq!(
        get("dev/big").kind,
        EntryKind::BlockDevice {
            major: 4095,
            minor: (1 << 20) - 1
        }
    );
    assert_eq!(
        get("lib/max").kind,
        EntryKind::Symlink {
            target: vec![b'x'; 4095]
        }
    );
}

#[test]
fn reordering_non_file_entries_keeps_the_image() {
    // Metadata is sorted; only regular-file data follows tar order.
    let mk = |order: &[usize]| {
        let mut l = Layer::new();
        type Op = Box<dyn Fn(&mut Layer)>;
        let ops: Vec<Op> = vec![
            Box::new(|l| l.dir("z", 0o755, (0, 0), 5, &[])),
            Box::new(|l| l.symlink("a/link", "../z", (0, 0), 6)),
            Box::new(|l| l.device("dev/null", false, 1, 3, 0o666, (0, 0), 7)),
            Box::new(|l| l.fifo("b/fifo", 0o644, (0, 0), 8)),
            Box::new(|l| l.dir("b", 0o700, (1, 1), 9, &[])),
        ];
        l.file("f1", b"one", 0o644, (0, 0), 1, &[]);
        for i in order {
            ops[*i](&mut l);
        }
        l.file("a/f2", b"two", 0o644, (0, 0), 1, &[]);
        l.finish()
    };
    let (t1, m1) = mk(&[0, 1, 2, 3, 4]);
    let (t2, m2) = mk(&[4, 3, 2, 1, 0]);
    assert!(t1 != t2);
    assert_eq!(m1.entries, m2.entries);
    assert!(build(&t1) == build(&t2), "same image");

    // Swapping regular files with full blocks moves their data extents (the tree read back
    // is the same); files smaller than a block are inlined, so their order does not matter.
    let mk2 = |names: [&str; 2], size: usize| {
        let mut l = Layer::new();
        for n in names {
            l.file(n, &vec![n.as_bytes()[0]; size], 0o644, (0, 0), 1, &[]);
        }
        l.finish()
    };
    let (ta, ma) = mk2(["x", "y"], 5000);
    let (tb, _) = mk2(["y", "x"], 5000);
    let (ia, ib) = (build(&ta), build(&tb));
    assert!(ia != ib, "data extents follow tar order");
    let (small_a, _) = mk2(["x", "y"], 100);
    let (small_b, _) = mk2(["y", "x"], 100);
    assert!(
        build(&small_a) == build(&small_b),
        "inlined files are order independent"
    );
    check_image(&Image::open(ib.as_slice()).unwrap(), &ma);
}

#[test]
fn sparse_output_reads_back_identical() {
    let mut l = Layer::new();
    l.file("zeros", &vec![0u8; 3 << 20], 0o644, (0, 0), 1, &[]);
    l.file(
        "mixed",
        &[vec![0u8; 8192], vec![1u8; 100], vec![0u8; 8192]].concat(),
        0o644,
        (0, 0),
        1,
        &[],
    );
    let (tar, model) = l.finish();
    let dense = build(&tar);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.img");
    let mut opts = BuildOptions::default();
    opts.sparse = true;
    let f = std::fs::File::create(&path).unwrap();
    build_from_tar(tar.as_slice(), f, &opts).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == dense,
        "sparse and dense bytes equal"
    );
    assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < dense.len() as u64);
    check_image(&Image::open(dense.as_slice()).unwrap(), &model);
}

#[test]
fn image_is_written_at_the_writer_position() {
    let (tar, _) = whiteout_layer();
    let img = build(&tar);
    let mut out = Cursor::new(vec![7u8; 512]);
    out.set_position(512);
    let s = build_from_tar(tar.as_slice(), &mut out, &BuildOptions::default()).unwrap();
    assert_eq!(out.position(), 512 + s.image_size);
    assert!(
        &out.get_ref()[512..] == img.as_slice(),
        "image bytes at offset 512"
    );
    assert_eq!(&out.get_ref()[..512], &[7u8; 512][..]);
}

#[test]
fn busybox_rootfs_from_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let (tar_path, model) = busybox_rootfs(dir.path());
    let tar = std::fs::read(&tar_path).unwrap();
    let img = build(&tar);
    assert!(build(&tar) == img, "same tar, same bytes");
    let image = Image::open(img.as_slice()).unwrap();
    check_image(&image, &model);
    assert!(model.entries.len() > 250, "busybox installed its applets");
    let path = dir.path().join("rootfs.img");
    std::fs::write(&path, &img).unwrap();
    let x = fsck(&path, dir.path());
    check_dir(&x, &model, Level::Metadata);

    // Cross-check the reader on an image from the independent writer (mkfs.erofs).
    let mk = dir.path().join("mkfs.img");
    let st = Command::new("mkfs.erofs")
        .args(["--quiet", "--preserve-mtime"])
        .arg(&mk)
        .arg(dir.path().join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = Image::open(std::fs::File::open(&mk).unwrap()).unwrap();
    // mkfs.erofs gives the root directory its build time.
    let mut m = model.clone();
    m.entries.get_mut(&b""[..]).unwrap().mtime = theirs.walk().unwrap()[0].mtime;
    check_image(&theirs, &m);
}

#[test]
fn file_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.img");
    build_huge(&path);
    let out = Command::new("fsck.erofs").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = Image::open(std::fs::File::open(&path).unwrap()).unwrap();
    let walked = image.walk().unwrap();
    let e = walked.iter().find(|e| e.path == b"big/huge.bin").unwrap();
    assert_eq!(e.kind, EntryKind::File { size: HUGE });
    assert_eq!(e.mtime, 42);
    let mut check = HugeCheck(0);
    assert_eq!(image.copy_file(e.nid, &mut check).unwrap(), HUGE);
    assert_eq!(check.0, HUGE);
}
