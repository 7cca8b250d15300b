//! Verification of a report to a pinned AMD root, and appraisal against caller options.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_lc_rs::signature::ParsedPublicKey;
use serde::Serialize;

use crate::cert::{pem_certs, Cert, VekExtensions};
use crate::error::{Error, Result};
use crate::report::{GuestPolicy, Report, ReportFields, SigningKey};
use crate::tcb::{Product, TcbLayout, TcbVersion};

/// Which kind of platform produced verified evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Platform {
    /// Real AMD SEV-SNP hardware, chained to a pinned AMD root.
    #[serde(rename = "snp")]
    Snp,
    /// The INSECURE simulated AMD-SP (`charter-attest-insecure-sim`): proves nothing.
    #[serde(rename = "insecure-simulated-snp")]
    InsecureSimulatedSnp,
}

/// A trusted root set: ARK plus the intermediates it signed (ASK for VCEKs, ASVK for VLEKs).
pub struct RootSet {
    name: String,
    product: Option<Product>,
    simulated: bool,
    ark: Cert,
    ask: Cert,
    ask_key: ParsedPublicKey,
    asvk: Option<(Cert, ParsedPublicKey)>,
}

impl std::fmt::Debug for RootSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootSet")
            .field("name", &self.name)
            .field("simulated", &self.simulated)
            .field("ark", &self.ark.subject_cn())
            .field("ask", &self.ask.subject_cn())
            .field(
                "asvk",
                &self.asvk.as_ref().map(|a| a.0.subject_cn().to_owned()),
            )
            .finish()
    }
}

const BUILTIN: [(Product, &str, &str, &str); 3] = [
    (
        Product::Milan,
        include_str!("../roots/milan/ark.pem"),
        include_str!("../roots/milan/ask.pem"),
        include_str!("../roots/milan/asvk.pem"),
    ),
    (
        Product::Genoa,
        include_str!("../roots/genoa/ark.pem"),
        include_str!("../roots/genoa/ask.pem"),
        include_str!("../roots/genoa/asvk.pem"),
    ),
    (
        Product::Turin,
        include_str!("../roots/turin/ark.pem"),
        include_str!("../roots/turin/ask.pem"),
        include_str!("../roots/turin/asvk.pem"),
    ),
];

impl RootSet {
    fn build(
        name: String,
        product: Option<Product>,
        simulated: bool,
        ark: Cert,
        ask: Cert,
        asvk: Option<Cert>,
    ) -> Result<RootSet> {
        let ark_key = ark.rsa_pss_key()?;
        ark.verify_signed_by("ark", &ark_key)?;
        ask.verify_signed_by("ark", &ark_key)?;
        let ask_key = ask.rsa_pss_key()?;
        let asvk = match asvk {
            Some(c) => {
                c.verify_signed_by("ark", &ark_key)?;
                let k = c.rsa_pss_key()?;
                Some((c, k))
            }
            None => None,
        };
        Ok(RootSet {
            name,
            product,
            simulated,
            ark,
            ask,
            ask_key,
            asvk,
        })
    }

    /// The built-in AMD roots of a product (self-signature and intermediates checked).
    pub fn amd(product: Product) -> Result<RootSet> {
        let (_, ark, ask, asvk) = BUILTIN
            .iter()
            .find(|(p, ..)| *p == product)
            .ok_or_else(|| Error::Product(format!("no built-in roots for {product}")))?;
        RootSet::build(
            product.name().to_owned(),
            Some(product),
            false,
            Cert::from_pem("ark", ark)?,
            Cert::from_pem("ask", ask)?,
            Some(Cert::from_pem("asvk", asvk)?),
        )
    }

    /// An INSECURE simulated root (ARK, ASK [, ASVK] as DER). Evidence chaining to it is only
    /// accepted with [`VerifyOptions::insecure_allow_simulated`], and its claims say
    /// `insecure-simulated-snp`.
    pub fn insecure_simulated(
        ark_der: &[u8],
        ask_der: &[u8],
        asvk_der: Option<&[u8]>,
    ) -> Result<RootSet> {
        let ark = Cert::from_der("ark", ark_der)?;
        let asvk = asvk_der.map(|d| Cert::from_der("asvk", d)).transpose()?;
        RootSet::build(
            ark.subject_cn().to_owned(),
            None,
            true,
            ark,
            Cert::from_der("ask", ask_der)?,
            asvk,
        )
    }

