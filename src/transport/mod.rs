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
//!
//! Semantics common to both transports:
//! - every message travels whole, in order and reliably, on stream 0;
//!   messages are 1 to [`MAX_MESSAGE_SIZE`] bytes;
//! - `recv_msg` returns `Ok(None)` once the peer has shut the association
//!   down (or aborted it); local failures (timeouts) are errors;
//! - `close` waits (at most [`CLOSE_TIMEOUT`]) until everything sent was
//!   acknowledged and the SCTP shutdown handshake finished; dropping an
//!   `Association` without `close` shuts it down in the background;
//! - `connect` gives up after [`CONNECT_TIMEOUT`].
//!
//! See `docs/sctp-transport.md`.

use crate::supervision::{NodeId, Supervision};
use bytes::Bytes;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "kernel-sctp")]
mod kernel;
mod udp;

/// Largest message `send_msg` accepts and `recv_msg` returns.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// `Association::connect` fails after this long without a completed handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `Association::close` gives up on a graceful shutdown (and aborts) after this long.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The message used when the kernel lacks SCTP.
pub const NO_KERNEL_SCTP: &str = "this kernel has no SCTP support (EPROTONOSUPPORT); \
     use SCTP over UDP (the server's --manager-transport udp, the manager client's \
     --transport udp) or load the sctp module";

/// Whether `err` (or any error in its `source()` chain) says that the
/// kernel has no SCTP: EPROTONOSUPPORT from `socket(..., IPPROTO_SCTP)`, or
/// this crate's own "built without kernel SCTP" error.
pub fn is_no_kernel_sctp(err: &io::Error) -> bool {
    if err.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = match err.get_ref() {
        Some(inner) => Some(inner),
        None => return false,
    };
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
                return true;
            }
        }
        if e.downcast_ref::<NoKernelSctp>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The error returned when kernel SCTP is unavailable; its source is the
/// original error (if any).
#[derive(Debug)]
pub(crate) struct NoKernelSctp {
    detail: &'static str,
    source: Option<io::Error>,
}

impl std::fmt::Display for NoKernelSctp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail)
    }
}

impl std::error::Error for NoKernelSctp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Rewrites an EPROTONOSUPPORT error into the plain-words one.
#[cfg_attr(not(feature = "kernel-sctp"), allow(dead_code))]
pub(crate) fn explain_kernel_error(err: io::Error) -> io::Error {
    if is_no_kernel_sctp(&err)
        && err
            .get_ref()
            .and_then(|e| e.downcast_ref::<NoKernelSctp>())
            .is_none()
    {
        io::Error::new(
            io::ErrorKind::Unsupported,
            NoKernelSctp {
                detail: NO_KERNEL_SCTP,
                source: Some(err),
            },
        )
    } else {
        err
    }
}

#[cfg(not(feature = "kernel-sctp"))]
fn kernel_feature_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        NoKernelSctp {
            detail: "this build has no kernel SCTP support (cargo feature `kernel-sctp` is off); \
                     use SCTP over UDP (the server's --manager-transport udp, the manager \
                     client's --transport udp)",
            source: None,
        },
    )
}

enum ListenerInner {
    #[cfg(feature = "kernel-sctp")]
    Kernel(kernel::KernelListener),
    Udp(udp::UdpListener),
}

/// A bound manager endpoint that accepts associations.
pub struct Listener {
    inner: ListenerInner,
}

impl Listener {
    /// Binds `addr` (port 0 allowed) with the given transport. With `Auto`,
    /// kernel SCTP is tried first and EPROTONOSUPPORT falls back to UDP.
    pub async fn bind(addr: SocketAddr, kind: TransportKind) -> io::Result<Listener> {
        Self::bind_supervised(addr, kind, None).await
    }

