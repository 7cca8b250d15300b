//! `charter broker`: the real binary end to end. keygen, serve on loopback, policy new / set /
//! get, resource set / list, refusals (wrong admin key, bad input), and a release to a guest
//! of the INSECURE simulated AMD-SP through the real guest client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charter_attest_insecure_sim::{InsecureSimulatedGuest, InsecureSimulatedSp, LaunchParams};

const HOST_DATA: [u8; 32] = [0x5a; 32];
const OTHER_HOST_DATA: [u8; 32] = [0x77; 32];
const MEASUREMENT: [u8; 48] = [0x3c; 48];
const KEY_PATH: &str = "default/key/workload";
const OTHER_PATH: &str = "default/key/other";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn charter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charter"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running charter")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let o = charter(args);
    assert!(
        o.status.success(),
        "charter {args:?} failed: {}\n{}",
        o.status,
        stderr(&o)
    );
    o
}

/// Runs `charter args`, expects failure, returns stderr (checked to contain every `needles`).
#[track_caller]
fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = charter(args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "charter {args:?} should fail; stdout: {}",
        stdout(&o)
    );
    assert!(
        !err.contains("panicked"),
        "charter {args:?} panicked: {err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "charter {args:?}: stderr lacks {n:?}:\n{err}"
        );
    }
    err
}

#[track_caller]
fn run_ok(v: Vec<String>) -> Output {
    ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
}

