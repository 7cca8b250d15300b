//! `/dev/sev-guest` provider: SNP_GET_REPORT / SNP_GET_EXT_REPORT (uapi `linux/sev-guest.h`).
//!
//! The only unsafe code of the crate lives here (the two ioctl calls), with the struct
//! layouts and request numbers asserted at compile time.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::mem::{offset_of, size_of};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::TeeProvider;
use crate::error::{Error, Result};
use crate::evidence::{parse_cert_table, Evidence};
use crate::report::REPORT_LEN;

/// The SEV guest device.
pub const DEFAULT_DEVICE: &str = "/dev/sev-guest";
const NAME: &str = "sev-guest";

/// `struct snp_guest_request_ioctl`.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpGuestRequestIoctl {
    /// Message version, must be 1.
    pub msg_version: u8,
    /// Padding.
    pub pad: [u8; 7],
    /// User pointer to the request.
    pub req_data: u64,
    /// User pointer to the response.
    pub resp_data: u64,
    /// Firmware error (low 32 bits) / VMM error (high 32 bits).
    pub exitinfo2: u64,
}

/// `struct snp_report_req`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpReportReq {
    /// Becomes REPORT_DATA.
    pub user_data: [u8; 64],
    /// Requested VMPL.
    pub vmpl: u32,
    /// Reserved, zero.
    pub rsvd: [u8; 28],
}

/// `struct snp_ext_report_req`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpExtReportReq {
    /// The report request.
    pub data: SnpReportReq,
    /// User pointer to the certificate buffer.
    pub certs_address: u64,
    /// Certificate buffer length (multiple of 4096); updated by the kernel when too small.
    pub certs_len: u32,
    /// Tail padding of the C struct (explicit).
    pub pad: u32,
}

/// `struct snp_report_resp`: the firmware MSG_REPORT_RSP in 4000 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpReportResp {
    /// Response bytes: status u32, report_size u32, 24 reserved, report.
    pub data: [u8; 4000],
}

const _: () = {
    assert!(size_of::<SnpGuestRequestIoctl>() == 32);
    assert!(offset_of!(SnpGuestRequestIoctl, req_data) == 8);
    assert!(offset_of!(SnpGuestRequestIoctl, resp_data) == 16);
    assert!(offset_of!(SnpGuestRequestIoctl, exitinfo2) == 24);
    assert!(size_of::<SnpReportReq>() == 96);
    assert!(offset_of!(SnpReportReq, vmpl) == 64);
    assert!(offset_of!(SnpReportReq, rsvd) == 68);
    assert!(size_of::<SnpExtReportReq>() == 112);
    assert!(offset_of!(SnpExtReportReq, certs_address) == 96);
    assert!(offset_of!(SnpExtReportReq, certs_len) == 104);
    assert!(size_of::<SnpReportResp>() == 4000);
};

/// `_IOWR('S', nr, struct snp_guest_request_ioctl)` on x86-64.
pub const fn iowr(nr: u32) -> u32 {
    (3 << 30) | ((size_of::<SnpGuestRequestIoctl>() as u32) << 16) | ((b'S' as u32) << 8) | nr
}
/// SNP_GET_REPORT.
pub const SNP_GET_REPORT: u32 = iowr(0);
/// SNP_GET_EXT_REPORT.
pub const SNP_GET_EXT_REPORT: u32 = iowr(2);
const _: () = assert!(SNP_GET_REPORT == 0xC020_5300);
const _: () = assert!(SNP_GET_EXT_REPORT == 0xC020_5302);

mod sys {
    use super::{SnpGuestRequestIoctl, SNP_GET_EXT_REPORT, SNP_GET_REPORT};
    nix::ioctl_readwrite_bad!(ioctl_get_report, SNP_GET_REPORT, SnpGuestRequestIoctl);
    nix::ioctl_readwrite_bad!(
        ioctl_get_ext_report,
        SNP_GET_EXT_REPORT,
        SnpGuestRequestIoctl
    );
}
use sys::{ioctl_get_ext_report, ioctl_get_report};

/// VMM error "certificate buffer too small" in exitinfo2's high half.
pub const VMM_ERROR_INVALID_LEN: u32 = 1;

fn err(reason: impl Into<String>) -> Error {
    Error::Provider {
        provider: NAME,
        reason: reason.into(),
    }
}

/// Encode a report request.
pub fn encode_report_req(report_data: &[u8; 64], vmpl: u32) -> SnpReportReq {
    SnpReportReq {
        user_data: *report_data,
        vmpl,
        rsvd: [0; 28],
    }
}

/// Decode MSG_REPORT_RSP into the raw report.
pub fn decode_report_resp(resp: &SnpReportResp) -> Result<Vec<u8>> {
    let word = |at: usize| {
        resp.data
            .get(at..at.saturating_add(4))
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_le_bytes)
    };
    let status = word(0).unwrap_or(u32::MAX);
    if status != 0 {
        return Err(err(format!("firmware status {status:#x}")));
    }
    let size = word(4).unwrap_or(0) as usize;
    if size != REPORT_LEN {
        return Err(err(format!(
            "firmware report size {size}, expected {REPORT_LEN}"
        )));
    }
    resp.data
        .get(0x20..0x20usize.saturating_add(REPORT_LEN))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| err("short response"))
}

