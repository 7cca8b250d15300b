//! The host's side of the guest's reach to its key broker, and the sealed files it hands over.
//!
//! The relay is a unix socket in the UVM's host directory ([`paths::BROKER_RELAY`]) that
//! forwards each connection to the broker's TCP address. The agent speaks TLS through it to
//! the broker named in the attested policy, so the relay (like the whole host) sees only
//! ciphertext; it exists because the group has no network of its own.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use charter_agent_api::paths;

use crate::Error;

/// A running relay; it stops when the UVM's host directory goes away.
#[derive(Debug)]
pub struct BrokerRelay {
    path: PathBuf,
    _accept: JoinHandle<()>,
}

impl BrokerRelay {
    /// The socket the guest connects to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `host:port` of an `https://host[:port]` URL.
pub(crate) fn authority(url: &str) -> Result<String, Error> {
    let rest = url
        .strip_prefix("https://")
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| Error::Pod(format!("key broker url {url:?} is not https://host[:port]")))?;
    let has_port = match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, p)| p.starts_with(':')),
        None => rest.contains(':'),
    };
    Ok(if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:443")
    })
}

/// Starts relaying `<host_dir>/broker.sock` to the broker at `url`.
///
/// # Errors
/// [`Error::Pod`] for a URL that is not `https://host[:port]`; [`Error::Io`] if the socket
/// cannot be bound.
pub fn start_broker_relay(host_dir: &Path, url: &str) -> Result<BrokerRelay, Error> {
    let target = authority(url)?;
    let path = host_dir.join(paths::BROKER_RELAY);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let accept = std::thread::spawn(move || {
        for guest in listener.incoming() {
            let Ok(guest) = guest else { return };
            let target = target.clone();
            std::thread::spawn(move || {
                // A broker that cannot be reached is the guest's error to report.
                let _ = forward(guest, &target);
            });
        }
    });
    Ok(BrokerRelay {
        path,
        _accept: accept,
    })
}

fn forward(guest: UnixStream, target: &str) -> std::io::Result<()> {
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{target}: no address")))?;
    let broker = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    let (mut g_in, mut b_out) = (guest.try_clone()?, broker.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut g_in, &mut b_out);
        let _ = b_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut b_in, mut g_out) = (broker, guest);
    let _ = std::io::copy(&mut b_in, &mut g_out);
    let _ = g_out.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Puts the sealed file of each listed volume into the UVM's host directory (hard link, or a
/// copy across file systems) and returns `(volume, file name)` pairs for `mount_sealed`.
///
/// # Errors
/// [`Error::Pod`] for a sealed volume the policy does not list or one it lists without a
/// file; [`Error::Io`] if a file cannot be placed.
pub fn place_sealed(
    listed: &[charter_policy::model::SealedVolume],
    files: &[(String, PathBuf)],
    host_dir: &Path,
) -> Result<Vec<(String, String)>, Error> {
    for (name, _) in files {
        if !listed.iter().any(|v| &v.name == name) {
            return Err(Error::Pod(format!(
                "--sealed {name}: the pod has no sealed volume of that name"
            )));
        }
    }
    let mut out = Vec::new();
    for v in listed {
        let (_, file) = files.iter().find(|(n, _)| *n == v.name).ok_or_else(|| {
            Error::Pod(format!(
                "sealed volume {}: no sealed file given (--sealed {}=FILE)",
                v.name, v.name
            ))
        })?;
        let file_name = format!("sealed-{}", v.name);
        let dest = host_dir.join(&file_name);
        let io = |source| Error::Io {
            path: file.display().to_string(),
            source,
        };
        std::fs::hard_link(file, &dest)
            .or_else(|_| std::fs::copy(file, &dest).map(|_| ()))
            .map_err(io)?;
        out.push((v.name.clone(), file_name));
    }
    Ok(out)
}

/// Writes the sealed file `file` as a sealed-volume disk for the QEMU UVM at `dest`: one
/// header sector with the file's exact length, the file, zeros up to a whole sector
/// ([`charter_agent_api::relay::sealed_disk`]; a block device has no byte length of its own,
/// and the sealed format finds its last chunk at the end of the stream).
///
/// # Errors
/// [`Error::Io`] if `file` cannot be read or `dest` written.
pub fn sealed_disk(file: &Path, dest: &Path) -> Result<(), Error> {
    use charter_agent_api::relay::sealed_disk::{header, HEADER_LEN};
    use std::io::Write as _;
    let mut input = std::fs::File::open(file).map_err(crate::io_err(file))?;
    let len = input.metadata().map_err(crate::io_err(file))?.len();
    let out = std::fs::File::create(dest).map_err(crate::io_err(dest))?;
    let mut w = std::io::BufWriter::new(&out);
    w.write_all(&header(len)).map_err(crate::io_err(dest))?;
    let copied = std::io::copy(&mut input, &mut w).map_err(crate::io_err(file))?;
    if copied != len {
        return Err(Error::Pod(format!(
            "{} changed while it was copied",
            file.display()
        )));
    }
    w.flush().map_err(crate::io_err(dest))?;
    drop(w);
    let sector = HEADER_LEN as u64;
    let total = (sector + len).div_ceil(sector) * sector;
    out.set_len(total).map_err(crate::io_err(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_disks_carry_the_exact_length() {
        use charter_agent_api::relay::sealed_disk::{parse, HEADER_LEN};
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 511, 512, 513, 70_000] {
            let file = dir.path().join("f");
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&file, &body).unwrap();
            let disk = dir.path().join("d");
            sealed_disk(&file, &disk).unwrap();
            let bytes = std::fs::read(&disk).unwrap();
            assert_eq!(bytes.len() % HEADER_LEN, 0);
            let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
            assert_eq!(parse(&header), Some(len as u64));
            assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + len], body.as_slice());
        }
    }

    #[test]
    fn broker_authority() {
        assert_eq!(
            authority("https://127.0.0.1:8443").unwrap(),
            "127.0.0.1:8443"
        );
        assert_eq!(
            authority("https://kbs.example/").unwrap(),
            "kbs.example:443"
        );
        assert_eq!(authority("https://[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(authority("https://[::1]").unwrap(), "[::1]:443");
        assert!(authority("http://kbs.example").is_err());
        assert!(authority("https://kbs.example/path").is_err());
        assert!(authority("https://").is_err());
    }
}