    /// An INSECURE simulated root from PEM (ARK first or in any order; self-signed = ARK).
    pub fn insecure_simulated_pem(pem: &str) -> Result<RootSet> {
        let ders = pem_certs(pem).map_err(|e| Error::cert("ark", e))?;
        let mut ark = None;
        let mut ask = None;
        let mut asvk = None;
        for d in &ders {
            let c = Cert::from_der("ark", d)?;
            if c.subject_cn() == c.issuer_cn() {
                ark = Some(d.as_slice());
            } else if c.subject_cn().contains("VLEK") {
                asvk = Some(d.as_slice());
            } else {
                ask = Some(d.as_slice());
            }
        }
        match (ark, ask) {
            (Some(ark), Some(ask)) => RootSet::insecure_simulated(ark, ask, asvk),
            _ => Err(Error::cert(
                "ark",
                "simulated root pem needs an ark and an ask",
            )),
        }
    }

    /// The ARK.
    pub fn ark(&self) -> &Cert {
        &self.ark
    }
    /// The ASK.
    pub fn ask(&self) -> &Cert {
        &self.ask
    }
    /// The ASVK, if known.
    pub fn asvk(&self) -> Option<&Cert> {
        self.asvk.as_ref().map(|a| &a.0)
    }
}

/// Caller policy for [`Verifier::verify`]. `Default` is the strict baseline: debug refused,
/// no simulated evidence, validity checked against the current time.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Product from configuration; required for v2 reports whose certificate does not say.
    pub product: Option<Product>,
    /// Accept POLICY.DEBUG = 1 (the host can read guest memory). Default false.
    pub allow_debug: bool,
    /// Required VMPL, if any.
    pub vmpl: Option<u32>,
    /// Component-wise minimum for REPORTED_TCB.
    pub min_tcb: Option<TcbVersion>,
    /// POLICY bits that must be set.
    pub policy_required: u64,
    /// POLICY bits that must be clear (DEBUG is always included unless `allow_debug`).
    pub policy_forbidden: u64,
    /// Required signing key kind.
    pub signing_key: Option<SigningKey>,
    /// Verification time for certificate validity (default: now).
    pub at: Option<SystemTime>,
    /// Accept evidence from the INSECURE simulated AMD-SP (needs a simulated root on the
    /// verifier too). Default false.
    pub insecure_allow_simulated: bool,
}

/// A chain VEK ← ASK/ASVK ← ARK that verified; cached by the verifier.
pub struct ChainInfo {
    product: Option<Product>,
    platform: Platform,
    root_name: String,
    vek: VekExtensions,
    vek_key: ParsedPublicKey,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl std::fmt::Debug for ChainInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainInfo")
            .field("product", &self.product)
            .field("platform", &self.platform)
            .field("root", &self.root_name)
            .field("vek", &self.vek)
            .finish_non_exhaustive()
    }
}

impl ChainInfo {
    /// The VEK extensions.
    pub fn vek(&self) -> &VekExtensions {
        &self.vek
    }
    /// The platform the root belongs to.
    pub fn platform(&self) -> Platform {
        self.platform
    }
}

/// Claims of a verified report.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    /// `snp` or `insecure-simulated-snp`.
    pub platform: Platform,
    /// Processor generation.
    pub product: Product,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// VEK productName extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vek_product_name: Option<String>,
    /// VLEK cspID (cloud provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csp_id: Option<String>,
    /// All report fields.
    #[serde(flatten)]
    pub report: ReportFields,
}

/// A report whose signature, chain and appraisal all passed. Only [`Verifier`] creates one.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: Report,
    claims: Claims,
}

impl VerifiedReport {
    /// The verified report.
    pub fn report(&self) -> &Report {
        &self.report
    }
    /// Its claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    /// Real or simulated.
    pub fn platform(&self) -> Platform {
        self.claims.platform
    }
    /// The claims as JSON.
    pub fn claims_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.claims).unwrap_or(serde_json::Value::Null)
    }
}