#[track_caller]
fn run_fails(v: Vec<String>, needles: &[&str]) -> String {
    fails(&v.iter().map(String::as_str).collect::<Vec<_>>(), needles)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The broker child process, killed on drop (also when an assertion fails).
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn serve(dir: &Path, admin_pub: &Path, sim_root: &Path) -> (Server, String) {
    let addr_file = dir.join("addr");
    let log = dir.join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_charter"))
        .args([
            "broker",
            "serve",
            "--db",
            p(&dir.join("broker.db")),
            "--admin-public-key",
            p(admin_pub),
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            p(&addr_file),
            "--insecure-allow-simulated",
            "--insecure-simulated-root",
            p(sim_root),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawning charter broker serve");
    let mut server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if a.ends_with('\n') {
                return (server, format!("https://{}", a.trim()));
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("broker exited early ({status}):\n{}", server.log());
        }
        assert!(
            Instant::now() < deadline,
            "broker did not listen within 60s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn guest(sp: &Arc<InsecureSimulatedSp>, host_data: [u8; 32]) -> InsecureSimulatedGuest {
    InsecureSimulatedGuest::new(
        Arc::clone(sp),
        LaunchParams {
            host_data,
            measurement: MEASUREMENT,
            ..LaunchParams::default()
        },
    )
}

#[test]
fn keygen_serve_policy_resource_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    // keygen, and the refusal to overwrite.
    let admin_dir = dir.join("admin");
    ok(&["broker", "keygen", "--out-dir", p(&admin_dir)]);
    let (admin_key, admin_pub) = (admin_dir.join("admin.key"), admin_dir.join("admin.pub"));
    let key_text = std::fs::read_to_string(&admin_key).expect("admin.key");
    assert!(
        key_text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{key_text}"
    );
    assert!(std::fs::read_to_string(&admin_pub)
        .expect("admin.pub")
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&admin_key)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin.key mode {mode:o}");
    }
    fails(
        &["broker", "keygen", "--out-dir", p(&admin_dir)],
        &["admin.key", "already exists"],
    );
    assert_eq!(
        std::fs::read_to_string(&admin_key).expect("admin.key"),
        key_text,
        "keygen must not overwrite"
    );
    let other_dir = dir.join("other");
    ok(&["broker", "keygen", "--out-dir", p(&other_dir)]);

    // The simulated AMD-SP whose evidence this broker accepts (INSECURE).
    let sp = Arc::new(InsecureSimulatedSp::load_or_generate(&dir.join("sim")).expect("simulator"));
    let sim_root = dir.join("sim-root.pem");
    std::fs::write(&sim_root, sp.root_pem()).expect("root pem");

    let broker_dir = dir.join("broker");
    std::fs::create_dir(&broker_dir).expect("broker dir");
    let (server, url) = serve(&broker_dir, &admin_pub, &sim_root);
    let ca = broker_dir.join("tls-ca.pem");
    let admin = |key: &Path| -> Vec<String> {
        vec![
            "--url".into(),
            url.clone(),
            "--ca".into(),
            p(&ca).into(),
            "--admin-key".into(),
            p(key).into(),
        ]
    };
    let with = |head: &[&str], key: &Path, tail: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
        v.extend(admin(key));
        v.extend(tail.iter().map(|s| (*s).to_owned()));
        v
    };

    // policy new: printed and written (-o) alike, and it names HOST_DATA.
    let host_hex = hex::encode(HOST_DATA);
    let meas_hex = hex::encode(MEASUREMENT);
    let good = dir.join("good.rego");
    let new_args = [
        "broker",
        "policy",
        "new",
        "--host-data",
        &host_hex,
        "--measurement",
        &meas_hex,
        "--min-tcb",
        "bootloader=3,tee=0,snp=8,microcode=115",
    ];
    let printed = stdout(&ok(&new_args));
    let mut with_out = new_args.to_vec();
    with_out.extend(["-o", p(&good)]);
    ok(&with_out);
    let good_text = std::fs::read_to_string(&good).expect("good.rego");
    assert_eq!(printed, good_text);
    assert!(good_text.contains(&host_hex), "{good_text}");
    assert!(
        good_text.contains("input.tcb.microcode >= 115"),
        "{good_text}"
    );
    let other_hex = hex::encode(OTHER_HOST_DATA);
    let bad = dir.join("other.rego");
    ok(&[
        "broker",
        "policy",
        "new",
        "--host-data",
        &other_hex,
        "-o",
        p(&bad),
    ]);

    // policy set -> resource set -> list -> policy get.
    let secret = dir.join("secret.bin");
    std::fs::write(&secret, SECRET).expect("secret");
    run_ok(with(
        &["broker", "policy", "set", "--resource", KEY_PATH],
        &admin_key,
        &[p(&good)],
    ));
    run_ok(with(
        &["broker", "resource", "set"],
        &admin_key,
        &[KEY_PATH, p(&secret)],
    ));
    run_ok(with(
        &["broker", "policy", "set", "--resource", OTHER_PATH],
        &admin_key,
        &[p(&bad)],
    ));
    run_ok(with(
        &["broker", "resource", "set"],
        &admin_key,
        &[OTHER_PATH, p(&secret)],
    ));
    let listed = stdout(&run_ok(with(
        &["broker", "resource", "list"],
        &admin_key,
        &[],
    )));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines.contains(&KEY_PATH), "{listed}");
    assert!(lines.contains(&OTHER_PATH), "{listed}");
    let got = stdout(&run_ok(with(
        &["broker", "policy", "get", "--resource", KEY_PATH],
        &admin_key,
        &[],
    )));
    assert_eq!(got, good_text);

    // The wrong admin key is refused, naming the URL and the status.
    let other_key = other_dir.join("admin.key");
    let list_url = format!("{url}/kbs/v0/admin/resources");
    run_fails(
        with(&["broker", "resource", "list"], &other_key, &[]),
        &[list_url.as_str(), "401"],
    );
    run_fails(
        with(
            &["broker", "resource", "set"],
            &other_key,
            &[KEY_PATH, p(&good)],
        ),
        &[format!("{url}/kbs/v0/resource/{KEY_PATH}").as_str(), "401"],
    );
    run_fails(
        with(
            &["broker", "policy", "set", "--resource", KEY_PATH],
            &other_key,
            &[p(&bad)],
        ),
        &["/kbs/v0/resource-policy/default/key/workload", "401"],
    );
    // The refused writes changed nothing.
    let got = stdout(&run_ok(with(
        &["broker", "policy", "get", "--resource", KEY_PATH],
        &admin_key,
        &[],
    )));
    assert_eq!(got, good_text);

    // Bad input: clear messages, non-zero exit, nothing sent.
    fails(
        &["broker", "policy", "new", "--host-data", "abc"],
        &["--host-data", "\"abc\"", "64 hex digits"],
    );
    fails(
        &["broker", "policy", "new", "--host-data", &"zz".repeat(32)],
        &["--host-data", "64 hex digits", "not all hex"],
    );
    fails(
        &[
            "broker",
            "policy",
            "new",
            "--host-data",
            &host_hex,
            "--measurement",
            &host_hex,
        ],
        &["--measurement", "96 hex digits"],
    );
    fails(
        &[
            "broker",
            "policy",
            "new",
            "--host-data",
            &host_hex,
            "--min-tcb",
            "bootloader=3,tee=0",
        ],
        &["--min-tcb", "snp is missing"],
    );
    fails(
        &[
            "broker",
            "policy",
            "new",
            "--host-data",
            &host_hex,
            "--min-tcb",
            "bootloader=3,tee=0,snp=8,microcode=300",
        ],
        &["--min-tcb", "microcode"],
    );
    run_fails(
        with(
            &["broker", "resource", "set"],
            &admin_key,
            &["../etc/passwd", p(&secret)],
        ),
        &["resource path", "../etc/passwd", "repository/type/tag"],
    );
    run_fails(
        with(
            &["broker", "policy", "get", "--resource", "only/two"],
            &admin_key,
            &[],
        ),
        &["resource path", "only/two"],
    );
    let missing = dir.join("no-such-file");
    run_fails(
        with(
            &["broker", "resource", "set"],
            &admin_key,
            &[KEY_PATH, p(&missing)],
        ),
        &["reading", p(&missing)],
    );
    run_fails(
        with(
            &["broker", "policy", "set", "--resource", KEY_PATH],
            &admin_key,
            &[p(&missing)],
        ),
        &["reading policy", p(&missing)],
    );
    let broken = dir.join("broken.rego");
    std::fs::write(&broken, "package policy\nallow if {\n").expect("broken.rego");
    run_fails(
        with(
            &["broker", "policy", "set", "--resource", KEY_PATH],
            &admin_key,
            &[p(&broken)],
        ),
        &["broken.rego", "does not compile"],
    );
    run_fails(
        with(&["broker", "resource", "list"], &missing, &[]),
        &["admin key", p(&missing)],
    );
    fails(
        &[
            "broker",
            "resource",
            "list",
            "--url",
            &url.replace("https://", "http://"),
            "--ca",
            p(&ca),
            "--admin-key",
            p(&admin_key),
        ],
        &["--url", "https://HOST[:PORT]"],
    );
    let missing_path = format!("{url}/kbs/v0/resource-policy/default/key/absent");
    run_fails(
        with(
            &[
                "broker",
                "policy",
                "get",
                "--resource",
                "default/key/absent",
            ],
            &admin_key,
            &[],
        ),
        &[missing_path.as_str(), "404"],
    );

    // The real guest client: the right HOST_DATA gets the secret, another is refused.
    let ca_pem = std::fs::read(&ca).expect("tls-ca.pem");
    let client = charter_kbs_client::KbsClient::new(&url, &ca_pem).expect("kbs client");
    let released = client
        .get_resource(KEY_PATH, &guest(&sp, HOST_DATA))
        .unwrap_or_else(|e| panic!("release refused: {e}\n{}", server.log()));
    assert_eq!(released, SECRET);
    match client.get_resource(OTHER_PATH, &guest(&sp, HOST_DATA)) {
        Err(charter_kbs_client::Error::Status { status: 401, .. }) => {}
        other => panic!("policy for another HOST_DATA must refuse, got {other:?}"),
    }
    let other_guest = guest(&sp, OTHER_HOST_DATA);
    match client.get_resource(KEY_PATH, &other_guest) {
        Err(charter_kbs_client::Error::Status { status: 401, .. }) => {}
        other => panic!("a guest with another HOST_DATA must be refused, got {other:?}"),
    }
    assert_eq!(
        client
            .get_resource(OTHER_PATH, &other_guest)
            .expect("the other policy releases to its guest"),
        SECRET
    );
    drop(server);
}
