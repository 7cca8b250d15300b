//! Container and process effects: the OCI spec is built here from the allowed request (never
//! taken from the host) and run with runc. Every effect takes the policy's [`Allowed`].

use std::collections::BTreeMap;
use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use charter_agent_api::{paths, AgentError, Capabilities, ErrorKind, Reply, Request, UserSpec};
use charter_oci::{
    ContainerConfig, ContainerStdio, HostStdio, MountConfig, Pid, ProcessConfig, StdioMode,
};
use charter_policy::request::{
    CapabilitySets, ContainerRef, CreateContainer, ExecExternal, ExecInContainer, Mount,
    SignalContainerProcess,
};
use charter_policy::{Allowed, Enforcer, Request as PolicyRequest};

use crate::agent::{enforce, refuse, Config, Fail};
use crate::guest::{failed, Guest};
use crate::streams::{ExitCell, ExitInfo, StreamBuf};
use crate::userdb::{self, Identity};

/// A process's stdin, shared by the requests that write to it.
pub(crate) type Stdin = Arc<Mutex<Option<PipeWriter>>>;

/// Mounts runc always sets up (the framework's default mounts of the same destinations);
/// requested mounts at these destinations are checked by the policy and then left to runc.
const RUNTIME_MOUNTS: [&str; 7] = [
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
];

/// How long `shutdown_container` waits for SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

pub(crate) struct Proc {
    pub pid: Option<Pid>,
    pub args: Vec<String>,
    pub stdout: Option<Arc<StreamBuf>>,
    pub stderr: Option<Arc<StreamBuf>>,
    pub stdin: Option<Stdin>,
    pub exit: Arc<ExitCell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Stopped,
}

pub(crate) struct Container {
    state: State,
    stdio_access: bool,
    init: Option<Proc>,
    execs: BTreeMap<u32, Proc>,
    next_exec: u32,
}

impl Container {
    pub fn external() -> Self {
        Self {
            state: State::Running,
            stdio_access: false,
            init: None,
            execs: BTreeMap::new(),
            next_exec: 1,
        }
    }

    pub fn is_live(&self) -> bool {
        self.state != State::Stopped
    }

    pub fn process(&self, process_id: Option<u32>) -> Option<&Proc> {
        match process_id {
            None | Some(0) => self.init.as_ref(),
            Some(p) => self.execs.get(&p),
        }
    }

    fn add_exec(&mut self, p: Proc) -> u32 {
        let id = self.next_exec;
        self.next_exec += 1;
        self.execs.insert(id, p);
        id
    }
}

fn runc(config: &Config) -> charter_oci::Runc {
    charter_oci::Runc::with_binary(&config.runc, "/run/charter/runc")
        .with_work_dir("/run/charter/tmp")
}

fn refused(what: impl Into<String>) -> AgentError {
    refuse(ErrorKind::Refused, what)
}

fn caps_in(c: &Capabilities) -> CapabilitySets {
    CapabilitySets {
        ambient: c.ambient.clone(),
        bounding: c.bounding.clone(),
        effective: c.effective.clone(),
        inheritable: c.inheritable.clone(),
        permitted: c.permitted.clone(),
    }
}

fn caps_out(c: &CapabilitySets) -> charter_oci::Capabilities {
    charter_oci::Capabilities {
        bounding: c.bounding.clone(),
        effective: c.effective.clone(),
        inheritable: c.inheritable.clone(),
        permitted: c.permitted.clone(),
        ambient: c.ambient.clone(),
    }
}

/// The capabilities a decision grants: the decision's own list, else the request's.
fn granted_caps(
    allowed: &Allowed<'_>,
    requested: Option<&Capabilities>,
) -> charter_oci::Capabilities {
    match (allowed.caps_list(), requested) {
        (Some(c), _) => caps_out(c),
        (None, Some(r)) => caps_out(&caps_in(r)),
        (None, None) => charter_oci::Capabilities::default(),
    }
}

fn granted_env(allowed: &Allowed<'_>, requested: &[String]) -> Vec<String> {
    allowed
        .env_list()
        .map_or_else(|| requested.to_vec(), <[String]>::to_vec)
}

/// Starts a thread that records `pid`'s exit in the returned cell.
fn watch(pid: Pid) -> Arc<ExitCell> {
    let cell = Arc::new(ExitCell::default());
    let c = Arc::clone(&cell);
    std::thread::spawn(move || {
        let info = match charter_oci::wait_exit(pid) {
            Ok(e) => ExitInfo {
                code: e.code(),
                signal: e.signal(),
            },
            Err(_) => ExitInfo {
                code: None,
                signal: None,
            },
        };
        c.set(info);
    });
    cell
}

