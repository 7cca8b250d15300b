//! `examples/multiparty/run.sh` end to end with this build's `charter` (and the `charter-agent`
//! beside it): a real broker over HTTPS, two owners' sealed datasets, the pod in the sandbox
//! UVM computing the aggregate, the workload key-release endpoint, and a modified pod refused
//! both keys. The script exits 0 only when all of that holds.

#[test]
#[ignore = "needs root: the sandbox UVM (namespaces, loop devices, mounts, runc)"]
fn multiparty_example_runs_and_refuses_the_modified_pod() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/multiparty/run.sh"
    );
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("CHARTER_BIN", env!("CARGO_BIN_EXE_charter"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[join] aggregate: matched=4 total_cost=4900 mean_age=40.8"));
    assert!(stderr.contains("broker answered 401"), "{stderr}");
}
