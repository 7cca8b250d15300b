//! Evidence bundles: report + certificates (+ optional runtime data), as JSON, plus the
//! formats certificates arrive in (DER, PEM, Azure THIM JSON, the GHCB/auxblob cert table).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::cert::{pem_certs, to_pem, Cert};
use crate::error::{Error, Result};

/// Format tag written into evidence JSON.
pub const EVIDENCE_FORMAT: &str = "charter-snp-evidence/v1";

/// Attestation evidence: a report, the VEK certificate and (optionally) intermediates/ARK and
/// runtime data (the bytes whose hash the guest put into REPORT_DATA).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evidence {
    /// Raw 1184-byte report.
    pub report: Vec<u8>,
    /// VCEK or VLEK (DER).
    pub vek: Option<Vec<u8>>,
    /// ASK/ASVK and/or ARK (DER), any order.
    pub chain: Vec<Vec<u8>>,
    /// Runtime data bound by REPORT_DATA.
    pub runtime_data: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct EvidenceJson {
    #[serde(default)]
    format: Option<String>,
    report: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vek: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_chain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime_data: Option<String>,
    // Azure THIM field names, accepted inline.
    #[serde(default, rename = "vcekCert", skip_serializing)]
    vcek_cert: Option<String>,
    #[serde(default, rename = "certificateChain", skip_serializing)]
    certificate_chain: Option<String>,
}

/// Certificates from a file or blob: the VEK and the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertBundle {
    /// VCEK/VLEK DER.
    pub vek: Option<Vec<u8>>,
    /// Intermediates and ARK DER.
    pub chain: Vec<Vec<u8>>,
    /// Azure THIM `tcbm` (REPORTED_TCB the VCEK was issued for), if given.
    pub tcbm: Option<u64>,
}

fn split_vek(ders: Vec<Vec<u8>>) -> Result<CertBundle> {
    let mut out = CertBundle::default();
    for d in ders {
        let c = Cert::from_der("certificate", &d)?;
        if out.vek.is_none() && (c.subject_cn().contains("VCEK") || c.subject_cn().contains("VLEK"))
        {
            out.vek = Some(d);
        } else {
            out.chain.push(d);
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Thim {
    #[serde(rename = "vcekCert")]
    vcek_cert: String,
    #[serde(default, rename = "certificateChain")]
    certificate_chain: Option<String>,
    #[serde(default)]
    tcbm: Option<String>,
}

impl CertBundle {
    /// Parse DER, PEM (any number of certificates), or Azure THIM JSON
    /// (`{vcekCert, tcbm, certificateChain}`).
    pub fn parse(bytes: &[u8]) -> Result<CertBundle> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.first() == Some(&b'{') {
            let t: Thim = serde_json::from_slice(bytes)
                .map_err(|e| Error::Evidence(format!("thim certificate json: {e}")))?;
            let mut ders = pem_certs(&t.vcek_cert).map_err(Error::Evidence)?;
            if let Some(c) = &t.certificate_chain {
                ders.extend(pem_certs(c).map_err(Error::Evidence)?);
            }
            let mut b = split_vek(ders)?;
            b.tcbm = match t.tcbm {
                Some(s) => Some(
                    u64::from_str_radix(s.trim_start_matches("0x"), 16)
                        .map_err(|e| Error::Evidence(format!("thim tcbm: {e}")))?,
                ),
                None => None,
            };
            return Ok(b);
        }
        if trimmed.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| Error::Evidence(format!("pem is not utf-8: {e}")))?;
            return split_vek(pem_certs(text).map_err(Error::Evidence)?);
        }
        split_vek(vec![bytes.to_vec()])
    }
}

/// GHCB extended-report certificate table GUIDs (also configfs-tsm `auxblob`).
pub mod guid {
    /// VCEK 63da758d-e664-4564-adc5-f4b93be8accd.
    pub const VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
    /// VLEK a8074bc2-a25a-483e-aae6-39c045a0b8a1.
    pub const VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
    /// ASK / ASVK 4ab7b379-bbac-4fe4-a02f-05aef327c782.
    pub const ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
    /// ARK c0b406a4-a803-4952-9743-3fb6014cd0ae.
    pub const ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
}

/// Binary GUID in the mixed-endian (little-endian first three fields) form the firmware uses.
pub fn guid_bytes_le(s: &str) -> Option<[u8; 16]> {
    let be = guid_bytes_be(s)?;
    let mut le = be;
    le.get_mut(0..4)?.reverse();
    le.get_mut(4..6)?.reverse();
    le.get_mut(6..8)?.reverse();
    Some(le)
}

fn guid_bytes_be(s: &str) -> Option<[u8; 16]> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let v = hex::decode(h).ok()?;
    v.try_into().ok()
}

const ENTRY: usize = 24;

