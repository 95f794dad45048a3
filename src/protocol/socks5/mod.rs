//! SOCKS5 wire codec (RFC 1928) and username/password sub-negotiation
//! (RFC 1929). Pure: no I/O.
//!
//! CONTRACT (the types and signatures below are used by the rest of the crate;
//! keep them): every message type has
//! `fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error>` (None =
//! incomplete; on None the caller re-decodes from the start once more bytes
//! have arrived, so decode may consume from `buf` freely) and
//! `fn encode<B: BufMut>(&self, buf: &mut B)`.
//!
//! Every decoder checks `remaining()` before each read, so no input makes it
//! panic; truncated input is `Ok(None)`, never an error. Errors are reported
//! as early as the offending byte is seen (e.g. a bad `VER` is an error even
//! if the rest of the message has not arrived yet). [`try_decode`] wraps a
//! decoder over a [`BytesMut`] so that incomplete input is left in place.
//!
//! Every message type also has `encoded_len(&self) -> usize`, the exact
//! number of bytes `encode` writes.
//!
//! Each wire type's documentation carries its RFC diagram; the wire
//! constants are in one table below.

use bytes::{Buf, BufMut, BytesMut};
use std::net::SocketAddr;

use crate::protocol::{CredentialError, Secret, UserName};

mod address;
mod handshake;
mod request;
#[cfg(test)]
mod tests;
mod udp;

/// Protocol version byte of RFC 1928.
pub const VERSION: u8 = 0x05;
/// Version byte of the RFC 1929 username/password sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;

// ---------------------------------------------------------------------------
// Wire constants (RFC 1928 sections 3, 4, 5, 6, 7; RFC 1929 section 2).
// ---------------------------------------------------------------------------

/// `ATYP` IP V4 address (4 octets).
pub const ATYP_IPV4: u8 = 0x01;
/// `ATYP` fully-qualified domain name (1 length octet, then the name).
pub const ATYP_DOMAIN: u8 = 0x03;
/// `ATYP` IP V6 address (16 octets).
pub const ATYP_IPV6: u8 = 0x04;

/// `METHOD` NO AUTHENTICATION REQUIRED.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// `METHOD` GSSAPI.
pub const METHOD_GSSAPI: u8 = 0x01;
/// `METHOD` USERNAME/PASSWORD (RFC 1929).
pub const METHOD_USER_PASS: u8 = 0x02;
/// `METHOD` NO ACCEPTABLE METHODS.
pub const METHOD_NO_ACCEPTABLE: u8 = 0xFF;

/// `CMD` CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// `CMD` BIND.
pub const CMD_BIND: u8 = 0x02;
/// `CMD` UDP ASSOCIATE.
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// `REP` succeeded.
pub const REP_SUCCEEDED: u8 = 0x00;
/// `REP` general SOCKS server failure.
pub const REP_GENERAL_FAILURE: u8 = 0x01;
/// `REP` connection not allowed by ruleset.
pub const REP_NOT_ALLOWED: u8 = 0x02;
/// `REP` network unreachable.
pub const REP_NETWORK_UNREACHABLE: u8 = 0x03;
/// `REP` host unreachable.
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
/// `REP` connection refused.
pub const REP_CONNECTION_REFUSED: u8 = 0x05;
/// `REP` TTL expired.
pub const REP_TTL_EXPIRED: u8 = 0x06;
/// `REP` command not supported.
pub const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
/// `REP` address type not supported.
pub const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// RFC 1929 `STATUS` success (any other value is a failure).
pub const AUTH_STATUS_SUCCESS: u8 = 0x00;
/// RFC 1929 `STATUS` failure (the value this crate sends).
pub const AUTH_STATUS_FAILURE: u8 = 0x01;

/// The reserved byte(s) as this crate writes them (ignored when read).
pub const RSV: u8 = 0x00;

/// Longest domain name, username or password: their length is one octet.
pub const MAX_FIELD_LEN: usize = 255;

// ---------------------------------------------------------------------------
// Contract types.
// ---------------------------------------------------------------------------

