//! ATTESTATION_REPORT codec (SEV-SNP Firmware ABI #56860, table "ATTESTATION_REPORT").
//!
//! One fixed 0x4A0-byte little-endian layout serves versions 2, 3, 4 and 5: later versions
//! only give meaning to bytes that earlier versions reserve (CPUID bytes from v3, mitigation
//! vectors from v5). [`Report::from_bytes`] checks the exact length, the version and every
//! reserved must-be-zero range *for that version*; accessors return `None` for fields the
//! version does not define.

use std::mem::offset_of;

use serde::Serialize;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::hexser;
use crate::tcb::{Product, TcbLayout, TcbVersion};

/// Size of an ATTESTATION_REPORT.
pub const REPORT_LEN: usize = 0x4A0;
/// End (exclusive) of the signed part of the report.
pub const SIGNED_LEN: usize = 0x2A0;

/// The raw report, field for field. All integers little-endian; no padding (alignment 1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
#[allow(missing_docs)]
pub struct RawReport {
    pub version: U32,
    pub guest_svn: U32,
    pub policy: U64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: U32,
    pub signature_algo: U32,
    pub current_tcb: U64,
    pub platform_info: U64,
    pub key_info: U32,
    pub reserved_04c: [u8; 4],
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: U64,
    pub cpuid_fam_id: u8,
    pub cpuid_mod_id: u8,
    pub cpuid_step: u8,
    pub reserved_18b: [u8; 21],
    pub chip_id: [u8; 64],
    pub committed_tcb: U64,
    pub current_build: u8,
    pub current_minor: u8,
    pub current_major: u8,
    pub reserved_1eb: u8,
    pub committed_build: u8,
    pub committed_minor: u8,
    pub committed_major: u8,
    pub reserved_1ef: u8,
    pub launch_tcb: U64,
    pub launch_mit_vector: U64,
    pub current_mit_vector: U64,
    pub reserved_208: [u8; 152],
    pub signature_r: [u8; 72],
    pub signature_s: [u8; 72],
    pub reserved_330: [u8; 368],
}

macro_rules! assert_offsets {
    ($($field:ident = $off:expr),* $(,)?) => {
        $(const _: () = assert!(offset_of!(RawReport, $field) == $off);)*
    };
}
assert_offsets!(
    version = 0x000,
    guest_svn = 0x004,
    policy = 0x008,
    family_id = 0x010,
    image_id = 0x020,
    vmpl = 0x030,
    signature_algo = 0x034,
    current_tcb = 0x038,
    platform_info = 0x040,
    key_info = 0x048,
    reserved_04c = 0x04c,
    report_data = 0x050,
    measurement = 0x090,
    host_data = 0x0c0,
    id_key_digest = 0x0e0,
    author_key_digest = 0x110,
    report_id = 0x140,
    report_id_ma = 0x160,
    reported_tcb = 0x180,
    cpuid_fam_id = 0x188,
    cpuid_mod_id = 0x189,
    cpuid_step = 0x18a,
    reserved_18b = 0x18b,
    chip_id = 0x1a0,
    committed_tcb = 0x1e0,
    current_build = 0x1e8,
    current_minor = 0x1e9,
    current_major = 0x1ea,
    reserved_1eb = 0x1eb,
    committed_build = 0x1ec,
    committed_minor = 0x1ed,
    committed_major = 0x1ee,
    reserved_1ef = 0x1ef,
    launch_tcb = 0x1f0,
    launch_mit_vector = 0x1f8,
    current_mit_vector = 0x200,
    reserved_208 = 0x208,
    signature_r = 0x2a0,
    signature_s = 0x2e8,
    reserved_330 = 0x330,
);
const _: () = assert!(size_of::<RawReport>() == REPORT_LEN);

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (per chip, per TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider).
    Vlek,
    /// Not signed.
    None,
}

impl SigningKey {
    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::None => "none",
        }
    }
}

/// Guest POLICY bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

