//! Simulated AMD certificates, encoded with `x509-cert` and signed with aws-lc-rs.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, RSA_PSS_SHA384};
use charter_attest::cert::oid;
use charter_attest::TcbVersion;
use der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, UtcTime,
};
use der::{Decode, Encode};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::{Error, Result};

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// RSASSA-PSS-params: SHA-384, MGF1(SHA-384), salt 48, trailer 1 (as in AMD's certificates).
const PSS_PARAMS: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

fn cerr(e: impl std::fmt::Display) -> Error {
    Error::Cert(e.to_string())
}

fn pss_alg() -> Result<AlgorithmIdentifierOwned> {
    Ok(AlgorithmIdentifierOwned {
        oid: OID_RSASSA_PSS,
        parameters: Some(Any::from_der(&PSS_PARAMS).map_err(cerr)?),
    })
}

fn name(cn: &str) -> Result<Name> {
    Name::from_str(&format!(
        "CN={cn},O=INSECURE SIMULATED AMD-SP (charter),ST=CA,L=Santa Clara,C=US,OU=Engineering"
    ))
    .map_err(cerr)
}

fn time(t: SystemTime) -> Result<Time> {
    let utc_limit = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(2_524_608_000))
        .unwrap_or(t); // 2050-01-01
    if t < utc_limit {
        Ok(Time::UtcTime(UtcTime::from_system_time(t).map_err(cerr)?))
    } else {
        Ok(Time::GeneralTime(
            GeneralizedTime::from_system_time(t).map_err(cerr)?,
        ))
    }
}

fn validity(years: u64) -> Result<Validity> {
    let now = SystemTime::now();
    let start = now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now);
    let end = start
        .checked_add(Duration::from_secs(years.saturating_mul(365 * 86_400)))
        .unwrap_or(start);
    Ok(Validity {
        not_before: time(start)?,
        not_after: time(end)?,
    })
}

fn sign_cert(tbs: TbsCertificate, signer: &RsaKeyPair) -> Result<Vec<u8>> {
    let tbs_der = tbs.to_der().map_err(cerr)?;
    let mut sig = vec![0u8; signer.public_modulus_len()];
    signer
        .sign(&RSA_PSS_SHA384, &SystemRandom::new(), &tbs_der, &mut sig)
        .map_err(|_| Error::Crypto("certificate signing"))?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: pss_alg()?,
        signature: BitString::from_bytes(&sig).map_err(cerr)?,
    };
    cert.to_der().map_err(cerr)
}

fn rsa_spki(k: &RsaKeyPair) -> Result<SubjectPublicKeyInfoOwned> {
    let der = k
        .public_key()
        .as_der()
        .map_err(|_| Error::Crypto("public key export"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_ref()).map_err(cerr)
}

fn tbs(
    serial: &[u8],
    issuer: &str,
    subject: &str,
    spki: SubjectPublicKeyInfoOwned,
    years: u64,
    extensions: Option<Vec<Extension>>,
) -> Result<TbsCertificate> {
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(serial).map_err(cerr)?,
        signature: pss_alg()?,
        issuer: name(issuer)?,
        validity: validity(years)?,
        subject: name(subject)?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    })
}

/// Common names of the simulated chain.
pub const ARK_CN: &str = "ARK-Milan INSECURE SIMULATED";
/// ASK common name.
pub const ASK_CN: &str = "SEV-Milan INSECURE SIMULATED";
/// VCEK common name.
pub const VCEK_CN: &str = "SEV-VCEK INSECURE SIMULATED";

/// Self-signed simulated ARK.
pub fn ark_cert(ark: &RsaKeyPair) -> Result<Vec<u8>> {
    sign_cert(
        tbs(
            &[0x01, 0x00, 0x00],
            ARK_CN,
            ARK_CN,
            rsa_spki(ark)?,
            25,
            None,
        )?,
        ark,
    )
}

/// Simulated ASK signed by the ARK.
pub fn ask_cert(ark: &RsaKeyPair, ask: &RsaKeyPair) -> Result<Vec<u8>> {
    sign_cert(
        tbs(
            &[0x01, 0x00, 0x01],
            ARK_CN,
            ASK_CN,
            rsa_spki(ask)?,
            25,
            None,
        )?,
        ark,
    )
}

fn ext(oid: ObjectIdentifier, value: Vec<u8>) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value).map_err(cerr)?,
    })
}

fn int(v: u8) -> Result<Vec<u8>> {
    u64::from(v).to_der().map_err(cerr)
}

/// Simulated VCEK for a TCB, with AMD's extensions (hwID as raw untagged bytes, serial 0).
pub fn vcek_cert(
    ask: &RsaKeyPair,
    vcek: &EcdsaKeyPair,
    tcb: &TcbVersion,
    chip_id: &[u8; 64],
) -> Result<Vec<u8>> {
    let spki = vcek
        .public_key()
        .as_der()
        .map_err(|_| Error::Crypto("vcek public key export"))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki.as_ref()).map_err(cerr)?;
    let extensions = vec![
        ext(oid::STRUCT_VERSION, 0u64.to_der().map_err(cerr)?)?,
        ext(
            oid::PRODUCT_NAME,
            Ia5String::new("Milan-B0")
                .map_err(cerr)?
                .to_der()
                .map_err(cerr)?,
        )?,
        ext(oid::BL_SPL, int(tcb.bootloader)?)?,
        ext(oid::TEE_SPL, int(tcb.tee)?)?,
        ext(oid::SNP_SPL, int(tcb.snp)?)?,
        ext(oid::SPL_4, int(0)?)?,
        ext(oid::SPL_5, int(0)?)?,
        ext(oid::SPL_6, int(0)?)?,
        ext(oid::SPL_7, int(0)?)?,
        ext(oid::UCODE_SPL, int(tcb.microcode)?)?,
        ext(oid::HW_ID, chip_id.to_vec())?,
    ];
    sign_cert(
        tbs(&[0x00], ASK_CN, VCEK_CN, spki, 7, Some(extensions))?,
        ask,
    )
}
