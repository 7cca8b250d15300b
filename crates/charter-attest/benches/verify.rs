//! Full verification throughput (report signature + cached chain + appraisal) on one core,
//! against the `sev` crate 8 (virtee, `crypto_nossl`) verifying the same report and chain in
//! the same run.
//!
//! `cargo bench -p charter-attest --bench verify` (optional arg: seconds per measurement).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use charter_attest::{Verifier, VerifyOptions};
use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

fn rate(name: &str, budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm up (fills our chain cache)
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{name:<58} {per_s:>10.0} reports/s  ({:>7.1} us each)",
        1e6 / per_s
    );
    per_s
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/snp/oak-milan-v3"
    ));
    let report = std::fs::read(dir.join("report.bin")).expect("report.bin");
    let vcek_der = std::fs::read(dir.join("vcek.der")).expect("vcek.der");
    let ark_pem = std::fs::read(dir.join("ark.pem")).expect("ark.pem");
    let ask_pem = std::fs::read(dir.join("ask.pem")).expect("ask.pem");
    let chain_der: Vec<Vec<u8>> = [&ask_pem, &ark_pem]
        .iter()
        .map(|p| {
            charter_attest::cert::pem_certs(std::str::from_utf8(p).unwrap())
                .unwrap()
                .remove(0)
        })
        .collect();

    let verifier = Verifier::new().expect("roots");
    let opts = VerifyOptions::default();
    verifier
        .verify(&report, &vcek_der, &chain_der, &opts)
        .expect("charter-attest verifies the vector");

    let vcek = Certificate::from_der(&vcek_der).expect("sev: vcek");
    let sev_chain = Chain {
        ca: ca::Chain::from_pem(&ark_pem, &ask_pem).expect("sev: ca"),
        vek: vcek.clone(),
    };
    let parsed = AttestationReport::from_bytes(&report).expect("sev: report");
    (&sev_chain, &parsed)
        .verify()
        .expect("sev verifies the vector");

    println!("oak-milan-v3 (Milan v3, VCEK); single thread; {secs} s per line");
    let ours = rate(
        "charter-attest: parse + signature + cached chain + appraisal",
        budget,
        || {
            black_box(
                verifier
                    .verify(black_box(&report), &vcek_der, &chain_der, &opts)
                    .unwrap(),
            );
        },
    );
    let peer_sig = rate(
        "sev 8 crypto_nossl: parse + report signature (VCEK only)",
        budget,
        || {
            let r = AttestationReport::from_bytes(black_box(&report)).unwrap();
            (&vcek, &r).verify().unwrap();
        },
    );
    let peer_full = rate(
        "sev 8 crypto_nossl: parse + ARK/ASK/VCEK chain + signature",
        budget,
        || {
            let r = AttestationReport::from_bytes(black_box(&report)).unwrap();
            (&sev_chain, &r).verify().unwrap();
        },
    );
    println!(
        "ratio vs sev (same work: signature, chain already trusted): {:.1}x",
        ours / peer_sig
    );
    println!(
        "ratio vs sev (sev re-verifies the chain every time):        {:.1}x",
        ours / peer_full
    );
    println!(
        "goal >= 3000 reports/s per core: {}",
        if ours >= 3000.0 { "met" } else { "NOT met" }
    );
}
