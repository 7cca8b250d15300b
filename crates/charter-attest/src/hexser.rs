//! Serde helpers: byte arrays as lowercase hex, integers as `0x…` hex strings.

use serde::Serializer;

/// Serialize bytes as lowercase hex.
pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_ref()))
}

/// `0x…` for u64.
pub mod u64hex {
    use serde::Serializer;
    /// Serialize.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:#x}"))
    }
}

/// `0x…` for u32.
pub mod u32hex {
    use serde::Serializer;
    /// Serialize.
    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:#x}"))
    }
}

/// `0x…` for `Option<u64>` (used with `skip_serializing_if`).
pub mod opt_u64hex {
    use serde::Serializer;
    /// Serialize.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:#x}")),
            None => s.serialize_none(),
        }
    }
}
