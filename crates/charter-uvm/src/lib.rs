//! The `qemu` launcher's utility VM image (DESIGN.md D6): the Debian cloud kernel, an
//! initramfs holding the static `charter-agent` as `/init` (PID 1), the OCI runtime with the
//! shared libraries it links, the kernel modules the guest needs, and a fixed kernel command
//! line.
//!
//! Everything in the image is trusted computing base and is measured: the image digest is
//! SHA-256 over `kernel || initrd || cmdline`, and on SEV-SNP the launch MEASUREMENT (with
//! QEMU's kernel-hashes table) is [`UvmImage::snp_measurement`].
//!
//! Determinism: the same inputs give the same bytes. The initramfs is an uncompressed `newc`
//! cpio written by [`cpio::Archive`] (sorted entries, mtime 0, uid/gid 0, inode numbers by
//! position), the module load order is computed from `modules.dep` and sorted, and nothing
//! reads the clock or the host's directory order. Uncompressed because the kernel then does
//! not have to inflate it under TCG (measured: see `crates/charter-uvm/tests/boot.rs`).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cpio;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use cpio::{Archive, Entry};

/// The kernel command line of the UVM. Part of the measured image.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// The kernel command line of a UVM whose agent uses the INSECURE simulated SNP over its own
/// virtio-serial port (no TEE). A different command line makes a different image digest, so
/// evidence of such a UVM can never pass for the secure image.
pub const CMDLINE_INSECURE_SIMULATED_TEE: &str =
    "console=ttyS0 panic=-1 quiet charter.tee=insecure-simulated";

/// Where the agent finds the module load order inside the initramfs.
pub const MODULE_ORDER: &str = "lib/charter/modules.order";
/// Where the modules are stored inside the initramfs (flat, `<name>.ko`).
pub const MODULE_DIR: &str = "lib/charter/modules";
/// Where the OCI runtime lives inside the initramfs (the agent's default `--runc`).
pub const RUNC_PATH: &str = "usr/sbin/runc";
/// Where `mke2fs` (a static busybox, which runs its `mke2fs` applet under that name) lives
/// inside the initramfs: the agent makes the encrypted scratch's file system with it.
pub const MKE2FS_PATH: &str = "usr/sbin/mke2fs";

/// The modules the guest needs (their dependencies are added from `modules.dep`): virtio PCI,
/// disks and serial ports, vsock, device-mapper with verity (layers), crypt and integrity
/// (scratch) with the ciphers they ask the crypto API for (`xts`; AES-NI and SSSE3 SHA-256 as
/// the fast implementations of the built-in `aes` and `sha256`: the guest has no `modprobe`
/// to load them on demand), EROFS, overlayfs, loop, and virtio-rng (entropy for the kernel's
/// pool; mixed, never trusted alone).
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "vsock",
    "vmw_vsock_virtio_transport",
    "dm-mod",
    "dm-verity",
    "dm-crypt",
    "dm-integrity",
    "xts",
    "aesni-intel",
    "sha256-ssse3",
    "erofs",
    "overlay",
    "loop",
    "virtio-rng",
];

/// Errors building or measuring a UVM image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An archive path is unusable.
    #[error("initramfs path {path:?}: {reason}")]
    ArchivePath { path: String, reason: String },
    /// The agent binary is not statically linked (PID 1 of an initramfs has no libc).
    #[error("{path} is not a static executable: {reason}")]
    NotStatic { path: PathBuf, reason: String },
    /// A kernel module or its dependency is missing or unusable.
    #[error("kernel module {module}: {reason}")]
    Module { module: String, reason: String },
    /// `ldd` failed on the OCI runtime.
    #[error("ldd {path}: {reason}")]
    Ldd { path: PathBuf, reason: String },
    /// The static agent could not be built.
    #[error("building the static charter-agent: {reason}")]
    AgentBuild { reason: String },
    /// The SNP launch measurement could not be computed.
    #[error(transparent)]
    Measure(#[from] charter_attest::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(io_err(path))
}

