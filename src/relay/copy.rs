//! The relay: bytes both ways between client and target, counted, with
//! half-close, aborts passed on, and an idle timeout.
//!
//! Each direction moves data in bursts: it waits until its socket has
//! something to read *and* the other socket has room to write, only then
//! takes a buffer (or, for splice, a pipe) from its thread's pool, reads no
//! more than the other side has room for, writes it, and gives the buffer
//! back before it yields. So an idle session, and a session whose reader
//! has stopped reading, hold no relay buffer at all: memory follows the
//! data in flight, not the number of sessions (at most [`MAX_IN_USE`]
//! pooled buffers per worker, smaller ones beyond). Under `--relay auto`
//! each burst picks copy or splice (see `pump`).
//!
//! How a relay ends is how its peers see it end: a FIN from one side is
//! passed on as a half-close, and both FINs make a clean close; anything
//! else (a reset or an error on one side, the idle timeout, the session cut
//! at the end of the grace period) ends both connections with a reset
//! ([`AbortGuard`]), after the bytes already relayed have reached their
//! reader. Idle means no progress on either socket as the kernel counts it
//! (TCP_INFO), so a slow but steady reader is never cut.
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

use crate::stats::{Counters, UserCounters};

/// Relay buffer size per direction while data flows.
pub const BUF_SIZE: usize = 256 * 1024;
/// The buffer of a lone bulk flow: a bulk flow with no other burst on its
/// worker (see `pump`). Four times fewer reads, writes and ACK wake-ups
/// per byte: 6-8 % less CPU per GB for one stream, measured.
pub const BULK_BUF_SIZE: usize = 1024 * 1024;
/// Buffers each worker thread keeps for reuse.
const POOL_MAX: usize = 8;
/// Bulk buffers each worker thread keeps: only a burst that starts while no
/// other burst is in progress takes one, so at most one is in use per worker.
const BULK_POOL_MAX: usize = 1;
/// Relay buffers (either size) in use at once on one worker, at most: 64 x
/// 256 KiB = 16 MiB. A burst that starts beyond it gets a [`SMALL_BUF_SIZE`]
/// buffer instead: slower for that burst, never refused.
pub const MAX_IN_USE: usize = 16;
/// The buffer of a burst past [`MAX_IN_USE`].
pub const SMALL_BUF_SIZE: usize = 16 * 1024;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
    static BULK_POOL: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Pooled-size buffers in use on this thread.
    static IN_USE: Cell<usize> = const { Cell::new(0) };
}

/// Relay buffers of the pooled sizes in use on this worker thread now.
pub fn buffers_in_use() -> usize {
    IN_USE.with(Cell::get)
}

/// A relay buffer borrowed from the thread's pool; dropping it returns it.
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take(bulk: bool) -> Self {
        if IN_USE.with(Cell::get) >= MAX_IN_USE {
            return PooledBuf(Some(vec![0u8; SMALL_BUF_SIZE].into_boxed_slice()));
        }
        IN_USE.with(|n| n.set(n.get() + 1));
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
            let (pool, max) = match b.len() {
                BULK_BUF_SIZE => (&BULK_POOL, BULK_POOL_MAX),
                BUF_SIZE => (&POOL, POOL_MAX),
                // A fallback buffer: freed.
                _ => return,
            };
            IN_USE.with(|n| n.set(n.get() - 1));
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
    /// The authenticated user's counters, once known.
    user: std::cell::OnceCell<Arc<UserCounters>>,
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
            user: std::cell::OnceCell::new(),
        }
    }

    /// Counts the bytes from now on for this user too.
    pub fn set_user(&self, user: Arc<UserCounters>) {
        let _ = self.user.set(user);
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
        self.total.add_up(n as u64);
        if let Some(u) = self.user.get() {
            u.add_up(n as u64);
        }
        self.last_activity.set(Instant::now());
    }
    pub fn add_down(&self, n: usize) {
        self.down.set(self.down.get() + n as u64);
        self.total.add_down(n as u64);
        if let Some(u) = self.user.get() {
            u.add_down(n as u64);
        }
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
    /// Bursts in progress on this worker thread (see [`Burst`]): each holds
    /// a buffer or a pipe. A burst never spans a yield, so outside a burst
    /// this is 0 (tests check it).
    static BURSTS: Cell<usize> = const { Cell::new(0) };
    /// Flows streaming on this worker thread: between a burst that ended
    /// with more to move and the burst that drained it (`auto`'s signal).
    static STREAMING: Cell<usize> = const { Cell::new(0) };
}

