//! A real UVM running the real agent, a busybox pod policy, and a host client that can be
//! malicious. The UVM is either the `sandbox` launcher's ([`Kind::Sandbox`]: the agent in
//! fresh namespaces, layers as files) or the `qemu` launcher's ([`Kind::Vm`]: the measured UVM
//! image under TCG, layers as read-only virtio disks fixed at launch).
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use charter_agent_api::{
    paths, CallError, Client, CreateContainer, ErrorKind, MountSpec, Reply, Request, StdioStream,
    UserSpec,
};
use charter_host::{
    LaunchConfig, LayerDisk, QemuLauncher, QemuUvm, SandboxLauncher, SandboxUvm, Uvm,
};
use charter_policy::model::{
    Container, EnvRule, ExecProcess, IdNameRule, IdNameStrategy, MountConstraint, PolicyDocument,
    UserRule,
};
use charter_uvm::{UvmImage, UvmInputs};
use sha2::{Digest, Sha256};

pub const AGENT: &str = env!("CARGO_BIN_EXE_charter-agent");

#[allow(unused_imports)]
pub use charter_testkit::{default_caps, is_root, simple_create, tar_of, Layer, PATH_ENV};

fn build(dir: &Path, name: &str, tar: Vec<u8>) -> Layer {
    charter_testkit::build_layer(dir, name, tar)
}

pub const APPLETS: [&str; 10] = [
    "sh", "echo", "cat", "sleep", "id", "ls", "touch", "dd", "env", "true",
];

pub fn base_layer(dir: &Path) -> Layer {
    charter_testkit::busybox_layer(
        dir,
        "base",
        &APPLETS,
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
        "root:x:0:\napp:x:1000:\n",
    )
}

/// `/app/hello.txt`, placed so that reading it touches blocks nothing read before: 64 KiB of
/// file data first (beyond the read-ahead of the superblock read at verification), then
/// 16 inodes with 3000-byte inline tails (one metadata block each) ahead of `/app` in the
/// depth-first inode order, so `/app` and `hello.txt` are not in the root inode's block (the
/// one `mount` reads). In the VM, a read of `hello.txt` after `mount_device` therefore goes to
/// the disk, where dm-verity checks it (scenario 16).
pub fn app_layer(dir: &Path) -> Layer {
    let pads: Vec<String> = (0..16).map(|i| format!("aaa/pad-{i:02}.txt")).collect();
    let mut files = vec![("aaa/pad.bin", vec![0x5a; 64 << 10], 0o644)];
    files.extend(pads.iter().map(|p| (p.as_str(), vec![b'p'; 3000], 0o644)));
    files.push((
        "app/hello.txt",
        b"hello from a verified layer\n".to_vec(),
        0o644,
    ));
    build(dir, "app", tar_of(&files, &[]))
}

/// Where scenario 10 flips one byte of the base layer: inside `/bin/busybox`'s data.
pub const TAMPER_OFFSET: usize = 8192 + 100;

/// The base layer image with the byte at [`TAMPER_OFFSET`] flipped.
pub fn tampered(base: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(base).unwrap();
    bytes[TAMPER_OFFSET] ^= 1;
    bytes
}

pub const WEB_CMD: [&str; 3] = [
    "/bin/sh",
    "-c",
    "cat /app/hello.txt; echo GREETING=$GREETING; id -u; touch /data/ok && echo data-ok",
];
pub const QUIET_CMD: [&str; 3] = [
    "/bin/sh",
    "-c",
    "echo secret-output; echo secret-err >&2; sleep 60",
];
/// PID 1 of a container ignores signals it has no handler for: trap SIGTERM.
pub const SLEEPER_CMD: [&str; 3] = [
    "/bin/sh",
    "-c",
    "trap 'exit 3' TERM; while true; do sleep 1; done",
];
/// What `web` prints.
pub const WEB_OUT: &str = "hello from a verified layer\nGREETING=hi\n1000\ndata-ok\n";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn id_rule(p: &str) -> IdNameRule {
    IdNameRule {
        pattern: p.into(),
        strategy: IdNameStrategy::Id,
    }
}

