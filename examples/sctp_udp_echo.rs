//! SCTP-over-UDP echo server for interoperability tests (tests/usrsctp/).
//!
//! ```text
//! sctp_udp_echo [ADDR] [--count N] [--transport udp|kernel|auto]
//! ```
//!
//! Binds ADDR (default 127.0.0.1:0) and prints `listening on <addr>
//! (<transport>)` on stdout. Every message received is sent back unchanged;
//! the message `bye` is answered with `bye`, after which the server closes
//! the association itself. When the peer closes first, the server closes
//! too. One line per finished association: `association <peer>: <n>
//! messages, close=ok` (or `close=error: ...`). With `--count N` it exits
//! after N associations, with status 1 if any of them did not end cleanly.

use std::net::SocketAddr;

use actor_socks::transport::{Association, Listener, TransportKind};
use tokio::sync::mpsc;

async fn serve(mut a: Association, peer: SocketAddr) -> String {
    let mut n = 0usize;
    let mut server_closes = false;
    loop {
        match a.recv_msg().await {
            Ok(Some(m)) => {
                n += 1;
                if let Err(e) = a.send_msg(&m).await {
                    return format!("association {peer}: {n} messages, close=error: send: {e}");
                }
                if &m[..] == b"bye" {
                    server_closes = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return format!("association {peer}: {n} messages, close=error: recv: {e}"),
        }
    }
    let who = if server_closes { "server" } else { "client" };
    match a.close().await {
        Ok(()) => format!("association {peer}: {n} messages, {who} closed first, close=ok"),
        Err(e) => format!("association {peer}: {n} messages, {who} closed first, close=error: {e}"),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut count: Option<usize> = None;
    let mut kind = TransportKind::Udp;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => count = args.next().and_then(|v| v.parse().ok()),
            "--transport" => {
                kind = match args.next().as_deref() {
                    Some("kernel") => TransportKind::Kernel,
                    Some("auto") => TransportKind::Auto,
                    _ => TransportKind::Udp,
                }
            }
            other => {
                addr = other.parse().map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{other}: {e}"))
                })?
            }
        }
    }
    let mut listener = Listener::bind(addr, kind).await?;
    println!(
        "listening on {} ({})",
        listener.local_addr()?,
        listener.transport()
    );
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut accepted = 0usize;
    let mut finished = 0usize;
    let mut failures = 0usize;
    loop {
        tokio::select! {
            r = listener.accept(), if count.is_none_or(|c| accepted < c) => {
                let (a, peer) = r?;
                accepted += 1;
                let tx = done_tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(serve(a, peer).await);
                });
            }
            Some(line) = done_rx.recv() => {
                println!("{line}");
                finished += 1;
                if !line.ends_with("close=ok") {
                    failures += 1;
                }
                if count.is_some_and(|c| finished >= c) {
                    break;
                }
            }
        }
    }
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
