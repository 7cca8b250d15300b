//! `charter demo`: the README's main job, end to end on one machine with nothing but the
//! embedded defaults. It builds a demo image (busybox-static and a small workload), generates
//! its policy, runs the pod in the sandbox UVM (or, with `--uvm qemu`, the QEMU UVM), verifies
//! the UVM's attestation (HOST_DATA is the policy digest), and shows tampering denied with its
//! explanation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use charter_agent_api::{paths, CallError, Reply, Request};
use charter_attest::{Evidence, RootSet, Verifier, VerifyOptions};
use charter_host::{PodPlan, Uvm};
use charter_image::Platform;
use charter_policygen::{LocalImages, Measuring, Options};
use clap::Args;
use sha2::{Digest, Sha256};

use super::demo_image;
use super::progress::LayerBars;
use super::run::{run_pod, PodRun};

const IMAGE: &str = "charter.local/demo:1";
/// The name of the demo's tampered layer (a file in the sandbox, a disk serial in the VM).
pub(crate) const TAMPERED: &str = "tampered.img";

/// A layer image with one byte flipped in its first block (the EROFS superblock's block).
pub(crate) fn tampered_copy(layer: &[u8]) -> Vec<u8> {
    let mut bytes = layer.to_vec();
    if let Some(b) = bytes.get_mut(7) {
        *b ^= 0x01;
    }
    bytes
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files (image layout, pod YAML, policy) here instead of a temporary
    /// directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which utility VM: `sandbox` (namespaces on this host) or `qemu` (a real VM booted from
    /// --uvm-image; dm-verity layer disks, encrypted scratch). Both use the INSECURE simulated
    /// TEE here.
    #[arg(long, default_value = "sandbox", value_parser = ["sandbox", "qemu"])]
    uvm: String,
    /// The QEMU UVM image (`charter uvm build --insecure-simulated-tee` output) for --uvm qemu.
    #[arg(long, value_name = "DIR", required_if_eq("uvm", "qemu"))]
    uvm_image: Option<PathBuf>,
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: charter-demo
spec:
  containers:
  - name: app
    image: charter.local/demo:1
    env:
    - name: GREETING
      value: "hello from inside the attested pod"
    volumeMounts:
    - name: results
      mountPath: /data
  volumes:
  - name: results
    emptyDir: {}
"#;

fn step(n: u32, text: &str) {
    eprintln!("\n== {n}. {text}");
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    step(
        1,
        "building the demo image (busybox-static + workload) as an OCI layout",
    );
    let layout = dir.join("image");
    demo_image::write_layout(&layout, "1")?;
    let pod_path = dir.join("pod.yaml");
    std::fs::write(&pod_path, POD)?;
    eprintln!("   {}  and  {}", layout.display(), pod_path.display());

    step(
        2,
        "generating the execution policy from the pod and its image",
    );
    let mut images = LocalImages::new(Platform::default());
    images.add_mapping(&format!("{IMAGE}=oci:{}:1", layout.display()))?;
    let scratch = std::env::temp_dir();
    let bars = LayerBars::new(true);
    let measuring = Measuring {
        cache: None,
        scratch_dir: &scratch,
        threads: std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN),
        observer: &bars,
    };
    let generated = charter_policygen::generate(POD, &images, &Options::default(), &measuring)?;
    let policy_path = dir.join("policy.rego");
    std::fs::write(&policy_path, &generated.rego)?;
    eprintln!(
        "   {} ({} bytes), sha256 {}",
        policy_path.display(),
        generated.rego.len(),
        generated.digest
    );

    let (uvm, uvm_name) = match &args.uvm_image {
        Some(dir) if args.uvm == "qemu" => (
            super::run::UvmChoice::Qemu(dir.clone()),
            "the QEMU UVM (TCG)",
        ),
        _ => (super::run::UvmChoice::Sandbox, "the sandbox UVM"),
    };
    let in_vm = matches!(uvm, super::run::UvmChoice::Qemu(_));
    step(
        3,
        &format!(
            "running the pod in {uvm_name}; the agent accepts the policy only if its digest is HOST_DATA"
        ),
    );
    let checks_ok = AtomicBool::new(false);
    let after = |uvm: &dyn Uvm, plan: &PodPlan| -> Result<()> {
        step(
            4,
            "attestation: the UVM's report, verified to the (simulated) root",
        );
        attest(uvm, &generated.digest)?;
        step(
            5,
            "a tampering host: the agent refuses what the policy does not allow",
        );
        tamper(uvm, plan, in_vm)?;
        checks_ok.store(true, Ordering::SeqCst);
        step(
            6,
            "the pod's own output (streamed from the guest, as the policy allows)",
        );
        Ok(())
    };
    let cache_dir = dir.join("cache");
    let code = run_pod(&PodRun {
        policy: &generated.rego,
        generated: &generated,
        images: &images,
        cache_dir: &cache_dir,
        name: "charter-demo",
        record: None,
        sealed: &[],
        uvm,
        tampered_disk: in_vm,
        after_start: &after,
    })?;
    if !checks_ok.load(Ordering::SeqCst) {
        bail!("the demo's checks did not run");
    }
    if code != ExitCode::SUCCESS {
        bail!("the demo pod failed");
    }
    eprintln!("\ndemo: OK (attested policy enforced, tampering refused, workload ran)");
    Ok(ExitCode::SUCCESS)
}