/// The test pod's policy: `web` (two layers, stdio, a volume, uid 1000, env rules, a probe),
/// `quiet` (stdio denied) and `sleeper` (signals, exec).
pub fn policy(base: &Layer, app: &Layer) -> PolicyDocument {
    let web = Container {
        name: Some("web".into()),
        layers: vec![base.root_hash.clone(), app.root_hash.clone()],
        command: strings(&WEB_CMD),
        env_rules: vec![
            EnvRule::string(PATH_ENV, false),
            EnvRule::string("GREETING=hi", true),
            EnvRule::re2("TOKEN=[a-z]+", false),
        ],
        working_dir: "/".into(),
        mounts: vec![MountConstraint {
            destination: "/data".into(),
            source: "sandbox:///tmp/atlas/emptydir/.+".into(),
            kind: "bind".into(),
            options: strings(&["rbind", "rshared", "rw"]),
        }],
        exec_processes: vec![ExecProcess {
            command: strings(&["/bin/echo", "probe"]),
            signals: vec![],
        }],
        signals: vec![15],
        allow_stdio_access: true,
        no_new_privileges: true,
        user: Some(UserRule {
            user_idname: id_rule("1000"),
            group_idnames: vec![id_rule("1000")],
            umask: "0022".into(),
        }),
        ..Container::default()
    };
    let quiet = Container {
        name: Some("quiet".into()),
        layers: vec![base.root_hash.clone()],
        command: strings(&QUIET_CMD),
        env_rules: vec![EnvRule::string(PATH_ENV, false)],
        working_dir: "/".into(),
        allow_stdio_access: false,
        ..Container::default()
    };
    let sleeper = Container {
        name: Some("sleeper".into()),
        layers: vec![base.root_hash.clone()],
        command: strings(&SLEEPER_CMD),
        env_rules: vec![EnvRule::string(PATH_ENV, false)],
        working_dir: "/".into(),
        exec_processes: vec![ExecProcess {
            command: strings(&["/bin/echo", "hi"]),
            signals: vec![],
        }],
        signals: vec![15],
        allow_stdio_access: true,
        ..Container::default()
    };
    PolicyDocument {
        containers: vec![web, quiet, sleeper],
        ..PolicyDocument::default()
    }
}

pub fn standard_mounts() -> Vec<MountSpec> {
    charter_host::standard_mounts()
}

pub fn web_create() -> CreateContainer {
    let mut mounts = standard_mounts();
    mounts.push(MountSpec {
        destination: "/data".into(),
        source: format!("{}/tmp/atlas/emptydir/data", paths::SANDBOX_DIR),
        kind: "bind".into(),
        options: strings(&["rbind", "rshared", "rw"]),
    });
    CreateContainer {
        container_id: "web".into(),
        args: strings(&WEB_CMD),
        env: vec![PATH_ENV.into(), "GREETING=hi".into()],
        working_dir: "/".into(),
        mounts,
        privileged: false,
        no_new_privileges: true,
        user: UserSpec {
            user: "1000".into(),
            supplemental_groups: vec![],
            umask: String::new(),
        },
        capabilities: Some(default_caps()),
        seccomp_profile_sha256: String::new(),
        stdin: false,
    }
}

/// One simulated AMD-SP for the whole test binary (key generation takes a while).
pub fn sim_dir() -> PathBuf {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let d = std::env::temp_dir().join("charter-agent-tests-simulated-sp");
    charter_attest_insecure_sim::InsecureSimulatedSp::load_or_generate(&d).unwrap();
    d
}

/// Which launcher the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `charter_host::SandboxLauncher`: the agent in fresh namespaces, layer files in its
    /// host directory.
    Sandbox,
    /// `charter_host::QemuLauncher`: the measured UVM image under TCG, the agent as PID 1,
    /// layers as read-only virtio disks attached at launch and named by serial.
    Vm,
}

