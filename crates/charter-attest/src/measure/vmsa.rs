//! The initial VMSA page of a vCPU (`SevEsSaveArea`), as `sevsnpmeasure/vmsa.py` builds it.

use super::VmmType;

/// BSP reset vector.
pub const BSP_EIP: u32 = 0xffff_fff0;

struct Page(Vec<u8>);

impl Page {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(off..off.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }
    fn u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_le_bytes());
    }
    fn u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
    fn u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_le_bytes());
    }
    /// VMCB segment: selector u16, attrib u16, limit u32, base u64.
    fn seg(&mut self, off: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.u16(off, selector);
        self.u16(off.saturating_add(2), attrib);
        self.u32(off.saturating_add(4), limit);
        self.u64(off.saturating_add(8), base);
    }
}

/// Build the 4096-byte VMSA for a vCPU starting at `eip`.
pub fn page(eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> Vec<u8> {
    let (cs_flags, ss_flags, tr_flags, rdx, mxcsr, fcw, g_pat) = match vmm {
        VmmType::Qemu => (
            0x9b,
            0x93,
            0x8b,
            u64::from(vcpu_sig),
            0x1f80,
            0x37f,
            0x0007_0406_0007_0406u64,
        ),
        VmmType::Ec2 => (
            if eip == BSP_EIP { 0x9a } else { 0x9b },
            0x92,
            0x83,
            0x600,
            0,
            0,
            0x0007_0406_0007_0406,
        ),
        VmmType::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };
    let mut p = Page(vec![0u8; 4096]);
    p.seg(0x00, 0, 0x93, 0xffff, 0); // es
    p.seg(0x10, 0xf000, cs_flags, 0xffff, u64::from(eip & 0xffff_0000)); // cs
    p.seg(0x20, 0, ss_flags, 0xffff, 0); // ss
    p.seg(0x30, 0, 0x93, 0xffff, 0); // ds
    p.seg(0x40, 0, 0x93, 0xffff, 0); // fs
    p.seg(0x50, 0, 0x93, 0xffff, 0); // gs
    p.seg(0x60, 0, 0, 0xffff, 0); // gdtr
    p.seg(0x70, 0, 0x82, 0xffff, 0); // ldtr
    p.seg(0x80, 0, 0, 0xffff, 0); // idtr
    p.seg(0x90, 0, tr_flags, 0xffff, 0); // tr
    p.u64(0xd0, 0x1000); // efer (SVME)
    p.u64(0x148, 0x40); // cr4 (MCE)
    p.u64(0x158, 0x10); // cr0
    p.u64(0x160, 0x400); // dr7
    p.u64(0x168, 0xffff_0ff0); // dr6
    p.u64(0x170, 0x2); // rflags
    p.u64(0x178, u64::from(eip & 0xffff)); // rip
    p.u64(0x268, g_pat);
    p.u64(0x310, rdx);
    p.u64(0x3b0, sev_features);
    p.u64(0x3e8, 0x1); // xcr0
    p.u32(0x408, mxcsr);
    p.u16(0x410, fcw);
    p.0
}
