//! Byte-literal tests for every message, both directions.

use super::*;
use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

/// `bytes` decodes to `value` consuming everything, `value` encodes to
/// exactly `bytes` (and `encoded_len` agrees), every strict prefix decodes to
/// `Ok(None)`.
macro_rules! both_ways {
    ($ty:ty, $bytes:expr, $value:expr) => {{
        let bytes: &[u8] = &$bytes;
        let value: $ty = $value;
        let mut view = bytes;
        assert_eq!(<$ty>::decode(&mut view), Ok(Some(value.clone())));
        assert!(view.is_empty(), "decoder left {} bytes", view.len());
        let mut out = Vec::new();
        value.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(value.encoded_len(), bytes.len());
        assert_prefixes_incomplete(bytes, |b| <$ty>::decode(b));
    }};
}

fn assert_prefixes_incomplete<T: Debug>(bytes: &[u8], decode: fn(&mut &[u8]) -> DecodeResult<T>) {
    for n in 0..bytes.len() {
        let mut view = &bytes[..n];
        match decode(&mut view) {
            Ok(None) => {}
            other => panic!("prefix of {n} bytes of {bytes:02x?}: {other:?}"),
        }
    }
}

type DecodeResult<T> = Result<Option<T>, Error>;
type Dec<T> = fn(&mut &[u8]) -> DecodeResult<T>;

fn decode_err<T: Debug>(bytes: &[u8], decode: fn(&mut &[u8]) -> DecodeResult<T>) -> Error {
    let mut view = bytes;
    match decode(&mut view) {
        Err(e) => e,
        other => panic!("{bytes:02x?} decoded to {other:?}, expected an error"),
    }
}

fn v4(a: [u8; 4], port: u16) -> Address {
    Address::Ip(SocketAddr::from((Ipv4Addr::from(a), port)))
}

fn v6(ip: Ipv6Addr, port: u16) -> Address {
    Address::Ip(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
}

// --- Address ---------------------------------------------------------------

#[test]
fn address_ipv4() {
    both_ways!(
        Address,
        [0x01, 127, 0, 0, 1, 0x04, 0x38],
        v4([127, 0, 0, 1], 1080)
    );
}

#[test]
fn address_ipv6() {
    let mut bytes = vec![0x04];
    bytes.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    bytes.extend_from_slice(&[0x00, 0x50]);
    both_ways!(Address, bytes, v6(Ipv6Addr::LOCALHOST, 80));
    let ip: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
    let mut bytes = vec![0x04];
    bytes.extend_from_slice(&ip.octets());
    bytes.extend_from_slice(&[0xFF, 0xFF]);
    both_ways!(Address, bytes, v6(ip, 65535));
}

#[test]
fn address_domain() {
    both_ways!(
        Address,
        [0x03, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 0x01, 0xBB],
        Address::Domain("example.com".into(), 443)
    );
    let long = "a".repeat(255);
    let mut bytes = vec![0x03, 255];
    bytes.extend_from_slice(long.as_bytes());
    bytes.extend_from_slice(&[0, 1]);
    both_ways!(Address, bytes, Address::domain(long.clone(), 1).unwrap());
    // Non-ASCII UTF-8 is fine.
    let name = "bücher.de";
    let mut bytes = vec![0x03, name.len() as u8];
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&[0, 80]);
    both_ways!(Address, bytes, Address::Domain(name.into(), 80));
}

#[test]
fn address_errors() {
    let d: Dec<_> = |b| Address::decode(b);
    assert_eq!(decode_err(&[0x00], d), Error::UnknownAddressType(0x00));
    assert_eq!(
        decode_err(&[0x02, 1, 2, 3], d),
        Error::UnknownAddressType(0x02)
    );
    assert_eq!(decode_err(&[0xFF], d), Error::UnknownAddressType(0xFF));
    assert_eq!(decode_err(&[0x03, 0x00, 0, 80], d), Error::EmptyDomain);
    // LEN 0 is reported even before the port arrives.
    assert_eq!(decode_err(&[0x03, 0x00], d), Error::EmptyDomain);
    assert_eq!(
        decode_err(&[0x03, 2, 0xC3, 0x28, 0, 80], d),
        Error::InvalidUtf8
    );
    // A short domain is incomplete, not a panic.
    let mut view: &[u8] = &[0x03, 200, b'a', b'b'];
    assert_eq!(Address::decode(&mut view), Ok(None));
}