/// A destination or bound address: `ATYP | ADDR | PORT`.
///
/// ```text
/// +------+----------+----------+
/// | ATYP |   ADDR   |   PORT   |
/// +------+----------+----------+
/// |  1   | Variable |    2     |
/// +------+----------+----------+
///   X'01' IPv4: ADDR is 4 octets
///   X'03' domain: ADDR is LEN(1) then LEN octets of name, LEN in 1..=255
///   X'04' IPv6: ADDR is 16 octets
/// PORT is in network byte order.
/// ```
///
/// IPv6 flow info and scope id are not on the wire: they decode as 0.
/// A `Domain` must be 1..=255 bytes; build it with [`Address::domain`] to have
/// that checked (encoding an out-of-range domain is a bug: see
/// [`Address::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(SocketAddr),
    /// A domain name (1..=255 bytes, UTF-8) and a port.
    Domain(String, u16),
}

/// An authentication method (`METHOD` byte). Unknown values are `Other(b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    NoAuth,
    Gssapi,
    UserPass,
    NoAcceptable,
    Other(u8),
}

/// Client greeting: `VER | NMETHODS | METHODS`.
///
/// ```text
/// +----+----------+----------+
/// |VER | NMETHODS | METHODS  |
/// +----+----------+----------+
/// | 1  |    1     | 1 to 255 |
/// +----+----------+----------+
/// ```
///
/// Decoding: `VER` != 5 is [`Error::BadVersion`], `NMETHODS` = 0 is
/// [`Error::NoMethods`]. Duplicate methods are kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<Method>,
}

/// Server's method selection: `VER | METHOD`.
///
/// ```text
/// +----+--------+
/// |VER | METHOD |
/// +----+--------+
/// | 1  |   1    |
/// +----+--------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSelection {
    pub method: Method,
}

/// RFC 1929 request: `VER | ULEN | UNAME | PLEN | PASSWD`.
///
/// ```text
/// +----+------+----------+------+----------+
/// |VER | ULEN |  UNAME   | PLEN |  PASSWD  |
/// +----+------+----------+------+----------+
/// | 1  |  1   | 1 to 255 |  1   | 1 to 255 |
/// +----+------+----------+------+----------+
/// ```
///
/// Decoding: `VER` != 1 is [`Error::BadAuthVersion`]; a name or password
/// outside the credential rules ([`crate::protocol::credentials`]: empty,
/// not UTF-8, a control character or `:` in the name, CR/LF/NUL in the
/// password) is [`Error::Credential`], once the whole message is in: the
/// server answers it with an auth failure reply instead of dropping the
/// connection without a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub username: UserName,
    pub password: Secret,
}

/// RFC 1929 reply: `VER | STATUS` (0x00 = success).
///
/// ```text
/// +----+--------+
/// |VER | STATUS |
/// +----+--------+
/// | 1  |   1    |
/// +----+--------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReply {
    pub status: u8,
}

/// A request command (`CMD` byte). Unknown values are `Other(b)`, so that the
/// server can answer [`ReplyCode::CommandNotSupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
    Other(u8),
}

/// `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`.
///
/// ```text
/// +----+-----+-------+------+----------+----------+
/// |VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
/// +----+-----+-------+------+----------+----------+
/// | 1  |  1  | X'00' |  1   | Variable |    2     |
/// +----+-----+-------+------+----------+----------+
/// ```
///
/// Decoding: `VER` != 5 is [`Error::BadVersion`]; `RSV` is ignored (lenient);
/// an unknown `CMD` decodes as [`Command::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub address: Address,
}

/// A reply code (`REP` byte). Unknown values are `Other(b)`.
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
///
/// ```text
/// +----+-----+-------+------+----------+----------+
/// |VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
/// +----+-----+-------+------+----------+----------+
/// | 1  |  1  | X'00' |  1   | Variable |    2     |
/// +----+-----+-------+------+----------+----------+
/// ```
///
/// Decoding: `VER` != 5 is [`Error::BadVersion`]; `RSV` is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub address: Address,
}

/// UDP ASSOCIATE datagram header: `RSV(2) | FRAG | ATYP | DST.ADDR | DST.PORT`
/// (DATA follows and is not part of this type).
///
/// ```text
/// +----+------+------+----------+----------+----------+
/// |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
/// +----+------+------+----------+----------+----------+
/// | 2  |  1   |  1   | Variable |    2     | Variable |
/// +----+------+------+----------+----------+----------+
/// ```
///
/// Decoding leaves `buf` positioned at DATA. `RSV` is ignored. A datagram is
/// always whole, so for UDP `Ok(None)` means "truncated datagram: drop it".
/// `FRAG` != 0 decodes fine; a server that does not reassemble drops it
/// (RFC 1928 section 7).
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
    /// Only from [`Address::domain`] / [`Address::validate`]: never from a
    /// decoder (the wire cannot express it).
    #[error("domain name is {0} bytes long (at most 255)")]
    DomainTooLong(usize),
    /// RFC 1929: a user name or password outside the credential rules.
    #[error("{0}")]
    Credential(#[from] CredentialError),
}

