//! RFC 8785 JSON Canonicalization Scheme, for the values the KBS protocol hashes.
//!
//! Object members are sorted by the UTF-16 code units of their names, no insignificant
//! whitespace is written, strings use the ECMAScript escapes (which are serde_json's: `\"`,
//! `\\`, `\b \f \n \r \t`, other control characters as lowercase `\u00xx`, everything else
//! literal). Numbers other than integers are refused: the protocol hashes none, and ECMAScript
//! float formatting is a source of interop bugs not worth carrying in the TCB.

use serde_json::Value;

use crate::{Error, Result};

/// Canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out, 0)?;
    Ok(out)
}

const MAX_DEPTH: usize = 64;

fn write(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Jcs("nesting too deep"));
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(Error::Jcs("non-integer number"));
            }
        }
        Value::String(s) => string(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out, depth.saturating_add(1))?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out)?;
                out.push(b':');
                write(v, out, depth.saturating_add(1))?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) -> Result<()> {
    let quoted = serde_json::to_string(s).map_err(|_| Error::Jcs("string"))?;
    out.extend_from_slice(quoted.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_and_compacts() {
        let v = json!({"nonce": "n", "tee-pubkey": {"y": "2", "x": "1", "kty": "EC"}, "additional-evidence": ""});
        assert_eq!(
            String::from_utf8(canonicalize(&v).unwrap()).unwrap(),
            r#"{"additional-evidence":"","nonce":"n","tee-pubkey":{"kty":"EC","x":"1","y":"2"}}"#
        );
    }

    #[test]
    fn rfc8785_escapes_and_utf16_order() {
        // RFC 8785 §3.2.3: sorting by UTF-16 code units puts U+20AC before U+1F600 (surrogates).
        let v =
            json!({"\u{1F600}": 1, "\u{20AC}": 2, "\n": [true, null, -3], "a\u{1}\"": "\u{7f}é"});
        let s = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"\\n\":[true,null,-3],\"a\\u0001\\\"\":\"\u{7f}é\",\"\u{20AC}\":2,\"\u{1F600}\":1}"
        );
        assert!(canonicalize(&json!(1.5)).is_err());
    }
}
