//! Round trips at chunk boundaries, and every tampering caught.

use charter_seal::{generate_key, open, seal, Error, HEADER_LEN};
use proptest::prelude::*;

fn sealed(key: &[u8; 32], data: &[u8], chunk: u32) -> Vec<u8> {
    let mut out = Vec::new();
    seal(key, data, &mut out, chunk).unwrap();
    out
}

fn opened(key: &[u8; 32], s: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    open(key, s, &mut out).map(|_| out)
}

#[test]
fn round_trips_at_chunk_boundaries() {
    let key = generate_key().unwrap();
    for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 64, 100] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let s = sealed(&key, &data, 16);
        let chunks = len.div_ceil(16).max(1);
        assert!(s.len() >= HEADER_LEN + chunks * 16, "len {len}");
        assert_eq!(opened(&key, &s).unwrap(), data, "len {len}");
    }
}

#[test]
fn salts_differ_and_wrong_keys_fail() {
    let key = generate_key().unwrap();
    let a = sealed(&key, b"same", 16);
    let b = sealed(&key, b"same", 16);
    assert_ne!(a, b);
    let other = generate_key().unwrap();
    assert!(matches!(
        opened(&other, &a),
        Err(Error::Authentication { index: 0 })
    ));
}

#[test]
fn tampering_is_caught() {
    let key = generate_key().unwrap();
    let data = vec![7u8; 100];
    let s = sealed(&key, &data, 16);
    // any flipped byte, header included
    for i in 0..s.len() {
        let mut t = s.clone();
        t[i] ^= 1;
        assert!(opened(&key, &t).is_err(), "flip at {i} went unnoticed");
    }
    // truncation at every length
    for cut in 0..s.len() {
        assert!(
            opened(&key, &s[..cut]).is_err(),
            "truncation to {cut} went unnoticed"
        );
    }
    // a chunk boundary truncation is reported as truncation
    let exact = sealed(&key, &[1u8; 32], 16);
    let one_chunk = HEADER_LEN + 16 + 16;
    assert!(matches!(
        opened(&key, &exact[..one_chunk]),
        Err(Error::Truncated)
    ));
    // extension
    let mut ext = s.clone();
    ext.extend_from_slice(&[0u8; 40]);
    assert!(opened(&key, &ext).is_err());
    // swapped chunks
    let mut sw = s.clone();
    let (a, b) = (HEADER_LEN, HEADER_LEN + 32);
    let first: Vec<u8> = sw[a..a + 32].to_vec();
    let second: Vec<u8> = sw[b..b + 32].to_vec();
    sw[a..a + 32].copy_from_slice(&second);
    sw[b..b + 32].copy_from_slice(&first);
    assert!(matches!(
        opened(&key, &sw),
        Err(Error::Authentication { .. })
    ));
    // bad magic, absurd chunk size
    let mut m = s.clone();
    m[0] = b'X';
    assert!(matches!(opened(&key, &m), Err(Error::Magic)));
    let mut c = s.clone();
    c[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(opened(&key, &c), Err(Error::ChunkSize(_))));
}

proptest! {
    #[test]
    fn any_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1u32..70) {
        let key = [9u8; 32];
        let s = sealed(&key, &data, chunk);
        prop_assert_eq!(opened(&key, &s).unwrap(), data);
    }
}