/// The inputs of a UVM image.
#[derive(Debug, Clone)]
pub struct UvmInputs {
    /// The kernel (`/boot/vmlinuz-<version>-cloud-amd64`).
    pub kernel: PathBuf,
    /// Its module tree (`/lib/modules/<version>-cloud-amd64`, with `modules.dep`).
    pub modules_dir: PathBuf,
    /// The static `charter-agent`; becomes `/init`.
    pub agent: PathBuf,
    /// The OCI runtime; stored at `/usr/sbin/runc` with the libraries `ldd` lists.
    pub runc: PathBuf,
    /// A static busybox, stored as `/usr/sbin/mke2fs` (only its `mke2fs` applet is run).
    pub mke2fs: PathBuf,
    /// A static busybox for debugging (`/bin/busybox`), if wanted.
    pub busybox: Option<PathBuf>,
    /// Use [`CMDLINE_INSECURE_SIMULATED_TEE`] instead of [`CMDLINE`].
    pub insecure_simulated_tee: bool,
}

impl UvmInputs {
    /// Inputs from the host's newest Debian cloud kernel, `runc` on `PATH` (or `/usr/sbin`) and
    /// `agent`.
    ///
    /// # Errors
    /// [`Error::Io`] when no cloud kernel or no runc is installed.
    pub fn from_host(agent: &Path) -> Result<UvmInputs, Error> {
        let (kernel, modules_dir) = find_cloud_kernel()?;
        let runc = first_file(
            &["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"],
            "runc",
            "runc is not installed (apt-get install runc)",
        )?;
        let mke2fs = first_file(
            &["/bin/busybox", "/usr/bin/busybox"],
            "busybox",
            "a static busybox is not installed (apt-get install busybox-static)",
        )?;
        Ok(UvmInputs {
            kernel,
            modules_dir,
            agent: agent.to_owned(),
            runc,
            mke2fs,
            busybox: None,
            insecure_simulated_tee: false,
        })
    }
}

/// The first of `candidates` that is a file, else [`Error::Io`] naming `what` with `hint`.
fn first_file(candidates: &[&str], what: &str, hint: &str) -> Result<PathBuf, Error> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Io {
            path: PathBuf::from(what),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, hint),
        })
}

/// The static `charter-agent` of the workspace at `workspace`, for tests and benchmarks that
/// boot a UVM: `$CHARTER_UVM_AGENT` if set, else built now with cargo (`--release --target
/// x86_64-unknown-linux-gnu`, `RUSTFLAGS=-C target-feature=+crt-static`) into
/// `$CHARTER_UVM_TARGET_DIR`, else `<workspace>/target/uvm-static` (a no-op when up to date).
///
/// # Errors
/// [`Error::AgentBuild`] if cargo cannot run or the build fails.
pub fn workspace_static_agent(workspace: &Path) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("CHARTER_UVM_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CHARTER_UVM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/uvm-static"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "charter-agent",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .status()
        .map_err(|e| Error::AgentBuild {
            reason: format!("running cargo: {e}"),
        })?;
    if !status.success() {
        return Err(Error::AgentBuild {
            reason: format!("cargo build exited with {status}"),
        });
    }
    Ok(target.join("x86_64-unknown-linux-gnu/release/charter-agent"))
}

/// The newest `/boot/vmlinuz-*-cloud-amd64` and its `/lib/modules` directory.
///
/// # Errors
/// [`Error::Io`] if none is installed (`apt-get install linux-image-cloud-amd64`).
pub fn find_cloud_kernel() -> Result<(PathBuf, PathBuf), Error> {
    let boot = Path::new("/boot");
    let mut found: Vec<String> = std::fs::read_dir(boot)
        .map_err(io_err(boot))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("vmlinuz-")
                .filter(|v| v.ends_with("-cloud-amd64"))
                .map(str::to_owned)
        })
        .filter(|v| {
            Path::new("/lib/modules")
                .join(v)
                .join("modules.dep")
                .is_file()
        })
        .collect();
    found.sort_by_key(|v| version_key(v));
    let v = found.pop().ok_or_else(|| Error::Io {
        path: boot.join("vmlinuz-*-cloud-amd64"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no Debian cloud kernel with modules (apt-get install linux-image-cloud-amd64)",
        ),
    })?;
    Ok((
        boot.join(format!("vmlinuz-{v}")),
        Path::new("/lib/modules").join(v),
    ))
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// A built UVM image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UvmImage {
    /// The kernel file (`<out>/vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs (`<out>/initrd.cpio`).
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// SHA-256 over `kernel || initrd || cmdline`.
    pub digest: [u8; 32],
}

