//! Fuzzes the tar -> EROFS path: arbitrary bytes as a layer tar. Building must never panic;
//! whatever image it produces must open, walk and read back with the bounded reader.
#![no_main]

use std::io::Cursor;

use charter_erofs::{build_from_tar, BuildOptions, EntryKind, Image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut opts = BuildOptions::default();
    opts.max_inodes = 1 << 16;
    let mut out = Cursor::new(Vec::new());
    if build_from_tar(data, &mut out, &opts).is_err() {
        return;
    }
    let img = out.into_inner();
    assert_eq!(img.len() % 4096, 0, "image length is block aligned");
    let image = Image::open(img.as_slice()).expect("an image we built opens");
    let entries = image.walk().expect("an image we built walks");
    for e in entries {
        if let EntryKind::File { size } = e.kind {
            let content = image.read_file(e.nid, 1 << 24).expect("file content reads");
            assert_eq!(content.len() as u64, size);
        }
    }
});
