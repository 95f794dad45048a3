//! SOCKS5 wire codec (RFC 1928) and username/password sub-negotiation
//! (RFC 1929). Pure: no I/O.
//!
//! CONTRACT (the types and signatures below are used by the rest of the crate;
//! keep them): every message type has
//! `fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error>` (None =
//! incomplete; on None the caller re-decodes from the start once more bytes
//! have arrived, so decode may consume from `buf` freely) and
//! `fn encode<B: BufMut>(&self, buf: &mut B)`.

use bytes::{Buf, BufMut};
use std::net::SocketAddr;

use crate::protocol::Password;

/// Protocol version byte of RFC 1928.
pub const VERSION: u8 = 0x05;
/// Version byte of the RFC 1929 username/password sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;

/// A destination or bound address: `ATYP | ADDR | PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(SocketAddr),
    /// A domain name (1..=255 bytes, UTF-8) and a port.
    Domain(String, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    NoAuth,
    Gssapi,
    UserPass,
    NoAcceptable,
    Other(u8),
}

/// Client greeting: `VER | NMETHODS | METHODS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<Method>,
}

/// Server's method selection: `VER | METHOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSelection {
    pub method: Method,
}

/// RFC 1929 request: `VER | ULEN | UNAME | PLEN | PASSWD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub username: String,
    pub password: Password,
}

/// RFC 1929 reply: `VER | STATUS` (0x00 = success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReply {
    pub status: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
    Other(u8),
}

/// `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub address: Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    Succeeded,
    GeneralFailure,
    NotAllowed,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    Other(u8),
}

/// `VER | REP | RSV | ATYP | BND.ADDR | BND.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub address: Address,
}

/// UDP ASSOCIATE datagram header: `RSV(2) | FRAG | ATYP | DST.ADDR | DST.PORT`
/// (DATA follows and is not part of this type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    pub frag: u8,
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unsupported SOCKS version {0:#04x}")]
    BadVersion(u8),
    #[error("unsupported RFC 1929 sub-negotiation version {0:#04x}")]
    BadAuthVersion(u8),
    #[error("unsupported address type {0:#04x}")]
    UnknownAddressType(u8),
    #[error("empty domain name")]
    EmptyDomain,
    #[error("field is not valid UTF-8")]
    InvalidUtf8,
    #[error("greeting lists no methods")]
    NoMethods,
}

impl Error {
    /// The reply code a server sends for a request that failed to decode.
    pub fn reply(&self) -> ReplyCode {
        unimplemented!()
    }
}
