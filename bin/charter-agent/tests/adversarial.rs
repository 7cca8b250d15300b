//! The adversarial-host suite: a malicious host client against the real agent, in the
//! `sandbox` launcher's UVM (runc, loop devices, overlayfs, the simulated TEE) and in the
//! `qemu` launcher's real utility VM (the measured image under TCG, layers as virtio disks
//! under dm-verity, the agent reached over virtio-serial). Every scenario must be refused with
//! a named reason, execute nothing, and leave the agent serving the honest pod.
//!
//! Each scenario group is one function of the launcher [`Kind`]; [`both_kinds!`] makes the
//! `sandbox::<group>` and `vm::<group>` tests. Where the VM differs by construction (disks
//! fixed at launch and checked block by block when read; virtio-serial has no half-close),
//! the scenario says so and checks what must hold there.
//!
//! Needs root (namespaces, loop devices, mounts, runc; QEMU for `vm::`): the tests are
//! `#[ignore]`d otherwise and CI runs them as root with `--include-ignored`. The VM tests boot
//! one VM at a time; the static agent for the image is `$CHARTER_UVM_AGENT` or built.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use charter_agent_api::{
    paths, read_frame, CallError, ErrorKind, ExecExternal, ExecInContainer, MountSpec, Outcome,
    Reply, Request, ResponseFrame, StdioStream, UserSpec,
};
use charter_host::Uvm;
use common::*;

/// One `#[test]` per launcher for each scenario group.
macro_rules! both_kinds {
    ($($group:ident),* $(,)?) => {
        mod sandbox {
            $(
                #[test]
                #[ignore = "needs root: namespaces, loop devices, mounts and runc"]
                fn $group() {
                    super::$group(super::Kind::Sandbox)
                }
            )*
        }
        mod vm {
            $(
                #[test]
                #[ignore = "needs root + qemu: boots the UVM image under TCG (qemu-system-x86, linux-image-cloud-amd64, runc, a static charter-agent)"]
                fn $group() {
                    super::$group(super::Kind::Vm)
                }
            )*
        }
    };
}

both_kinds!(
    closed_until_the_attested_policy_is_set,
    layers_are_verified_and_cannot_be_changed,
    overlays_follow_the_policy,
    malicious_creates_are_denied,
    processes_signals_and_stdio,
    hostile_frames,
    sealed_volumes_only_as_the_policy_lists_them,
);

fn closed_until_the_attested_policy_is_set(kind: Kind) {
    let mut f = fixture(kind);
    let (b, _) = (f.base.root_hash.clone(), f.app.root_hash.clone());
    // 1. A layer before the policy.
    assert_refused(
        f.call(Request::MountDevice {
            source: "base.img".into(),
            target: paths::layer(&b),
            device_hash: b.clone(),
        }),
        ErrorKind::Closed,
        "no execution policy",
    );
    // 2. A container before the policy.
    assert_refused(
        f.call(Request::CreateContainer(web_create())),
        ErrorKind::Closed,
        "no execution policy",
    );
    // 3. Properties before the policy.
    assert_refused(
        f.call(Request::GetProperties {}),
        ErrorKind::Closed,
        "no execution policy",
    );
    // 4. A policy whose digest is not HOST_DATA (one byte appended).
    let forged = format!("{}\n", f.policy);
    assert_refused(
        f.call(Request::SetPolicy { policy: forged }),
        ErrorKind::PolicyRejected,
        "is not the attested HOST_DATA",
    );
    // 5. An allow-all policy in place of the attested one.
    let allow_all = std::fs::read_to_string(
        "../../../shared/testdata/snp/aci-milan-v2-policy/security_policy.rego",
    )
    .unwrap_or_else(|_| "package policy\napi_version := \"0.10.0\"\n".into());
    assert_refused(
        f.call(Request::SetPolicy { policy: allow_all }),
        ErrorKind::PolicyRejected,
        "is not the attested HOST_DATA",
    );
    assert!(matches!(f.call(Request::Status {}), Ok(Reply::Status(s)) if s.state == "closed"));
    // The right policy opens it; HOST_DATA in the agent's own evidence is its digest.
    f.set_policy();
    // 6. A second set_policy, same bytes.
    let p = f.policy.clone();
    assert_refused(
        f.call(Request::SetPolicy { policy: p }),
        ErrorKind::PolicyRejected,
        "only once",
    );
    // 7. A second set_policy, other bytes.
    assert_refused(
        f.call(Request::SetPolicy {
            policy: "package policy\n".into(),
        }),
        ErrorKind::PolicyRejected,
        "already set",
    );
    f.mount_layers();
    f.web_runs();
}

