//! The sealed-data format: a data owner's file (or a tar of a directory) encrypted under a
//! 32-byte key the owner uploads to the key broker with a release policy. Only an attested
//! group whose claims satisfy that policy gets the key, and only inside the guest is the data
//! opened.
//!
//! Construction (the STREAM online AEAD of Hoang, Reyhanitabar, Rogaway and Vizár, as used by
//! Tink's streaming AEAD and age):
//!
//! ```text
//! header  = "CHSEAL01" | chunk_size (u32 BE) | salt (32 random bytes)       44 bytes
//! key_f   = HKDF-SHA256(ikm = key, salt = salt, info = "charter-seal v1")
//! chunk_i = AES-256-GCM(key_f, nonce = i (u64 BE) | last (u8) | 000000, aad = header, P_i)
//! file    = header | chunk_0 | ... | chunk_n        every chunk but the last holds chunk_size
//!                                                    bytes of plaintext; the last is flagged
//! ```
//!
//! The per-file key makes the counter nonces unique; the counter fixes the order; the `last`
//! flag makes truncation and extension detectable; the header is authenticated by every chunk.
//! [`open`] writes a chunk's plaintext only after its tag verified, and fails if the stream ends
//! without a flagged last chunk, so a caller that discards its output on error never uses
//! unauthenticated bytes.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::io::{self, Read, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Format magic (version 1).
pub const MAGIC: &[u8; 8] = b"CHSEAL01";
/// Header length.
pub const HEADER_LEN: usize = 44;
/// Default plaintext bytes per chunk.
pub const DEFAULT_CHUNK: u32 = 64 * 1024;
/// Largest chunk size accepted when opening (bounds memory).
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;
const TAG_LEN: usize = 16;
const INFO: &[u8] = b"charter-seal v1";

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a sealed file (bad magic)")]
    Magic,
    #[error("sealed file header truncated")]
    HeaderTruncated,
    #[error("chunk size {0} is not in 1..={MAX_CHUNK}")]
    ChunkSize(u32),
    /// Wrong key, or tampered, reordered, truncated or extended data.
    #[error("chunk {index} does not authenticate (wrong key, or the data was modified)")]
    Authentication { index: u64 },
    #[error("the sealed stream ends without its final chunk (truncated)")]
    Truncated,
    #[error("too many chunks")]
    TooManyChunks,
    #[error("randomness unavailable")]
    Random,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// A 32-byte data key.
pub type DataKey = [u8; 32];

/// A fresh random data key.
///
/// # Errors
/// [`Error::Random`] if the system RNG fails.
pub fn generate_key() -> Result<DataKey, Error> {
    let mut k = [0u8; 32];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| Error::Random)?;
    Ok(k)
}

struct Len32;
impl aws_lc_rs::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn file_key(key: &DataKey, salt: &[u8]) -> Result<LessSafeKey, Error> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(key);
    let okm = prk
        .expand(&[INFO], Len32)
        .map_err(|_| Error::Authentication { index: 0 })?;
    let mut k = [0u8; 32];
    okm.fill(&mut k)
        .map_err(|_| Error::Authentication { index: 0 })?;
    let unbound = UnboundKey::new(&AES_256_GCM, &k).map_err(|_| Error::Random)?;
    Ok(LessSafeKey::new(unbound))
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[8] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Fills `buf` from `r` as far as the stream allows; returns the byte count.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Seals `input` into `output` under `key`; returns the plaintext length.
///
/// # Errors
/// I/O errors, an invalid chunk size, RNG failure.
pub fn seal(
    key: &DataKey,
    mut input: impl Read,
    mut output: impl Write,
    chunk_size: u32,
) -> Result<u64, Error> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK {
        return Err(Error::ChunkSize(chunk_size));
    }
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&chunk_size.to_be_bytes());
    SystemRandom::new()
        .fill(&mut header[12..])
        .map_err(|_| Error::Random)?;
    let fk = file_key(key, &header[12..])?;
    output.write_all(&header)?;
    let cs = chunk_size as usize;
    // Read one chunk ahead so the last one can be flagged.
    let mut cur = vec![0u8; cs];
    let mut next = vec![0u8; cs];
    let mut cur_len = fill(&mut input, &mut cur)?;
    let mut total = 0u64;
    let mut index = 0u64;
    loop {
        let next_len = if cur_len == cs {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        let last = next_len == 0;
        let mut buf = cur.get(..cur_len).unwrap_or_default().to_vec();
        fk.seal_in_place_append_tag(nonce(index, last), Aad::from(&header[..]), &mut buf)
            .map_err(|_| Error::Authentication { index })?;
        output.write_all(&buf)?;
        total += cur_len as u64;
        if last {
            break;
        }
        index = index.checked_add(1).ok_or(Error::TooManyChunks)?;
        std::mem::swap(&mut cur, &mut next);
        cur_len = next_len;
    }
    output.flush()?;
    Ok(total)
}

/// Opens a sealed stream, writing verified plaintext to `output`; returns its length. On error,
/// `output` may hold a verified prefix: discard it.
///
/// # Errors
/// [`Error::Authentication`] for a wrong key or modified data, [`Error::Truncated`], header
/// errors, I/O.
pub fn open(key: &DataKey, mut input: impl Read, mut output: impl Write) -> Result<u64, Error> {
    let mut header = [0u8; HEADER_LEN];
    if fill(&mut input, &mut header)? < HEADER_LEN {
        return Err(Error::HeaderTruncated);
    }
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(Error::Magic);
    }
    let mut cs_bytes = [0u8; 4];
    cs_bytes.copy_from_slice(header.get(8..12).ok_or(Error::HeaderTruncated)?);
    let chunk_size = u32::from_be_bytes(cs_bytes);
    if chunk_size == 0 || chunk_size > MAX_CHUNK {
        return Err(Error::ChunkSize(chunk_size));
    }
    let fk = file_key(key, header.get(12..).ok_or(Error::HeaderTruncated)?)?;
    let full = chunk_size as usize + TAG_LEN;
    let mut cur = vec![0u8; full];
    let mut cur_len = fill(&mut input, &mut cur)?;
    let mut total = 0u64;
    let mut index = 0u64;
    let mut peek = [0u8; 1];
    loop {
        if cur_len < TAG_LEN {
            return Err(Error::Truncated);
        }
        // A full chunk is the last one only if nothing follows it.
        let (last, carry) = if cur_len == full {
            match fill(&mut input, &mut peek)? {
                0 => (true, None),
                _ => (false, Some(peek[0])),
            }
        } else {
            (true, None)
        };
        let buf = cur.get_mut(..cur_len).ok_or(Error::Truncated)?;
        let plain = fk
            .open_in_place(nonce(index, last), Aad::from(&header[..]), buf)
            .map_err(|_| {
                if last && cur_len == full {
                    // A full chunk that fails as "last" may be a truncation at a boundary.
                    Error::Truncated
                } else {
                    Error::Authentication { index }
                }
            })?;
        output.write_all(plain)?;
        total += plain.len() as u64;
        if last {
            break;
        }
        index = index.checked_add(1).ok_or(Error::TooManyChunks)?;
        let Some(first) = carry else {
            return Err(Error::Truncated);
        };
        if let Some(b) = cur.first_mut() {
            *b = first;
        }
        let rest = cur.get_mut(1..).ok_or(Error::Truncated)?;
        cur_len = 1 + fill(&mut input, rest)?;
    }
    output.flush()?;
    Ok(total)
}
