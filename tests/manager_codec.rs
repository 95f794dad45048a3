//! Property tests of the manager-protocol codec (`actor_socks::protocol::manager`):
//! round trips for every message, no panic on arbitrary bytes for every
//! decoder, and strict prefixes of valid encodings decoding to `Ok(None)`.

use actor_socks::protocol::manager::*;
use actor_socks::protocol::{Secret, UserName};
use bytes::Buf;
use proptest::collection::vec;
use proptest::prelude::*;

// --- strategies ---------------------------------------------------------------

/// A user name or password: 1..=255 bytes of UTF-8.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:-]{1,255}",
        // At most 4 bytes per char: 63 chars fit in 255 bytes.
        "\\PC{1,63}",
        Just("x".repeat(255)),
        Just("é".repeat(127)),
    ]
    .prop_filter("1..=255 bytes", |s| (1..=255).contains(&s.len()))
}

/// A user name the credential rules accept.
fn name() -> impl Strategy<Value = UserName> {
    field().prop_filter_map("a valid user name", |s| UserName::new(s).ok())
}

/// A password the credential rules accept.
fn secret() -> impl Strategy<Value = Secret> {
    field().prop_filter_map("a valid password", |s| Secret::new(s).ok())
}

fn auth_request() -> impl Strategy<Value = AuthRequest> {
    (name(), secret()).prop_map(|(username, password)| AuthRequest { username, password })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (name(), secret()).prop_map(|(username, password)| Request::AddUser { username, password }),
        Just(Request::ListUsers),
        Just(Request::Metrics),
        any::<u32>().prop_map(Request::SetMaxClients),
        name().prop_map(|username| Request::RemoveUser { username }),
        (name(), secret())
            .prop_map(|(username, password)| Request::ChangePassword { username, password }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(c, s)| Reply::Status {
            cmd: Cmd::from(c),
            status: Status::from(s)
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(historic, active, bytes)| {
            Reply::Metrics {
                historic,
                active,
                bytes,
            }
        }),
        vec(name(), 0..24).prop_map(|names| Reply::users(names).unwrap()),
        // Up to the full 255 users, short names.
        vec("[a-z]{1,3}", 200..=255).prop_map(|names| {
            Reply::users(
                names
                    .into_iter()
                    .map(|n| UserName::new(n).unwrap())
                    .collect(),
            )
            .unwrap()
        }),
    ]
}

/// What a client decodes a reply into. The status form with success for
/// list users is the same bytes as the empty list.
fn expected_decode(reply: &Reply) -> Result<Reply, Error> {
    match reply {
        Reply::Status {
            cmd: Cmd::ListUsers,
            status: Status::Success,
        } => Ok(Reply::Users(vec![])),
        Reply::Status {
            cmd: Cmd::Metrics,
            status: Status::Success,
        } => Err(Error::Malformed(
            "metrics reply with success status and no values",
        )),
        other => Ok(other.clone()),
    }
}

