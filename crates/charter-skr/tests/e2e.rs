//! End to end: a real key broker over TLS on loopback (INSECURE simulated SNP evidence), a
//! `KbsBackend` with the simulated guest as its TEE, the SKR endpoint on loopback, and
//! requests made the way a workload makes them (ureq, or raw bytes for the malformed ones).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64U};
use base64::Engine as _;
use charter_attest::Report;
use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};
use charter_broker::{jwt, spawn, Config, RunningBroker};
use charter_kbs_client::KbsClient;
use charter_skr::{serve, serve_with, Backend, BackendError, KbsBackend, Limits};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const HOST_DATA: [u8; 32] = [0x5a; 32];
const MEASUREMENT: [u8; 48] = [0x3c; 48];

const AES_KID: &str = "default/key/aes";
/// Not valid UTF-8, not JSON: released as an `oct` JWK.
const AES_KEY: &[u8] = b"\x00\xff\x10 0123456789abcdef0123456789\xfe\x80";
const JWK_KID: &str = "default/key/ec";
const JWK_KEY: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tkm1bZw9q9klO0yqYmNk9w6oB1fc","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
/// Released only to guests whose HOST_DATA is `[0x11; 32]`.
const OTHER_KID: &str = "default/key/other";

struct World {
    _dir: tempfile::TempDir,
    _broker: Mutex<RunningBroker>,
    broker_ca: String,
    sp: Arc<InsecureSimulatedSp>,
    skr: SocketAddr,
}

fn launch() -> LaunchParams {
    LaunchParams {
        host_data: HOST_DATA,
        measurement: MEASUREMENT,
        ..LaunchParams::default()
    }
}

fn tls_agent(ca_pem: &str) -> ureq::Agent {
    let certs: Vec<_> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i.unwrap() {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            )
            .build(),
    )
}

/// The broker (with three resources), and the SKR endpoint in front of it; shared by all
/// tests.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sp = Arc::new(InsecureSimulatedSp::load_or_generate(&dir.path().join("sp")).unwrap());
        let (admin_private, admin_public) = jwt::admin_keygen().unwrap();
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join("broker.db"),
            &admin_public,
        );
        config.master_key = charter_broker::MasterKeySource::File(dir.path().join("master.key"));
        config.broker.insecure_allow_simulated = true;
        config.broker.insecure_simulated_root_pem = Some(sp.root_pem());
        let broker = spawn(config, 2).unwrap();
        let ca = broker.ca_pem().to_owned();

        let admin = tls_agent(&ca);
        let key = jwt::admin_key_from_pem(&admin_private).unwrap();
        let post = |path: String, body: &[u8]| {
            let token = jwt::admin_token(&key, Duration::from_secs(120)).unwrap();
            let resp = admin
                .post(format!("{}{path}", broker.url()))
                .header("Authorization", format!("Bearer {token}"))
                .send(body)
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        };
        let policy = |host_data: [u8; 32]| {
            let rego = charter_broker::policy_new(
                &hex::encode(host_data),
                Some(&hex::encode(MEASUREMENT)),
                false,
                Some(&launch().tcb),
            );
            json!({ "policy": B64U.encode(rego) }).to_string()
        };
        for (kid, value, host_data) in [
            (AES_KID, AES_KEY, HOST_DATA),
            (JWK_KID, JWK_KEY.as_bytes(), HOST_DATA),
            (OTHER_KID, b"not for you".as_slice(), [0x11; 32]),
        ] {
            post(format!("/kbs/v0/resource/{kid}"), value);
            post(
                format!("/kbs/v0/resource-policy/{kid}"),
                policy(host_data).as_bytes(),
            );
        }

        let client = KbsClient::new(&broker.url(), ca.as_bytes()).unwrap();
        let guest = InsecureSimulatedGuest::new(Arc::clone(&sp), launch());
        let backend = KbsBackend::new(client, Box::new(guest));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let skr = listener.local_addr().unwrap();
        serve(listener, Arc::new(backend));
        World {
            _dir: dir,
            _broker: Mutex::new(broker),
            broker_ca: ca,
            sp,
            skr,
        }
    })
}

fn workload() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// POST `body` as a workload would; (status, JSON body).
fn post_to(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut resp = workload()
        .post(url(addr, path))
        .content_type("application/json")
        .send(body)
        .unwrap();
    let body = resp.body_mut().read_to_vec().unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap(),
    )
}

fn post(path: &str, body: &str) -> (u16, Value) {
    post_to(world().skr, path, body)
}

/// Raw bytes in, (status, body) out.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .unwrap_or_else(|| panic!("not a response: {text:?}"))
        .parse()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (status, out[split + 4..].to_vec())
}

/// Release `kid`; the JWK (the sidecar sends it as a JSON string).
fn release(kid: &str) -> (u16, Value) {
    let (status, body) = post(
        "/key/release",
        &json!({"maa_endpoint": "sharedeus.eus.attest.azure.net", "akv_endpoint": "x.vault.azure.net", "kid": kid}).to_string(),
    );
    if status != 200 {
        return (status, body);
    }
    let jwk = serde_json::from_str(body["key"].as_str().expect("key is a string")).unwrap();
    (status, jwk)
}

#[test]
fn status() {
    let mut resp = workload().get(url(world().skr, "/status")).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    let body: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body, json!({"message": "Status OK"}));
}