    /// [`Listener::bind`]; when the transport is SCTP over UDP and `sup`
    /// is given, its driver task runs as the node `udp-driver` under
    /// `sup`'s node (restarted on a panic, see [`crate::supervision::task`]).
    pub async fn bind_supervised(
        addr: SocketAddr,
        kind: TransportKind,
        sup: Option<(Arc<Supervision>, NodeId)>,
    ) -> io::Result<Listener> {
        let inner = match kind {
            TransportKind::Udp => ListenerInner::Udp(udp::UdpListener::bind(addr, sup).await?),
            TransportKind::Kernel => bind_kernel(addr)?,
            TransportKind::Auto => match bind_kernel(addr) {
                Ok(l) => l,
                Err(e) if is_no_kernel_sctp(&e) => {
                    ListenerInner::Udp(udp::UdpListener::bind(addr, sup).await?)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Listener { inner })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            #[cfg(feature = "kernel-sctp")]
            ListenerInner::Kernel(l) => l.local_addr(),
            ListenerInner::Udp(l) => Ok(l.local_addr()),
        }
    }

    pub fn transport(&self) -> Resolved {
        match &self.inner {
            #[cfg(feature = "kernel-sctp")]
            ListenerInner::Kernel(_) => Resolved::Kernel,
            ListenerInner::Udp(_) => Resolved::Udp,
        }
    }

    /// Waits for the next association.
    pub async fn accept(&mut self) -> io::Result<(Association, SocketAddr)> {
        match &mut self.inner {
            #[cfg(feature = "kernel-sctp")]
            ListenerInner::Kernel(l) => {
                let (a, peer) = l.accept().await?;
                Ok((
                    Association {
                        inner: AssociationInner::Kernel(a),
                    },
                    peer,
                ))
            }
            ListenerInner::Udp(l) => {
                let (a, peer) = l.accept().await?;
                Ok((
                    Association {
                        inner: AssociationInner::Udp(a),
                    },
                    peer,
                ))
            }
        }
    }
}

fn bind_kernel(addr: SocketAddr) -> io::Result<ListenerInner> {
    #[cfg(feature = "kernel-sctp")]
    {
        Ok(ListenerInner::Kernel(kernel::KernelListener::bind(addr)?))
    }
    #[cfg(not(feature = "kernel-sctp"))]
    {
        let _ = addr;
        Err(kernel_feature_off())
    }
}

enum AssociationInner {
    #[cfg(feature = "kernel-sctp")]
    Kernel(kernel::KernelAssociation),
    Udp(udp::UdpAssociation),
}

/// One SCTP association (one-to-one), carrying whole messages on stream 0.
pub struct Association {
    inner: AssociationInner,
}

impl Association {
    /// Connects to `addr`. With `Auto`, kernel SCTP is tried first; when the
    /// kernel has no SCTP, or nothing answers kernel SCTP at `addr`
    /// (connection refused), SCTP over UDP is tried on the same address.
    pub async fn connect(addr: SocketAddr, kind: TransportKind) -> io::Result<Association> {
        let inner = match kind {
            TransportKind::Udp => AssociationInner::Udp(udp::UdpAssociation::connect(addr).await?),
            TransportKind::Kernel => connect_kernel(addr).await?,
            TransportKind::Auto => match connect_kernel(addr).await {
                Ok(a) => a,
                Err(e) if is_no_kernel_sctp(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                    AssociationInner::Udp(udp::UdpAssociation::connect(addr).await?)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Association { inner })
    }

    /// Connects over SCTP over UDP from the local address `local` (tests
    /// that need several client addresses on loopback).
    pub async fn connect_udp_from(addr: SocketAddr, local: IpAddr) -> io::Result<Association> {
        Ok(Association {
            inner: AssociationInner::Udp(udp::UdpAssociation::connect_from(addr, local).await?),
        })
    }

    /// The transport this association runs on.
    pub fn transport(&self) -> Resolved {
        match &self.inner {
            #[cfg(feature = "kernel-sctp")]
            AssociationInner::Kernel(_) => Resolved::Kernel,
            AssociationInner::Udp(_) => Resolved::Udp,
        }
    }

    /// The peer's address (for SCTP over UDP: its UDP address).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            #[cfg(feature = "kernel-sctp")]
            AssociationInner::Kernel(a) => a.peer_addr(),
            AssociationInner::Udp(a) => Ok(a.peer_addr()),
        }
    }

    /// The next whole message; `Ok(None)` once the peer has closed.
    pub async fn recv_msg(&mut self) -> io::Result<Option<Bytes>> {
        match &mut self.inner {
            #[cfg(feature = "kernel-sctp")]
            AssociationInner::Kernel(a) => a.recv_msg().await,
            AssociationInner::Udp(a) => a.recv_msg().await,
        }
    }

    /// Sends one whole message on stream 0.
    pub async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(feature = "kernel-sctp")]
            AssociationInner::Kernel(a) => a.send_msg(msg).await,
            AssociationInner::Udp(a) => a.send_msg(msg).await,
        }
    }

    /// Graceful shutdown: everything sent is delivered first.
    pub async fn close(self) -> io::Result<()> {
        match self.inner {
            #[cfg(feature = "kernel-sctp")]
            AssociationInner::Kernel(a) => a.close().await,
            AssociationInner::Udp(a) => a.close().await,
        }
    }
}

async fn connect_kernel(addr: SocketAddr) -> io::Result<AssociationInner> {
    #[cfg(feature = "kernel-sctp")]
    {
        Ok(AssociationInner::Kernel(
            kernel::KernelAssociation::connect(addr).await?,
        ))
    }
    #[cfg(not(feature = "kernel-sctp"))]
    {
        let _ = addr;
        Err(kernel_feature_off())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_static<T: Send + 'static>() {}

    #[test]
    fn handles_are_send_and_static() {
        assert_send_static::<Listener>();
        assert_send_static::<Association>();
    }

    #[test]
    fn recognises_eprotonosupport_in_a_chain() {
        let raw = io::Error::from_raw_os_error(libc::EPROTONOSUPPORT);
        assert!(is_no_kernel_sctp(&raw));
        #[derive(Debug)]
        struct Wrapped(io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "Failed to create socket: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped =
            io::Error::other(Wrapped(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)));
        assert!(is_no_kernel_sctp(&wrapped));
        let explained = explain_kernel_error(wrapped);
        assert!(is_no_kernel_sctp(&explained));
        assert_eq!(explained.kind(), io::ErrorKind::Unsupported);
        assert!(explained.to_string().contains("--manager-transport udp"));
        let other = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(!is_no_kernel_sctp(&other));
    }
}
