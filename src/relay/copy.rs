//! The relay: bytes both ways between client and target, counted, with
//! half-close and an idle timeout.
//!
//! Each direction moves data in bursts: it waits for readiness, only then
//! takes a buffer (or, for splice, a pipe) from its thread's pool, and gives
//! it back as soon as the socket has nothing more to read, so an idle session
//! holds no relay buffer at all and a busy worker reuses a few warm ones.
//! Under `--relay auto` each burst picks copy or splice (see `pump`).
//! Counters live in [`Traffic`], shared (on the session's own thread) with
//! the session actor that logs them, and every byte is also added to the
//! server-wide [`Counters`] as it moves.

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::actors::metrics::Counters;

/// Relay buffer size per direction while data flows.
pub const BUF_SIZE: usize = 256 * 1024;
/// The buffer of a lone bulk flow: a bulk flow with no other burst on its
/// worker (see `pump`). Four times fewer reads, writes and ACK wake-ups
/// per byte: 6-8 % less CPU per GB for one stream, measured.
pub const BULK_BUF_SIZE: usize = 1024 * 1024;
/// Buffers each worker thread keeps for reuse.
const POOL_MAX: usize = 16;
/// Bulk buffers each worker thread keeps: only a burst that starts while no
/// other burst is in progress takes one, so at most one is in use per worker.
const BULK_POOL_MAX: usize = 1;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
    static BULK_POOL: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A relay buffer borrowed from the thread's pool; dropping it returns it.
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take(bulk: bool) -> Self {
        let (pool, size) = if bulk {
            (&BULK_POOL, BULK_BUF_SIZE)
        } else {
            (&POOL, BUF_SIZE)
        };
        let b = pool
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        PooledBuf(Some(b))
    }

    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().expect("present until dropped")
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let (pool, max) = if b.len() == BULK_BUF_SIZE {
                (&BULK_POOL, BULK_POOL_MAX)
            } else {
                (&POOL, POOL_MAX)
            };
            pool.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < max {
                    p.push(b);
                }
            });
        }
    }
}

/// A session's byte counters and the last time a byte moved. Single-threaded:
/// the session and its relay run on one arbiter. Bytes are added to `total`
/// (the server's metrics) too.
#[derive(Debug)]
pub struct Traffic {
    up: Cell<u64>,
    down: Cell<u64>,
    last_activity: Cell<Instant>,
    total: Arc<Counters>,
}

impl Default for Traffic {
    /// Counting into counters of its own (tests).
    fn default() -> Self {
        Traffic::new(Arc::default())
    }
}

impl Traffic {
    pub fn new(total: Arc<Counters>) -> Self {
        Traffic {
            up: Cell::new(0),
            down: Cell::new(0),
            last_activity: Cell::new(Instant::now()),
            total,
        }
    }