/// Verifies reports against the pinned AMD roots (and, if asked, an insecure simulated one),
/// caching verified certificate chains keyed by their exact bytes.
pub struct Verifier {
    amd: Vec<(Product, RootSet)>,
    simulated: Option<RootSet>,
    cache: Mutex<HashMap<Vec<u8>, Arc<ChainInfo>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("amd", &self.amd)
            .field("simulated", &self.simulated)
            .finish_non_exhaustive()
    }
}

const CACHE_MAX: usize = 1024;

fn resolve_product(
    a: Option<Product>,
    what_a: &str,
    b: Option<Product>,
    what_b: &str,
) -> Result<Option<Product>> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(Error::Product(format!(
            "{what_a} says {x} but {what_b} says {y}"
        ))),
        (Some(x), _) | (None, Some(x)) => Ok(Some(x)),
        (None, None) => Ok(None),
    }
}

impl Verifier {
    /// A verifier with the built-in AMD roots for Milan, Genoa and Turin.
    pub fn new() -> Result<Verifier> {
        let amd = Product::ALL
            .into_iter()
            .map(|p| Ok((p, RootSet::amd(p)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Verifier {
            amd,
            simulated: None,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Also know an INSECURE simulated root (still refused unless the options allow it).
    pub fn with_insecure_simulated_root(mut self, root: RootSet) -> Verifier {
        self.simulated = Some(root);
        self
    }

    /// The built-in root set of a product.
    pub fn amd_roots(&self, product: Product) -> Option<&RootSet> {
        self.amd.iter().find(|(p, _)| *p == product).map(|(_, r)| r)
    }

    /// Verify the chain VEK ← ASK/ASVK ← ARK (cached). `others` may hold the ASK/ASVK and the
    /// ARK in any order; a supplied ARK must equal the pinned one, a supplied intermediate must
    /// verify under it; if none is supplied the built-in intermediate is used.
    pub fn verify_chain(
        &self,
        vek_der: &[u8],
        others: &[Vec<u8>],
        product_hint: Option<Product>,
        allow_simulated: bool,
    ) -> Result<Arc<ChainInfo>> {
        let mut key = Vec::with_capacity(vek_der.len().saturating_add(16));
        key.push(product_hint.map_or(0u8, |p| 1u8.saturating_add(p as u8)));
        key.push(u8::from(allow_simulated));
        for d in std::iter::once(vek_der).chain(others.iter().map(Vec::as_slice)) {
            key.extend_from_slice(&(d.len() as u64).to_le_bytes());
            key.extend_from_slice(d);
        }
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(hit));
        }
        let info =
            Arc::new(self.verify_chain_uncached(vek_der, others, product_hint, allow_simulated)?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&info));
        Ok(info)
    }

    fn verify_chain_uncached(
        &self,
        vek_der: &[u8],
        others: &[Vec<u8>],
        product_hint: Option<Product>,
        allow_simulated: bool,
    ) -> Result<ChainInfo> {
        let probe = Cert::from_der("vek", vek_der)?;
        let vek_name: &'static str = if probe.subject_cn().contains("VLEK") {
            "vlek"
        } else {
            "vcek"
        };
        let vek = Cert::from_der(vek_name, vek_der)?;
        let ext = VekExtensions::from_cert(&vek)?;
        let sim = self.simulated.as_ref().filter(|s| {
            vek.issuer_cn() == s.ask.subject_cn()
                || s.asvk().is_some_and(|a| vek.issuer_cn() == a.subject_cn())
        });
        let (root, product) = match sim {
            Some(sim) => {
                if !allow_simulated {
                    return Err(Error::SimulatedNotAllowed);
                }
                (
                    sim,
                    resolve_product(
                        product_hint,
                        "the report or configuration",
                        ext.product(&vek),
                        "the vek",
                    )?,
                )
            }
            None => {
                if vek.issuer_cn().contains("INSECURE") {
                    return Err(Error::SimulatedNotAllowed);
                }
                let product = resolve_product(product_hint, "the report or configuration", ext.product(&vek), "the vek")?
                    .ok_or_else(|| Error::Product("cannot determine the product: v2 report, no productname in the vek; configure one".into()))?;
                let root = self
                    .amd_roots(product)
                    .ok_or_else(|| Error::Product(format!("no roots for {product}")))?;
                (root, Some(product))
            }
        };
        let (inter_name, builtin_inter, builtin_key) = match ext.kind {
            SigningKey::Vlek => {
                let (c, k) = root.asvk.as_ref().ok_or(Error::MissingCert("asvk"))?;
                ("asvk", c, k)
            }
            _ => ("ask", &root.ask, &root.ask_key),
        };
        // Every supplied certificate must be usable: the pinned ARK itself, or an
        // intermediate that verifies under it. Garbage in the chain is an error, not ignored.
        let mut inter: Option<(Cert, ParsedPublicKey)> = None;
        let mut ark_key: Option<ParsedPublicKey> = None;
        for d in others {
            let c = Cert::from_der(inter_name, d)?;
            if c.der() == root.ark.der() {
                continue;
            }
            if c.subject_cn() == c.issuer_cn() {
                return Err(Error::UntrustedRoot(root.name.clone()));
            }
            if c.der() == builtin_inter.der() {
                continue;
            }
            let key = match &ark_key {
                Some(k) => k,
                None => ark_key.insert(root.ark.rsa_pss_key()?),
            };
            c.verify_signed_by("ark", key)?;
            if c.subject_cn() == vek.issuer_cn() && inter.is_none() {
                let k = c.rsa_pss_key()?;
                inter = Some((c, k));
            }
        }
        let (inter_cert, inter_key) = match &inter {
            Some((c, k)) => (c, k),
            None => (builtin_inter, builtin_key),
        };
        vek.verify_signed_by(inter_name, inter_key)?;
        let mut not_before = vek.validity().0;
        let mut not_after = vek.validity().1;
        for c in [inter_cert, &root.ark] {
            not_before = not_before.max(c.validity().0);
            not_after = not_after.min(c.validity().1);
        }
        Ok(ChainInfo {
            product: product.or(root.product),
            platform: if root.simulated {
                Platform::InsecureSimulatedSnp
            } else {
                Platform::Snp
            },
            root_name: root.name.clone(),
            vek: ext,
            vek_key: vek.ecdsa_key()?,
            not_before,
            not_after,
        })
    }

    /// Verify `report` (1184 bytes) signed by the VCEK/VLEK `vek_der`, with optional
    /// intermediates/ARK `others` (DER), then appraise it against `opts`.
    pub fn verify(
        &self,
        report: &[u8],
        vek_der: &[u8],
        others: &[Vec<u8>],
        opts: &VerifyOptions,
    ) -> Result<VerifiedReport> {
        let report = Report::from_bytes(report)?;
        if report.signature_algo() != 1 {
            return Err(Error::SignatureAlgorithm(report.signature_algo()));
        }
        let signer = report.signing_key()?;
        if report.mask_chip_key() || signer == SigningKey::None {
            return Err(Error::Unsigned(report.key_info()));
        }
        let hint = resolve_product(
            opts.product,
            "the configuration",
            report.product_from_cpuid(),
            "the report cpuid",
        )?;
        let chain = self.verify_chain(vek_der, others, hint, opts.insecure_allow_simulated)?;
        if chain.vek.kind != signer {
            return Err(Error::WrongSigningKey {
                report: signer.name(),
                cert: chain.vek.kind.name(),
            });
        }
        let at = opts.at.unwrap_or_else(SystemTime::now);
        if at < chain.not_before || at > chain.not_after {
            return Err(Error::CertValidity { which: "vek chain" });
        }
        let product = chain
            .product
            .or(hint)
            .ok_or_else(|| Error::Product("cannot determine the product".into()))?;
        chain
            .vek_key
            .verify_sig(report.signed_bytes(), &report.signature_fixed_be())
            .map_err(|_| Error::ReportSignature(signer.name()))?;
        check_vek_against_report(&chain.vek, &report, product.tcb_layout())?;
        appraise(&report, product.tcb_layout(), opts)?;
        let claims = Claims {
            platform: chain.platform,
            product,
            signing_key: signer,
            vek_product_name: chain.vek.product_name.clone(),
            csp_id: chain.vek.csp_id.clone(),
            report: report.fields(Some(product)),
        };
        Ok(VerifiedReport { report, claims })
    }
}

fn check_vek_against_report(vek: &VekExtensions, report: &Report, layout: TcbLayout) -> Result<()> {
    let which = vek.kind.name();
    let raw = report.reported_tcb_raw();
    if !TcbVersion::reserved_bytes_zero(raw, layout) {
        return Err(Error::ReservedNotZero {
            field: "reported_tcb reserved bytes",
            offset: 0x180,
        });
    }
    let tcb = TcbVersion::from_raw(raw, layout);
    let mut checks = vec![
        ("blSPL", vek.bl_spl, tcb.bootloader),
        ("teeSPL", vek.tee_spl, tcb.tee),
        ("snpSPL", vek.snp_spl, tcb.snp),
        ("ucodeSPL", vek.ucode_spl, tcb.microcode),
    ];
    match (layout, vek.fmc_spl) {
        (TcbLayout::Turin, Some(fmc)) => checks.push(("fmcSPL", fmc, tcb.fmc.unwrap_or(0))),
        (TcbLayout::Turin, None) => {
            return Err(Error::Extension {
                which,
                oid: "1.3.6.1.4.1.3704.1.3.9 (fmcspl)",
            })
        }
        (TcbLayout::Legacy, Some(fmc)) if fmc != 0 => {
            return Err(Error::TcbMismatch {
                which,
                field: "fmcSPL",
                cert: fmc,
                report: 0,
            })
        }
        _ => {}
    }
    for (field, cert, rep) in checks {
        if cert != u64::from(rep) {
            return Err(Error::TcbMismatch {
                which,
                field,
                cert,
                report: rep,
            });
        }
    }
    if vek.kind == SigningKey::Vcek {
        let hw = vek.hw_id.as_deref().unwrap_or_default();
        let chip = report.chip_id();
        let ok = match layout {
            TcbLayout::Turin => hw.len() == 8 && chip.get(..8) == Some(hw),
            TcbLayout::Legacy => hw == chip.as_slice(),
        };
        if !ok {
            return Err(Error::ChipIdMismatch);
        }
    }
    Ok(())
}

fn appraise(report: &Report, layout: TcbLayout, opts: &VerifyOptions) -> Result<()> {
    let policy = report.policy();
    if policy.0 & GuestPolicy::RESERVED_MBZ != 0 {
        return Err(Error::Policy(format!(
            "guest policy {:#x} sets reserved bits 63:26",
            policy.0
        )));
    }
    if !policy.has(GuestPolicy::RESERVED_1) {
        return Err(Error::Policy(format!(
            "guest policy {:#x} has reserved bit 17 clear (must be 1)",
            policy.0
        )));
    }
    if policy.debug() && !opts.allow_debug {
        return Err(Error::Policy(format!(
            "guest policy {:#x} allows debug (bit 19): the host can read guest memory",
            policy.0
        )));
    }
    let forbidden = policy.0 & opts.policy_forbidden;
    if forbidden != 0 {
        return Err(Error::Policy(format!(
            "guest policy {:#x} sets forbidden bits {forbidden:#x}",
            policy.0
        )));
    }
    let missing = opts.policy_required & !policy.0;
    if missing != 0 {
        return Err(Error::Policy(format!(
            "guest policy {:#x} lacks required bits {missing:#x}",
            policy.0
        )));
    }
    if let Some(v) = opts.vmpl {
        if report.vmpl() != v {
            return Err(Error::Policy(format!(
                "vmpl is {} but {v} is required",
                report.vmpl()
            )));
        }
    }
    if let Some(kind) = opts.signing_key {
        let signer = report.signing_key()?;
        if signer != kind {
            return Err(Error::Policy(format!(
                "signed by the {} but the {} is required",
                signer.name(),
                kind.name()
            )));
        }
    }
    if let Some(min) = &opts.min_tcb {
        let reported = TcbVersion::from_raw(report.reported_tcb_raw(), layout);
        if !reported.meets(min) {
            return Err(Error::TcbTooLow {
                reported,
                minimum: *min,
            });
        }
    }
    Ok(())
}

// A verifier is shared between request handlers (e.g. a key broker).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Verifier>();
    send_sync::<VerifiedReport>();
};