/// Parse a GHCB certificate table (entries `{guid[16], offset u32, length u32}` ending with an
/// all-zero entry; offsets from the table start). Both GUID byte orders are accepted.
pub fn parse_cert_table(table: &[u8]) -> Result<CertBundle> {
    let err = |m: &str| Error::Evidence(format!("certificate table: {m}"));
    let mut out = CertBundle::default();
    let mut ark = None;
    let mut ask = None;
    for i in 0usize.. {
        let start = i
            .checked_mul(ENTRY)
            .ok_or_else(|| err("too many entries"))?;
        let e = table
            .get(start..start.saturating_add(ENTRY))
            .ok_or_else(|| err("missing terminating entry"))?;
        if e.iter().all(|&b| b == 0) {
            break;
        }
        let (g, rest) = e.split_at(16);
        let off = u32::from_le_bytes(
            rest.get(0..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| err("entry"))?,
        ) as usize;
        let len = u32::from_le_bytes(
            rest.get(4..8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| err("entry"))?,
        ) as usize;
        let data = table
            .get(off..off.checked_add(len).ok_or_else(|| err("offset overflow"))?)
            .ok_or_else(|| err("entry points outside the table"))?;
        let is = |name: &str| {
            guid_bytes_le(name).as_ref().map(|x| &x[..]) == Some(g)
                || guid_bytes_be(name).as_ref().map(|x| &x[..]) == Some(g)
        };
        if is(guid::VCEK) || is(guid::VLEK) {
            out.vek = Some(data.to_vec());
        } else if is(guid::ASK) {
            ask = Some(data.to_vec());
        } else if is(guid::ARK) {
            ark = Some(data.to_vec());
        }
    }
    out.chain.extend(ask);
    out.chain.extend(ark);
    Ok(out)
}

/// Build a certificate table (mixed-endian GUIDs) — used by the simulator and tests.
pub fn build_cert_table(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let header = ENTRY.saturating_mul(entries.len().saturating_add(1));
    let mut table = vec![0u8; header];
    let mut off = header;
    for (i, (g, data)) in entries.iter().enumerate() {
        let at = i.saturating_mul(ENTRY);
        if let (Some(slot), Some(gb)) = (
            table.get_mut(at..at.saturating_add(ENTRY)),
            guid_bytes_le(g),
        ) {
            let off32 = u32::try_from(off).unwrap_or(u32::MAX).to_le_bytes();
            let len32 = u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes();
            for (d, s) in slot
                .iter_mut()
                .zip(gb.iter().chain(off32.iter()).chain(len32.iter()))
            {
                *d = *s;
            }
        }
        off = off.saturating_add(data.len());
    }
    for (_, data) in entries {
        table.extend_from_slice(data);
    }
    table
}

impl Evidence {
    /// Whether REPORT_DATA binds the runtime data: `SHA-256(runtime_data) || 32 zero bytes`
    /// (the ACI/MAA convention) or `SHA-512(runtime_data)`. `None` without runtime data.
    pub fn runtime_data_bound(&self, report_data: &[u8; 64]) -> Option<bool> {
        use sha2::{Digest, Sha256, Sha512};
        let rd = self.runtime_data.as_deref()?;
        let mut short = [0u8; 64];
        for (d, s) in short.iter_mut().zip(Sha256::digest(rd)) {
            *d = s;
        }
        Some(short == *report_data || Sha512::digest(rd).as_slice() == report_data.as_slice())
    }

    /// Parse evidence JSON (`report` base64; `vek` and `cert_chain` PEM; optional
    /// `cert_table` base64 GHCB table; optional `runtime_data` base64). Azure THIM field names
    /// `vcekCert` / `certificateChain` are accepted in place of `vek` / `cert_chain`.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence> {
        let j: EvidenceJson =
            serde_json::from_slice(bytes).map_err(|e| Error::Evidence(format!("json: {e}")))?;
        if let Some(f) = &j.format {
            if f != EVIDENCE_FORMAT {
                return Err(Error::Evidence(format!(
                    "unknown format {f:?}, expected {EVIDENCE_FORMAT:?}"
                )));
            }
        }
        let b64 = |what: &str, s: &str| {
            B64.decode(s.trim())
                .map_err(|e| Error::Evidence(format!("{what} base64: {e}")))
        };
        let mut ev = Evidence {
            report: b64("report", &j.report)?,
            ..Evidence::default()
        };
        let mut pem = String::new();
        for s in [&j.vek, &j.vcek_cert, &j.cert_chain, &j.certificate_chain]
            .into_iter()
            .flatten()
        {
            pem.push_str(s);
            pem.push('\n');
        }
        let mut bundle = split_vek(pem_certs(&pem).map_err(Error::Evidence)?)?;
        if let Some(t) = &j.cert_table {
            let table = parse_cert_table(&b64("cert_table", t)?)?;
            if bundle.vek.is_none() {
                bundle.vek = table.vek;
            }
            bundle.chain.extend(table.chain);
        }
        ev.vek = bundle.vek;
        ev.chain = bundle.chain;
        ev.runtime_data = j
            .runtime_data
            .as_deref()
            .map(|s| b64("runtime_data", s))
            .transpose()?;
        Ok(ev)
    }

    /// Serialise as evidence JSON.
    pub fn to_json(&self) -> String {
        let j = EvidenceJson {
            format: Some(EVIDENCE_FORMAT.to_owned()),
            report: B64.encode(&self.report),
            vek: self.vek.as_deref().map(to_pem),
            cert_chain: (!self.chain.is_empty())
                .then(|| self.chain.iter().map(|d| to_pem(d)).collect()),
            cert_table: None,
            runtime_data: self.runtime_data.as_deref().map(|d| B64.encode(d)),
            vcek_cert: None,
            certificate_chain: None,
        };
        serde_json::to_string_pretty(&j).unwrap_or_default()
    }
}
