//! INSECURE: the simulated AMD-SP served over a unix socket, for guests that must not link the
//! simulator (the sandbox agent). Protocol: see
//! `charter_attest::provider::insecure_socket`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;
use std::time::Duration;

use charter_attest::TeeProvider;

use crate::InsecureSimulatedGuest;

/// Serves `guest` on `listener` until the listener fails (e.g. its directory is removed);
/// one short-lived thread per connection.
pub fn serve_insecure_simulated(
    listener: UnixListener,
    guest: InsecureSimulatedGuest,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let guest = guest.clone();
            std::thread::spawn(move || {
                // A client that sends garbage or hangs just loses its connection.
                let _ = answer(conn, &guest);
            });
        }
    })
}

fn answer(mut conn: UnixStream, guest: &InsecureSimulatedGuest) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut report_data = [0u8; 64];
    conn.read_exact(&mut report_data)?;
    let evidence = guest
        .report(report_data)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let body = evidence.to_json().into_bytes();
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    conn.write_all(&len.to_be_bytes())?;
    conn.write_all(&body)
}
