//! Processor generations and the two TCB_VERSION layouts.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};

/// AMD EPYC generation that produced (and whose ARK roots) a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// 3rd gen EPYC (family 0x19, models 0x00-0x0f).
    Milan,
    /// 4th gen EPYC incl. Bergamo/Siena (family 0x19, models 0x10-0x1f, 0xa0-0xaf).
    Genoa,
    /// 5th gen EPYC (family 0x1a, models 0x00-0x11); TCB layout with FMC.
    Turin,
}

impl Product {
    /// All products with built-in roots.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name used by AMD KDS URLs and certificates ("Milan", "Genoa", "Turin").
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// The TCB_VERSION layout used by this generation.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Milan | Product::Genoa => TcbLayout::Legacy,
            Product::Turin => TcbLayout::Turin,
        }
    }

    /// Product from the CPUID family/model bytes of a v3+ report.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0f) => Some(Product::Milan),
            (0x19, 0x10..=0x1f) | (0x19, 0xa0..=0xaf) => Some(Product::Genoa),
            (0x1a, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// Product from a certificate productName ("Milan-B0", "Genoa", "Turin") or an issuer
    /// common name ("SEV-Milan", "SEV-VLEK-Genoa", "ARK-Turin").
    pub fn from_name(name: &str) -> Option<Product> {
        name.split(['-', ' ', '_']).find_map(|seg| {
            Product::ALL
                .into_iter()
                .find(|p| seg.eq_ignore_ascii_case(p.name()))
        })
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Product {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Product(format!("unknown product {s:?} (milan, genoa, turin)")))
    }
}

/// Byte layout of an 8-byte TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcbLayout {
    /// Milan/Genoa: bl @0, tee @1, snp @6, microcode @7.
    Legacy,
    /// Turin and later: fmc @0, bl @1, tee @2, snp @3, microcode @7.
    Turin,
}

/// A decoded TCB_VERSION: the security patch levels of each firmware component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbVersion {
    /// FMC SPL (Turin and later only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decode a raw little-endian TCB_VERSION with the given layout. Bytes that are reserved
    /// in that layout are ignored here (see [`TcbVersion::reserved_bytes_zero`]).
    pub fn from_raw(raw: u64, layout: TcbLayout) -> TcbVersion {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::Legacy => TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Encode into the raw u64 for a layout (reserved bytes zero).
    pub fn to_raw(self, layout: TcbLayout) -> u64 {
        let mut b = [0u8; 8];
        match layout {
            TcbLayout::Legacy => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
                b[7] = self.microcode;
            }
            TcbLayout::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
                b[7] = self.microcode;
            }
        }
        u64::from_le_bytes(b)
    }

    /// Whether the bytes reserved in `layout` are zero.
    pub fn reserved_bytes_zero(raw: u64, layout: TcbLayout) -> bool {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::Legacy => b[2..6].iter().all(|&x| x == 0),
            TcbLayout::Turin => b[4..7].iter().all(|&x| x == 0),
        }
    }

    /// Component-wise `self >= minimum` (never a u64 comparison). An FMC minimum only
    /// applies when both sides have one.
    pub fn meets(&self, minimum: &TcbVersion) -> bool {
        let fmc_ok = match (self.fmc, minimum.fmc) {
            (Some(a), Some(b)) => a >= b,
            (None, Some(b)) => b == 0,
            _ => true,
        };
        fmc_ok
            && self.bootloader >= minimum.bootloader
            && self.tee >= minimum.tee
            && self.snp >= minimum.snp
            && self.microcode >= minimum.microcode
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples() {
        let m = TcbVersion::from_raw(0x7308000000000003, TcbLayout::Legacy);
        assert_eq!(
            (m.bootloader, m.tee, m.snp, m.microcode, m.fmc),
            (3, 0, 8, 115, None)
        );
        let t = TcbVersion::from_raw(0x4700000002000100, TcbLayout::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(0), 1, 0, 2, 71)
        );
        assert_eq!(t.to_raw(TcbLayout::Turin), 0x4700000002000100);
        assert_eq!(m.to_raw(TcbLayout::Legacy), 0x7308000000000003);
    }

    #[test]
    fn componentwise_minimum() {
        let a = TcbVersion {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        let mut min = a;
        assert!(a.meets(&min));
        min.tee = 1; // a u64 compare would call this satisfied because microcode is larger
        assert!(!a.meets(&min));
    }

    #[test]
    fn product_names() {
        assert_eq!(Product::from_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_name("SEV-Milan"), Some(Product::Milan));
        assert_eq!(Product::from_name("SEV-VLEK-Genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_name("Turin"), Some(Product::Turin));
        assert_eq!(Product::from_name("Venice"), None);
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1a, 0x02), Some(Product::Turin));
    }
}
