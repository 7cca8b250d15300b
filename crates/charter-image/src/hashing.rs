//! Readers that hash what passes through them, so digests are checked while streaming.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::Sha256Digest;

/// Hashes and counts every byte read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads `inner` to its end (so the digest covers all of it), then returns the digest and
    /// the number of bytes seen.
    pub fn finish(mut self) -> io::Result<(Sha256Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            Sha256Digest::from_bytes(self.hasher.finalize().into()),
            self.count,
        ))
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hasher.update(read);
        self.count = self.count.saturating_add(read.len() as u64);
        Ok(n)
    }
}