fn stdio_for(access: bool, stdin: bool) -> Result<(ContainerStdio, HostStdio), AgentError> {
    let (i, o) = match (access, stdin) {
        (false, _) => (StdioMode::Null, StdioMode::Null),
        (true, false) => (StdioMode::Null, StdioMode::Pipe),
        (true, true) => (StdioMode::Pipe, StdioMode::Pipe),
    };
    ContainerStdio::new(i, o, o).map_err(failed)
}

fn proc_from(pid: Option<Pid>, args: Vec<String>, host: HostStdio, exit: Arc<ExitCell>) -> Proc {
    Proc {
        pid,
        args,
        stdout: host.stdout.map(StreamBuf::pump),
        stderr: host.stderr.map(StreamBuf::pump),
        stdin: host.stdin.map(|w| Arc::new(Mutex::new(Some(w)))),
        exit,
    }
}

pub(crate) fn write_stdin(stdin: &Stdin, data: &[u8], close: bool) -> Result<(), AgentError> {
    let mut g = stdin.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(w) = g.as_mut() {
        w.write_all(data)
            .map_err(|e| failed(format!("writing stdin: {e}")))?;
    } else if !data.is_empty() {
        return Err(refused("stdin is closed"));
    }
    if close {
        *g = None;
    }
    Ok(())
}

fn resolve_user(rootfs: &Path, user: &UserSpec) -> Result<Identity, AgentError> {
    userdb::resolve(rootfs, &user.user, &user.supplemental_groups, &user.umask)
        .map_err(|e| refused(e.to_string()))
}

/// A bind source must be a canonical path under the sandbox directory (where volumes live);
/// other mount types name no host path.
fn check_mount_source(m: &charter_agent_api::MountSpec) -> Result<(), AgentError> {
    let bind = m.kind == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
    if !bind {
        return Ok(());
    }
    let under = m
        .source
        .strip_prefix(paths::SANDBOX_DIR)
        .is_some_and(|r| r.starts_with('/'));
    let canonical = !m
        .source
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..");
    if under && canonical {
        Ok(())
    } else {
        Err(refused(format!(
            "bind mount source {:?} for {} is not a canonical path under {}",
            m.source,
            m.destination,
            paths::SANDBOX_DIR
        )))
    }
}

