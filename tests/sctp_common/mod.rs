//! Helpers shared by the transport tests (SCTP over UDP and kernel SCTP).
#![allow(dead_code)]

use actor_socks::transport::Listener;

/// A recognisable payload of `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Echo server: for each association, replies to every message with the
/// same bytes, then closes when the peer closes.
pub fn spawn_echo(mut listener: Listener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut a, _peer)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                while let Ok(Some(m)) = a.recv_msg().await {
                    if a.send_msg(&m).await.is_err() {
                        return;
                    }
                }
                let _ = a.close().await;
            });
        }
    })
}
