//! `mount_sealed`: a data owner's sealed volume, opened inside the group. The key comes from
//! the policy's broker (released only to this attested policy); the ciphertext comes from the
//! untrusted host and is authenticated chunk by chunk, so the plaintext on the guest-private
//! tmpfs is either exactly what the owner sealed or nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use charter_agent_api::AgentError;
use charter_policy::Allowed;

use super::{failed, refused, Guest};

/// Size limit of one sealed volume's tmpfs.
const SEALED_BYTES: u64 = 1 << 30;

impl Guest {
    /// Decrypts `source` with the key of `resource` onto a read-only tmpfs at `target`. A
    /// sealed directory (a tar stream) is unpacked; a sealed file appears as `<target>/<name>`.
    pub(super) fn mount_sealed(
        &mut self,
        _allowed: &Allowed<'_>,
        name: &str,
        source: &Path,
        target: &str,
        resource: Option<&str>,
    ) -> Result<(), AgentError> {
        let resource = resource
            .ok_or_else(|| refused(format!("sealed volume {name}: no resource in the policy")))?;
        let broker = self
            .broker
            .clone()
            .ok_or_else(|| refused("the policy names no key broker"))?;
        if self.sealed.contains_key(name) {
            return Err(refused(format!("sealed volume {name} is already mounted")));
        }
        let sealed = open_source(source)
            .map_err(|e| refused(format!("sealed volume {name}: {}: {e}", source.display())))?;
        let key = broker.fetch(resource).map_err(|e| {
            failed(format!(
                "sealed volume {name}: key {resource} from {}: {e}",
                broker.url()
            ))
        })?;
        let key: charter_seal::DataKey = key.as_slice().try_into().map_err(|_| {
            failed(format!(
                "sealed volume {name}: key {resource} is {} bytes, not a 32-byte data key",
                key.len()
            ))
        })?;
        let dir = Path::new(target);
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{target}: {e}")))?;
        charter_mount::mount_tmpfs(dir, SEALED_BYTES, 0o755).map_err(failed)?;
        if let Err(e) = open_into(&key, sealed, dir, name) {
            let _ = charter_mount::unmount(dir);
            return Err(e);
        }
        self.sealed.insert(name.to_owned(), PathBuf::from(target));
        Ok(())
    }
}

/// The sealed bytes of `source`: a file as it is, or a QEMU UVM's sealed-volume disk (a block
/// device) as many bytes after its header sector as that header says. The header is the
/// untrusted host's like the rest: a wrong length cuts or extends the sealed stream, and the
/// sealed format's authenticated last-chunk flag makes that fail to open.
fn open_source(source: &Path) -> std::io::Result<Box<dyn Read>> {
    use charter_agent_api::relay::sealed_disk::{parse, HEADER_LEN};
    use std::os::unix::fs::FileTypeExt;
    let mut file = File::open(source)?;
    if !file.metadata()?.file_type().is_block_device() {
        return Ok(Box::new(file));
    }
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)?;
    let len = parse(&header).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a disk without a sealed-volume header",
        )
    })?;
    Ok(Box::new(file.take(len)))
}

fn open_into(
    key: &charter_seal::DataKey,
    sealed: impl Read,
    dir: &Path,
    name: &str,
) -> Result<(), AgentError> {
    let fail = |what: String| failed(format!("sealed volume {name}: {what}"));
    let plain = dir.join(format!(".sealed-{name}"));
    {
        let out = File::create(&plain).map_err(|e| fail(format!("{}: {e}", plain.display())))?;
        let mut w = BufWriter::new(out);
        charter_seal::open(key, BufReader::new(sealed), &mut w)
            .map_err(|e| fail(format!("does not open with its key: {e}")))?;
        w.flush()
            .map_err(|e| fail(format!("{}: {e}", plain.display())))?;
    }
    if is_tar(&plain) {
        let f = File::open(&plain).map_err(|e| fail(format!("{}: {e}", plain.display())))?;
        let mut archive = tar::Archive::new(BufReader::new(f));
        archive.set_overwrite(false);
        archive.set_preserve_permissions(true);
        archive
            .unpack(dir)
            .map_err(|e| fail(format!("unpacking its tar: {e}")))?;
        std::fs::remove_file(&plain).map_err(|e| fail(format!("{}: {e}", plain.display())))?;
    } else {
        std::fs::rename(&plain, dir.join(name)).map_err(|e| fail(e.to_string()))?;
    }
    rustix::mount::mount_remount(
        dir,
        rustix::mount::MountFlags::RDONLY
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOSUID,
        "",
    )
    .map_err(|e| fail(format!("remounting read-only: {e}")))
}

/// A POSIX (ustar) tar stream: "ustar" at offset 257 of the first block.
fn is_tar(path: &Path) -> bool {
    let mut block = [0u8; 512];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut block))
        .is_ok()
        && block.get(257..262) == Some(b"ustar".as_slice())
}