#[allow(missing_docs)]
impl GuestPolicy {
    pub const SMT: u64 = 1 << 16;
    pub const RESERVED_1: u64 = 1 << 17;
    pub const MIGRATE_MA: u64 = 1 << 18;
    pub const DEBUG: u64 = 1 << 19;
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    pub const CXL_ALLOW: u64 = 1 << 21;
    pub const MEM_AES_256_XTS: u64 = 1 << 22;
    pub const RAPL_DIS: u64 = 1 << 23;
    pub const CIPHERTEXT_HIDING: u64 = 1 << 24;
    pub const PAGE_SWAP_DISABLE: u64 = 1 << 25;
    /// Bits 63:26, reserved (must be zero).
    pub const RESERVED_MBZ: u64 = !((1 << 26) - 1);

    pub fn abi_minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    pub fn abi_major(self) -> u8 {
        ((self.0 >> 8) & 0xff) as u8
    }
    pub fn has(self, bit: u64) -> bool {
        self.0 & bit == bit
    }
    pub fn debug(self) -> bool {
        self.has(Self::DEBUG)
    }
}

/// Decoded guest policy for JSON output.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct PolicyClaims {
    #[serde(with = "hexser::u64hex")]
    pub raw: u64,
    pub abi_major: u8,
    pub abi_minor: u8,
    pub smt: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
    pub cxl_allow: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_dis: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disable: bool,
}

impl From<GuestPolicy> for PolicyClaims {
    fn from(p: GuestPolicy) -> Self {
        PolicyClaims {
            raw: p.0,
            abi_major: p.abi_major(),
            abi_minor: p.abi_minor(),
            smt: p.has(GuestPolicy::SMT),
            migrate_ma: p.has(GuestPolicy::MIGRATE_MA),
            debug: p.debug(),
            single_socket: p.has(GuestPolicy::SINGLE_SOCKET),
            cxl_allow: p.has(GuestPolicy::CXL_ALLOW),
            mem_aes_256_xts: p.has(GuestPolicy::MEM_AES_256_XTS),
            rapl_dis: p.has(GuestPolicy::RAPL_DIS),
            ciphertext_hiding: p.has(GuestPolicy::CIPHERTEXT_HIDING),
            page_swap_disable: p.has(GuestPolicy::PAGE_SWAP_DISABLE),
        }
    }
}

/// Firmware version major.minor.build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

impl Serialize for FirmwareVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A structurally valid attestation report (not yet verified).
#[derive(Debug, Clone)]
pub struct Report {
    raw: RawReport,
}

fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b != 0)
}

impl Report {
    /// Decode and structurally validate a report: exact length, known version (2..=5),
    /// reserved must-be-zero ranges for that version, KEY_INFO reserved bits, zero-padded
    /// signature components. Unknown PLATFORM_INFO bits are accepted (real Turin reports
    /// set bit 6). Signature algorithm and signedness are checked by the verifier, so that
    /// `charter attest show` can still display unsigned reports.
    pub fn from_bytes(bytes: &[u8]) -> Result<Report> {
        let raw =
            RawReport::read_from_bytes(bytes).map_err(|_| Error::ReportLength(bytes.len()))?;
        let version = raw.version.get();
        if !(2..=5).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let mut mbz: Vec<(&'static str, usize, &[u8])> = vec![
            ("0x04c", 0x04c, &raw.reserved_04c[..]),
            ("0x1eb", 0x1eb, std::slice::from_ref(&raw.reserved_1eb)),
            ("0x1ef", 0x1ef, std::slice::from_ref(&raw.reserved_1ef)),
            ("0x208", 0x208, &raw.reserved_208[..]),
            ("signature reserved", 0x330, &raw.reserved_330[..]),
        ];
        if version >= 3 {
            mbz.push(("0x18b", 0x18b, &raw.reserved_18b[..]));
        } else {
            mbz.push((
                "cpuid (v2 reserved)",
                0x188,
                raw.as_bytes().get(0x188..0x1a0).unwrap_or_default(),
            ));
        }
        if version < 5 {
            mbz.push((
                "mitigation vectors (v<5 reserved)",
                0x1f8,
                raw.as_bytes().get(0x1f8..0x208).unwrap_or_default(),
            ));
        }
        for (field, offset, bytes) in mbz {
            if let Some(i) = first_nonzero(bytes) {
                return Err(Error::ReservedNotZero {
                    field,
                    offset: offset.saturating_add(i),
                });
            }
        }
        if raw.key_info.get() >> 5 != 0 {
            return Err(Error::ReservedNotZero {
                field: "key_info bits 31:5",
                offset: 0x48,
            });
        }
        if first_nonzero(&raw.signature_r[48..]).is_some() {
            return Err(Error::SignatureEncoding("r"));
        }
        if first_nonzero(&raw.signature_s[48..]).is_some() {
            return Err(Error::SignatureEncoding("s"));
        }
        Ok(Report { raw })
    }