fn attest(uvm: &dyn Uvm, digest_hex: &str) -> Result<()> {
    let nonce: [u8; 32] = Sha256::digest(format!("{:?}", std::time::SystemTime::now())).into();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&nonce);
    let reply = uvm.connect()?.call(Request::Attest {
        report_data: hex::encode(report_data),
    })?;
    let Reply::Evidence { evidence } = reply else {
        bail!("unexpected reply {reply:?}");
    };
    let evidence = Evidence::from_json(evidence.to_string().as_bytes())?;
    let root_pem = uvm
        .insecure_simulated_root_pem()
        .context("no simulated root for this UVM")?;
    let verifier =
        Verifier::new()?.with_insecure_simulated_root(RootSet::insecure_simulated_pem(&root_pem)?);
    let vek = evidence.vek.as_deref().context("evidence has no VCEK")?;
    let verified = verifier.verify(
        &evidence.report,
        vek,
        &evidence.chain,
        &VerifyOptions {
            insecure_allow_simulated: true,
            ..VerifyOptions::default()
        },
    )?;
    let report = verified.report();
    let host_data = hex::encode(report.host_data());
    let measurement = hex::encode(report.measurement());
    let expect_measurement = hex::encode(uvm.measurement());
    let mark = |ok: bool| if ok { "ok" } else { "MISMATCH" };
    eprintln!(
        "   signature and VCEK -> ASK -> ARK chain: verified (platform {:?})",
        verified.platform()
    );
    eprintln!(
        "   HOST_DATA   {host_data}  = policy sha256: {}",
        mark(host_data == digest_hex)
    );
    eprintln!(
        "   MEASUREMENT {}...  = the UVM's expected measurement: {}",
        &measurement[..32],
        mark(measurement == expect_measurement)
    );
    eprintln!(
        "   REPORT_DATA binds our fresh nonce: {}",
        mark(report.report_data() == &report_data)
    );
    if host_data != digest_hex
        || measurement != expect_measurement
        || report.report_data() != &report_data
    {
        bail!("attestation claims do not match");
    }
    Ok(())
}

fn tamper(uvm: &dyn Uvm, plan: &PodPlan, in_vm: bool) -> Result<()> {
    let mut c = uvm.connect()?;
    let app = plan.containers.first().context("empty plan")?;
    // (a) A second container over the same verified layers, with an injected environment
    // variable and a different command.
    let evil = "app-evil";
    c.call(Request::ScratchMount {
        target: paths::scratch(evil),
    })?;
    c.call(Request::MountOverlay {
        container_id: evil.into(),
        layer_paths: app
            .layers
            .iter()
            .rev()
            .map(|l| paths::layer(&l.root_hash))
            .collect(),
        target: paths::rootfs(evil),
    })?;
    let mut create = app.create.clone();
    create.container_id = evil.into();
    create.env.push("LD_PRELOAD=/data/evil.so".into());
    create.args = vec!["/bin/sh".into(), "-c".into(), "cat /etc/passwd".into()];
    match c.call(Request::CreateContainer(create)) {
        Err(CallError::Denied { denial, .. }) => {
            eprintln!("   create_container with argv and env changed: DENIED");
            eprintln!("     {}", denial.explanation);
        }
        other => bail!("tampered create was not denied: {other:?}"),
    }
    // (b) A layer file modified by one byte after the policy was generated (in the QEMU UVM
    // the host attached that copy as the disk `tampered.img` at launch: `PodRun::tampered_disk`).
    let layer = app.layers.first().context("no layers")?;
    if !in_vm {
        let src = uvm.layer_dir().join(&layer.file_name);
        std::fs::write(
            uvm.layer_dir().join(TAMPERED),
            tampered_copy(&std::fs::read(&src)?),
        )?;
    }
    match c.call(Request::MountDevice {
        source: TAMPERED.into(),
        target: paths::layer("tampered"),
        device_hash: layer.root_hash.clone(),
    }) {
        Err(CallError::Agent { error, .. }) => {
            eprintln!(
                "   mount_device of a layer with one flipped byte: REFUSED ({:?})",
                error.kind
            );
            eprintln!("     {}", error.message);
        }
        other => bail!("tampered layer was not refused: {other:?}"),
    }
    Ok(())
}