    /// Bytes moved client to target.
    pub fn up(&self) -> u64 {
        self.up.get()
    }
    /// Bytes moved target to client.
    pub fn down(&self) -> u64 {
        self.down.get()
    }
    pub fn total(&self) -> u64 {
        self.up.get() + self.down.get()
    }
    pub fn add_up(&self, n: usize) {
        self.up.set(self.up.get() + n as u64);
        self.total.add_bytes(n as u64);
        self.last_activity.set(Instant::now());
    }
    pub fn add_down(&self, n: usize) {
        self.down.set(self.down.get() + n as u64);
        self.total.add_bytes(n as u64);
        self.last_activity.set(Instant::now());
    }
    pub fn touch(&self) {
        self.last_activity.set(Instant::now());
    }
    pub fn last_activity(&self) -> Instant {
        self.last_activity.get()
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Up,
    Down,
}

/// Writes all of `buf` to `w`.
pub async fn write_all(w: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        w.writable().await?;
        match w.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn count(traffic: &Traffic, dir: Dir, n: usize) {
    match dir {
        Dir::Up => traffic.add_up(n),
        Dir::Down => traffic.add_down(n),
    }
}

/// How bytes cross the proxy (`--relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RelayMode {
    /// `copy` for a lone flow, `splice` for a bulk flow while other flows
    /// are moving data on the same worker (Linux; elsewhere `copy`).
    #[default]
    Auto,
    /// read(2)/write(2) through pooled buffers (256 KiB; 1 MiB for a bulk
    /// flow while no other flow on its worker moves data).
    Copy,
    /// splice(2) through a pooled pipe, the bytes never entering userspace:
    /// half the CPU per byte, faster with many concurrent streams (Linux
    /// only; elsewhere `copy`).
    Splice,
}

thread_local! {
    /// Bursts in progress on this worker thread (see [`Burst`]).
    static BURSTS: Cell<usize> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// Copy bursts begun with the bulk buffer on this thread (tests).
    static BIG_BURSTS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one burst in progress on this thread while it lives.
struct InBurst;

impl InBurst {
    fn new() -> Self {
        BURSTS.with(|b| b.set(b.get() + 1));
        InBurst
    }
}

impl Drop for InBurst {
    fn drop(&mut self) {
        BURSTS.with(|b| b.set(b.get() - 1));
    }
}

/// A burst: from a socket turning readable until it is drained (or at EOF),
/// holding one pooled buffer or pipe. How it ended:
enum Burst {
    /// The socket has nothing more to read for now.
    Drained,
    /// The peer's EOF arrived.
    Eof,
}

/// EOF from `r`'s side: pass the half-close on to `w`, unless the other
/// direction has already ended too. Then both sockets are about to be closed,
/// and closing sends the FIN anyway: one syscall fewer per connection.
fn pass_eof(w: &TcpStream, other_done: &Cell<bool>) {
    if !other_done.replace(true) {
        let _ = socket2::SockRef::from(w).shutdown(Shutdown::Write);
    }
}

/// One direction of the relay, burst after burst. `done` is shared by both
/// directions: set once either has seen EOF.
///
/// `Auto` picks the method per burst. A flow starts with `copy`; once it
/// has filled a whole buffer (a bulk flow), a burst that begins while
/// another burst is in progress on this worker uses `splice`. Measured on
/// loopback (docs/performance.md): with several streams, where the cores
/// are the limit, splice's lower CPU per byte wins 15-30 %; a lone stream
/// is faster copied.
async fn pump(
    r: &TcpStream,
    w: &TcpStream,
    traffic: &Traffic,
    dir: Dir,
    mode: RelayMode,
    done: &Cell<bool>,
) -> io::Result<()> {
    let mut bulk = false;
    loop {
        r.readable().await?;
        let alone = BURSTS.with(Cell::get) == 0;
        let splice = match mode {
            RelayMode::Copy => false,
            RelayMode::Splice => true,
            RelayMode::Auto => bulk && !alone,
        };
        // A lone bulk flow copies through the bulk buffer.
        let big = bulk && alone;
        #[cfg(target_os = "linux")]
        let end = if splice {
            splice::burst(r, w, traffic, dir).await?
        } else {
            copy_burst(r, w, traffic, dir, &mut bulk, big).await?
        };
        #[cfg(not(target_os = "linux"))]
        let end = {
            let _ = splice;
            copy_burst(r, w, traffic, dir, &mut bulk, big).await?
        };
        if let Burst::Eof = end {
            pass_eof(w, done);
            return Ok(());
        }
    }
}

/// Marks `r` as not readable until the kernel says otherwise, with no syscall.
/// Only right after a read that returned less than asked: with an
/// edge-triggered selector (epoll, kqueue) a short read shows the receive
/// queue was drained, and data arriving later raises a new event (tokio's
/// own `poll_read` does the same). A FIN already seen stays seen: tokio never
/// clears read-closed readiness.
fn drained(r: &TcpStream) {
    let _ = r.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

/// A copying burst: read into a pooled buffer (the bulk one if `big`),
/// write it all, until a read comes back short (drained). Sets `bulk` when a
/// read fills the buffer.
async fn copy_burst(
    r: &TcpStream,
    w: &TcpStream,
    traffic: &Traffic,
    dir: Dir,
    bulk: &mut bool,
    big: bool,
) -> io::Result<Burst> {
    let _in_burst = InBurst::new();
    #[cfg(test)]
    if big {
        BIG_BURSTS.with(|b| b.set(b.get() + 1));
    }
    let mut buf = PooledBuf::take(big);
    loop {
        let b = buf.as_mut();
        match r.try_read(b) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => {
                let short = n < b.len();
                if short && cfg!(any(target_os = "linux", target_os = "android")) {
                    // Saves the read that would only return EAGAIN.
                    drained(r);
                }
                write_all(w, &b[..n]).await?;
                count(traffic, dir, n);
                if short {
                    // Probably nothing more for a while: no buffer held idle.
                    return Ok(Burst::Drained);
                }
                *bulk = true;
                // Still readable; awaiting it lets other sessions run.
                r.readable().await?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) => return Err(e),
        }
    }
}

/// The zero-copy relay: socket -> pipe -> socket, the bytes never leaving
/// the kernel. Pipes come from a per-thread pool and go back to it empty, so
/// an idle session holds none.
#[cfg(target_os = "linux")]
mod splice {
    use super::{count, Burst, Dir, InBurst, Traffic};
    use std::cell::RefCell;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use crate::sys;

    /// Pipe capacity asked for (the kernel may grant less).
    const PIPE_SIZE: usize = 256 * 1024;
    /// Empty pipes each worker thread keeps for reuse.
    const POOL_MAX: usize = 64;

    struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
        cap: usize,
    }

    thread_local! {
        static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    }

    fn take() -> io::Result<Pipe> {
        if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
            return Ok(p);
        }
        let (r, w) = sys::pipe()?;
        let cap = sys::set_pipe_size(w.as_fd(), PIPE_SIZE).unwrap_or(64 * 1024);
        Ok(Pipe { r, w, cap })
    }

