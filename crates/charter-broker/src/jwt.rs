//! EdDSA (Ed25519) JWTs: the broker's attestation tokens and the admin tokens.
//!
//! Admin tokens follow trustee's self-managed admin scheme: the operator holds an Ed25519
//! key (`trustee-cli keygen` style), the broker is started with the public key, every admin
//! request carries `Authorization: Bearer <JWT>` with `alg = EdDSA` and a short `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{pem, Error, Result};

/// Longest lifetime an admin token may claim (`exp - now`).
pub const MAX_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on `exp` / `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sign `claims` (a JSON object) as a compact JWS with EdDSA.
pub fn sign(key: &Ed25519KeyPair, claims: &Value) -> Result<String> {
    let payload = serde_json::to_vec(claims).map_err(|_| Error::Token("claims"))?;
    let mut out = B64U.encode(HEADER);
    out.push('.');
    out.push_str(&B64U.encode(payload));
    let sig = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&B64U.encode(sig.as_ref()));
    Ok(out)
}

/// Verify a compact EdDSA JWS with the raw 32-byte Ed25519 `public_key`; check `exp`
/// (required, not past, and at most `max_ttl` ahead when given). Returns the claims.
pub fn verify(public_key: &[u8], token: &str, max_ttl: Option<Duration>) -> Result<Value> {
    if token.len() > 64 << 10 {
        return Err(Error::Token("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Token("not a compact JWS"));
    };
    let header: Value =
        serde_json::from_slice(&B64U.decode(h).map_err(|_| Error::Token("header"))?)
            .map_err(|_| Error::Token("header"))?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(Error::Token("alg is not EdDSA"));
    }
    if header.get("crit").is_some() {
        return Err(Error::Token("crit header"));
    }
    let sig = B64U
        .decode(s)
        .map_err(|_| Error::Token("signature encoding"))?;
    let signed_len = h.len().saturating_add(1).saturating_add(p.len());
    let signed = token
        .get(..signed_len)
        .ok_or(Error::Token("not a compact JWS"))?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| Error::Token("bad signature"))?;
    let claims: Value =
        serde_json::from_slice(&B64U.decode(p).map_err(|_| Error::Token("payload"))?)
            .map_err(|_| Error::Token("payload"))?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Error::Token("no exp"))?;
    let now = now();
    if exp.saturating_add(LEEWAY.as_secs()) < now {
        return Err(Error::Token("expired"));
    }
    if let Some(max) = max_ttl {
        if exp
            > now
                .saturating_add(max.as_secs())
                .saturating_add(LEEWAY.as_secs())
        {
            return Err(Error::Token("lifetime too long"));
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
        if nbf > now.saturating_add(LEEWAY.as_secs()) {
            return Err(Error::Token("not yet valid"));
        }
    }
    Ok(claims)
}

/// The raw 32-byte key of an Ed25519 `PUBLIC KEY` PEM (SubjectPublicKeyInfo).
pub fn ed25519_public_key_from_pem(text: &str) -> Result<[u8; 32]> {
    let der = pem::decode("PUBLIC KEY", text)?;
    let key = der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or_else(|| Error::Key("not an Ed25519 SubjectPublicKeyInfo".into()))?;
    key.try_into()
        .map_err(|_| Error::Key("Ed25519 key is not 32 bytes".into()))
}

/// A `PUBLIC KEY` PEM for a raw Ed25519 key.
pub fn ed25519_public_key_pem(key: &[u8; 32]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(key);
    pem::encode("PUBLIC KEY", &der)
}

/// A new admin key pair: (`PRIVATE KEY` PKCS#8 PEM, `PUBLIC KEY` PEM).
pub fn admin_keygen() -> Result<(String, String)> {
    let kp = Ed25519KeyPair::generate().map_err(|_| Error::Crypto("ed25519 keygen"))?;
    let pkcs8 = kp.to_pkcs8().map_err(|_| Error::Crypto("pkcs8"))?;
    let public: [u8; 32] = kp
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| Error::Crypto("ed25519 public key"))?;
    Ok((
        pem::encode("PRIVATE KEY", pkcs8.as_ref()),
        ed25519_public_key_pem(&public),
    ))
}

/// Load an admin private key (`PRIVATE KEY` PKCS#8 PEM).
pub fn admin_key_from_pem(text: &str) -> Result<Ed25519KeyPair> {
    let der = pem::decode("PRIVATE KEY", text)?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| Error::Key(format!("Ed25519 PKCS#8: {e}")))
}

/// An admin token valid for `ttl` (at most [`MAX_ADMIN_TOKEN_TTL`] is accepted).
pub fn admin_token(key: &Ed25519KeyPair, ttl: Duration) -> Result<String> {
    let now = now();
    sign(
        key,
        &json!({"iat": now, "exp": now.saturating_add(ttl.as_secs()), "role": "admin"}),
    )
}

/// DER (SubjectPublicKeyInfo) of an Ed25519 key pair's public key, for completeness.
pub fn public_key_der(key: &Ed25519KeyPair) -> Result<Vec<u8>> {
    Ok(key
        .public_key()
        .as_der()
        .map_err(|_| Error::Crypto("ed25519 public key der"))?
        .as_ref()
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refusals() {
        let (private, public) = admin_keygen().unwrap();
        let key = admin_key_from_pem(&private).unwrap();
        let pk = ed25519_public_key_from_pem(&public).unwrap();
        assert_eq!(public_key_der(&key).unwrap()[12..], pk);
        let t = admin_token(&key, Duration::from_secs(60)).unwrap();
        assert_eq!(
            verify(&pk, &t, Some(MAX_ADMIN_TOKEN_TTL)).unwrap()["role"],
            "admin"
        );
        // Too long a lifetime.
        let long = admin_token(&key, Duration::from_secs(86400)).unwrap();
        assert!(verify(&pk, &long, Some(MAX_ADMIN_TOKEN_TTL)).is_err());
        // Expired.
        let old = sign(&key, &json!({"exp": now() - 3600})).unwrap();
        assert!(verify(&pk, &old, None).is_err());
        // Other key.
        let (_, other) = admin_keygen().unwrap();
        let other = ed25519_public_key_from_pem(&other).unwrap();
        assert!(verify(&other, &t, None).is_err());
        // Tampered payload.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = B64U.encode(br#"{"exp":99999999999,"role":"admin"}"#);
        assert!(verify(&pk, &parts.join("."), None).is_err());
    }
}
