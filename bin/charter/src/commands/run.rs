//! `charter run`, `charter exec`, `charter stop`: a pod under its attested policy in a utility
//! VM, and the commands that reach a running group from another terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use charter_agent_api::{ExecInContainer, Reply, Request, StdioStream, UserSpec};
use charter_host::{LaunchConfig, Launcher, SandboxLauncher, Uvm};
use charter_image::{Platform, RegistryOptions};
use charter_policygen::{LocalImages, Measuring, Options};
use clap::Args;
use sha2::{Digest, Sha256};

use super::progress::LayerBars;

/// Where running groups are registered for `charter exec` and `charter stop`.
const GROUPS_DIR: &str = "/run/charter-groups";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubernetes YAML (as for `charter policy generate`).
    pod: PathBuf,
    /// The execution policy to enforce (its SHA-256 becomes HOST_DATA).
    #[arg(long)]
    policy: PathBuf,
    /// `REF=oci:DIR[:TAG]` or `REF=docker-archive:FILE`, REF exactly as the pod's `image:`.
    #[arg(long = "image", value_name = "REF=SOURCE")]
    images: Vec<String>,
    /// Never pull: every image needs an --image mapping.
    #[arg(long)]
    offline: bool,
    /// Speak plain HTTP to this registry (`host[:port]`).
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// The utility VM: `sandbox` (namespaces, simulated TEE; INSECURE, for development) or
    /// `qemu` (a QEMU VM booted from --uvm-image, layers under kernel dm-verity; simulated TEE
    /// without SNP hardware).
    #[arg(long, default_value = "sandbox", value_parser = ["sandbox", "qemu"])]
    uvm: String,
    /// The QEMU UVM image (`charter uvm build --insecure-simulated-tee` output) for --uvm qemu.
    #[arg(long, value_name = "DIR", required_if_eq("uvm", "qemu"))]
    uvm_image: Option<PathBuf>,
    /// Name of the group for `charter exec` / `charter stop` (default: the pod's name).
    #[arg(long)]
    name: Option<String>,
    /// Which pod template, when the YAML has several (0-based, file order).
    #[arg(long)]
    index: Option<usize>,
    /// `VOLUME=FILE`: the sealed file (`charter data seal`) of a sealed volume of the pod.
    #[arg(long = "sealed", value_name = "VOLUME=FILE")]
    sealed: Vec<String>,
    #[command(flatten)]
    cache: super::CacheArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The group (`charter run --name`, default the pod's name).
    group: String,
    /// The container.
    container: String,
    /// The command and its arguments (must be one the policy lists for the container).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The group.
    group: String,
    /// SIGKILL instead of SIGTERM.
    #[arg(long)]
    force: bool,
}

/// What `charter exec` needs to know about a running group.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct GroupRecord {
    socket: PathBuf,
    containers: Vec<GroupContainer>,
}

/// The process settings of one container, which an exec must repeat.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct GroupContainer {
    name: String,
    env: Vec<String>,
    working_dir: String,
    user: UserSpec,
    capabilities: Option<charter_agent_api::Capabilities>,
    no_new_privileges: bool,
}

