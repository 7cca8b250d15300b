//! charter-image against real artefacts: layouts written here, archives written by skopeo,
//! layer images checked by veritysetup and fsck.erofs.

mod support;

use std::fs;
use std::num::NonZeroUsize;
use std::process::Command;

use charter_image::{
    build_layer_image, layer_root_hash, measure, verify_layer_image, Cache, Error, ImageSource,
    Platform, Sha256Digest,
};
use support::{sample_tar, Blob, LayoutBuilder};

fn threads(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn direct_root(tar: &[u8]) -> String {
    let f = tempfile::tempfile().unwrap();
    build_layer_image(tar, &f, threads(2), "direct")
        .unwrap()
        .root_hash
        .to_string()
}

fn three_layer_layout(dir: &std::path::Path) -> Vec<Vec<u8>> {
    layout_with(dir, [Blob::Gzip, Blob::Zstd, Blob::Plain])
}

fn layout_with(dir: &std::path::Path, kinds: [Blob; 3]) -> Vec<Vec<u8>> {
    let tars = vec![
        sample_tar(&[
            ("bin/tool", b"#!/bin/sh\necho base\n"),
            ("etc/os-release", b"ID=demo\n"),
        ]),
        sample_tar(&[
            ("srv/data.bin", &vec![7u8; 300_000]),
            ("etc/.wh.os-release", b""),
        ]),
        sample_tar(&[("srv/app/main", b"app")]),
    ];
    LayoutBuilder::new(dir)
        .image(
            "v1",
            &[
                (tars[0].clone(), kinds[0]),
                (tars[1].clone(), kinds[1]),
                (tars[2].clone(), kinds[2]),
            ],
        )
        .write();
    tars
}

#[test]
fn layout_layers_measure_like_a_direct_build_in_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let tars = three_layer_layout(dir.path());
    let image = ImageSource::parse(&format!("oci:{}:v1", dir.path().display()))
        .unwrap()
        .open(&Platform::default())
        .unwrap();
    assert_eq!(image.layers.len(), 3);
    let scratch = tempfile::tempdir().unwrap();
    let got = measure(&image, None, scratch.path(), threads(2), &()).unwrap();
    for (m, tar) in got.iter().zip(&tars) {
        assert_eq!(m.diff_id, Sha256Digest::of(tar));
        assert_eq!(m.tar_size, tar.len() as u64);
        assert_eq!(m.root_hash, direct_root(tar));
        assert!(!m.cached);
    }
    // Different layers, different roots.
    assert_ne!(got[0].root_hash, got[1].root_hash);
}

#[test]
fn cache_serves_second_measurement_without_reading_layers() {
    let dir = tempfile::tempdir().unwrap();
    three_layer_layout(dir.path());
    let src = ImageSource::parse(&format!("{}:v1", dir.path().display())).unwrap();
    let image = src.open(&Platform::default()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let first = measure(&image, Some(&cache), cache_dir.path(), threads(1), &()).unwrap();
    // Remove the layer blobs: a cache hit must not need them.
    for layer in &image.layers {
        fs::remove_file(
            dir.path()
                .join("blobs/sha256")
                .join(layer.blob_digest.unwrap().hex()),
        )
        .unwrap();
    }
    let second = measure(&image, Some(&cache), cache_dir.path(), threads(1), &()).unwrap();
    assert!(second.iter().all(|m| m.cached));
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((a.diff_id, &a.root_hash), (b.diff_id, &b.root_hash));
    }
    // Without the cache, the missing blobs are an error naming the file.
    let err = measure(&image, None, cache_dir.path(), threads(1), &()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn tampered_layer_blob_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    three_layer_layout(dir.path());
    let image = ImageSource::parse(&format!("oci:{}:v1", dir.path().display()))
        .unwrap()
        .open(&Platform::default())
        .unwrap();
    // Replace layer 2 (plain tar) with different bytes of the same length.
    let layer = &image.layers[2];
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(layer.blob_digest.unwrap().hex());
    let mut bytes = fs::read(&path).unwrap();
    bytes[600] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let err = measure(&image, Some(&cache), cache_dir.path(), threads(1), &()).unwrap_err();
    match err {
        Error::DigestMismatch { what, expected, .. } => {
            assert_eq!(what, "layer 2");
            assert_eq!(expected, layer.blob_digest.unwrap());
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        cache.get(&layer.diff_id).is_none(),
        "a refused layer must not be cached"
    );
    assert!(cache.get(&image.layers[0].diff_id).is_some());
}

#[test]
fn wrong_diff_id_in_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar(&[("a", b"a")]);
    let other = sample_tar(&[("b", b"b")]);
    LayoutBuilder::new(dir.path())
        .image("t", &[(tar, Blob::Gzip)])
        .override_diff_ids(vec![Sha256Digest::of(&other)])
        .write();
    let image = ImageSource::parse(&format!("oci:{}:t", dir.path().display()))
        .unwrap()
        .open(&Platform::default())
        .unwrap();
    let err = measure(&image, None, dir.path(), threads(1), &()).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what == "layer 0 diff_id"),
        "{err}"
    );
}