fn layers_are_verified_and_cannot_be_changed(kind: Kind) {
    let mut f = fixture(kind);
    f.set_policy();
    let (b, a) = (f.base.root_hash.clone(), f.app.root_hash.clone());
    // 8. A hash the policy does not list.
    let bogus = "ab".repeat(32);
    assert_denied(
        f.call(Request::MountDevice {
            source: "base.img".into(),
            target: paths::layer(&bogus),
            device_hash: bogus.clone(),
        }),
        "mount_device",
        "deviceHash not found",
    );
    // 9. A listed hash, but the file holds another layer (swapped before verification).
    assert_refused(
        f.call(Request::MountDevice {
            source: "app.img".into(),
            target: paths::layer(&b),
            device_hash: b.clone(),
        }),
        ErrorKind::Integrity,
        "root hash",
    );
    // 10. A listed hash, file modified by one byte.
    let source = f.tampered_source();
    let console_before = f.uvm.console().len();
    let r = f.call(Request::MountDevice {
        source,
        target: paths::layer(&b),
        device_hash: b.clone(),
    });
    match (f.kind, r) {
        // dm-verity checks each block as it is read: the VM may map a disk whose superblock
        // and root inode are intact, but never serves the flipped block.
        (Kind::Vm, Ok(_)) => tampered_disk_never_served(&mut f, console_before),
        (_, r) => assert_refused(r, ErrorKind::Integrity, ""),
    }
    // 11. Path traversal out of the host directory.
    assert_refused(
        f.call(Request::MountDevice {
            source: "../../etc/passwd".into(),
            target: paths::layer(&b),
            device_hash: b.clone(),
        }),
        ErrorKind::Refused,
        "plain file name",
    );
    // 12. An absolute source.
    assert_refused(
        f.call(Request::MountDevice {
            source: "/dev/sda".into(),
            target: paths::layer(&b),
            device_hash: b.clone(),
        }),
        ErrorKind::Refused,
        "plain file name",
    );
    // 13. A target outside /run/layers.
    assert_denied(
        f.call(Request::MountDevice {
            source: "base.img".into(),
            target: "/etc".into(),
            device_hash: b.clone(),
        }),
        "mount_device",
        "mountpoint invalid",
    );
    f.mount_layers();
    // 14. The same target twice.
    assert_denied(
        f.call(Request::MountDevice {
            source: "base.img".into(),
            target: paths::layer(&b),
            device_hash: b.clone(),
        }),
        "mount_device",
        "already mounted",
    );
    // 15. Unmount of an unknown target.
    assert_denied(
        f.call(Request::UnmountDevice {
            target: "/run/layers/nothing".into(),
        }),
        "unmount_device",
        "no device at path",
    );
    // 16. The layer files are swapped on the host after verification: no effect. (In the VM
    // the files are the disks' backing files: the bytes change under the guest.)
    let console_before = f.uvm.console().len();
    std::fs::write(&f.app.file, b"garbage").unwrap();
    std::fs::copy(&f.base.file, &f.app.file).unwrap();
    let _ = a;
    match f.kind {
        Kind::Sandbox => f.web_runs(),
        Kind::Vm => swapped_disk_never_served(&mut f, console_before),
    }
}

/// The kernel's report of a block that failed dm-verity since the console had `since` bytes.
fn verity_corruption(f: &Fixture, since: usize) -> Option<String> {
    let console = f.uvm.console();
    console
        .get(since..)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("verity") && l.contains("is corrupted"))
        .map(str::to_owned)
}

/// Scenario 10 in the VM, when `mount_device` accepted the tampered disk: dm-verity checks
/// blocks as they are read (the superblock and the root inode were intact), so the flipped
/// block must have been refused by the kernel by now (the read-ahead of the verification read
/// covers it), and the mapping leaves with the unmount.
fn tampered_disk_never_served(f: &mut Fixture, console_before: usize) {
    let block = TAMPER_OFFSET / 4096;
    let report = verity_corruption(f, console_before).unwrap_or_else(|| {
        panic!(
            "the tampered disk was mounted and dm-verity reported no corrupted block:\n{}",
            f.uvm.console()
        )
    });
    assert!(
        report.contains(&format!("data block {block} is corrupted")),
        "{report}"
    );
    eprintln!("scenario 10 (VM): mounted; the kernel refused the flipped block: {report}");
    let b = f.base.root_hash.clone();
    f.call(Request::UnmountDevice {
        target: paths::layer(&b),
    })
    .unwrap();
}