#[test]
fn attest_raw_binds_runtime_data() {
    let runtime_data = br#"{"keys":[{"kty":"RSA","n":"abc","e":"AQAB"}]}"#;
    let (status, body) = post(
        "/attest/raw",
        &json!({ "runtime_data": B64.encode(runtime_data) }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let bytes = hex::decode(body["report"].as_str().unwrap()).unwrap();
    let mut expected = Sha256::digest(runtime_data).to_vec();
    expected.extend_from_slice(&[0; 32]);
    assert_eq!(&bytes[0x50..0x90], expected.as_slice());
    let report = Report::from_bytes(&bytes).unwrap();
    assert_eq!(report.report_data().as_slice(), expected.as_slice());
    assert_eq!(report.host_data(), &HOST_DATA);
    assert_eq!(report.measurement(), &MEASUREMENT);
    assert_eq!(report.chip_id(), world().sp.chip_id());
}

#[test]
fn key_release_oct_and_jwk() {
    let (status, jwk) = release(AES_KID);
    assert_eq!(status, 200, "{jwk}");
    assert_eq!(jwk, json!({"kty": "oct", "k": B64U.encode(AES_KEY)}));
    assert_eq!(B64U.decode(jwk["k"].as_str().unwrap()).unwrap(), AES_KEY);

    let (status, jwk) = release(JWK_KID);
    assert_eq!(status, 200, "{jwk}");
    let mut expected: Value = serde_json::from_str(JWK_KEY).unwrap();
    expected["kid"] = json!(JWK_KID);
    assert_eq!(jwk, expected);

    // Only kid is needed.
    let (status, _) = post("/key/release", &json!({ "kid": AES_KID }).to_string());
    assert_eq!(status, 200);
}

#[test]
fn key_release_refusals() {
    let (status, body) = release("default/key/missing");
    assert_eq!((status, body), (404, json!({"error": "key not found"})));
    let (status, body) = release(OTHER_KID);
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": "key release refused by the key broker"})
        )
    );
}

#[test]
fn broker_unreachable_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = KbsClient::new(
        &format!("https://127.0.0.1:{port}"),
        world().broker_ca.as_bytes(),
    )
    .unwrap();
    let guest = InsecureSimulatedGuest::new(Arc::clone(&world().sp), launch());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, Arc::new(KbsBackend::new(client, Box::new(guest))));
    let (status, body) = post_to(addr, "/key/release", r#"{"kid":"default/key/aes"}"#);
    assert_eq!(
        (status, body),
        (502, json!({"error": "key broker unavailable"}))
    );
}

#[test]
fn bad_requests() {
    for (path, body) in [
        ("/key/release", "{not json"),
        ("/key/release", r#"{"maa_endpoint":"m","akv_endpoint":"a"}"#),
        ("/key/release", r#"{"kid":"just-a-name"}"#),
        ("/key/release", r#"{"kid":"a/b/../c"}"#),
        ("/attest/raw", r#"{"runtime_data":"***"}"#),
        ("/attest/raw", r#"{"runtime_data":""}"#),
        ("/attest/raw", "{}"),
    ] {
        let (status, v) = post(path, body);
        assert_eq!(status, 400, "{path} {body}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (status, v) = post("/attest/maa", "{}");
    assert_eq!((status, v), (404, json!({"error": "not found"})));
    let mut resp = workload()
        .get(url(world().skr, "/key/release"))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers().get("allow").unwrap(), "POST");
    let _ = resp.body_mut().read_to_vec();
}

#[test]
fn oversized_body_is_413() {
    let addr = world().skr;
    let body = vec![b' '; 100 << 10];
    let mut req = format!(
        "POST /key/release HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let (status, body) = raw(addr, &req);
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "request body too large"})
    );
    // The same through a client library.
    let big = format!(
        r#"{{"kid":"default/key/aes","pad":"{}"}}"#,
        "x".repeat(70 << 10)
    );
    let resp = workload()
        .post(url(addr, "/key/release"))
        .send(big.as_bytes())
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[test]
fn garbage_then_still_serving() {
    let addr = world().skr;
    let (status, _) = raw(addr, b"GARBAGE\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = raw(addr, b"\x16\x03\x01\x00\x05hello");
    assert_eq!(status, 400);
    let (status, _) = raw(
        addr,
        b"POST /key/release HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411);
    // A client that connects and leaves gets nothing and costs nothing.
    drop(TcpStream::connect(addr).unwrap());
    let (status, body) = raw(addr, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"message": "Status OK"})
    );
}

#[test]
fn hundred_concurrent_releases() {
    let addr = world().skr;
    let n = 100;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                post_to(addr, "/key/release", &json!({ "kid": AES_KID }).to_string())
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let jwk: Value = serde_json::from_str(body["key"].as_str().unwrap()).unwrap();
        assert_eq!(B64U.decode(jwk["k"].as_str().unwrap()).unwrap(), AES_KEY);
    }
}

/// A backend that never answers quickly; the tests below only use it to hold connections.
struct Idle;

impl Backend for Idle {
    fn report(&self, _: [u8; 64]) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Other("idle".into()))
    }
    fn release(&self, _: &str) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Other("idle".into()))
    }
}

#[test]
fn connection_cap_answers_503() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connections: 1,
        queue_wait: Duration::from_millis(100),
        io_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    serve_with(listener, Arc::new(Idle), limits);
    // Holds the only slot: connected, sending nothing.
    let mut holder = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = raw(addr, b"GET /status HTTP/1.1\r\n\r\n");
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "too many connections"})
    );
    // Once the holder is served, the slot is free again.
    holder.write_all(b"GET /status HTTP/1.1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    holder.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let (status, _) = raw(addr, b"GET /status HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    let json = br#"{"runtime_data":"AA=="}"#;
    let mut req = format!(
        "POST /attest/raw HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    req.extend_from_slice(json);
    let (status, body) = raw(addr, &req);
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
}
