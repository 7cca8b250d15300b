//! Thread-count independence, corruption naming the exact first bad block, superblock handling,
//! streaming input, and typed errors. The tree bytes themselves are checked against
//! `veritysetup` in `tests/veritysetup.rs`.

mod common;

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::Path;

use charter_verity::{
    format, format_reader, verify, verify_with_superblock, Error, FormatOptions, Formatted,
    HashAlgorithm, HashFormat, RootHash, Salt, Superblock, VerifyOptions, VerityParams,
};
use common::{make_data, open_rw};
use proptest::prelude::*;

fn threads(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn build(data: &Path, size: u64, hash: &Path, p: &VerityParams, t: usize, sb: bool) -> Formatted {
    let d = open_rw(data);
    let h = open_rw(hash);
    let opts = FormatOptions {
        threads: threads(t),
        superblock: sb.then_some([7; 16]),
    };
    format(&d, size, &h, 0, p, &opts).unwrap()
}

#[test]
fn thread_counts_give_identical_trees() {
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        (VerityParams::default(), 20 << 20),
        // Chunks (16 blocks of 512 KiB) smaller than a hash block's span (128 blocks).
        (
            VerityParams {
                data_block_size: 524_288,
                ..VerityParams::default()
            },
            (300 << 19) + 1,
        ),
        // Packed 20-byte digests crossing chunk and block boundaries.
        (
            VerityParams {
                hash: HashAlgorithm::Sha1,
                data_block_size: 512,
                hash_block_size: 512,
                format: HashFormat::V0,
                salt: Salt::new(b"salt").unwrap(),
            },
            (9 << 20) + 100,
        ),
    ];
    for (i, (p, size)) in configs.iter().enumerate() {
        let data = dir.path().join(format!("data{i}"));
        make_data(&data, *size, i as u64, false);
        let mut reference: Option<(Formatted, Vec<u8>)> = None;
        for t in [1, 2, 3, 8] {
            let hash = dir.path().join(format!("hash{i}-{t}"));
            let f = build(&data, *size, &hash, p, t, false);
            let bytes = std::fs::read(&hash).unwrap();
            match &reference {
                None => reference = Some((f, bytes)),
                Some((r, rb)) => {
                    assert_eq!(f, *r, "config {i}, {t} threads");
                    assert!(bytes == *rb, "config {i}, {t} threads: tree bytes differ");
                }
            }
            let vopts = VerifyOptions {
                threads: threads(t),
                superblock: false,
            };
            let (d, h) = (open_rw(&data), open_rw(&hash));
            let root = reference.as_ref().unwrap().0.root_hash;
            verify(&d, *size, &h, 0, p, &root, &vopts).unwrap();
        }
    }
}

#[test]
fn streaming_reader_matches_file_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let size = (5 << 20) + 1234;
    make_data(&data, size, 42, false);
    let p = VerityParams::default();
    let a = build(&data, size, &dir.path().join("a"), &p, 2, true);
    let h = open_rw(&dir.path().join("b"));
    let opts = FormatOptions {
        threads: threads(2),
        superblock: Some([7; 16]),
    };
    let b = format_reader(File::open(&data).unwrap(), size, &h, 0, &p, &opts).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read(dir.path().join("a")).unwrap(),
        std::fs::read(dir.path().join("b")).unwrap()
    );
    // A stream shorter than announced is a typed error.
    let short = &std::fs::read(&data).unwrap()[..4096 * 3];
    let err = format_reader(short, size, &h, 0, &p, &opts).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

/// 1000 data blocks of 4 KiB, 512-byte hash blocks (16 digests each): levels of 63, 4 and 1
/// blocks, so every level can be corrupted separately.
struct Fixture {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    hash: std::path::PathBuf,
    params: VerityParams,
    size: u64,
    formatted: Formatted,
}

fn fixture(sb: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hash = dir.path().join("hash");
    let size = 1000 * 4096;
    make_data(&data, size, 7, false);
    let params = VerityParams {
        hash_block_size: 512,
        ..VerityParams::default()
    };
    let formatted = build(&data, size, &hash, &params, 2, sb);
    let blocks: Vec<u64> = formatted.layout.levels.iter().map(|l| l.blocks).collect();
    assert_eq!(blocks, vec![63, 4, 1]);
    Fixture {
        _dir: dir,
        data,
        hash,
        params,
        size,
        formatted,
    }
}

