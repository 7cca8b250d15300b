//! Length-prefixed frames and the strict decoding of their JSON.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{MAX_FRAME_BYTES, PROTOCOL_VERSION};

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the stream between frames.
    #[error("connection closed")]
    Closed,
    /// The stream ended inside a frame.
    #[error("frame truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: u64, got: u64 },
    /// The length prefix exceeds the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: u32 },
    /// The body is not a JSON object of the expected shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame's `version` is not the one this side speaks.
    #[error("protocol version {got} is not supported (this side speaks {want})")]
    Version { got: u64, want: u32 },
    /// Reading or writing the stream failed.
    #[error("i/o on the agent channel: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the stream can still carry frames after this error (the frame boundary is
    /// known). After `TooLarge`, `Truncated`, `Closed` or `Io` the connection must be dropped.
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::Malformed(_) | Self::Version { .. })
    }
}

/// Reads one frame and decodes it as `T`, checking `version` first so a peer speaking another
/// version gets a version error rather than a field error.
///
/// # Errors
/// [`FrameError`] for every malformed, oversized, truncated or mis-versioned frame.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    let got = read_full(r, &mut len)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if got < len.len() {
        return Err(FrameError::Truncated {
            expected: 4,
            got: got as u64,
        });
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME_BYTES,
        });
    }
    let mut body = vec![0u8; len as usize];
    let got = read_full(r, &mut body)?;
    if got < body.len() {
        return Err(FrameError::Truncated {
            expected: u64::from(len),
            got: got as u64,
        });
    }
    decode(&body)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(FrameError::Malformed("frame is not a JSON object".into()));
    };
    match obj.get("version").map(serde_json::Value::as_u64) {
        None => return Err(FrameError::Malformed("frame has no `version`".into())),
        Some(None) => {
            return Err(FrameError::Malformed(
                "`version` is not an unsigned integer".into(),
            ))
        }
        Some(Some(v)) if v != u64::from(PROTOCOL_VERSION) => {
            return Err(FrameError::Version {
                got: v,
                want: PROTOCOL_VERSION,
            })
        }
        Some(Some(_)) => {}
    }
    serde_json::from_value(value).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(got)
}

/// Encodes `msg` as one frame and writes it (a single `write_all`, then flush).
///
/// # Errors
/// [`FrameError::TooLarge`] if the encoding exceeds the limit; [`FrameError::Io`].
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge {
            len: body.len() as u64,
            max: MAX_FRAME_BYTES,
        })?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}
