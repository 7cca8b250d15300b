//! The guest end of the QEMU UVM's reach to its key broker (PID 1 mode, see `init`).
//!
//! The host offers virtio-serial ports `charter.broker.<n>`; the agent's key broker client
//! looks for a unix socket `broker.sock` in its host directory (`keys`). This bridge listens on
//! that socket and carries each accepted connection over a free port as one session of
//! [`charter_agent_api::relay`] frames: `Open`, `Data` both ways, one `Close` from each side.
//!
//! Nothing read from a port is trusted: the bytes are the TLS stream between the agent and the
//! broker the attested policy names (certificate pinned to the policy's CA), so a host that
//! drops, reorders or forges frames can only make the connection fail. A malformed frame ends
//! the session; so does the host hanging up its end of the port (`POLLHUP`, level triggered
//! while nobody is connected: a session never polls a port without ending on it, so this never
//! spins).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use charter_agent_api::relay::{self, RelayFrame, MAX_RELAY_DATA};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// How long a connection waits for a free port.
const PORT_WAIT: Duration = Duration::from_secs(30);
/// A session in which nothing moves for this long is given up.
const IDLE: Duration = Duration::from_secs(90);
/// Bytes buffered in either direction before the bridge stops reading that side.
const BUFFERED: usize = 4 * MAX_RELAY_DATA;

/// Free ports.
struct Pool<P> {
    free: Mutex<Vec<P>>,
    cond: Condvar,
}

impl<P> Pool<P> {
    fn take(&self, wait: Duration) -> Option<P> {
        let deadline = Instant::now() + wait;
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(p) = free.pop() {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            free = self
                .cond
                .wait_timeout(free, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn give_back(&self, p: P) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(p);
        self.cond.notify_one();
    }
}

/// Listens on `socket` and bridges each connection over one of `ports` (opened non-blocking
/// by the caller), on threads of their own.
pub(crate) fn start<P>(ports: Vec<(PathBuf, P)>, socket: &Path) -> Result<(), String>
where
    P: AsFd + Send + 'static,
    for<'a> &'a P: Read + Write,
{
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).map_err(|e| format!("listen on {}: {e}", socket.display()))?;
    let pool = Arc::new(Pool {
        free: Mutex::new(ports),
        cond: Condvar::new(),
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                // Every port busy for that long: the connection is closed, the client's error.
                let Some((name, port)) = pool.take(PORT_WAIT) else {
                    eprintln!("charter-agent (init): no free key broker port");
                    return;
                };
                if let Err(e) = session(&port, conn) {
                    eprintln!("charter-agent (init): broker port {}: {e}", name.display());
                }
                pool.give_back((name, port));
            });
        }
    });
    Ok(())
}

