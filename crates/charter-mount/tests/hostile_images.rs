//! Hostile layer images and invalid mount requests are refused with typed errors. All of these
//! fail before a loop device or mount is touched, so they need no privilege.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use charter_mount::{mount_overlay, mount_tmpfs, AttachOptions, Error, VerifiedLayer};
use support::{base_layer, open_rw};

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    open_rw(path).write_all_at(bytes, offset).unwrap();
}

#[test]
fn wrong_root_hash_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let mut wrong = layer.root_hash;
    wrong[31] ^= 1;
    let err = VerifiedLayer::attach(&layer.path, &wrong).unwrap_err();
    match &err {
        Error::RootHashMismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &layer.path);
            assert_eq!(expected, &hex::encode(wrong));
            assert_eq!(actual, &hex::encode(layer.root_hash));
        }
        other => panic!("expected RootHashMismatch, got {other:?}"),
    }
    assert!(err.is_rejected_image());
    let msg = err.to_string();
    assert!(msg.contains(&hex::encode(wrong)), "{msg}");
    assert!(msg.contains(&hex::encode(layer.root_hash)), "{msg}");
}

#[test]
fn flipped_byte_in_file_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, busybox) = base_layer(dir.path());
    // Locate a piece of busybox's contents inside the image and flip one byte of it.
    let image = std::fs::read(&layer.path).unwrap();
    let needle = &busybox[1_000_000..1_000_064];
    let at = image
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("busybox data stored uncompressed in the image");
    assert!((at as u64) < layer.data_size);
    patch(&layer.path, at as u64 + 7, &[image[at + 7] ^ 0x80]);
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    match err {
        Error::RootHashMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, hex::encode(layer.root_hash));
            assert_ne!(actual, expected);
        }
        other => panic!("expected RootHashMismatch, got {other:?}"),
    }
}

#[test]
fn flipped_byte_in_last_data_block_is_refused() {
    // The whole data is hashed, up to its last block.
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let f = open_rw(&layer.path);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, layer.data_size - 1).unwrap();
    f.write_all_at(&[b[0] ^ 1], layer.data_size - 1).unwrap();
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(matches!(err, Error::RootHashMismatch { .. }), "{err:?}");
}

#[test]
fn truncated_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());

    // Cut inside the EROFS data: the superblock's block count no longer fits.
    open_rw(&layer.path).set_len(layer.data_size / 2).unwrap();
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(
        matches!(&err, Error::Erofs { path, .. } if path == &layer.path),
        "{err:?}"
    );

    // Cut right after the data or inside the verity superblock.
    for len in [layer.data_size, layer.data_size + 100] {
        let (layer, _) = base_layer(&tempfile::tempdir_in(dir.path()).unwrap().keep());
        open_rw(&layer.path).set_len(len).unwrap();
        let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
        match err {
            Error::VeritySuperblock { offset, source, .. } => {
                assert_eq!(offset, layer.data_size);
                assert!(
                    matches!(source, charter_verity::Error::Truncated { .. }),
                    "{source:?}"
                );
            }
            other => panic!("expected VeritySuperblock, got {other:?}"),
        }
    }

    // An empty file.
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let err = VerifiedLayer::attach(&empty, &[0; 32]).unwrap_err();
    assert!(matches!(err, Error::Erofs { .. }), "{err:?}");
    assert!(err.is_rejected_image());
}