/// Bytes that often start like a real message, so decoders go deep.
fn arbitrary_message() -> impl Strategy<Value = Vec<u8>> {
    let head = prop_oneof![
        Just(vec![]),
        Just(vec![0x01]),
        Just(vec![0x05]),
        (0u8..8).prop_map(|c| vec![0x05, c]),
        (0u8..8, 0u8..10).prop_map(|(c, n)| vec![0x05, c, n]),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    (head, vec(any::<u8>(), 0..700)).prop_map(|(mut h, tail)| {
        h.extend(tail);
        h
    })
}

fn any_cmd() -> impl Strategy<Value = Cmd> {
    any::<u8>().prop_map(Cmd::from)
}

// --- properties ---------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn auth_request_round_trip(msg in auth_request(), junk in vec(any::<u8>(), 0..8)) {
        let bytes = msg.to_vec();
        prop_assert_eq!(bytes.len(), 3 + msg.username.len() + msg.password.expose().len());
        prop_assert_eq!(AuthRequest::from_message(&bytes), Ok(msg.clone()));
        let mut with_junk = bytes.clone();
        with_junk.extend_from_slice(&junk);
        let mut b = &with_junk[..];
        prop_assert_eq!(AuthRequest::decode(&mut b), Ok(Some(msg)));
        prop_assert_eq!(b, &junk[..]);
        if !junk.is_empty() {
            prop_assert_eq!(
                AuthRequest::from_message(&with_junk),
                Err(Error::Malformed("trailing bytes"))
            );
        }
    }

    #[test]
    fn auth_reply_round_trip(status in any::<u8>()) {
        let msg = AuthReply { status: Status::from(status) };
        let bytes = msg.to_vec();
        prop_assert_eq!(&bytes[..], &[VERSION, status][..]);
        prop_assert_eq!(AuthReply::from_message(&bytes), Ok(msg));
        prop_assert_eq!(AuthReply::decode(&mut &bytes[..]), Ok(Some(msg)));
    }

    #[test]
    fn request_round_trip(msg in request(), junk in vec(any::<u8>(), 0..8)) {
        let bytes = msg.to_vec();
        prop_assert_eq!(bytes[0], VERSION);
        prop_assert_eq!(peek_cmd(&bytes), Some(msg.cmd()));
        prop_assert_eq!(Request::from_message(&bytes), Ok(msg.clone()));
        let mut with_junk = bytes.clone();
        with_junk.extend_from_slice(&junk);
        let mut b = &with_junk[..];
        prop_assert_eq!(Request::decode(&mut b), Ok(Some(msg)));
        prop_assert_eq!(b, &junk[..]);
        if !junk.is_empty() {
            prop_assert_eq!(
                Request::from_message(&with_junk),
                Err(Error::Malformed("trailing bytes"))
            );
        }
    }

    #[test]
    fn reply_round_trip(msg in reply()) {
        let bytes = msg.to_vec();
        prop_assert_eq!(bytes[0], VERSION);
        prop_assert_eq!(bytes[1], u8::from(msg.cmd()));
        prop_assert_eq!(Reply::decode_for(msg.cmd(), &bytes), expected_decode(&msg));
        // Decoding for another command always fails.
        let other = Cmd::from(u8::from(msg.cmd()).wrapping_add(1));
        prop_assert!(Reply::decode_for(other, &bytes).is_err());
    }

    #[test]
    fn metrics_values_any_width(
        values in (any::<u64>(), any::<u64>(), any::<u64>()),
        pads in (0usize..=255, 0usize..=255, 0usize..=255),
    ) {
        // Each value as a big-endian integer of any width 1..=255 that holds it.
        let mut msg = vec![VERSION, u8::from(Cmd::Metrics)];
        for (v, pad) in [(values.0, pads.0), (values.1, pads.1), (values.2, pads.2)] {
            let be = v.to_be_bytes();
            let min = be.iter().position(|&b| b != 0).map_or(1, |i| 8 - i);
            let width = min.max(pad);
            msg.push(width as u8);
            if width > 8 {
                msg.extend(std::iter::repeat_n(0u8, width - 8));
                msg.extend_from_slice(&be);
            } else {
                msg.extend_from_slice(&be[8 - width..]);
            }
        }
        prop_assert_eq!(
            Reply::decode_for(Cmd::Metrics, &msg),
            Ok(Reply::Metrics { historic: values.0, active: values.1, bytes: values.2 })
        );
    }

    #[test]
    fn metrics_value_too_large(width in 9usize..=255, at in any::<prop::sample::Index>(), b in 1u8..) {
        // A non-zero byte anywhere before the last 8 does not fit a u64.
        let mut value = vec![0u8; width];
        value[at.index(width - 8)] = b;
        let mut msg = vec![VERSION, u8::from(Cmd::Metrics), 0x01, 0x00, width as u8];
        msg.extend_from_slice(&value);
        msg.extend_from_slice(&[0x01, 0x00]);
        prop_assert_eq!(Reply::decode_for(Cmd::Metrics, &msg), Err(Error::ValueTooLarge(width)));
    }

    #[test]
    fn no_panic_on_arbitrary_bytes(bytes in arbitrary_message(), cmd in any_cmd()) {
        // Every decoder, every entry point: any result, never a panic; and
        // the two entry points agree.
        for_each_decoder(&bytes);
        let _ = Reply::decode_for(cmd, &bytes);
        let _ = peek_cmd(&bytes);
    }

    #[test]
    fn strict_prefixes_are_incomplete(
        auth in auth_request(),
        req in request(),
        status in any::<u8>(),
        split in any::<prop::sample::Index>(),
    ) {
        let auth_bytes = auth.to_vec();
        for n in 0..auth_bytes.len() {
            let mut b = &auth_bytes[..n];
            prop_assert_eq!(AuthRequest::decode(&mut b), Ok(None));
            prop_assert_eq!(b.len(), n, "nothing consumed");
            prop_assert_eq!(
                AuthRequest::from_message(&auth_bytes[..n]),
                Err(Error::Malformed("truncated message"))
            );
        }
        let req_bytes = req.to_vec();
        for n in 0..req_bytes.len() {
            let mut b = &req_bytes[..n];
            prop_assert_eq!(Request::decode(&mut b), Ok(None));
            prop_assert_eq!(b.len(), n, "nothing consumed");
            prop_assert_eq!(
                Request::from_message(&req_bytes[..n]),
                Err(Error::Malformed("truncated message"))
            );
        }
        let reply_bytes = AuthReply { status: Status::from(status) }.to_vec();
        for n in 0..reply_bytes.len() {
            prop_assert_eq!(AuthReply::decode(&mut &reply_bytes[..n]), Ok(None));
        }
        // Split across two chunks (a non-contiguous buffer): same result.
        let at = split.index(req_bytes.len() + 1);
        let (a, b) = req_bytes.split_at(at);
        let mut chain = a.chain(b);
        prop_assert_eq!(Request::decode(&mut chain), Ok(Some(req)));
        prop_assert_eq!(chain.remaining(), 0);
    }

    #[test]
    fn reply_prefixes_never_panic(msg in reply()) {
        let bytes = msg.to_vec();
        // Every prefix of the first 1 KiB, then every 61st (a full user
        // list is 65 KB: all its prefixes would be quadratic work).
        let cuts = (0..bytes.len()).filter(|&n| n < 1024 || n % 61 == 0 || n + 1 == bytes.len());
        for n in cuts {
            for cmd in [msg.cmd(), Cmd::ListUsers, Cmd::Metrics, Cmd::AddUser] {
                let r = Reply::decode_for(cmd, &bytes[..n]);
                // Shorter than the status form: always an error.
                if n < 3 {
                    prop_assert!(r.is_err());
                }
            }
        }
    }
}