impl UvmImage {
    /// Builds the image into `out_dir` (created if missing): `vmlinuz`, `initrd.cpio`,
    /// `cmdline` and `digest` (hex). Each file is written to a temporary name and renamed.
    ///
    /// # Errors
    /// [`Error::NotStatic`] if the agent is dynamically linked, [`Error::Module`] if a module
    /// is missing, [`Error::Io`], [`Error::Ldd`].
    pub fn build(inputs: &UvmInputs, out_dir: &Path) -> Result<UvmImage, Error> {
        let kernel = read(&inputs.kernel)?;
        let initrd = initramfs(inputs)?;
        let cmdline = if inputs.insecure_simulated_tee {
            CMDLINE_INSECURE_SIMULATED_TEE
        } else {
            CMDLINE
        };
        std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
        let digest = image_digest(&kernel, &initrd, cmdline);
        let image = UvmImage {
            kernel: out_dir.join("vmlinuz"),
            initrd: out_dir.join("initrd.cpio"),
            cmdline: cmdline.to_owned(),
            digest,
        };
        write_atomic(&image.kernel, &kernel)?;
        write_atomic(&image.initrd, &initrd)?;
        write_atomic(&out_dir.join("cmdline"), cmdline.as_bytes())?;
        write_atomic(&out_dir.join("digest"), hex::encode(digest).as_bytes())?;
        Ok(image)
    }

    /// Re-reads an image written by [`UvmImage::build`] and recomputes its digest.
    ///
    /// # Errors
    /// [`Error::Io`] when a file is missing.
    pub fn open(dir: &Path) -> Result<UvmImage, Error> {
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.cpio");
        let cmd_path = dir.join("cmdline");
        let cmdline = String::from_utf8_lossy(&read(&cmd_path)?).into_owned();
        let digest = image_digest(&read(&kernel)?, &read(&initrd)?, &cmdline);
        Ok(UvmImage {
            kernel,
            initrd,
            cmdline,
            digest,
        })
    }

    /// Recomputes the digest from the files (`charter uvm measure`).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn measure(&self) -> Result<[u8; 32], Error> {
        Ok(image_digest(
            &read(&self.kernel)?,
            &read(&self.initrd)?,
            &self.cmdline,
        ))
    }

    /// The SEV-SNP launch MEASUREMENT of this image booted by QEMU with `ovmf` (direct kernel
    /// boot with kernel hashes), `vcpus` vCPUs of type `vcpu_type` (e.g. `EPYC-Milan`), as
    /// `sev-snp-measure --mode snp` computes it.
    ///
    /// # Errors
    /// [`Error::Measure`] for an unknown vCPU type or an unusable OVMF; [`Error::Io`].
    pub fn snp_measurement(
        &self,
        ovmf: &[u8],
        vcpus: u32,
        vcpu_type: &str,
    ) -> Result<[u8; 48], Error> {
        use charter_attest::measure::{snp_launch_digest, vcpu_sig_for, LaunchInputs, VmmType};
        let kernel = read(&self.kernel)?;
        let initrd = read(&self.initrd)?;
        let vcpu_sig = vcpu_sig_for(vcpu_type).ok_or_else(|| {
            charter_attest::Error::Measurement(format!("unknown vCPU type {vcpu_type:?}"))
        })?;
        Ok(snp_launch_digest(&LaunchInputs {
            ovmf,
            ovmf_hash: None,
            kernel: Some(&kernel),
            initrd: Some(&initrd),
            append: Some(&self.cmdline),
            vcpus,
            vcpu_sig,
            // SNP with DebugSwap: QEMU's default VMSA features.
            guest_features: 0x21,
            vmm: VmmType::Qemu,
        })?)
    }
}

/// SHA-256 over `kernel || initrd || cmdline`.
pub fn image_digest(kernel: &[u8], initrd: &[u8], cmdline: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kernel);
    h.update(initrd);
    h.update(cmdline.as_bytes());
    h.finalize().into()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// The initramfs bytes for `inputs`.
