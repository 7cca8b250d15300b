//! Process ids, the child-subreaper attribute and waiting for one specific process.

use std::fmt;

use rustix::io::Errno;
use rustix::process::{self as rp, WaitOptions};

use crate::error::{Error, Result};

/// A process id in the agent's PID namespace (always positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(i32);

impl Pid {
    /// `Some` for a positive `raw`.
    pub fn from_raw(raw: i32) -> Option<Pid> {
        (raw > 0).then_some(Pid(raw))
    }

    /// The raw pid.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    fn to_rustix(self) -> Result<rp::Pid> {
        rp::Pid::from_raw(self.0).ok_or(Error::NotAChild { pid: self.0 })
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessExit {
    /// It called `exit` with this code (0-255).
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ProcessExit {
    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ProcessExit::Exited(code) => Some(code),
            ProcessExit::Signaled(_) => None,
        }
    }

    /// The signal, if it was killed by one.
    pub fn signal(self) -> Option<i32> {
        match self {
            ProcessExit::Exited(_) => None,
            ProcessExit::Signaled(signal) => Some(signal),
        }
    }

    /// The shell convention: the code, or 128 + the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ProcessExit::Exited(code) => code,
            ProcessExit::Signaled(signal) => 128_i32.saturating_add(signal),
        }
    }
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessExit::Exited(code) => write!(f, "exit code {code}"),
            ProcessExit::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// Marks the calling process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER, 1)`).
///
/// Call it once at agent start, before the first [`crate::Runc::create`]: `runc create` and
/// `runc exec --detach` exit while the processes they start keep running; those processes are
/// then reparented to the nearest subreaper ancestor, i.e. the agent, which can
/// [`wait_exit`] for them. Without it they would go to the PID namespace's init and their exit
/// statuses would be lost. Idempotent; the attribute is process-wide and is not inherited by
/// children.
pub fn become_subreaper() -> Result<()> {
    rp::set_child_subreaper(Some(rp::getpid())).map_err(|e| Error::Io {
        what: "prctl(PR_SET_CHILD_SUBREAPER)".to_owned(),
        source: e.into(),
    })
}

fn decode(status: rp::WaitStatus) -> Option<ProcessExit> {
    if let Some(code) = status.exit_status() {
        Some(ProcessExit::Exited(code))
    } else {
        status.terminating_signal().map(ProcessExit::Signaled)
    }
}

fn wait_inner(pid: Pid, options: WaitOptions) -> Result<Option<ProcessExit>> {
    let raw = pid.to_rustix()?;
    loop {
        match rp::waitpid(Some(raw), options) {
            Ok(Some((_, status))) => {
                if let Some(exit) = decode(status) {
                    return Ok(Some(exit));
                }
                // A stop/continue report (not requested, but harmless): keep waiting.
                if options.contains(WaitOptions::NOHANG) {
                    return Ok(None);
                }
            }
            Ok(None) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(Errno::CHILD) => return Err(Error::NotAChild { pid: pid.as_raw() }),
            Err(e) => {
                return Err(Error::Wait {
                    pid: pid.as_raw(),
                    source: e.into(),
                })
            }
        }
    }
}

/// Blocks until the child `pid` exits and reaps it (`waitpid(pid, 0)`, retried on `EINTR`).
///
/// Only that process is waited for, never "any child", so `std::process::Command` children
/// of the same process (including the `runc` invocations of this crate) are unaffected. Every
/// pid returned by [`crate::Runc::create`] and [`crate::Runc::exec`] must be waited for once
/// (here or with [`try_wait`]), or it stays a zombie. Blocking: call it from a thread that
/// may block (e.g. `spawn_blocking`).
pub fn wait_exit(pid: Pid) -> Result<ProcessExit> {
    loop {
        if let Some(exit) = wait_inner(pid, WaitOptions::empty())? {
            return Ok(exit);
        }
    }
}

/// Reaps `pid` if it has exited (`waitpid(pid, WNOHANG)`); `None` while it runs.
pub fn try_wait(pid: Pid) -> Result<Option<ProcessExit>> {
    wait_inner(pid, WaitOptions::NOHANG)
}
