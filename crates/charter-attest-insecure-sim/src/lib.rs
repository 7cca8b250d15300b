//! # INSECURE simulated AMD SEV-SNP secure processor
//!
//! For tests and CI on machines without SEV-SNP. It generates (and persists to a directory)
//! an ARK → ASK → VCEK chain that mimics AMD's (RSA-4096 RSASSA-PSS-SHA-384 ARK/ASK, ECDSA
//! P-384 VCEK, the same `1.3.6.1.4.1.3704.1.*` extensions, subject names marked
//! `INSECURE SIMULATED`) and emits byte-exact v3 ATTESTATION_REPORTs for given HOST_DATA,
//! MEASUREMENT, REPORT_DATA, policy and TCB. The private keys sit in plain files: evidence from
//! it proves nothing. `charter-attest` only accepts it with
//! `VerifyOptions::insecure_allow_simulated` and this simulator's root passed in, and then
//! says `insecure-simulated-snp`.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
#![warn(missing_docs)]

mod serve;
mod x509;

pub use serve::serve_insecure_simulated;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use charter_attest::report::SIGNED_LEN;
use charter_attest::{Evidence, Product, RootSet, TcbLayout, TcbVersion, TeeProvider};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// File I/O in the state directory.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Key generation, loading or signing failed.
    #[error("simulated key {0} failed")]
    Crypto(&'static str),
    /// Certificate encoding failed.
    #[error("simulated certificate encoding failed: {0}")]
    Cert(String),
    /// The verifier side rejected the simulator's own roots.
    #[error(transparent)]
    Attest(#[from] charter_attest::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Marker that every simulated subject carries.
pub const INSECURE_MARK: &str = "INSECURE SIMULATED";

/// Launch-time parameters of a simulated guest (fixed by the "host" at launch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchParams {
    /// HOST_DATA (e.g. SHA-256 of the execution policy).
    pub host_data: [u8; 32],
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// Guest POLICY (default 0x30000: SMT allowed, reserved bit 17).
    pub policy: u64,
    /// VMPL of the requesting guest.
    pub vmpl: u32,
    /// TCB (current = reported = committed = launch).
    pub tcb: TcbVersion,
    /// GUEST_SVN.
    pub guest_svn: u32,
}

impl Default for LaunchParams {
    fn default() -> Self {
        LaunchParams {
            host_data: [0; 32],
            measurement: [0; 48],
            policy: 0x30000,
            vmpl: 0,
            tcb: TcbVersion {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            },
            guest_svn: 0,
        }
    }
}

/// The simulated AMD-SP: keys, certificates and a chip id.
pub struct InsecureSimulatedSp {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    ask_key: RsaKeyPair,
    vcek_key: EcdsaKeyPair,
    chip_id: [u8; 64],
    vceks: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for InsecureSimulatedSp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsecureSimulatedSp")
            .field("chip_id", &hex::encode(self.chip_id))
            .finish_non_exhaustive()
    }
}

const PRODUCT: Product = Product::Milan;