#[test]
fn metadata_problems_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar(&[("a", b"a")]);
    LayoutBuilder::new(dir.path())
        .image("one", &[(tar.clone(), Blob::Gzip)])
        .image("two", &[(tar, Blob::Plain)])
        .write();
    let open = |spec: &str| ImageSource::parse(spec).unwrap().open(&Platform::default());
    let base = dir.path().display().to_string();
    match open(&format!("oci:{base}")).unwrap_err() {
        Error::Ambiguous { count, tags } => {
            assert_eq!(count, 2);
            assert_eq!(tags, ["one", "two"]);
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        open(&format!("oci:{base}:three")).unwrap_err(),
        Error::TagNotFound { .. }
    ));

    // A config blob whose bytes do not match its digest.
    let image = open(&format!("oci:{base}:one")).unwrap();
    let config = dir
        .path()
        .join("blobs/sha256")
        .join(image.config_digest.hex());
    let mut bytes = fs::read(&config).unwrap();
    bytes.push(b' ');
    fs::write(&config, &bytes).unwrap();
    let err = open(&format!("oci:{base}:one")).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what == "config"),
        "{err}"
    );
    fs::remove_file(&config).unwrap();
    assert!(matches!(
        open(&format!("oci:{base}:one")).unwrap_err(),
        Error::MissingBlob { .. }
    ));

    // Garbage index, and a directory that is not a layout at all.
    fs::write(dir.path().join("index.json"), b"{not json").unwrap();
    assert!(matches!(
        open(&format!("oci:{base}:one")).unwrap_err(),
        Error::Json { .. }
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        open(&empty.path().display().to_string()).unwrap_err(),
        Error::UnknownSource(_)
    ));
}

