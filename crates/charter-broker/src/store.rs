//! The broker's storage: one SQLite file (WAL, `synchronous=FULL`), resources sealed with
//! AES-256-GCM under a 256-bit master key, release policies in clear (they are not secret).
//!
//! Every write is one autocommit statement: when [`Store::put_resource`] returns, the row is
//! in the fsynced WAL. The sealed form is `nonce(12) || ciphertext || tag(16)` with the
//! resource path in the AAD, so rows cannot be swapped between paths.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result};

/// Name of the environment variable that may hold the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "CHARTER_BROKER_MASTER_KEY";
/// Policy key of the default policy (applies to resources without their own).
pub const DEFAULT_POLICY: &str = "";

const AAD_PREFIX: &[u8] = b"charter-broker resource v1\0";

/// The sealing key.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| Error::Config("master key is not hex".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Config("master key is not 32 bytes".into()))?;
        Ok(MasterKey(key))
    }

    /// From the environment variable `var`.
    pub fn from_env(var: &str) -> Result<MasterKey> {
        let v = std::env::var(var).map_err(|_| Error::Config(format!("{var} is not set")))?;
        MasterKey::from_hex(&v)
    }

    /// Read the key file, or create it (mode 0600, 64 hex digits) with a fresh random key.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => return MasterKey::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| Error::Crypto("random master key"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::io(path, e))?;
                if let Some(dir) = path.parent() {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(MasterKey(key))
            }
            // Lost a creation race: use the winner's key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                MasterKey::from_hex(&text)
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// The database.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path, master: &MasterKey) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Config(format!("journal_mode is {mode}, not wal")));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             CREATE TABLE IF NOT EXISTS resources (
                 path TEXT PRIMARY KEY NOT NULL,
                 sealed BLOB NOT NULL,
                 updated INTEGER NOT NULL
             ) STRICT;
             CREATE TABLE IF NOT EXISTS policies (
                 path TEXT PRIMARY KEY NOT NULL,
                 rego TEXT NOT NULL,
                 updated INTEGER NOT NULL
             ) STRICT;",
        )?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &master.0).map_err(|_| Error::Crypto("master key"))?,
        );
        Ok(Store {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn aad(path: &str) -> Vec<u8> {
        let mut a = AAD_PREFIX.to_vec();
        a.extend_from_slice(path.as_bytes());
        a
    }

    /// Seal and store a resource; returns after the commit is durable.
    pub fn put_resource(&self, path: &str, value: &[u8]) -> Result<()> {
        let mut nonce = [0u8; 12];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Crypto("random nonce"))?;
        let mut buf = value.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(path)),
                &mut buf,
            )
            .map_err(|_| Error::Crypto("seal"))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buf);
        sealed.extend_from_slice(tag.as_ref());
        self.conn().execute(
            "INSERT INTO resources (path, sealed, updated) VALUES (?1, ?2, unixepoch())
             ON CONFLICT(path) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated",
            params![path, sealed],
        )?;
        Ok(())
    }

    /// A resource, unsealed; `None` if absent.
    pub fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let sealed: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT sealed FROM resources WHERE path = ?1",
                params![path],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if sealed.len() < 28 {
            return Err(Error::Sealed(path.to_owned()));
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| Error::Sealed(path.to_owned()))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(path)),
                &mut buf,
            )
            .map_err(|_| Error::Sealed(path.to_owned()))?;
        Ok(Some(plain.to_vec()))
    }

    /// Delete a resource; whether it existed.
    pub fn delete_resource(&self, path: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM resources WHERE path = ?1", params![path])?
            > 0)
    }

    /// Resource paths, sorted.
    pub fn list_resources(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT path FROM resources ORDER BY path")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Store the release policy of `path` ([`DEFAULT_POLICY`] for the default).
    pub fn put_policy(&self, path: &str, rego: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO policies (path, rego, updated) VALUES (?1, ?2, unixepoch())
             ON CONFLICT(path) DO UPDATE SET rego = excluded.rego, updated = excluded.updated",
            params![path, rego],
        )?;
        Ok(())
    }

    /// The release policy stored for exactly `path`.
    pub fn get_policy(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT rego FROM policies WHERE path = ?1",
                params![path],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Check the database file's integrity (`PRAGMA integrity_check`).
    pub fn integrity_check(&self) -> Result<bool> {
        let r: String = self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(r == "ok")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let kp = dir.path().join("master.key");
        let k = MasterKey::load_or_create(&kp).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&kp).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let s = Store::open(&dir.path().join("b.db"), &k).unwrap();
        s.put_resource("a/b/c", b"secret").unwrap();
        assert_eq!(s.get_resource("a/b/c").unwrap().unwrap(), b"secret");
        assert!(s.get_resource("a/b/d").unwrap().is_none());
        // The plaintext is not in the file.
        drop(s);
        let raw = std::fs::read(dir.path().join("b.db-wal")).unwrap_or_default();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        // Another master key cannot open it.
        let other = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        let s = Store::open(&dir.path().join("b.db"), &other).unwrap();
        assert!(matches!(s.get_resource("a/b/c"), Err(Error::Sealed(_))));
        // Same key from the file again.
        let k2 = MasterKey::load_or_create(&kp).unwrap();
        assert_eq!(k.0, k2.0);
    }
}
