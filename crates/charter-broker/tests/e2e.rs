//! End to end over real TLS on loopback: the charter-kbs-client (happy path) and raw
//! protocol messages (refusals), with evidence from the INSECURE simulated AMD-SP.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use base64::Engine as _;
use charter_attest::TeeProvider;
use charter_kbs_client::{binding, Error as ClientError, KeyAlgorithm, TeeKeyPair};
use common::*;
use kbs_types::{Attestation, Challenge, CompositeEvidence, RuntimeData};
use serde_json::{json, Value};

const KEY_PATH: &str = "default/key/workload";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn fixture() -> Fixture {
    let f = start(true, Duration::from_secs(300));
    f.set_resource(KEY_PATH, SECRET);
    f.set_policy(KEY_PATH, &standard_policy());
    f
}

/// (endpoint, status) of a client error.
fn status(e: ClientError) -> (&'static str, u16) {
    match e {
        ClientError::Status {
            endpoint, status, ..
        } => (endpoint, status),
        other => panic!("expected an HTTP status error, got {other}"),
    }
}

/// A raw protocol session: auth, then an attestation body bound to the challenge.
struct Raw {
    cookie: String,
    challenge: Challenge,
}

fn raw_auth(f: &Fixture) -> Raw {
    let mut resp = f
        .http
        .post(f.url("/kbs/v0/auth"))
        .content_type("application/json")
        .send(json!({"version": "0.4.0", "tee": "snp", "extra-params": {"supported-hash-algorithms": ["sha384"]}}).to_string())
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let challenge: Challenge =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    Raw { cookie, challenge }
}

fn attestation(nonce: &str, key: &TeeKeyPair, tee: &dyn TeeProvider) -> Attestation {
    let rd = binding::report_data(nonce, key.public_key(), "").unwrap();
    let ev = tee.report(rd).unwrap();
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

fn raw_attest(f: &Fixture, cookie: &str, body: &Attestation) -> (u16, Value) {
    let mut resp = f
        .http
        .post(f.url("/kbs/v0/attest"))
        .header("Cookie", cookie)
        .content_type("application/json")
        .send(serde_json::to_vec(body).unwrap())
        .unwrap();
    let s = resp.status().as_u16();
    let v = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (s, v)
}

fn raw_get(f: &Fixture, path: &str, auth: (&str, &str)) -> (u16, Vec<u8>) {
    let mut resp = f
        .http
        .get(f.url(&format!("/kbs/v0/resource/{path}")))
        .header(auth.0, auth.1)
        .call()
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_vec().unwrap(),
    )
}

