//! The workload-facing key release endpoint: the HTTP API of the ACI secure key release
//! (SKR) sidecar, served by the guest agent on `127.0.0.1:8080` inside the container group,
//! so that workloads written for the sidecar move over unchanged.
//!
//! This crate is linked by the guest agent and is therefore part of the trusted computing
//! base: blocking `std` networking (no async runtime), a deliberately small and strict
//! HTTP/1.1 subset ([`httparse`] for the request head, `Content-Length` bodies only, every
//! read bounded in size and time), a cap on concurrent connections, and no panicking code
//! paths.
//!
//! # API
//!
//! | request | success | notes |
//! |---|---|---|
//! | `GET /status` | `200 {"message":"Status OK"}` | the sidecar's exact text |
//! | `POST /attest/raw {"runtime_data": b64}` | `200 {"report": hex}` | REPORT_DATA = SHA-256(runtime_data) ‖ 32 zero bytes |
//! | `POST /key/release {"kid": path, ...}` | `200 {"key": "<JWK as a JSON string>"}` | see below |
//!
//! Errors are `{"error": "<coarse message>"}`: 400 (malformed request, JSON, base64 or
//! `kid`), 403 (the broker refused), 404 (unknown path or key), 405 (wrong method), 408
//! (request too slow), 411 (no `Content-Length`, including chunked bodies), 413 (body over
//! [`Limits::max_body`]), 417 (an `Expect` other than `100-continue`), 431 (head over
//! [`Limits::max_head`]), 500, 502 (the broker is unreachable or answered outside the
//! protocol), 503 (too many connections). Details stay in the server; clients only see the
//! coarse text.
//!
//! ## `/key/release`
//!
//! `kid` is the KBS resource path `repository/type/tag`. `maa_endpoint`, `akv_endpoint` and
//! `access_token` are accepted (so existing request bodies still parse) and **ignored**: the
//! key broker and the credentials presented to it are fixed by the attested execution policy,
//! never chosen by the workload, so a workload cannot redirect its evidence or keys.
//!
//! As in the sidecar, `key` is a *string* holding the JWK's JSON (the sidecar serialises the
//! JWK and puts the text into the response). The released bytes become the JWK as follows:
//! a JSON object with a string `kty` member is passed through (with `"kid"` added when
//! absent); anything else is a symmetric key in the sidecar's shape for `oct` keys,
//! `{"k": base64url-without-padding(bytes), "kty": "oct"}`.
//!
//! # Design
//!
//! [`serve`] runs an accept loop on its own thread and one thread per connection (at most
//! [`Limits::max_connections`]; further connections wait up to [`Limits::queue_wait`] for a
//! slot, then get 503). Every response closes the connection. The key material comes from a
//! [`Backend`]: [`KbsBackend`] attests to the broker with [`charter_kbs_client::KbsClient`] and
//! a [`charter_attest::TeeProvider`] for every release.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

mod api;
mod backend;
mod http;
mod server;

pub use backend::{Backend, BackendError, KbsBackend};
pub use server::{serve, serve_with};

use std::time::Duration;

/// Where the ACI sidecar listens, and so where workloads expect the endpoint.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Size, time and concurrency limits of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), bytes. Larger: 431.
    pub max_head: usize,
    /// Largest request body, bytes. Larger: 413.
    pub max_body: usize,
    /// Most connections served at once.
    pub max_connections: usize,
    /// How long a connection over `max_connections` waits for a slot before it gets 503.
    pub queue_wait: Duration,
    /// Read and write timeout of every socket operation.
    pub io_timeout: Duration,
    /// Time a client has to send its whole request (checked after every read, so a slow
    /// client is cut off after at most `request_deadline + io_timeout`).
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 << 10,
            max_body: 64 << 10,
            max_connections: 64,
            queue_wait: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(30),
        }
    }
}
