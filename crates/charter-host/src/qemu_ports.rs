//! The `qemu` launcher's agent ports on the host: a pool of virtio-serial port sockets, each
//! carrying one host session at a time, and the relay that hands a caller's stream to a free
//! one.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;

/// The agent ports not in use, least recently released first.
///
/// A released port rests for [`PORT_REST`] before it is handed out again: a virtio-serial port
/// tells the guest that a session ended only by the host side hanging up, and the guest must
/// see that (a `POLLHUP` while nobody is connected) before the next session connects, or it
/// would carry on the old agent connection into the new session.
#[derive(Debug)]
pub(crate) struct PortPool {
    free: Mutex<VecDeque<(PathBuf, Instant)>>,
    cond: Condvar,
}

/// How long a released agent port rests (see [`PortPool`]).
const PORT_REST: Duration = Duration::from_millis(200);

impl PortPool {
    pub(crate) fn new(ports: impl IntoIterator<Item = PathBuf>) -> PortPool {
        let long_ago = Instant::now()
            .checked_sub(PORT_REST)
            .unwrap_or_else(Instant::now);
        PortPool {
            free: Mutex::new(ports.into_iter().map(|p| (p, long_ago)).collect()),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn take(&self, wait: Duration) -> Option<PathBuf> {
        let deadline = Instant::now() + wait;
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            // The least recently released port is the first to have rested.
            let mut next_ready = None;
            if let Some((_, released)) = free.front() {
                let ready = *released + PORT_REST;
                if ready <= now {
                    return free.pop_front().map(|(p, _)| p);
                }
                next_ready = Some(ready);
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return None;
            }
            let nap = next_ready.map_or(left, |r| r.saturating_duration_since(now).min(left));
            free = self
                .cond
                .wait_timeout(free, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(crate) fn give_back(&self, port: PathBuf) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((port, Instant::now()));
        self.cond.notify_one();
    }
}

/// Relays `downstream` to a free agent port (waiting up to `wait` for one) on two threads;
/// when either side closes, the session ends (the guest sees the port hang up) and the port
/// goes back to the pool.
pub(crate) fn relay_to_port(
    pool: &Arc<PortPool>,
    downstream: UnixStream,
    wait: Duration,
) -> Result<(), Error> {
    let port = pool.take(wait).ok_or_else(|| Error::Launch {
        launcher: "qemu",
        reason: format!("no free agent port within {wait:?}"),
    })?;
    let upstream = match UnixStream::connect(&port) {
        Ok(s) => s,
        Err(e) => {
            pool.give_back(port.clone());
            return Err(Error::Io {
                path: port.display().to_string(),
                source: e,
            });
        }
    };
    let clones = upstream
        .try_clone()
        .and_then(|u| Ok((u, downstream.try_clone()?)));
    let (up2, down2) = match clones {
        Ok(c) => c,
        Err(e) => {
            pool.give_back(port.clone());
            return Err(Error::Io {
                path: port.display().to_string(),
                source: e,
            });
        }
    };
    let pool = Arc::clone(pool);
    std::thread::spawn(move || {
        let back = std::thread::spawn(move || {
            let (mut from, mut to) = (up2, down2);
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
        });
        let (mut from, mut to) = (downstream, upstream);
        let _ = std::io::copy(&mut from, &mut to);
        // The caller closed its end: end the session (the guest sees the port hang up).
        let _ = to.shutdown(Shutdown::Both);
        let _ = back.join();
        pool.give_back(port);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_ports_rest_before_reuse() {
        let pool = PortPool::new([PathBuf::from("a")]);
        let t = Instant::now();
        let a = pool.take(Duration::from_secs(1)).unwrap();
        assert!(
            pool.take(Duration::ZERO).is_none(),
            "the only port is in use"
        );
        pool.give_back(a);
        assert!(pool.take(Duration::ZERO).is_none(), "a released port rests");
        assert_eq!(pool.take(Duration::from_secs(5)), Some(PathBuf::from("a")));
        assert!(t.elapsed() >= PORT_REST);
    }
}