#[test]
fn happy_path_ec_and_rsa_with_the_client() {
    let f = fixture();
    let g = guest(launch());
    for alg in [KeyAlgorithm::EcdhEsA256KwP256, KeyAlgorithm::RsaOaep256] {
        let client = f.client().with_key_algorithm(alg);
        assert_eq!(
            client.get_resource(KEY_PATH, &g).unwrap(),
            SECRET,
            "{alg:?}"
        );
    }
    // The token: EdDSA JWT with the normalised claims, usable as a bearer credential.
    let client = f.client();
    let session = client.attest(&g).unwrap();
    let payload: Value = serde_json::from_slice(
        &B64U
            .decode(session.token().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["platform"], "insecure-simulated-snp");
    assert_eq!(payload["host_data"], hex::encode(HOST_DATA));
    assert_eq!(payload["measurement"], hex::encode(MEASUREMENT));
    assert_eq!(payload["debug"], false);
    assert_eq!(payload["tcb"]["snp"], 8);
    assert!(payload["exp"].as_u64().unwrap() > payload["iat"].as_u64().unwrap());
    let jwt_header: Value = serde_json::from_slice(
        &B64U
            .decode(session.token().split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwt_header["alg"], "EdDSA");
    let (s, jwe) = raw_get(
        &f,
        KEY_PATH,
        ("Authorization", &format!("Bearer {}", session.token())),
    );
    assert_eq!(s, 200);
    assert_eq!(session.key().decrypt(&jwe).unwrap(), SECRET);
    // A forged bearer token (payload changed) is refused.
    let mut parts: Vec<String> = session.token().split('.').map(str::to_owned).collect();
    let mut forged = payload.clone();
    forged["host_data"] = json!("00".repeat(32));
    parts[1] = B64U.encode(forged.to_string());
    let (s, _) = raw_get(
        &f,
        KEY_PATH,
        ("Authorization", &format!("Bearer {}", parts.join("."))),
    );
    assert_eq!(s, 401);
}

#[test]
fn refuses_wrong_host_data() {
    let f = fixture();
    let mut l = launch();
    l.host_data = [0x77; 32];
    let err = f.client().get_resource(KEY_PATH, &guest(l)).unwrap_err();
    // Attestation succeeds (the evidence is genuine); the release policy refuses.
    assert_eq!(status(err), ("resource", 401));
}

#[test]
fn refuses_debug_guest() {
    let f = fixture();
    let mut l = launch();
    l.policy |= POLICY_DEBUG;
    let g = guest(l);
    // Attestation itself succeeds (the verifier passes debug on to the policy) ...
    let session = f.client().attest(&g).unwrap();
    let payload: Value = serde_json::from_slice(
        &B64U
            .decode(session.token().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["debug"], true);
    // ... and the release policy refuses it.
    let err = f.client().get_resource(KEY_PATH, &g).unwrap_err();
    assert_eq!(status(err), ("resource", 401));
    // A policy that allows debug releases it (the refusal was the debug bit).
    f.set_policy(
        KEY_PATH,
        &charter_broker::policy_new(&hex::encode(HOST_DATA), None, true, None),
    );
    assert_eq!(f.client().get_resource(KEY_PATH, &g).unwrap(), SECRET);
}

#[test]
fn refuses_replayed_nonce() {
    let f = fixture();
    let g = guest(launch());
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    let raw = raw_auth(&f);
    let body = attestation(&raw.challenge.nonce, &key, &g);
    let (s, v) = raw_attest(&f, &raw.cookie, &body);
    assert_eq!(s, 200, "{v}");
    // Same body, same session: the challenge is spent.
    let (s, v) = raw_attest(&f, &raw.cookie, &body);
    assert_eq!(s, 401);
    assert_eq!(v["detail"], "attestation failed");
    // Same body on a fresh session: the nonce is not that session's challenge.
    let fresh = raw_auth(&f);
    let (s, _) = raw_attest(&f, &fresh.cookie, &body);
    assert_eq!(s, 401);
    // ... and that fresh session's challenge is spent too (single attempt).
    let (s, _) = raw_attest(
        &f,
        &fresh.cookie,
        &attestation(&fresh.challenge.nonce, &key, &g),
    );
    assert_eq!(s, 401);
    // Evidence whose REPORT_DATA binds another key than the one sent: refused.
    let third = raw_auth(&f);
    let mut swapped = attestation(&third.challenge.nonce, &key, &g);
    let other = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    swapped.runtime_data.tee_pubkey = other.public_key().clone();
    let (s, _) = raw_attest(&f, &third.cookie, &swapped);
    assert_eq!(s, 401);
}

#[test]
fn refuses_expired_session() {
    let f = start(true, Duration::from_secs(1));
    f.set_resource(KEY_PATH, SECRET);
    f.set_policy(KEY_PATH, &standard_policy());
    let g = guest(launch());
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    // Attested session used after its lifetime.
    let raw = raw_auth(&f);
    let (s, _) = raw_attest(
        &f,
        &raw.cookie,
        &attestation(&raw.challenge.nonce, &key, &g),
    );
    assert_eq!(s, 200);
    let (s, jwe) = raw_get(&f, KEY_PATH, ("Cookie", &raw.cookie));
    assert_eq!(s, 200);
    assert_eq!(key.decrypt(&jwe).unwrap(), SECRET);
    // Challenge answered after the session expired.
    let late = raw_auth(&f);
    let late_body = attestation(&late.challenge.nonce, &key, &g);
    std::thread::sleep(Duration::from_millis(1500));
    let (s, _) = raw_get(&f, KEY_PATH, ("Cookie", &raw.cookie));
    assert_eq!(s, 401);
    let (s, _) = raw_attest(&f, &late.cookie, &late_body);
    assert_eq!(s, 401);
}

#[test]
fn client_detects_tampered_jwe() {
    let f = fixture();
    let g = guest(launch());
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    let raw = raw_auth(&f);
    let (s, _) = raw_attest(
        &f,
        &raw.cookie,
        &attestation(&raw.challenge.nonce, &key, &g),
    );
    assert_eq!(s, 200);
    let (s, jwe) = raw_get(&f, KEY_PATH, ("Cookie", &raw.cookie));
    assert_eq!(s, 200);
    assert_eq!(key.decrypt(&jwe).unwrap(), SECRET);
    // kbs-types reads it as a Response (interop shape).
    let typed: kbs_types::Response = serde_json::from_slice(&jwe).unwrap();
    assert_eq!(typed.protected.enc, "A256GCM");
    assert_eq!(typed.protected.alg, "ECDH-ES+A256KW");
    assert!(typed.protected.other_fields.contains_key("epk"));
    let v: Value = serde_json::from_slice(&jwe).unwrap();
    for member in ["ciphertext", "tag", "iv", "encrypted_key", "protected"] {
        let mut t = v.clone();
        let mut bytes = B64U.decode(t[member].as_str().unwrap()).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        t[member] = B64U.encode(bytes).into();
        let err = key.decrypt(&serde_json::to_vec(&t).unwrap()).unwrap_err();
        assert!(matches!(err, ClientError::Jwe(_)), "{member}: {err}");
    }
}

#[test]
fn refuses_tampered_evidence() {
    let f = fixture();
    let g = guest(launch());
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    let raw = raw_auth(&f);
    let mut body = attestation(&raw.challenge.nonce, &key, &g);
    let ev = &mut body.tee_evidence.primary_evidence;
    let mut report = base64::engine::general_purpose::STANDARD
        .decode(ev["report"].as_str().unwrap())
        .unwrap();
    report[0x50] ^= 0x01; // one byte of REPORT_DATA
    ev["report"] = base64::engine::general_purpose::STANDARD
        .encode(report)
        .into();
    let (s, v) = raw_attest(&f, &raw.cookie, &body);
    assert_eq!(s, 401);
    assert_eq!(v["detail"], "attestation failed");
    // Not even the session survives for another try.
    let (s, _) = raw_attest(
        &f,
        &raw.cookie,
        &attestation(&raw.challenge.nonce, &key, &g),
    );
    assert_eq!(s, 401);
}

#[test]
fn refuses_simulated_evidence_without_the_insecure_switch() {
    let f = start(false, Duration::from_secs(300));
    f.set_resource(KEY_PATH, SECRET);
    f.set_policy(KEY_PATH, &standard_policy());
    let err = f
        .client()
        .get_resource(KEY_PATH, &guest(launch()))
        .unwrap_err();
    match err {
        ClientError::Status {
            endpoint,
            status,
            detail,
        } => {
            assert_eq!((endpoint, status), ("attest", 401));
            assert_eq!(detail, "attestation failed");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn refuses_bad_admin_tokens() {
    let f = fixture();
    let path = "/kbs/v0/resource/default/key/admin-test";
    // Signed by another key.
    let other = Admin::new();
    assert_eq!(f.admin_post(path, &other.token(), b"x"), 401);
    // Right key, tampered claims.
    let t = f.admin.token();
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = B64U.encode(br#"{"exp":99999999999,"role":"admin"}"#);
    parts[1] = &forged;
    assert_eq!(f.admin_post(path, &parts.join("."), b"x"), 401);
    // Expired.
    let k = charter_broker::jwt::admin_key_from_pem(&f.admin.private_pem).unwrap();
    let old =
        charter_broker::jwt::sign(&k, &json!({"exp": charter_broker::jwt::now() - 600})).unwrap();
    assert_eq!(f.admin_post(path, &old, b"x"), 401);
    // No token at all; error body is coarse.
    let mut resp = f.http.post(f.url(path)).send(&b"x"[..]).unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(v["detail"], "unauthorized");
    // The right token works, and nothing was written before.
    assert!(!f
        .broker
        .broker()
        .list_resources()
        .unwrap()
        .contains(&"default/key/admin-test".to_owned()));
    assert_eq!(f.admin_post(path, &f.admin.token(), b"x"), 200);
    // A policy that does not compile is refused.
    let bad = json!({"policy": B64U.encode("package policy\nallow if {")});
    assert_eq!(
        f.admin_post(
            "/kbs/v0/resource-policy/default/key/admin-test",
            &f.admin.token(),
            bad.to_string().as_bytes()
        ),
        400
    );
}

#[test]
fn unknown_resource_is_not_found() {
    let f = fixture();
    let g = guest(launch());
    let client = f.client();
    let err = client.get_resource("default/key/nope", &g).unwrap_err();
    assert_eq!(status(err), ("resource", 404));
    // Without a session: 401, not 404 (no existence oracle before attestation).
    let (s, _) = raw_get(&f, "default/key/nope", ("Cookie", "kbs-session-id=00"));
    assert_eq!(s, 401);
    // A resource without any release policy is refused.
    f.set_resource("default/key/nopolicy", b"x");
    assert_eq!(
        status(client.get_resource("default/key/nopolicy", &g).unwrap_err()),
        ("resource", 401)
    );
}

/// One exchange with shortened base64, written to `$CHARTER_KBS_TRANSCRIPT` when set (the
/// transcript in docs/protocols/kbs.md comes from here).
#[test]
fn transcript() {
    fn short(v: &Value) -> Value {
        match v {
            Value::String(s) if s.len() > 40 => {
                Value::String(format!("{}...({} chars)", &s[..24], s.len()))
            }
            Value::Array(a) => Value::Array(a.iter().map(short).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), short(v))).collect())
            }
            other => other.clone(),
        }
    }
    let f = fixture();
    let g = guest(launch());
    let key = TeeKeyPair::generate(KeyAlgorithm::default()).unwrap();
    let mut out = String::new();
    let req = json!({"version": "0.4.0", "tee": "snp", "extra-params": {"supported-hash-algorithms": ["sha384"]}});
    let mut resp = f
        .http
        .post(f.url("/kbs/v0/auth"))
        .content_type("application/json")
        .send(req.to_string())
        .unwrap();
    let cookie_hdr = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let challenge: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    out += &format!(
        "POST /kbs/v0/auth\n{}\n\n200 OK\nSet-Cookie: {cookie_hdr}\n{}\n\n",
        serde_json::to_string_pretty(&req).unwrap(),
        serde_json::to_string_pretty(&challenge).unwrap()
    );
    let cookie = cookie_hdr.split(';').next().unwrap().to_owned();
    let nonce = challenge["nonce"].as_str().unwrap();
    let body = attestation(nonce, &key, &g);
    let rd = binding::runtime_data_bytes(nonce, key.public_key(), "").unwrap();
    out += &format!(
        "REPORT_DATA = SHA-384({}) || 16 zero bytes\n\n",
        String::from_utf8(rd).unwrap()
    );
    let (s, token) = raw_attest(&f, &cookie, &body);
    assert_eq!(s, 200);
    out += &format!(
        "POST /kbs/v0/attest\nCookie: {cookie}\n{}\n\n200 OK\n{}\n\n",
        serde_json::to_string_pretty(&short(&serde_json::to_value(&body).unwrap())).unwrap(),
        serde_json::to_string_pretty(&short(&token)).unwrap()
    );
    let payload: Value = serde_json::from_slice(
        &B64U
            .decode(token["token"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    out += &format!(
        "token payload:\n{}\n\n",
        serde_json::to_string_pretty(&short(&payload)).unwrap()
    );
    let (s, jwe) = raw_get(&f, KEY_PATH, ("Cookie", &cookie));
    assert_eq!(s, 200);
    let jv: Value = serde_json::from_slice(&jwe).unwrap();
    let protected: Value =
        serde_json::from_slice(&B64U.decode(jv["protected"].as_str().unwrap()).unwrap()).unwrap();
    out += &format!(
        "GET /kbs/v0/resource/{KEY_PATH}\nCookie: {cookie}\n\n200 OK\n{}\nprotected header:\n{}\n",
        serde_json::to_string_pretty(&short(&jv)).unwrap(),
        serde_json::to_string_pretty(&protected).unwrap()
    );
    assert_eq!(key.decrypt(&jwe).unwrap(), SECRET);
    if let Some(p) = std::env::var_os("CHARTER_KBS_TRANSCRIPT") {
        std::fs::write(p, out).unwrap();
    }
}

/// A byte relay from a unix socket to `addr`, as the host gives a guest without a network;
/// `tamper` flips one bit of the first broker→guest chunk (inside the TLS record stream).
fn relay(
    path: std::path::PathBuf,
    addr: std::net::SocketAddr,
    tamper: bool,
) -> (
    std::path::PathBuf,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = conns.clone();
    std::thread::spawn(move || {
        for guest in listener.incoming() {
            let Ok(mut guest) = guest else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut broker = std::net::TcpStream::connect(addr).unwrap();
            let (mut g2, mut b2) = (guest.try_clone().unwrap(), broker.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut g2, &mut b2);
                let _ = b2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 10];
                let mut first = true;
                while let Ok(n) = broker.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if tamper && first {
                        buf[n - 1] ^= 1;
                    }
                    first = false;
                    if guest.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = guest.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (path, conns)
}

#[test]
fn client_through_a_host_relay_keeps_tls_end_to_end() {
    let f = fixture();
    let g = guest(launch());
    let dir = tempfile::tempdir().unwrap();
    let ca = f.broker.ca_pem().as_bytes().to_vec();
    let (path, conns) = relay(dir.path().join("relay.sock"), f.broker.addr(), false);
    let client = charter_kbs_client::KbsClient::via_relay(&f.broker.url(), &ca, &path).unwrap();
    assert_eq!(client.get_resource(KEY_PATH, &g).unwrap(), SECRET);
    assert!(
        conns.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "auth, attest, resource"
    );

    // A relay that alters one byte gets a TLS failure, never altered data.
    let (bad, _) = relay(dir.path().join("tamper.sock"), f.broker.addr(), true);
    let client = charter_kbs_client::KbsClient::via_relay(&f.broker.url(), &ca, &bad).unwrap();
    let err = client.get_resource(KEY_PATH, &g).unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");

    // A relay to a server that is not the broker (another CA) is refused by the certificate check.
    let other = start(true, Duration::from_secs(300));
    let (wrong, _) = relay(dir.path().join("wrong.sock"), other.broker.addr(), false);
    let client = charter_kbs_client::KbsClient::via_relay(&f.broker.url(), &ca, &wrong).unwrap();
    assert!(matches!(
        client.get_resource(KEY_PATH, &g).unwrap_err(),
        ClientError::Transport { .. }
    ));

    // No relay listening: a transport error naming the endpoint.
    let no_relay = dir.path().join("absent.sock");
    let client = charter_kbs_client::KbsClient::via_relay(&f.broker.url(), &ca, &no_relay).unwrap();
    assert!(matches!(
        client.get_resource(KEY_PATH, &g).unwrap_err(),
        ClientError::Transport { .. }
    ));
}