impl Guest {
    pub(crate) fn apply_container(
        &mut self,
        enforcer: &mut Enforcer,
        request: Request,
    ) -> Result<Reply, Fail> {
        match request {
            Request::CreateContainer(r) => self.create(enforcer, r),
            Request::StartContainer { container_id } => {
                let c = self.container_mut(&container_id)?;
                if c.state != State::Created {
                    return Err(refused(format!(
                        "container {container_id} is not waiting to start"
                    ))
                    .into());
                }
                runc(&self.config).start(&container_id).map_err(failed)?;
                if let Some(c) = self.containers.get_mut(&container_id) {
                    c.state = State::Running;
                }
                Ok(Reply::Done {})
            }
            Request::ExecInContainer(r) => self.exec_in(enforcer, r),
            Request::ExecExternal(r) => self.exec_external(enforcer, r),
            Request::SignalContainerProcess {
                container_id,
                process_id,
                signal,
            } => self.signal(enforcer, &container_id, process_id, signal),
            Request::ShutdownContainer {
                container_id,
                force,
            } => self.shutdown(enforcer, &container_id, force),
            other => Err(refused(format!("{} is not handled here", other.op())).into()),
        }
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut Container, AgentError> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| refused(format!("no container {id:?}")))
    }

    fn create(
        &mut self,
        enforcer: &mut Enforcer,
        r: charter_agent_api::CreateContainer,
    ) -> Result<Reply, Fail> {
        let cid = r.container_id.clone();
        if !paths::valid_container_id(&cid) {
            return Err(refused(format!("invalid container id {cid:?}")).into());
        }
        if self.containers.contains_key(&cid) {
            return Err(refused(format!("container {cid} already exists")).into());
        }
        let rootfs = self
            .rootfs_of(&cid)
            .ok_or_else(|| refused(format!("container {cid} has no overlay mounted")))?;
        if !r.seccomp_profile_sha256.is_empty() {
            return Err(refused("seccomp profiles are not supported by this agent yet").into());
        }
        for m in &r.mounts {
            check_mount_source(m)?;
        }
        let identity = resolve_user(&rootfs, &r.user)?;
        let pr = PolicyRequest::CreateContainer(CreateContainer {
            container_id: cid.clone(),
            arg_list: r.args.clone(),
            env_list: r.env.clone(),
            working_dir: r.working_dir.clone(),
            sandbox_dir: paths::SANDBOX_DIR.to_owned(),
            huge_pages_dir: String::new(),
            mounts: r
                .mounts
                .iter()
                .map(|m| Mount {
                    destination: m.destination.clone(),
                    source: m.source.clone(),
                    kind: m.kind.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            privileged: r.privileged,
            no_new_privileges: r.no_new_privileges,
            user: Some(identity.policy.clone()),
            capabilities: r.capabilities.as_ref().map(caps_in),
            seccomp_profile_sha256: r.seccomp_profile_sha256.clone(),
        });
        let config = self.config.clone();
        let container = enforce(enforcer, &pr, |a| {
            create_effect(a, &config, &r, &rootfs, &identity)
        })?;
        let access = container.stdio_access;
        self.containers.insert(cid, container);
        Ok(Reply::Process {
            process_id: 0,
            stdio_access: access,
        })
    }

    fn exec_in(
        &mut self,
        enforcer: &mut Enforcer,
        r: charter_agent_api::ExecInContainer,
    ) -> Result<Reply, Fail> {
        let cid = r.container_id.clone();
        let rootfs = self
            .rootfs_of(&cid)
            .ok_or_else(|| refused(format!("container {cid} has no root filesystem")))?;
        let config = self.config.clone();
        let c = self.container_mut(&cid)?;
        if c.state != State::Running {
            return Err(refused(format!("container {cid} is not running")).into());
        }
        let identity = resolve_user(&rootfs, &r.user)?;
        let pr = PolicyRequest::ExecInContainer(ExecInContainer {
            container_id: cid.clone(),
            arg_list: r.args.clone(),
            env_list: r.env.clone(),
            working_dir: r.working_dir.clone(),
            no_new_privileges: r.no_new_privileges,
            user: Some(identity.policy.clone()),
            capabilities: r.capabilities.as_ref().map(caps_in),
        });
        let container_access = c.stdio_access;
        let (proc_, access) = enforce(enforcer, &pr, |a| {
            let access = container_access && a.allow_stdio_access();
            let (cs, hs) = stdio_for(access, r.stdin)?;
            let process = ProcessConfig {
                args: r.args.clone(),
                env: granted_env(a, &r.env),
                cwd: r.working_dir.clone(),
                uid: identity.uid,
                gid: identity.gid,
                additional_gids: identity.additional_gids.clone(),
                umask: Some(identity.umask),
                capabilities: granted_caps(a, r.capabilities.as_ref()),
                no_new_privileges: r.no_new_privileges,
            };
            let pid = runc(&config).exec(&cid, &process, cs).map_err(failed)?;
            Ok((proc_from(Some(pid), r.args.clone(), hs, watch(pid)), access))
        })?;
        let process_id = c.add_exec(proc_);
        Ok(Reply::Process {
            process_id,
            stdio_access: access,
        })
    }

    fn exec_external(
        &mut self,
        enforcer: &mut Enforcer,
        r: charter_agent_api::ExecExternal,
    ) -> Result<Reply, Fail> {
        let pr = PolicyRequest::ExecExternal(ExecExternal {
            arg_list: r.args.clone(),
            env_list: r.env.clone(),
            working_dir: r.working_dir.clone(),
        });
        let (proc_, access) = enforce(enforcer, &pr, |a| {
            let access = a.allow_stdio_access();
            let Some((prog, rest)) = r.args.split_first() else {
                return Err(refused("exec_external needs a program"));
            };
            let mut cmd = std::process::Command::new(prog);
            cmd.args(rest)
                .env_clear()
                .envs(
                    granted_env(a, &r.env)
                        .iter()
                        .filter_map(|e| e.split_once('=')),
                )
                .current_dir(&r.working_dir);
            if access {
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
            } else {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
            cmd.stdin(std::process::Stdio::null());
            let mut child = cmd
                .spawn()
                .map_err(|e| failed(format!("spawning {prog}: {e}")))?;
            let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
            let host = HostStdio {
                stdin: None,
                stdout: child
                    .stdout
                    .take()
                    .map(|s| PipeReader::from(OwnedFd::from(s))),
                stderr: child
                    .stderr
                    .take()
                    .map(|s| PipeReader::from(OwnedFd::from(s))),
            };
            let cell = Arc::new(ExitCell::default());
            let c2 = Arc::clone(&cell);
            std::thread::spawn(move || {
                use std::os::unix::process::ExitStatusExt as _;
                let st = child.wait().ok();
                c2.set(ExitInfo {
                    code: st.and_then(|s| s.code()),
                    signal: st.and_then(|s| s.signal()),
                });
            });
            Ok((proc_from(pid, r.args.clone(), host, cell), access))
        })?;
        let process_id = self.external.add_exec(proc_);
        Ok(Reply::Process {
            process_id,
            stdio_access: access,
        })
    }

    fn signal(
        &mut self,
        enforcer: &mut Enforcer,
        cid: &str,
        process_id: Option<u32>,
        signal: i32,
    ) -> Result<Reply, Fail> {
        if !(1..=64).contains(&signal) {
            return Err(refuse(
                ErrorKind::BadRequest,
                format!("signal {signal} is not in 1..=64"),
            )
            .into());
        }
        let config = self.config.clone();
        let c = self.container_mut(cid)?;
        if c.state != State::Running {
            return Err(refused(format!("container {cid} is not running")).into());
        }
        let is_init = matches!(process_id, None | Some(0));
        let p = c
            .process(process_id)
            .ok_or_else(|| refused(format!("container {cid} has no such process")))?;
        if p.exit.get().is_some() {
            return Err(refused("the process has already exited").into());
        }
        let pr = PolicyRequest::SignalContainerProcess(SignalContainerProcess {
            container_id: cid.to_owned(),
            signal: i64::from(signal),
            is_init_process: is_init,
            arg_list: p.args.clone(),
        });
        let pid = p.pid;
        enforce(enforcer, &pr, |_a: &Allowed<'_>| {
            if is_init {
                runc(&config).kill(cid, signal, false).map_err(failed)
            } else {
                let pid = pid.ok_or_else(|| refused("process has no pid"))?;
                crate::sys::kill_pid(pid, signal).map_err(failed)
            }
        })?;
        Ok(Reply::Done {})
    }

    fn shutdown(&mut self, enforcer: &mut Enforcer, cid: &str, force: bool) -> Result<Reply, Fail> {
        let config = self.config.clone();
        let c = self.container_mut(cid)?;
        if c.state == State::Stopped {
            return Err(refused(format!("container {cid} is already shut down")).into());
        }
        let pr = PolicyRequest::ShutdownContainer(ContainerRef {
            container_id: cid.to_owned(),
        });
        let exit = c.init.as_ref().map(|p| Arc::clone(&p.exit));
        let started = c.state == State::Running;
        enforce(enforcer, &pr, |_a: &Allowed<'_>| {
            let runc = runc(&config);
            if started {
                let _ = runc.kill(cid, if force { 9 } else { 15 }, false);
                let exited = exit.as_ref().is_some_and(|e| e.wait_for(GRACE).is_some());
                if !exited {
                    let _ = runc.kill(cid, 9, true);
                }
            }
            runc.delete(cid, true).map_err(failed)?;
            if let Some(e) = &exit {
                e.wait_for(GRACE);
            }
            Ok(())
        })?;
        c.state = State::Stopped;
        Ok(Reply::Done {})
    }
}