impl InsecureSimulatedSp {
    /// Load the simulator state from `dir`, generating and persisting it on first use.
    pub fn load_or_generate(dir: &Path) -> Result<InsecureSimulatedSp> {
        if dir.join("vcek.pk8").exists() {
            return InsecureSimulatedSp::load(dir);
        }
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let rng = SystemRandom::new();
        let ark =
            RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| Error::Crypto("ark generation"))?;
        let ask =
            RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| Error::Crypto("ask generation"))?;
        let vcek = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Crypto("vcek generation"))?;
        let mut chip_id = [0u8; 64];
        rng.fill(&mut chip_id)
            .map_err(|_| Error::Crypto("chip id"))?;
        let ark_der = x509::ark_cert(&ark)?;
        let ask_der = x509::ask_cert(&ark, &ask)?;
        let pk8 = |k: &RsaKeyPair, what: &'static str| {
            k.as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| Error::Crypto(what))
        };
        let files: [(&str, Vec<u8>); 6] = [
            ("ark.pk8", pk8(&ark, "ark export")?),
            ("ask.pk8", pk8(&ask, "ask export")?),
            ("vcek.pk8", vcek.as_ref().to_vec()),
            ("ark.der", ark_der),
            ("ask.der", ask_der),
            ("chip_id.bin", chip_id.to_vec()),
        ];
        for (name, data) in &files {
            let p = dir.join(name);
            fs::write(&p, data).map_err(|e| io(&p, e))?;
        }
        let readme = dir.join("README-INSECURE.txt");
        fs::write(&readme, "INSECURE SIMULATED AMD-SP state for charter tests. Private keys in plain files.\nEvidence signed by these keys proves nothing.\n")
            .map_err(|e| io(&readme, e))?;
        InsecureSimulatedSp::load(dir)
    }

    /// Load persisted state.
    pub fn load(dir: &Path) -> Result<InsecureSimulatedSp> {
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read(&p).map_err(|e| io(&p, e))
        };
        let ask_key =
            RsaKeyPair::from_pkcs8(&read("ask.pk8")?).map_err(|_| Error::Crypto("ask load"))?;
        let vcek_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &read("vcek.pk8")?)
                .map_err(|_| Error::Crypto("vcek load"))?;
        let chip_id: [u8; 64] = read("chip_id.bin")?
            .try_into()
            .map_err(|_| Error::Crypto("chip id load"))?;
        Ok(InsecureSimulatedSp {
            ark_der: read("ark.der")?,
            ask_der: read("ask.der")?,
            ask_key,
            vcek_key,
            chip_id,
            vceks: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        })
    }

    /// The simulated ARK (DER).
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }
    /// The simulated ASK (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }
    /// CHIP_ID of the simulated chip.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// The root set to give `charter_attest::Verifier::with_insecure_simulated_root`.
    pub fn root_set(&self) -> Result<RootSet> {
        Ok(RootSet::insecure_simulated(
            &self.ark_der,
            &self.ask_der,
            None,
        )?)
    }

    /// ARK then ASK as PEM (what `charter attest verify --insecure-simulated-root` reads).
    pub fn root_pem(&self) -> String {
        let mut s = charter_attest::cert::to_pem(&self.ark_der);
        s.push_str(&charter_attest::cert::to_pem(&self.ask_der));
        s
    }

    /// The VCEK certificate for `tcb` (minted on demand like AMD KDS, then cached).
    pub fn vcek_der(&self, tcb: &TcbVersion) -> Result<Arc<Vec<u8>>> {
        let key = tcb.to_raw(TcbLayout::Legacy);
        let mut cache = self.vceks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.get(&key) {
            return Ok(Arc::clone(c));
        }
        let der = Arc::new(x509::vcek_cert(
            &self.ask_key,
            &self.vcek_key,
            tcb,
            &self.chip_id,
        )?);
        cache.insert(key, Arc::clone(&der));
        Ok(der)
    }

    /// A signed v3 ATTESTATION_REPORT (1184 bytes).
    pub fn report(&self, launch: &LaunchParams, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let mut raw =
            build::report_fields(launch, report_data, &self.chip_id, PRODUCT.tcb_layout());
        let bytes = build::as_bytes(&raw);
        let signed = bytes
            .get(..SIGNED_LEN)
            .ok_or(Error::Crypto("report layout"))?;
        let sig = self
            .vcek_key
            .sign(&self.rng, signed)
            .map_err(|_| Error::Crypto("report signing"))?;
        build::set_signature(&mut raw, sig.as_ref())
            .ok_or(Error::Crypto("report signature encoding"))?;
        Ok(build::as_bytes(&raw).to_vec())
    }

    /// Report plus VCEK and ASK/ARK as an evidence bundle.
    pub fn evidence(&self, launch: &LaunchParams, report_data: &[u8; 64]) -> Result<Evidence> {
        Ok(Evidence {
            report: self.report(launch, report_data)?,
            vek: Some(self.vcek_der(&launch.tcb)?.as_ref().clone()),
            chain: vec![self.ask_der.clone(), self.ark_der.clone()],
            runtime_data: None,
        })
    }
}

