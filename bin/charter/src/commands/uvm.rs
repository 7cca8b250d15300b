//! `charter uvm build` / `charter uvm measure`: the QEMU utility VM image (Debian cloud kernel,
//! an initramfs with the static `charter-agent` as PID 1, runc and the kernel modules, a fixed
//! command line) and its measurements: the digest of what is loaded and, given OVMF, the SEV-SNP
//! launch MEASUREMENT a report of that VM must carry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use charter_uvm::{UvmImage, UvmInputs};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum UvmCmd {
    /// Build the image into a directory (`vmlinuz`, `initrd.cpio`, `cmdline`, `digest`);
    /// the same inputs always give the same bytes.
    Build {
        /// Output directory (created if missing; files replaced atomically).
        #[arg(short, long)]
        out: PathBuf,
        /// The static `charter-agent` to run as PID 1 (build it with
        /// `RUSTFLAGS='-C target-feature=+crt-static'`).
        #[arg(long)]
        agent: PathBuf,
        /// The kernel (default: the newest installed `/boot/vmlinuz-*-cloud-amd64`).
        #[arg(long, requires = "modules")]
        kernel: Option<PathBuf>,
        /// The kernel's module directory (with `modules.dep`).
        #[arg(long, requires = "kernel")]
        modules: Option<PathBuf>,
        /// Add a static busybox (`/bin/busybox`) for debugging the guest.
        #[arg(long)]
        busybox: Option<PathBuf>,
        /// INSECURE: the command line that makes the agent use the simulated TEE channel.
        #[arg(long)]
        insecure_simulated_tee: bool,
    },
    /// Recompute an image's digest from its files and, with --ovmf, its SEV-SNP launch
    /// MEASUREMENT (QEMU direct kernel boot with kernel hashes, QEMU's default VMSA features
    /// 0x21; `sev-snp-measure --mode snp --guest-features 0x21` computes the same).
    Measure {
        /// A directory written by `charter uvm build`.
        dir: PathBuf,
        /// The OVMF firmware the VMM loads (SNP build, with the SEV hashes table).
        #[arg(long)]
        ovmf: Option<PathBuf>,
        /// vCPUs of the guest.
        #[arg(long, default_value_t = 1, requires = "ovmf")]
        vcpus: u32,
        /// vCPU type (`EPYC-Milan`, `EPYC-Genoa`, ...).
        #[arg(long, default_value = "EPYC-Milan", requires = "ovmf")]
        vcpu_type: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: UvmCmd) -> Result<ExitCode> {
    match cmd {
        UvmCmd::Build {
            out,
            agent,
            kernel,
            modules,
            busybox,
            insecure_simulated_tee,
        } => {
            let mut inputs = UvmInputs::from_host(&agent).context("finding the UVM's inputs")?;
            if let (Some(k), Some(m)) = (kernel, modules) {
                inputs.kernel = k;
                inputs.modules_dir = m;
            }
            inputs.busybox = busybox;
            inputs.insecure_simulated_tee = insecure_simulated_tee;
            let image = UvmImage::build(&inputs, &out)
                .with_context(|| format!("building the UVM image into {}", out.display()))?;
            eprintln!(
                "charter: UVM image in {} (kernel {}, agent {}{})",
                out.display(),
                inputs.kernel.display(),
                agent.display(),
                if insecure_simulated_tee {
                    ", INSECURE simulated TEE"
                } else {
                    ""
                }
            );
            println!("{}", hex::encode(image.digest));
            Ok(ExitCode::SUCCESS)
        }
        UvmCmd::Measure {
            dir,
            ovmf,
            vcpus,
            vcpu_type,
            json,
        } => {
            let image = UvmImage::open(&dir)
                .with_context(|| format!("reading the UVM image in {}", dir.display()))?;
            let recorded = std::fs::read_to_string(dir.join("digest")).unwrap_or_default();
            if !recorded.trim().is_empty() && recorded.trim() != hex::encode(image.digest) {
                bail!(
                    "{}: the files' digest {} is not the recorded {} (changed since the build)",
                    dir.display(),
                    hex::encode(image.digest),
                    recorded.trim()
                );
            }
            let measurement = match &ovmf {
                Some(path) => {
                    if vcpus == 0 {
                        bail!("--vcpus must be at least 1");
                    }
                    let fw = std::fs::read(path)
                        .with_context(|| format!("reading OVMF {}", path.display()))?;
                    Some(hex::encode(image.snp_measurement(&fw, vcpus, &vcpu_type)?))
                }
                None => None,
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "digest": hex::encode(image.digest),
                        "cmdline": image.cmdline,
                        "snp_measurement": measurement,
                    })
                );
            } else {
                println!("digest {}", hex::encode(image.digest));
                println!("cmdline {}", image.cmdline);
                if let Some(m) = measurement {
                    println!("snp_measurement {m}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
