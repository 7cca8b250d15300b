//! `cargo bench -p charter-broker --bench release`: full auth + attest + resource with
//! simulated SNP evidence, 64 concurrent clients over HTTPS on loopback; releases/s and
//! p50/p99 latency. Baselines in the same run show where the time goes:
//!
//! * the same flow in-process (no HTTP, no TLS): evidence, verification, binding, policy, JWE;
//! * the same flow over plain HTTP (`insecure_plain_http`);
//! * a bare TLS handshake + `GET /healthz` per request (new connection each time);
//! * `GET /healthz` over a kept-alive TLS connection.
//!
//! The peer the charter asks for, trustee's KBS, cannot be built on this machine (its
//! `kbs_protocol` dependency is a git dependency, and only the crate registry is reachable);
//! this is printed in the output instead of a number.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charter_attest::TeeProvider;
use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};
use charter_broker::{jwt, policy_new, spawn, Config, Credential, MasterKeySource};
use charter_kbs_client::{binding, KbsClient, KeyAlgorithm, TeeKeyPair};
use kbs_types::{Attestation, CompositeEvidence, RuntimeData};

const CLIENTS: usize = 64;
const PATH: &str = "default/key/bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    n: usize,
    wall: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn print(&mut self, name: &str) {
        self.lat.sort();
        let pct = |p: f64| {
            let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
            self.lat.get(i).copied().unwrap_or_default()
        };
        println!(
            "{name:<52} {:>8.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops, {:.2} s)",
            self.n as f64 / self.wall.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.n,
            self.wall.as_secs_f64()
        );
    }
}

