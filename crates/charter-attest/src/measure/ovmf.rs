//! OVMF footer GUID table and SEV metadata (as `sevsnpmeasure/ovmf.py` reads them).

use crate::error::{Error, Result};
use crate::evidence::guid_bytes_le;

const FOOTER_GUID: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const SEV_HASH_TABLE_RV_GUID: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
const SEV_ES_RESET_BLOCK_GUID: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
const SEV_META_DATA_GUID: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
const ENTRY_HDR: usize = 18; // u16 size + GUID

/// OVMF SEV metadata section types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// SNP_SEC_MEM (1).
    SnpSecMem,
    /// SNP_SECRETS (2).
    SnpSecrets,
    /// CPUID (3).
    Cpuid,
    /// SVSM_CAA (4).
    SvsmCaa,
    /// SNP_KERNEL_HASHES (0x10).
    SnpKernelHashes,
}

/// One metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// Type.
    pub kind: SectionType,
}

/// A parsed OVMF image.
#[derive(Debug, Clone)]
pub struct Ovmf {
    len: usize,
    table: Vec<([u8; 16], Vec<u8>)>,
    sections: Vec<Section>,
}

fn err(m: impl Into<String>) -> Error {
    Error::Measurement(format!("ovmf: {}", m.into()))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| err(format!("truncated at offset {at}")))
}

impl Ovmf {
    /// Parse the footer table and SEV metadata.
    pub fn parse(data: &[u8]) -> Result<Ovmf> {
        let mut o = Ovmf {
            len: data.len(),
            table: Vec::new(),
            sections: Vec::new(),
        };
        let start = data
            .len()
            .checked_sub(32 + ENTRY_HDR)
            .ok_or_else(|| err("image too small"))?;
        let footer = data
            .get(start..start.saturating_add(ENTRY_HDR))
            .ok_or_else(|| err("image too small"))?;
        let footer_guid = guid_bytes_le(FOOTER_GUID).unwrap_or_default();
        if footer.get(2..) != Some(&footer_guid[..]) {
            return Ok(o); // no table: plain firmware, no metadata
        }
        let footer_size = usize::from(u16::from_le_bytes([
            footer.first().copied().unwrap_or(0),
            footer.get(1).copied().unwrap_or(0),
        ]));
        let Some(table_size) = footer_size.checked_sub(ENTRY_HDR) else {
            return Ok(o);
        };
        let table_start = start
            .checked_sub(table_size)
            .ok_or_else(|| err("footer table larger than the image"))?;
        let mut table = data
            .get(table_start..start)
            .ok_or_else(|| err("footer table"))?;
        while table.len() >= ENTRY_HDR {
            let hdr = table
                .get(table.len().saturating_sub(ENTRY_HDR)..)
                .ok_or_else(|| err("entry"))?;
            let size = usize::from(u16::from_le_bytes([
                hdr.first().copied().unwrap_or(0),
                hdr.get(1).copied().unwrap_or(0),
            ]));
            if size < ENTRY_HDR {
                return Err(err("invalid footer table entry size"));
            }
            let guid: [u8; 16] = hdr
                .get(2..18)
                .and_then(|g| g.try_into().ok())
                .ok_or_else(|| err("entry guid"))?;
            let entry_start = table
                .len()
                .checked_sub(size)
                .ok_or_else(|| err("footer table entry larger than the table"))?;
            let body = table
                .get(entry_start..table.len().saturating_sub(ENTRY_HDR))
                .ok_or_else(|| err("entry"))?;
            o.table.push((guid, body.to_vec()));
            table = table.get(..entry_start).unwrap_or_default();
        }
        if let Some(meta) = o.entry(SEV_META_DATA_GUID) {
            let from_end = u32_at(meta, 0)? as usize;
            let mstart = data
                .len()
                .checked_sub(from_end)
                .ok_or_else(|| err("sev metadata offset"))?;
            if data.get(mstart..mstart.saturating_add(4)) != Some(b"ASEV") {
                return Err(err("wrong sev metadata signature"));
            }
            let size = u32_at(data, mstart.saturating_add(4))? as usize;
            if u32_at(data, mstart.saturating_add(8))? != 1 {
                return Err(err("wrong sev metadata version"));
            }
            let n = u32_at(data, mstart.saturating_add(12))? as usize;
            let items = data
                .get(mstart.saturating_add(16)..mstart.saturating_add(size))
                .ok_or_else(|| err("sev metadata size"))?;
            for i in 0..n {
                let at = i.checked_mul(12).ok_or_else(|| err("too many sections"))?;
                let kind = match u32_at(items, at.saturating_add(8))? {
                    1 => SectionType::SnpSecMem,
                    2 => SectionType::SnpSecrets,
                    3 => SectionType::Cpuid,
                    4 => SectionType::SvsmCaa,
                    0x10 => SectionType::SnpKernelHashes,
                    t => return Err(err(format!("unknown sev metadata section type {t}"))),
                };
                o.sections.push(Section {
                    gpa: u32_at(items, at)?,
                    size: u32_at(items, at.saturating_add(4))?,
                    kind,
                });
            }
        }
        Ok(o)
    }

    fn entry(&self, guid: &str) -> Option<&[u8]> {
        let g = guid_bytes_le(guid)?;
        self.table
            .iter()
            .find(|(k, _)| *k == g)
            .map(|(_, v)| v.as_slice())
    }

    /// GPA the image is loaded at (4 GiB minus its size).
    pub fn gpa(&self) -> u64 {
        (1u64 << 32).saturating_sub(self.len as u64)
    }

    /// SEV metadata sections.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// GPA of QEMU's kernel-hashes table.
    pub fn sev_hashes_table_gpa(&self) -> Result<u64> {
        let e = self
            .entry(SEV_HASH_TABLE_RV_GUID)
            .ok_or_else(|| err("no sev hash table entry in the footer table"))?;
        Ok(u64::from(u32_at(e, 0)?))
    }

    /// The SEV-ES AP reset EIP.
    pub fn sev_es_reset_eip(&self) -> Result<u32> {
        let e = self
            .entry(SEV_ES_RESET_BLOCK_GUID)
            .ok_or_else(|| err("no sev-es reset block entry in the footer table"))?;
        u32_at(e, 0)
    }
}
