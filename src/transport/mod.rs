//! SCTP transport for the manager protocol: message-oriented, one-to-one
//! associations, over either the kernel's SCTP (tokio-sctp, feature
//! `kernel-sctp`) or a userspace SCTP stack carried in UDP datagrams
//! (sctp-proto; RFC 6951 style).
//!
//! CONTRACT (used by the manager actors and the manager client; keep these
//! names and signatures): `Listener::bind`, `Listener::accept`,
//! `Listener::local_addr`, `Listener::transport`, `Association::connect`,
//! `Association::recv_msg`, `Association::send_msg`, `Association::close`.
//! `Listener` and `Association` are `Send + 'static`.

use bytes::Bytes;
use std::io;
use std::net::SocketAddr;

/// What the user asked for with `--manager-transport` / `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// Kernel SCTP when the kernel supports it, otherwise SCTP over UDP.
    Auto,
    /// Kernel SCTP only.
    Kernel,
    /// Userspace SCTP over UDP only.
    Udp,
}

/// The transport actually in use once `Auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Kernel,
    Udp,
}

impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resolved::Kernel => "kernel-sctp",
            Resolved::Udp => "sctp-over-udp",
        })
    }
}

/// A bound manager endpoint that accepts associations.
pub struct Listener {/* private */}

impl Listener {
    /// Binds `addr` (port 0 allowed) with the given transport. With `Auto`,
    /// kernel SCTP is tried first and EPROTONOSUPPORT falls back to UDP.
    pub async fn bind(addr: SocketAddr, kind: TransportKind) -> io::Result<Listener> {
        let _ = (addr, kind);
        unimplemented!()
    }
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unimplemented!()
    }
    pub fn transport(&self) -> Resolved {
        unimplemented!()
    }
    /// Waits for the next association.
    pub async fn accept(&mut self) -> io::Result<(Association, SocketAddr)> {
        unimplemented!()
    }
}

/// One SCTP association (one-to-one), carrying whole messages on stream 0.
pub struct Association {/* private */}

impl Association {
    pub async fn connect(addr: SocketAddr, kind: TransportKind) -> io::Result<Association> {
        let _ = (addr, kind);
        unimplemented!()
    }
    /// The next whole message; `Ok(None)` once the peer has closed.
    pub async fn recv_msg(&mut self) -> io::Result<Option<Bytes>> {
        unimplemented!()
    }
    /// Sends one whole message on stream 0.
    pub async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        let _ = msg;
        unimplemented!()
    }
    /// Graceful shutdown: everything sent is delivered first.
    pub async fn close(self) -> io::Result<()> {
        unimplemented!()
    }
}