fn flip(path: &Path, offset: u64) {
    let f = open_rw(path);
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

fn check(fx: &Fixture, t: usize) -> Result<(), Error> {
    let (d, h) = (open_rw(&fx.data), open_rw(&fx.hash));
    let opts = VerifyOptions {
        threads: threads(t),
        superblock: fx.formatted.layout.superblock_offset.is_some(),
    };
    verify(
        &d,
        fx.size,
        &h,
        0,
        &fx.params,
        &fx.formatted.root_hash,
        &opts,
    )
}

#[test]
fn corrupt_data_names_first_bad_block() {
    let fx = fixture(false);
    check(&fx, 2).unwrap();
    flip(&fx.data, 900 * 4096 + 17);
    flip(&fx.data, 700 * 4096 + 4095);
    for t in [1, 3] {
        let err = check(&fx, t).unwrap_err();
        assert!(
            matches!(err, Error::DataBlockMismatch { block: 700 }),
            "{err}"
        );
        assert_eq!(err.to_string(), "data block 700 does not match its hash");
    }
    flip(&fx.data, 3);
    assert!(matches!(
        check(&fx, 2),
        Err(Error::DataBlockMismatch { block: 0 })
    ));
}

#[test]
fn corrupt_hash_names_level_and_block() {
    let fx = fixture(false);
    let levels = fx.formatted.layout.levels.clone();
    // A digest byte in level 0 block 5: that hash block is bad, not data block 5 * 16.
    flip(&fx.hash, levels[0].offset + 5 * 512 + 40);
    let err = check(&fx, 2).unwrap_err();
    assert!(
        matches!(err, Error::HashBlockMismatch { level: 0, block: 5 }),
        "{err}"
    );
    // Zero padding of the last, partial level-0 block (1000 = 62 * 16 + 8 digests).
    flip(&fx.hash, levels[0].offset + 62 * 512 + 8 * 32 + 1);
    let err = check(&fx, 1).unwrap_err();
    assert!(
        matches!(err, Error::HashBlockMismatch { level: 0, block: 5 }),
        "{err}"
    );
    flip(&fx.hash, levels[1].offset + 2 * 512 + 511);
    let err = check(&fx, 2).unwrap_err();
    assert!(
        matches!(err, Error::HashBlockMismatch { level: 1, block: 2 }),
        "{err}"
    );
    flip(&fx.hash, levels[2].offset + 100);
    let err = check(&fx, 2).unwrap_err();
    assert!(matches!(err, Error::RootHashMismatch { .. }), "{err}");
}

#[test]
fn corrupt_padding_of_last_hash_block() {
    let fx = fixture(false);
    let l0 = fx.formatted.layout.levels[0];
    flip(&fx.hash, l0.offset + 62 * 512 + 8 * 32 + 1);
    let err = check(&fx, 2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::HashBlockMismatch {
                level: 0,
                block: 62
            }
        ),
        "{err}"
    );
}

#[test]
fn wrong_root_and_wrong_length() {
    let fx = fixture(false);
    let (d, h) = (open_rw(&fx.data), open_rw(&fx.hash));
    let opts = VerifyOptions::default();
    let mut bytes = fx.formatted.root_hash.as_bytes().to_vec();
    bytes[31] ^= 1;
    let wrong = RootHash::from_bytes(&bytes).unwrap();
    let err = verify(&d, fx.size, &h, 0, &fx.params, &wrong, &opts).unwrap_err();
    assert!(matches!(err, Error::RootHashMismatch { .. }), "{err}");
    assert!(err.to_string().starts_with("root hash mismatch: expected "));
    let sha1_len = RootHash::from_bytes(&[0; 20]).unwrap();
    let err = verify(&d, fx.size, &h, 0, &fx.params, &sha1_len, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RootHashLength {
                expected: 32,
                actual: 20,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_devices_are_typed_errors() {
    let fx = fixture(false);
    let (d, h) = (open_rw(&fx.data), open_rw(&fx.hash));
    let opts = VerifyOptions::default();
    let root = fx.formatted.root_hash;
    let err = verify(&d, fx.size + 4096, &h, 0, &fx.params, &root, &opts).unwrap_err();
    // One data block more than the file holds.
    assert!(
        matches!(
            err,
            Error::Truncated {
                what: "data device",
                ..
            }
        ),
        "{err}"
    );
    h.set_len(fx.formatted.layout.tree_end() - 1).unwrap();
    let err = verify(&d, fx.size, &h, 0, &fx.params, &root, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                what: "hash device",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn superblock_on_disk() {
    let fx = fixture(true);
    assert_eq!(fx.formatted.layout.superblock_offset, Some(0));
    assert_eq!(fx.formatted.layout.tree_offset, 512);
    check(&fx, 2).unwrap();
    let (d, h) = (open_rw(&fx.data), open_rw(&fx.hash));
    let sb = verify_with_superblock(&d, &h, 0, &fx.formatted.root_hash, threads(2)).unwrap();
    assert_eq!(sb, Superblock::new(&fx.params, 1000, [7; 16]));
    let mut raw = [0u8; 512];
    h.read_exact_at(&mut raw, 0).unwrap();
    assert_eq!(Superblock::decode(&raw).unwrap().encode(), raw);

    // verify() with explicit params checks them against the superblock.
    let other = VerityParams {
        salt: Salt::none(),
        ..fx.params.clone()
    };
    let opts = VerifyOptions {
        threads: threads(1),
        superblock: true,
    };
    let err = verify(&d, fx.size, &h, 0, &other, &fx.formatted.root_hash, &opts).unwrap_err();
    assert!(
        matches!(err, Error::SuperblockMismatch { field: "salt" }),
        "{err}"
    );

    // A damaged superblock is a typed error.
    flip(&fx.hash, 0);
    let err = verify_with_superblock(&d, &h, 0, &fx.formatted.root_hash, threads(1)).unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err}");
}

#[test]
fn format_refusals_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_data(&data, 8192, 1, false);
    let d = open_rw(&data);
    let h = open_rw(&dir.path().join("hash"));
    let opts = FormatOptions::default();
    let p = VerityParams::default();
    let err = format(&d, 4095, &h, 0, &p, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoDataBlocks {
                data_size: 4095,
                block_size: 4096
            }
        ),
        "{err}"
    );
    assert!(matches!(
        format(&d, 8192, &h, 100, &p, &opts),
        Err(Error::InvalidHashOffset(100))
    ));
    let bad = VerityParams {
        data_block_size: 1 << 20,
        ..p.clone()
    };
    assert!(matches!(
        format(&d, 8192, &h, 0, &bad, &opts),
        Err(Error::InvalidDataBlockSize(1048576))
    ));
    // Appending into the data area of the same file is refused, as veritysetup does.
    let err = format(&d, 8192, &d, 4096, &p, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::HashAreaOverlapsData {
                hash_offset: 4096,
                data_end: 8192
            }
        ),
        "{err}"
    );
    // A superblock-less tree rounded down into the data (veritysetup overwrites the data).
    let p512 = VerityParams {
        data_block_size: 512,
        ..p.clone()
    };
    let err = format(&d, 8192 + 512, &d, 8192 + 512, &p512, &opts).unwrap_err();
    assert!(
        matches!(err, Error::HashAreaOverlapsData { data_end: 8704, .. }),
        "{err}"
    );
    // Data shorter than data_size.
    let err = format(&d, 3 * 4096, &h, 0, &p, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                what: "data device",
                ..
            }
        ),
        "{err}"
    );
}