/// How long one reply may take before a test fails instead of hanging (a runc call under TCG
/// takes a few hundred milliseconds).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The UVM under test. Every connection it hands out has a read timeout of [`CALL_TIMEOUT`].
#[derive(Debug)]
pub enum TestUvm {
    Sandbox(SandboxUvm),
    Vm(QemuUvm),
}

impl TestUvm {
    fn inner(&self) -> &dyn Uvm {
        match self {
            TestUvm::Sandbox(u) => u,
            TestUvm::Vm(u) => u,
        }
    }

    /// The guest's serial console (VM); empty for the sandbox.
    pub fn console(&self) -> String {
        match self {
            TestUvm::Sandbox(_) => String::new(),
            TestUvm::Vm(u) => u.console(),
        }
    }

    /// A new connection as a raw byte stream (for hostile frames).
    pub fn raw_stream(&self) -> UnixStream {
        match self {
            // The sandbox agent's own socket: the connection is the agent's.
            TestUvm::Sandbox(u) => UnixStream::connect(u.socket()).unwrap(),
            // A virtio-serial port relayed by the host side of the launcher.
            TestUvm::Vm(_) => self.connect().unwrap().into_inner(),
        }
    }
}

impl Uvm for TestUvm {
    fn connect(&self) -> Result<Client<UnixStream>, charter_host::Error> {
        let mut c = self.inner().connect()?;
        c.stream_mut()
            .set_read_timeout(Some(CALL_TIMEOUT))
            .expect("read timeout");
        Ok(c)
    }
    fn layer_dir(&self) -> &Path {
        self.inner().layer_dir()
    }
    fn measurement(&self) -> [u8; 48] {
        self.inner().measurement()
    }
    fn insecure_simulated_root_pem(&self) -> Option<String> {
        self.inner().insecure_simulated_root_pem()
    }
    fn stop(&mut self) -> Result<(), charter_host::Error> {
        match self {
            TestUvm::Sandbox(u) => u.stop(),
            TestUvm::Vm(u) => u.stop(),
        }
    }
}

/// The UVM image (INSECURE simulated TEE) for the whole test binary, built once into cargo's
/// temporary directory for integration tests, around the static agent
/// (`$CHARTER_UVM_AGENT`, else built by cargo: [`charter_uvm::workspace_static_agent`]).
pub fn uvm_image() -> &'static UvmImage {
    static IMAGE: OnceLock<UvmImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let agent = charter_uvm::workspace_static_agent(&workspace).unwrap();
        let mut inputs = UvmInputs::from_host(&agent).unwrap();
        inputs.insecure_simulated_tee = true;
        let t = Instant::now();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("charter-agent-adversarial-uvm");
        let image = UvmImage::build(&inputs, &dir).unwrap();
        eprintln!("UVM image built in {:?}", t.elapsed());
        image
    })
}

/// One VM at a time per test binary: TCG on shared cores.
fn vm_slot() -> MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Agent ports of the VM (concurrent host connections).
pub const VM_AGENT_PORTS: usize = 8;

/// The serial of the tampered copy of the base layer attached to every VM (scenario 10).
pub const TAMPERED: &str = "tampered.img";

/// A launched UVM with the layers in place and the policy ready to set. `base.file` and
/// `app.file` are the files the host serves the layers from: in the sandbox's host directory,
/// or the disks' backing files for the VM (attached as `base.img`, `app.img` and
/// [`TAMPERED`]).
pub struct Fixture {
    pub kind: Kind,
    pub uvm: TestUvm,
    pub policy: String,
    pub base: Layer,
    pub app: Layer,
    pub client: Client<UnixStream>,
    started: Instant,
    _layers: tempfile::TempDir,
    _vm_slot: Option<MutexGuard<'static, ()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.kind == Kind::Vm {
            eprintln!("VM session: {:?}", self.started.elapsed());
        }
    }
}

