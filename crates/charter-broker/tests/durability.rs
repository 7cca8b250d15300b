//! Crash durability: the broker binary in a child process takes 1,000 concurrent admin writes
//! over HTTPS and is killed with SIGKILL at a random point of the stream, 20 rounds on one
//! database. After each kill the database opens, passes `integrity_check`, and every write
//! that was acknowledged (HTTP 200), in this round or an earlier one, reads back intact.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use charter_broker::store::{MasterKey, Store};
use rand::Rng as _;
use sha2::{Digest, Sha256};

const ROUNDS: usize = 20;
const WRITES: usize = 1000;
const THREADS: usize = 16;

fn value(round: usize, i: usize) -> Vec<u8> {
    let mut v = Sha256::digest(format!("round {round} write {i}")).to_vec();
    v.extend_from_slice(format!("/{round}/{i}").as_bytes());
    v
}

type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn spawn_broker(dir: &Path) -> (Child, String) {
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    #[allow(clippy::zombie_processes)] // the caller kills and waits
    let child = Command::new(env!("CARGO_BIN_EXE_charter-broker"))
        .arg("--db")
        .arg(dir.join("broker.db"))
        .arg("--admin-public-key")
        .arg(dir.join("admin.pub"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--addr-file")
        .arg(&addr_file)
        .env_remove("CHARTER_BROKER_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            return (child, a.trim().to_owned());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "broker did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let admin = common::Admin::new();
    std::fs::write(dir.path().join("admin.pub"), &admin.public_pem).unwrap();
    let key = charter_broker::jwt::admin_key_from_pem(&admin.private_pem).unwrap();
    let mut acked_all: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = rand::thread_rng();
    let mut killed_mid_stream = 0;
    for round in 0..ROUNDS {
        let (mut child, addr) = spawn_broker(dir.path());
        let ca = std::fs::read_to_string(dir.path().join("tls-ca.pem")).unwrap();
        let token = charter_broker::jwt::admin_token(&key, Duration::from_secs(300)).unwrap();
        let acked: Acked = Arc::default();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (acked, next, ca, token, addr) = (
                    acked.clone(),
                    next.clone(),
                    ca.clone(),
                    token.clone(),
                    addr.clone(),
                );
                std::thread::spawn(move || {
                    let agent = common::agent(&ca);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= WRITES {
                            return;
                        }
                        let path = format!("dur/r{round}/k{i}");
                        let v = value(round, i);
                        let r = agent
                            .post(format!("https://{addr}/kbs/v0/resource/{path}"))
                            .header("Authorization", format!("Bearer {token}"))
                            .send(&v[..]);
                        match r {
                            Ok(resp) if resp.status() == 200 => {
                                acked.lock().unwrap().push((path, v));
                            }
                            Ok(resp) => panic!("write refused: {}", resp.status()),
                            Err(_) => return, // the broker is gone
                        }
                    }
                })
            })
            .collect();
        // Kill at a random point of the write burst, chosen by progress rather than by wall
        // time so the kill lands mid-stream however fast or slow the machine is.
        let kill_after = rng.gen_range(1..WRITES * 3 / 4);
        let start = Instant::now();
        while acked.lock().unwrap().len() < kill_after
            && next.load(std::sync::atomic::Ordering::SeqCst) < WRITES + THREADS
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
        if acked.len() < WRITES {
            killed_mid_stream += 1;
        }
        acked_all.extend(acked);
        // Reopen the database exactly as the broker does and read everything back.
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let store = Store::open(&dir.path().join("broker.db"), &master).unwrap();
        assert!(
            store.integrity_check().unwrap(),
            "round {round}: integrity_check"
        );
        for (path, v) in &acked_all {
            let got = store.get_resource(path).unwrap();
            assert_eq!(
                got.as_deref(),
                Some(&v[..]),
                "round {round}: {path} lost or corrupted"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged in total, all intact",
            acked_all.len()
        );
    }
    eprintln!("{killed_mid_stream}/{ROUNDS} rounds killed mid-stream");
    assert!(
        killed_mid_stream >= ROUNDS / 2,
        "kills should land mid-stream"
    );
}