fn create_effect(
    a: &Allowed<'_>,
    config: &Config,
    r: &charter_agent_api::CreateContainer,
    rootfs: &Path,
    identity: &Identity,
) -> Result<Container, AgentError> {
    let cid = &r.container_id;
    let access = a.allow_stdio_access();
    let mut mounts = Vec::new();
    for m in &r.mounts {
        if RUNTIME_MOUNTS.contains(&m.destination.as_str()) {
            continue;
        }
        if m.source.starts_with(paths::SANDBOX_DIR) && !Path::new(&m.source).exists() {
            // A volume directory: world-writable like kubelet's emptyDir, so a non-root
            // container user can write to it.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::create_dir_all(&m.source)
                .and_then(|()| {
                    std::fs::set_permissions(&m.source, std::fs::Permissions::from_mode(0o777))
                })
                .map_err(|e| failed(format!("{}: {e}", m.source)))?;
        }
        mounts.push(MountConfig {
            destination: m.destination.clone(),
            source: m.source.clone(),
            kind: m.kind.clone(),
            options: m.options.clone(),
        });
    }
    let spec = charter_oci::build_spec(&ContainerConfig {
        id: cid.clone(),
        rootfs: rootfs.to_owned(),
        readonly_rootfs: false,
        process: ProcessConfig {
            args: r.args.clone(),
            env: granted_env(a, &r.env),
            cwd: r.working_dir.clone(),
            uid: identity.uid,
            gid: identity.gid,
            additional_gids: identity.additional_gids.clone(),
            umask: Some(identity.umask),
            capabilities: granted_caps(a, r.capabilities.as_ref()),
            no_new_privileges: r.no_new_privileges,
        },
        privileged: r.privileged,
        hostname: String::new(),
        mounts,
    })
    .map_err(|e| refused(format!("container {cid}: {e}")))?;
    let bundle = PathBuf::from(paths::CONTAINERS).join(cid);
    charter_oci::write_bundle(&bundle, &spec).map_err(failed)?;
    let (cs, hs) = stdio_for(access, r.stdin)?;
    let runc = runc(config);
    let pid = match runc.create(cid, &bundle, cs) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = runc.delete(cid, true);
            return Err(failed(e));
        }
    };
    Ok(Container {
        state: State::Created,
        stdio_access: access,
        init: Some(proc_from(Some(pid), r.args.clone(), hs, watch(pid))),
        execs: BTreeMap::new(),
        next_exec: 1,
    })
}
