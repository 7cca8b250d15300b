//! Builds real charter layer images (EROFS + appended dm-verity superblock and tree) with the
//! workspace's own writers, laid out exactly as `charter_image::build_layer_image` does.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use charter_verity::{FormatOptions, VerityParams};

/// One tar entry.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
}

/// A built layer image.
pub struct Layer {
    pub path: PathBuf,
    pub root_hash: [u8; 32],
    pub data_size: u64,
}

pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Writes the layer image of `entries` to `dir/name`.
pub fn build_layer(dir: &Path, name: &str, entries: &[Entry<'_>]) -> Layer {
    let path = dir.join(name);
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let tar = tar(entries);
    let summary = {
        let mut w = BufWriter::new(&out);
        let s = charter_erofs::build_from_tar(
            tar.as_slice(),
            &mut w,
            &charter_erofs::BuildOptions::default(),
        )
        .unwrap();
        w.flush().unwrap();
        s
    };
    let data_size = summary.image_size;
    let formatted = charter_verity::format(
        &out,
        data_size,
        &out,
        data_size,
        &VerityParams::default(),
        &FormatOptions {
            threads: NonZeroUsize::MIN,
            superblock: Some([0; 16]),
        },
    )
    .unwrap();
    let root_hash: [u8; 32] = formatted.root_hash.as_bytes().try_into().unwrap();
    // The image as a whole verifies (and so is a genuine layer image).
    charter_verity::verify_with_superblock(
        &out,
        &out,
        data_size,
        &formatted.root_hash,
        NonZeroUsize::MIN,
    )
    .unwrap();
    Layer {
        path,
        root_hash,
        data_size,
    }
}

/// A base layer with busybox, a text file and a directory.
pub fn base_layer(dir: &Path) -> (Layer, Vec<u8>) {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layer = build_layer(
        dir,
        "base.img",
        &[
            Entry::Dir("bin"),
            Entry::File("bin/busybox", &busybox, 0o755),
            Entry::Dir("etc"),
            Entry::File("etc/motd", b"hello from the verified layer\n", 0o644),
            Entry::File("etc/gone", b"whited out by the upper layer\n", 0o644),
        ],
    );
    (layer, busybox)
}

pub fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}
