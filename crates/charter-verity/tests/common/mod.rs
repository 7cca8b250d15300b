//! Shared helpers: running `veritysetup` (the oracle) and making data files.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use charter_verity::{HashFormat, RootHash, VerityParams};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Where the hash tree goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A separate hash file; `offset` into it, with or without a superblock.
    Separate { offset: u64, superblock: bool },
    /// Appended to the data file at the data size rounded up to 512, with a superblock.
    Appended,
}

pub fn uuid_string(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn veritysetup() -> Command {
    let found = Command::new("veritysetup").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "veritysetup (Debian package cryptsetup-bin) is required by these tests: apt-get install cryptsetup-bin"
    );
    Command::new("veritysetup")
}

fn param_args(p: &VerityParams) -> Vec<String> {
    vec![
        format!("--hash={}", p.hash),
        format!("--data-block-size={}", p.data_block_size),
        format!("--hash-block-size={}", p.hash_block_size),
        format!("--salt={}", p.salt),
        format!(
            "--format={}",
            match p.format {
                HashFormat::V0 => 0,
                HashFormat::V1 => 1,
            }
        ),
    ]
}

/// `veritysetup format`; `Err(stderr)` when it refuses.
pub fn vs_format(
    data: &Path,
    hash: &Path,
    p: &VerityParams,
    hash_offset: u64,
    uuid: Option<[u8; 16]>,
) -> Result<RootHash, String> {
    let mut cmd = veritysetup();
    cmd.arg("format").args(param_args(p));
    cmd.arg(format!("--hash-offset={hash_offset}"));
    match uuid {
        Some(u) => cmd.arg(format!("--uuid={}", uuid_string(&u))),
        None => cmd.arg("--no-superblock"),
    };
    let out = cmd.arg(data).arg(hash).output().expect("run veritysetup");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in veritysetup output: {stdout}"));
    Ok(line["Root hash:".len()..].trim().parse().unwrap())
}

/// `veritysetup verify`: true when it accepts.
pub fn vs_verify(
    data: &Path,
    hash: &Path,
    p: &VerityParams,
    hash_offset: u64,
    superblock: bool,
    root: &RootHash,
) -> bool {
    let mut cmd = veritysetup();
    cmd.arg("verify");
    cmd.arg(format!("--hash-offset={hash_offset}"));
    if !superblock {
        cmd.arg("--no-superblock").args(param_args(p));
    }
    let out = cmd
        .arg(data)
        .arg(hash)
        .arg(root.to_string())
        .output()
        .expect("run veritysetup");
    out.status.success()
}

/// Writes `size` bytes of seeded pseudo-random data. With `sparse`, the file is mostly holes
/// with random 4 KiB islands (fast for 1 GiB files) and a random tail.
pub fn make_data(path: &Path, size: u64, seed: u64, sparse: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = File::create(path).unwrap();
    if sparse {
        f.set_len(size).unwrap();
        let mut island = vec![0u8; 4096];
        for _ in 0..512 {
            rng.fill_bytes(&mut island);
            let at = rng.next_u64() % size.saturating_sub(4096).max(1);
            let len = (size - at).min(4096) as usize;
            f.write_all_at(&island[..len], at).unwrap();
        }
        let tail = size.min(10_000);
        let mut buf = vec![0u8; tail as usize];
        rng.fill_bytes(&mut buf);
        f.write_all_at(&buf, size - tail).unwrap();
    } else {
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill_bytes(&mut buf[..n]);
            f.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
}

/// Opens a file read-write, creating it (not truncating: appended trees share the data file).
pub fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}
