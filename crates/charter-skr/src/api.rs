//! The sidecar's routes: `GET /status`, `POST /attest/raw`, `POST /key/release`.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64U};
use base64::Engine as _;
use charter_kbs_client::ResourcePath;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError};
use crate::http::Response;

/// The sidecar's `/status` text (its README says "STATUS OK"; the code answers this).
pub(crate) const STATUS_OK: &str = "Status OK";

/// `POST /attest/raw` body. Unknown members are ignored, as gin's binding does.
#[derive(Deserialize)]
struct RawAttest {
    runtime_data: String,
}

/// `POST /key/release` body. Only `kid` is used; see the crate documentation.
#[derive(Deserialize)]
struct KeyRelease {
    #[serde(default)]
    #[allow(dead_code)]
    maa_endpoint: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    akv_endpoint: Option<String>,
    kid: String,
    #[serde(default)]
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Route one request.
pub(crate) fn handle(backend: &dyn Backend, method: &str, path: &str, body: &[u8]) -> Response {
    match (path, method) {
        ("/status", "GET") => Response::json(200, &json!({ "message": STATUS_OK })),
        ("/attest/raw", "POST") => attest_raw(backend, body),
        ("/key/release", "POST") => key_release(backend, body),
        ("/status", _) => method_not_allowed("GET"),
        ("/attest/raw" | "/key/release", _) => method_not_allowed("POST"),
        _ => Response::error(404, "not found"),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        allow: Some(allow),
        ..Response::error(405, "method not allowed")
    }
}

fn bad_request(message: &str) -> Response {
    Response::error(400, message)
}

fn backend_error(e: &BackendError, what: &str) -> Response {
    let message = match e {
        BackendError::Refused(_) => "key release refused by the key broker",
        BackendError::Unreachable(_) => "key broker unavailable",
        BackendError::NotFound(_) => "key not found",
        BackendError::Other(_) => what,
    };
    Response::error(e.status(), message)
}

/// REPORT_DATA for `runtime_data`, as the sidecar computes it: SHA-256 ‖ 32 zero bytes.
pub(crate) fn report_data(runtime_data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let digest = Sha256::digest(runtime_data);
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

fn attest_raw(backend: &dyn Backend, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<RawAttest>(body) else {
        return bad_request("invalid request format");
    };
    // gin's `binding:"required"` refuses the empty string too.
    if req.runtime_data.is_empty() {
        return bad_request("invalid request format: runtime_data is required");
    }
    let Ok(runtime_data) = B64.decode(req.runtime_data.as_bytes()) else {
        return bad_request("decoding base64-encoded runtime data of request failed");
    };
    match backend.report(report_data(&runtime_data)) {
        Ok(report) => Response::json(200, &json!({ "report": hex::encode(report) })),
        Err(e) => backend_error(&e, "attestation report unavailable"),
    }
}

fn key_release(backend: &dyn Backend, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<KeyRelease>(body) else {
        return bad_request("invalid request format");
    };
    let Ok(kid) = ResourcePath::parse(&req.kid) else {
        return bad_request("invalid kid: expected repository/type/tag");
    };
    let key = match backend.release(kid.as_str()) {
        Ok(key) => key,
        Err(e) => return backend_error(&e, "key release failed"),
    };
    // As the sidecar: `key` is the JWK serialised to a JSON string.
    Response::json(200, &json!({ "key": jwk(kid.as_str(), &key).to_string() }))
}

/// The JWK for released bytes: a JSON object with a string `kty` as is (plus `kid` when
/// absent), otherwise an `oct` key in the sidecar's shape.
pub(crate) fn jwk(kid: &str, key: &[u8]) -> Value {
    if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(key) {
        if map.get("kty").is_some_and(Value::is_string) {
            map.entry("kid")
                .or_insert_with(|| Value::String(kid.to_owned()));
            return Value::Object(map);
        }
    }
    json!({ "k": B64U.encode(key), "kty": "oct" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Failure = fn() -> BackendError;

    #[derive(Default)]
    struct Fake {
        key: Vec<u8>,
        fail: Option<Failure>,
        seen: Mutex<Vec<String>>,
    }

    impl Backend for Fake {
        fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, BackendError> {
            match self.fail {
                Some(f) => Err(f()),
                None => Ok(report_data.to_vec()),
            }
        }
        fn release(&self, kid: &str) -> Result<Vec<u8>, BackendError> {
            self.seen.lock().unwrap().push(kid.to_owned());
            match self.fail {
                Some(f) => Err(f()),
                None => Ok(self.key.clone()),
            }
        }
    }

    fn body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn status_and_routing() {
        let b = Fake::default();
        let r = handle(&b, "GET", "/status", b"");
        assert_eq!((r.status, body(&r)), (200, json!({"message": "Status OK"})));
        let r = handle(&b, "POST", "/status", b"");
        assert_eq!((r.status, r.allow), (405, Some("GET")));
        let r = handle(&b, "GET", "/key/release", b"");
        assert_eq!((r.status, r.allow), (405, Some("POST")));
        assert_eq!(handle(&b, "get", "/status", b"").status, 405);
        assert_eq!(handle(&b, "GET", "/status/", b"").status, 404);
        assert_eq!(handle(&b, "POST", "/attest/maa", b"{}").status, 404);
        assert_eq!(
            body(&handle(&b, "GET", "/x", b"")),
            json!({"error": "not found"})
        );
    }

    #[test]
    fn attest_raw_binds_sha256_of_runtime_data() {
        let b = Fake::default();
        let r = handle(
            &b,
            "POST",
            "/attest/raw",
            br#"{"runtime_data":"aGVsbG8=","x":1}"#,
        );
        assert_eq!(r.status, 200);
        let report = hex::decode(body(&r)["report"].as_str().unwrap()).unwrap();
        assert_eq!(&report[..32], Sha256::digest(b"hello").as_slice());
        assert_eq!(&report[32..], &[0u8; 32]);
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"runtime_data":""}"#,
            br#"{"runtime_data":1}"#,
            br#"{"runtime_data":"aGVsbG8"}"#,
            br#"{"runtime_data":"!!!!"}"#,
            b"[]",
        ] {
            let r = handle(&b, "POST", "/attest/raw", bad);
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
            assert!(body(&r)["error"].is_string());
        }
    }

    #[test]
    fn key_release_shapes() {
        let b = Fake {
            key: vec![0xff, 0x00, 0x10],
            ..Fake::default()
        };
        let req =
            br#"{"maa_endpoint":"m","akv_endpoint":"a","kid":"default/key/k","access_token":"t"}"#;
        let r = handle(&b, "POST", "/key/release", req);
        assert_eq!(r.status, 200);
        let key: Value = serde_json::from_str(body(&r)["key"].as_str().unwrap()).unwrap();
        assert_eq!(key, json!({"k": "_wAQ", "kty": "oct"}));
        assert_eq!(*b.seen.lock().unwrap(), ["default/key/k"]);

        let b = Fake {
            key: br#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#.to_vec(),
            ..Fake::default()
        };
        let r = handle(&b, "POST", "/key/release", br#"{"kid":"r/t/tag"}"#);
        let key: Value = serde_json::from_str(body(&r)["key"].as_str().unwrap()).unwrap();
        assert_eq!(
            key,
            json!({"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"r/t/tag"})
        );
        let b = Fake {
            key: br#"{"kty":"oct","k":"AA","kid":"mine"}"#.to_vec(),
            ..Fake::default()
        };
        let r = handle(&b, "POST", "/key/release", br#"{"kid":"r/t/tag"}"#);
        let key: Value = serde_json::from_str(body(&r)["key"].as_str().unwrap()).unwrap();
        assert_eq!(key["kid"], "mine");
        // JSON that is not a JWK is just bytes.
        assert_eq!(jwk("a/b/c", br#"{"kty":1}"#)["kty"], "oct");
        assert_eq!(jwk("a/b/c", b"[1]")["k"], B64U.encode(b"[1]"));
    }

    #[test]
    fn key_release_refusals() {
        let b = Fake::default();
        for bad in [
            &br#"{"maa_endpoint":"m"}"#[..],
            br#"{"kid":"nope"}"#,
            br#"{"kid":"a/../b"}"#,
            br#"{"kid":"a/b/c","maa_endpoint":5}"#,
            b"{",
        ] {
            assert_eq!(handle(&b, "POST", "/key/release", bad).status, 400);
        }
        assert!(b.seen.lock().unwrap().is_empty());
        let cases: [(Failure, u16, &str); 4] = [
            (
                || BackendError::Refused("policy".into()),
                403,
                "key release refused by the key broker",
            ),
            (
                || BackendError::Unreachable("down".into()),
                502,
                "key broker unavailable",
            ),
            (|| BackendError::NotFound("x".into()), 404, "key not found"),
            (
                || BackendError::Other("secret detail".into()),
                500,
                "key release failed",
            ),
        ];
        for (fail, status, message) in cases {
            let b = Fake {
                fail: Some(fail),
                ..Fake::default()
            };
            let r = handle(&b, "POST", "/key/release", br#"{"kid":"a/b/c"}"#);
            assert_eq!((r.status, body(&r)), (status, json!({ "error": message })));
        }
        let b = Fake {
            fail: Some(|| BackendError::Other("tee".into())),
            ..Fake::default()
        };
        let r = handle(&b, "POST", "/attest/raw", br#"{"runtime_data":"AA=="}"#);
        assert_eq!(r.status, 500);
    }
}
