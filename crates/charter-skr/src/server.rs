//! The accept loop, the connection cap and one connection's life.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::http::{self, Response};
use crate::{api, Limits};

/// How long, and how many bytes, a connection is drained after an early answer (so the
/// client reads the answer instead of a reset).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Serve the SKR API on `listener` with [`Limits::default`] until the process ends.
///
/// The listener should be bound to loopback ([`crate::DEFAULT_ADDR`]): the API is for the
/// containers of this group only. Returns the accept loop's thread.
pub fn serve(listener: TcpListener, backend: Arc<dyn Backend>) -> JoinHandle<()> {
    serve_with(listener, backend, Limits::default())
}

/// [`serve`] with explicit limits.
pub fn serve_with(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    limits: Limits,
) -> JoinHandle<()> {
    std::thread::spawn(move || accept_loop(&listener, &backend, &Arc::new(limits)))
}

/// Counts connections being served.
#[derive(Debug, Default)]
struct Slots {
    active: Mutex<usize>,
    freed: Condvar,
}

/// One taken slot, given back when dropped (also when a handler unwinds).
#[derive(Debug)]
struct Slot(Arc<Slots>);

impl Slots {
    /// Take a slot, waiting up to `wait` for one to free up.
    fn acquire(self: &Arc<Self>, max: usize, wait: Duration) -> Option<Slot> {
        let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut active, _) = self
            .freed
            .wait_timeout_while(active, wait, |n| *n >= max)
            .unwrap_or_else(PoisonError::into_inner);
        if *active >= max {
            return None;
        }
        *active += 1;
        Some(Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.0.active.lock().unwrap_or_else(PoisonError::into_inner);
        *active = active.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

fn accept_loop(listener: &TcpListener, backend: &Arc<dyn Backend>, limits: &Arc<Limits>) {
    let slots = Arc::new(Slots::default());
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Aborted handshakes, or out of descriptors: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = slots.acquire(limits.max_connections, limits.queue_wait) else {
            refuse_busy(stream);
            continue;
        };
        let backend = Arc::clone(backend);
        let limits = Arc::clone(limits);
        // On failure the closure, and with it the stream and the slot, is dropped.
        let _ = std::thread::Builder::new()
            .name("charter-skr-conn".into())
            .spawn(move || {
                let _slot = slot;
                handle_connection(stream, backend.as_ref(), &limits);
            });
    }
}

/// 503 from the accept thread without blocking it.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    // Take what the client already sent, so closing is less likely to reset the answer.
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let _ = http::write_response(&mut stream, &Response::error(503, "too many connections"));
    let _ = stream.shutdown(Shutdown::Write);
}

/// Read one request, answer it, close.
pub(crate) fn handle_connection(mut stream: TcpStream, backend: &dyn Backend, limits: &Limits) {
    let _ = stream.set_read_timeout(Some(limits.io_timeout));
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + limits.request_deadline;
    let (response, unread) = match http::read_request(&mut stream, limits, deadline) {
        Ok(req) => (
            api::handle(backend, &req.method, &req.path, &req.body),
            false,
        ),
        Err(e) => match e.status() {
            Some(status) => (Response::error(status, &e.to_string()), true),
            None => return,
        },
    };
    if http::write_response(&mut stream, &response).is_err() {
        return;
    }
    if unread {
        linger(&mut stream);
    } else {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Half-close, then discard what the client still sends (bounded), so that closing with
/// unread data does not reset the connection before the client has read the answer.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; 8192];
    let mut total = 0usize;
    while total < LINGER_BYTES {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_and_free() {
        let slots = Arc::new(Slots::default());
        let a = slots.acquire(2, Duration::ZERO).unwrap();
        let _b = slots.acquire(2, Duration::ZERO).unwrap();
        assert!(slots.acquire(2, Duration::from_millis(20)).is_none());
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.acquire(2, Duration::from_secs(10)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        assert!(waiter.join().unwrap());
        // The waiter's slot was dropped with its thread: only `_b` is left.
        assert_eq!(*slots.active.lock().unwrap(), 1);
    }
}