/// A guest launched on the simulated AMD-SP: implements [`TeeProvider`].
#[derive(Debug, Clone)]
pub struct InsecureSimulatedGuest {
    sp: Arc<InsecureSimulatedSp>,
    launch: LaunchParams,
}

impl InsecureSimulatedGuest {
    /// A guest with fixed launch parameters.
    pub fn new(sp: Arc<InsecureSimulatedSp>, launch: LaunchParams) -> Self {
        InsecureSimulatedGuest { sp, launch }
    }
}

impl TeeProvider for InsecureSimulatedGuest {
    fn name(&self) -> &'static str {
        "insecure-simulated-snp"
    }

    fn report(&self, report_data: [u8; 64]) -> charter_attest::Result<Evidence> {
        self.sp
            .evidence(&self.launch, &report_data)
            .map_err(|e| charter_attest::Error::Provider {
                provider: "insecure-simulated-snp",
                reason: e.to_string(),
            })
    }
}

/// Default state directory: `$CHARTER_INSECURE_SIM_DIR` or `<tmp>/charter-insecure-sim`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("CHARTER_INSECURE_SIM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("charter-insecure-sim"))
}

mod build {
    //! Report assembly on `charter_attest::report::RawReport`.
    use charter_attest::report::RawReport;
    use charter_attest::TcbLayout;
    use zerocopy::{FromZeros, IntoBytes};

    use super::LaunchParams;

    pub fn as_bytes(raw: &RawReport) -> &[u8] {
        raw.as_bytes()
    }

    /// Deterministic REPORT_ID for given launch inputs.
    fn report_id(chip_id: &[u8; 64], measurement: &[u8; 48], host_data: &[u8; 32]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"charter insecure simulated report id");
        ctx.update(chip_id);
        ctx.update(measurement);
        ctx.update(host_data);
        ctx.finish().as_ref().try_into().unwrap_or([0; 32])
    }

    pub fn report_fields(
        l: &LaunchParams,
        report_data: &[u8; 64],
        chip_id: &[u8; 64],
        layout: TcbLayout,
    ) -> RawReport {
        let mut r = RawReport::new_zeroed();
        let tcb = l.tcb.to_raw(layout);
        r.version.set(3);
        r.guest_svn.set(l.guest_svn);
        r.policy.set(l.policy);
        r.vmpl.set(l.vmpl);
        r.signature_algo.set(1);
        r.current_tcb.set(tcb);
        r.platform_info.set(0x25); // SMT_EN | ECC_EN | ALIAS_CHECK_COMPLETE
        r.key_info.set(0); // signed by the VCEK
        r.report_data = *report_data;
        r.measurement = l.measurement;
        r.host_data = l.host_data;
        r.report_id = report_id(chip_id, &l.measurement, &l.host_data);
        r.report_id_ma = [0xff; 32];
        r.reported_tcb.set(tcb);
        r.cpuid_fam_id = 0x19; // Milan
        r.cpuid_mod_id = 0x01;
        r.cpuid_step = 0x01;
        r.chip_id = *chip_id;
        r.committed_tcb.set(tcb);
        (r.current_major, r.current_minor, r.current_build) = (1, 55, 0);
        (r.committed_major, r.committed_minor, r.committed_build) = (1, 55, 0);
        r.launch_tcb.set(tcb);
        r
    }

    /// Store a fixed-size (r || s, big-endian 48 bytes each) signature as 72-byte
    /// little-endian zero-padded components.
    pub fn set_signature(r: &mut RawReport, fixed: &[u8]) -> Option<()> {
        let (rb, sb) = (fixed.get(..48)?, fixed.get(48..96)?);
        r.signature_r = [0; 72];
        r.signature_s = [0; 72];
        for (d, s) in r.signature_r.iter_mut().zip(rb.iter().rev()) {
            *d = *s;
        }
        for (d, s) in r.signature_s.iter_mut().zip(sb.iter().rev()) {
            *d = *s;
        }
        Some(())
    }
}
