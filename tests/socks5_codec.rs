//! Property tests for the SOCKS5 codec: round trips, no panics on arbitrary
//! input, strict prefixes are incomplete.

use actor_socks::protocol::socks5::*;
use actor_socks::protocol::{Secret, UserName};
use bytes::BytesMut;
use proptest::prelude::*;
use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

// --- Strategies --------------------------------------------------------------

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| {
            Address::Ip(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }),
        // Flow info and scope id are not on the wire: generate them as 0.
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| {
            Address::Ip(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        }),
        ("[a-zA-Z0-9.-]{1,255}", any::<u16>())
            .prop_map(|(name, port)| Address::domain(name, port).unwrap()),
        // Non-ASCII UTF-8, kept within 255 bytes.
        ("\\PC{1,63}", any::<u16>()).prop_map(|(name, port)| Address::domain(name, port).unwrap()),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    any::<u8>().prop_map(Method::from)
}

fn greeting() -> impl Strategy<Value = Greeting> {
    prop::collection::vec(method(), 1..=255).prop_map(Greeting::new)
}

fn method_selection() -> impl Strategy<Value = MethodSelection> {
    method().prop_map(MethodSelection::new)
}

fn auth_request() -> impl Strategy<Value = AuthRequest> {
    let name = prop_oneof![
        "[a-zA-Z0-9._@-][a-zA-Z0-9._@ -]{0,254}",
        "[^:#\\s\\pC][^:\\pC]{0,62}"
    ];
    let pass = prop_oneof!["[ -~]{1,255}", "[^\\r\\n\\x00]{1,63}"];
    (name, pass).prop_filter_map("valid credentials", |(u, p)| {
        Some(AuthRequest::new(
            UserName::new(u).ok()?,
            Secret::new(p).ok()?,
        ))
    })
}

fn auth_reply() -> impl Strategy<Value = AuthReply> {
    any::<u8>().prop_map(|status| AuthReply { status })
}

fn request() -> impl Strategy<Value = Request> {
    (any::<u8>(), address()).prop_map(|(c, a)| Request::new(Command::from(c), a))
}

fn reply() -> impl Strategy<Value = Reply> {
    (any::<u8>(), address()).prop_map(|(c, a)| Reply::new(ReplyCode::from(c), a))
}

fn udp_header() -> impl Strategy<Value = UdpHeader> {
    (any::<u8>(), address()).prop_map(|(frag, address)| UdpHeader { frag, address })
}

// --- Checks --------------------------------------------------------------------

fn encode<T: Message>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// decode(encode(x)) == x with all bytes consumed, `encoded_len` exact,
/// trailing bytes left in place (also through `decode_from`).
fn round_trip<T: Message + PartialEq + Debug>(value: T) -> Result<(), TestCaseError> {
    let bytes = encode(&value);
    prop_assert_eq!(bytes.len(), value.encoded_len());

    let mut view = &bytes[..];
    let decoded = T::decode(&mut view);
    prop_assert!(view.is_empty(), "{} bytes left over", view.len());
    prop_assert_eq!(decoded.as_ref(), Ok(&Some(value)));

    let mut buf = BytesMut::from(&bytes[..]);
    buf.extend_from_slice(b"tail");
    let again = decode_from::<T>(&mut buf);
    prop_assert_eq!(again, decoded);
    prop_assert_eq!(&buf[..], b"tail");
    Ok(())
}

/// Every strict prefix of a valid encoding is incomplete, and `try_decode`
/// leaves it untouched.
fn prefixes_incomplete<T: Message + Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = encode(value);
    for n in 0..bytes.len() {
        let mut view = &bytes[..n];
        let got = T::decode(&mut view);
        prop_assert!(matches!(got, Ok(None)), "prefix {}: {:?}", n, got);
        let mut buf = BytesMut::from(&bytes[..n]);
        prop_assert!(matches!(decode_from::<T>(&mut buf), Ok(None)));
        prop_assert_eq!(buf.len(), n);
    }
    Ok(())
}

