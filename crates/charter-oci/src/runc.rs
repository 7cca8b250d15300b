//! The `runc` command-line driver.

use std::env;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

use crate::error::{io_err, truncate, Error, Result, SpecError, MAX_RUNC_MESSAGE};
use crate::process::Pid;
use crate::spec::{build_process, check_canonical, to_json, validate_id, write_atomic, ExecConfig};
use crate::stdio::ContainerStdio;

/// The only `PATH` runc runs with (its environment is cleared otherwise).
pub const RUNC_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of the end of a runc JSON log is read for an error message.
const MAX_LOG_READ: u64 = 64 * 1024;

/// Where runc is looked for when it is not in `PATH`.
const FALLBACK_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

/// A container's status as `runc state` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContainerStatus {
    /// Being created.
    Creating,
    /// Created, init waiting for `runc start`.
    Created,
    /// Running.
    Running,
    /// Paused (frozen).
    Paused,
    /// Init has exited.
    Stopped,
    /// Anything else runc may print.
    Other(String),
}

/// The output of `runc state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Init's pid in the agent's PID namespace; `None` once stopped (runc prints 0).
    pub pid: Option<Pid>,
    /// Status.
    pub status: ContainerStatus,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time as runc prints it (RFC 3339).
    pub created: String,
}

#[derive(Deserialize)]
struct RawState {
    id: String,
    pid: i64,
    status: String,
    bundle: String,
    #[serde(default)]
    rootfs: String,
    #[serde(default)]
    created: String,
}

impl ContainerState {
    /// Parses `runc state` output.
    pub fn parse(json: &[u8]) -> Result<ContainerState> {
        let raw: RawState = serde_json::from_slice(json).map_err(Error::State)?;
        let status = match raw.status.as_str() {
            "creating" => ContainerStatus::Creating,
            "created" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" => ContainerStatus::Paused,
            "stopped" => ContainerStatus::Stopped,
            _ => ContainerStatus::Other(truncate(&raw.status, 64)),
        };
        Ok(ContainerState {
            id: raw.id,
            pid: i32::try_from(raw.pid).ok().and_then(Pid::from_raw),
            status,
            bundle: raw.bundle.into(),
            rootfs: raw.rootfs.into(),
            created: raw.created,
        })
    }
}

#[derive(Deserialize)]
struct LogLine {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

fn clean_message(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        "(runc printed no error message)".to_owned()
    } else {
        truncate(trimmed, MAX_RUNC_MESSAGE)
    }
}

/// The error entries of runc's JSON log lines (all entries when none is an error; the raw
/// text when no line is JSON).
fn log_message(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let entries: Vec<LogLine> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<LogLine>(line).ok())
        .collect();
    let errors: Vec<&str> = entries
        .iter()
        .filter(|e| matches!(e.level.as_str(), "error" | "fatal" | "panic"))
        .map(|e| e.msg.as_str())
        .collect();
    let chosen: Vec<&str> = if errors.is_empty() {
        entries.iter().map(|e| e.msg.as_str()).collect()
    } else {
        errors
    };
    if chosen.is_empty() {
        clean_message(&text)
    } else {
        clean_message(&chosen.join("; "))
    }
}

/// The tail (at most [`MAX_LOG_READ`] bytes) of a runc log file.
fn read_log_tail(path: &Path) -> Vec<u8> {
    let mut text = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_LOG_READ)));
        let _ = file.take(MAX_LOG_READ).read_to_end(&mut text);
    }
    text
}

fn read_pid(subcommand: &'static str, path: &Path) -> Result<Pid> {
    let bad = |reason: String| Error::PidFile { subcommand, reason };
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(64).read_to_string(&mut text))
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| bad(format!("not a pid: {:?}", truncate(text.trim(), 64))))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `runc` in `PATH`, then in the usual system directories.
pub fn find_runc() -> Result<PathBuf> {
    let from_path = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("runc"))
        .find(|candidate| is_executable(candidate))
        .ok_or(Error::RuncNotFound)
}

/// Drives the `runc` binary.
///
/// Every invocation runs `runc --root <root> --log-format json ...` with a cleared environment (only
/// [`RUNC_PATH_ENV`] as `PATH`) and is waited for by its own pid. Pid files, runc's JSON log
/// and `process.json` live in a private temporary directory under the work directory
/// (default: [`std::env::temp_dir`]) that is removed when the call returns.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
    work_dir: PathBuf,
}