impl Error {
    /// The reply code a server sends for a request that failed to decode.
    ///
    /// - [`Error::UnknownAddressType`] -> [`ReplyCode::AddressTypeNotSupported`]
    ///   (X'08', as RFC 1928 section 6 asks).
    /// - everything else -> [`ReplyCode::GeneralFailure`] (X'01'). An empty or
    ///   non-UTF-8 domain is a malformed request rather than an unreachable
    ///   host, so it is not mapped to `HostUnreachable`. For `BadVersion` a
    ///   server should usually just close: the peer does not speak SOCKS5.
    pub fn reply(&self) -> ReplyCode {
        match self {
            Error::UnknownAddressType(_) => ReplyCode::AddressTypeNotSupported,
            Error::BadVersion(_)
            | Error::BadAuthVersion(_)
            | Error::EmptyDomain
            | Error::InvalidUtf8
            | Error::NoMethods
            | Error::DomainTooLong(_)
            | Error::Credential(_) => ReplyCode::GeneralFailure,
        }
    }
}

// ---------------------------------------------------------------------------
// Byte <-> enum conversions.
// ---------------------------------------------------------------------------

impl From<u8> for Method {
    fn from(b: u8) -> Self {
        match b {
            METHOD_NO_AUTH => Method::NoAuth,
            METHOD_GSSAPI => Method::Gssapi,
            METHOD_USER_PASS => Method::UserPass,
            METHOD_NO_ACCEPTABLE => Method::NoAcceptable,
            other => Method::Other(other),
        }
    }
}

impl From<Method> for u8 {
    fn from(m: Method) -> u8 {
        match m {
            Method::NoAuth => METHOD_NO_AUTH,
            Method::Gssapi => METHOD_GSSAPI,
            Method::UserPass => METHOD_USER_PASS,
            Method::NoAcceptable => METHOD_NO_ACCEPTABLE,
            Method::Other(b) => b,
        }
    }
}

