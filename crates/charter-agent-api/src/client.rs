//! The host's side: a blocking client over any byte stream.

use std::io::{Read, Write};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::message::{AgentError, Denial, Outcome, Reply, Request, RequestFrame, ResponseFrame};

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The policy denied the request.
    #[error("{op} denied by policy: {}", .denial.explanation)]
    Denied {
        op: &'static str,
        denial: Box<Denial>,
    },
    /// The agent refused or failed.
    #[error("{op} failed in the agent ({:?}): {}", .error.kind, .error.message)]
    Agent { op: &'static str, error: AgentError },
    /// The channel failed or the agent answered something undecodable.
    #[error("{op}: {source}")]
    Channel {
        op: &'static str,
        #[source]
        source: FrameError,
    },
    /// The response did not belong to the request.
    #[error("{op}: response id {got} does not match request id {want}")]
    Mismatch {
        op: &'static str,
        got: u64,
        want: u64,
    },
}

/// A connection to the agent. One request at a time; open several for concurrent streams.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
    next_id: u64,
}

impl<S: Read + Write> Client<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self { stream, next_id: 1 }
    }

    /// Sends `request` and waits for its outcome.
    ///
    /// # Errors
    /// [`CallError`] for denials, agent errors and channel failures.
    pub fn call(&mut self, request: Request) -> Result<Reply, CallError> {
        let op = request.op();
        let id = self.next_id;
        self.next_id += 1;
        let chan = |source| CallError::Channel { op, source };
        write_frame(&mut self.stream, &RequestFrame::new(id, request)).map_err(chan)?;
        let resp: ResponseFrame = read_frame(&mut self.stream).map_err(chan)?;
        if resp.id != id {
            return Err(CallError::Mismatch {
                op,
                got: resp.id,
                want: id,
            });
        }
        match resp.outcome {
            Outcome::Ok { reply } => Ok(reply),
            Outcome::Denied(denial) => Err(CallError::Denied {
                op,
                denial: Box::new(denial),
            }),
            Outcome::Error(error) => Err(CallError::Agent { op, error }),
        }
    }

    /// The underlying stream (for tests that write raw bytes).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The underlying stream, giving up the client (for tests that speak raw frames).
    pub fn into_inner(self) -> S {
        self.stream
    }
}