    /// The raw fields.
    pub fn raw(&self) -> &RawReport {
        &self.raw
    }
    /// The 1184 report bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.raw.as_bytes()
    }
    /// Bytes 0x000..0x2A0, covered by the signature.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.as_bytes().get(..SIGNED_LEN).unwrap_or_default()
    }
    /// VERSION.
    pub fn version(&self) -> u32 {
        self.raw.version.get()
    }
    /// GUEST_SVN.
    pub fn guest_svn(&self) -> u32 {
        self.raw.guest_svn.get()
    }
    /// POLICY.
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy(self.raw.policy.get())
    }
    /// VMPL.
    pub fn vmpl(&self) -> u32 {
        self.raw.vmpl.get()
    }
    /// SIGNATURE_ALGO.
    pub fn signature_algo(&self) -> u32 {
        self.raw.signature_algo.get()
    }
    /// PLATFORM_INFO (unknown bits preserved).
    pub fn platform_info(&self) -> u64 {
        self.raw.platform_info.get()
    }
    /// KEY_INFO raw.
    pub fn key_info(&self) -> u32 {
        self.raw.key_info.get()
    }
    /// KEY_INFO.AUTHOR_KEY_EN.
    pub fn author_key_en(&self) -> bool {
        self.key_info() & 1 != 0
    }
    /// KEY_INFO.MASK_CHIP_KEY.
    pub fn mask_chip_key(&self) -> bool {
        self.key_info() & 2 != 0
    }
    /// KEY_INFO.SIGNING_KEY.
    pub fn signing_key(&self) -> Result<SigningKey> {
        match (self.key_info() >> 2) & 7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            7 => Ok(SigningKey::None),
            other => Err(Error::SigningKeyReserved(other)),
        }
    }
    /// REPORT_DATA.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.raw.report_data
    }
    /// MEASUREMENT.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.raw.measurement
    }
    /// HOST_DATA.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.raw.host_data
    }
    /// CHIP_ID.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.raw.chip_id
    }
    /// REPORTED_TCB raw.
    pub fn reported_tcb_raw(&self) -> u64 {
        self.raw.reported_tcb.get()
    }
    /// CPUID family, model, stepping (v3+ only).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then_some((
            self.raw.cpuid_fam_id,
            self.raw.cpuid_mod_id,
            self.raw.cpuid_step,
        ))
    }
    /// Product from the v3+ CPUID fields (`None` for v2 or unknown CPUs).
    pub fn product_from_cpuid(&self) -> Option<Product> {
        self.cpuid().and_then(|(f, m, _)| Product::from_cpuid(f, m))
    }
    /// LAUNCH_MIT_VECTOR (v5+).
    pub fn launch_mit_vector(&self) -> Option<u64> {
        (self.version() >= 5).then_some(self.raw.launch_mit_vector.get())
    }
    /// CURRENT_MIT_VECTOR (v5+).
    pub fn current_mit_vector(&self) -> Option<u64> {
        (self.version() >= 5).then_some(self.raw.current_mit_vector.get())
    }
    /// CURRENT firmware version.
    pub fn current_version(&self) -> FirmwareVersion {
        FirmwareVersion {
            major: self.raw.current_major,
            minor: self.raw.current_minor,
            build: self.raw.current_build,
        }
    }
    /// COMMITTED firmware version.
    pub fn committed_version(&self) -> FirmwareVersion {
        FirmwareVersion {
            major: self.raw.committed_major,
            minor: self.raw.committed_minor,
            build: self.raw.committed_build,
        }
    }

    /// Signature (r, s) as big-endian 48-byte scalars, i.e. the 96-byte fixed encoding.
    pub fn signature_fixed_be(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        for (dst, src) in out
            .iter_mut()
            .zip(self.raw.signature_r.iter().take(48).rev())
        {
            *dst = *src;
        }
        for (dst, src) in out
            .iter_mut()
            .skip(48)
            .zip(self.raw.signature_s.iter().take(48).rev())
        {
            *dst = *src;
        }
        out
    }

    /// Every field decoded, with TCB values interpreted for `product` (or the legacy layout
    /// when the product is unknown).
    pub fn fields(&self, product: Option<Product>) -> ReportFields {
        let layout = product.map_or(TcbLayout::Legacy, Product::tcb_layout);
        let r = &self.raw;
        let tcb = |raw: u64| TcbClaims {
            raw,
            decoded: TcbVersion::from_raw(raw, layout),
        };
        ReportFields {
            version: self.version(),
            guest_svn: self.guest_svn(),
            policy: self.policy().into(),
            family_id: r.family_id,
            image_id: r.image_id,
            vmpl: self.vmpl(),
            signature_algo: self.signature_algo(),
            current_tcb: tcb(r.current_tcb.get()),
            platform_info: self.platform_info(),
            key_info: self.key_info(),
            report_data: r.report_data,
            measurement: r.measurement,
            host_data: r.host_data,
            id_key_digest: r.id_key_digest,
            author_key_digest: r.author_key_digest,
            report_id: r.report_id,
            report_id_ma: r.report_id_ma,
            reported_tcb: tcb(r.reported_tcb.get()),
            cpuid_fam_id: self.cpuid().map(|c| c.0),
            cpuid_mod_id: self.cpuid().map(|c| c.1),
            cpuid_step: self.cpuid().map(|c| c.2),
            chip_id: r.chip_id,
            committed_tcb: tcb(r.committed_tcb.get()),
            current_version: self.current_version(),
            committed_version: self.committed_version(),
            launch_tcb: tcb(r.launch_tcb.get()),
            launch_mit_vector: self.launch_mit_vector(),
            current_mit_vector: self.current_mit_vector(),
        }
    }
}