impl From<u8> for Command {
    fn from(b: u8) -> Self {
        match b {
            CMD_CONNECT => Command::Connect,
            CMD_BIND => Command::Bind,
            CMD_UDP_ASSOCIATE => Command::UdpAssociate,
            other => Command::Other(other),
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        match c {
            Command::Connect => CMD_CONNECT,
            Command::Bind => CMD_BIND,
            Command::UdpAssociate => CMD_UDP_ASSOCIATE,
            Command::Other(b) => b,
        }
    }
}

impl From<u8> for ReplyCode {
    fn from(b: u8) -> Self {
        match b {
            REP_SUCCEEDED => ReplyCode::Succeeded,
            REP_GENERAL_FAILURE => ReplyCode::GeneralFailure,
            REP_NOT_ALLOWED => ReplyCode::NotAllowed,
            REP_NETWORK_UNREACHABLE => ReplyCode::NetworkUnreachable,
            REP_HOST_UNREACHABLE => ReplyCode::HostUnreachable,
            REP_CONNECTION_REFUSED => ReplyCode::ConnectionRefused,
            REP_TTL_EXPIRED => ReplyCode::TtlExpired,
            REP_COMMAND_NOT_SUPPORTED => ReplyCode::CommandNotSupported,
            REP_ADDRESS_TYPE_NOT_SUPPORTED => ReplyCode::AddressTypeNotSupported,
            other => ReplyCode::Other(other),
        }
    }
}

impl From<ReplyCode> for u8 {
    fn from(c: ReplyCode) -> u8 {
        match c {
            ReplyCode::Succeeded => REP_SUCCEEDED,
            ReplyCode::GeneralFailure => REP_GENERAL_FAILURE,
            ReplyCode::NotAllowed => REP_NOT_ALLOWED,
            ReplyCode::NetworkUnreachable => REP_NETWORK_UNREACHABLE,
            ReplyCode::HostUnreachable => REP_HOST_UNREACHABLE,
            ReplyCode::ConnectionRefused => REP_CONNECTION_REFUSED,
            ReplyCode::TtlExpired => REP_TTL_EXPIRED,
            ReplyCode::CommandNotSupported => REP_COMMAND_NOT_SUPPORTED,
            ReplyCode::AddressTypeNotSupported => REP_ADDRESS_TYPE_NOT_SUPPORTED,
            ReplyCode::Other(b) => b,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// The codec shape every message type shares, as a trait, for generic code
/// (e.g. [`decode_from`]). Each method delegates to the inherent one of the
/// same name, so `Greeting::decode(..)` works without importing this trait.
pub trait Message: Sized {
    /// See the type's inherent `decode`.
    fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error>;
    /// See the type's inherent `encode`.
    fn encode<B: BufMut>(&self, buf: &mut B);
    /// The exact number of bytes `encode` writes.
    fn encoded_len(&self) -> usize;
}

macro_rules! impl_message {
    ($($ty:ty),* $(,)?) => {$(
        impl Message for $ty {
            fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
                <$ty>::decode(buf)
            }
            fn encode<B: BufMut>(&self, buf: &mut B) {
                <$ty>::encode(self, buf)
            }
            fn encoded_len(&self) -> usize {
                <$ty>::encoded_len(self)
            }
        }
    )*};
}

impl_message!(
    Address,
    Greeting,
    MethodSelection,
    AuthRequest,
    AuthReply,
    Request,
    Reply,
    UdpHeader,
);

/// Runs `decode` over a slice view of `buf` and, only on `Ok(Some(_))`,
/// advances `buf` past the bytes the decoder used. On `Ok(None)` (incomplete)
/// and on `Err` `buf` is left untouched, so the caller can read more and call
/// again.
///
/// `decode` must accept a slice of any lifetime, so pass a closure
/// (`|b| Greeting::decode(b)`) rather than the path `Greeting::decode`, or use
/// [`decode_from`].
///
/// ```
/// use actor_socks::protocol::socks5::{try_decode, Greeting, Method};
/// let mut buf = bytes::BytesMut::from(&[0x05, 0x01][..]);
/// assert_eq!(try_decode(&mut buf, |b| Greeting::decode(b)), Ok(None));
/// assert_eq!(buf.len(), 2);
/// buf.extend_from_slice(&[0x00, 0xAA]);
/// let g = try_decode(&mut buf, |b| Greeting::decode(b)).unwrap().unwrap();
/// assert_eq!(g.methods, vec![Method::NoAuth]);
/// assert_eq!(&buf[..], &[0xAA]);
/// ```
pub fn try_decode<T, F>(buf: &mut BytesMut, decode: F) -> Result<Option<T>, Error>
where
    F: FnOnce(&mut &[u8]) -> Result<Option<T>, Error>,
{
    let mut view: &[u8] = &buf[..];
    match decode(&mut view)? {
        Some(value) => {
            let used = buf.len() - view.len();
            buf.advance(used);
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// [`try_decode`] for a [`Message`] type: `decode_from::<Request>(&mut buf)`.
pub fn decode_from<T: Message>(buf: &mut BytesMut) -> Result<Option<T>, Error> {
    try_decode(buf, |b| T::decode(b))
}

/// Reads a one-octet-length-prefixed byte string body of `len` bytes as UTF-8.
/// The caller has checked `buf.remaining() >= len`.
fn get_utf8<B: Buf>(buf: &mut B, len: usize) -> Result<String, Error> {
    debug_assert!(buf.remaining() >= len);
    let mut bytes = vec![0u8; len];
    buf.copy_to_slice(&mut bytes);
    String::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)
}

/// Writes `LEN | bytes` for a field whose length is one octet. Longer input is
/// a caller bug (debug assertion); release builds write the first 255 bytes,
/// so the stream stays well-formed.
fn put_short_field<B: BufMut>(buf: &mut B, bytes: &[u8]) {
    debug_assert!(
        bytes.len() <= MAX_FIELD_LEN,
        "SOCKS5 field longer than 255 bytes"
    );
    let bytes = &bytes[..bytes.len().min(MAX_FIELD_LEN)];
    buf.put_u8(bytes.len() as u8);
    buf.put_slice(bytes);
}

/// Encoded size of a `LEN | bytes` field (matching [`put_short_field`]).
fn short_field_len(bytes: &[u8]) -> usize {
    1 + bytes.len().min(MAX_FIELD_LEN)
}