pub fn fixture(kind: Kind) -> Fixture {
    let mut started = Instant::now();
    let layers = tempfile::tempdir().unwrap();
    let base = base_layer(layers.path());
    let app = app_layer(layers.path());
    let policy = policy(&base, &app).to_rego();
    let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
    let (uvm, base, app, slot) = match kind {
        Kind::Sandbox => {
            let launcher = SandboxLauncher {
                simulator_dir: sim_dir(),
                ..SandboxLauncher::default()
            };
            let uvm = launcher
                .launch_sandbox(&LaunchConfig {
                    policy_digest: digest,
                    agent: PathBuf::from(AGENT),
                })
                .unwrap();
            for l in [&base, &app] {
                std::fs::copy(&l.file, uvm.layer_dir().join(l.file.file_name().unwrap())).unwrap();
            }
            let base = Layer {
                file: uvm.layer_dir().join("base.img"),
                root_hash: base.root_hash,
            };
            let app = Layer {
                file: uvm.layer_dir().join("app.img"),
                root_hash: app.root_hash,
            };
            (TestUvm::Sandbox(uvm), base, app, None)
        }
        Kind::Vm => {
            let image = uvm_image();
            let tampered = layers.path().join(TAMPERED);
            std::fs::write(&tampered, self::tampered(&base.file)).unwrap();
            let slot = vm_slot();
            started = Instant::now();
            let mut launcher = QemuLauncher::new(&image.kernel, &image.initrd, &image.cmdline);
            launcher.simulator_dir = sim_dir();
            launcher.agent_ports = VM_AGENT_PORTS;
            launcher.layers = [&base.file, &app.file, &tampered]
                .into_iter()
                .map(|p| LayerDisk {
                    serial: p.file_name().unwrap().to_str().unwrap().to_owned(),
                    path: p.clone(),
                })
                .collect();
            let uvm = launcher
                .launch_qemu(&LaunchConfig {
                    policy_digest: digest,
                    agent: PathBuf::from("/init"),
                })
                .unwrap();
            eprintln!("VM booted in {:?}", uvm.boot_time());
            (TestUvm::Vm(uvm), base, app, Some(slot))
        }
    };
    let client = uvm.connect().unwrap();
    Fixture {
        kind,
        uvm,
        policy,
        base,
        app,
        client,
        started,
        _layers: layers,
        _vm_slot: slot,
    }
}

impl Fixture {
    /// One request on the fixture's connection. A broken channel (including a reply that did
    /// not come within [`CALL_TIMEOUT`]) is never an expected outcome: it fails the test with
    /// the guest's console.
    pub fn call(&mut self, r: Request) -> Result<Reply, CallError> {
        let op = r.op();
        let t = Instant::now();
        let res = self.client.call(r);
        if let Err(e @ CallError::Channel { .. }) = &res {
            panic!(
                "{op}: {e} after {:?} ({:?})\nconsole:\n{}",
                t.elapsed(),
                self.kind,
                self.uvm.console()
            );
        }
        res
    }

    pub fn set_policy(&mut self) {
        let p = self.policy.clone();
        self.call(Request::SetPolicy { policy: p }).unwrap();
    }

    pub fn mount_layers(&mut self) {
        let layers: Vec<(String, String)> = [&self.base, &self.app]
            .iter()
            .map(|l| {
                (
                    l.file.file_name().unwrap().to_str().unwrap().to_owned(),
                    l.root_hash.clone(),
                )
            })
            .collect();
        for (src, hash) in layers {
            self.call(Request::MountDevice {
                source: src,
                target: paths::layer(&hash),
                device_hash: hash,
            })
            .unwrap();
        }
    }

    /// The `mount_device` source of a copy of the base layer with one byte flipped
    /// ([`tampered`]): written to the sandbox's host directory now, or the disk attached to
    /// the VM at launch.
    pub fn tampered_source(&self) -> String {
        if self.kind == Kind::Sandbox {
            std::fs::write(
                self.uvm.layer_dir().join(TAMPERED),
                tampered(&self.base.file),
            )
            .unwrap();
        }
        TAMPERED.into()
    }