/// Split exitinfo2 into (firmware error, vmm error).
pub fn split_exitinfo2(exitinfo2: u64) -> (u32, u32) {
    ((exitinfo2 & 0xffff_ffff) as u32, (exitinfo2 >> 32) as u32)
}

/// `/dev/sev-guest` provider.
#[derive(Debug)]
pub struct SevGuest {
    device: PathBuf,
    vmpl: u32,
    extended: bool,
}

impl SevGuest {
    /// Provider on `device` (normally [`DEFAULT_DEVICE`]); VMPL 0; extended reports
    /// (with the host's certificate table) first.
    pub fn new(device: impl Into<PathBuf>) -> SevGuest {
        SevGuest {
            device: device.into(),
            vmpl: 0,
            extended: true,
        }
    }

    /// Request another VMPL.
    pub fn with_vmpl(mut self, vmpl: u32) -> SevGuest {
        self.vmpl = vmpl;
        self
    }

    /// Use SNP_GET_REPORT only (no certificates from the host).
    pub fn without_certs(mut self) -> SevGuest {
        self.extended = false;
        self
    }
}

impl TeeProvider for SevGuest {
    fn name(&self) -> &'static str {
        NAME
    }

    fn report(&self, report_data: [u8; 64]) -> Result<Evidence> {
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.device)
            .map_err(|e| Error::io(&self.device, e))?;
        let fd = dev.as_raw_fd();
        let mut resp = SnpReportResp { data: [0; 4000] };
        let req = encode_report_req(&report_data, self.vmpl);
        if !self.extended {
            let mut io = SnpGuestRequestIoctl {
                msg_version: 1,
                req_data: std::ptr::from_ref(&req) as u64,
                resp_data: std::ptr::from_mut(&mut resp) as u64,
                ..Default::default()
            };
            // SAFETY: `fd` is an open /dev/sev-guest; `io` points to valid request/response
            // buffers of the sizes the kernel expects (asserted above) that outlive the call.
            unsafe { ioctl_get_report(fd, &mut io) }.map_err(|e| {
                err(format!(
                    "snp_get_report: {e} (exitinfo2 {:#x})",
                    io.exitinfo2
                ))
            })?;
            return Ok(Evidence {
                report: decode_report_resp(&resp)?,
                ..Evidence::default()
            });
        }
        let mut certs = vec![0u8; 4 * 4096];
        for _ in 0..2 {
            let ext = SnpExtReportReq {
                data: req,
                certs_address: certs.as_mut_ptr() as u64,
                certs_len: u32::try_from(certs.len())
                    .map_err(|_| err("certificate buffer too large"))?,
                pad: 0,
            };
            let mut ext = ext;
            let mut io = SnpGuestRequestIoctl {
                msg_version: 1,
                req_data: std::ptr::from_mut(&mut ext) as u64,
                resp_data: std::ptr::from_mut(&mut resp) as u64,
                ..Default::default()
            };
            // SAFETY: as above; additionally `certs` is a live buffer of `certs_len` bytes.
            let res = unsafe { ioctl_get_ext_report(fd, &mut io) };
            match res {
                Ok(_) => {
                    let mut ev = Evidence {
                        report: decode_report_resp(&resp)?,
                        ..Evidence::default()
                    };
                    if certs.iter().any(|&b| b != 0) {
                        let table = parse_cert_table(&certs)?;
                        ev.vek = table.vek;
                        ev.chain = table.chain;
                    }
                    return Ok(ev);
                }
                Err(e) => {
                    let (_, vmm) = split_exitinfo2(io.exitinfo2);
                    if vmm == VMM_ERROR_INVALID_LEN && (ext.certs_len as usize) > certs.len() {
                        certs = vec![0u8; ext.certs_len as usize];
                        continue;
                    }
                    return Err(err(format!(
                        "snp_get_ext_report: {e} (exitinfo2 {:#x})",
                        io.exitinfo2
                    )));
                }
            }
        }
        Err(err(
            "snp_get_ext_report: certificate buffer size kept changing",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_and_encoding() {
        assert_eq!(SNP_GET_REPORT, 0xC020_5300);
        let req = encode_report_req(&[7; 64], 2);
        let b = req.as_bytes();
        assert_eq!(b.len(), 96);
        assert_eq!(&b[..64], &[7; 64]);
        assert_eq!(&b[64..68], &2u32.to_le_bytes());
        assert!(b[68..].iter().all(|&x| x == 0));
        assert_eq!(split_exitinfo2(0x0000_0001_0000_0000), (0, 1));
    }

    #[test]
    fn response_decoding() {
        let mut resp = SnpReportResp { data: [0; 4000] };
        resp.data[4..8].copy_from_slice(&1184u32.to_le_bytes());
        resp.data[0x20] = 5;
        let r = decode_report_resp(&resp).unwrap();
        assert_eq!(r.len(), 1184);
        assert_eq!(r[0], 5);
        resp.data[0] = 0x16;
        assert!(decode_report_resp(&resp).is_err());
        resp.data[0] = 0;
        resp.data[4..8].copy_from_slice(&100u32.to_le_bytes());
        assert!(decode_report_resp(&resp).is_err());
    }

    #[test]
    fn missing_device_is_typed_error() {
        let e = SevGuest::new("/nonexistent/sev-guest")
            .report([0; 64])
            .unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
    }
}
