//! Framing for guest-initiated byte streams over one virtio-serial port (the QEMU UVM's reach
//! to its key broker, `charter.broker.<n>`).
//!
//! A port is a single byte stream that is always "connected" once the host holds its socket,
//! so neither side can signal a new connection or its end by opening or closing. Each frame is
//! `[kind u8][len u32 BE][payload]`:
//!
//! * [`RelayFrame::Open`] (guest to host, empty): a new session; the host connects to the
//!   broker;
//! * [`RelayFrame::Data`] (both ways, at most [`MAX_RELAY_DATA`] bytes): stream bytes;
//! * [`RelayFrame::Close`] (both ways, empty): the sender sends no more data in this session
//!   (a half close). Each side sends exactly one per session; the session ends when both were
//!   seen, and only then may the guest send the next `Open`.
//!
//! The guest trusts nothing it reads here: the stream is TLS to the broker the attested policy
//! names, ending in the guest. A host that breaks the framing only denies service.

/// Largest payload of one [`RelayFrame::Data`].
pub const MAX_RELAY_DATA: usize = 64 * 1024;
/// Bytes before a frame's payload.
pub const RELAY_HEADER_LEN: usize = 5;

const OPEN: u8 = 1;
const DATA: u8 = 2;
const CLOSE: u8 = 3;

/// One relay frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayFrame {
    /// A new session (guest to host).
    Open,
    /// Stream bytes.
    Data(Vec<u8>),
    /// No more data from the sender in this session.
    Close,
}

/// A malformed relay frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("relay frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("relay frame payload of {0} bytes exceeds {MAX_RELAY_DATA}")]
    TooLong(u32),
    #[error("relay control frame (kind {0}) with a payload")]
    ControlPayload(u8),
}