/// Runs every Buf decoder and `from_message` on `bytes`; checks they agree:
/// `from_message` succeeds exactly when `decode` returns a value that used
/// every byte.
fn for_each_decoder(bytes: &[u8]) {
    fn check<T: PartialEq + std::fmt::Debug>(
        bytes: &[u8],
        decode: impl Fn(&mut &[u8]) -> Result<Option<T>, Error>,
        whole: impl Fn(&[u8]) -> Result<T, Error>,
    ) {
        let mut b = bytes;
        let streamed = decode(&mut b);
        let rest = b.len();
        let from_msg = whole(bytes);
        match streamed {
            Ok(Some(v)) if rest == 0 => assert_eq!(from_msg, Ok(v)),
            Ok(Some(_)) => assert_eq!(from_msg, Err(Error::Malformed("trailing bytes"))),
            Ok(None) => {
                assert_eq!(rest, bytes.len(), "nothing consumed on None");
                assert_eq!(from_msg, Err(Error::Malformed("truncated message")));
            }
            Err(e) => {
                assert_eq!(rest, bytes.len(), "nothing consumed on Err");
                assert_eq!(from_msg, Err(e));
            }
        }
    }
    check(bytes, |b| AuthRequest::decode(b), AuthRequest::from_message);
    check(bytes, |b| AuthReply::decode(b), AuthReply::from_message);
    check(bytes, |b| Request::decode(b), Request::from_message);
}