/// A TCB value with its raw form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TcbClaims {
    /// Raw u64.
    #[serde(with = "hexser::u64hex")]
    pub raw: u64,
    /// Per-component SPLs.
    #[serde(flatten)]
    pub decoded: TcbVersion,
}

/// All report fields, decoded (byte strings serialise as lowercase hex).
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct ReportFields {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: PolicyClaims,
    #[serde(with = "hexser")]
    pub family_id: [u8; 16],
    #[serde(with = "hexser")]
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: TcbClaims,
    #[serde(with = "hexser::u64hex")]
    pub platform_info: u64,
    #[serde(with = "hexser::u32hex")]
    pub key_info: u32,
    #[serde(with = "hexser")]
    pub report_data: [u8; 64],
    #[serde(with = "hexser")]
    pub measurement: [u8; 48],
    #[serde(with = "hexser")]
    pub host_data: [u8; 32],
    #[serde(with = "hexser")]
    pub id_key_digest: [u8; 48],
    #[serde(with = "hexser")]
    pub author_key_digest: [u8; 48],
    #[serde(with = "hexser")]
    pub report_id: [u8; 32],
    #[serde(with = "hexser")]
    pub report_id_ma: [u8; 32],
    pub reported_tcb: TcbClaims,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid_fam_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid_mod_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid_step: Option<u8>,
    #[serde(with = "hexser")]
    pub chip_id: [u8; 64],
    pub committed_tcb: TcbClaims,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub launch_tcb: TcbClaims,
    #[serde(skip_serializing_if = "Option::is_none", with = "hexser::opt_u64hex")]
    pub launch_mit_vector: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "hexser::opt_u64hex")]
    pub current_mit_vector: Option<u64>,
}
