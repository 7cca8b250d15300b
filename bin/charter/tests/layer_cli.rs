//! `charter layer` and `charter image` as a user runs them: the built binary, real files,
//! veritysetup as the independent check.

use std::path::Path;
use std::process::{Command, Output};

fn charter(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charter"))
        .args(args)
        .env("CHARTER_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_tar(path: &Path, files: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn build_then_verify_and_veritysetup_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    write_tar(
        dir.path().join("l.tar").as_path(),
        &[("etc/hello", b"hi\n"), ("big", &[1u8; 70_000])],
    );
    let out = charter(
        &["layer", "build", "-q", &p("l.tar"), "-o", &p("l.img")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let root = stdout(&out);
    assert_eq!(root.len(), 64, "{root}");

    let out = charter(
        &[
            "layer",
            "verify",
            "-q",
            "--json",
            &p("l.img"),
            "--root-hash",
            &root,
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["verified"], true);
    let data_size = v["data_size"].as_u64().unwrap();
    let vs = Command::new("veritysetup")
        .args(["verify", &p("l.img"), &p("l.img"), &root])
        .arg(format!("--hash-offset={data_size}"))
        .output()
        .unwrap();
    assert!(vs.status.success(), "{}", stderr(&vs));

    // The same tar, gzip-compressed, gives the same root.
    let gz = Command::new("gzip")
        .args(["-k", "-n", &p("l.tar")])
        .status()
        .unwrap();
    assert!(gz.success());
    let out = charter(
        &["layer", "build", "-q", &p("l.tar.gz"), "-o", &p("l2.img")],
        dir.path(),
    );
    assert_eq!(stdout(&out), root);
    assert_eq!(
        std::fs::read(p("l.img")).unwrap(),
        std::fs::read(p("l2.img")).unwrap()
    );

    // Another root hash fails; so does a flipped byte, naming its block.
    let wrong = format!("{}0", &root[..63]);
    let wrong = if wrong == root {
        format!("{}1", &root[..63])
    } else {
        wrong
    };
    let out = charter(
        &["layer", "verify", &p("l.img"), "--root-hash", &wrong],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("root hash mismatch"),
        "{}",
        stderr(&out)
    );
    let mut bytes = std::fs::read(p("l.img")).unwrap();
    bytes[4096 * 2 + 5] ^= 1;
    std::fs::write(p("bad.img"), &bytes).unwrap();
    let out = charter(
        &["layer", "verify", &p("bad.img"), "--root-hash", &root],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("data block 2"), "{}", stderr(&out));
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let out = charter(
        &["layer", "build", &p("missing.tar"), "-o", &p("x.img")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.tar"), "{}", stderr(&out));

    // A tar with a corrupted header checksum: refused, and no x.img appears.
    write_tar(dir.path().join("c.tar").as_path(), &[("a", b"a")]);
    let mut bytes = std::fs::read(p("c.tar")).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(p("c.tar"), &bytes).unwrap();
    let out = charter(
        &["layer", "build", &p("c.tar"), "-o", &p("x.img")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!dir.path().join("x.img").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );

    let out = charter(
        &["layer", "verify", &p("c.tar"), "--root-hash", "xyz"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--root-hash"), "{}", stderr(&out));
    let out = charter(
        &[
            "layer",
            "build",
            &p("c.tar"),
            "-o",
            &p("x.img"),
            "--threads",
            "0",
        ],
        dir.path(),
    );
    assert!(stderr(&out).contains("--threads"), "{}", stderr(&out));
    let out = charter(&["image", "measure", &p("nothing-here")], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing-here"), "{}", stderr(&out));
    let out = charter(&["layer", "frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn image_measure_layout_json_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    write_tar(dir.path().join("a.tar").as_path(), &[("bin/a", b"a")]);
    write_tar(dir.path().join("b.tar").as_path(), &[("srv/b", b"b")]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mkimage.py");
    let made = Command::new("python3")
        .args([
            script,
            &p("layout"),
            "t1",
            &format!("{}:gzip", p("a.tar")),
            &format!("{}:zstd", p("b.tar")),
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let cache = dir.path().join("cache");
    let src = format!("oci:{}:t1", p("layout"));
    let first = charter(&["image", "measure", "--json", &src], &cache);
    assert!(first.status.success(), "{}", stderr(&first));
    let first: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    let layers = first["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (l, tar) in layers.iter().zip(["a.tar", "b.tar"]) {
        let built = charter(
            &[
                "layer",
                "build",
                "-q",
                &p(tar),
                "-o",
                &p(&format!("{tar}.img")),
            ],
            &cache,
        );
        assert_eq!(l["root_hash"].as_str().unwrap(), stdout(&built));
        assert_eq!(l["cached"], false);
    }
    let second = charter(&["image", "measure", "--json", &src], &cache);
    let second: serde_json::Value = serde_json::from_str(&stdout(&second)).unwrap();
    assert!(second["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["cached"] == true));
    assert_eq!(
        first["layers"][1]["root_hash"],
        second["layers"][1]["root_hash"]
    );
}