#[test]
fn address_decode_stops_at_its_end() {
    let mut view: &[u8] = &[0x01, 10, 0, 0, 1, 0, 53, 0xAA, 0xBB];
    assert_eq!(Address::decode(&mut view), Ok(Some(v4([10, 0, 0, 1], 53))));
    assert_eq!(view, &[0xAA, 0xBB]);
}

#[test]
fn address_helpers() {
    assert_eq!(Address::unspecified_v4(), v4([0, 0, 0, 0], 0));
    assert_eq!(Address::domain("", 1), Err(Error::EmptyDomain));
    assert_eq!(
        Address::domain("a".repeat(256), 1),
        Err(Error::DomainTooLong(256))
    );
    assert_eq!(
        Address::domain("x.org", 7),
        Ok(Address::Domain("x.org".into(), 7))
    );
    let sa: SocketAddr = "[::1]:1080".parse().unwrap();
    assert_eq!(Address::from(sa), Address::Ip(sa));
    assert_eq!(Address::from(sa).to_string(), "[::1]:1080");
    assert_eq!(v4([1, 2, 3, 4], 5).to_string(), "1.2.3.4:5");
    assert_eq!(Address::Domain("x.org".into(), 7).to_string(), "x.org:7");
    assert_eq!(Address::Domain("x.org".into(), 7).port(), 7);
    assert_eq!(Address::from(sa).port(), 1080);
    assert_eq!(Address::from(sa).socket_addr(), Some(sa));
    assert_eq!(Address::Domain("x.org".into(), 7).socket_addr(), None);
}

#[test]
fn ipv6_scope_is_not_on_the_wire() {
    let a = Address::Ip(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::LOCALHOST,
        9,
        7,
        3,
    )));
    let mut out = Vec::new();
    a.encode(&mut out);
    assert_eq!(out.len(), a.encoded_len());
    let mut view = &out[..];
    assert_eq!(
        Address::decode(&mut view),
        Ok(Some(v6(Ipv6Addr::LOCALHOST, 9)))
    );
}

// --- Greeting / MethodSelection ---------------------------------------------

#[test]
fn greeting() {
    both_ways!(
        Greeting,
        [0x05, 0x01, 0x00],
        Greeting::new(vec![Method::NoAuth])
    );
    both_ways!(
        Greeting,
        [0x05, 0x04, 0x00, 0x01, 0x02, 0x80],
        Greeting::new(vec![
            Method::NoAuth,
            Method::Gssapi,
            Method::UserPass,
            Method::Other(0x80)
        ])
    );
    // The largest greeting: 255 methods (every byte but 0x00).
    let mut bytes = vec![0x05, 255];
    bytes.extend(1..=255u8);
    let g = Greeting::new(bytes[2..].iter().map(|&b| Method::from(b)).collect());
    assert!(g.offers(Method::NoAcceptable));
    both_ways!(Greeting, bytes, g);
}

#[test]
fn greeting_errors() {
    let d: Dec<_> = |b| Greeting::decode(b);
    assert_eq!(decode_err(&[0x04, 0x01, 0x00], d), Error::BadVersion(4));
    // A bad version is reported from the first byte.
    assert_eq!(decode_err(&[0x04], d), Error::BadVersion(4));
    assert_eq!(decode_err(&[0x05, 0x00], d), Error::NoMethods);
    let mut view: &[u8] = &[0x05, 0x03, 0x00, 0x02];
    assert_eq!(Greeting::decode(&mut view), Ok(None));
}

#[test]
fn method_selection() {
    both_ways!(MethodSelection, [0x05, 0x00], MethodSelection::NO_AUTH);
    both_ways!(MethodSelection, [0x05, 0x02], MethodSelection::USER_PASS);
    both_ways!(
        MethodSelection,
        [0x05, 0xFF],
        MethodSelection::NO_ACCEPTABLE
    );
    both_ways!(
        MethodSelection,
        [0x05, 0x09],
        MethodSelection::new(Method::Other(9))
    );
    assert_eq!(
        decode_err(&[0x01, 0x00], |b| MethodSelection::decode(b)),
        Error::BadVersion(1)
    );
}

// --- RFC 1929 -----------------------------------------------------------------

#[test]
fn auth_request() {
    both_ways!(
        AuthRequest,
        [0x01, 3, b'b', b'o', b'b', 4, b'p', b'a', b's', b's'],
        AuthRequest::new(UserName::new("bob").unwrap(), Secret::new("pass").unwrap())
    );
}

