//! REPORT_DATA binding of KBS protocol 0.4.0 (as guest-components and trustee compute it).
//!
//! The primary TEE's report data is `H(JCS({"tee-pubkey": <JWK>, "nonce": <challenge nonce>,
//! "additional-evidence": <string>}))` with `H` = SHA-384 (the default, and the only
//! algorithm this broker selects), zero-padded to the 64 bytes of SNP REPORT_DATA. With no
//! additional devices `additional-evidence` is the empty string.

use kbs_types::TeePubKey;
use serde_json::json;
use sha2::{Digest, Sha384};

use crate::{jcs, Error, Result};

/// The hash algorithm name this implementation uses and selects (`selected-hash-algorithm`).
pub const HASH_ALGORITHM: &str = "sha384";

/// The canonical JSON bytes that are hashed into REPORT_DATA.
pub fn runtime_data_bytes(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>> {
    let key = serde_json::to_value(tee_pubkey).map_err(|_| Error::Jcs("tee-pubkey"))?;
    jcs::canonicalize(&json!({
        "tee-pubkey": key,
        "nonce": nonce,
        "additional-evidence": additional_evidence,
    }))
}

/// The 64-byte SNP REPORT_DATA binding `nonce` and `tee_pubkey` (SHA-384, zero padded).
pub fn report_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; 64]> {
    let digest = Sha384::digest(runtime_data_bytes(nonce, tee_pubkey, additional_evidence)?);
    let mut out = [0u8; 64];
    for (d, s) in out.iter_mut().zip(digest.iter()) {
        *d = *s;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha384_of_jcs_padded() {
        let key = TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "X".into(),
            y: "Y".into(),
        };
        let bytes = runtime_data_bytes("bm9uY2U", &key, "").unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"additional-evidence":"","nonce":"bm9uY2U","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"X","y":"Y"}}"#
        );
        let rd = report_data("bm9uY2U", &key, "").unwrap();
        assert_eq!(&rd[..48], Sha384::digest(&bytes).as_slice());
        assert_eq!(&rd[48..], &[0u8; 16]);
    }
}
