//! charter-image against a real registry: Debian's `docker-registry` on loopback, images pushed
//! by `skopeo` from layouts written by the test support.

#[allow(dead_code)] // Shared with tests/image.rs, which uses all of it.
mod support;

use std::fs;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use charter_image::{
    measure, Credentials, Error, ImageSource, LayerMeasurement, Platform, Reference,
    RegistryOptions, Sha256Digest,
};
use support::{sample_tar, Blob, LayoutBuilder};

/// A `docker-registry serve` process on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<&Path>) -> Self {
        Self::start_with(htpasswd, None)
    }

    /// `tls`: the server's certificate and key files (PEM).
    fn start_with(htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "auth:\n  htpasswd:\n    realm: charter-test\n    path: {}\n",
                p.display()
            )
        });
        let tls_config = tls.map_or(String::new(), |(cert, key)| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            )
        });
        let tls = tls_config;
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: charter-test\n{tls}{auth}",
            root.path().join("storage").display()
        );
        let config_path = root.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(root.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let reg = Self { child, port, root };
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .disable_verification(true)
                        .build(),
                )
                .build(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let scheme = if tls.is_empty() { "http" } else { "https" };
            if let Ok(r) = agent.get(&format!("{scheme}://{}/v2/", reg.host())).call() {
                if r.status() == 200 || r.status() == 401 {
                    return reg;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                fs::read_to_string(reg.root.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn options(&self) -> RegistryOptions {
        RegistryOptions::default()
            .insecure_host(self.host())
            .credentials(Credentials::Anonymous)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO` (`--all` keeps every platform).
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet", "--all"])
            .arg("--dest-tls-verify=false");
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .expect("skopeo must be installed");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn blob_data(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn threads() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap()
}

fn measure_source(source: &ImageSource, platform: &Platform) -> Vec<LayerMeasurement> {
    let image = source.open(platform).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    measure(&image, None, scratch.path(), threads(), &()).unwrap()
}

fn three_layers(dir: &Path) -> Vec<Vec<u8>> {
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
                (tars[0].clone(), Blob::Gzip),
                (tars[1].clone(), Blob::Zstd),
                (tars[2].clone(), Blob::Plain),
            ],
        )
        .write();
    tars
}

#[test]
fn pull_by_tag_and_digest_measures_like_the_layout() {
    let reg = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    let tars = three_layers(layout.path());
    reg.push(layout.path(), "v1", "team/demo:v1", None);

    let local = ImageSource::parse(&format!("oci:{}:v1", layout.path().display())).unwrap();
    let want = measure_source(&local, &Platform::default());

    let remote =
        ImageSource::registry(&format!("{}/team/demo:v1", reg.host()), reg.options()).unwrap();
    let image = remote.open(&Platform::default()).unwrap();
    let pinned = image.manifest_digest.unwrap();
    assert_eq!(
        image.source,
        format!("docker://{}/team/demo:v1@{pinned}", reg.host())
    );
    assert_eq!(image.layers.len(), 3);
    for (layer, tar) in image.layers.iter().zip(&tars) {
        assert_eq!(layer.diff_id, Sha256Digest::of(tar));
    }
    let got = measure_source(&remote, &Platform::default());
    assert_eq!(got, want);

    // Pinned by digest (with and without the tag): the same image.
    for r in [
        format!("{}/team/demo@{pinned}", reg.host()),
        format!("{}/team/demo:v1@{pinned}", reg.host()),
    ] {
        let by_digest = ImageSource::registry(&r, reg.options())
            .unwrap()
            .open(&Platform::default())
            .unwrap();
        assert_eq!(by_digest.manifest_digest, Some(pinned));
        assert_eq!(by_digest.config_digest, image.config_digest);
    }

    // docker:// parses to a registry source.
    match ImageSource::parse(&format!("docker://{}/team/demo:v1", reg.host())).unwrap() {
        ImageSource::Registry { reference, .. } => {
            assert_eq!(
                reference,
                Reference::parse(&format!("{}/team/demo:v1", reg.host())).unwrap()
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn multi_arch_index_resolves_to_the_platform() {
    let reg = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    let arm = sample_tar(&[("arch", b"arm64")]);
    let amd = sample_tar(&[("arch", b"amd64")]);
    LayoutBuilder::new(layout.path())
        .multi_arch("multi", &[("arm64", arm.clone()), ("amd64", amd.clone())])
        .write();
    reg.push(layout.path(), "multi", "multi:latest", None);
    let src = ImageSource::registry(&format!("{}/multi", reg.host()), reg.options()).unwrap();
    let image = src.open(&Platform::default()).unwrap();
    assert_eq!(image.layers[0].diff_id, Sha256Digest::of(&amd));
    // The source pins the index; the manifest digest is the platform's manifest.
    assert!(!image
        .source
        .ends_with(&image.manifest_digest.unwrap().to_string()));
    let image = src.open(&"linux/arm64".parse().unwrap()).unwrap();
    assert_eq!(image.layers[0].diff_id, Sha256Digest::of(&arm));
    let err = src.open(&"linux/s390x".parse().unwrap()).unwrap_err();
    assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err}");
    // Measuring streams the chosen layer from the registry.
    let got = measure_source(&src, &Platform::default());
    assert_eq!(got[0].diff_id, Sha256Digest::of(&amd));
}

#[test]
fn missing_tag_repository_and_digest_are_not_found() {
    let reg = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    three_layers(layout.path());
    reg.push(layout.path(), "v1", "demo:v1", None);
    let missing = Sha256Digest::of(b"nothing");
    for r in [
        format!("{}/demo:v2", reg.host()),
        format!("{}/nosuch:v1", reg.host()),
        format!("{}/demo@{missing}", reg.host()),
    ] {
        let err = ImageSource::registry(&r, reg.options())
            .unwrap()
            .open(&Platform::default())
            .unwrap_err();
        assert!(matches!(err, Error::ManifestNotFound { .. }), "{r}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("404"), "{msg}");
        assert!(
            msg.contains(
                r.rsplit(['/'])
                    .next()
                    .unwrap()
                    .split([':', '@'])
                    .next()
                    .unwrap()
            ),
            "{msg}"
        );
    }
    // Plain HTTP is refused unless the host is marked insecure.
    let err = ImageSource::registry(
        &format!("{}/demo:v1", reg.host()),
        RegistryOptions::default().credentials(Credentials::Anonymous),
    )
    .unwrap()
    .open(&Platform::default())
    .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
}

#[test]
fn corrupted_blob_in_the_registry_is_a_digest_mismatch() {
    let reg = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    let tar = sample_tar(&[("srv/big.bin", &vec![1u8; 200_000])]);
    LayoutBuilder::new(layout.path())
        .image("v1", &[(tar.clone(), Blob::Plain)])
        .write();
    reg.push(layout.path(), "v1", "corrupt:v1", None);
    let src = ImageSource::registry(&format!("{}/corrupt:v1", reg.host()), reg.options()).unwrap();
    let image = src.open(&Platform::default()).unwrap();
    let blob = image.layers[0].blob_digest.unwrap();
    let path = reg.blob_data(&blob);
    let original = fs::read(&path).unwrap();
    // skopeo gzips uncompressed layers on push.
    assert!(original.starts_with(&[0x1f, 0x8b]), "expected a gzip blob");
    let scratch = tempfile::tempdir().unwrap();
    // A flipped byte in the gzip header's mtime still decompresses to the same tar: only the
    // blob digest, checked while streaming, catches it.
    let mut bytes = original.clone();
    bytes[4] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = measure(&image, None, scratch.path(), threads(), &()).unwrap_err();
    match &err {
        Error::DigestMismatch { what, expected, .. } => {
            assert_eq!(what, "layer 0");
            assert_eq!(*expected, blob);
        }
        other => panic!("{other}"),
    }
    // A flipped byte inside the compressed data fails on the way (gzip checksum), naming the
    // layer.
    let mut bytes = original;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let err = measure(&image, None, scratch.path(), threads(), &()).unwrap_err();
    // (The EROFS builder reading the stream reports it, naming the layer.)
    assert!(err.to_string().contains("layer 0"), "{err}");
    // A blob gone from the registry's storage: 404, naming the blob.
    fs::remove_dir_all(path.parent().unwrap()).unwrap();
    let err = measure(&image, None, scratch.path(), threads(), &()).unwrap_err();
    match &err {
        Error::BlobNotFound {
            digest, repository, ..
        } => {
            assert_eq!(*digest, blob);
            assert_eq!(repository, "corrupt");
        }
        other => panic!("{other}"),
    }
}

fn docker_config(dir: &Path, host: &str, user_pass: &str) -> PathBuf {
    let path = dir.join(format!(
        "config-{}.json",
        Sha256Digest::of(user_pass.as_bytes()).hex()
    ));
    let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
    fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

#[test]
fn htpasswd_registry_needs_the_config_json_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let reg = Registry::start(Some(&htpasswd));
    let layout = tempfile::tempdir().unwrap();
    let tars = three_layers(layout.path());
    reg.push(layout.path(), "v1", "private/app:v1", Some("alice:s3cret"));
    let r = format!("{}/private/app:v1", reg.host());

    let open = |creds: Credentials| {
        ImageSource::registry(&r, reg.options().credentials(creds))
            .unwrap()
            .open(&Platform::default())
    };
    for creds in [
        Credentials::Anonymous,
        Credentials::File(docker_config(dir.path(), &reg.host(), "alice:wrong")),
        Credentials::File(docker_config(
            dir.path(),
            "elsewhere.example",
            "alice:s3cret",
        )),
    ] {
        let err = open(creds).unwrap_err();
        match &err {
            Error::RegistryAuth {
                registry,
                repository,
            } => {
                assert_eq!(registry, &reg.host());
                assert_eq!(repository, "private/app");
            }
            other => panic!("{other}"),
        }
    }
    let image = open(Credentials::File(docker_config(
        dir.path(),
        &format!("http://{}", reg.host()),
        "alice:s3cret",
    )))
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let got = measure(&image, None, scratch.path(), threads(), &()).unwrap();
    for (m, tar) in got.iter().zip(&tars) {
        assert_eq!(m.diff_id, Sha256Digest::of(tar));
    }
}

/// A minimal registry with bearer-token auth, serving one OCI layout (docker-registry's token
/// auth needs a separate token server with signing keys; this stands in for one). Blobs are
/// answered with a redirect, as registries backed by object stores do.
struct TinyRegistry {
    port: u16,
}

impl TinyRegistry {
    fn start(layout: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let layout = layout.clone();
                std::thread::spawn(move || tiny_serve(stream, &layout, port));
            }
        });
        Self { port }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn tiny_serve(mut stream: std::net::TcpStream, layout: &Path, port: u16) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_owned());
            }
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let v1 = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
    };
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = if path.starts_with("/token?") {
        if authorization.as_deref() == Some(basic.as_str())
            && path.contains("scope=repository%3Ademo%3Apull")
            && path.contains("service=tiny")
        {
            ("200 OK", vec![], br#"{"token":"good-token"}"#.to_vec())
        } else {
            ("401 Unauthorized", vec![], vec![])
        }
    } else if let Some(d) = path.strip_prefix("/redirected/") {
        // A redirect target must not receive the registry's token.
        match (authorization, blob(d)) {
            (None, Ok(b)) => ("200 OK", vec![], b),
            _ => ("403 Forbidden", vec![], vec![]),
        }
    } else if authorization.as_deref() != Some("Bearer good-token") {
        (
            "401 Unauthorized",
            vec![format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"tiny\",scope=\"repository:demo:pull\""
            )],
            vec![],
        )
    } else if let Some(d) = path.strip_prefix("/v2/demo/blobs/") {
        (
            "307 Temporary Redirect",
            vec![format!("Location: /redirected/{d}")],
            vec![],
        )
    } else if path == "/v2/demo/manifests/v1" || path == format!("/v2/demo/manifests/{v1}") {
        (
            "200 OK",
            vec![
                format!("Content-Type: {manifest_type}"),
                format!("Docker-Content-Digest: {v1}"),
            ],
            blob(&v1).unwrap(),
        )
    } else if path == "/v2/demo/manifests/lying" {
        // Claims the v1 digest for different bytes.
        let mut b = blob(&v1).unwrap();
        b.push(b'\n');
        (
            "200 OK",
            vec![
                format!("Content-Type: {manifest_type}"),
                format!("Docker-Content-Digest: {v1}"),
            ],
            b,
        )
    } else if path == "/v2/demo/manifests/huge" {
        (
            "200 OK",
            vec![format!("Content-Type: {manifest_type}")],
            vec![b' '; 5 << 20],
        )
    } else if path.starts_with("/v2/demo/manifests/sha256:") {
        // Any other digest: serve v1's bytes, which do not hash to it.
        (
            "200 OK",
            vec![format!("Content-Type: {manifest_type}")],
            blob(&v1).unwrap(),
        )
    } else {
        ("404 Not Found", vec![], vec![])
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn bearer_token_flow_redirects_and_lying_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let tars = three_layers(&layout);
    let tiny = TinyRegistry::start(layout);
    let good = docker_config(dir.path(), &tiny.host(), "alice:s3cret");
    let options = |creds: Credentials| {
        RegistryOptions::default()
            .insecure_host(tiny.host())
            .credentials(creds)
    };
    let open = |r: &str, creds: Credentials| {
        ImageSource::registry(&format!("{}/{r}", tiny.host()), options(creds))
            .unwrap()
            .open(&Platform::default())
    };
    // Anonymous and wrong credentials: the token server refuses.
    for creds in [
        Credentials::Anonymous,
        Credentials::File(docker_config(dir.path(), &tiny.host(), "alice:nope")),
    ] {
        let err = open("demo:v1", creds).unwrap_err();
        assert!(matches!(err, Error::RegistryAuth { .. }), "{err}");
    }
    let image = open("demo:v1", Credentials::File(good.clone())).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let got = measure(&image, None, scratch.path(), threads(), &()).unwrap();
    for (m, tar) in got.iter().zip(&tars) {
        assert_eq!(m.diff_id, Sha256Digest::of(tar));
    }
    // A manifest whose bytes differ from the digest the registry claims.
    let err = open("demo:lying", Credentials::File(good.clone())).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // An oversized manifest is refused before it is read.
    let err = open("demo:huge", Credentials::File(good.clone())).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    // A manifest that does not hash to the digest pinned in the reference.
    let other = Sha256Digest::of(b"other");
    let err = open(&format!("demo@{other}"), Credentials::File(good)).unwrap_err();
    match err {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected, other),
        e => panic!("{e}"),
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
fn test_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=charter test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[test]
fn tls_registry_is_trusted_through_the_ca_file_only() {
    let pki = tempfile::tempdir().unwrap();
    test_pki(pki.path());
    let reg = Registry::start_with(
        None,
        Some((
            &pki.path().join("server.pem"),
            &pki.path().join("server.key"),
        )),
    );
    let layout = tempfile::tempdir().unwrap();
    let tars = three_layers(layout.path());
    reg.push(layout.path(), "v1", "secure:v1", None);
    let r = format!("{}/secure:v1", reg.host());
    let anonymous = RegistryOptions::default().credentials(Credentials::Anonymous);
    // The built-in roots do not know the test CA.
    let err = ImageSource::registry(&r, anonymous.clone())
        .unwrap()
        .open(&Platform::default())
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    let src = ImageSource::registry(&r, anonymous.ca_file(pki.path().join("ca.pem"))).unwrap();
    let got = measure_source(&src, &Platform::default());
    for (m, tar) in got.iter().zip(&tars) {
        assert_eq!(m.diff_id, Sha256Digest::of(tar));
    }
    // A CA file without certificates is refused up front.
    fs::write(pki.path().join("empty.pem"), "").unwrap();
    let err = ImageSource::registry(
        &r,
        RegistryOptions::default().ca_file(pki.path().join("empty.pem")),
    )
    .unwrap()
    .open(&Platform::default())
    .unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}
