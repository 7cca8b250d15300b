//! Reaping: after create/start/exec (also failed ones)/kill/delete and `wait_exit` on every returned pid, the test
//! process has no child left (no zombie of a container process nor of runc's helpers). A
//! binary of its own with one test, so no other test's children interfere. Root only.

use std::fs;
use std::os::unix::fs::symlink;

use charter_oci::{
    become_subreaper, build_spec, wait_exit, write_bundle, Capabilities, ContainerConfig,
    ContainerStdio, ProcessConfig, ProcessExit, Runc,
};

/// (pid, state letter) of every process whose parent is this process.
fn children() -> Vec<(i32, char)> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next() == Some(me.as_str()) {
            out.push((
                entry.file_name().to_string_lossy().parse().unwrap_or(0),
                state,
            ));
        }
    }
    out
}

#[test]
#[ignore = "needs root: runc"]
fn every_child_is_reaped() {
    become_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("bundle/rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "echo"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let runc = Runc::new(dir.path().join("state")).unwrap();
    let caps = vec!["CAP_KILL".to_owned()];
    let process = ProcessConfig {
        args: vec!["sleep".to_owned(), "30".to_owned()],
        env: vec!["PATH=/bin".to_owned()],
        cwd: "/".to_owned(),
        capabilities: Capabilities {
            bounding: caps.clone(),
            effective: caps.clone(),
            permitted: caps,
            ..Capabilities::default()
        },
        ..ProcessConfig::default()
    };
    let id = format!("charter-oci-zombies-{}", std::process::id());
    let config = ContainerConfig {
        id: id.clone(),
        rootfs,
        process: process.clone(),
        ..ContainerConfig::default()
    };
    let bundle = dir.path().join("bundle");
    write_bundle(&bundle, &build_spec(&config).unwrap()).unwrap();

    let init = runc
        .create(&id, &bundle, ContainerStdio::null().unwrap())
        .unwrap();
    runc.start(&id).unwrap();
    let mut execs = Vec::new();
    for code in 0..3 {
        let exec = ProcessConfig {
            args: vec!["sh".into(), "-c".into(), format!("exit {code}")],
            ..process.clone()
        };
        execs.push((
            code,
            runc.exec(&id, &exec, ContainerStdio::null().unwrap())
                .unwrap(),
        ));
    }
    // Failed execs (runc refuses after forking its init) leave nothing behind either.
    for bad in [
        ProcessConfig {
            args: vec!["/nonexistent".to_owned()],
            ..process.clone()
        },
        ProcessConfig {
            cwd: "/nonexistent".to_owned(),
            ..process.clone()
        },
    ] {
        let err = runc
            .exec(&id, &bad, ContainerStdio::null().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("nonexistent"), "{err}");
    }
    // Only container processes are our children now: runc and its helpers are gone.
    let mut expected: Vec<i32> = execs.iter().map(|(_, pid)| pid.as_raw()).collect();
    expected.push(init.as_raw());
    expected.sort_unstable();
    let mut now: Vec<i32> = children().into_iter().map(|(pid, _)| pid).collect();
    now.sort_unstable();
    assert_eq!(now, expected, "children: {:?}", children());

    for (code, pid) in execs {
        assert_eq!(wait_exit(pid).unwrap(), ProcessExit::Exited(code));
    }
    runc.delete(&id, true).unwrap();
    assert_eq!(wait_exit(init).unwrap(), ProcessExit::Signaled(9));
    assert_eq!(children(), Vec::new());
}