fn timeout(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// One connection as one session on `port`, until both sides sent `Close` (`Ok`) or the
/// session cannot go on (`Err`).
fn session<P>(port: &P, conn: UnixStream) -> Result<(), String>
where
    P: AsFd,
    for<'a> &'a P: Read + Write,
{
    conn.set_nonblocking(true)
        .map_err(|e| format!("broker connection: {e}"))?;
    let mut to_host = Vec::new();
    relay::encode_control(true, &mut to_host);
    let mut from_host: Vec<u8> = Vec::new();
    let mut to_local: Vec<u8> = Vec::new();
    // The local side ended (we sent, or queued, our Close); it is then no longer polled,
    // since a closed socket reports POLLHUP whatever is asked.
    let mut local_done = false;
    let mut local_write_shut = false;
    let mut host_closed = false;
    let mut buf = vec![0u8; MAX_RELAY_DATA];
    let mut last_progress = Instant::now();
    let (mut port_rw, mut conn_rw) = (port, &conn);
    loop {
        if local_done && host_closed && to_host.is_empty() && to_local.is_empty() {
            return Ok(());
        }
        if last_progress.elapsed() > IDLE {
            return Err(format!("nothing moved for {IDLE:?}"));
        }
        let mut port_ev = PollFlags::empty();
        // Nothing more is due from the host after its Close (a host that then hangs up does
        // not cut off what is still to be delivered).
        if !host_closed && from_host.len() < BUFFERED && to_local.len() < BUFFERED {
            port_ev |= PollFlags::IN;
        }
        if !to_host.is_empty() {
            port_ev |= PollFlags::OUT;
        }
        let mut conn_ev = PollFlags::empty();
        if !local_done && to_host.len() < BUFFERED {
            conn_ev |= PollFlags::IN;
        }
        if !to_local.is_empty() {
            conn_ev |= PollFlags::OUT;
        }
        let mut fds = Vec::with_capacity(2);
        if !port_ev.is_empty() {
            fds.push(PollFd::new(port, port_ev));
        }
        let conn_at = fds.len();
        if !conn_ev.is_empty() {
            fds.push(PollFd::new(&conn, conn_ev));
        }
        match poll(&mut fds, Some(&timeout(Duration::from_secs(1)))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let pr = if port_ev.is_empty() {
            PollFlags::empty()
        } else {
            fds.first().map_or(PollFlags::empty(), PollFd::revents)
        };
        let cr = if conn_ev.is_empty() {
            PollFlags::empty()
        } else {
            fds.get(conn_at).map_or(PollFlags::empty(), PollFd::revents)
        };
        drop(fds);
        if pr.contains(PollFlags::IN) {
            match port_rw.read(&mut buf) {
                Ok(0) => return Err("the host left the port".into()),
                Ok(n) => {
                    last_progress = Instant::now();
                    from_host.extend_from_slice(buf.get(..n).unwrap_or_default());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read port: {e}")),
            }
        } else if pr.intersects(PollFlags::HUP | PollFlags::ERR) {
            return Err("the host left the port".into());
        }
        while let Some((frame, used)) =
            relay::decode(&from_host).map_err(|e| format!("from the host: {e}"))?
        {
            from_host.drain(..used);
            match frame {
                RelayFrame::Data(d) if !host_closed => {
                    // Dropped if the local side is gone: the session still runs to both Closes.
                    if !local_write_shut {
                        to_local.extend_from_slice(&d);
                    }
                }
                RelayFrame::Close if !host_closed => host_closed = true,
                other => return Err(format!("unexpected {other:?} from the host")),
            }
        }
        if pr.contains(PollFlags::OUT) && !to_host.is_empty() {
            match port_rw.write(&to_host) {
                Ok(n) => {
                    last_progress = Instant::now();
                    drop(to_host.drain(..n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write port: {e}")),
            }
        }
        if cr.contains(PollFlags::OUT) && !to_local.is_empty() {
            match conn_rw.write(&to_local) {
                Ok(n) => {
                    last_progress = Instant::now();
                    drop(to_local.drain(..n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // The local client is gone: drop what it would have read.
                    to_local.clear();
                    local_write_shut = true;
                    if !local_done {
                        local_done = true;
                        relay::encode_control(false, &mut to_host);
                    }
                }
            }
        }
        if host_closed && to_local.is_empty() && !local_write_shut {
            let _ = conn.shutdown(std::net::Shutdown::Write);
            local_write_shut = true;
        }
        if !local_done && cr.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            match conn_rw.read(&mut buf) {
                Ok(n) if n > 0 => {
                    last_progress = Instant::now();
                    relay::encode_data(buf.get(..n).unwrap_or_default(), &mut to_host);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // End of the local stream (or an error on it): our half is done.
                Ok(_) | Err(_) => {
                    local_done = true;
                    relay::encode_control(false, &mut to_host);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's end of a port, played with a socket pair: answers each session's data
    /// reversed.
    fn fake_host(mut host: UnixStream, sessions: usize) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for _ in 0..sessions {
                assert_eq!(
                    relay::read_relay_frame(&mut host).unwrap(),
                    Some(RelayFrame::Open)
                );
                let mut data = Vec::new();
                loop {
                    match relay::read_relay_frame(&mut host).unwrap() {
                        Some(RelayFrame::Data(d)) => data.extend(d),
                        Some(RelayFrame::Close) => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                data.reverse();
                let mut out = Vec::new();
                relay::encode_data(&data, &mut out);
                relay::encode_control(false, &mut out);
                host.write_all(&out).unwrap();
            }
        })
    }

    #[test]
    fn connections_become_sessions_on_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("broker.sock");
        let (guest_end, host_end) = UnixStream::pair().unwrap();
        guest_end.set_nonblocking(true).unwrap();
        let host = fake_host(host_end, 3);
        start(vec![(PathBuf::from("p0"), guest_end)], &sock).unwrap();
        for round in 0..3u8 {
            let mut c = UnixStream::connect(&sock).unwrap();
            let mut req = vec![round; 100_000];
            req.push(9);
            c.write_all(&req).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).unwrap();
            req.reverse();
            assert!(answer == req, "round {round}: {} bytes back", answer.len());
        }
        host.join().unwrap();
    }

    #[test]
    fn a_hostile_host_ends_the_session() {
        let (guest_end, mut host_end) = UnixStream::pair().unwrap();
        guest_end.set_nonblocking(true).unwrap();
        let (client, local) = UnixStream::pair().unwrap();
        // An Open from the host, which only the guest may send.
        let mut bad = Vec::new();
        relay::encode_control(true, &mut bad);
        host_end.write_all(&bad).unwrap();
        let e = session(&guest_end, local).unwrap_err();
        assert!(e.contains("unexpected Open"), "{e}");
        drop(client);
        // A host that hangs up.
        drop(host_end);
        let (_client, local) = UnixStream::pair().unwrap();
        let e = session(&guest_end, local).unwrap_err();
        assert!(e.contains("left the port"), "{e}");
    }
}