#[test]
fn auth_request_errors() {
    let d: Dec<_> = |b| AuthRequest::decode(b);
    assert_eq!(
        decode_err(&[0x05, 1, b'a', 1, b'b'], d),
        Error::BadAuthVersion(5)
    );
    assert_eq!(decode_err(&[0x05], d), Error::BadAuthVersion(5));
    use crate::protocol::credentials::Field;
    use crate::protocol::CredentialError as C;
    let cred = |e| Error::Credential(e);
    assert_eq!(
        decode_err(&[0x01, 1, 0xFF, 1, b'b'], d),
        cred(C::NotUtf8(Field::UserName))
    );
    assert_eq!(
        decode_err(&[0x01, 1, b'a', 1, 0xFF], d),
        cred(C::NotUtf8(Field::Password))
    );
    // ULEN 0 / PLEN 0 (outside RFC 1929's 1..=255), names that would forge a
    // log line or corrupt the users file, passwords with line breaks: an
    // error once the message is whole (the server answers failure).
    assert_eq!(
        decode_err(&[0x01, 0, 0], d),
        cred(C::Empty(Field::UserName))
    );
    assert_eq!(
        decode_err(&[0x01, 1, b'u', 0], d),
        cred(C::Empty(Field::Password))
    );
    assert_eq!(
        decode_err(&[0x01, 3, b'a', b'\n', b'b', 1, b'p'], d),
        cred(C::NameControl)
    );
    assert_eq!(
        decode_err(&[0x01, 3, b'a', b':', b'b', 1, b'p'], d),
        cred(C::NameColon)
    );
    assert_eq!(
        decode_err(&[0x01, 2, b'#', b'b', 1, b'p'], d),
        cred(C::NameStart)
    );
    assert_eq!(
        decode_err(&[0x01, 1, b'a', 2, b'p', b'\n'], d),
        cred(C::PasswordLineBreak)
    );
    // Short input is never an error, whatever it holds so far.
    assert_eq!(
        AuthRequest::decode(&mut &[0x01, 3, b'a', b'\n'][..]),
        Ok(None)
    );
}

#[test]
fn auth_request_debug_is_redacted() {
    let r = AuthRequest::new(
        UserName::new("bob").unwrap(),
        Secret::new("hunter2").unwrap(),
    );
    assert!(!format!("{r:?}").contains("hunter2"));
}

#[test]
fn auth_reply() {
    both_ways!(AuthReply, [0x01, 0x00], AuthReply::SUCCESS);
    both_ways!(AuthReply, [0x01, 0x01], AuthReply::FAILURE);
    both_ways!(AuthReply, [0x01, 0x7F], AuthReply { status: 0x7F });
    assert!(AuthReply::SUCCESS.is_success());
    assert!(!AuthReply { status: 0x7F }.is_success());
    assert_eq!(
        decode_err(&[0x05, 0x00], |b| AuthReply::decode(b)),
        Error::BadAuthVersion(5)
    );
}

// --- Request / Reply -----------------------------------------------------------

#[test]
fn request() {
    both_ways!(
        Request,
        [0x05, 0x01, 0x00, 0x01, 93, 184, 216, 34, 0, 80],
        Request::new(Command::Connect, v4([93, 184, 216, 34], 80))
    );
    both_ways!(
        Request,
        [0x05, 0x03, 0x00, 0x03, 1, b'h', 0x12, 0x34],
        Request::new(Command::UdpAssociate, Address::Domain("h".into(), 0x1234))
    );
    let mut bytes = vec![0x05, 0x02, 0x00, 0x04];
    bytes.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    bytes.extend_from_slice(&[0, 0]);
    both_ways!(
        Request,
        bytes,
        Request::new(Command::Bind, v6(Ipv6Addr::UNSPECIFIED, 0))
    );
    both_ways!(
        Request,
        [0x05, 0x09, 0x00, 0x01, 1, 1, 1, 1, 0, 53],
        Request::new(Command::Other(9), v4([1, 1, 1, 1], 53))
    );
}

#[test]
fn request_rsv_is_ignored() {
    let mut view: &[u8] = &[0x05, 0x01, 0xEE, 0x01, 1, 2, 3, 4, 0, 1];
    assert_eq!(
        Request::decode(&mut view),
        Ok(Some(Request::new(Command::Connect, v4([1, 2, 3, 4], 1))))
    );
}

