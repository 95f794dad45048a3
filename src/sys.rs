//! The few calls into libc that the standard library does not wrap: the
//! open-file limit, splice(2) with its pipes for the zero-copy relay,
//! `IP_BIND_ADDRESS_NO_PORT` for outbound sockets bound to `--outgoing-ip`,
//! and a TCP socket's kernel counters (TCP_INFO, SIOCOUTQ) for the relay's
//! idle and flow control.

use std::io;

/// Raises the soft RLIMIT_NOFILE towards `wanted` (capped by the hard limit).
/// Returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, not on every platform.
#[allow(unsafe_code)] // getrlimit/setrlimit: plain FFI on a stack struct.
pub fn raise_nofile_limit(wanted: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = (wanted as libc::rlim_t).min(lim.rlim_max);
    if target > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit read above and adjusted within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(target as u64);
    }
    Ok(lim.rlim_cur as u64)
}

#[cfg(target_os = "linux")]
pub use linux::*;

/// splice(2) and the pipes it needs: the zero-copy relay.
#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    /// A pipe, both ends non-blocking and close-on-exec: (read end, write end).
    #[allow(unsafe_code)] // pipe2 fills two ints; we take ownership of both fds.
    pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors nobody else owns.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    /// Asks for a pipe capacity of `size` bytes; returns the capacity granted.
    #[allow(unsafe_code)] // fcntl(F_SETPIPE_SZ) on a descriptor we borrow.
    pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is an open descriptor for the duration of the borrow.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux >= 4.2): a socket bound to an
    /// address with port 0 gets its port at connect time, unique per
    /// 4-tuple, instead of reserving one at bind time (which would use up
    /// the ephemeral ports at a few tens of thousands of connections).
    /// Neither tokio nor socket2 exposes it. Works on IPv6 sockets too.
    #[allow(unsafe_code)] // setsockopt on a borrowed descriptor with a live c_int.
    pub fn set_bind_address_no_port(fd: BorrowedFd<'_>) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: `fd` is open for the duration of the borrow; we pass a
        // pointer to a live c_int and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A TCP socket's progress as its kernel counts it (TCP_INFO, Linux 4.6
    /// and later): bytes of ours the peer has acknowledged, bytes received
    /// from the peer. Either grows only when data really moves, whatever the
    /// proxy's own reads and writes do.
    #[allow(unsafe_code)] // getsockopt(TCP_INFO) into a zeroed libc::tcp_info.
    pub fn tcp_progress(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
        // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `fd` is open for the duration of the borrow; `info` and
        // `len` are live and `len` is `info`'s size (the kernel writes at
        // most that much).
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((info.tcpi_bytes_acked, info.tcpi_bytes_received))
    }

    /// Bytes in a socket's send queue, sent or not, that the peer has not
    /// acknowledged yet (SIOCOUTQ).
    #[allow(unsafe_code)] // ioctl(SIOCOUTQ) writing one c_int.
    pub fn send_queue(fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: `fd` is open for the duration of the borrow; SIOCOUTQ
        // (TIOCOUTQ) writes one c_int through the live pointer.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Copies up to `buf.len()` bytes from a socket's receive queue without
    /// removing them (recv with MSG_PEEK), without blocking.
    #[allow(unsafe_code)] // recv(2) into a live, writable slice.
    pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `fd` is open for the duration of the borrow; `buf` is a
        // live writable slice of exactly the length passed.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Removes up to `len` bytes from a TCP socket's receive queue without
    /// copying them (recv with MSG_TRUNC, Linux): after a [`peek`], the
    /// bytes the other side took. Returns how many were removed.
    #[allow(unsafe_code)] // recv(2) with MSG_TRUNC: the kernel writes nothing.
    pub fn discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        let mut scratch = [0u8; 1];
        // SAFETY: `fd` is open for the duration of the borrow. With
        // MSG_TRUNC, TCP discards the data instead of copying it: the
        // one-byte buffer is never written past (nor, for TCP, at all).
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                scratch.as_mut_ptr().cast(),
                len,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Moves up to `len` bytes from `from` to `to` inside the kernel, without
    /// blocking (one side must be a pipe).
    #[allow(unsafe_code)] // splice(2) on two borrowed descriptors, no offsets.
    pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the borrows;
        // null offsets are what splice takes for pipes and sockets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::io::{Read, Write};
        use std::os::fd::AsFd;

        #[test]
        fn progress_and_send_queue_follow_the_bytes() {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut b, _) = l.accept().unwrap();
            // (The SYN may count as one byte acknowledged.)
            let (acked0, received0) = tcp_progress(b.as_fd()).unwrap();
            let (sent0, _) = tcp_progress(a.as_fd()).unwrap();
            a.write_all(&[1u8; 1000]).unwrap();
            let mut got = [0u8; 1000];
            b.read_exact(&mut got).unwrap();
            // Loopback ACKs at once; allow the kernel a moment.
            for _ in 0..100 {
                if tcp_progress(a.as_fd()).unwrap().0 == sent0 + 1000 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(tcp_progress(a.as_fd()).unwrap().0, sent0 + 1000);
            assert_eq!(tcp_progress(b.as_fd()).unwrap(), (acked0, received0 + 1000));
            assert_eq!(send_queue(a.as_fd()).unwrap(), 0);
        }

        #[test]
        fn peek_then_discard_takes_exactly_what_was_used() {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut b, _) = l.accept().unwrap();
            a.write_all(b"0123456789").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut buf = [0u8; 16];
            assert_eq!(peek(b.as_fd(), &mut buf).unwrap(), 10);
            assert_eq!(&buf[..10], b"0123456789");
            assert_eq!(discard(b.as_fd(), 4).unwrap(), 4);
            let mut rest = [0u8; 6];
            b.read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"456789");
        }
    }
}
