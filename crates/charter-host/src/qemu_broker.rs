//! The QEMU UVM's reach to its key broker: the host end of the virtio-serial ports
//! `charter.broker.<n>` (the guest's end is the agent's `broker.sock` in its host directory).
//!
//! A port is one byte stream, so guest connections travel as [`charter_agent_api::relay`]
//! frames: on `Open` the host connects to the broker's TCP address and copies bytes both ways
//! until both sides sent `Close`. The bytes are TLS between the guest and the broker the
//! attested policy names, so the host (this code included) sees only ciphertext.
//!
//! A frame the guest should never send (a malformed one, `Open` inside a session, data after
//! its `Close`) ends the session; the host then hangs up the port and connects again, which the
//! guest sees as the host going away (it drops its session too), so both start afresh.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use charter_agent_api::relay::{self, RelayFrame, MAX_RELAY_DATA};

use crate::qemu::QemuUvm;
use crate::Error;

impl QemuUvm {
    /// Relays the guest's key broker connections (the ports `charter.broker.<n>`) to the
    /// broker at `url` (`https://host[:port]`), until the VM stops. The guest speaks TLS to
    /// the broker through them; the host sees ciphertext only.
    ///
    /// # Errors
    /// [`Error::Pod`] for a URL that is not `https://host[:port]`, or a VM launched without
    /// broker ports; [`Error::Io`] if a port's socket does not accept.
    pub fn serve_broker(&self, url: &str) -> Result<(), Error> {
        let target = crate::relay::authority(url)?;
        if self.broker_ports == 0 {
            return Err(Error::Pod(
                "the QEMU UVM was launched without key broker ports".into(),
            ));
        }
        for i in 0..self.broker_ports {
            serve_broker_port(
                self.work_dir.join(format!("broker{i}.sock")),
                target.clone(),
            )?;
        }
        Ok(())
    }
}

/// How long the host waits for QEMU's port socket to accept.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a broker connection may stay silent before the host gives up on it.
const BROKER_IDLE: Duration = Duration::from_secs(60);
/// How long the host stays away from a port after a protocol violation, so the guest sees it
/// hang up (a virtio-serial port reports that only while nobody is connected).
const RESYNC_REST: Duration = Duration::from_millis(300);

/// Serves the broker port whose QEMU socket is `socket`, relaying sessions to `target`
/// (`host:port`), on a thread of its own until QEMU closes the socket. Returns once the port
/// is connected (the guest's sessions fail while it is not).
pub(crate) fn serve_broker_port(socket: PathBuf, target: String) -> Result<(), crate::Error> {
    let first = connect(&socket).ok_or_else(|| crate::Error::Io {
        path: socket.display().to_string(),
        source: std::io::ErrorKind::TimedOut.into(),
    })?;
    std::thread::spawn(move || {
        let mut conn = Some(first);
        loop {
            let Some(c) = conn.take().or_else(|| connect(&socket)) else {
                return;
            };
            match serve(c, &target) {
                Ok(()) => return,
                Err(e) => {
                    eprintln!(
                        "charter: broker port {}: {e}; resetting the port",
                        socket.display()
                    );
                    std::thread::sleep(RESYNC_REST);
                }
            }
        }
    });
    Ok(())
}