#[test]
fn multi_platform_index_picks_the_wanted_platform() {
    let dir = tempfile::tempdir().unwrap();
    let amd = sample_tar(&[("arch", b"amd64")]);
    let arm = sample_tar(&[("arch", b"arm64")]);
    LayoutBuilder::new(dir.path())
        .multi_arch("multi", &[("amd64", amd.clone()), ("arm64", arm.clone())])
        .write();
    let src = ImageSource::parse(&format!("oci:{}:multi", dir.path().display())).unwrap();
    let image = src.open(&Platform::default()).unwrap();
    assert_eq!(image.layers[0].diff_id, Sha256Digest::of(&amd));
    let image = src.open(&"linux/arm64".parse().unwrap()).unwrap();
    assert_eq!(image.layers[0].diff_id, Sha256Digest::of(&arm));
    match src.open(&"linux/s390x".parse().unwrap()).unwrap_err() {
        Error::NoMatchingPlatform { wanted, available } => {
            assert_eq!(wanted, "linux/s390x");
            assert_eq!(available, ["linux/amd64", "linux/arm64"]);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn skopeo_docker_archive_measures_like_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    // Docker archives cannot hold zstd layers (skopeo refuses to convert them).
    layout_with(dir.path(), [Blob::Gzip, Blob::Plain, Blob::Gzip]);
    let archive = dir.path().join("image.tar");
    let status = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:v1", dir.path().display()))
        .arg(format!("docker-archive:{}:demo/app:v1", archive.display()))
        .status()
        .expect("skopeo is installed by scripts/test.sh");
    assert!(status.success());
    let scratch = tempfile::tempdir().unwrap();
    let layout = ImageSource::parse(&format!("oci:{}:v1", dir.path().display()))
        .unwrap()
        .open(&Platform::default())
        .unwrap();
    let want = measure(&layout, None, scratch.path(), threads(2), &()).unwrap();
    for spec in [
        format!("docker-archive:{}", archive.display()),
        format!("docker-archive:{}:demo/app:v1", archive.display()),
        archive.display().to_string(),
    ] {
        let image = ImageSource::parse(&spec)
            .unwrap()
            .open(&Platform::default())
            .unwrap();
        let got = measure(&image, None, scratch.path(), threads(2), &()).unwrap();
        let roots = |v: &[charter_image::LayerMeasurement]| {
            v.iter()
                .map(|m| (m.diff_id, m.root_hash.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(roots(&got), roots(&want), "{spec}");
    }
    let err = ImageSource::parse(&format!("docker-archive:{}:nope:v9", archive.display()))
        .unwrap()
        .open(&Platform::default())
        .unwrap_err();
    assert!(matches!(err, Error::TagNotFound { .. }), "{err}");
}

#[test]
fn layer_image_verifies_with_veritysetup_and_fsck_and_names_a_flipped_block() {
    let tar = sample_tar(&[("big", &vec![0x5au8; 1 << 20]), ("small", b"s")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.img");
    let f = fs::File::create_new(&path).unwrap();
    let built = build_layer_image(&tar[..], &f, threads(2), "test").unwrap();
    drop(f);
    assert_eq!(built.data_size % 4096, 0);
    // Measuring without writing the image gives the same root (checked by veritysetup below).
    for n in [1, 2] {
        let root = layer_root_hash(&tar[..], threads(n), "root").unwrap();
        assert_eq!(root.root_hash, built.root_hash);
        assert_eq!(root.data_size, built.data_size);
        assert_eq!(root.erofs, built.erofs);
    }
    let fsck = Command::new("fsck.erofs").arg(&path).output().unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    let vs = Command::new("veritysetup")
        .args(["verify"])
        .arg(&path)
        .arg(&path)
        .arg(built.root_hash.to_string())
        .arg(format!("--hash-offset={}", built.data_size))
        .output()
        .unwrap();
    assert!(
        vs.status.success(),
        "{}",
        String::from_utf8_lossy(&vs.stderr)
    );

    let f = fs::File::open(&path).unwrap();
    assert_eq!(
        verify_layer_image(&f, &built.root_hash, threads(2), "test").unwrap(),
        built.data_size
    );
    // Byte-identical on rebuild.
    let again = tempfile::tempfile().unwrap();
    build_layer_image(&tar[..], &again, threads(1), "again").unwrap();
    assert_eq!(fs::read(&path).unwrap(), support::read_all(&again));

    // Flip one byte in the middle of the data area: the error names that block.
    let mut bytes = fs::read(&path).unwrap();
    let block = built.data_size / 4096 / 2;
    bytes[(block * 4096 + 17) as usize] ^= 0x80;
    let bad = dir.path().join("bad.img");
    fs::write(&bad, &bytes).unwrap();
    let err = verify_layer_image(
        &fs::File::open(&bad).unwrap(),
        &built.root_hash,
        threads(2),
        "bad",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("block {block}")), "{msg}");
}
