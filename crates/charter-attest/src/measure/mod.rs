//! Expected SEV-SNP launch MEASUREMENT for an OVMF + kernel + initrd + cmdline + vCPU launch,
//! computed exactly as the PyPI `sev-snp-measure` tool (0.0.13, `--mode snp`) does: a SHA-384
//! chain over PAGE_INFO structures for the OVMF pages, the OVMF SEV metadata sections (with
//! QEMU's kernel-hashes page) and one VMSA page per vCPU.

mod ovmf;
mod vmsa;

pub use ovmf::{Ovmf, SectionType};

use sha2::{Digest, Sha256, Sha384};

use crate::error::{Error, Result};

/// The hypervisor flavour (initial register state and page-type differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmmType {
    /// QEMU/KVM.
    Qemu,
    /// AWS EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl std::str::FromStr for VmmType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(VmmType::Qemu),
            "ec2" => Ok(VmmType::Ec2),
            "gce" => Ok(VmmType::Gce),
            _ => Err(Error::Measurement(format!(
                "unknown vmm type {s:?} (qemu, ec2, gce)"
            ))),
        }
    }
}

/// CPUID(1).EAX signature from family, model, stepping (AMD #25481).
pub const fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family.wrapping_sub(0xf)) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

/// vCPU signature for a QEMU CPU model name (as `sev-snp-measure --vcpu-type`).
pub fn vcpu_sig_for(name: &str) -> Option<u32> {
    Some(match name {
        "EPYC" | "EPYC-v1" | "EPYC-v2" | "EPYC-IBPB" | "EPYC-v3" | "EPYC-v4" => cpu_sig(23, 1, 2),
        "EPYC-Rome" | "EPYC-Rome-v1" | "EPYC-Rome-v2" | "EPYC-Rome-v3" => cpu_sig(23, 49, 0),
        "EPYC-Milan" | "EPYC-Milan-v1" | "EPYC-Milan-v2" => cpu_sig(25, 1, 1),
        "EPYC-Genoa" | "EPYC-Genoa-v1" => cpu_sig(25, 17, 0),
        "EPYC-Turin" => cpu_sig(26, 0, 0),
        _ => return None,
    })
}

/// Everything the launch digest depends on.
#[derive(Debug, Clone)]
pub struct LaunchInputs<'a> {
    /// The OVMF image (its SEV metadata and reset vector are read from it).
    pub ovmf: &'a [u8],
    /// Precomputed OVMF hash to seed the digest with instead of measuring `ovmf`'s pages
    /// (`--snp-ovmf-hash`).
    pub ovmf_hash: Option<[u8; 48]>,
    /// Kernel for direct boot (enables the kernel-hashes page). `Some(&[])` is an empty file.
    pub kernel: Option<&'a [u8]>,
    /// Initrd (empty if `None`; only used with a kernel).
    pub initrd: Option<&'a [u8]>,
    /// Kernel command line (only used with a kernel).
    pub append: Option<&'a str>,
    /// Number of vCPUs (>= 1).
    pub vcpus: u32,
    /// vCPU signature (RDX for QEMU; EC2/GCE use 0x600).
    pub vcpu_sig: u32,
    /// VMSA SEV_FEATURES (0x1 SNP only; 0x21 with DebugSwap, QEMU's default).
    pub guest_features: u64,
    /// Hypervisor flavour.
    pub vmm: VmmType,
}

const PAGE: usize = 4096;
/// GPA recorded for VMSA pages.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// The running launch digest (GCTX).
#[derive(Debug, Clone)]
pub struct LaunchDigest {
    ld: [u8; 48],
}

impl LaunchDigest {
    /// Start from 48 zero bytes or a seed.
    pub fn new(seed: Option<[u8; 48]>) -> Self {
        LaunchDigest {
            ld: seed.unwrap_or([0; 48]),
        }
    }

    /// The digest so far.
    pub fn value(&self) -> [u8; 48] {
        self.ld
    }

    fn update(&mut self, page_type: u8, gpa: u64, contents: &[u8; 48]) {
        let mut h = Sha384::new();
        h.update(self.ld);
        h.update(contents);
        h.update(0x70u16.to_le_bytes());
        h.update([page_type, 0, 0, 0, 0, 0]);
        h.update(gpa.to_le_bytes());
        self.ld = h.finalize().into();
    }

    fn pages(&mut self, page_type: u8, gpa: u64, len: u64, contents: impl Fn(u64) -> [u8; 48]) {
        let mut off = 0u64;
        while off < len {
            self.update(page_type, gpa.wrapping_add(off), &contents(off));
            off = off.saturating_add(PAGE as u64);
        }
    }

    /// Measure `data` as NORMAL pages from `gpa`.
    pub fn normal_pages(&mut self, gpa: u64, data: &[u8]) -> Result<()> {
        if !data.len().is_multiple_of(PAGE) {
            return Err(Error::Measurement(format!(
                "{} bytes is not a whole number of pages",
                data.len()
            )));
        }
        for (i, page) in data.chunks(PAGE).enumerate() {
            let off = (i as u64).saturating_mul(PAGE as u64);
            self.update(0x01, gpa.wrapping_add(off), &Sha384::digest(page).into());
        }
        Ok(())
    }
}

