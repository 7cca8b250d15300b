//! The agent's listener: one thread per host connection, frames decoded strictly.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use charter_agent_api::{
    read_frame, write_frame, AgentError, ErrorKind, FrameError, Outcome, RequestFrame,
    ResponseFrame,
};

use crate::agent::Agent;

/// Concurrent host connections served; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Serves `listener` forever.
pub fn serve(agent: Arc<Agent>, listener: UnixListener) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            agent.log("connection refused: too many connections".into());
            continue;
        }
        let agent = Arc::clone(&agent);
        let live = Arc::clone(&live);
        std::thread::spawn(move || {
            connection(&agent, conn);
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn connection(agent: &Agent, mut conn: UnixStream) {
    loop {
        let frame = read_frame::<RequestFrame>(&mut conn);
        let (id, outcome, keep) = match frame {
            Ok(f) => (f.id, agent.handle(f.request), true),
            Err(FrameError::Closed) => return,
            Err(e) => {
                agent.log(format!("bad frame: {e}"));
                let keep = e.is_recoverable();
                let outcome = Outcome::Error(AgentError {
                    kind: ErrorKind::BadRequest,
                    message: e.to_string(),
                });
                (0, outcome, keep)
            }
        };
        if write_frame(&mut conn, &ResponseFrame::new(id, outcome)).is_err() || !keep {
            return;
        }
    }
}
