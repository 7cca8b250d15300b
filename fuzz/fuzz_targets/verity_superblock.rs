//! Fuzzes the dm-verity superblock parser: untrusted bytes from a layer image's hash area.
//! `decode` must never panic; whatever it accepts must encode back to the same 512 bytes and
//! decode to the same value.
#![no_main]

use charter_verity::Superblock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::decode(data) {
        let encoded = sb.encode();
        assert_eq!(&encoded[..], &data[..encoded.len()]);
        let again = Superblock::decode(&encoded).expect("re-decoding an encoded superblock");
        assert_eq!(again, sb);
        // The parameters it describes are valid tree parameters.
        sb.params().validate().expect("decoded parameters validate");
    }
});
