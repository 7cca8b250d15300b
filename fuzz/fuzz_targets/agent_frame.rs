//! Untrusted bytes on the host -> agent channel: any stream of frames decodes to requests or
//! typed errors, never a panic, and a recoverable error leaves the stream readable.
#![no_main]

use std::io::Cursor;

use charter_agent_api::{read_frame, RequestFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = Cursor::new(data);
    for _ in 0..64 {
        match read_frame::<RequestFrame>(&mut stream) {
            Ok(frame) => {
                let _ = frame.request.op();
            }
            Err(e) if e.is_recoverable() => {}
            Err(_) => break,
        }
    }
});
