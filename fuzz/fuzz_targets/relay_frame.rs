//! Untrusted bytes on a key broker port (host <-> guest): any buffer decodes to frames or a
//! typed error, never a panic; the streaming reader agrees with the buffer decoder; a decoded
//! frame (but an empty data frame) re-encodes to the bytes it came from; any sealed-disk header parses or is refused.
#![no_main]

use std::io::Cursor;

use charter_agent_api::relay::{self, sealed_disk, RelayFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    let mut stream = Cursor::new(data);
    for _ in 0..64 {
        let rest = data.get(at..).unwrap_or_default();
        let streamed = relay::read_relay_frame(&mut stream);
        match relay::decode(rest) {
            Ok(Some((frame, used))) => {
                let mut again = Vec::new();
                match &frame {
                    RelayFrame::Data(d) => relay::encode_data(d, &mut again),
                    RelayFrame::Open => relay::encode_control(true, &mut again),
                    RelayFrame::Close => relay::encode_control(false, &mut again),
                }
                // An empty data frame decodes (and is harmless) but is never encoded.
                if !matches!(&frame, RelayFrame::Data(d) if d.is_empty()) {
                    assert_eq!(again.as_slice(), &rest[..used]);
                }
                assert_eq!(streamed.ok().flatten().as_ref(), Some(&frame));
                at += used;
            }
            Ok(None) => {
                assert!(!matches!(streamed, Ok(Some(_))));
                break;
            }
            Err(_) => {
                assert!(streamed.is_err());
                break;
            }
        }
    }
    if let Some(h) = data.get(..sealed_disk::HEADER_LEN) {
        let h: [u8; sealed_disk::HEADER_LEN] = h.try_into().unwrap();
        if let Some(len) = sealed_disk::parse(&h) {
            assert_eq!(sealed_disk::parse(&sealed_disk::header(len)), Some(len));
        }
    }
});
