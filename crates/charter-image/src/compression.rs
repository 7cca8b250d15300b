//! Layer blob compression, detected from magic bytes (the media type is advisory: registries
//! and `docker save` disagree on it, the bytes do not).

use std::io::{self, BufReader, Read};

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// An uncompressed tar stream.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd frames.
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Reads the first bytes of `inner` and returns a reader of the decompressed stream.
pub fn decompress<'a, R: Read + 'a>(mut inner: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // Read the magic with a loop: a short first read (a pipe) must not hide it.
    let mut head = [0u8; ZSTD_MAGIC.len()];
    let mut filled = 0;
    while let Some(rest) = head.get_mut(filled..).filter(|r| !r.is_empty()) {
        match inner.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = head.get(..filled).unwrap_or_default().to_vec();
    let kind = if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let stream = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(inner));
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(stream)?),
        Compression::None => Box::new(stream),
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decodes_all_three() {
        let payload = b"hello layer".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&payload).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&payload[..], 1).unwrap();
        for (bytes, want) in [
            (payload.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let (kind, mut r) = decompress(&bytes[..]).unwrap();
            assert_eq!(kind, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut bytes = vec![0x1f, 0x8b, 8, 0];
        bytes.extend_from_slice(&[0xff; 64]);
        let (_, mut r) = decompress(&bytes[..]).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }
}
