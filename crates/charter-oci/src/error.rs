//! Error types.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// The longest runc error text an [`Error::Runc`] carries, in bytes.
pub const MAX_RUNC_MESSAGE: usize = 4096;

/// A container or process configuration that cannot become a runtime spec.
///
/// Messages name the offending field and never include an environment value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The container id is not 1-128 characters of `[A-Za-z0-9_.+-]` starting with a letter
    /// or digit.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The id as given (truncated to 200 characters).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path that must be absolute and lexically canonical is not.
    #[error("{field} {path:?} is not a canonical absolute path: {reason}")]
    NotCanonical {
        /// Which field (`rootfs`, `cwd`, `mounts[2].destination`, ...).
        field: String,
        /// The path as given (lossy UTF-8, truncated to 200 characters).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `args` is empty.
    #[error("process args must not be empty")]
    EmptyArgs,
    /// A string field contains a NUL byte.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// Which field (`args[1]`, `hostname`, ...).
        field: String,
    },
    /// An environment entry is not `NAME=value` with a non-empty NAME.
    #[error("env[{index}] is not NAME=value: {reason}")]
    InvalidEnv {
        /// Index into `env`.
        index: usize,
        /// What is wrong with it (never the value).
        reason: &'static str,
    },
    /// A capability name outside [`crate::KNOWN_CAPABILITIES`].
    #[error("unknown capability {name:?} in the {set} set")]
    UnknownCapability {
        /// `bounding`, `effective`, `inheritable`, `permitted` or `ambient`.
        set: &'static str,
        /// The name as given (truncated to 200 characters).
        name: String,
    },
    /// `umask` has bits outside `0o777`.
    #[error("umask {0:#o} has bits outside 0o777")]
    InvalidUmask(u32),
    /// The hostname is longer than 64 bytes or has characters outside `[A-Za-z0-9.-]`.
    #[error("invalid hostname: {0}")]
    InvalidHostname(&'static str),
    /// An extra mount is malformed.
    #[error("mounts[{index}]: {reason}")]
    InvalidMount {
        /// Index into `mounts`.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path is not valid UTF-8 (the runtime spec is JSON).
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// Which field.
        field: String,
    },
}

/// Everything that can go wrong building a bundle or driving runc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused before anything ran.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// runc ran and exited unsuccessfully.
    #[error("runc {subcommand} failed ({status}): {message}")]
    Runc {
        /// The runc subcommand (`create`, `start`, `exec`, ...).
        subcommand: &'static str,
        /// runc's exit status.
        status: ExitStatus,
        /// runc's error output (its stderr, or the error entries of its JSON log for the
        /// subcommands whose stdio belongs to the container), trimmed and at most
        /// [`MAX_RUNC_MESSAGE`] bytes.
        message: String,
    },
    /// The runc binary could not be started.
    #[error("cannot run {binary:?}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error from `fork`/`exec`.
        source: io::Error,
    },
    /// No `runc` binary was found in `PATH`.
    #[error("no runc binary found in PATH")]
    RuncNotFound,
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// runc succeeded but its pid file is missing or malformed.
    #[error("runc {subcommand}: bad pid file: {reason}")]
    PidFile {
        /// The runc subcommand.
        subcommand: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `runc state` printed something that is not a container state.
    #[error("cannot parse `runc state` output: {0}")]
    State(#[source] serde_json::Error),
    /// The spec could not be serialised.
    #[error("cannot serialise the runtime spec: {0}")]
    Json(#[source] serde_json::Error),
    /// A signal number outside 1..=64.
    #[error("invalid signal number {0}")]
    InvalidSignal(i32),
    /// `waitpid` says the process is not a child of this process (was [`crate::become_subreaper`]
    /// called before the container was created? is `SIGCHLD` ignored? was it already reaped?).
    #[error("process {pid} is not a child of this process")]
    NotAChild {
        /// The process.
        pid: i32,
    },
    /// `waitpid` failed otherwise.
    #[error("waitpid({pid}): {source}")]
    Wait {
        /// The process.
        pid: i32,
        /// The error.
        source: io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `s` trimmed to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let mut out = s.get(..end).unwrap_or_default().to_owned();
    out.push_str("...");
    out
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