fn group_file(name: &str) -> Result<PathBuf> {
    if !charter_agent_api::paths::valid_component(name) {
        bail!("group name {name:?} must be letters, digits, '.', '_' or '-'");
    }
    Ok(Path::new(GROUPS_DIR).join(format!("{name}.json")))
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let uvm = match &args.uvm_image {
        Some(dir) if args.uvm == "qemu" => UvmChoice::Qemu(dir.clone()),
        _ => UvmChoice::Sandbox,
    };
    let policy = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("reading policy {}", args.policy.display()))?;
    let mut images = LocalImages::new(Platform::default());
    if !args.offline {
        let mut registry = RegistryOptions::default();
        for host in &args.insecure_registry {
            registry = registry.insecure_host(host);
        }
        images = images.with_registry(registry);
    }
    for spec in &args.images {
        images.add_mapping(spec)?;
    }
    let yaml = std::fs::read_to_string(&args.pod)
        .with_context(|| format!("reading {}", args.pod.display()))?;
    let cache = args.cache.open()?;
    let cache_dir = cache
        .as_ref()
        .map(|c| c.dir().to_owned())
        .unwrap_or_else(std::env::temp_dir);
    let bars = LayerBars::new(false);
    let scratch = std::env::temp_dir();
    let measuring = Measuring {
        cache: cache.as_ref(),
        scratch_dir: &scratch,
        threads: std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN),
        observer: &bars,
    };
    // The regenerated plan must see the same broker as the policy (sealed volumes need it).
    let key_broker = charter_policy::Enforcer::new(policy.as_bytes())
        .with_context(|| format!("loading policy {}", args.policy.display()))?
        .document()
        .and_then(|d| d.key_broker.clone());
    let options = Options {
        pod_index: args.index,
        key_broker,
        ..Options::default()
    };
    let mut sealed = Vec::new();
    for spec in &args.sealed {
        let (name, file) = spec
            .split_once('=')
            .with_context(|| format!("--sealed {spec:?}: expected VOLUME=FILE"))?;
        let file = PathBuf::from(file);
        if !file.is_file() {
            bail!("--sealed {name}: {} is not a file", file.display());
        }
        sealed.push((name.to_owned(), file));
    }
    let generated = charter_policygen::generate(&yaml, &images, &options, &measuring)
        .with_context(|| format!("reading the pod {}", args.pod.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        if generated.template.name.is_empty() {
            "charter".to_owned()
        } else {
            generated.template.name.clone()
        }
    });
    let record_path = group_file(&name)?;
    if record_path.exists() {
        bail!(
            "a group named {name:?} is already running (or {} is stale: remove it)",
            record_path.display()
        );
    }

    run_pod(&PodRun {
        policy: &policy,
        generated: &generated,
        images: &images,
        cache_dir: &cache_dir,
        name: &name,
        record: Some(record_path.as_path()),
        uvm,
        sealed: &sealed,
        tampered_disk: false,
        after_start: &|_, _| Ok(()),
    })
}

/// A hook run once the pod has started (the demo attests and tampers here).
pub(crate) type AfterStart<'a> = &'a dyn Fn(&dyn Uvm, &charter_host::PodPlan) -> Result<()>;

/// Which utility VM runs the pod.
pub(crate) enum UvmChoice {
    /// Namespaces on this host (INSECURE simulated TEE).
    Sandbox,
    /// QEMU booted from the image in this directory.
    Qemu(PathBuf),
}

/// Everything [`run_pod`] needs.
pub(crate) struct PodRun<'a> {
    pub policy: &'a str,
    pub generated: &'a charter_policygen::Generated,
    pub images: &'a LocalImages,
    pub cache_dir: &'a Path,
    pub name: &'a str,
    /// Where to register the group for `charter exec` / `charter stop`.
    pub record: Option<&'a Path>,
    /// The sealed files of the pod's sealed volumes, `(volume, file)`.
    pub sealed: &'a [(String, PathBuf)],
    pub uvm: UvmChoice,
    /// The demo: the QEMU UVM also gets a copy of the first layer with one byte flipped, as
    /// the disk `tampered.img` (disks are fixed at launch; the sandbox demo writes the file).
    pub tampered_disk: bool,
    pub after_start: AfterStart<'a>,
}

/// Launches the sandbox UVM for `run.policy`, runs the pod until its containers exit (or
/// Ctrl-C), stops the UVM.
pub(crate) fn run_pod(run: &PodRun<'_>) -> Result<ExitCode> {
    let digest: [u8; 32] = Sha256::digest(run.policy.as_bytes()).into();
    if let UvmChoice::Qemu(dir) = &run.uvm {
        return super::run_qemu::run_pod_qemu(run, dir, digest);
    }
    let launcher = SandboxLauncher::default();
    eprintln!(
        "charter: starting the {} UVM (INSECURE: simulated TEE)",
        launcher.name()
    );
    let mut uvm = launcher.launch(&LaunchConfig {
        policy_digest: digest,
        agent: charter_host::find_agent()?,
    })?;
    let result = drive(&mut *uvm, run, None);
    if let Some(r) = run.record {
        let _ = std::fs::remove_file(r);
    }
    uvm.stop()?;
    result
}

fn register(uvm: &dyn Uvm, plan: &charter_host::PodPlan, record_path: &Path) -> Result<()> {
    std::fs::create_dir_all(GROUPS_DIR).with_context(|| format!("creating {GROUPS_DIR}"))?;
    let record = GroupRecord {
        socket: uvm.layer_dir().join("agent.sock"),
        containers: plan
            .containers
            .iter()
            .map(|c| GroupContainer {
                name: c.name.clone(),
                env: c.create.env.clone(),
                working_dir: c.create.working_dir.clone(),
                user: c.create.user.clone(),
                capabilities: c.create.capabilities.clone(),
                no_new_privileges: c.create.no_new_privileges,
            })
            .collect(),
    };
    std::fs::write(record_path, serde_json::to_vec(&record)?)
        .with_context(|| format!("writing {}", record_path.display()))
}

