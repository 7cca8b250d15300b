//! The protocol between the untrusted host and the guest agent (DESIGN.md D7).
//!
//! One frame is a 4-byte big-endian length followed by that many bytes of JSON. The host sends
//! [`RequestFrame`]s, the agent answers each with one [`ResponseFrame`] carrying the same `id`.
//! Decoding is strict on both sides: frames over [`MAX_FRAME_BYTES`] are refused before their
//! body is read, unknown fields and unknown operations are errors, and a frame whose `version`
//! is not [`PROTOCOL_VERSION`] is refused with an error naming both versions.
//!
//! Operations that correspond to an enforcement point of the execution policy carry the
//! point's name (`mount_device`, `create_container`, ...); the agent turns them into the
//! policy's `input` itself, adding what only the guest knows (sandbox paths, the user resolved
//! from the container's own `/etc/passwd`, whether scratch is encrypted).
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

mod client;
mod frame;
mod message;
pub mod paths;
pub mod relay;

pub use client::{CallError, Client};
pub use frame::{read_frame, write_frame, FrameError};
pub use message::*;

/// The protocol version both sides must speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either side accepts (a policy may be up to 4 MiB of text, which JSON
/// escaping can grow).
pub const MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

/// Largest stdio chunk in one [`Reply::Stdio`] or [`Request::WriteStdin`] (before base64).
pub const MAX_STDIO_CHUNK: u32 = 256 * 1024;