impl Runc {
    /// A driver for the `runc` found by [`find_runc`], keeping container state under `root`
    /// (created by runc if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Runc> {
        Ok(Runc::with_binary(find_runc()?, root))
    }

    /// A driver for the given runc binary.
    pub fn with_binary(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Runc {
        Runc {
            binary: binary.into(),
            root: root.into(),
            work_dir: env::temp_dir(),
        }
    }

    /// Uses `dir` instead of the system temporary directory for per-call scratch files.
    #[must_use]
    pub fn with_work_dir(mut self, dir: impl Into<PathBuf>) -> Runc {
        self.work_dir = dir.into();
        self
    }

    /// The runc binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state root (`runc --root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", RUNC_PATH_ENV)
            .arg("--root")
            .arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        cmd.arg("--log-format").arg("json");
        cmd
    }

    fn scratch(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("charter-oci-")
            .tempdir_in(&self.work_dir)
            .map_err(io_err(format!(
                "create a scratch directory in {}",
                self.work_dir.display()
            )))
    }

    fn spawn_error(&self) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        }
    }

    /// Runs a subcommand whose stdio is ours: stdout captured, stderr is the error message.
    fn run_captured(&self, subcommand: &'static str, mut cmd: Command) -> Result<Output> {
        let output = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(self.spawn_error())?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(Error::Runc {
                subcommand,
                status: output.status,
                message: log_message(&output.stderr),
            })
        }
    }

    /// Runs a subcommand whose stdio belongs to the container; errors come from its log.
    fn run_passthrough(
        &self,
        subcommand: &'static str,
        mut cmd: Command,
        stdio: ContainerStdio,
        log: &Path,
    ) -> Result<()> {
        stdio.apply(&mut cmd);
        let spawned = cmd.spawn();
        // Close the agent's copies of the container ends now, whatever happened.
        drop(cmd);
        let mut child = spawned.map_err(self.spawn_error())?;
        let status = child
            .wait()
            .map_err(io_err(format!("wait for runc {subcommand}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Runc {
                subcommand,
                status,
                message: log_message(&read_log_tail(log)),
            })
        }
    }

    /// `runc create --bundle <bundle> --pid-file <f> <id>`: sets the container up with its
    /// init process waiting for [`Runc::start`]; returns init's pid.
    ///
    /// `bundle` must be absolute and canonical and hold `config.json` (see
    /// [`crate::write_bundle`]). `stdio` becomes init's stdio. The returned pid is a child of
    /// the agent once runc has exited (see [`crate::become_subreaper`]) and must be reaped
    /// with [`crate::wait_exit`]. On error the container may still exist in runc's state:
    /// [`Runc::delete`] it with `force`.
    pub fn create(&self, id: &str, bundle: &Path, stdio: ContainerStdio) -> Result<Pid> {
        validate_id(id)?;
        let bundle_str = bundle.to_str().ok_or_else(|| SpecError::NotUtf8 {
            field: "bundle".to_owned(),
        })?;
        check_canonical("bundle", bundle_str)?;
        let work = self.scratch()?;
        let pid_file = work.path().join("pid");
        let log = work.path().join("runc-log.json");
        let mut cmd = self.command(Some(&log));
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id);
        self.run_passthrough("create", cmd, stdio, &log)?;
        read_pid("create", &pid_file)
    }

    /// `runc start <id>`: lets a created container's init exec the user process.
    pub fn start(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let mut cmd = self.command(None);
        cmd.arg("start").arg(id);
        self.run_captured("start", cmd).map(drop)
    }

    /// `runc kill [--all] <id> <signal>`: signals init (or, with `all`, every process of the
    /// container). `signal` is a number in 1..=64.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        validate_id(id)?;
        if !(1..=64).contains(&signal) {
            return Err(Error::InvalidSignal(signal));
        }
        let mut cmd = self.command(None);
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run_captured("kill", cmd).map(drop)
    }

    /// `runc delete [--force] <id>`: removes the container's state (and cgroups). Without
    /// `force` the container must be stopped; with it, a running init is killed first (its
    /// pid must still be reaped with [`crate::wait_exit`]).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        validate_id(id)?;
        let mut cmd = self.command(None);
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run_captured("delete", cmd).map(drop)
    }

    /// `runc state <id>`.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let mut cmd = self.command(None);
        cmd.arg("state").arg(id);
        let output = self.run_captured("state", cmd)?;
        ContainerState::parse(&output.stdout)
    }

    /// `runc exec --detach --pid-file <f> --process <process.json> <id>`: starts a process
    /// in a running container; returns its pid (reap it with [`crate::wait_exit`]).
    ///
    /// The process is built by [`crate::build_process`] (no terminal, `RLIMIT_NOFILE` 1024)
    /// and `stdio` becomes its stdio.
    pub fn exec(&self, id: &str, process: &ExecConfig, stdio: ContainerStdio) -> Result<Pid> {
        validate_id(id)?;
        let process = build_process(process)?;
        let work = self.scratch()?;
        let process_json = write_atomic(work.path(), "process.json", &to_json(&process)?)?;
        let pid_file = work.path().join("pid");
        let log = work.path().join("runc-log.json");
        let mut cmd = self.command(Some(&log));
        cmd.arg("exec")
            .arg("--detach")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--process")
            .arg(&process_json)
            .arg(id);
        self.run_passthrough("exec", cmd, stdio, &log)?;
        read_pid("exec", &pid_file)
    }
}
