//! Real containers with Debian's runc and a busybox-static rootfs. Root only:
//! `cargo test -p charter-oci -- --include-ignored` as root.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use charter_oci::{
    become_subreaper, build_spec, try_wait, wait_exit, write_bundle, Capabilities, ContainerConfig,
    ContainerStatus, ContainerStdio, Error, ExecConfig, HostStdio, MountConfig, Pid, ProcessConfig,
    ProcessExit, Runc, StdioMode, KNOWN_CAPABILITIES,
};

const APPLETS: [&str; 14] = [
    "sh", "echo", "cat", "sleep", "id", "chown", "touch", "pwd", "hostname", "grep", "ls",
    "readlink", "true", "kill",
];

/// Prints CapEff, whether /proc/timer_list is masked and whether /sys is read-only.
const MASKS_SCRIPT: &str = "grep -E '^CapEff:' /proc/self/status; \
     grep -q ' /proc/timer_list ' /proc/self/mounts && echo masked || echo unmasked; \
     grep -qE '^sysfs /sys sysfs ro' /proc/self/mounts && echo sys-ro || echo sys-rw";

const DOCKER_DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn caps(list: &[&str]) -> Capabilities {
    Capabilities {
        bounding: names(list),
        effective: names(list),
        inheritable: Vec::new(),
        permitted: names(list),
        ambient: Vec::new(),
    }
}

/// A state root, a bundle with a busybox rootfs, and a runc driver, all in one temp dir.
struct Fixture {
    dir: tempfile::TempDir,
    runc: Runc,
    bundle: PathBuf,
    rootfs: PathBuf,
}

fn fixture() -> Fixture {
    become_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    for d in ["tmp", "work"] {
        fs::create_dir(rootfs.join(d)).unwrap();
        fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o1777)).unwrap();
    }
    fs::create_dir(dir.path().join("scratch")).unwrap();
    let runc = Runc::new(dir.path().join("state"))
        .unwrap()
        .with_work_dir(dir.path().join("scratch"));
    Fixture {
        dir,
        runc,
        bundle,
        rootfs,
    }
}

fn unique_id(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "charter-oci-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn process(args: &[&str]) -> ProcessConfig {
    ProcessConfig {
        args: names(args),
        env: names(&["PATH=/bin"]),
        cwd: "/".to_owned(),
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        umask: None,
        capabilities: caps(&DOCKER_DEFAULT_CAPS),
        no_new_privileges: true,
    }
}

fn config(fx: &Fixture, id: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        id: id.to_owned(),
        rootfs: fx.rootfs.clone(),
        readonly_rootfs: false,
        process: process(args),
        privileged: false,
        hostname: "charter-test".to_owned(),
        mounts: Vec::new(),
    }
}

/// Deletes the container (forcefully) when the test ends, passing or not.
struct Cleanup<'a> {
    runc: &'a Runc,
    id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.runc.delete(&self.id, true);
    }
}

/// Writes the bundle, creates and starts the container.
fn run<'a>(fx: &'a Fixture, config: &ContainerConfig, stdio: ContainerStdio) -> (Pid, Cleanup<'a>) {
    let spec = build_spec(config).unwrap();
    write_bundle(&fx.bundle, &spec).unwrap();
    let pid = fx.runc.create(&config.id, &fx.bundle, stdio).unwrap();
    let cleanup = Cleanup {
        runc: &fx.runc,
        id: config.id.clone(),
    };
    assert_eq!(
        fx.runc.state(&config.id).unwrap().status,
        ContainerStatus::Created
    );
    fx.runc.start(&config.id).unwrap();
    (pid, cleanup)
}

fn read_all(reader: Option<impl Read>) -> String {
    let mut out = String::new();
    reader.unwrap().read_to_string(&mut out).unwrap();
    out
}