#[test]
fn request_errors() {
    let d: Dec<_> = |b| Request::decode(b);
    assert_eq!(
        decode_err(&[0x04, 0x01, 0x00, 0x01], d),
        Error::BadVersion(4)
    );
    let e = decode_err(&[0x05, 0x01, 0x00, 0x05, 0, 0], d);
    assert_eq!(e, Error::UnknownAddressType(5));
    assert_eq!(e.reply(), ReplyCode::AddressTypeNotSupported);
    assert_eq!(u8::from(e.reply()), 0x08);
    assert_eq!(
        decode_err(&[0x05, 0x01, 0x00, 0x03, 0], d),
        Error::EmptyDomain
    );
}

#[test]
fn reply() {
    both_ways!(
        Reply,
        [0x05, 0x00, 0x00, 0x01, 10, 0, 0, 2, 0x9C, 0x40],
        Reply::new(ReplyCode::Succeeded, v4([10, 0, 0, 2], 40000))
    );
    both_ways!(
        Reply,
        [0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
        Reply::failure(ReplyCode::ConnectionRefused)
    );
    both_ways!(
        Reply,
        [0x05, 0x00, 0x00, 0x03, 3, b'a', b'.', b'b', 0, 1],
        Reply::new(ReplyCode::Succeeded, Address::Domain("a.b".into(), 1))
    );
    assert_eq!(
        decode_err(&[0x06, 0x00], |b| Reply::decode(b)),
        Error::BadVersion(6)
    );
}

// --- UDP -----------------------------------------------------------------------

#[test]
fn udp_header() {
    both_ways!(
        UdpHeader,
        [0x00, 0x00, 0x00, 0x01, 8, 8, 8, 8, 0, 53],
        UdpHeader::new(v4([8, 8, 8, 8], 53))
    );
    both_ways!(
        UdpHeader,
        [0x00, 0x00, 0x02, 0x03, 1, b'x', 0, 53],
        UdpHeader {
            frag: 2,
            address: Address::Domain("x".into(), 53)
        }
    );
}

#[test]
fn udp_header_leaves_data() {
    let mut view: &[u8] = &[0xAB, 0xCD, 0x00, 0x01, 8, 8, 4, 4, 0, 53, b'h', b'i'];
    assert_eq!(
        UdpHeader::decode(&mut view),
        Ok(Some(UdpHeader::new(v4([8, 8, 4, 4], 53))))
    );
    assert_eq!(view, b"hi");
    let mut view: &[u8] = &[0, 0, 0, 0x07];
    assert_eq!(
        UdpHeader::decode(&mut view),
        Err(Error::UnknownAddressType(7))
    );
}

// --- Conversions, errors, try_decode ------------------------------------------

#[test]
fn byte_conversions_round_trip() {
    for b in 0..=255u8 {
        assert_eq!(u8::from(Method::from(b)), b);
        assert_eq!(u8::from(Command::from(b)), b);
        assert_eq!(u8::from(ReplyCode::from(b)), b);
    }
    assert_eq!(Method::from(0xFF), Method::NoAcceptable);
    assert_eq!(Method::from(0x03), Method::Other(3));
    assert_eq!(Command::from(0x00), Command::Other(0));
    assert_eq!(ReplyCode::from(0x08), ReplyCode::AddressTypeNotSupported);
    assert_eq!(ReplyCode::from(0x09), ReplyCode::Other(9));
}

#[test]
fn error_reply_codes() {
    assert_eq!(
        Error::UnknownAddressType(9).reply(),
        ReplyCode::AddressTypeNotSupported
    );
    for e in [
        Error::BadVersion(4),
        Error::BadAuthVersion(2),
        Error::EmptyDomain,
        Error::InvalidUtf8,
        Error::NoMethods,
        Error::DomainTooLong(300),
    ] {
        assert_eq!(e.reply(), ReplyCode::GeneralFailure, "{e}");
    }
}

#[test]
fn try_decode_advances_only_on_success() {
    let mut buf = BytesMut::from(&[0x05, 0x01, 0x00, 0x01, 1, 2][..]);
    assert_eq!(try_decode(&mut buf, |b| Request::decode(b)), Ok(None));
    assert_eq!(buf.len(), 6);
    buf.extend_from_slice(&[3, 4, 0, 80, 0x05]);
    assert_eq!(
        try_decode(&mut buf, |b| Request::decode(b)),
        Ok(Some(Request::new(Command::Connect, v4([1, 2, 3, 4], 80))))
    );
    assert_eq!(&buf[..], &[0x05]);
    let mut bad = BytesMut::from(&[0x04, 0x01][..]);
    assert_eq!(decode_from::<Greeting>(&mut bad), Err(Error::BadVersion(4)));
    assert_eq!(bad.len(), 2);
}