/// Arbitrary input: no panic; on success the decoder consumed at most the
/// input and `try_decode` advanced by exactly that; otherwise nothing moved.
fn arbitrary_input<T: Message + PartialEq + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut view = bytes;
    let got = T::decode(&mut view);
    let used = bytes.len() - view.len();

    let mut buf = BytesMut::from(bytes);
    let via_buf = decode_from::<T>(&mut buf);
    match (&got, &via_buf) {
        (Ok(Some(_)), Ok(Some(_))) => prop_assert_eq!(buf.len(), bytes.len() - used),
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => prop_assert_eq!(buf.len(), bytes.len()),
        _ => prop_assert!(false, "decode {:?} vs decode_from {:?}", got, via_buf),
    }
    // A successful decode re-encodes to as many bytes as it consumed (only
    // ignored RSV bytes may differ), and that decodes to the same value.
    if let Ok(Some(value)) = got {
        let re = encode(&value);
        prop_assert_eq!(re.len(), used);
        prop_assert_eq!(re.len(), value.encoded_len());
        let mut view = &re[..];
        prop_assert_eq!(T::decode(&mut view), Ok(Some(value)));
        prop_assert!(view.is_empty());
    }
    Ok(())
}

fn all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    arbitrary_input::<Address>(bytes)?;
    arbitrary_input::<Greeting>(bytes)?;
    arbitrary_input::<MethodSelection>(bytes)?;
    arbitrary_input::<AuthRequest>(bytes)?;
    arbitrary_input::<AuthReply>(bytes)?;
    arbitrary_input::<Request>(bytes)?;
    arbitrary_input::<Reply>(bytes)?;
    arbitrary_input::<UdpHeader>(bytes)?;
    Ok(())
}

// --- Properties --------------------------------------------------------------------

macro_rules! codec_properties {
    ($($name:ident: $strategy:expr;)*) => {$(
        mod $name {
            use super::*;
            proptest! {
                #[test]
                fn round_trips(value in $strategy) {
                    round_trip(value)?;
                }

                #[test]
                fn strict_prefixes_are_incomplete(value in $strategy) {
                    prefixes_incomplete(&value)?;
                }
            }
        }
    )*};
}

codec_properties! {
    address: address();
    greeting: greeting();
    method_selection: method_selection();
    auth_request: auth_request();
    auth_reply: auth_reply();
    request: request();
    reply: reply();
    udp_header: udp_header();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// No byte string makes any decoder (or `try_decode`) panic.
    #[test]
    fn no_input_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        all_decoders(&bytes)?;
    }

    /// Same, with inputs that start like real messages, so the deeper
    /// branches (address types, lengths) are reached often.
    #[test]
    fn no_plausible_input_panics(
        head in prop::sample::select(vec![
            vec![], vec![0x05], vec![0x01], vec![0x00, 0x00, 0x00],
            vec![0x05, 0x01, 0x00], vec![0x05, 0x00, 0x00],
        ]),
        atyp in prop::sample::select(vec![0x01u8, 0x03, 0x04, 0x00, 0x02, 0xFF]),
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = head;
        bytes.push(atyp);
        bytes.extend_from_slice(&rest);
        all_decoders(&bytes)?;
    }

    /// An encoded UDP header followed by DATA leaves exactly DATA.
    #[test]
    fn udp_header_leaves_data(header in udp_header(), data in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = encode(&header);
        bytes.extend_from_slice(&data);
        let mut view = &bytes[..];
        prop_assert_eq!(UdpHeader::decode(&mut view), Ok(Some(header)));
        prop_assert_eq!(view, &data[..]);
    }

    /// A wrong VER is rejected on the first byte, whatever follows.
    #[test]
    fn bad_versions_are_errors(ver in any::<u8>(), rest in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = vec![ver];
        bytes.extend_from_slice(&rest);
        if ver != VERSION {
            prop_assert_eq!(Greeting::decode(&mut &bytes[..]), Err(Error::BadVersion(ver)));
            prop_assert_eq!(MethodSelection::decode(&mut &bytes[..]), Err(Error::BadVersion(ver)));
            prop_assert_eq!(Request::decode(&mut &bytes[..]), Err(Error::BadVersion(ver)));
            prop_assert_eq!(Reply::decode(&mut &bytes[..]), Err(Error::BadVersion(ver)));
        }
        if ver != AUTH_VERSION {
            prop_assert_eq!(AuthRequest::decode(&mut &bytes[..]), Err(Error::BadAuthVersion(ver)));
            prop_assert_eq!(AuthReply::decode(&mut &bytes[..]), Err(Error::BadAuthVersion(ver)));
        }
    }

    #[test]
    fn byte_enums_round_trip(b in any::<u8>()) {
        prop_assert_eq!(u8::from(Method::from(b)), b);
        prop_assert_eq!(u8::from(Command::from(b)), b);
        prop_assert_eq!(u8::from(ReplyCode::from(b)), b);
    }
}
