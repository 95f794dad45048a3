//! Operating-system helpers: client sockets with spread source addresses,
//! listeners, the open-files limit, and process RSS from /proc.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Connects to `dst`. When `dst` is IPv4 loopback and `spread > 0`, the
/// socket is first bound to source address 127.0.0.(2 + index % spread),
/// port 0, with `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks the source
/// port at connect time, unique per 4-tuple rather than per address: this
/// multiplies the ephemeral ports available (TIME_WAIT included) by
/// `spread` and keeps connection-rate runs from running dry.
pub async fn connect_from(
    dst: SocketAddr,
    index: usize,
    spread: usize,
) -> std::io::Result<TcpStream> {
    let sock = match dst {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if spread > 0 && dst.ip().is_loopback() && dst.is_ipv4() {
        let last = 2 + (index % spread) as u8;
        // The proxy's own helper: plain socket plumbing, no SOCKS code.
        actor_socks::sys::set_bind_address_no_port(sock.as_fd())?;
        sock.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
    }
    let s = sock.connect(dst).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A listener on `ip:0` with a generous backlog.
pub fn listen(ip: Ipv4Addr) -> std::io::Result<(TcpListener, SocketAddrV4)> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::from((ip, 0)))?;
    let l = sock.listen(4096)?;
    let addr = match l.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound an IPv4 address"),
    };
    Ok((l, addr))
}

/// Raises RLIMIT_NOFILE: the soft limit to the hard limit, and if the hard
/// limit is below `want`, tries both to `want` (needs CAP_SYS_RESOURCE,
/// capped by fs.nr_open). Returns the resulting soft limit.
// `rlim_t` is u64 on 64-bit Linux but not everywhere, hence the casts.
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile(want: u64) -> u64 {
    let Some(mut lim) = get_nofile() else {
        return 0;
    };
    if (lim.rlim_max as u64) < want {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(want);
        let target = want.min(nr_open) as libc::rlim_t;
        let up = libc::rlimit {
            rlim_cur: target,
            rlim_max: target,
        };
        if set_nofile(&up) {
            return target as u64;
        }
    }
    lim.rlim_cur = lim.rlim_max;
    set_nofile(&lim);
    get_nofile().map_or(0, |l| l.rlim_cur as u64)
}

fn get_nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the rlimit struct we pass, which lives
    // on this stack frame.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim)
}

fn set_nofile(lim: &libc::rlimit) -> bool {
    // SAFETY: setrlimit only reads the rlimit struct behind the reference.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) };
    rc == 0
}

/// VmRSS (kB) of `pid` alone.
fn vm_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of VmRSS (kB) over `pid` and all its descendants, and how many
/// processes that is. For a single-process server (actor-socks, microsocks)
/// this is just its VmRSS; for a forking one (Dante) it adds the children
/// (shared pages are then counted once per process, an overestimate).
pub fn tree_rss_kb(pid: u32) -> Option<(u64, usize)> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the parenthesised comm: state ppid ...
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut total = vm_rss_kb(pid)?;
    let mut n = 1;
    let mut stack = children.get(&pid).cloned().unwrap_or_default();
    while let Some(c) = stack.pop() {
        if let Some(kb) = vm_rss_kb(c) {
            total += kb;
            n += 1;
        }
        if let Some(cs) = children.get(&c) {
            stack.extend(cs);
        }
    }
    Some((total, n))
}
