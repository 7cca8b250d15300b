//! The stdio of a container process: pipes to the agent, or `/dev/null`.

use std::fs::OpenOptions;
use std::io::{self, PipeReader, PipeWriter};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use crate::error::{io_err, Result};

/// What one stdio stream of a container process is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StdioMode {
    /// A pipe; the agent keeps the other end (in [`HostStdio`]).
    Pipe,
    /// `/dev/null`: input is empty, output is discarded. Used when the policy does not allow
    /// stdio access.
    Null,
}

/// The container-side ends of a process's stdin, stdout and stderr, consumed by
/// [`crate::Runc::create`] or [`crate::Runc::exec`]: they become the stdio of runc and so of
/// the container process (runc's "pass-through" mode; no console socket).
///
/// All descriptors are close-on-exec until runc's spawn puts them on fds 0-2, so they leak
/// into no other child of the agent. Dropping an unused `ContainerStdio` closes them.
#[derive(Debug)]
pub struct ContainerStdio {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// The agent-side ends of the pipes of a [`ContainerStdio`]; `None` for a `/dev/null` stream.
///
/// Read `stdout`/`stderr` until end of file (which comes when every process holding the
/// container-side end has exited); drop `stdin` to send end of file. The fields convert into
/// [`OwnedFd`] for use with an async runtime.
#[derive(Debug, Default)]
pub struct HostStdio {
    /// Write end of the process's stdin.
    pub stdin: Option<PipeWriter>,
    /// Read end of the process's stdout.
    pub stdout: Option<PipeReader>,
    /// Read end of the process's stderr.
    pub stderr: Option<PipeReader>,
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    Ok(file.into())
}

fn pipe() -> Result<(PipeReader, PipeWriter)> {
    io::pipe().map_err(io_err("pipe"))
}

impl ContainerStdio {
    /// Opens each stream as asked; returns the container ends and the agent's ends.
    pub fn new(
        stdin: StdioMode,
        stdout: StdioMode,
        stderr: StdioMode,
    ) -> Result<(ContainerStdio, HostStdio)> {
        let mut host = HostStdio::default();
        let stdin = match stdin {
            StdioMode::Null => dev_null(false)?,
            StdioMode::Pipe => {
                let (reader, writer) = pipe()?;
                host.stdin = Some(writer);
                reader.into()
            }
        };
        let output = |mode, slot: &mut Option<PipeReader>| -> Result<OwnedFd> {
            match mode {
                StdioMode::Null => dev_null(true),
                StdioMode::Pipe => {
                    let (reader, writer) = pipe()?;
                    *slot = Some(reader);
                    Ok(writer.into())
                }
            }
        };
        let mut host_stdout = None;
        let mut host_stderr = None;
        let stdout = output(stdout, &mut host_stdout)?;
        let stderr = output(stderr, &mut host_stderr)?;
        host.stdout = host_stdout;
        host.stderr = host_stderr;
        Ok((
            ContainerStdio {
                stdin,
                stdout,
                stderr,
            },
            host,
        ))
    }

    /// Arbitrary descriptors (a socket, a log file, ...) as the process's stdin, stdout and
    /// stderr. They are moved in; the agent keeps whatever other end it has.
    pub fn from_fds(stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd) -> ContainerStdio {
        ContainerStdio {
            stdin,
            stdout,
            stderr,
        }
    }

    /// Three pipes.
    pub fn pipes() -> Result<(ContainerStdio, HostStdio)> {
        ContainerStdio::new(StdioMode::Pipe, StdioMode::Pipe, StdioMode::Pipe)
    }

    /// All three streams on `/dev/null` (the policy does not allow stdio access).
    pub fn null() -> Result<ContainerStdio> {
        Ok(ContainerStdio::new(StdioMode::Null, StdioMode::Null, StdioMode::Null)?.0)
    }

    /// Puts the container ends on `cmd`'s stdio. The caller must drop `cmd` right after
    /// spawning it so that the agent holds no copy of the container ends.
    pub(crate) fn apply(self, cmd: &mut Command) {
        cmd.stdin(Stdio::from(self.stdin))
            .stdout(Stdio::from(self.stdout))
            .stderr(Stdio::from(self.stderr));
    }
}