    /// Returns an empty pipe to the pool (a pipe holding data is closed).
    fn give_back(p: Pipe) {
        PIPES.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(p);
            }
        });
    }

    #[cfg(test)]
    thread_local! {
        /// Splice bursts begun on this thread (tests check `Auto`'s choice).
        pub(super) static BEGUN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A splicing burst: socket -> pipe, pipe -> other socket, until a
    /// splice from the socket finds nothing (drained).
    pub(super) async fn burst(
        r: &TcpStream,
        w: &TcpStream,
        traffic: &Traffic,
        dir: Dir,
    ) -> io::Result<Burst> {
        let _in_burst = InBurst::new();
        #[cfg(test)]
        BEGUN.with(|b| b.set(b.get() + 1));
        let p = take()?;
        loop {
            let filled = r.try_io(Interest::READABLE, || {
                sys::splice(r.as_fd(), p.w.as_fd(), p.cap)
            });
            let mut in_pipe = match filled {
                Ok(0) => {
                    give_back(p);
                    return Ok(Burst::Eof);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing more to read: the pipe goes back while we wait.
                    give_back(p);
                    return Ok(Burst::Drained);
                }
                Err(e) => {
                    give_back(p);
                    return Err(e);
                }
            };
            // Drain the pipe into the other socket before reading more. On
            // error the pipe (maybe holding data) is simply closed.
            while in_pipe > 0 {
                w.writable().await?;
                match w.try_io(Interest::WRITABLE, || {
                    sys::splice(p.r.as_fd(), w.as_fd(), in_pipe)
                }) {
                    Ok(n) => {
                        in_pipe -= n;
                        count(traffic, dir, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // The pipe is empty; keep it while data keeps coming.
            r.readable().await?;
        }
    }
}

async fn idle_watch(traffic: &Traffic, idle: Duration) {
    loop {
        let deadline = traffic.last_activity() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed their sending half.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A socket error (e.g. reset) ended it.
    Error(io::Error),
}

/// First sends `pending` (bytes the client sent after its request) to the
/// target, then relays both ways until both directions reach EOF, either side
/// fails, or nothing moves for `idle`.
///
/// The first EOF is passed on as a half-close (`shutdown(SHUT_WR)`); the
/// second is not: the caller closes both sockets when this returns, and the
/// close sends that FIN.
pub async fn relay(
    client: &TcpStream,
    target: &TcpStream,
    pending: &[u8],
    traffic: &Traffic,
    idle: Duration,
    mode: RelayMode,
) -> RelayEnd {
    traffic.touch();
    if !pending.is_empty() {
        if let Err(e) = write_all(target, pending).await {
            return RelayEnd::Error(e);
        }
        traffic.add_up(pending.len());
    }
    let done = Cell::new(false);
    let both = futures::future::try_join(
        pump(client, target, traffic, Dir::Up, mode, &done),
        pump(target, client, traffic, Dir::Down, mode, &done),
    );
    tokio::select! {
        r = both => match r {
            Ok(_) => RelayEnd::Closed,
            Err(e) => RelayEnd::Error(e),
        },
        _ = idle_watch(traffic, idle) => RelayEnd::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// A client, the proxy's two sockets (client side, target side) and a
    /// target: two connected loopback pairs.
    async fn endpoints() -> (TcpStream, (TcpStream, TcpStream), TcpStream) {
        let (client, proxy_client) = pair().await;
        let (proxy_target, target) = pair().await;
        (client, (proxy_client, proxy_target), target)
    }

    /// Relays as the session does, then closes both proxy-side sockets (the
    /// second EOF reaches its peer by that close).
    async fn relay_then_close(
        (proxy_client, proxy_target): (TcpStream, TcpStream),
        pending: &[u8],
        traffic: &Traffic,
        idle: Duration,
        mode: RelayMode,
    ) -> RelayEnd {
        let end = relay(&proxy_client, &proxy_target, pending, traffic, idle, mode).await;
        drop((proxy_client, proxy_target));
        end
    }

    /// Writes `payload` at `client` and half-closes; returns all `target` read.
    async fn through(client: &mut TcpStream, target: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
        let (got, ()) = tokio::join!(
            async {
                let mut got = Vec::new();
                target.read_to_end(&mut got).await.unwrap();
                got
            },
            async {
                client.write_all(payload).await.unwrap();
                client.shutdown().await.unwrap();
            }
        );
        got
    }

    #[tokio::test]
    async fn relays_counts_and_half_closes_copy() {
        relays_counts_and_half_closes(RelayMode::Copy).await;
    }

    #[tokio::test]
    async fn relays_counts_and_half_closes_splice() {
        relays_counts_and_half_closes(RelayMode::Splice).await;
    }

    #[tokio::test]
    async fn relays_counts_and_half_closes_auto() {
        relays_counts_and_half_closes(RelayMode::Auto).await;
    }

    /// Runs `flows` relays of `bytes` each (client to target) at once on
    /// this thread; returns how many splice bursts they began.
    #[cfg(target_os = "linux")]
    async fn bulk_flows(flows: usize, bytes: usize, mode: RelayMode) -> usize {
        let before = splice::BEGUN.with(Cell::get);
        let one = || async {
            let (mut client, sockets, mut target) = endpoints().await;
            let traffic = Traffic::default();
            let relay = relay_then_close(sockets, b"", &traffic, Duration::from_secs(10), mode);
            let peers = async {
                let payload: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
                let got = through(&mut client, &mut target, &payload).await;
                assert!(got == payload, "payload corrupted");
                drop(target);
                let mut rest = Vec::new();
                client.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
            };
            let (end, ()) = tokio::join!(relay, peers);
            assert!(matches!(end, RelayEnd::Closed), "{end:?}");
            assert_eq!(traffic.up(), bytes as u64);
        };
        futures::future::join_all((0..flows).map(|_| one())).await;
        assert_eq!(
            BURSTS.with(Cell::get),
            0,
            "a finished burst is still counted"
        );
        splice::BEGUN.with(Cell::get) - before
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn auto_copies_a_lone_flow() {
        let big = BIG_BURSTS.with(Cell::get);
        assert_eq!(bulk_flows(1, 16 << 20, RelayMode::Auto).await, 0);
        assert!(
            BIG_BURSTS.with(Cell::get) > big,
            "a lone bulk flow never used the bulk buffer"
        );
        assert_eq!(bulk_flows(1, 1 << 20, RelayMode::Copy).await, 0);
    }

    /// Small exchanges never take the bulk buffer.
    #[tokio::test]
    async fn small_exchanges_copy_through_the_small_buffer() {
        let big = BIG_BURSTS.with(Cell::get);
        relays_counts_and_half_closes_small().await;
        assert_eq!(BIG_BURSTS.with(Cell::get), big);
    }

    async fn relays_counts_and_half_closes_small() {
        let (mut client, sockets, mut target) = endpoints().await;
        let traffic = Traffic::default();
        let relay = relay_then_close(
            sockets,
            b"",
            &traffic,
            Duration::from_secs(5),
            RelayMode::Auto,
        );
        let peers = async {
            for i in 0..50u8 {
                client.write_all(&[i; 100]).await.unwrap();
                let mut got = [0u8; 100];
                target.read_exact(&mut got).await.unwrap();
                assert_eq!(got, [i; 100]);
                target.write_all(&got[..10]).await.unwrap();
                let mut back = [0u8; 10];
                client.read_exact(&mut back).await.unwrap();
            }
            drop(client);
            drop(target);
        };
        let (end, ()) = tokio::join!(relay, peers);
        assert!(
            matches!(end, RelayEnd::Closed | RelayEnd::Error(_)),
            "{end:?}"
        );
        assert_eq!(traffic.up(), 5000);
        assert_eq!(traffic.down(), 500);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn auto_splices_bulk_flows_that_overlap() {
        let spliced = bulk_flows(4, 16 << 20, RelayMode::Auto).await;
        assert!(spliced > 0, "four concurrent bulk flows never spliced");
    }

    async fn relays_counts_and_half_closes(mode: RelayMode) {
        let (mut client, sockets, mut target) = endpoints().await;
        let traffic = Traffic::default();
        let relay = relay_then_close(sockets, b"hi", &traffic, Duration::from_secs(5), mode);
        let peers = async {
            let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
            let mut got = through(&mut client, &mut target, &payload).await;
            assert_eq!(got.len(), 3_000_002);
            assert_eq!(&got[..2], b"hi");
            assert!(got.split_off(2) == payload, "payload corrupted");
            target.write_all(b"answer").await.unwrap();
            target.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"answer");
        };
        let (end, ()) = tokio::join!(relay, peers);
        assert!(matches!(end, RelayEnd::Closed), "{end:?}");
        assert_eq!(traffic.up(), 3_000_002);
        assert_eq!(traffic.down(), 6);
    }

    #[tokio::test]
    async fn idle_timeout_ends_relay() {
        let (_client, proxy_client) = pair().await;
        let (proxy_target, _target) = pair().await;
        let traffic = Traffic::default();
        let t0 = Instant::now();
        let end = relay(
            &proxy_client,
            &proxy_target,
            b"",
            &traffic,
            Duration::from_millis(200),
            RelayMode::Copy,
        )
        .await;
        assert!(matches!(end, RelayEnd::Idle));
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }

    /// Writes at `client` until no write completes for 200 ms: every buffer
    /// on the way is full and the relay is blocked mid-burst.
    async fn fill_until_blocked(client: &mut TcpStream) {
        let chunk = vec![7u8; 1 << 20];
        loop {
            tokio::select! {
                r = client.write_all(&chunk) => r.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(200)) => return,
            }
        }
    }

    /// A relay cut off mid-burst (idle timeout, the session stopped) or
    /// ended by a reset leaves no burst counted, so `auto` keeps choosing
    /// copy for the next lone flow.
    #[tokio::test]
    async fn bursts_ended_by_error_or_cancel_are_not_counted() {
        for cancel in [false, true] {
            let (mut client, sockets, target) = endpoints().await;
            let traffic = Traffic::default();
            let relay = relay_then_close(
                sockets,
                b"",
                &traffic,
                Duration::from_secs(5),
                RelayMode::Auto,
            );
            if cancel {
                // The relay future dropped mid-burst.
                tokio::select! {
                    _ = relay => panic!("the relay cannot end: nobody closes"),
                    _ = fill_until_blocked(&mut client) => {}
                }
            } else {
                let peers = async {
                    // The target never reads: the relay's writes block
                    // mid-burst, then the target resets the connection.
                    fill_until_blocked(&mut client).await;
                    assert!(BURSTS.with(Cell::get) > 0, "no burst in progress");
                    socket2::SockRef::from(&target)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(target);
                };
                let (end, ()) = tokio::join!(relay, peers);
                assert!(matches!(end, RelayEnd::Error(_)), "{end:?}");
            }
            assert_eq!(BURSTS.with(Cell::get), 0);
        }
    }
}
