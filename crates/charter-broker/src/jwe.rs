//! Resources as JWE (RFC 7516, flattened JSON as `kbs_types::Response`) wrapped to the TEE
//! public key from the attestation: `ECDH-ES+A256KW` (P-256, Concat KDF, AES-256 key wrap)
//! or `RSA-OAEP-256`; content `A256GCM` with AAD = ASCII(BASE64URL(protected header)).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use base64::Engine as _;
use charter_kbs_client::keys::{
    concat_kdf_a256, ec_point_xy, rsa_spki_from_components, ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256,
    CRV_P256, ENC_A256GCM,
};
use kbs_types::{ProtectedHeader, Response, TeePubKey};
use serde_json::{json, Map};

use crate::{Error, Result};

/// Smallest RSA modulus accepted for wrapping.
pub const MIN_RSA_BITS: usize = 2048;

/// Check that a TEE key is one this broker can wrap to (before accepting an attestation).
pub fn check_key(key: &TeePubKey) -> Result<()> {
    match key {
        TeePubKey::EC { crv, alg, x, y } => {
            if alg != ALG_ECDH_ES_A256KW || crv != CRV_P256 {
                return Err(Error::Jwe(format!("unsupported EC key {alg}/{crv}")));
            }
            let point = ec_point(x, y)?;
            // Parsing validates the point (on the curve, not infinity).
            agreement::ParsedPublicKey::try_from(UnparsedPublicKey::new(&ECDH_P256, &point))
                .map(|_| ())
                .map_err(|_| Error::Jwe("EC key is not a P-256 point".into()))
        }
        TeePubKey::RSA { alg, k_mod, k_exp } => {
            if alg != ALG_RSA_OAEP_256 {
                return Err(Error::Jwe(format!("unsupported RSA alg {alg}")));
            }
            rsa_key(k_mod, k_exp).map(|_| ())
        }
        TeePubKey::AKP { alg, .. } => Err(Error::Jwe(format!("unsupported AKP alg {alg}"))),
    }
}

fn b64(what: &str, s: &str) -> Result<Vec<u8>> {
    B64U.decode(s)
        .map_err(|_| Error::Jwe(format!("{what} is not base64url")))
}

fn ec_point(x: &str, y: &str) -> Result<Vec<u8>> {
    let (x, y) = (b64("x", x)?, b64("y", y)?);
    if x.len() != 32 || y.len() != 32 {
        return Err(Error::Jwe("P-256 coordinates are not 32 bytes".into()));
    }
    let mut p = Vec::with_capacity(65);
    p.push(4);
    p.extend_from_slice(&x);
    p.extend_from_slice(&y);
    Ok(p)
}

fn rsa_key(n: &str, e: &str) -> Result<OaepPublicEncryptingKey> {
    let spki = rsa_spki_from_components(&b64("n", n)?, &b64("e", e)?);
    let key =
        PublicEncryptingKey::from_der(&spki).map_err(|_| Error::Jwe("RSA key rejected".into()))?;
    if key.key_size_bits() < MIN_RSA_BITS {
        return Err(Error::Jwe("RSA key too small".into()));
    }
    OaepPublicEncryptingKey::new(key).map_err(|_| Error::Jwe("RSA key rejected".into()))
}