/// Runs the container to completion with piped stdio; returns (stdout, stderr, exit) and the
/// guard that deletes it.
fn run_to_end<'a>(
    fx: &'a Fixture,
    config: &ContainerConfig,
) -> (String, String, ProcessExit, Cleanup<'a>) {
    let (stdio, host) = ContainerStdio::pipes().unwrap();
    let (pid, cleanup) = run(fx, config, stdio);
    let HostStdio {
        stdin,
        stdout,
        stderr,
    } = host;
    drop(stdin);
    let stderr_thread = std::thread::spawn(move || read_all(stderr));
    let out = read_all(stdout);
    let err = stderr_thread.join().unwrap();
    let exit = wait_exit(pid).unwrap();
    (out, err, exit, cleanup)
}

#[test]
#[ignore = "needs root: runc"]
fn stdout_stderr_and_exit_code() {
    let fx = fixture();
    let id = unique_id("hello");
    let config = config(&fx, &id, &["sh", "-c", "echo hello; echo err >&2; exit 7"]);
    let (out, err, exit, _cleanup) = run_to_end(&fx, &config);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "err\n");
    assert_eq!(exit, ProcessExit::Exited(7));
    assert_eq!(exit.code(), Some(7));

    let state = fx.runc.state(&id).unwrap();
    assert_eq!(state.status, ContainerStatus::Stopped);
    assert_eq!(state.id, id);
    fx.runc.delete(&id, false).unwrap();
    assert!(!fx.runc.root().join(&id).exists(), "state dir removed");
    let err = fx.runc.state(&id).unwrap_err();
    assert!(
        matches!(&err, Error::Runc { subcommand: "state", message, .. }
            if message == "container does not exist"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root: runc"]
fn env_cwd_user_umask_hostname_are_applied() {
    let fx = fixture();
    let id = unique_id("user");
    let mut config = config(
        &fx,
        &id,
        &[
            "sh",
            "-c",
            "echo \"$FOO\"; pwd; id -u; id -g; id -G; umask; hostname",
        ],
    );
    config.process.env.push("FOO=bar baz".to_owned());
    config.process.cwd = "/work".to_owned();
    config.process.uid = 1000;
    config.process.gid = 1001;
    config.process.additional_gids = vec![2000, 3000];
    config.process.umask = Some(0o027);
    let (out, err, exit, _cleanup) = run_to_end(&fx, &config);
    assert_eq!(err, "");
    assert_eq!(exit, ProcessExit::Exited(0));
    assert_eq!(
        out,
        "bar baz\n/work\n1000\n1001\n1001 2000 3000\n0027\ncharter-test\n"
    );
}

/// This process's capability bounding set.
fn own_bounding_set() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    u64::from_str_radix(line.trim_start_matches("CapBnd:").trim(), 16).unwrap()
}

fn cap_mask(list: &[&str]) -> u64 {
    list.iter()
        .map(|name| {
            let n = KNOWN_CAPABILITIES.iter().position(|c| c == name).unwrap();
            1u64 << n
        })
        .fold(0, |a, b| a | b)
}

#[test]
#[ignore = "needs root: runc"]
fn capabilities_are_exactly_the_requested_sets() {
    let fx = fixture();
    // Without CAP_CHOWN even uid 0 cannot chown, and CapEff is exactly the set asked for.
    let without: Vec<&str> = DOCKER_DEFAULT_CAPS
        .iter()
        .copied()
        .filter(|c| *c != "CAP_CHOWN")
        .collect();
    let script = "grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; touch /tmp/f$$; \
                  chown 1:1 /tmp/f$$ && echo chown-ok || echo chown-denied";
    let id = unique_id("nochown");
    let mut cfg = config(&fx, &id, &["sh", "-c", script]);
    cfg.process.capabilities = caps(&without);
    let (out, _err, exit, _cleanup) = run_to_end(&fx, &cfg);
    assert_eq!(exit, ProcessExit::Exited(0));
    let mask = format!("{:016x}", cap_mask(&without));
    assert!(out.contains(&format!("CapEff:\t{mask}")), "{out}");
    assert!(out.contains(&format!("CapPrm:\t{mask}")), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{mask}")), "{out}");
    assert!(out.ends_with("chown-denied\n"), "{out}");

    let id = unique_id("chown");
    let cfg = config(&fx, &id, &["sh", "-c", script]);
    let (out, _err, exit, _cleanup) = run_to_end(&fx, &cfg);
    assert_eq!(exit, ProcessExit::Exited(0));
    let mask = format!("{:016x}", cap_mask(&DOCKER_DEFAULT_CAPS));
    assert!(out.contains(&format!("CapEff:\t{mask}")), "{out}");
    assert!(out.ends_with("chown-ok\n"), "{out}");
}

#[test]
#[ignore = "needs root: runc"]
fn exec_into_running_container_and_kill() {
    let fx = fixture();
    let id = unique_id("exec");
    let cfg = config(&fx, &id, &["sleep", "30"]);
    let (init, _cleanup) = run(&fx, &cfg, ContainerStdio::null().unwrap());
    assert_eq!(fx.runc.state(&id).unwrap().status, ContainerStatus::Running);
    assert_eq!(fx.runc.state(&id).unwrap().pid, Some(init));
    assert_eq!(try_wait(init).unwrap(), None);

    // An exec'd process with its own stdio, cwd, env and uid.
    let (stdio, host) = ContainerStdio::pipes().unwrap();
    let exec = ExecConfig {
        env: names(&["PATH=/bin", "WHO=exec"]),
        cwd: "/tmp".to_owned(),
        uid: 1234,
        gid: 1234,
        ..process(&[
            "sh",
            "-c",
            "read line; echo \"$WHO:$line:$(pwd):$(id -u):$(umask)\"; exit 3",
        ])
    };
    let pid = fx.runc.exec(&id, &exec, stdio).unwrap();
    let HostStdio {
        stdin,
        stdout,
        stderr,
    } = host;
    let mut stdin = stdin.unwrap();
    stdin.write_all(b"ping\n").unwrap();
    drop(stdin);
    assert_eq!(read_all(stdout), "exec:ping:/tmp:1234:0022\n");
    assert_eq!(read_all(stderr), "");
    assert_eq!(wait_exit(pid).unwrap(), ProcessExit::Exited(3));

    // SIGTERM reaches an exec'd process (the PID namespace's init ignores it: no handler).
    let sleeper = fx
        .runc
        .exec(
            &id,
            &process(&["sleep", "30"]),
            ContainerStdio::null().unwrap(),
        )
        .unwrap();
    fx.runc.kill(&id, 15, true).unwrap();
    assert_eq!(wait_exit(sleeper).unwrap(), ProcessExit::Signaled(15));
    assert_eq!(try_wait(init).unwrap(), None, "init ignores SIGTERM");

    // SIGKILL ends init.
    fx.runc.kill(&id, 9, false).unwrap();
    let exit = wait_exit(init).unwrap();
    assert_eq!(exit, ProcessExit::Signaled(9));
    assert_eq!(exit.shell_code(), 137);
    assert_eq!(fx.runc.state(&id).unwrap().status, ContainerStatus::Stopped);
    fx.runc.delete(&id, false).unwrap();
    assert!(!fx.runc.root().join(&id).exists());

    // std::process children are unaffected by our waits.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert!(matches!(
        fx.runc.kill(&id, 0, false),
        Err(Error::InvalidSignal(0))
    ));
}

