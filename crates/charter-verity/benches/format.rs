//! Tree build throughput: `veritysetup format --no-superblock` vs charter-verity on the same
//! file of pseudo-random data (default 1 GiB; `CHARTER_BENCH_SIZE_MIB` overrides), best of 3
//! each, page cache warm for all. Prints a table with the speed ratio charter/veritysetup
//! (goals: >= 1.0x with 1 thread, >= 1.7x with 2 threads).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use charter_verity::{format, FormatOptions, RootHash, VerityParams};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const RUNS: usize = 3;

fn main() {
    let mib: u64 = std::env::var("CHARTER_BENCH_SIZE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data.img");
    write_random(&data, size);
    warm(&data);

    let params = VerityParams::default();
    // Rounds interleave the tools so that load from elsewhere on the machine hits all alike;
    // each tool keeps its best wall time and its lowest CPU time (user + system, all threads;
    // insensitive to other load, so it shows per-byte efficiency).
    let mut best: [Best; 3] = [Best::default(); 3];
    let mut vs_root = None;
    for _ in 0..RUNS {
        let hash = dir.path().join("vs.hash");
        let _ = std::fs::remove_file(&hash);
        let (cpu0, start) = (cpu_seconds().1, Instant::now());
        let root = veritysetup(&data, &hash, &params);
        best[0].keep(start.elapsed(), cpu_seconds().1 - cpu0);
        vs_root = Some(root);
        for (slot, threads) in [(1, 1), (2, 2)] {
            let cpu0 = cpu_seconds().0;
            let (t, root) = charter(dir.path(), &data, size, &params, threads);
            best[slot].keep(t, cpu_seconds().0 - cpu0);
            assert_eq!(
                Some(root),
                vs_root,
                "charter and veritysetup disagree on the root hash"
            );
        }
    }
    let vs_root = vs_root.expect("at least one run");
    let names = [
        "veritysetup (1 thread)",
        "charter-verity (1 thread)",
        "charter-verity (2 threads)",
    ];
    let vs_wall = best[0].wall.expect("ran").as_secs_f64();

    println!();
    println!("dm-verity tree build, {mib} MiB pseudo-random data, sha256/4096/4096, salt 32x00, format 1, best of {RUNS}");
    println!("root hash {vs_root} (equal for all)");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} cpus, load average {} (other work on the machine skews wall times)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<28} {:>8} {:>8} {:>20} {:>8}",
        "tool", "wall s", "MiB/s", "charter/veritysetup", "CPU s"
    );
    for (name, b) in names.iter().zip(best) {
        let secs = b.wall.expect("ran").as_secs_f64();
        println!(
            "{name:<28} {secs:>8.3} {:>8.0} {:>19.2}x {:>8.2}",
            mib as f64 / secs,
            vs_wall / secs,
            b.cpu
        );
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Best {
    wall: Option<Duration>,
    cpu: f64,
}

impl Best {
    fn keep(&mut self, wall: Duration, cpu: f64) {
        if self.wall.is_none() || cpu < self.cpu {
            self.cpu = cpu;
        }
        if self.wall.is_none_or(|b| wall < b) {
            self.wall = Some(wall);
        }
    }
}

/// (this process, its waited-for children) user + system CPU seconds, from /proc/self/stat.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14..=17 of stat(5): utime stime cutime cstime; `after` starts at field 3.
    let tick = 100.0;
    let get = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / tick;
    (get(14) + get(15), get(16) + get(17))
}

/// One timed charter run into a fresh hash file.
fn charter(
    dir: &Path,
    data: &Path,
    size: u64,
    params: &VerityParams,
    threads: usize,
) -> (Duration, RootHash) {
    let hash = dir.join(format!("charter-{threads}.hash"));
    let _ = std::fs::remove_file(&hash);
    let h = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&hash)
        .expect("create hash file");
    let d = File::open(data).expect("open data");
    let opts = FormatOptions {
        threads: NonZeroUsize::new(threads).expect("nonzero"),
        superblock: None,
    };
    let start = Instant::now();
    let f = format(&d, size, &h, 0, params, &opts).expect("format");
    (start.elapsed(), f.root_hash)
}

fn veritysetup(data: &Path, hash: &Path, p: &VerityParams) -> RootHash {
    let out = Command::new("veritysetup")
        .arg("format")
        .arg("--no-superblock")
        .arg(format!("--hash={}", p.hash))
        .arg(format!("--data-block-size={}", p.data_block_size))
        .arg(format!("--hash-block-size={}", p.hash_block_size))
        .arg(format!("--salt={}", p.salt))
        .arg(data)
        .arg(hash)
        .output()
        .expect("run veritysetup (apt-get install cryptsetup-bin)");
    assert!(
        out.status.success(),
        "veritysetup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Root hash:"))
        .expect("root hash line");
    line["Root hash:".len()..]
        .trim()
        .parse()
        .expect("root hash")
}

fn write_random(path: &Path, size: u64) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut f = File::create(path).expect("create data");
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write data");
        left -= n as u64;
    }
    f.sync_all().expect("sync data");
}

fn warm(path: &Path) {
    let mut f = File::open(path).expect("open data");
    let mut buf = vec![0u8; 8 << 20];
    while f.read(&mut buf).expect("read data") > 0 {}
}