/// Scenario 16 in the VM: the app disk now holds the base layer's bytes. `/app/hello.txt` was
/// never read (see [`app_layer`]), so the honest container's read goes to the disk, where
/// dm-verity refuses the swapped blocks: it prints everything else and an I/O error for the
/// file, never other bytes. (A guest page cache still holding the verified block would give
/// the whole honest output, which is acceptable too.) Either way the kernel must have refused
/// swapped blocks: the check is not vacuous.
fn swapped_disk_never_served(f: &mut Fixture, console_before: usize) {
    let (out, err, exit) = f.run_web(true);
    let io_error = err.contains("Input/output error") || err.contains("I/O error");
    let without_file = WEB_OUT
        .strip_prefix("hello from a verified layer\n")
        .unwrap();
    assert!(
        out == WEB_OUT || (out == without_file && io_error),
        "web saw the swapped disk: stdout {out:?} stderr {err:?}"
    );
    eprintln!("scenario 16 (VM): stdout {out:?} stderr {err:?}");
    assert!(
        verity_corruption(f, console_before).is_some(),
        "the guest read no swapped block (the check would be vacuous): stdout {out:?}\n{}",
        f.uvm.console()
    );
    assert_eq!(
        exit,
        Reply::Exit {
            code: Some(0),
            signal: None
        }
    );
}

fn overlays_follow_the_policy(kind: Kind) {
    let mut f = Fixture::ready(kind);
    let (b, a) = (f.base.root_hash.clone(), f.app.root_hash.clone());
    // 17. create before any overlay.
    assert_refused(
        f.call(Request::CreateContainer(web_create())),
        ErrorKind::Refused,
        "no overlay mounted",
    );
    // 18. Layers in the wrong order.
    f.call(Request::ScratchMount {
        target: paths::scratch("web"),
    })
    .unwrap();
    assert_denied(
        f.call(Request::MountOverlay {
            container_id: "web".into(),
            layer_paths: vec![paths::layer(&b), paths::layer(&a)],
            target: paths::rootfs("web"),
        }),
        "mount_overlay",
        "no matching containers",
    );
    // 19. A layer path that is not a mounted device.
    assert_denied(
        f.call(Request::MountOverlay {
            container_id: "web".into(),
            layer_paths: vec!["/run/layers/evil".into(), paths::layer(&b)],
            target: paths::rootfs("web"),
        }),
        "mount_overlay",
        "not a mounted device",
    );
    // 20. An invalid container id (path traversal through the id).
    assert_denied(
        f.call(Request::MountOverlay {
            container_id: "../../etc".into(),
            layer_paths: vec![paths::layer(&a), paths::layer(&b)],
            target: "/etc".into(),
        }),
        "mount_overlay",
        "invalid containerID",
    );
    // 21. A non-canonical overlay target.
    assert_refused(
        f.call(Request::MountOverlay {
            container_id: "web".into(),
            layer_paths: vec![paths::layer(&a), paths::layer(&b)],
            target: "/run/elsewhere".into(),
        }),
        ErrorKind::Refused,
        "canonical",
    );
    // 22. Scratch outside /run/scratch.
    assert_refused(
        f.call(Request::ScratchMount {
            target: "/etc/x".into(),
        }),
        ErrorKind::Refused,
        "is not /run/scratch",
    );
    // 23. Another container's layers (sleeper's: base only) for web, then web's create.
    f.overlay("intruder", std::slice::from_ref(&b)).unwrap();
    let mut c = web_create();
    c.container_id = "intruder".into();
    assert_denied(
        f.call(Request::CreateContainer(c)),
        "create_container",
        "differs in",
    );
    // 24. Overlay for a container id twice.
    assert_denied(
        f.call(Request::MountOverlay {
            container_id: "intruder".into(),
            layer_paths: vec![paths::layer(&b)],
            target: paths::rootfs("intruder"),
        }),
        "mount_overlay",
        "already has an overlay",
    );
    // the web container's own overlay works afterwards
    f.call(Request::MountOverlay {
        container_id: "web".into(),
        layer_paths: vec![paths::layer(&a), paths::layer(&b)],
        target: paths::rootfs("web"),
    })
    .unwrap();
    let r = f.call(Request::CreateContainer(web_create())).unwrap();
    assert!(matches!(r, Reply::Process { .. }));
    assert_eq!(f.containers(), vec!["web".to_owned()]);
}

