//! AMD certificate handling: X.509 decoding (tolerating serial 0 and the untagged hwID
//! extension), VCEK/VLEK extensions and RSA-PSS / ECDSA signature checks via aws-lc-rs.

use std::time::SystemTime;

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384};
use der::asn1::{Ia5StringRef, ObjectIdentifier};
use der::{Decode, Reader, SliceReader};
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::report::SigningKey;
use crate::tcb::Product;

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// VCEK/VLEK extension OIDs (AMD #57230).
pub mod oid {
    use der::asn1::ObjectIdentifier;
    /// structVersion.
    pub const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    /// productName.
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// blSPL.
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// teeSPL.
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// snpSPL.
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// spl_4 .. spl_7 (reserved, 0).
    pub const SPL_4: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.4");
    /// spl_5.
    pub const SPL_5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.5");
    /// spl_6.
    pub const SPL_6: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.6");
    /// spl_7.
    pub const SPL_7: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.7");
    /// ucodeSPL.
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// fmcSPL (Turin+).
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    /// hwID (VCEK).
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    /// cspID (VLEK).
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// A decoded certificate with the parts the AMD chain needs.
#[derive(Debug, Clone)]
pub struct Cert {
    which: &'static str,
    der: Vec<u8>,
    tbs: std::ops::Range<usize>,
    sig_alg: ObjectIdentifier,
    signature: Vec<u8>,
    spki_alg: ObjectIdentifier,
    public_key: Vec<u8>,
    subject_cn: String,
    issuer_cn: String,
    not_before: SystemTime,
    not_after: SystemTime,
    extensions: Vec<(ObjectIdentifier, Vec<u8>)>,
}

fn common_name(name: &x509_cert::name::Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return s.as_str().to_owned();
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return s.as_str().to_owned();
                }
            }
        }
    }
    String::new()
}

impl Cert {
    /// Decode DER. `which` names the certificate in errors ("ark", "ask", "vcek", ...).
    pub fn from_der(which: &'static str, der: &[u8]) -> Result<Cert> {
        let cert = Certificate::from_der(der).map_err(|e| Error::cert(which, e))?;
        // The exact TBS bytes as transmitted (not re-encoded).
        let tbs = {
            let mut r = SliceReader::new(der).map_err(|e| Error::cert(which, e))?;
            let _outer = der::Header::decode(&mut r).map_err(|e| Error::cert(which, e))?;
            let start =
                usize::try_from(u32::from(r.position())).map_err(|e| Error::cert(which, e))?;
            let tbs = r.tlv_bytes().map_err(|e| Error::cert(which, e))?;
            start..start.saturating_add(tbs.len())
        };
        let tbs_cert = &cert.tbs_certificate;
        let spki = &tbs_cert.subject_public_key_info;
        let public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::cert(which, "public key bit string has unused bits"))?
            .to_vec();
        if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if curve != Some(OID_SECP384R1) {
                return Err(Error::cert(which, "ec public key is not on p-384"));
            }
        }
        let extensions = tbs_cert
            .extensions
            .iter()
            .flatten()
            .map(|e| (e.extn_id, e.extn_value.as_bytes().to_vec()))
            .collect();
        Ok(Cert {
            which,
            der: der.to_vec(),
            tbs,
            sig_alg: cert.signature_algorithm.oid,
            signature: cert
                .signature
                .as_bytes()
                .ok_or_else(|| Error::cert(which, "signature bit string has unused bits"))?
                .to_vec(),
            spki_alg: spki.algorithm.oid,
            public_key,
            subject_cn: common_name(&tbs_cert.subject),
            issuer_cn: common_name(&tbs_cert.issuer),
            not_before: tbs_cert.validity.not_before.to_system_time(),
            not_after: tbs_cert.validity.not_after.to_system_time(),
            extensions,
        })
    }

    /// Decode the first certificate of a PEM string.
    pub fn from_pem(which: &'static str, pem: &str) -> Result<Cert> {
        let ders = pem_certs(pem).map_err(|e| Error::cert(which, e))?;
        let der = ders
            .first()
            .ok_or_else(|| Error::cert(which, "no certificate in pem"))?;
        Cert::from_der(which, der)
    }

    /// DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// Subject common name.
    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }
    /// Issuer common name.
    pub fn issuer_cn(&self) -> &str {
        &self.issuer_cn
    }
    /// Whether `at` lies in [notBefore, notAfter].
    pub fn valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }
    /// notBefore / notAfter.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        (self.not_before, self.not_after)
    }
    /// Raw extension value (the content of extnValue) for an OID.
    pub fn extension(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, v)| v.as_slice())
    }

    /// The RSA public key (for ARK/ASK/ASVK) as an aws-lc-rs verification key.
    pub(crate) fn rsa_pss_key(&self) -> Result<ParsedPublicKey> {
        if self.spki_alg != OID_RSA_ENCRYPTION && self.spki_alg != OID_RSASSA_PSS {
            return Err(Error::cert(self.which, "public key is not rsa"));
        }
        ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, &self.public_key)
            .map_err(|e| Error::cert(self.which, format!("rsa public key rejected: {e}")))
    }

    /// The P-384 public key (for VCEK/VLEK).
    pub(crate) fn ecdsa_key(&self) -> Result<ParsedPublicKey> {
        if self.spki_alg != OID_EC_PUBLIC_KEY {
            return Err(Error::cert(self.which, "public key is not ec p-384"));
        }
        ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.public_key)
            .map_err(|e| Error::cert(self.which, format!("ec public key rejected: {e}")))
    }

    /// Check this certificate's RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48) signature with
    /// the issuer key.
    pub(crate) fn verify_signed_by(
        &self,
        issuer_name: &'static str,
        issuer: &ParsedPublicKey,
    ) -> Result<()> {
        let fail = Error::CertSignature {
            which: self.which,
            issuer: issuer_name,
        };
        if self.sig_alg != OID_RSASSA_PSS {
            return Err(fail);
        }
        let tbs = self
            .der
            .get(self.tbs.clone())
            .ok_or_else(|| Error::cert(self.which, "tbs range"))?;
        issuer.verify_sig(tbs, &self.signature).map_err(|_| fail)
    }
}

