//! `RootHasher` (hash what is written, store nothing) must give the root `format` computes over
//! the same bytes, whatever the write pattern: chunk sizes, holes, rewrites of the held head;
//! and must refuse, not miscompute, a rewrite of bytes it no longer holds.

use std::io::{Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;

use charter_verity::{
    format, Error, FormatOptions, HashAlgorithm, HashFormat, RootHasher, Salt, VerityParams,
};
use rand::{Rng, SeedableRng};

/// Writes `data_size` bytes with random chunking (and optionally holes) through a RootHasher
/// and into a plain buffer, rewrites parts of the held head as it goes, then compares the root
/// with `format` over the buffer.
fn check_pattern(seed: u64, params: VerityParams, data_size: u64, hold: usize, hole: bool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for threaded in [false, true] {
        let mut h = RootHasher::new(params.clone(), hold, threaded).unwrap();
        let mut mirror = vec![0u8; data_size as usize];
        let mut pos = 0u64;
        let mut written = 0u64;
        while pos < data_size {
            let len = rng.gen_range(1..=300_000u64).min(data_size - pos);
            if hole && rng.gen_bool(0.05) {
                h.seek(SeekFrom::Current(len as i64)).unwrap();
            } else {
                let buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                h.write_all(&buf).unwrap();
                mirror[pos as usize..(pos + len) as usize].copy_from_slice(&buf);
                written = pos + len;
            }
            pos += len;
            if hold > 0 && rng.gen_bool(0.1) {
                // Rewrite something in the held head, as the EROFS writer does at the end.
                let at = rng.gen_range(0..(hold as u64).min(pos));
                let n = rng
                    .gen_range(1..=5000u64)
                    .min(hold as u64 - at)
                    .min(pos - at);
                h.seek(SeekFrom::Start(at)).unwrap();
                let buf: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                h.write_all(&buf).unwrap();
                mirror[at as usize..(at + n) as usize].copy_from_slice(&buf);
                written = written.max(at + n);
                h.seek(SeekFrom::End(0)).unwrap();
                assert_eq!(h.stream_position().unwrap(), written);
                h.seek(SeekFrom::Start(pos)).unwrap();
            }
        }
        if written < data_size {
            // A trailing hole must be made explicit, as a writer of a real file would.
            h.seek(SeekFrom::Start(data_size - 1)).unwrap();
            h.write_all(&mirror[data_size as usize - 1..]).unwrap();
        }
        let root = h.finish(data_size).unwrap();

        let reference = tempfile::tempfile().unwrap();
        reference.write_all_at(&mirror, 0).unwrap();
        let hash_offset = data_size.next_multiple_of(4096);
        let opts = FormatOptions {
            threads: NonZeroUsize::new(2).unwrap(),
            superblock: Some([0u8; 16]),
        };
        let want = format(
            &reference,
            data_size,
            &reference,
            hash_offset,
            &params,
            &opts,
        )
        .unwrap();
        assert_eq!(root, want.root_hash, "seed {seed}, threaded {threaded}");
    }
}

#[test]
fn random_write_patterns_match_format() {
    let sizes = [
        4096u64,
        8192,
        4096 * 129,
        3 << 20,
        (5 << 20) + 4096 * 3,
        4096 * 128 * 130,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        for hold in [0, 4096, 3 * 4096] {
            check_pattern(
                i as u64 * 3 + hold as u64,
                VerityParams::default(),
                size,
                hold,
                false,
            );
        }
    }
    check_pattern(100, VerityParams::default(), 6 << 20, 4096, true);
    // A trailing partial block is not hashed, as in veritysetup.
    check_pattern(101, VerityParams::default(), (2 << 20) + 100, 4096, false);
}

#[test]
fn other_parameters_match_format() {
    let mut p = VerityParams {
        data_block_size: 512,
        hash_block_size: 1024,
        salt: Salt::new(&[0xab; 17]).unwrap(),
        ..VerityParams::default()
    };
    check_pattern(7, p.clone(), 2 << 20, 1000, true);
    p.hash = HashAlgorithm::Sha1;
    p.format = HashFormat::V0;
    check_pattern(8, p.clone(), (1 << 20) + 512 * 5, 512, false);
    p.hash = HashAlgorithm::Sha512;
    p.salt = Salt::none();
    check_pattern(9, p, 1 << 20, 0, false);
}

#[test]
fn rewriting_hashed_bytes_is_refused() {
    for threaded in [false, true] {
        let mut h = RootHasher::new(VerityParams::default(), 4096, threaded).unwrap();
        h.write_all(&vec![1u8; 3 << 20]).unwrap();
        // Inside the head: fine.
        h.seek(SeekFrom::Start(1024)).unwrap();
        h.write_all(&[2u8; 128]).unwrap();
        // Past the head, already hashed: refused.
        h.seek(SeekFrom::Start(8192)).unwrap();
        let err = h.write_all(&[3u8; 16]).unwrap_err();
        assert!(err.to_string().contains("already hashed"), "{err}");
        // Straddling the end of the head: refused too.
        h.seek(SeekFrom::Start(4000)).unwrap();
        assert!(h.write_all(&[3u8; 200]).is_err());
    }
}

#[test]
fn short_data_is_a_typed_error() {
    let mut h = RootHasher::new(VerityParams::default(), 4096, true).unwrap();
    h.write_all(&[1u8; 8192]).unwrap();
    let err = h.finish(16384).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { offset: 8192, .. }),
        "{err}"
    );
    let h = RootHasher::new(VerityParams::default(), 4096, false).unwrap();
    let err = h.finish(0).unwrap_err();
    assert!(matches!(err, Error::NoDataBlocks { .. }), "{err}");
}