/// Sets the policy, starts the pod and streams its stdio until every container exits.
///
/// `plan`: a pod planned before launch, its layers and sealed volumes already given to the UVM
/// (the QEMU UVM's disks, its broker ports served). Without one (the sandbox), the pod is
/// planned into the UVM's layer directory, the sealed files are placed there and the broker
/// relay is started there.
pub(crate) fn drive(
    uvm: &mut dyn Uvm,
    run: &PodRun<'_>,
    plan: Option<charter_host::PodPlan>,
) -> Result<ExitCode> {
    let PodRun {
        policy,
        generated,
        images,
        cache_dir,
        name,
        ..
    } = *run;
    // The agent looks for the broker relay when the policy is set.
    let _relay = match &generated.document.key_broker {
        Some(kb) if plan.is_none() => {
            Some(charter_host::start_broker_relay(uvm.layer_dir(), &kb.url)?)
        }
        _ => None,
    };
    let mut client = uvm.connect()?;
    client
        .call(Request::SetPolicy {
            policy: policy.to_owned(),
        })
        .context("the agent refused the policy")?;
    eprintln!(
        "charter: policy sha256 {} accepted (HOST_DATA)",
        hex::encode(Sha256::digest(policy.as_bytes()))
    );
    let plan = match plan {
        Some(p) => p,
        None => {
            let mut p = charter_host::plan_pod(generated, images, cache_dir, uvm.layer_dir())?;
            p.sealed = charter_host::place_sealed(
                &generated.document.sealed_volumes,
                run.sealed,
                uvm.layer_dir(),
            )?;
            p
        }
    };
    let pod = charter_host::start_pod(&mut client, &plan)?;
    if let Some(record_path) = run.record {
        register(uvm, &plan, record_path)?;
        eprintln!(
            "charter: group {name:?} running {} container(s); `charter exec {name} CONTAINER -- CMD`, `charter stop {name}`, or Ctrl-C",
            pod.containers.len()
        );
    }
    (run.after_start)(uvm, &plan)?;
    let stdout = Arc::new(Mutex::new(()));
    let uvm_ref: &dyn Uvm = uvm;
    let exits = std::thread::scope(|s| -> Result<Vec<(String, Reply)>> {
        for (id, access) in &pod.containers {
            if !access {
                eprintln!(
                    "charter: {id}: stdio not allowed by the policy (discarded in the guest)"
                );
                continue;
            }
            for stream in [StdioStream::Stdout, StdioStream::Stderr] {
                let lock = Arc::clone(&stdout);
                s.spawn(move || {
                    let mut out = Prefixed {
                        prefix: format!("[{id}] "),
                        err: stream == StdioStream::Stderr,
                        lock,
                        at_line_start: true,
                    };
                    let _ = charter_host::pump_stdio(uvm_ref, id, None, stream, &mut out);
                });
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let handle = signals.handle();
        let ids: Vec<String> = pod.containers.iter().map(|(i, _)| i.clone()).collect();
        let stop2 = Arc::clone(&stop);
        let ids2 = ids.clone();
        s.spawn(move || {
            if signals.forever().next().is_some() {
                stop2.store(true, Ordering::SeqCst);
                eprintln!("\ncharter: shutting the group down");
                if let Ok(mut c) = uvm_ref.connect() {
                    for id in &ids2 {
                        let _ = c.call(Request::ShutdownContainer {
                            container_id: id.clone(),
                            force: false,
                        });
                    }
                }
            }
        });
        let waits: Vec<_> = ids
            .iter()
            .map(|id| {
                let id = id.clone();
                s.spawn(move || -> Result<(String, Reply)> {
                    let mut c = uvm_ref.connect()?;
                    let r = c.call(Request::WaitProcess {
                        container_id: id.clone(),
                        process_id: None,
                    })?;
                    Ok((id, r))
                })
            })
            .collect();
        let mut exits = Vec::new();
        for w in waits {
            match w.join() {
                Ok(r) => exits.push(r?),
                Err(_) => bail!("a wait thread panicked"),
            }
        }
        handle.close();
        Ok(exits)
    })?;
    let mut code = 0u8;
    for (id, exit) in exits {
        if let Reply::Exit { code: c, signal } = exit {
            eprintln!(
                "charter: {id} exited {}",
                c.map_or_else(
                    || format!("by signal {}", signal.unwrap_or(0)),
                    |c| format!("with code {c}")
                )
            );
            if code == 0 {
                code = match (c, signal) {
                    (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
                    (None, Some(s)) => u8::try_from((128 + s) & 0xff).unwrap_or(1),
                    _ => 1,
                };
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// Writes stdio lines with a `[container] ` prefix.
struct Prefixed {
    prefix: String,
    err: bool,
    lock: Arc<Mutex<()>>,
    at_line_start: bool,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = Vec::with_capacity(buf.len() + self.prefix.len());
        for &b in buf {
            if self.at_line_start {
                text.extend_from_slice(self.prefix.as_bytes());
            }
            text.push(b);
            self.at_line_start = b == b'\n';
        }
        if self.err {
            std::io::stderr().write_all(&text)?;
        } else {
            std::io::stdout().write_all(&text)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

fn load_group(name: &str) -> Result<GroupRecord> {
    let path = group_file(name)?;
    let bytes = std::fs::read(&path)
        .with_context(|| format!("no running group {name:?} ({} is missing)", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
}

pub fn exec(args: ExecArgs) -> Result<ExitCode> {
    let g = load_group(&args.group)?;
    let Some(c) = g.containers.iter().find(|c| c.name == args.container) else {
        bail!(
            "group {:?} has no container {:?}",
            args.group,
            args.container
        );
    };
    let stream = std::os::unix::net::UnixStream::connect(&g.socket)
        .with_context(|| format!("connecting to {}", g.socket.display()))?;
    let mut client = charter_agent_api::Client::new(stream);
    let reply = client.call(Request::ExecInContainer(ExecInContainer {
        container_id: args.container.clone(),
        args: args.command.clone(),
        env: c.env.clone(),
        working_dir: c.working_dir.clone(),
        no_new_privileges: c.no_new_privileges,
        user: c.user.clone(),
        capabilities: c.capabilities.clone(),
        stdin: false,
    }))?;
    let Reply::Process {
        process_id,
        stdio_access,
    } = reply
    else {
        bail!("unexpected reply {reply:?}");
    };
    let socket = g.socket.clone();
    let connect = || -> Result<charter_agent_api::Client<std::os::unix::net::UnixStream>> {
        Ok(charter_agent_api::Client::new(
            std::os::unix::net::UnixStream::connect(&socket)?,
        ))
    };
    if stdio_access {
        for (stream, mut out) in [
            (
                StdioStream::Stdout,
                Box::new(std::io::stdout()) as Box<dyn Write>,
            ),
            (StdioStream::Stderr, Box::new(std::io::stderr())),
        ] {
            let mut c = connect()?;
            loop {
                match c.call(Request::ReadStdio {
                    container_id: args.container.clone(),
                    process_id: Some(process_id),
                    stream,
                    max_bytes: 64 * 1024,
                })? {
                    Reply::Stdio { eof: true, .. } => break,
                    Reply::Stdio { data, .. } => {
                        use base64::Engine as _;
                        out.write_all(&base64::engine::general_purpose::STANDARD.decode(data)?)?;
                    }
                    other => bail!("unexpected reply {other:?}"),
                }
            }
        }
    } else {
        eprintln!("charter: the policy does not let the host see this process's output");
    }
    let exit = connect()?.call(Request::WaitProcess {
        container_id: args.container,
        process_id: Some(process_id),
    })?;
    Ok(match exit {
        Reply::Exit { code: Some(c), .. } => ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
}

pub fn stop(args: StopArgs) -> Result<ExitCode> {
    let g = load_group(&args.group)?;
    let stream = std::os::unix::net::UnixStream::connect(&g.socket)
        .with_context(|| format!("connecting to {}", g.socket.display()))?;
    let mut client = charter_agent_api::Client::new(stream);
    for c in &g.containers {
        let id = &c.name;
        match client.call(Request::ShutdownContainer {
            container_id: id.clone(),
            force: args.force,
        }) {
            Ok(_) => eprintln!("charter: {id} stopped"),
            Err(e) => eprintln!("charter: {id}: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