/// Decode all `CERTIFICATE` blocks of a PEM text into DER.
pub fn pem_certs(pem: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = rest.get(start.saturating_add(27)..).unwrap_or_default();
        let end = after
            .find("-----END CERTIFICATE-----")
            .ok_or("unterminated pem certificate")?;
        let body: String = after
            .get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("pem base64: {e}"))?;
        out.push(der);
        rest = after.get(end.saturating_add(25)..).unwrap_or_default();
    }
    Ok(out)
}

/// Encode DER as a PEM certificate.
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The AMD-specific content of a VCEK or VLEK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VekExtensions {
    /// VCEK or VLEK (from the subject CN, `SEV-VCEK` / `SEV-VLEK`).
    pub kind: SigningKey,
    /// structVersion.
    pub struct_version: Option<u64>,
    /// productName ("Milan-B0", "Genoa", "Turin", ...).
    pub product_name: Option<String>,
    /// blSPL.
    pub bl_spl: u64,
    /// teeSPL.
    pub tee_spl: u64,
    /// snpSPL.
    pub snp_spl: u64,
    /// ucodeSPL.
    pub ucode_spl: u64,
    /// fmcSPL (Turin+).
    pub fmc_spl: Option<u64>,
    /// hwID (VCEK): 64 bytes (Milan/Genoa) or 8 bytes (Turin), untagged or OCTET STRING.
    pub hw_id: Option<Vec<u8>>,
    /// cspID (VLEK).
    pub csp_id: Option<String>,
}

fn ext_int(cert: &Cert, oid: &'static ObjectIdentifier, name: &'static str) -> Result<Option<u64>> {
    match cert.extension(oid) {
        None => Ok(None),
        Some(v) => u64::from_der(v).map(Some).map_err(|_| Error::Extension {
            which: cert.which,
            oid: name,
        }),
    }
}

