//! The few calls into libc that the standard library does not wrap: the
//! open-file limit, splice(2) with its pipes for the zero-copy relay, and
//! `IP_BIND_ADDRESS_NO_PORT` for outbound sockets bound to `--outgoing-ip`.

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
}
