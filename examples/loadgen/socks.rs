//! A minimal SOCKS5 client: greeting (NO AUTH or USER/PASS, RFC 1928/1929)
//! and CONNECT to an IPv4 address. Written here on purpose, so the load
//! generator does not share code with the proxy it measures.

use std::net::SocketAddrV4;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Fail;

/// Username/password for RFC 1929.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: String,
    pub pass: String,
}

impl std::str::FromStr for Auth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, pass) = s
            .split_once(':')
            .ok_or_else(|| "expected NAME:PASS".to_string())?;
        if user.is_empty() || user.len() > 255 || pass.is_empty() || pass.len() > 255 {
            return Err("NAME and PASS must each be 1..=255 bytes".into());
        }
        Ok(Auth {
            user: user.into(),
            pass: pass.into(),
        })
    }
}

const VER: u8 = 5;
const METHOD_NONE: u8 = 0x00;
const METHOD_USERPASS: u8 = 0x02;
const METHOD_REJECT: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_V4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_V6: u8 = 0x04;

fn io(stage: &'static str) -> impl Fn(std::io::Error) -> Fail {
    move |e| Fail::new(stage, e.to_string())
}

/// Runs greeting, optional authentication and CONNECT on `s`. On success the
/// stream is relaying to `target`.
pub async fn connect(
    s: &mut TcpStream,
    auth: Option<&Auth>,
    target: SocketAddrV4,
) -> Result<(), Fail> {
    // Greeting: offer exactly the method we intend to use.
    let method = if auth.is_some() {
        METHOD_USERPASS
    } else {
        METHOD_NONE
    };
    s.write_all(&[VER, 1, method])
        .await
        .map_err(io("greeting"))?;
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await.map_err(io("greeting"))?;
    if two[0] != VER {
        return Err(Fail::new("greeting", format!("bad version {}", two[0])));
    }
    if two[1] == METHOD_REJECT {
        return Err(Fail::new("greeting", "no acceptable method"));
    }
    if two[1] != method {
        return Err(Fail::new(
            "greeting",
            format!("server chose method {:#x}, offered {method:#x}", two[1]),
        ));
    }

    if let Some(a) = auth {
        let mut msg = Vec::with_capacity(3 + a.user.len() + a.pass.len());
        msg.push(1);
        msg.push(a.user.len() as u8);
        msg.extend_from_slice(a.user.as_bytes());
        msg.push(a.pass.len() as u8);
        msg.extend_from_slice(a.pass.as_bytes());
        s.write_all(&msg).await.map_err(io("auth"))?;
        s.read_exact(&mut two).await.map_err(io("auth"))?;
        if two[0] != 1 {
            return Err(Fail::new(
                "auth",
                format!("bad subnegotiation version {}", two[0]),
            ));
        }
        if two[1] != 0 {
            return Err(Fail::new("auth", format!("rejected (status {})", two[1])));
        }
    }

    let mut req = [0u8; 10];
    req[..4].copy_from_slice(&[VER, CMD_CONNECT, 0, ATYP_V4]);
    req[4..8].copy_from_slice(&target.ip().octets());
    req[8..].copy_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await.map_err(io("request"))?;

    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io("reply"))?;
    if head[0] != VER {
        return Err(Fail::new("reply", format!("bad version {}", head[0])));
    }
    if head[1] != 0 {
        return Err(Fail::new(
            "reply",
            format!("CONNECT failed, REP={}", head[1]),
        ));
    }
    // Consume BND.ADDR and BND.PORT.
    let rest = match head[3] {
        ATYP_V4 => 4 + 2,
        ATYP_V6 => 16 + 2,
        ATYP_DOMAIN => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await.map_err(io("reply"))?;
            n[0] as usize + 2
        }
        t => return Err(Fail::new("reply", format!("bad ATYP {t}"))),
    };
    let mut buf = [0u8; 18];
    s.read_exact(&mut buf[..rest]).await.map_err(io("reply"))?;
    Ok(())
}
