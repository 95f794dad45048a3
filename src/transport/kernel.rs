//! Kernel SCTP through tokio-sctp 0.2 (one-to-one sockets). Each message is
//! one `sendmsg` on stream 0; `recv_msg` reads until MSG_EOR.

use std::io;
use std::net::{Shutdown, SocketAddr};

use bytes::{Bytes, BytesMut};
use tokio_sctp::{RecvFlags, SctpListener, SctpStream, SendOptions};

use super::{explain_kernel_error, CLOSE_TIMEOUT, CONNECT_TIMEOUT, MAX_MESSAGE_SIZE};

/// Read buffer reserved before each `recvmsg`.
const READ_CHUNK: usize = 64 * 1024;
/// How often `close` looks at the association state.
const STATUS_POLL: std::time::Duration = std::time::Duration::from_millis(10);

pub(crate) struct KernelListener {
    inner: SctpListener,
}

impl KernelListener {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<KernelListener> {
        let inner = SctpListener::bind(addr).map_err(explain_kernel_error)?;
        Ok(KernelListener { inner })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub(crate) async fn accept(&mut self) -> io::Result<(KernelAssociation, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        Ok((KernelAssociation::new(stream), peer))
    }
}

pub(crate) struct KernelAssociation {
    stream: SctpStream,
    /// The part of a message read so far (kept here so that `recv_msg` is
    /// cancel-safe).
    buf: BytesMut,
    eof: bool,
}

impl KernelAssociation {
    fn new(stream: SctpStream) -> KernelAssociation {
        KernelAssociation {
            stream,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<KernelAssociation> {
        match tokio::time::timeout(CONNECT_TIMEOUT, SctpStream::connect(addr)).await {
            Ok(Ok(stream)) => Ok(KernelAssociation::new(stream)),
            Ok(Err(e)) => Err(explain_kernel_error(e)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("kernel SCTP connect to {addr}: no handshake within {CONNECT_TIMEOUT:?}"),
            )),
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    pub(crate) async fn recv_msg(&mut self) -> io::Result<Option<Bytes>> {
        if self.eof {
            return Ok(None);
        }
        loop {
            self.buf.reserve(READ_CHUNK);
            let res = self.stream.recvmsg_buf(&mut self.buf).await;
            let (n, _info, flags) = match res {
                Ok(r) => r,
                Err(e) if is_peer_gone(&e) => {
                    self.eof = true;
                    self.buf.clear();
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                if !self.buf.is_empty() {
                    self.buf.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the SCTP association ended in the middle of a message",
                    ));
                }
                return Ok(None);
            }
            if self.buf.len() > MAX_MESSAGE_SIZE {
                self.buf.clear();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("received a message over the maximum of {MAX_MESSAGE_SIZE} bytes"),
                ));
            }
            if flags.contains(RecvFlags::EOR) {
                return Ok(Some(self.buf.split().freeze()));
            }
        }
    }

    pub(crate) async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        super::udp::check_message_size(msg.len())?;
        let opts = SendOptions {
            ppid: 0,
            flags: 0,
            stream: 0,
            ttl: 0,
        };
        let n = self.stream.sendmsg(msg, None, &opts).await?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("kernel SCTP sent {n} of {} bytes", msg.len()),
            ));
        }
        Ok(())
    }

    /// SHUT_WR makes the kernel send SHUTDOWN once everything queued was
    /// acknowledged. The side that shuts down first never sees a read
    /// return 0 (Linux sets RCV_SHUTDOWN only on the side that *receives*
    /// SHUTDOWN), so the end is found by polling SCTP_STATUS until the
    /// association is gone. What the peer still sends meanwhile is
    /// discarded (unread data at close() would make Linux answer with
    /// ABORT).
    pub(crate) async fn close(self) -> io::Result<()> {
        if self.eof {
            // The peer shut down; the kernel completes the handshake alone.
            return Ok(());
        }
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Ok(()),
            Err(e) => return Err(e),
        }
        let stream = &self.stream;
        let finished = async {
            let mut scratch = BytesMut::new();
            loop {
                scratch.clear();
                scratch.reserve(READ_CHUNK);
                tokio::select! {
                    r = stream.recvmsg_buf(&mut scratch) => match r {
                        Ok((0, _, _)) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if is_peer_gone(&e) => return Ok(()),
                        Err(e) => return Err(e),
                    },
                    _ = tokio::time::sleep(STATUS_POLL) => {
                        match stream.status() {
                            // No association any more: the shutdown is over.
                            Err(_) => return Ok(()),
                            // SCTP_EMPTY (0) or SCTP_CLOSED (1).
                            Ok(s) if s.state <= 1 => return Ok(()),
                            Ok(_) => {}
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, finished).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("graceful SCTP shutdown did not complete within {CLOSE_TIMEOUT:?}"),
            )),
        }
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET) | Some(libc::ENOTCONN) | Some(libc::EPIPE)
    )
}
