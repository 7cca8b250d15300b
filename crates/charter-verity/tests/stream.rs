//! `VerityWriter` (hash while writing) must build exactly the tree `format` builds over the
//! final file, whatever the write pattern: chunk sizes, seeks back over hashed blocks, holes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;

use charter_verity::{
    format, Error, FormatOptions, HashAlgorithm, HashFormat, Salt, VerityParams, VerityWriter,
};
use rand::{Rng, SeedableRng};

fn rw_tempfile() -> File {
    tempfile::tempfile().unwrap()
}

fn whole(f: &File) -> Vec<u8> {
    let len = f.metadata().unwrap().len();
    let mut v = vec![0u8; len as usize];
    f.read_exact_at(&mut v, 0).unwrap();
    v
}

/// Writes `data_size` bytes of pattern through a VerityWriter with random chunking, a few
/// rewrites of earlier blocks and, optionally, a hole; then compares with `format`.
fn check_pattern(seed: u64, params: VerityParams, data_size: u64, superblock: bool, hole: bool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let file = rw_tempfile();
    let mut w = VerityWriter::new(&file, params.clone()).unwrap();
    let mut pos = 0u64;
    while pos < data_size {
        let len = rng.gen_range(1..=300_000u64).min(data_size - pos);
        if hole && rng.gen_bool(0.05) {
            // Leave a hole: seek forward, as a sparse writer does.
            w.seek(SeekFrom::Current(len as i64)).unwrap();
        } else {
            let buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            w.write_all(&buf).unwrap();
        }
        pos += len;
        if rng.gen_bool(0.1) {
            // Go back and rewrite something already written (like a superblock at the end).
            let at = rng.gen_range(0..pos);
            let n = rng.gen_range(1..=5000u64).min(pos - at);
            w.seek(SeekFrom::Start(at)).unwrap();
            let buf: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            w.write_all(&buf).unwrap();
            w.seek(SeekFrom::Start(pos)).unwrap();
        }
    }
    // A final rewrite of the first bytes, as the EROFS writer does with its superblock.
    w.seek(SeekFrom::Start(1024)).unwrap();
    w.write_all(&[0xe2, 0xe1, 0xf5, 0xe0]).unwrap();
    w.seek(SeekFrom::End(0)).unwrap();
    // A hole at the very end does not extend the file; make it explicit as a real filesystem
    // writer would (set_len) so both sides see the same bytes.
    file.set_len(data_size).unwrap();

    let hash_offset = data_size.next_multiple_of(4096);
    let opts = FormatOptions {
        threads: NonZeroUsize::new(2).unwrap(),
        superblock: superblock.then_some([7u8; 16]),
    };
    let streamed = w.finish(data_size, hash_offset, &opts).unwrap();
    let streamed_bytes = whole(&file);

    let reference = rw_tempfile();
    reference
        .write_all_at(&streamed_bytes[..data_size as usize], 0)
        .unwrap();
    reference.set_len(data_size).unwrap();
    let want = format(
        &reference,
        data_size,
        &reference,
        hash_offset,
        &params,
        &opts,
    )
    .unwrap();
    assert_eq!(streamed.root_hash, want.root_hash, "seed {seed}");
    assert_eq!(streamed.layout, want.layout);
    assert_eq!(
        streamed_bytes,
        whole(&reference),
        "seed {seed}: hash area differs"
    );
}

#[test]
fn random_write_patterns_match_format() {
    let sizes = [
        4096u64,
        8192,
        4096 * 129,
        3 << 20,
        (5 << 20) + 4096 * 3,
        9 << 20,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        for sb in [false, true] {
            check_pattern(
                i as u64 * 2 + u64::from(sb),
                VerityParams::default(),
                size,
                sb,
                false,
            );
        }
    }
    check_pattern(100, VerityParams::default(), 6 << 20, true, true);
}

#[test]
fn other_parameters_match_format() {
    let mut p = VerityParams {
        data_block_size: 512,
        hash_block_size: 1024,
        salt: Salt::new(&[0xab; 17]).unwrap(),
        ..VerityParams::default()
    };
    check_pattern(7, p.clone(), 2 << 20, true, true);
    p.hash = HashAlgorithm::Sha1;
    p.format = HashFormat::V0;
    check_pattern(8, p.clone(), (1 << 20) + 512 * 5, false, false);
    p.hash = HashAlgorithm::Sha512;
    p.salt = Salt::none();
    check_pattern(9, p, 1 << 20, true, false);
}

#[test]
fn short_data_is_a_typed_error() {
    let file = rw_tempfile();
    let mut w = VerityWriter::new(&file, VerityParams::default()).unwrap();
    w.write_all(&[1u8; 8192]).unwrap();
    let err = w
        .finish(16384, 16384, &FormatOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Truncated { offset: 8192, .. }),
        "{err}"
    );
    let w = VerityWriter::new(&file, VerityParams::default()).unwrap();
    let err = w.finish(0, 0, &FormatOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoDataBlocks { .. }), "{err}");
}