#[test]
#[ignore = "needs root: runc"]
fn null_stdio_discards_output() {
    let fx = fixture();
    let id = unique_id("null");
    let cfg = config(
        &fx,
        &id,
        &[
            "sh",
            "-c",
            "echo secret; echo secret >&2; cat; echo done > /tmp/done",
        ],
    );
    let (pid, _cleanup) = run(&fx, &cfg, ContainerStdio::null().unwrap());
    assert_eq!(wait_exit(pid).unwrap(), ProcessExit::Exited(0));
    // stdin read end of file at once (cat returned), the script ran to the end.
    assert_eq!(
        fs::read_to_string(fx.rootfs.join("tmp/done")).unwrap(),
        "done\n"
    );

    // Mixed: stdout piped, stderr discarded, stdin empty.
    let id = unique_id("mixed");
    let cfg = config(&fx, &id, &["sh", "-c", "echo out; echo err >&2"]);
    let (stdio, host) =
        ContainerStdio::new(StdioMode::Null, StdioMode::Pipe, StdioMode::Null).unwrap();
    assert!(host.stdin.is_none() && host.stderr.is_none());
    let (pid, _cleanup) = run(&fx, &cfg, stdio);
    assert_eq!(read_all(host.stdout), "out\n");
    assert_eq!(wait_exit(pid).unwrap(), ProcessExit::Exited(0));

    // Any descriptor can be passed through, e.g. a log file for stdout and stderr.
    let id = unique_id("fds");
    let cfg = config(&fx, &id, &["sh", "-c", "cat; echo out; echo err >&2"]);
    let log_path = fx.dir.path().join("log");
    let log = fs::File::create(&log_path).unwrap();
    let input = fx.dir.path().join("input");
    fs::write(&input, "in\n").unwrap();
    let stdio = ContainerStdio::from_fds(
        fs::File::open(&input).unwrap().into(),
        log.try_clone().unwrap().into(),
        log.into(),
    );
    let (pid, _cleanup) = run(&fx, &cfg, stdio);
    assert_eq!(wait_exit(pid).unwrap(), ProcessExit::Exited(0));
    assert_eq!(fs::read_to_string(&log_path).unwrap(), "in\nout\nerr\n");
}