/// Appends the frame(s) carrying `data` to `out`, split into payloads of at most
/// [`MAX_RELAY_DATA`] bytes (nothing for empty `data`).
pub fn encode_data(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_RELAY_DATA) {
        out.push(DATA);
        // A chunk is at most MAX_RELAY_DATA bytes, which fits in a u32.
        out.extend_from_slice(&u32::try_from(chunk.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Appends an [`RelayFrame::Open`] or [`RelayFrame::Close`] to `out`.
pub fn encode_control(open: bool, out: &mut Vec<u8>) {
    out.push(if open { OPEN } else { CLOSE });
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// Checks a frame header: `Ok(payload length)`.
///
/// # Errors
/// [`RelayError`] for an unknown kind, an oversized payload or a control frame with payload.
pub fn check_header(header: [u8; RELAY_HEADER_LEN]) -> Result<(u8, usize), RelayError> {
    let [kind, a, b, c, d] = header;
    let len = u32::from_be_bytes([a, b, c, d]);
    match kind {
        DATA if len as usize > MAX_RELAY_DATA => Err(RelayError::TooLong(len)),
        DATA => Ok((kind, len as usize)),
        OPEN | CLOSE if len != 0 => Err(RelayError::ControlPayload(kind)),
        OPEN | CLOSE => Ok((kind, 0)),
        other => Err(RelayError::UnknownKind(other)),
    }
}

fn frame_of(kind: u8, payload: &[u8]) -> RelayFrame {
    match kind {
        OPEN => RelayFrame::Open,
        CLOSE => RelayFrame::Close,
        _ => RelayFrame::Data(payload.to_vec()),
    }
}

/// Decodes the frame at the start of `buf`: `Ok(Some((frame, bytes used)))`, or `Ok(None)`
/// when `buf` does not hold a whole frame yet.
///
/// # Errors
/// [`RelayError`] for a malformed header (the stream cannot be trusted to continue).
pub fn decode(buf: &[u8]) -> Result<Option<(RelayFrame, usize)>, RelayError> {
    let Some(header) = buf
        .get(..RELAY_HEADER_LEN)
        .and_then(|h| <[u8; RELAY_HEADER_LEN]>::try_from(h).ok())
    else {
        return Ok(None);
    };
    let (kind, len) = check_header(header)?;
    let end = RELAY_HEADER_LEN + len;
    Ok(buf
        .get(RELAY_HEADER_LEN..end)
        .map(|payload| (frame_of(kind, payload), end)))
}

/// Reads one frame from a blocking stream: `Ok(None)` at a clean end of stream (before a
/// header).
///
/// # Errors
/// I/O errors (an end of stream inside a frame is `UnexpectedEof`); a malformed frame is
/// `InvalidData` wrapping its [`RelayError`].
pub fn read_relay_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<RelayFrame>> {
    let mut header = [0u8; RELAY_HEADER_LEN];
    let mut got = 0;
    while got < RELAY_HEADER_LEN {
        let rest = header.get_mut(got..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (kind, len) = check_header(header)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(frame_of(kind, &payload)))
}

/// The sealed-volume disk of the QEMU UVM: a virtio block device is a whole number of
/// 512-byte sectors, but a sealed file's last chunk is found by its end. The host therefore
/// puts the sealed file after one header sector holding its exact length
/// (`"CHSEALDK"` | length u64 BE | zeros) and pads the disk to whole sectors; the guest reads
/// exactly that many bytes. The header is as untrusted as the rest of the disk: a wrong length
/// cuts or extends the stream, which the sealed format's authenticated last-chunk flag refuses.
pub mod sealed_disk {
    /// The header sector's size.
    pub const HEADER_LEN: usize = 512;
    const MAGIC: &[u8; 8] = b"CHSEALDK";

    /// The header sector for a sealed file of `len` bytes.
    #[must_use]
    pub fn header(len: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut fields = MAGIC.iter().copied().chain(len.to_be_bytes());
        for b in &mut h {
            match fields.next() {
                Some(v) => *b = v,
                None => break,
            }
        }
        h
    }

    /// The sealed length a header sector announces, `None` if it is not one.
    #[must_use]
    pub fn parse(header: &[u8; HEADER_LEN]) -> Option<u64> {
        if header.get(..8) != Some(MAGIC.as_slice()) {
            return None;
        }
        let len: [u8; 8] = header.get(8..16)?.try_into().ok()?;
        Some(u64::from_be_bytes(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = Vec::new();
        encode_control(true, &mut wire);
        let big = vec![7u8; MAX_RELAY_DATA + 10];
        encode_data(&big, &mut wire);
        encode_data(b"", &mut wire);
        encode_control(false, &mut wire);
        // decode from a growing buffer, as the guest does
        let mut frames = Vec::new();
        let mut buf = Vec::new();
        for b in &wire {
            buf.push(*b);
            while let Some((f, used)) = decode(&buf).unwrap() {
                frames.push(f);
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(
            frames,
            vec![
                RelayFrame::Open,
                RelayFrame::Data(vec![7; MAX_RELAY_DATA]),
                RelayFrame::Data(vec![7; 10]),
                RelayFrame::Close
            ]
        );
        // and from a blocking reader, as the host does
        let mut r = wire.as_slice();
        let mut again = Vec::new();
        while let Some(f) = read_relay_frame(&mut r).unwrap() {
            again.push(f);
        }
        assert_eq!(again, frames);
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(RelayError::UnknownKind(9)));
        assert_eq!(decode(&[DATA, 0, 1, 0, 1]), Err(RelayError::TooLong(65537)));
        assert_eq!(
            decode(&[OPEN, 0, 0, 0, 1, 0]),
            Err(RelayError::ControlPayload(OPEN))
        );
        assert_eq!(decode(&[DATA, 0, 0, 0, 2, 1]), Ok(None));
        let e = read_relay_frame(&mut [CLOSE, 0, 0, 1, 0].as_slice()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let e = read_relay_frame(&mut [DATA, 0, 0, 0, 4, 1].as_slice()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn sealed_disk_header() {
        let h = sealed_disk::header(0x0102_0304_0506);
        assert_eq!(sealed_disk::parse(&h), Some(0x0102_0304_0506));
        assert_eq!(sealed_disk::parse(&[0; sealed_disk::HEADER_LEN]), None);
    }
}