fn ext_req(cert: &Cert, oid: &'static ObjectIdentifier, name: &'static str) -> Result<u64> {
    ext_int(cert, oid, name)?.ok_or(Error::Extension {
        which: cert.which,
        oid: name,
    })
}

fn ext_str(cert: &Cert, oid: &ObjectIdentifier, name: &'static str) -> Result<Option<String>> {
    match cert.extension(oid) {
        None => Ok(None),
        Some(v) => Ia5StringRef::from_der(v)
            .map(|s| Some(s.as_str().to_owned()))
            .map_err(|_| Error::Extension {
                which: cert.which,
                oid: name,
            }),
    }
}

/// Decode hwID: raw bytes (as KDS issues it) or DER OCTET STRING-wrapped.
fn decode_hw_id(which: &'static str, v: &[u8]) -> Result<Vec<u8>> {
    let err = Error::Extension {
        which,
        oid: "1.3.6.1.4.1.3704.1.4 (hwid)",
    };
    match v.len() {
        8 | 64 => Ok(v.to_vec()),
        10 | 66 => {
            let inner = der::asn1::OctetStringRef::from_der(v).map_err(|_| err)?;
            Ok(inner.as_bytes().to_vec())
        }
        _ => Err(err),
    }
}

impl VekExtensions {
    /// Extract and check the AMD extensions of a VCEK/VLEK.
    pub fn from_cert(cert: &Cert) -> Result<VekExtensions> {
        let which = cert.which;
        let kind = match cert.subject_cn() {
            s if s.ends_with("SEV-VCEK") || s.contains("VCEK") => SigningKey::Vcek,
            s if s.contains("VLEK") => SigningKey::Vlek,
            _ => {
                return Err(Error::cert(
                    which,
                    format!(
                        "subject {:?} is neither a vcek nor a vlek",
                        cert.subject_cn()
                    ),
                ))
            }
        };
        for (oid, name) in [
            (&oid::SPL_4, "spl_4"),
            (&oid::SPL_5, "spl_5"),
            (&oid::SPL_6, "spl_6"),
            (&oid::SPL_7, "spl_7"),
        ] {
            if ext_int(cert, oid, name)?.unwrap_or(0) != 0 {
                return Err(Error::Extension { which, oid: name });
            }
        }
        let hw_id = match cert.extension(&oid::HW_ID) {
            Some(v) => Some(decode_hw_id(which, v)?),
            None => None,
        };
        if kind == SigningKey::Vcek && hw_id.is_none() {
            return Err(Error::Extension {
                which,
                oid: "1.3.6.1.4.1.3704.1.4 (hwid)",
            });
        }
        Ok(VekExtensions {
            kind,
            struct_version: ext_int(
                cert,
                &oid::STRUCT_VERSION,
                "1.3.6.1.4.1.3704.1.1 (structversion)",
            )?,
            product_name: ext_str(
                cert,
                &oid::PRODUCT_NAME,
                "1.3.6.1.4.1.3704.1.2 (productname)",
            )?,
            bl_spl: ext_req(cert, &oid::BL_SPL, "1.3.6.1.4.1.3704.1.3.1 (blspl)")?,
            tee_spl: ext_req(cert, &oid::TEE_SPL, "1.3.6.1.4.1.3704.1.3.2 (teespl)")?,
            snp_spl: ext_req(cert, &oid::SNP_SPL, "1.3.6.1.4.1.3704.1.3.3 (snpspl)")?,
            ucode_spl: ext_req(cert, &oid::UCODE_SPL, "1.3.6.1.4.1.3704.1.3.8 (ucodespl)")?,
            fmc_spl: ext_int(cert, &oid::FMC_SPL, "1.3.6.1.4.1.3704.1.3.9 (fmcspl)")?,
            hw_id,
            csp_id: ext_str(cert, &oid::CSP_ID, "1.3.6.1.4.1.3704.1.5 (cspid)")?,
        })
    }

    /// Product named by the certificate (productName, else the issuer CN).
    pub fn product(&self, cert: &Cert) -> Option<Product> {
        self.product_name
            .as_deref()
            .and_then(Product::from_name)
            .or_else(|| Product::from_name(cert.issuer_cn()))
    }
}