#[test]
#[ignore = "needs root: runc"]
fn readonly_rootfs_and_extra_bind_mount() {
    let fx = fixture();
    let volume = fx.dir.path().join("volume");
    fs::create_dir(&volume).unwrap();
    fs::write(volume.join("file"), "from the volume\n").unwrap();
    let id = unique_id("mounts");
    let mut cfg = config(
        &fx,
        &id,
        &[
            "sh",
            "-c",
            "cat /data/file; touch /x 2>/dev/null && echo rw || echo ro; \
             touch /data/y 2>/dev/null && echo data-rw || echo data-ro",
        ],
    );
    cfg.readonly_rootfs = true;
    cfg.mounts.push(MountConfig {
        destination: "/data".to_owned(),
        source: volume.to_str().unwrap().to_owned(),
        kind: "bind".to_owned(),
        options: names(&["rbind", "ro"]),
    });
    let (out, _err, exit, _cleanup) = run_to_end(&fx, &cfg);
    assert_eq!(exit, ProcessExit::Exited(0));
    assert_eq!(out, "from the volume\nro\ndata-ro\n");
}

#[test]
#[ignore = "needs root: runc"]
fn runc_errors_are_typed() {
    let fx = fixture();
    let id = unique_id("broken");
    let mut cfg = config(&fx, &id, &["sh", "-c", "true"]);
    cfg.rootfs = fx.dir.path().join("no-such-rootfs");
    write_bundle(&fx.bundle, &build_spec(&cfg).unwrap()).unwrap();
    let _cleanup = Cleanup {
        runc: &fx.runc,
        id: id.clone(),
    };
    let err = fx
        .runc
        .create(&id, &fx.bundle, ContainerStdio::null().unwrap())
        .unwrap_err();
    match &err {
        Error::Runc {
            subcommand,
            status,
            message,
        } => {
            assert_eq!(*subcommand, "create");
            assert!(!status.success());
            assert!(
                !message.is_empty() && message.len() <= 4096 + 3,
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // runc refuses an unknown container.
    let err = fx.runc.start("charter-oci-no-such-container").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Runc {
                subcommand: "start",
                ..
            }
        ),
        "{err}"
    );
    // Bad ids never reach runc.
    assert!(matches!(
        fx.runc.delete("--force", false),
        Err(Error::Spec(_))
    ));
    assert!(matches!(
        fx.runc.create(
            &id,
            Path::new("relative/bundle"),
            ContainerStdio::null().unwrap()
        ),
        Err(Error::Spec(_))
    ));
}

#[test]
#[ignore = "needs root: runc"]
fn privileged_container_gets_every_capability_and_no_masks() {
    let fx = fixture();
    let id = unique_id("privileged");
    let mut cfg = config(&fx, &id, &["sh", "-c", MASKS_SCRIPT]);
    cfg.privileged = true;
    cfg.process.capabilities = Capabilities::default();
    let mut spec = build_spec(&cfg).unwrap();
    let all: Vec<String> = names(&KNOWN_CAPABILITIES);
    assert_eq!(spec.process.capabilities.effective, all);
    assert!(spec.linux.masked_paths.is_empty());
    // The agent in a guest holds every capability; a test process may not (this machine's
    // bounding set lacks CAP_SYS_RESOURCE), and runc cannot grant what it does not hold.
    let bounding = own_bounding_set();
    let held: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(n, _)| bounding & (1u64 << n) != 0)
        .map(|(_, name)| name.clone())
        .collect();
    for set in [
        &mut spec.process.capabilities.bounding,
        &mut spec.process.capabilities.effective,
        &mut spec.process.capabilities.permitted,
    ] {
        *set = held.clone();
    }
    write_bundle(&fx.bundle, &spec).unwrap();
    let (stdio, host) = ContainerStdio::pipes().unwrap();
    let pid = fx.runc.create(&id, &fx.bundle, stdio).unwrap();
    let _cleanup = Cleanup {
        runc: &fx.runc,
        id: id.clone(),
    };
    fx.runc.start(&id).unwrap();
    drop(host.stdin);
    let out = read_all(host.stdout);
    let err = read_all(host.stderr);
    let exit = wait_exit(pid).unwrap();
    assert_eq!(exit, ProcessExit::Exited(0), "{err}");
    let expected = format!("{:016x}", bounding & cap_mask(&KNOWN_CAPABILITIES));
    assert!(out.starts_with(&format!("CapEff:\t{expected}\n")), "{out}");
    assert!(out.ends_with("unmasked\nsys-rw\n"), "{out}");
}

