//! Strict decoding: every malformed frame is a typed error, never a panic or a guess.

use std::io::Cursor;

use charter_agent_api::*;
use serde_json::json;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn decode(body: serde_json::Value) -> Result<RequestFrame, FrameError> {
    read_frame(&mut Cursor::new(frame(body.to_string().as_bytes())))
}

#[test]
fn roundtrip_every_request_kind() {
    let reqs = vec![
        Request::Status {},
        Request::SetPolicy {
            policy: "package policy\n".into(),
        },
        Request::MountDevice {
            source: "layers/0.img".into(),
            target: "/run/layers/p0".into(),
            device_hash: "ab".repeat(32),
        },
        Request::CreateContainer(CreateContainer {
            container_id: "c1".into(),
            args: vec!["/bin/sh".into()],
            env: vec!["A=b".into()],
            working_dir: "/".into(),
            mounts: vec![],
            privileged: false,
            no_new_privileges: true,
            user: UserSpec::default(),
            capabilities: Some(Capabilities::default()),
            seccomp_profile_sha256: String::new(),
            stdin: false,
        }),
        Request::ReadStdio {
            container_id: "c1".into(),
            process_id: Some(3),
            stream: StdioStream::Stderr,
            max_bytes: 10,
        },
        Request::RuntimeLogging { max_lines: 5 },
    ];
    for (i, r) in reqs.into_iter().enumerate() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &RequestFrame::new(i as u64, r.clone())).unwrap();
        let back: RequestFrame = read_frame(&mut Cursor::new(buf)).unwrap();
        assert_eq!(back.request, r);
        assert_eq!(back.id, i as u64);
    }
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let e = decode(json!({"version": 1, "id": 1, "request": {"op": "status"}, "extra": 1}));
    assert!(matches!(e, Err(FrameError::Malformed(m)) if m.contains("extra")));
    let e = decode(
        json!({"version": 1, "id": 1, "request": {"op": "unmount_device", "target": "/x", "force": true}}),
    );
    assert!(matches!(e, Err(FrameError::Malformed(m)) if m.contains("force")));
    let e = decode(
        json!({"version": 1, "id": 1, "request": {"op": "create_container",
        "container_id": "c", "args": ["x"], "working_dir": "/", "user": {"user": "0", "hooks": []}}}),
    );
    assert!(matches!(e, Err(FrameError::Malformed(m)) if m.contains("hooks")));
}

#[test]
fn unknown_op_and_wrong_types_are_refused() {
    let e = decode(json!({"version": 1, "id": 1, "request": {"op": "become_root"}}));
    assert!(matches!(e, Err(FrameError::Malformed(m)) if m.contains("become_root")));
    let e = decode(
        json!({"version": 1, "id": 1, "request": {"op": "wait_process", "container_id": 5}}),
    );
    assert!(matches!(e, Err(FrameError::Malformed(_))));
    let e = decode(json!([1, 2]));
    assert!(matches!(e, Err(FrameError::Malformed(m)) if m.contains("not a JSON object")));
}

#[test]
fn version_mismatch_names_both_versions() {
    let e =
        decode(json!({"version": 2, "id": 1, "request": {"op": "status", "new": 1}})).unwrap_err();
    assert!(matches!(e, FrameError::Version { got: 2, want: 1 }));
    assert!(e.is_recoverable());
    assert!(e.to_string().contains("version 2"));
    let e = decode(json!({"id": 1, "request": {"op": "status"}})).unwrap_err();
    assert!(e.to_string().contains("no `version`"));
}

#[test]
fn oversized_frames_are_refused_before_reading_the_body() {
    let mut bytes = (MAX_FRAME_BYTES + 1).to_be_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let e = read_frame::<RequestFrame>(&mut Cursor::new(bytes)).unwrap_err();
    assert!(matches!(e, FrameError::TooLarge { .. }));
    assert!(!e.is_recoverable());
}

#[test]
fn truncated_frames_and_garbage() {
    let e = read_frame::<RequestFrame>(&mut Cursor::new(vec![0u8, 0])).unwrap_err();
    assert!(matches!(
        e,
        FrameError::Truncated {
            expected: 4,
            got: 2
        }
    ));
    let mut f = frame(br#"{"version":1,"id":1,"request":{"op":"status"}}"#);
    f.truncate(f.len() - 3);
    let e = read_frame::<RequestFrame>(&mut Cursor::new(f)).unwrap_err();
    assert!(matches!(e, FrameError::Truncated { .. }));
    let e = read_frame::<RequestFrame>(&mut Cursor::new(Vec::new())).unwrap_err();
    assert!(matches!(e, FrameError::Closed));
    let e = read_frame::<RequestFrame>(&mut Cursor::new(frame(b"\xff\xfe{"))).unwrap_err();
    assert!(matches!(e, FrameError::Malformed(_)));
}

#[test]
fn responses_roundtrip() {
    let outs = vec![
        Outcome::Ok {
            reply: Reply::Exit {
                code: Some(7),
                signal: None,
            },
        },
        Outcome::Denied(Denial {
            rule: "create_container".into(),
            explanation: "x".into(),
            decision: json!({"decision": "deny"}),
        }),
        Outcome::Error(AgentError {
            kind: ErrorKind::Closed,
            message: "no policy".into(),
        }),
    ];
    for o in outs {
        let mut buf = Vec::new();
        write_frame(&mut buf, &ResponseFrame::new(9, o.clone())).unwrap();
        let back: ResponseFrame = read_frame(&mut Cursor::new(buf)).unwrap();
        assert_eq!(back.outcome, o);
    }
}
