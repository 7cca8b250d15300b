//! Reaching the broker through a byte relay: a unix socket the (untrusted) host provides, which
//! forwards the stream to the broker's TCP address.
//!
//! A guest without a network of its own (the sandbox's empty network namespace, a VM with only
//! virtio-serial) still speaks TLS end to end with the broker: the relay sees ciphertext only,
//! the server certificate is checked against the CA the policy names, and SNI and the
//! certificate name come from the broker URL, never from the relay. A relay that drops, delays
//! or rewrites bytes can deny service and nothing else.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Connects every request to the unix socket at `path`, whatever the URL's host.
#[derive(Debug)]
pub(crate) struct UnixRelayConnector {
    pub(crate) path: PathBuf,
}

impl<In: Transport> Connector<In> for UnixRelayConnector {
    type Out = UnixTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<In>,
    ) -> Result<Option<UnixTransport>, ureq::Error> {
        let stream = UnixStream::connect(&self.path)?;
        let config = details.config;
        let stream = Arc::new(Stream(stream));
        let shutdown: std::sync::Weak<dyn ureq::unversioned::transport::ShutdownHandle> =
            Arc::downgrade(&stream) as _;
        (details.register_shutdown)(shutdown)?;
        Ok(Some(UnixTransport {
            stream,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

/// A unix stream as a ureq transport (TLS is layered on top by the next connector).
#[derive(Debug)]
pub(crate) struct UnixTransport {
    stream: Arc<Stream>,
    buffers: LazyBuffers,
}

/// The stream, shareable with ureq's shutdown registry.
#[derive(Debug)]
pub(crate) struct Stream(UnixStream);

impl ureq::unversioned::transport::ShutdownHandle for Stream {
    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Transport for UnixTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        self.stream
            .0
            .set_write_timeout(timeout.not_zero().map(|t| *t))?;
        let output = self
            .buffers
            .output()
            .get(..amount)
            .ok_or_else(|| ureq::Error::Io(std::io::Error::other("output beyond buffer")))?;
        (&self.stream.0).write_all(output).map_err(timed_out)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        self.stream
            .0
            .set_read_timeout(timeout.not_zero().map(|t| *t))?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream.0).read(input) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.map_err(timed_out)?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // One request per connection: the relay opens a fresh broker connection each time.
        false
    }
}

fn timed_out(e: std::io::Error) -> ureq::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ureq::Error::Timeout(ureq::Timeout::Global)
        }
        _ => ureq::Error::Io(e),
    }
}

/// Resolves nothing: the relay knows where the broker is, the guest need not (and in an empty
/// network namespace cannot) look the name up.
#[derive(Debug)]
pub(crate) struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
        Ok(addrs)
    }
}