/// Encrypt `plaintext` to `key`.
pub fn encrypt(key: &TeePubKey, plaintext: &[u8]) -> Result<Response> {
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    rng.fill(&mut cek)
        .map_err(|_| Error::Crypto("random cek"))?;
    let (protected, encrypted_key) = match key {
        TeePubKey::EC { crv, alg, x, y } => {
            if alg != ALG_ECDH_ES_A256KW || crv != CRV_P256 {
                return Err(Error::Jwe(format!("unsupported EC key {alg}/{crv}")));
            }
            let point = ec_point(x, y)?;
            let eph = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
                .map_err(|_| Error::Crypto("ephemeral key"))?;
            let epk = eph
                .compute_public_key()
                .map_err(|_| Error::Crypto("ephemeral public key"))?;
            let (ex, ey) = ec_point_xy(epk.as_ref()).ok_or(Error::Crypto("ephemeral point"))?;
            let epk_json =
                json!({"kty": "EC", "crv": CRV_P256, "x": B64U.encode(ex), "y": B64U.encode(ey)});
            let kek = agreement::agree_ephemeral(
                eph,
                UnparsedPublicKey::new(&ECDH_P256, &point),
                Error::Jwe("EC key is not a P-256 point".into()),
                |z| Ok(concat_kdf_a256(z, ALG_ECDH_ES_A256KW, &[], &[])),
            )?;
            let kek = AesKek::new(&AES_256, &kek).map_err(|_| Error::Crypto("kek"))?;
            let mut out = [0u8; 40];
            let wrapped = kek
                .wrap(&cek, &mut out)
                .map_err(|_| Error::Crypto("key wrap"))?
                .to_vec();
            let mut other = Map::new();
            other.insert("epk".into(), epk_json);
            (
                ProtectedHeader {
                    alg: ALG_ECDH_ES_A256KW.into(),
                    enc: ENC_A256GCM.into(),
                    other_fields: other,
                },
                wrapped,
            )
        }
        TeePubKey::RSA { alg, k_mod, k_exp } => {
            if alg != ALG_RSA_OAEP_256 {
                return Err(Error::Jwe(format!("unsupported RSA alg {alg}")));
            }
            let key = rsa_key(k_mod, k_exp)?;
            let mut out = vec![0u8; key.ciphertext_size()];
            let wrapped = key
                .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut out, None)
                .map_err(|_| Error::Crypto("rsa-oaep"))?
                .to_vec();
            (
                ProtectedHeader {
                    alg: ALG_RSA_OAEP_256.into(),
                    enc: ENC_A256GCM.into(),
                    other_fields: Map::new(),
                },
                wrapped,
            )
        }
        TeePubKey::AKP { alg, .. } => {
            return Err(Error::Jwe(format!("unsupported AKP alg {alg}")));
        }
    };
    let aad = protected
        .generate_aad()
        .map_err(|_| Error::Jwe("protected header".into()))?;
    let mut iv = [0u8; 12];
    rng.fill(&mut iv).map_err(|_| Error::Crypto("random iv"))?;
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| Error::Crypto("cek"))?);
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(&aad[..]),
            &mut ciphertext,
        )
        .map_err(|_| Error::Crypto("aes-gcm"))?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag: tag.as_ref().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use charter_kbs_client::{KeyAlgorithm, TeeKeyPair};

    #[test]
    fn round_trip_both_algorithms_and_tamper() {
        for alg in [KeyAlgorithm::EcdhEsA256KwP256, KeyAlgorithm::RsaOaep256] {
            let kp = TeeKeyPair::generate(alg).unwrap();
            check_key(kp.public_key()).unwrap();
            let resp = encrypt(kp.public_key(), b"the key").unwrap();
            let json = serde_json::to_vec(&resp).unwrap();
            // Shape: kbs-types parses it back, RFC 7516 flattened members only.
            let back: Response = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.ciphertext, resp.ciphertext);
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(
                keys,
                ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
            );
            assert_eq!(kp.decrypt(&json).unwrap(), b"the key");
            // Flip one bit of the ciphertext: refused.
            let mut t = v.clone();
            let mut ct = B64U.decode(t["ciphertext"].as_str().unwrap()).unwrap();
            ct[0] ^= 1;
            t["ciphertext"] = B64U.encode(ct).into();
            assert!(kp.decrypt(&serde_json::to_vec(&t).unwrap()).is_err());
            // Another key: refused.
            let other = TeeKeyPair::generate(alg).unwrap();
            assert!(other.decrypt(&json).is_err());
        }
    }

    #[test]
    fn refuses_bad_keys() {
        let bad = TeePubKey::EC {
            crv: CRV_P256.into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            x: B64U.encode([1u8; 32]),
            y: B64U.encode([2u8; 32]),
        };
        assert!(check_key(&bad).is_err());
        assert!(encrypt(&bad, b"x").is_err());
        let rsa1_5 = TeePubKey::RSA {
            alg: "RSA1_5".into(),
            k_mod: "AQAB".into(),
            k_exp: "AQAB".into(),
        };
        assert!(check_key(&rsa1_5).is_err());
    }
}
