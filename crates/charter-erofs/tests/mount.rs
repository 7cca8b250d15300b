//! The kernel as oracle: images loop-mounted read-only must match the tar model exactly
//! (lstat, readlink, content, xattrs, device numbers, hard-link identity). Needs root.

mod common;

use std::os::unix::fs::FileExt;

use common::layers as corpus;
use common::*;

#[test]
#[ignore = "needs root: loop-mounts the image"]
fn mounted_images_match_the_tar() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = corpus::corpus();
    let (bb_tar, bb_model) = corpus::busybox_rootfs(dir.path());
    all.push(("busybox", std::fs::read(bb_tar).unwrap(), bb_model));
    for (name, tar, model) in all {
        let img = build(&tar);
        let path = dir.path().join(format!("{name}.img"));
        std::fs::write(&path, &img).unwrap();
        let m = Mount::new(&path);
        check_dir(m.dir.path(), &model, Level::Full);
        eprintln!("{name}: mounted tree matches");
    }
}

#[test]
#[ignore = "needs root: loop-mounts the image"]
fn mounted_file_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.img");
    corpus::build_huge(&path);
    let m = Mount::new(&path);
    let f = std::fs::File::open(m.dir.path().join("big/huge.bin")).unwrap();
    let size = f.metadata().unwrap().len();
    assert_eq!(size, (4 << 30) + 12345);
    // Sample around every marker block and across the 4 GiB boundary.
    let mut buf = vec![0u8; 8192];
    for off in (0..size)
        .step_by(256 << 20)
        .chain([(4 << 30) - 4096, size - 8192])
    {
        f.read_exact_at(&mut buf, off).unwrap();
        for (i, b) in buf.iter().enumerate() {
            let o = off + i as u64;
            let want = corpus::huge_byte(o);
            assert_eq!(*b, want, "byte {o}");
        }
    }
}