#[test]
#[ignore = "needs root: runc"]
fn failed_create_names_runc_error_and_leaves_no_scratch_files() {
    let fx = fixture();
    let id = unique_id("badexe");
    // runc create fails: the bundle's rootfs does not exist.
    let mut cfg = config(&fx, &id, &["sh"]);
    cfg.rootfs = fx.dir.path().join("missing");
    write_bundle(&fx.bundle, &build_spec(&cfg).unwrap()).unwrap();
    let _cleanup = Cleanup {
        runc: &fx.runc,
        id: id.clone(),
    };
    let (stdio, host) = ContainerStdio::pipes().unwrap();
    let err = fx.runc.create(&id, &fx.bundle, stdio).unwrap_err();
    eprintln!("create error: {err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // Whatever runc printed on the container's stderr is the caller's to drop.
    drop(host);
    let scratch: Vec<_> = fs::read_dir(fx.dir.path().join("scratch"))
        .unwrap()
        .collect();
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
}

#[test]
#[ignore = "needs root: runc"]
fn unprivileged_container_has_masked_paths_and_readonly_sys() {
    let fx = fixture();
    let id = unique_id("masks");
    let cfg = config(&fx, &id, &["sh", "-c", MASKS_SCRIPT]);
    let (out, err, exit, _cleanup) = run_to_end(&fx, &cfg);
    assert_eq!(exit, ProcessExit::Exited(0), "{err}");
    let mask = format!("{:016x}", cap_mask(&DOCKER_DEFAULT_CAPS));
    assert_eq!(out, format!("CapEff:\t{mask}\nmasked\nsys-ro\n"));
}

#[test]
#[ignore = "needs root: runc"]
fn new_namespaces_except_the_sandbox_network() {
    let fx = fixture();
    let id = unique_id("ns");
    let kinds = ["net", "pid", "ipc", "uts", "mnt", "user"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let cfg = config(&fx, &id, &["sh", "-c", &script]);
    let (out, err, exit, _cleanup) = run_to_end(&fx, &cfg);
    assert_eq!(exit, ProcessExit::Exited(0), "{err}");
    let inside: Vec<&str> = out.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{out}");
    for (kind, inner) in kinds.iter().zip(inside) {
        let outer = fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        let shared = outer.to_str() == Some(inner);
        let expect_shared = matches!(*kind, "net" | "user");
        assert_eq!(shared, expect_shared, "{kind}: {inner} vs {outer:?}");
    }
}