/// Each malicious create against the `web` overlay: denied, nothing created.
fn malicious_creates_are_denied(kind: Kind) {
    let mut f = Fixture::ready(kind);
    let (b, a) = (f.base.root_hash.clone(), f.app.root_hash.clone());
    f.overlay("web", &[b, a]).unwrap();
    type Edit = fn(&mut charter_agent_api::CreateContainer);
    let cases: Vec<(&str, Edit, &str)> = vec![
        // 25. argv changed
        ("argv", |c| c.args[2] = "cat /etc/shadow".into(), "command"),
        // 26. argv extended
        ("argv+", |c| c.args.push("extra".into()), "command"),
        // 27. env injected
        (
            "env injected",
            |c| c.env.push("LD_PRELOAD=/tmp/evil.so".into()),
            "LD_PRELOAD",
        ),
        // 28. required env missing
        (
            "env missing",
            |c| c.env.retain(|e| !e.starts_with("GREETING")),
            "required",
        ),
        // 29. regex anchoring trick
        (
            "env newline",
            |c| c.env.push("TOKEN=ok\nEVIL=1".into()),
            "TOKEN",
        ),
        // 30. partial regex match
        ("env partial", |c| c.env.push("TOKEN=abc1".into()), "TOKEN"),
        // 31. working dir changed
        ("cwd", |c| c.working_dir = "/tmp".into(), "working"),
        // 32. privileged
        ("privileged", |c| c.privileged = true, "privileged"),
        // 33. capability added
        (
            "caps",
            |c| {
                c.capabilities
                    .as_mut()
                    .unwrap()
                    .effective
                    .push("CAP_SYS_ADMIN".into())
            },
            "capabilities",
        ),
        // 34. no_new_privileges dropped
        ("nnp", |c| c.no_new_privileges = false, "noNewPrivileges"),
        // 35. user changed to root
        ("user", |c| c.user = UserSpec::default(), "user"),
        // 36. extra sandbox mount
        (
            "mount",
            |c| {
                c.mounts.push(MountSpec {
                    destination: "/extra".into(),
                    source: format!("{}/tmp/atlas/emptydir/extra", paths::SANDBOX_DIR),
                    kind: "bind".into(),
                    options: vec!["rbind".into(), "rw".into()],
                })
            },
            "mount",
        ),
        // 37. volume made read-write elsewhere: /data to /etc
        (
            "mount dest",
            |c| c.mounts.last_mut().unwrap().destination = "/etc".into(),
            "mount",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut c = web_create();
        edit(&mut c);
        let r = f.call(Request::CreateContainer(c));
        match &r {
            Err(CallError::Denied { denial, .. }) => {
                assert_eq!(denial.rule, "create_container", "{what}");
                let text = format!("{} {}", denial.explanation, denial.decision);
                assert!(text.contains(needle), "{what}: {text}");
                assert!(
                    !text.contains("evil.so") || what == "env injected",
                    "{what}"
                );
            }
            other => panic!("{what}: expected a denial, got {other:?}"),
        }
        assert!(f.containers().is_empty(), "{what}: something was created");
    }
    // 38. env values never reach the host in a denial
    let mut c = web_create();
    c.env.push("SECRET=hunter2".into());
    let Err(CallError::Denied { denial, .. }) = f.call(Request::CreateContainer(c)) else {
        panic!("not denied")
    };
    assert!(!denial.decision.to_string().contains("hunter2"));
    // 39. a host-path bind mount is refused by the agent itself
    let mut c = web_create();
    c.mounts.push(MountSpec {
        destination: "/host-etc".into(),
        source: "/etc".into(),
        kind: "bind".into(),
        options: vec!["rbind".into()],
    });
    assert_refused(
        f.call(Request::CreateContainer(c)),
        ErrorKind::Refused,
        "not a canonical path under",
    );
    // 40. a seccomp profile the agent cannot apply
    let mut c = web_create();
    c.seccomp_profile_sha256 = "00".repeat(32);
    assert_refused(
        f.call(Request::CreateContainer(c)),
        ErrorKind::Refused,
        "seccomp",
    );
    // 41. a user the image does not have
    let mut c = web_create();
    c.user.user = "mallory".into();
    assert_refused(
        f.call(Request::CreateContainer(c)),
        ErrorKind::Refused,
        "mallory",
    );
    assert!(f.containers().is_empty());
    // the honest create still works, once
    let r = f.call(Request::CreateContainer(web_create())).unwrap();
    assert!(matches!(r, Reply::Process { .. }));
    // 42. create twice
    assert_refused(
        f.call(Request::CreateContainer(web_create())),
        ErrorKind::Refused,
        "already exists",
    );
    f.call(Request::StartContainer {
        container_id: "web".into(),
    })
    .unwrap();
    let out = f.read_all("web", None, StdioStream::Stdout);
    assert!(
        out.starts_with("hello from a verified layer\nGREETING=hi\n1000\n"),
        "{out}"
    );
}

fn processes_signals_and_stdio(kind: Kind) {
    let mut f = Fixture::ready(kind);
    let b = f.base.root_hash.clone();
    // quiet: stdio not allowed
    f.overlay("quiet", std::slice::from_ref(&b)).unwrap();
    let r = f
        .call(Request::CreateContainer(simple_create("quiet", &QUIET_CMD)))
        .unwrap();
    assert_eq!(
        r,
        Reply::Process {
            process_id: 0,
            stdio_access: false
        }
    );
    f.call(Request::StartContainer {
        container_id: "quiet".into(),
    })
    .unwrap();
    // 43. stdout of a container whose stdio is not allowed
    assert_refused(
        f.call(Request::ReadStdio {
            container_id: "quiet".into(),
            process_id: None,
            stream: StdioStream::Stdout,
            max_bytes: 100,
        }),
        ErrorKind::Refused,
        "does not allow stdio",
    );
    // 44. ... nor stderr
    assert_refused(
        f.call(Request::ReadStdio {
            container_id: "quiet".into(),
            process_id: None,
            stream: StdioStream::Stderr,
            max_bytes: 100,
        }),
        ErrorKind::Refused,
        "does not allow stdio",
    );
    // 45. stdin of a process that has none
    assert_refused(
        f.call(Request::WriteStdin {
            container_id: "quiet".into(),
            process_id: None,
            data: "aGk=".into(),
            close: true,
        }),
        ErrorKind::Refused,
        "no stdin",
    );
    // 46. a signal the policy does not list for quiet
    assert_denied(
        f.call(Request::SignalContainerProcess {
            container_id: "quiet".into(),
            process_id: None,
            signal: 9,
        }),
        "signal_container_process",
        "signal",
    );
    // sleeper: signals and exec
    f.overlay("sleeper", &[b]).unwrap();
    f.call(Request::CreateContainer(simple_create(
        "sleeper",
        &SLEEPER_CMD,
    )))
    .unwrap();
    // 47. exec before start
    let exec = |args: &[&str]| {
        Request::ExecInContainer(ExecInContainer {
            container_id: "sleeper".into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: vec![PATH_ENV.into()],
            working_dir: "/".into(),
            no_new_privileges: false,
            user: UserSpec::default(),
            capabilities: Some(default_caps()),
            stdin: false,
        })
    };
    assert_refused(
        f.call(exec(&["/bin/echo", "hi"])),
        ErrorKind::Refused,
        "not running",
    );
    // 48. start of an unknown container
    assert_refused(
        f.call(Request::StartContainer {
            container_id: "ghost".into(),
        }),
        ErrorKind::Refused,
        "no container",
    );
    f.call(Request::StartContainer {
        container_id: "sleeper".into(),
    })
    .unwrap();
    // 49. an unlisted exec
    assert_denied(f.call(exec(&["/bin/sh"])), "exec_in_container", "command");
    // 50. a listed exec with an injected env
    let mut e = exec(&["/bin/echo", "hi"]);
    if let Request::ExecInContainer(x) = &mut e {
        x.env.push("EVIL=1".into());
    }
    assert_denied(f.call(e), "exec_in_container", "env");
    // the listed exec works and its output arrives
    let r = f.call(exec(&["/bin/echo", "hi"])).unwrap();
    let Reply::Process {
        process_id,
        stdio_access: true,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        f.read_all("sleeper", Some(process_id), StdioStream::Stdout),
        "hi\n"
    );
    // 51. a signal not in 1..=64
    assert_refused(
        f.call(Request::SignalContainerProcess {
            container_id: "sleeper".into(),
            process_id: None,
            signal: 999,
        }),
        ErrorKind::BadRequest,
        "999",
    );
    // 52. SIGKILL is not listed for sleeper
    assert_denied(
        f.call(Request::SignalContainerProcess {
            container_id: "sleeper".into(),
            process_id: None,
            signal: 9,
        }),
        "signal_container_process",
        "signal",
    );
    // 53. exec_external is not in the policy
    assert_denied(
        f.call(Request::ExecExternal(ExecExternal {
            args: vec!["/bin/sh".into()],
            env: vec![],
            working_dir: "/".into(),
        })),
        "exec_external",
        "external",
    );
    // 54-56. properties, stacks and logs are not allowed by this policy
    assert_denied(
        f.call(Request::GetProperties {}),
        "get_properties",
        "properties",
    );
    assert_denied(f.call(Request::DumpStacks {}), "dump_stacks", "stacks");
    assert_denied(
        f.call(Request::RuntimeLogging { max_lines: 10 }),
        "runtime_logging",
        "logging",
    );
    // 57. unmounting the overlay under a running container
    assert_refused(
        f.call(Request::UnmountOverlay {
            target: paths::rootfs("sleeper"),
        }),
        ErrorKind::Refused,
        "still running",
    );
    // SIGTERM is listed: the sleeper's trap ends it
    f.call(Request::SignalContainerProcess {
        container_id: "sleeper".into(),
        process_id: None,
        signal: 15,
    })
    .unwrap();
    let exit = f
        .call(Request::WaitProcess {
            container_id: "sleeper".into(),
            process_id: None,
        })
        .unwrap();
    assert_eq!(
        exit,
        Reply::Exit {
            code: Some(3),
            signal: None
        }
    );
    f.call(Request::ShutdownContainer {
        container_id: "sleeper".into(),
        force: false,
    })
    .unwrap();
    // 58. shutdown twice
    assert!(f
        .call(Request::ShutdownContainer {
            container_id: "sleeper".into(),
            force: false
        })
        .is_err());
    // 59. shutdown of an unknown container
    assert_refused(
        f.call(Request::ShutdownContainer {
            container_id: "ghost".into(),
            force: true,
        }),
        ErrorKind::Refused,
        "no container",
    );
    f.call(Request::ShutdownContainer {
        container_id: "quiet".into(),
        force: true,
    })
    .unwrap();
    f.web_runs();
}

/// How long a VM test waits for bytes that must not come (the guest cannot close the host's
/// end of a virtio-serial port).
const SILENCE: Duration = Duration::from_secs(5);

/// Sends `bytes` on a new connection and reads one response frame. In the sandbox the write
/// side is then shut down; a virtio-serial port has no half-close (the host hanging up ends
/// the session, answer and all), so in the VM the connection just stays open.
fn raw(f: &Fixture, bytes: &[u8]) -> (UnixStream, Option<ResponseFrame>) {
    let mut s = f.uvm.raw_stream();
    s.write_all(bytes).unwrap();
    if f.kind == Kind::Sandbox {
        s.shutdown(std::net::Shutdown::Write).ok();
    }
    let resp = read_frame::<ResponseFrame>(&mut s).ok();
    (s, resp)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Scenario 65 in the VM. The agent can only tell a frame is truncated when its stream ends,
/// and a virtio-serial session ends only when the host hangs up the port, after which no
/// answer can reach the host. What must hold: no answer comes to the partial frame, and what
/// the agent had half-read never reaches a later session: afterwards every agent port answers
/// a fresh `status`.
fn truncated_frame_then_hang_up(f: &Fixture, partial: &[u8]) {
    let mut s = f.uvm.raw_stream();
    s.write_all(partial).unwrap();
    s.set_read_timeout(Some(SILENCE)).unwrap();
    let mut got = [0u8; 1];
    match s.read(&mut got) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("an answer to a partial frame before its end: {other:?} {got:?}"),
    }
    drop(s);
    // Every port but the fixture's own, held open at once so each is a different one.
    let mut held = Vec::new();
    for i in 1..VM_AGENT_PORTS {
        let mut c = f.uvm.connect().unwrap();
        let r = c.call(Request::Status {});
        assert!(
            matches!(r, Ok(Reply::Status(_))),
            "port {i} after the hang-up: {r:?}\n{}",
            f.uvm.console()
        );
        held.push(c);
    }
}

fn bad_request(resp: Option<ResponseFrame>, needle: &str) {
    match resp.map(|r| r.outcome) {
        Some(Outcome::Error(e)) => {
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert!(e.message.contains(needle), "{} lacks {needle}", e.message);
        }
        other => panic!("expected bad_request mentioning {needle}, got {other:?}"),
    }
}

fn hostile_frames(kind: Kind) {
    let mut f = fixture(kind);
    // 60. garbage
    let (_, r) = raw(&f, &framed(b"\x00\xffnot json"));
    bad_request(r, "malformed");
    // 61. unknown field
    let (_, r) = raw(
        &f,
        &framed(br#"{"version":1,"id":5,"request":{"op":"status"},"sudo":true}"#),
    );
    bad_request(r, "sudo");
    // 62. unknown op
    let (_, r) = raw(
        &f,
        &framed(br#"{"version":1,"id":5,"request":{"op":"open_door"}}"#),
    );
    bad_request(r, "open_door");
    // 63. protocol version mismatch
    let (_, r) = raw(
        &f,
        &framed(br#"{"version":7,"id":5,"request":{"op":"status"}}"#),
    );
    bad_request(r, "version 7");
    // 64. oversized frame: refused before the body is read, connection closed (in the VM the
    // guest cannot close the host's end: nothing more arrives)
    let mut s = f.uvm.raw_stream();
    s.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
    bad_request(read_frame::<ResponseFrame>(&mut s).ok(), "exceeds");
    let mut rest = Vec::new();
    match f.kind {
        Kind::Sandbox => assert_eq!(
            s.read_to_end(&mut rest).unwrap_or(0),
            0,
            "connection stays open"
        ),
        Kind::Vm => {
            s.set_read_timeout(Some(SILENCE)).unwrap();
            match s.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                ),
            }
            assert!(rest.is_empty(), "bytes after the refusal: {rest:?}");
        }
    }
    drop(s);
    // 65. truncated frame
    let mut t = framed(br#"{"version":1,"id":5,"request":{"op":"status"}}"#);
    t.truncate(t.len() - 5);
    match f.kind {
        Kind::Sandbox => {
            let (_, r) = raw(&f, &t);
            bad_request(r, "truncated");
        }
        Kind::Vm => truncated_frame_then_hang_up(&f, &t),
    }
    // 66. a hostile unknown field nested in create (a hook)
    let (_, r) = raw(
        &f,
        &framed(br#"{"version":1,"id":5,"request":{"op":"create_container","container_id":"web","args":["/bin/sh"],"working_dir":"/","hooks":{"prestart":[]}}}"#),
    );
    bad_request(r, "hooks");
    // 67. a recoverable error keeps the connection usable
    let mut s = f.uvm.raw_stream();
    s.write_all(&framed(b"{}")).unwrap();
    bad_request(read_frame::<ResponseFrame>(&mut s).ok(), "version");
    s.write_all(&framed(
        br#"{"version":1,"id":9,"request":{"op":"status"}}"#,
    ))
    .unwrap();
    let r: ResponseFrame = read_frame(&mut s).unwrap();
    assert_eq!(r.id, 9);
    assert!(matches!(
        r.outcome,
        Outcome::Ok {
            reply: Reply::Status(_)
        }
    ));
    // the agent still serves the honest pod
    f.set_policy();
    f.mount_layers();
    f.web_runs();
}

fn sealed_volumes_only_as_the_policy_lists_them(kind: Kind) {
    let mut f = Fixture::ready(kind);
    std::fs::write(f.uvm.layer_dir().join("sealed-x"), b"CHSEAL01 not really").unwrap();
    // 68. A sealed volume the policy does not list (this policy names no broker at all).
    assert_denied(
        f.call(Request::MountSealed {
            name: "owner-a".into(),
            source: "sealed-x".into(),
        }),
        "mount_sealed",
        "sealed volume not in policy",
    );
    // 69. A name that would escape the sandbox's sealed directory.
    assert_refused(
        f.call(Request::MountSealed {
            name: "../../../etc".into(),
            source: "sealed-x".into(),
        }),
        ErrorKind::Refused,
        "not valid",
    );
    // 70. A source outside the host directory.
    assert_refused(
        f.call(Request::MountSealed {
            name: "owner-a".into(),
            source: "../agent.sock".into(),
        }),
        ErrorKind::Refused,
        "not a plain file name",
    );
}