/// The OVMF hash (`sev-snp-measure --mode snp` seed): the digest after the OVMF pages.
pub fn ovmf_hash(ovmf: &[u8]) -> Result<[u8; 48]> {
    let o = Ovmf::parse(ovmf)?;
    let mut ld = LaunchDigest::new(None);
    ld.normal_pages(o.gpa(), ovmf)?;
    Ok(ld.value())
}

/// QEMU's kernel-hashes table (168 bytes padded to 176).
pub fn sev_hashes_table(kernel: &[u8], initrd: &[u8], append: Option<&str>) -> Vec<u8> {
    const HEADER: &str = "9438d606-4f22-4cc9-b479-a793d411fd21";
    const KERNEL: &str = "4de79437-abd2-427f-b835-d5b172d2045b";
    const INITRD: &str = "44baf731-3a2f-4bd7-9af1-41e29169781d";
    const CMDLINE: &str = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a";
    let mut cmdline = append.unwrap_or("").as_bytes().to_vec();
    cmdline.push(0);
    let mut t = Vec::with_capacity(176);
    t.extend_from_slice(&crate::evidence::guid_bytes_le(HEADER).unwrap_or_default());
    t.extend_from_slice(&168u16.to_le_bytes());
    for (g, hash) in [
        (CMDLINE, Sha256::digest(&cmdline)),
        (INITRD, Sha256::digest(initrd)),
        (KERNEL, Sha256::digest(kernel)),
    ] {
        t.extend_from_slice(&crate::evidence::guid_bytes_le(g).unwrap_or_default());
        t.extend_from_slice(&50u16.to_le_bytes());
        t.extend_from_slice(&hash);
    }
    t.resize(176, 0);
    t
}

/// Compute the expected MEASUREMENT.
pub fn snp_launch_digest(inp: &LaunchInputs<'_>) -> Result<[u8; 48]> {
    let o = Ovmf::parse(inp.ovmf)?;
    if inp.vcpus == 0 {
        return Err(Error::Measurement("at least one vcpu is required".into()));
    }
    let mut ld = LaunchDigest::new(inp.ovmf_hash);
    if inp.ovmf_hash.is_none() {
        ld.normal_pages(o.gpa(), inp.ovmf)?;
    }
    let hashes_page = match inp.kernel {
        Some(kernel) => {
            let table = sev_hashes_table(kernel, inp.initrd.unwrap_or_default(), inp.append);
            let offset = (o.sev_hashes_table_gpa()? & 0xfff) as usize;
            let mut page = vec![0u8; PAGE];
            page.get_mut(offset..offset.saturating_add(table.len()))
                .ok_or_else(|| Error::Measurement("kernel hashes table crosses a page".into()))?
                .copy_from_slice(&table);
            Some(page)
        }
        None => None,
    };
    let zero = |_| [0u8; 48];
    for s in o.sections() {
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        match s.kind {
            SectionType::SnpSecMem if inp.vmm == VmmType::Gce => ld.pages(0x04, gpa, size, zero),
            SectionType::SnpSecMem | SectionType::SvsmCaa => ld.pages(0x03, gpa, size, zero),
            SectionType::SnpSecrets => ld.update(0x05, gpa, &[0; 48]),
            SectionType::Cpuid => {
                if inp.vmm != VmmType::Ec2 {
                    ld.update(0x06, gpa, &[0; 48]);
                }
            }
            SectionType::SnpKernelHashes => match &hashes_page {
                Some(page) => {
                    if size != PAGE as u64 {
                        return Err(Error::Measurement(format!(
                            "kernel hashes section is {size} bytes, expected one page"
                        )));
                    }
                    ld.normal_pages(gpa, page)?;
                }
                None => ld.pages(0x03, gpa, size, zero),
            },
        }
    }
    if inp.vmm == VmmType::Ec2 {
        for s in o.sections().iter().filter(|s| s.kind == SectionType::Cpuid) {
            ld.update(0x06, u64::from(s.gpa), &[0; 48]);
        }
    }
    if hashes_page.is_some()
        && !o
            .sections()
            .iter()
            .any(|s| s.kind == SectionType::SnpKernelHashes)
    {
        return Err(Error::Measurement(
            "kernel given but the ovmf metadata has no snp_kernel_hashes section".into(),
        ));
    }
    let bsp = vmsa::page(vmsa::BSP_EIP, inp.guest_features, inp.vcpu_sig, inp.vmm);
    let ap_eip = o.sev_es_reset_eip()?;
    let ap = (inp.vcpus > 1)
        .then(|| {
            if ap_eip == 0 {
                return Err(Error::Measurement(
                    "ovmf sev-es reset eip is 0 but several vcpus were asked for".into(),
                ));
            }
            Ok(vmsa::page(
                ap_eip,
                inp.guest_features,
                inp.vcpu_sig,
                inp.vmm,
            ))
        })
        .transpose()?;
    for i in 0..inp.vcpus {
        let page = if i == 0 {
            &bsp
        } else {
            ap.as_ref().unwrap_or(&bsp)
        };
        ld.update(0x02, VMSA_GPA, &Sha384::digest(page.as_slice()).into());
    }
    Ok(ld.value())
}