///
/// # Errors
/// See [`UvmImage::build`].
pub fn initramfs(inputs: &UvmInputs) -> Result<Vec<u8>, Error> {
    let mut a = Archive::new();
    let agent = read(&inputs.agent)?;
    require_static(&inputs.agent, &agent)?;
    a.file("init", 0o755, agent)?;
    for d in ["dev", "proc", "sys", "run", "tmp", "mnt"] {
        a.add(d, Entry::Dir { mode: 0o755 })?;
    }
    // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
    a.add(
        "dev/console",
        Entry::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    a.add(
        "etc/hostname",
        Entry::File {
            mode: 0o644,
            data: b"charter\n".to_vec(),
        },
    )?;
    a.file(RUNC_PATH, 0o755, read(&inputs.runc)?)?;
    for lib in shared_libraries(&inputs.runc)? {
        let data = read(&lib)?;
        let name = lib.to_string_lossy().into_owned();
        a.file(&name, 0o755, data)?;
    }
    let mke2fs = read(&inputs.mke2fs)?;
    require_static(&inputs.mke2fs, &mke2fs)?;
    a.file(MKE2FS_PATH, 0o755, mke2fs)?;
    if let Some(bb) = &inputs.busybox {
        let data = read(bb)?;
        require_static(bb, &data)?;
        a.file("bin/busybox", 0o755, data)?;
        a.add(
            "bin/sh",
            Entry::Symlink {
                target: "busybox".into(),
            },
        )?;
    }
    let modules = resolve_modules(&inputs.modules_dir, MODULES)?;
    let mut order = String::new();
    for m in &modules {
        let data = read(&inputs.modules_dir.join(&m.rel_path))?;
        a.file(&format!("{MODULE_DIR}/{}.ko", m.name), 0o644, data)?;
        order.push_str(&m.name);
        order.push('\n');
    }
    a.file(MODULE_ORDER, 0o644, order.into_bytes())?;
    a.to_newc()
}

/// Refuses executables with a `PT_INTERP` program header (they need a dynamic loader).
fn require_static(path: &Path, elf: &[u8]) -> Result<(), Error> {
    let bad = |reason: &str| Error::NotStatic {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let get = |at: usize, n: usize| elf.get(at..at.saturating_add(n));
    let u16_at = |at: usize| {
        get(at, 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |at: usize| {
        get(at, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        get(at, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if get(0, 4) != Some(b"\x7fELF") || get(4, 2) != Some(&[2, 1]) {
        return Err(bad("not a little-endian 64-bit ELF file"));
    }
    let phoff = u64_at(0x20).ok_or_else(|| bad("truncated ELF header"))?;
    let phentsize = u16_at(0x36).ok_or_else(|| bad("truncated ELF header"))?;
    let phnum = u16_at(0x38).ok_or_else(|| bad("truncated ELF header"))?;
    let phoff = usize::try_from(phoff).map_err(|_| bad("bad program header offset"))?;
    for i in 0..usize::from(phnum) {
        let at = phoff.saturating_add(i.saturating_mul(usize::from(phentsize)));
        let p_type = u32_at(at).ok_or_else(|| bad("truncated program headers"))?;
        if p_type == 3 {
            return Err(bad(
                "it has a PT_INTERP (dynamic loader); build with RUSTFLAGS=\"-C target-feature=+crt-static\" --target x86_64-unknown-linux-gnu",
            ));
        }
    }
    Ok(())
}

/// The shared libraries (and loader) `ldd` lists for `bin`, sorted; empty for a static binary.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| Error::Ldd {
            path: bin.to_owned(),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(Error::Ldd {
            path: bin.to_owned(),
            reason: err.trim().to_owned(),
        });
    }
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.insert(PathBuf::from(p));
        } else if line.contains("not found") {
            return Err(Error::Ldd {
                path: bin.to_owned(),
                reason: line.to_owned(),
            });
        }
    }
    Ok(libs.into_iter().collect())
}

/// A module to load, dependencies first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// The module name with `-` normalised to `_` (as the kernel names it).
    pub name: String,
    /// Path relative to the module tree (`kernel/drivers/...ko`).
    pub rel_path: String,
}

fn module_name(rel_path: &str) -> Option<String> {
    let file = rel_path.rsplit('/').next()?;
    let stem = file.strip_suffix(".ko")?;
    Some(stem.replace('-', "_"))
}

/// `wanted` and everything they depend on per `<modules_dir>/modules.dep`, in a load order
/// where every module follows its dependencies (ties broken by name, so the order is
/// deterministic).
///
/// # Errors
/// [`Error::Module`] for unknown or compressed modules; [`Error::Io`].
pub fn resolve_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<ModuleFile>, Error> {
    let dep_path = modules_dir.join("modules.dep");
    let text = String::from_utf8_lossy(&read(&dep_path)?).into_owned();
    // name -> (path, deps)
    let mut table: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let Some((m, deps)) = line.split_once(':') else {
            continue;
        };
        // Compressed modules (.ko.xz, .ko.zst) are skipped: the agent loads plain .ko files.
        let Some(name) = module_name(m.trim()) else {
            continue;
        };
        let deps = deps
            .split_whitespace()
            .map(|d| {
                module_name(d).ok_or_else(|| Error::Module {
                    module: name.clone(),
                    reason: format!("dependency {d} is not an uncompressed .ko"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        table.insert(name, (m.trim().to_owned(), deps));
    }
    let mut order: Vec<ModuleFile> = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut wanted: Vec<String> = wanted.iter().map(|w| w.replace('-', "_")).collect();
    wanted.sort();
    for w in wanted {
        visit(&w, &table, &mut done, &mut BTreeSet::new(), &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    table: &BTreeMap<String, (String, Vec<String>)>,
    done: &mut BTreeSet<String>,
    stack: &mut BTreeSet<String>,
    order: &mut Vec<ModuleFile>,
) -> Result<(), Error> {
    if done.contains(name) {
        return Ok(());
    }
    let (path, deps) = table.get(name).ok_or_else(|| Error::Module {
        module: name.to_owned(),
        reason: "not in modules.dep (built in, compressed, or missing from this kernel)".into(),
    })?;
    if !stack.insert(name.to_owned()) {
        return Err(Error::Module {
            module: name.to_owned(),
            reason: "dependency cycle".into(),
        });
    }
    let mut deps = deps.clone();
    deps.sort();
    for d in &deps {
        visit(d, table, done, stack, order)?;
    }
    stack.remove(name);
    done.insert(name.to_owned());
    order.push(ModuleFile {
        name: name.to_owned(),
        rel_path: path.clone(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_modules(dir: &Path) {
        let dep = "kernel/a/virtio.ko:\n\
kernel/a/virtio_ring.ko:\n\
kernel/a/virtio_blk.ko: kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
kernel/md/dm-verity.ko: kernel/md/dm-bufio.ko kernel/md/dm-mod.ko\n\
kernel/md/dm-bufio.ko: kernel/md/dm-mod.ko\n\
kernel/md/dm-mod.ko:\n";
        std::fs::create_dir_all(dir.join("kernel/a")).unwrap();
        std::fs::create_dir_all(dir.join("kernel/md")).unwrap();
        std::fs::write(dir.join("modules.dep"), dep).unwrap();
        for l in dep.lines() {
            let m = l.split(':').next().unwrap();
            std::fs::write(dir.join(m), m.as_bytes()).unwrap();
        }
    }

    #[test]
    fn modules_follow_their_dependencies() {
        let d = tempfile::tempdir().unwrap();
        fake_modules(d.path());
        let names: Vec<String> = resolve_modules(d.path(), &["dm-verity", "virtio_blk"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "dm_mod",
                "dm_bufio",
                "dm_verity",
                "virtio",
                "virtio_ring",
                "virtio_blk"
            ]
        );
        let e = resolve_modules(d.path(), &["nope"]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn dynamic_executables_are_refused() {
        if let Ok(ls) = std::fs::read("/bin/ls") {
            let e = require_static(Path::new("/bin/ls"), &ls).unwrap_err();
            assert!(e.to_string().contains("PT_INTERP"), "{e}");
        }
        assert!(require_static(Path::new("x"), b"not an elf").is_err());
    }
}
