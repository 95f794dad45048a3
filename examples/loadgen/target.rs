//! The in-process targets the proxied connections CONNECT to.
//!
//! - `Bulk`: the client first sends a 9-byte header, a direction byte
//!   (`b'U'` or `b'D'`) and a big-endian u64 byte count B. For `U` the target
//!   reads exactly B bytes (adding them to a shared counter as they arrive),
//!   then answers with the 8-byte count it received. For `D` it writes B bytes.
//!   Either way it then waits for the client to close. Nothing relies on
//!   TCP half-close, which not every proxy relays.
//! - `Echo` (idle): writes back whatever it reads, until EOF or until
//!   [`Shared::close_all`], when it closes first.
//! - `EchoOnce` (connrate): echoes the first read and closes, like a server
//!   answering one request.
//!
//! In `EchoOnce` and at the end of `idle` the target closes first, so the
//! TIME_WAIT state of the proxy-to-target leg sits on the target's listening
//! port instead of consuming the proxy's ephemeral ports (see
//! docs/performance.md).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::sys;

pub const CHUNK: usize = 256 * 1024;
/// How long a target waits for the client's close after its work is done.
const LINGER: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bulk,
    Echo,
    EchoOnce,
    /// Sends without end (until `close_all`), reading nothing.
    Flood,
}

/// State shared between the targets and the client side.
pub struct Shared {
    /// Bytes the bulk target has received (the far end of `up`).
    pub received: AtomicU64,
    close: watch::Sender<bool>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            received: AtomicU64::new(0),
            close: watch::channel(false).0,
        }
    }
}

impl Shared {
    /// Makes every `Echo` connection close from the target side.
    pub fn close_all(&self) {
        self.close.send_replace(true);
    }
}

/// Starts `ports` listeners of `kind` on 127.0.0.1 and returns their
/// addresses. Several ports let connection-rate runs spread the proxy's
/// outbound 4-tuples (see docs/performance.md).
pub fn start(kind: Kind, ports: usize, shared: Arc<Shared>) -> std::io::Result<Vec<SocketAddrV4>> {
    let mut addrs = Vec::new();
    for _ in 0..ports.max(1) {
        let (l, a) = sys::listen(Ipv4Addr::LOCALHOST)?;
        addrs.push(a);
        tokio::spawn(accept_loop(l, kind, shared.clone()));
    }
    Ok(addrs)
}

async fn accept_loop(l: TcpListener, kind: Kind, shared: Arc<Shared>) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                let c = shared.clone();
                let close = shared.close.subscribe();
                tokio::spawn(async move {
                    let _ = match kind {
                        Kind::Bulk => bulk(s, &c).await,
                        Kind::Echo => echo(s, close).await,
                        Kind::EchoOnce => echo_once(s).await,
                        Kind::Flood => flood(s, close).await,
                    };
                });
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn bulk(mut s: TcpStream, c: &Shared) -> std::io::Result<()> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let n = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
    let mut buf = vec![0u8; CHUNK];
    match head[0] {
        b'U' => {
            let mut got = 0u64;
            while got < n {
                let want = (n - got).min(CHUNK as u64) as usize;
                let r = s.read(&mut buf[..want]).await?;
                if r == 0 {
                    break;
                }
                got += r as u64;
                c.received.fetch_add(r as u64, Ordering::Relaxed);
            }
            s.write_all(&got.to_be_bytes()).await?;
        }
        b'D' => {
            fill(&mut buf);
            let mut left = n;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
        }
        _ => return Ok(()),
    }
    drain_until_close(&mut s, &mut buf).await;
    Ok(())
}

async fn echo(mut s: TcpStream, mut close: watch::Receiver<bool>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 512];
    loop {
        if *close.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            r = s.read(&mut buf) => {
                let r = r?;
                if r == 0 {
                    return Ok(());
                }
                s.write_all(&buf[..r]).await?;
            }
            _ = close.changed() => {}
        }
    }
}

/// Writes as fast as the connection takes, until told to close: a sender
/// whose receiver has stopped reading ends up blocked in `write_all`.
async fn flood(mut s: TcpStream, mut close: watch::Receiver<bool>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    fill(&mut buf);
    loop {
        if *close.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            r = s.write_all(&buf) => r?,
            _ = close.changed() => {}
        }
    }
}

async fn echo_once(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    let r = s.read(&mut buf).await?;
    s.write_all(&buf[..r]).await?;
    // Dropping `s` closes it: the target is the active closer.
    Ok(())
}

async fn drain_until_close(s: &mut TcpStream, buf: &mut [u8]) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(r) = s.read(buf).await {
            if r == 0 {
                break;
            }
        }
    })
    .await;
}

/// A non-constant payload, so nothing along the way can get away with
/// special-casing zero pages.
pub fn fill(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8);
    }
}