proptest! {
    #[test]
    fn random_superblock_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(sb) = Superblock::decode(&bytes) {
            prop_assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
        }
    }

    #[test]
    fn mutated_superblocks_never_panic(at in 0usize..512, value in any::<u8>(), salt_len in 0usize..=256) {
        let p = VerityParams { salt: Salt::new(&vec![3; salt_len]).unwrap(), ..VerityParams::default() };
        let mut raw = Superblock::new(&p, 12345, [1; 16]).encode();
        raw[at] = value;
        if let Ok(sb) = Superblock::decode(&raw) {
            prop_assert_eq!(sb.encode(), raw);
        }
    }

    #[test]
    fn valid_superblocks_round_trip(
        alg in 0usize..5, v0 in any::<bool>(), dbs in 9u32..=19, hbs in 9u32..=19,
        blocks in 1u64..(1 << 40), salt in proptest::collection::vec(any::<u8>(), 0..=256),
        uuid in any::<[u8; 16]>(),
    ) {
        let p = VerityParams {
            hash: HashAlgorithm::ALL[alg],
            data_block_size: 1 << dbs,
            hash_block_size: 1 << hbs,
            salt: Salt::new(&salt).unwrap(),
            format: if v0 { HashFormat::V0 } else { HashFormat::V1 },
        };
        let sb = Superblock::new(&p, blocks, uuid);
        let decoded = Superblock::decode(&sb.encode()).unwrap();
        prop_assert_eq!(decoded.params(), p);
        prop_assert_eq!(decoded, sb);
    }
}

#[test]
fn one_block_superblock_on_empty_file() {
    // veritysetup fails here (its read-modify-write of the superblock's 4 KiB finds no bytes);
    // we write the superblock and extend the file to the (empty) tree's start, as it does on a
    // pre-sized file (compared byte for byte in tests/veritysetup.rs).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_data(&data, 4096, 3, false);
    let (d, h) = (open_rw(&data), open_rw(&dir.path().join("hash")));
    let opts = FormatOptions {
        threads: threads(1),
        superblock: Some([1; 16]),
    };
    let f = format(&d, 4096, &h, 512, &VerityParams::default(), &opts).unwrap();
    assert!(f.layout.levels.is_empty());
    assert_eq!(f.hash_area_size, 4096 - 512);
    assert_eq!(h.metadata().unwrap().len(), 4096);
    assert_eq!(Superblock::read_at(&h, 512).unwrap().data_blocks, 1);
    verify_with_superblock(&d, &h, 512, &f.root_hash, threads(1)).unwrap();
}