/// Run `op` from `threads` threads until `total` operations are done.
fn run<S: Send + 'static>(
    threads: usize,
    total: usize,
    setup: impl Fn() -> S + Send + Sync + 'static,
    op: impl Fn(&mut S) + Send + Sync + 'static,
) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let setup = Arc::new(setup);
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, setup, op) = (next.clone(), setup.clone(), op.clone());
            std::thread::spawn(move || {
                let mut state = setup();
                let mut lat = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    op(&mut state);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(total);
    for h in handles {
        lat.extend(h.join().unwrap());
    }
    Stats {
        n: lat.len(),
        wall: start.elapsed(),
        lat,
    }
}

/// Open loop: `threads` clients together offering `rate` operations/s (each client on a fixed
/// schedule); latency counts from the scheduled start, so falling behind shows up in it.
fn run_paced<S: Send + 'static>(
    threads: usize,
    total: usize,
    rate: f64,
    setup: impl Fn() -> S + Send + Sync + 'static,
    op: impl Fn(&mut S) + Send + Sync + 'static,
) -> Stats {
    let per_client = total.div_ceil(threads);
    let period = Duration::from_secs_f64(threads as f64 / rate);
    let setup = Arc::new(setup);
    let op = Arc::new(op);
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (setup, op, barrier) = (setup.clone(), op.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut state = setup();
                barrier.wait();
                let t0 = Instant::now() + period.mul_f64(i as f64 / threads as f64);
                let mut lat = Vec::with_capacity(per_client);
                for k in 0..per_client {
                    let due = t0 + period * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    op(&mut state);
                    lat.push(due.elapsed());
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut lat = Vec::with_capacity(total);
    for h in handles {
        lat.extend(h.join().unwrap());
    }
    Stats {
        n: lat.len(),
        wall: start.elapsed(),
        lat,
    }
}

fn agent(ca: &str, keep_alive: bool) -> ureq::Agent {
    let certs: Vec<_> = ureq::tls::parse_pem(ca.as_bytes())
        .filter_map(|i| match i.unwrap() {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let mut cfg = ureq::Agent::config_builder().tls_config(
        ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build(),
    );
    if !keep_alive {
        cfg = cfg.max_idle_connections(0).max_idle_connections_per_host(0);
    }
    ureq::Agent::new_with_config(cfg.build())
}

fn main() {
    let total = env_usize("BENCH_RELEASES", 4000);
    let dir = tempfile::tempdir().unwrap();
    let sp = Arc::new(InsecureSimulatedSp::load_or_generate(&dir.path().join("sim")).unwrap());
    let launch = LaunchParams {
        host_data: [0x5a; 32],
        measurement: [0x3c; 48],
        ..LaunchParams::default()
    };
    let (_, admin_pub) = jwt::admin_keygen().unwrap();
    let start_broker = |plain: bool, name: &str| {
        let mut c = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("{name}.db")),
            &admin_pub,
        );
        c.master_key = MasterKeySource::File(dir.path().join("master.key"));
        c.broker.insecure_allow_simulated = true;
        c.broker.insecure_simulated_root_pem = Some(sp.root_pem());
        c.insecure_plain_http = plain;
        let b = spawn(c, 0).unwrap();
        b.broker().set_resource(PATH, &[7u8; 32]).unwrap();
        b.broker()
            .set_policy(
                Some(PATH),
                &policy_new(
                    &hex::encode(launch.host_data),
                    Some(&hex::encode(launch.measurement)),
                    false,
                    None,
                ),
            )
            .unwrap();
        b
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("charter-broker release benchmark: {CLIENTS} concurrent clients, {total} releases per row, {cores} cores, simulated SNP evidence (INSECURE)");
    println!("peer: trustee KBS cannot be built here (kbs_protocol is a git dependency; only crates.io is reachable) -> no peer number; baselines below instead");
    println!();

    // 1. The real thing: HTTPS, the charter-kbs-client, auth + attest + resource each time.
    let https = start_broker(false, "https");
    {
        let (url, ca) = (https.url(), https.ca_pem().to_owned());
        let guest = InsecureSimulatedGuest::new(sp.clone(), launch.clone());
        let mut s = run(
            CLIENTS,
            total,
            move || (KbsClient::new(&url, ca.as_bytes()).unwrap(), guest.clone()),
            |(c, g)| {
                let v = c.get_resource(PATH, g).unwrap();
                assert_eq!(v, [7u8; 32]);
            },
        );
        s.print("HTTPS auth+attest+resource, closed loop (max rate)");
        let (url, ca) = (https.url(), https.ca_pem().to_owned());
        let guest = InsecureSimulatedGuest::new(sp.clone(), launch.clone());
        let rate = env_usize("BENCH_RATE", 1000) as f64;
        let mut s = run_paced(
            CLIENTS,
            total,
            rate,
            move || (KbsClient::new(&url, ca.as_bytes()).unwrap(), guest.clone()),
            |(c, g)| {
                let v = c.get_resource(PATH, g).unwrap();
                assert_eq!(v, [7u8; 32]);
            },
        );
        s.print(&format!(
            "HTTPS auth+attest+resource, open loop {rate:.0}/s offered"
        ));
    }

    // 2. Same flow over plain HTTP (raw protocol messages, same client-side crypto).
    let plain = start_broker(true, "plain");
    {
        let url = plain.url();
        let guest = InsecureSimulatedGuest::new(sp.clone(), launch.clone());
        let mut s = run(
            CLIENTS,
            total,
            move || (ureq::Agent::new_with_defaults(), guest.clone(), url.clone()),
            |(a, g, url)| http_flow(a, g, url),
        );
        s.print("plain HTTP auth+attest+resource (baseline)");
    }

    // 3. In-process, no HTTP: the protocol logic and the crypto of both sides.
    {
        let broker = https.broker().clone();
        let guest = InsecureSimulatedGuest::new(sp.clone(), launch.clone());
        let mut s = run(
            cores,
            total,
            move || (broker.clone(), guest.clone()),
            |(b, g)| {
                let req = serde_json::json!({"version": "0.4.0", "tee": "snp", "extra-params": ""});
                let (id, ch) = b.auth(req.to_string().as_bytes()).unwrap();
                let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
                let att = attestation(&ch.nonce, &key, g);
                b.attest(&id, &serde_json::to_vec(&att).unwrap()).unwrap();
                let jwe = b.resource(&Credential::Session(id), PATH).unwrap();
                let v = key.decrypt(&serde_json::to_vec(&jwe).unwrap()).unwrap();
                assert_eq!(v, [7u8; 32]);
            },
        );
        s.print(&format!(
            "in-process auth+attest+resource, {cores} threads (no HTTP/TLS)"
        ));
    }

    // 4. One thread, per phase (mean CPU time of each step of one release).
    {
        let b = https.broker().clone();
        let g = InsecureSimulatedGuest::new(sp.clone(), launch.clone());
        let n = 300u32;
        let mut t = [Duration::ZERO; 6];
        for _ in 0..n {
            let c = Instant::now();
            let req = serde_json::json!({"version": "0.4.0", "tee": "snp", "extra-params": ""});
            let (id, ch) = b.auth(req.to_string().as_bytes()).unwrap();
            t[0] += c.elapsed();
            let c = Instant::now();
            let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
            t[1] += c.elapsed();
            let c = Instant::now();
            let att = attestation(&ch.nonce, &key, &g);
            let body = serde_json::to_vec(&att).unwrap();
            t[2] += c.elapsed();
            let c = Instant::now();
            b.attest(&id, &body).unwrap();
            t[3] += c.elapsed();
            let c = Instant::now();
            let jwe =
                serde_json::to_vec(&b.resource(&Credential::Session(id), PATH).unwrap()).unwrap();
            t[4] += c.elapsed();
            let c = Instant::now();
            key.decrypt(&jwe).unwrap();
            t[5] += c.elapsed();
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "  one release, mean per step (1 thread): auth {:.0} us | client P-256 keygen {:.0} us | \
             client evidence (sim P-384 sign) + JSON {:.0} us | broker attest (verify, bind, token) {:.0} us | \
             broker resource (policy, unseal, JWE) {:.0} us | client JWE decrypt {:.0} us | total {:.0} us",
            us(t[0]), us(t[1]), us(t[2]), us(t[3]), us(t[4]), us(t[5]),
            us(t.iter().sum())
        );
    }

    // 5. Transport alone.
    {
        let (url, ca) = (https.url(), https.ca_pem().to_owned());
        let mut s = run(
            CLIENTS,
            total,
            move || (agent(&ca, false), url.clone()),
            |(a, url)| {
                a.get(format!("{url}/healthz")).call().unwrap();
            },
        );
        s.print("TLS handshake + GET /healthz (new connection each)");
        let (url, ca) = (https.url(), https.ca_pem().to_owned());
        let mut s = run(
            CLIENTS,
            total,
            move || (agent(&ca, true), url.clone()),
            |(a, url)| {
                a.get(format!("{url}/healthz")).call().unwrap();
            },
        );
        s.print("GET /healthz over kept-alive TLS");
    }
    https.shutdown();
    plain.shutdown();
}

fn attestation(nonce: &str, key: &TeeKeyPair, g: &InsecureSimulatedGuest) -> Attestation {
    let rd = binding::report_data(nonce, key.public_key(), "").unwrap();
    let ev = g.report(rd).unwrap();
    Attestation {
        init_data: None,
        runtime_data: RuntimeData {
            nonce: nonce.to_owned(),
            tee_pubkey: key.public_key().clone(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: serde_json::from_str(&ev.to_json()).unwrap(),
            additional_evidence: String::new(),
        },
    }
}

fn http_flow(a: &ureq::Agent, g: &InsecureSimulatedGuest, url: &str) {
    let req = serde_json::json!({"version": "0.4.0", "tee": "snp", "extra-params": ""});
    let mut r = a
        .post(format!("{url}/kbs/v0/auth"))
        .send(req.to_string())
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let ch: kbs_types::Challenge =
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    let att = attestation(&ch.nonce, &key, g);
    let r = a
        .post(format!("{url}/kbs/v0/attest"))
        .header("Cookie", &cookie)
        .send(serde_json::to_vec(&att).unwrap())
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut r = a
        .get(format!("{url}/kbs/v0/resource/{PATH}"))
        .header("Cookie", &cookie)
        .call()
        .unwrap();
    let v = key.decrypt(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(v, [7u8; 32]);
}
