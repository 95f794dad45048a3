//! `ATYP | ADDR | PORT`.

use bytes::{Buf, BufMut};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{
    get_utf8, put_short_field, short_field_len, Address, Error, ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6,
    MAX_FIELD_LEN,
};

impl Address {
    /// A checked domain address: the name must be 1..=255 bytes.
    pub fn domain(name: impl Into<String>, port: u16) -> Result<Address, Error> {
        let address = Address::Domain(name.into(), port);
        address.validate()?;
        Ok(address)
    }

    /// `0.0.0.0:0`, the bound address of failure replies.
    pub fn unspecified_v4() -> Address {
        Address::Ip(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// Checks that the address can be encoded (a domain of 1..=255 bytes).
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Address::Ip(_) => Ok(()),
            Address::Domain(name, _) if name.is_empty() => Err(Error::EmptyDomain),
            Address::Domain(name, _) if name.len() > MAX_FIELD_LEN => {
                Err(Error::DomainTooLong(name.len()))
            }
            Address::Domain(..) => Ok(()),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(sa) => sa.port(),
            Address::Domain(_, port) => *port,
        }
    }

    /// The socket address, if this is not a domain name.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(sa) => Some(*sa),
            Address::Domain(..) => None,
        }
    }

    /// Decodes `ATYP | ADDR | PORT`. An unknown `ATYP` is
    /// [`Error::UnknownAddressType`]; a domain `LEN` of 0 is
    /// [`Error::EmptyDomain`]; a non-UTF-8 name is [`Error::InvalidUtf8`].
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 1 {
            return Ok(None);
        }
        match buf.get_u8() {
            ATYP_IPV4 => {
                if buf.remaining() < 4 + 2 {
                    return Ok(None);
                }
                let ip = Ipv4Addr::from(buf.get_u32());
                let port = buf.get_u16();
                Ok(Some(Address::Ip(SocketAddr::V4(SocketAddrV4::new(
                    ip, port,
                )))))
            }
            ATYP_IPV6 => {
                if buf.remaining() < 16 + 2 {
                    return Ok(None);
                }
                let ip = Ipv6Addr::from(buf.get_u128());
                let port = buf.get_u16();
                Ok(Some(Address::Ip(SocketAddr::V6(SocketAddrV6::new(
                    ip, port, 0, 0,
                )))))
            }
            ATYP_DOMAIN => {
                if buf.remaining() < 1 {
                    return Ok(None);
                }
                let len = usize::from(buf.get_u8());
                if len == 0 {
                    return Err(Error::EmptyDomain);
                }
                if buf.remaining() < len + 2 {
                    return Ok(None);
                }
                let name = get_utf8(buf, len)?;
                let port = buf.get_u16();
                Ok(Some(Address::Domain(name, port)))
            }
            other => Err(Error::UnknownAddressType(other)),
        }
    }

    /// Encodes `ATYP | ADDR | PORT`. IPv6 flow info and scope id are dropped.
    ///
    /// A domain outside 1..=255 bytes (see [`Address::validate`]) is a caller
    /// bug: debug builds panic; release builds write the first 255 bytes (an
    /// empty one writes `LEN` 0, which peers reject), so the byte stream stays
    /// well-formed either way.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        match self {
            Address::Ip(SocketAddr::V4(sa)) => {
                buf.put_u8(ATYP_IPV4);
                buf.put_slice(&sa.ip().octets());
                buf.put_u16(sa.port());
            }
            Address::Ip(SocketAddr::V6(sa)) => {
                buf.put_u8(ATYP_IPV6);
                buf.put_slice(&sa.ip().octets());
                buf.put_u16(sa.port());
            }
            Address::Domain(name, port) => {
                debug_assert!(!name.is_empty(), "SOCKS5 domain name is empty");
                buf.put_u8(ATYP_DOMAIN);
                put_short_field(buf, name.as_bytes());
                buf.put_u16(*port);
            }
        }
    }

    /// The number of bytes [`Address::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Address::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            Address::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            Address::Domain(name, _) => 1 + short_field_len(name.as_bytes()) + 2,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(sa: SocketAddr) -> Self {
        Address::Ip(sa)
    }
}

/// `host:port`, IPv6 in brackets (`[::1]:1080`).
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(sa) => write!(f, "{sa}"),
            Address::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}