fn connect(socket: &std::path::Path) -> Option<UnixStream> {
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        match UnixStream::connect(socket) {
            Ok(c) => return Some(c),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// One guest session on the port.
struct Session {
    /// The broker connection (`None` if it could not be made or failed).
    broker: Option<TcpStream>,
    /// The guest sent its `Close`.
    guest_closed: bool,
    /// The host sent its `Close` (set before the frame is written).
    host_closed: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
}

impl Session {
    fn finish(mut self) {
        if let Some(b) = self.broker.take() {
            let _ = b.shutdown(Shutdown::Both);
        }
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
}

type Port = Arc<Mutex<UnixStream>>;

fn send(port: &Port, frame: &[u8]) -> std::io::Result<()> {
    port.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(frame)
}

fn send_close(port: &Port, host_closed: &AtomicBool) {
    host_closed.store(true, Ordering::SeqCst);
    let mut f = Vec::new();
    relay::encode_control(false, &mut f);
    let _ = send(port, &f);
}

/// Reads the guest's frames until QEMU closes the socket (`Ok`) or the guest breaks the
/// protocol (`Err`, the caller resets the port).
fn serve(conn: UnixStream, target: &str) -> Result<(), String> {
    let writer: Port = Arc::new(Mutex::new(
        conn.try_clone().map_err(|e| format!("socket: {e}"))?,
    ));
    let mut reader = std::io::BufReader::with_capacity(MAX_RELAY_DATA + 16, conn);
    let mut session: Option<Session> = None;
    let result = loop {
        let frame = match relay::read_relay_frame(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                break Err(format!("guest sent a malformed frame: {e}"))
            }
            Err(e) => break Err(format!("reading the port: {e}")),
        };
        match frame {
            RelayFrame::Open => {
                if let Some(s) = session.take() {
                    if !(s.guest_closed && s.host_closed.load(Ordering::SeqCst)) {
                        session = Some(s);
                        break Err("guest opened a session inside a session".into());
                    }
                    s.finish();
                }
                session = Some(open(target, &writer));
            }
            RelayFrame::Data(data) => {
                let Some(s) = session.as_mut().filter(|s| !s.guest_closed) else {
                    break Err("guest sent data outside a session".into());
                };
                if let Some(b) = s.broker.as_mut() {
                    if b.write_all(&data).is_err() {
                        // The pump sees the broken connection and sends the host's Close.
                        let _ = b.shutdown(Shutdown::Both);
                        s.broker = None;
                    }
                }
            }
            RelayFrame::Close => {
                let Some(s) = session.as_mut().filter(|s| !s.guest_closed) else {
                    break Err("guest closed outside a session".into());
                };
                s.guest_closed = true;
                if let Some(b) = &s.broker {
                    let _ = b.shutdown(Shutdown::Write);
                }
            }
        }
    };
    // Stop the pump's writes to this connection before anything else uses the port.
    let _ = writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .shutdown(Shutdown::Both);
    if let Some(s) = session {
        s.finish();
    }
    result
}

/// Starts a session: connects to the broker and pumps its bytes to the guest, or answers
/// `Close` at once when the broker cannot be reached (the guest's TLS handshake then fails
/// with a closed connection, its error to report).
fn open(target: &str, port: &Port) -> Session {
    let host_closed = Arc::new(AtomicBool::new(false));
    let broker = dial(target);
    let (broker, pump) = match broker.and_then(|b| Ok((b.try_clone()?, b))) {
        Ok((mut from, b)) => {
            let (port, closed) = (Arc::clone(port), Arc::clone(&host_closed));
            let pump = std::thread::spawn(move || {
                let mut buf = vec![0u8; MAX_RELAY_DATA];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut frame = Vec::with_capacity(n + relay::RELAY_HEADER_LEN);
                    relay::encode_data(buf.get(..n).unwrap_or_default(), &mut frame);
                    if send(&port, &frame).is_err() {
                        break;
                    }
                }
                let _ = from.shutdown(Shutdown::Read);
                send_close(&port, &closed);
            });
            (Some(b), Some(pump))
        }
        Err(e) => {
            eprintln!("charter: key broker {target}: {e}");
            send_close(port, &host_closed);
            (None, None)
        }
    };
    Session {
        broker,
        guest_closed: false,
        host_closed,
        pump,
    }
}

fn dial(target: &str) -> std::io::Result<TcpStream> {
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{target}: no address")))?;
    let b = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    b.set_read_timeout(Some(BROKER_IDLE))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;

    fn frames(port: &mut UnixStream) -> (Vec<u8>, bool) {
        // Data until the host's Close.
        let mut data = Vec::new();
        loop {
            match relay::read_relay_frame(port).unwrap() {
                Some(RelayFrame::Data(d)) => data.extend(d),
                Some(RelayFrame::Close) => return (data, true),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn sessions_relay_to_the_broker_and_violations_reset_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("broker0.sock");
        // QEMU's side: a listening socket (its backlog takes the host's connection before the
        // accept); the test plays the guest.
        let qemu = UnixListener::bind(&sock).unwrap();
        let broker = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = broker.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for c in broker.incoming() {
                let mut c = c.unwrap();
                let mut req = Vec::new();
                c.read_to_end(&mut req).unwrap();
                req.reverse();
                c.write_all(&req).unwrap();
            }
        });
        serve_broker_port(sock, target).unwrap();
        let (mut guest, _) = qemu.accept().unwrap();
        for round in 0..3u8 {
            let mut out = Vec::new();
            relay::encode_control(true, &mut out);
            relay::encode_data(&[round; 70_000], &mut out);
            relay::encode_data(b"ab", &mut out);
            relay::encode_control(false, &mut out);
            guest.write_all(&out).unwrap();
            let (data, closed) = frames(&mut guest);
            assert!(closed);
            let mut want = vec![round; 70_000];
            want.extend(b"ab");
            want.reverse();
            assert_eq!(data, want);
        }
        // Data outside a session: the host hangs up and comes back.
        let mut bad = Vec::new();
        relay::encode_data(b"x", &mut bad);
        guest.write_all(&bad).unwrap();
        let mut rest = Vec::new();
        guest.read_to_end(&mut rest).unwrap();
        let (mut guest, _) = qemu.accept().unwrap();
        let mut out = Vec::new();
        relay::encode_control(true, &mut out);
        relay::encode_data(b"hi", &mut out);
        relay::encode_control(false, &mut out);
        guest.write_all(&out).unwrap();
        assert_eq!(frames(&mut guest), (b"ih".to_vec(), true));
    }

    #[test]
    fn an_unreachable_broker_closes_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("broker0.sock");
        let qemu = UnixListener::bind(&sock).unwrap();
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = gone.local_addr().unwrap().to_string();
        drop(gone);
        serve_broker_port(sock, target).unwrap();
        let (mut guest, _) = qemu.accept().unwrap();
        let mut out = Vec::new();
        relay::encode_control(true, &mut out);
        relay::encode_data(b"hello", &mut out);
        guest.write_all(&out).unwrap();
        assert_eq!(frames(&mut guest), (Vec::new(), true));
        // The guest still ends its half; the next session works the same way.
        let mut out = Vec::new();
        relay::encode_control(false, &mut out);
        relay::encode_control(true, &mut out);
        guest.write_all(&out).unwrap();
        assert_eq!(frames(&mut guest), (Vec::new(), true));
    }
}
