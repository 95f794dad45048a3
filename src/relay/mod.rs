//! The mechanisms behind a session's three commands: resolving and
//! connecting to a target ([`connect`]), moving bytes both ways while
//! counting them ([`copy`]), the BIND listening socket ([`bind`]) and the UDP
//! ASSOCIATE relay ([`udp`]).

pub mod bind;
pub mod connect;
pub mod copy;
pub mod udp;

use std::io;
use tokio::net::TcpStream;

/// Resolves when the peer closes its side of `stream` (EOF, or a read error
/// that ends the connection); whatever it sends meanwhile is read and
/// ignored. A BIND waiting for its peer and a UDP association both watch
/// their control connection with it.
pub async fn wait_closed(stream: &TcpStream) -> io::Result<()> {
    let mut scratch = [0u8; 256];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Ok(()),
        }
    }
}