/// Counts this flow as streaming while set (see `STREAMING`), and stops
/// counting it when dropped (the relay cancelled, an error).
#[derive(Default)]
struct Streaming(bool);

impl Streaming {
    fn set(&mut self, on: bool) {
        if on != self.0 {
            STREAMING.with(|s| s.set(if on { s.get() + 1 } else { s.get() - 1 }));
            self.0 = on;
        }
    }

    /// Other flows streaming on this worker now.
    fn others(&self) -> usize {
        STREAMING.with(Cell::get) - usize::from(self.0)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.set(false);
    }
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

/// A burst: from both sockets being ready (something to read, room to write)
/// until the reading side is drained, the writer is full, one buffer (or
/// pipe) has been moved, or EOF, holding one pooled buffer or pipe, and
/// never across an await that waits for the network. How it ended:
enum Burst {
    /// Nothing more to read for now, or no more room to write into.
    Drained,
    /// A whole buffer (or pipe) moved and there may be more: the flow yields
    /// to the worker's other sessions, then starts another burst.
    More,
    /// The peer's EOF arrived.
    Eof,
}

/// Which of a session's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    /// CONNECT's target, or BIND's peer.
    Target,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Target => "target",
        }
    }
}

/// An error on one side of the relay.
#[derive(Debug)]
pub struct SideError {
    pub side: Side,
    pub error: io::Error,
}

impl Dir {
    /// (reading side, writing side)
    fn sides(self) -> (Side, Side) {
        match self {
            Dir::Up => (Side::Client, Side::Target),
            Dir::Down => (Side::Target, Side::Client),
        }
    }
}

fn on(side: Side) -> impl Fn(io::Error) -> SideError {
    move |error| SideError { side, error }
}

/// EOF from `from`'s side: pass the half-close on to `w`, unless the other
/// direction has already ended too. Then both sockets are about to be closed,
/// and closing sends the FIN anyway: one syscall fewer per connection.
/// `first` remembers which side sent the first FIN.
fn pass_eof(w: &TcpStream, first: &Cell<Option<Side>>, from: Side) {
    if first.get().is_none() {
        first.set(Some(from));
        let _ = socket2::SockRef::from(w).shutdown(Shutdown::Write);
    }
}

/// A burst that moves this much marks its flow as a bulk flow (for
/// `auto`'s choice and the bulk buffer).
const BULK_MIN: u64 = 64 * 1024;

/// The smallest read of a burst: a slow reader is not served in tinier
/// pieces (and a full writer must see a write fail to be woken, see
/// `room_for`).
const MIN_ROOM: usize = 2048;
/// Less room than this: no splice burst (a pipe cannot give back what the
/// writer did not take; the exact copy can).
const SPLICE_MIN_ROOM: usize = 256 * 1024;

/// How many bytes `w` can take now, as far as its kernel says: its send
/// buffer size less what is queued (`None`: cannot tell, so no limit).
fn room(w: &TcpStream) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let size = socket2::SockRef::from(w).send_buffer_size().ok()?;
        let queued = crate::sys::send_queue(w.as_fd()).ok()?;
        Some(size.saturating_sub(queued))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = w;
        None
    }
}

/// How much `w` can take, for a read of at most `cap` bytes.
enum Room {
    /// Known: read at most this much (never less than [`MIN_ROOM`]), and
    /// exactly (peek, then take out of the socket only what `w` accepted),
    /// so nothing is ever left over in userspace.
    Tight(usize),
    /// Unknown (not Linux): an ordinary read of `cap`.
    Ample,
}

/// There is no "wait until there is room" without a write that finds none:
/// the kernel wakes a writer (EPOLLOUT) only once one of its writes ran out
/// of space. So with little room the burst still writes (a peek's worth);
/// a full socket answers EAGAIN, and that arms the wake-up.
fn room_for(space: Option<usize>, cap: usize) -> Room {
    match space {
        // Always exact where the kernel tells the room: its limit counts
        // buffer overhead on top of the payload the room reports, so even
        // an ordinary read well within the room may not be written whole,
        // and what is left would wait in userspace for a stalled reader.
        Some(r) => Room::Tight(r.max(MIN_ROOM).min(cap)),
        None => Room::Ample,
    }
}