    /// Scratch and overlay for `id` over `layers` (base first).
    pub fn overlay(&mut self, id: &str, layers: &[String]) -> Result<Reply, CallError> {
        self.call(Request::ScratchMount {
            target: paths::scratch(id),
        })?;
        self.call(Request::MountOverlay {
            container_id: id.into(),
            layer_paths: layers.iter().rev().map(|h| paths::layer(h)).collect(),
            target: paths::rootfs(id),
        })
    }

    /// Policy set, layers mounted.
    pub fn ready(kind: Kind) -> Fixture {
        let mut f = fixture(kind);
        f.set_policy();
        f.mount_layers();
        f
    }

    pub fn read_all(&self, id: &str, process_id: Option<u32>, stream: StdioStream) -> String {
        let mut out = Vec::new();
        if let Err(e) = charter_host::pump_stdio(&self.uvm, id, process_id, stream, &mut out) {
            panic!(
                "reading {stream:?} of {id}: {e}\nconsole:\n{}",
                self.uvm.console()
            );
        }
        String::from_utf8(out).unwrap()
    }

    pub fn containers(&mut self) -> Vec<String> {
        match self.call(Request::Status {}).unwrap() {
            Reply::Status(s) => s.containers,
            other => panic!("{other:?}"),
        }
    }

    /// Runs the legitimate `web` container to completion and checks its output: the agent
    /// still serves the honest pod.
    pub fn web_runs(&mut self) {
        let (out, _, exit) = self.run_web(false);
        assert_eq!(out, WEB_OUT, "web output");
        assert_eq!(
            exit,
            Reply::Exit {
                code: Some(0),
                signal: None
            }
        );
    }

    /// Runs the legitimate `web` container to completion: its stdout, its stderr (if
    /// `stderr`: read after stdout ended) and its exit.
    pub fn run_web(&mut self, stderr: bool) -> (String, String, Reply) {
        let (b, a) = (self.base.root_hash.clone(), self.app.root_hash.clone());
        self.overlay("web", &[b, a]).unwrap();
        let r = self.call(Request::CreateContainer(web_create())).unwrap();
        assert!(matches!(
            r,
            Reply::Process {
                process_id: 0,
                stdio_access: true
            }
        ));
        self.call(Request::StartContainer {
            container_id: "web".into(),
        })
        .unwrap();
        let out = self.read_all("web", None, StdioStream::Stdout);
        let err = if stderr {
            self.read_all("web", None, StdioStream::Stderr)
        } else {
            String::new()
        };
        let exit = self
            .call(Request::WaitProcess {
                container_id: "web".into(),
                process_id: None,
            })
            .unwrap();
        (out, err, exit)
    }
}

/// Asserts a denial by `rule` whose explanation mentions `needle`.
pub fn assert_denied(r: Result<Reply, CallError>, rule: &str, needle: &str) {
    match r {
        Err(CallError::Denied { denial, .. }) => {
            assert_eq!(denial.rule, rule, "{denial:?}");
            assert!(
                denial.explanation.contains(needle),
                "explanation {:?} lacks {needle:?}",
                denial.explanation
            );
        }
        other => panic!("expected a {rule} denial mentioning {needle:?}, got {other:?}"),
    }
}

/// Asserts an agent refusal of `kind` whose message mentions `needle`.
pub fn assert_refused(r: Result<Reply, CallError>, kind: ErrorKind, needle: &str) {
    match r {
        Err(CallError::Agent { error, .. }) => {
            assert_eq!(error.kind, kind, "{error:?}");
            assert!(
                error.message.contains(needle),
                "message {:?} lacks {needle:?}",
                error.message
            );
        }
        other => panic!("expected a {kind:?} refusal mentioning {needle:?}, got {other:?}"),
    }
}