#[test]
fn garbage_erofs_superblocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();

    // Garbage instead of the superblock.
    let (layer, _) = base_layer(dir.path());
    patch(&layer.path, 1024, &[0xa5; 128]);
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(matches!(err, Error::Erofs { .. }), "{err:?}");

    // A block count far beyond the file.
    let (layer, _) = base_layer(&tempfile::tempdir_in(dir.path()).unwrap().keep());
    patch(&layer.path, 1024 + 36, &u32::MAX.to_le_bytes());
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(matches!(err, Error::Erofs { .. }), "{err:?}");

    // A block size other than 4096 (2^12): 2^13.
    let (layer, _) = base_layer(&tempfile::tempdir_in(dir.path()).unwrap().keep());
    patch(&layer.path, 1024 + 12, &[13]);
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BlockSize {
                block_size: 8192,
                ..
            } | Error::Erofs { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn huge_declared_size_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    // Claim 4 GiB of data in a sparse 5 GiB file: the EROFS reader accepts it (it fits), the
    // size limit does not, and nothing is copied.
    let blocks: u32 = 1 << 20;
    patch(&layer.path, 1024 + 36, &blocks.to_le_bytes());
    open_rw(&layer.path).set_len(5 << 30).unwrap();
    let options = AttachOptions::default().max_data_size(1 << 30);
    let err = VerifiedLayer::attach_with(&layer.path, &layer.root_hash, &options).unwrap_err();
    match err {
        Error::TooLarge {
            data_size, limit, ..
        } => {
            assert_eq!(data_size, 4 << 30);
            assert_eq!(limit, 1 << 30);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Under the default limit the verity superblock at 4 GiB is missing (zeros).
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    match err {
        Error::VeritySuperblock { offset, source, .. } => {
            assert_eq!(offset, 4 << 30);
            assert!(
                matches!(source, charter_verity::Error::BadSignature),
                "{source:?}"
            );
        }
        other => panic!("expected VeritySuperblock, got {other:?}"),
    }
}

#[test]
fn verity_superblock_must_match_the_erofs_data() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let blocks = layer.data_size / 4096;
    // data_blocks (offset 72) one less than the EROFS block count.
    patch(
        &layer.path,
        layer.data_size + 72,
        &(blocks - 1).to_le_bytes(),
    );
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    match err {
        Error::VerityParams {
            field,
            found,
            expected,
            ..
        } => {
            assert_eq!(field, "data blocks");
            assert_eq!(found, (blocks - 1).to_string());
            assert!(expected.starts_with(&blocks.to_string()), "{expected}");
        }
        other => panic!("expected VerityParams, got {other:?}"),
    }

    // A non-zero salt (offset 88).
    let (layer, _) = base_layer(&tempfile::tempdir_in(dir.path()).unwrap().keep());
    patch(&layer.path, layer.data_size + 88, &[1]);
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(
        matches!(err, Error::VerityParams { field: "salt", .. }),
        "{err:?}"
    );

    // Garbage instead of the verity superblock.
    let (layer, _) = base_layer(&tempfile::tempdir_in(dir.path()).unwrap().keep());
    patch(&layer.path, layer.data_size, b"not a verity superblock");
    let err = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VeritySuperblock {
                source: charter_verity::Error::BadSignature,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn only_regular_files_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    let err = VerifiedLayer::attach(dir.path(), &[0; 32]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "directory",
                ..
            }
        ),
        "{err:?}"
    );

    // A FIFO must be refused, not block the agent waiting for a writer.
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = VerifiedLayer::attach(&fifo, &[0; 32]).unwrap_err();
    assert!(
        matches!(err, Error::NotAFile { kind: "fifo", .. }),
        "{err:?}"
    );

    let missing = dir.path().join("missing.img");
    let err = VerifiedLayer::attach(&missing, &[0; 32]).unwrap_err();
    match &err {
        Error::Io {
            syscall,
            path,
            source,
        } => {
            assert_eq!(*syscall, "open");
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("missing.img"));
    assert!(!err.is_rejected_image());
}

#[test]
fn image_grown_while_being_read_is_cut_at_the_declared_size() {
    // Bytes after the EROFS data (tree, anything appended) are never part of the copy: a valid
    // image with junk appended still verifies up to the point a loop device is needed.
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let mut f = open_rw(&layer.path);
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(&[0xff; 10_000]).unwrap();
    let wrong = [0u8; 32];
    match VerifiedLayer::attach(&layer.path, &wrong).unwrap_err() {
        Error::RootHashMismatch { actual, .. } => {
            assert_eq!(actual, hex::encode(layer.root_hash))
        }
        other => panic!("expected RootHashMismatch, got {other:?}"),
    }
}

#[test]
fn overlay_paths_that_cannot_be_expressed_are_refused() {
    let ok = Path::new("/tmp/ok");
    for (bad, needle) in [
        ("/tmp/a:b", "':'"),
        ("/tmp/a,b", "','"),
        ("/tmp/a\\b", "'\\'"),
        ("", "empty"),
    ] {
        let bad = Path::new(bad);
        let err = mount_overlay(&[ok, bad], ok, ok, ok).unwrap_err();
        match &err {
            Error::OverlayPath { role, path, reason } => {
                assert_eq!(*role, "lowerdir");
                assert_eq!(path, bad);
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("expected OverlayPath, got {other:?}"),
        }
        let err = mount_overlay(&[ok], bad, ok, ok).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OverlayPath {
                    role: "upperdir",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = mount_overlay(&[ok], ok, bad, ok).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OverlayPath {
                    role: "workdir",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let err = mount_overlay(&[], ok, ok, Path::new("/tmp/target")).unwrap_err();
    assert!(
        matches!(&err, Error::NoLowerLayers { target } if target == Path::new("/tmp/target")),
        "{err:?}"
    );
    let long = format!("/tmp/{}", "l".repeat(200));
    let lowers: Vec<&Path> = std::iter::repeat_n(Path::new(&long), 30).collect();
    let err = mount_overlay(&lowers, ok, ok, ok).unwrap_err();
    assert!(
        matches!(err, Error::OverlayOptionsTooLong { max: 4095, .. }),
        "{err:?}"
    );
}

#[test]
fn tmpfs_requests_must_be_bounded() {
    let t = Path::new("/tmp/nowhere");
    let err = mount_tmpfs(t, 0, 0o755).unwrap_err();
    assert!(matches!(err, Error::InvalidTmpfs { .. }), "{err:?}");
    let err = mount_tmpfs(t, 1 << 20, 0o10755).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTmpfs { target, reason } if target == t && reason.contains("0o10755")),
        "{err:?}"
    );
}
