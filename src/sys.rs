//! The few calls into libc that the standard library does not wrap.

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
