//! `charter run --uvm qemu`: the pod in a QEMU utility VM. Layer disks are fixed when QEMU
//! starts, so the pod is planned first (layer images built into a staging directory), each
//! distinct layer becomes a read-only virtio disk whose serial is its `mount_device` source,
//! and then the VM boots with the policy's digest as HOST_DATA.
//!
//! Sealed volumes are disks too (`sealed0`, ...: [`charter_host::sealed_disk`], the sealed file
//! after a header sector with its length), and a policy with a key broker gets broker ports
//! whose host ends relay the guest's TLS connections to the broker.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use charter_host::{LaunchConfig, LayerDisk, QemuLauncher, Uvm};

use super::run::{drive, PodRun};

/// Key broker ports of a pod whose policy names a broker (concurrent guest connections: the
/// agent's own requests, one at a time per sealed volume, and the workload endpoint's).
const BROKER_PORTS: usize = 2;

pub(crate) fn run_pod_qemu(
    run: &PodRun<'_>,
    image_dir: &Path,
    digest: [u8; 32],
) -> Result<ExitCode> {
    let image = charter_uvm::UvmImage::open(image_dir)
        .with_context(|| format!("reading the UVM image in {}", image_dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix("charter-qemu-layers-")
        .tempdir()
        .context("creating a staging directory for layer images")?;
    let mut plan =
        charter_host::plan_pod(run.generated, run.images, run.cache_dir, staging.path())?;
    let mut launcher = QemuLauncher::new(&image.kernel, &image.initrd, &image.cmdline);
    let mut serials: BTreeMap<String, String> = BTreeMap::new();
    for c in &mut plan.containers {
        for l in &mut c.layers {
            let next = format!("layer{}", serials.len());
            let serial = serials.entry(l.file_name.clone()).or_insert_with(|| {
                launcher.layers.push(LayerDisk {
                    serial: next.clone(),
                    path: staging.path().join(&l.file_name),
                });
                next
            });
            l.file_name = serial.clone();
        }
    }
    // Sealed volumes: checked against the policy as for the sandbox, then each a disk.
    let placed = charter_host::place_sealed(
        &run.generated.document.sealed_volumes,
        run.sealed,
        staging.path(),
    )?;
    for (i, (volume, file_name)) in placed.into_iter().enumerate() {
        let serial = format!("sealed{i}");
        let disk = staging.path().join(format!("{serial}.disk"));
        charter_host::sealed_disk(&staging.path().join(&file_name), &disk)?;
        std::fs::remove_file(staging.path().join(&file_name))?;
        launcher.layers.push(LayerDisk {
            serial: serial.clone(),
            path: disk,
        });
        plan.sealed.push((volume, serial));
    }
    let broker = run.generated.document.key_broker.as_ref();
    if broker.is_some() {
        launcher.broker_ports = BROKER_PORTS;
    }
    if run.tampered_disk {
        let first = plan
            .containers
            .first()
            .and_then(|c| c.layers.first())
            .context("the pod has no layer to tamper with")?;
        let disk = launcher
            .layers
            .iter()
            .find(|d| d.serial == first.file_name)
            .context("the first layer has no disk")?;
        let copy = staging.path().join(super::demo::TAMPERED);
        std::fs::write(
            &copy,
            super::demo::tampered_copy(&std::fs::read(&disk.path)?),
        )?;
        launcher.layers.push(LayerDisk {
            serial: super::demo::TAMPERED.into(),
            path: copy,
        });
    }
    eprintln!(
        "charter: booting the QEMU UVM ({} read-only disk(s), {}; INSECURE: simulated TEE)",
        launcher.layers.len(),
        match launcher.accel {
            charter_host::Accel::Kvm => "KVM",
            charter_host::Accel::Tcg => "TCG",
        }
    );
    let mut uvm = launcher.launch_qemu(&LaunchConfig {
        policy_digest: digest,
        agent: image.initrd.clone(),
    })?;
    eprintln!("charter: UVM up in {:.1} s", uvm.boot_time().as_secs_f64());
    if let Some(kb) = broker {
        uvm.serve_broker(&kb.url)?;
    }
    // `charter exec` and `charter stop` reach the agent through this socket (the group record
    // names `<layer dir>/agent.sock`, as for the sandbox).
    uvm.serve_agent_socket()?;
    let result = drive(&mut uvm, run, Some(plan));
    if let Some(r) = run.record {
        let _ = std::fs::remove_file(r);
    }
    uvm.stop()?;
    result
}
