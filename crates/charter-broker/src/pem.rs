//! Tiny PEM helpers (one block, base64 body).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::{Error, Result};

/// Encode DER as a PEM block with `label`.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    let mut rest = b.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        s.push_str(line);
        s.push('\n');
        rest = tail;
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Decode the first PEM block labelled `label`.
pub fn decode(label: &str, text: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| Error::Key(format!("no {label} PEM block")))?;
    let body = text
        .get(start.saturating_add(begin.len())..)
        .unwrap_or_default();
    let stop = body
        .find(&end)
        .ok_or_else(|| Error::Key(format!("unterminated {label} PEM block")))?;
    let b64: String = body
        .get(..stop)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64)
        .map_err(|e| Error::Key(format!("{label} PEM base64: {e}")))
}