/// One direction of the relay, burst after burst. `done` is shared by both
/// directions: the side whose EOF came first, once one has.
///
/// A burst starts only when `r` has something to read *and* `w` has room:
/// a direction whose receiver reads nothing holds no buffer, whatever its
/// sender does (the bytes wait in the kernel's socket buffers, where TCP's
/// flow control stops the sender). A burst moves one buffer (or pipe) at
/// most, sized to `w`'s room, and gives it back before the flow yields to
/// the worker's other sessions: buffers in use follow the bursts running
/// at this instant, not the flows.
///
/// `Auto` picks the method per burst. A flow starts with `copy`; once a
/// burst has moved all it could (a bulk flow), a burst that begins while
/// another flow is streaming on this worker uses `splice`, and a lone bulk
/// flow copies through the bulk buffer. Measured on loopback
/// (docs/performance.md): with several streams, where the cores are the
/// limit, splice's lower CPU per byte wins 15-30 %; a lone stream is faster
/// copied.
async fn pump(
    r: &TcpStream,
    w: &TcpStream,
    traffic: &Traffic,
    dir: Dir,
    mode: RelayMode,
    done: &Cell<Option<Side>>,
) -> Result<(), SideError> {
    let (r_side, w_side) = dir.sides();
    let mut bulk = false;
    let mut streaming = Streaming::default();
    loop {
        r.readable().await.map_err(on(r_side))?;
        w.writable().await.map_err(on(w_side))?;
        let alone = streaming.others() == 0;
        // Splice only with room to spare: a pipe cannot give back what the
        // writer did not take, the exact copy can.
        // One look at `w`'s room per burst (two syscalls).
        let space = room(w);
        let ample = space.is_none_or(|r| r >= SPLICE_MIN_ROOM);
        let splice = ample
            && match mode {
                RelayMode::Copy => false,
                RelayMode::Splice => true,
                RelayMode::Auto => bulk && !alone,
            };
        // A lone bulk flow copies through the bulk buffer.
        let big = bulk && alone;
        let before = traffic.total();
        // The splice burst is boxed: its state lives only while data moves,
        // not in every session's future (idle ones included).
        #[cfg(target_os = "linux")]
        let end = if splice {
            Box::pin(splice::burst(r, w, traffic, dir, space)).await?
        } else {
            copy_burst(r, w, traffic, dir, big, space).await?
        };
        #[cfg(not(target_os = "linux"))]
        let end = {
            let _ = splice;
            copy_burst(r, w, traffic, dir, big, space).await?
        };
        // A bulk flow: a burst moved a big chunk (a short read of a big
        // queue, or a whole buffer).
        let big_burst = traffic.total() - before >= BULK_MIN;
        bulk |= big_burst;
        match end {
            Burst::Eof => {
                pass_eof(w, done, r_side);
                return Ok(());
            }
            Burst::Drained => streaming.set(big_burst),
            Burst::More => {
                streaming.set(true);
                // The buffer is back in the pool: let the worker's other
                // sessions run before the next chunk (readiness already
                // known does not yield by itself).
                tokio::task::yield_now().await;
            }
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

/// Writes what `w` takes now; returns how much that was.
fn write_now(w: &TcpStream, mut buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while !buf.is_empty() {
        match w.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// A copying burst: one read into a pooled buffer (the bulk one if `big`),
/// at most what `w` has room for, and its write. Where `w`'s room is tight
/// the read is a peek, and only what `w` took is then removed from `r` (the
/// rest stays in `r`'s kernel buffer): a stalled writer leaves nothing
/// behind in userspace. `More` when the read returned all it asked for.
async fn copy_burst(
    r: &TcpStream,
    w: &TcpStream,
    traffic: &Traffic,
    dir: Dir,
    big: bool,
    space: Option<usize>,
) -> Result<Burst, SideError> {
    match copy_once(r, w, traffic, dir, big, space)? {
        (end, None) => Ok(end),
        (end, Some(rest)) => {
            // The kernel took less than its room said (rare with ample
            // room): the rest, in a buffer of its size, the pooled one back.
            // (Boxed: this rare wait's state stays out of every session's.)
            Box::pin(write_all(w, &rest))
                .await
                .map_err(on(dir.sides().1))?;
            count(traffic, dir, rest.len());
            Ok(end)
        }
    }
}

/// The burst itself, without an await: what it ended with, and any bytes
/// read that `w` did not take.
fn copy_once(
    r: &TcpStream,
    w: &TcpStream,
    traffic: &Traffic,
    dir: Dir,
    big: bool,
    space: Option<usize>,
) -> Result<(Burst, Option<Vec<u8>>), SideError> {
    let (r_side, w_side) = dir.sides();
    let _in_burst = InBurst::new();
    #[cfg(test)]
    if big {
        BIG_BURSTS.with(|b| b.set(b.get() + 1));
    }
    let mut buf = PooledBuf::take(big);
    let b = buf.as_mut();
    let (want, exact) = match room_for(space, b.len()) {
        Room::Tight(n) => (n.min(b.len()), true),
        Room::Ample => (b.len(), false),
    };
    let got = if exact {
        peek(r, &mut b[..want])
    } else {
        r.try_read(&mut b[..want])
    };
    let n = match got {
        Ok(0) => return Ok((Burst::Eof, None)),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((Burst::Drained, None)),
        Err(e) => return Err(on(r_side)(e)),
    };
    let written = write_now(w, &b[..n]).map_err(on(w_side))?;
    if exact && written > 0 {
        take_out(r, written).map_err(on(r_side))?;
    }
    count(traffic, dir, written);
    if written < n {
        // `w` is full. With a peek, what it did not take is still in `r`.
        let rest = (!exact).then(|| b[written..n].to_vec());
        return Ok((Burst::Drained, rest));
    }
    if n < want {
        // Short: the receive queue is empty now.
        if cfg!(any(target_os = "linux", target_os = "android")) {
            // Saves the read that would only return EAGAIN.
            drained(r);
        }
        return Ok((Burst::Drained, None));
    }
    // As much as asked for (a full buffer, or all the room `w` had): the
    // sender has more.
    Ok((Burst::More, None))
}

/// Copies what `r` has, leaving it there (Linux: MSG_PEEK; elsewhere an
/// ordinary read, since `room` never reports tight room there).
fn peek(r: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        r.try_io(Interest::READABLE, || crate::sys::peek(r.as_fd(), buf))
    }
    #[cfg(not(target_os = "linux"))]
    r.try_read(buf)
}

/// Removes `n` bytes already peeked from `r`.
fn take_out(r: &TcpStream, n: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let removed = crate::sys::discard(r.as_fd(), n)?;
        if removed != n {
            return Err(io::Error::other(format!(
                "removed {removed} of {n} peeked bytes"
            )));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (r, n);
    Ok(())
}

/// The zero-copy relay: socket -> pipe -> socket, the bytes never leaving
/// the kernel. Pipes come from a per-thread pool and go back to it empty, so
/// an idle session holds none; a splice into the pipe takes at most what the
/// writing socket has room for.
#[cfg(target_os = "linux")]
mod splice {
    use super::{count, on, Burst, Dir, InBurst, SideError, Traffic};
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

    /// A splicing burst: socket -> pipe, then pipe -> other socket until the
    /// pipe is empty. `More` when the pipe was filled as far as asked;
    /// `Drained` when the socket had nothing, or the other socket too
    /// little room (the next burst then copies exactly).
    pub(super) async fn burst(
        r: &TcpStream,
        w: &TcpStream,
        traffic: &Traffic,
        dir: Dir,
        space: Option<usize>,
    ) -> Result<Burst, SideError> {
        let (r_side, w_side) = dir.sides();
        let _in_burst = InBurst::new();
        #[cfg(test)]
        BEGUN.with(|b| b.set(b.get() + 1));
        let p = take().map_err(on(r_side))?;
        // At most a quarter of the room, so that the writer takes the whole
        // pipe (its room counts payload, the kernel's limit counts buffer
        // overhead too).
        let want = match space {
            Some(r) if r < super::SPLICE_MIN_ROOM => {
                give_back(p);
                return Ok(Burst::Drained);
            }
            Some(r) => (r / 4).min(p.cap),
            None => p.cap,
        };
        let filled = r.try_io(Interest::READABLE, || {
            sys::splice(r.as_fd(), p.w.as_fd(), want)
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
                return Err(on(r_side)(e));
            }
        };
        let full = in_pipe == want;
        // Drain the pipe into the other socket. On error the pipe (maybe
        // holding data) is simply closed.
        while in_pipe > 0 {
            w.writable().await.map_err(on(w_side))?;
            match w.try_io(Interest::WRITABLE, || {
                sys::splice(p.r.as_fd(), w.as_fd(), in_pipe)
            }) {
                Ok(n) => {
                    in_pipe -= n;
                    count(traffic, dir, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(on(w_side)(e)),
            }
        }
        give_back(p);
        Ok(if full { Burst::More } else { Burst::Drained })
    }
}

/// Both sockets' kernel counters (bytes acknowledged by each peer, bytes
/// received from each): they move whenever data moves, even while the
/// proxy itself reads and writes nothing (a slow reader taking bytes out of
/// a full send buffer). `None` where the kernel cannot tell.
fn progress(a: &TcpStream, b: &TcpStream) -> Option<[u64; 4]> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let (a1, a2) = crate::sys::tcp_progress(a.as_fd()).ok()?;
        let (b1, b2) = crate::sys::tcp_progress(b.as_fd()).ok()?;
        Some([a1, a2, b1, b2])
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        None
    }
}

/// Resolves once neither socket has made progress for `idle`: nothing
/// relayed by the proxy (`traffic`) and nothing moved in either kernel
/// (see [`progress`]). The kernels are looked at every quarter of `idle`
/// while the proxy is quiet, and a change counts as activity when it is
/// seen, so a session ends between `idle` and 1.25 x `idle` after the last
/// byte moved (looking only when `idle` had run out made it up to twice
/// `idle`: the ACK of the proxy's own last bytes, arriving just after a
/// look, restarted the whole period).
async fn idle_watch(a: &TcpStream, b: &TcpStream, traffic: &Traffic, idle: Duration) {
    let step = (idle / 4).max(Duration::from_millis(1));
    let mut seen = progress(a, b);
    loop {
        let now = Instant::now();
        if now >= traffic.last_activity() + idle {
            return;
        }
        let wake = (traffic.last_activity() + idle).min(now + step);
        tokio::time::sleep_until(wake).await;
        let moved = progress(a, b);
        if moved.is_some() && moved != seen {
            seen = moved;
            traffic.touch();
        }
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed their sending half (FIN each way); `first` sent
    /// the first FIN.
    Closed { first: Side },
    /// Nothing moved either way, in the proxy or in either kernel, for the
    /// idle timeout.
    Idle,
    /// A socket error on one side (a reset, most often).
    Error(SideError),
}

impl RelayEnd {
    /// Whether both connections should end with a reset (everything but a
    /// clean close): see [`AbortGuard`].
    pub fn aborts(&self) -> bool {
        !matches!(self, RelayEnd::Closed { .. })
    }
}

/// While armed, dropping it sets `SO_LINGER` 0 on both sockets, so that
/// their close sends a reset, not a FIN: a relay that did not end cleanly
/// (a reset on one side, the idle timeout, the session stopped at the end
/// of the grace period) must not look complete to either peer. Create it
/// after the sockets (so it drops first) and disarm it on a clean close.
pub struct AbortGuard<'a> {
    sockets: [&'a TcpStream; 2],
    armed: bool,
}

impl<'a> AbortGuard<'a> {
    pub fn new(a: &'a TcpStream, b: &'a TcpStream) -> Self {
        AbortGuard {
            sockets: [a, b],
            armed: true,
        }
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            for s in self.sockets {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

/// Waits until the peer has acknowledged everything queued on `s`, so that
/// the bytes relayed before an abort reach their reader before the reset
/// that would discard them: for as long as the queue keeps shrinking (a
/// slow reader is still reading), giving up only after `stall` with no
/// progress at all.
async fn flush(s: &TcpStream, stall: Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let mut last = usize::MAX;
        let mut since = Instant::now();
        loop {
            let queued = match crate::sys::send_queue(s.as_fd()) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if queued < last {
                last = queued;
                since = Instant::now();
            } else if since.elapsed() >= stall {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (s, stall);
}

/// Before a reset from one side is passed on, the longest the other side's
/// reader may go without taking any of what was relayed to it (and never
/// longer than the idle timeout).
pub const ABORT_FLUSH: Duration = Duration::from_secs(5);

/// First sends `pending` (bytes the client sent before the relay began) to
/// the target, then relays both ways until both directions reach EOF,
/// either side fails, or nothing moves for `idle`. With `client_eof` the
/// client has already half-closed (BIND: it did so before the peer came):
/// the target gets `pending` and then the FIN, and only the other direction
/// is relayed.
///
/// The first EOF is passed on as a half-close (`shutdown(SHUT_WR)`); the
/// second is not: the caller closes both sockets when this returns, and the
/// close sends that FIN. On an error the other side is given the time to
/// take the bytes already relayed to it, for as long as it keeps taking
/// them (stopping after [`ABORT_FLUSH`], or `idle` if shorter, without
/// progress); the caller's [`AbortGuard`] then turns the close into a
/// reset.
pub async fn relay(
    client: &TcpStream,
    target: &TcpStream,
    pending: &[u8],
    client_eof: bool,
    traffic: &Traffic,
    idle: Duration,
    mode: RelayMode,
) -> RelayEnd {
    traffic.touch();
    if !pending.is_empty() {
        if let Err(e) = write_all(target, pending).await {
            return RelayEnd::Error(on(Side::Target)(e));
        }
        traffic.add_up(pending.len());
    }
    let done = Cell::new(None);
    let up = async {
        if client_eof {
            pass_eof(target, &done, Side::Client);
            Ok(())
        } else {
            pump(client, target, traffic, Dir::Up, mode, &done).await
        }
    };
    let both = futures::future::try_join(up, pump(target, client, traffic, Dir::Down, mode, &done));
    let end = tokio::select! {
        r = both => match r {
            Ok(_) => RelayEnd::Closed {
                first: done.get().unwrap_or(Side::Client),
            },
            Err(e) => RelayEnd::Error(e),
        },
        _ = idle_watch(client, target, traffic, idle) => RelayEnd::Idle,
    };
    if let RelayEnd::Error(e) = &end {
        let other = match e.side {
            Side::Client => target,
            Side::Target => client,
        };
        Box::pin(flush(other, ABORT_FLUSH.min(idle))).await;
    }
    end
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

    /// A client with a 4 KiB receive buffer (a slow reader's), and the
    /// proxy's socket facing it.
    async fn slow_reader_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        let c = s.connect(l.local_addr().unwrap()).await.unwrap();
        (c, l.accept().await.unwrap().0)
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
        let mut guard = AbortGuard::new(&proxy_client, &proxy_target);
        let end = relay(
            &proxy_client,
            &proxy_target,
            pending,
            false,
            traffic,
            idle,
            mode,
        )
        .await;
        if !end.aborts() {
            guard.disarm();
        }
        drop(guard);
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

    /// The access log says who closed first: here the target.
    #[tokio::test]
    async fn the_side_that_closes_first_is_named() {
        let (mut client, sockets, mut target) = endpoints().await;
        let traffic = Traffic::default();
        let relay = relay_then_close(
            sockets,
            b"",
            &traffic,
            Duration::from_secs(10),
            RelayMode::Copy,
        );
        let peers = async {
            target.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            client.shutdown().await.unwrap();
            target.read_to_end(&mut rest).await.unwrap();
        };
        let (end, ()) = tokio::join!(relay, peers);
        assert!(
            matches!(
                end,
                RelayEnd::Closed {
                    first: Side::Target
                }
            ),
            "{end:?}"
        );
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
            assert!(
                matches!(
                    end,
                    RelayEnd::Closed {
                        first: Side::Client
                    }
                ),
                "{end:?}"
            );
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
            matches!(end, RelayEnd::Closed { .. } | RelayEnd::Error(_)),
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
        assert!(matches!(end, RelayEnd::Closed { .. }), "{end:?}");
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
            false,
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

    const MODES: [RelayMode; 3] = [RelayMode::Copy, RelayMode::Splice, RelayMode::Auto];

    /// Reads until EOF or error: the bytes, and whether it ended in a reset.
    async fn read_to_end_or_reset(s: &mut TcpStream) -> (Vec<u8>, bool) {
        read_paced(s, Duration::ZERO).await
    }

    /// [`read_to_end_or_reset`], pausing `pause` after each read (a slow
    /// reader).
    async fn read_paced(s: &mut TcpStream, pause: Duration) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                Ok(Ok(0)) => return (got, false),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => return (got, true),
                Ok(Err(e)) => panic!("read failed: {e}"),
                Err(_) => panic!("no end within 10 s (after {} bytes)", got.len()),
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    fn reset(s: TcpStream) {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }

    /// A peer that sends then resets: the other peer gets every byte, then
    /// a reset (not a clean EOF), both ways round, in every mode.
    #[tokio::test]
    async fn a_reset_is_passed_on_after_the_bytes() {
        for mode in MODES {
            for from_target in [true, false] {
                let (mut client, sockets, mut target) = endpoints().await;
                let traffic = Traffic::default();
                let relay = relay_then_close(sockets, b"", &traffic, Duration::from_secs(10), mode);
                let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
                let peers = async {
                    let (sender, receiver) = if from_target {
                        (&mut target, &mut client)
                    } else {
                        (&mut client, &mut target)
                    };
                    sender.write_all(&payload).await.unwrap();
                    // Let the bytes reach the proxy before the reset does.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let sender = std::mem::replace(sender, pair().await.0);
                    reset(sender);
                    read_to_end_or_reset(receiver).await
                };
                let (end, (got, was_reset)) = tokio::join!(relay, peers);
                assert!(
                    got == payload,
                    "{mode:?} from_target={from_target}: {} bytes",
                    got.len()
                );
                assert!(
                    was_reset,
                    "{mode:?} from_target={from_target}: ended in a clean EOF"
                );
                match end {
                    RelayEnd::Error(e) => {
                        let side = if from_target {
                            Side::Target
                        } else {
                            Side::Client
                        };
                        assert_eq!(e.side, side);
                    }
                    other => panic!("{mode:?}: {other:?}"),
                }
            }
        }
    }

    /// A clean close is still a FIN each way (no reset), in every mode.
    #[tokio::test]
    async fn a_clean_close_stays_clean() {
        for mode in MODES {
            let (mut client, sockets, mut target) = endpoints().await;
            let traffic = Traffic::default();
            let relay = relay_then_close(sockets, b"", &traffic, Duration::from_secs(10), mode);
            let peers = async {
                client.write_all(b"request").await.unwrap();
                client.shutdown().await.unwrap();
                let (got, was_reset) = read_to_end_or_reset(&mut target).await;
                assert_eq!((got.as_slice(), was_reset), (&b"request"[..], false));
                target.write_all(b"response").await.unwrap();
                target.shutdown().await.unwrap();
                read_to_end_or_reset(&mut client).await
            };
            let (end, (got, was_reset)) = tokio::join!(relay, peers);
            assert!(matches!(end, RelayEnd::Closed { .. }), "{mode:?}: {end:?}");
            assert_eq!(
                (got.as_slice(), was_reset),
                (&b"response"[..], false),
                "{mode:?}"
            );
        }
    }

    /// A slow but steady reader (a small receive buffer, 2 KiB every 50 ms)
    /// is never idle, whatever the proxy's own writes do; once it stops
    /// reading, the session ends after the idle timeout with a reset on
    /// both sides.
    #[tokio::test]
    async fn idle_means_no_progress_in_the_kernel() {
        for mode in MODES {
            let (mut client, proxy_client) = slow_reader_pair().await;
            let (proxy_target, mut target) = pair().await;
            let traffic = Traffic::default();
            let idle = Duration::from_millis(400);
            let relay = relay_then_close((proxy_client, proxy_target), b"", &traffic, idle, mode);
            let peers = async {
                let sender = async {
                    let chunk = vec![3u8; 64 * 1024];
                    // Keeps every buffer full, until the relay resets it.
                    while target.write_all(&chunk).await.is_ok() {}
                };
                let reader = async {
                    let t0 = Instant::now();
                    let mut chunk = [0u8; 2048];
                    let mut got = 0usize;
                    // Slow and steady for 5 idle timeouts: never cut.
                    while t0.elapsed() < idle * 5 {
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                panic!("{mode:?}: cut after {got} bytes while reading")
                            }
                            Ok(n) => got += n,
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // Then it stops reading: the relay must reset it.
                    tokio::time::sleep(idle * 3).await;
                    let (_, was_reset) = read_to_end_or_reset(&mut client).await;
                    assert!(was_reset, "{mode:?}: a clean EOF after the idle timeout");
                };
                tokio::join!(sender, reader);
            };
            let (end, ()) = tokio::join!(relay, peers);
            assert!(matches!(end, RelayEnd::Idle), "{mode:?}: {end:?}");
        }
    }

    /// A receiver that reads nothing pins no relay buffer, however fast its
    /// sender sends: the bytes wait in the kernel.
    #[tokio::test]
    async fn a_stalled_reader_holds_no_buffer() {
        for mode in MODES {
            let (_client, sockets, mut target) = endpoints().await;
            let traffic = Traffic::default();
            let relay = relay_then_close(sockets, b"", &traffic, Duration::from_secs(30), mode);
            let check = async {
                let chunk = vec![9u8; 1 << 20];
                // Until every buffer on the way is full.
                loop {
                    tokio::select! {
                        r = target.write_all(&chunk) => r.unwrap(),
                        _ = tokio::time::sleep(Duration::from_millis(300)) => break,
                    }
                }
                // Nothing is held once the relay has caught up with the
                // stall (a loaded machine may take a moment).
                let mut held = (1, 1);
                for _ in 0..100 {
                    held = (buffers_in_use(), BURSTS.with(Cell::get));
                    if held == (0, 0) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(held, (0, 0), "{mode:?}: (buffers, bursts) held");
            };
            tokio::select! {
                end = relay => panic!("{mode:?}: relay ended: {end:?}"),
                () = check => {}
            }
        }
    }

    /// Past MAX_IN_USE buffers on one worker, a burst gets a small one.
    #[test]
    fn the_pool_is_capped_with_a_small_fallback() {
        let held: Vec<PooledBuf> = (0..MAX_IN_USE).map(|_| PooledBuf::take(false)).collect();
        assert_eq!(buffers_in_use(), MAX_IN_USE);
        let mut extra = PooledBuf::take(false);
        assert_eq!(extra.as_mut().len(), SMALL_BUF_SIZE);
        drop(extra);
        drop(held);
        assert_eq!(buffers_in_use(), 0);
        let mut again = PooledBuf::take(false);
        assert_eq!(again.as_mut().len(), BUF_SIZE);
    }

    /// A reset passed on waits for a slow reader to take every byte before
    /// it, for as long as it keeps reading (here well past the idle
    /// timeout), in every mode.
    #[tokio::test]
    async fn a_reset_waits_for_a_slow_reader() {
        for mode in MODES {
            let (mut client, proxy_client) = slow_reader_pair().await;
            let (proxy_target, mut target) = pair().await;
            let traffic = Traffic::default();
            let idle = Duration::from_millis(300);
            let relay = relay_then_close((proxy_client, proxy_target), b"", &traffic, idle, mode);
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
            let peers = async {
                let sender = async {
                    target.write_all(&payload).await.unwrap();
                    // Everything handed to the proxy, then the reset.
                    for _ in 0..1000 {
                        use std::os::fd::AsFd;
                        if crate::sys::send_queue(target.as_fd()).unwrap() == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let t = std::mem::replace(&mut target, pair().await.0);
                    reset(t);
                };
                let reader = read_paced(&mut client, Duration::from_millis(20));
                let ((), r) = tokio::join!(sender, reader);
                r
            };
            let (end, (got, was_reset)) = tokio::join!(relay, peers);
            assert!(matches!(end, RelayEnd::Error(_)), "{mode:?}: {end:?}");
            assert_eq!(got.len(), payload.len(), "{mode:?}");
            assert!(got == payload && was_reset, "{mode:?}");
        }
    }
}
