//! Byte-literal tests: every message of the spec in both directions, and every
//! decoding error. The worked examples of `docs/manager-protocol.md` are here
//! byte for byte (tests named `doc_example_*`).

use super::*;
use bytes::{Bytes, BytesMut};

fn pw(s: &str) -> Secret {
    Secret::new(s).unwrap()
}

fn n(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

/// Encodes, checks the bytes, and decodes them back every way there is.
fn auth_request_both_ways(msg: &AuthRequest, bytes: &[u8]) {
    assert_eq!(msg.to_vec(), bytes);
    assert_eq!(AuthRequest::from_message(bytes).unwrap(), *msg);
    let mut b = bytes;
    assert_eq!(AuthRequest::decode(&mut b).unwrap().as_ref(), Some(msg));
    assert!(b.is_empty());
}

fn request_both_ways(msg: &Request, bytes: &[u8]) {
    assert_eq!(msg.to_vec(), bytes);
    assert_eq!(Request::from_message(bytes).unwrap(), *msg);
    let mut b = Bytes::copy_from_slice(bytes);
    assert_eq!(Request::decode(&mut b).unwrap().as_ref(), Some(msg));
    assert!(b.is_empty());
    assert_eq!(peek_cmd(bytes), Some(msg.cmd()));
}

fn reply_both_ways(cmd: Cmd, msg: &Reply, bytes: &[u8]) {
    assert_eq!(msg.to_vec(), bytes);
    assert_eq!(Reply::decode_for(cmd, bytes).unwrap(), *msg);
}

// --- the worked examples of the documentation -----------------------------

#[test]
fn doc_example_auth() {
    let req = AuthRequest {
        username: n("admin"),
        password: pw("secret"),
    };
    auth_request_both_ways(
        &req,
        &[
            0x01, 0x05, b'a', b'd', b'm', b'i', b'n', 0x06, b's', b'e', b'c', b'r', b'e', b't',
        ],
    );
    let ok = AuthReply {
        status: Status::Success,
    };
    assert_eq!(ok.to_vec(), [0x05, 0x00]);
    assert_eq!(AuthReply::from_message(&[0x05, 0x00]).unwrap(), ok);
    let failed = AuthReply {
        status: Status::AuthFailed,
    };
    assert_eq!(failed.to_vec(), [0x05, 0x02]);
    assert_eq!(AuthReply::from_message(&[0x05, 0x02]).unwrap(), failed);
}

#[test]
fn doc_example_add_user() {
    let req = Request::AddUser {
        username: n("alice"),
        password: pw("pw123"),
    };
    request_both_ways(
        &req,
        &[
            0x05, 0x00, 0x05, b'a', b'l', b'i', b'c', b'e', 0x05, b'p', b'w', b'1', b'2', b'3',
        ],
    );
    let ok = Reply::Status {
        cmd: Cmd::AddUser,
        status: Status::Success,
    };
    reply_both_ways(Cmd::AddUser, &ok, &[0x05, 0x00, 0x00]);
    let exists = Reply::Status {
        cmd: Cmd::AddUser,
        status: Status::UserExists,
    };
    reply_both_ways(Cmd::AddUser, &exists, &[0x05, 0x00, 0x06]);
    let limit = Reply::Status {
        cmd: Cmd::AddUser,
        status: Status::UserLimit,
    };
    reply_both_ways(Cmd::AddUser, &limit, &[0x05, 0x00, 0x07]);
}

#[test]
fn doc_example_list_users() {
    request_both_ways(&Request::ListUsers, &[0x05, 0x01]);
    let users = Reply::users(vec![n("alice"), n("bob")]).unwrap();
    reply_both_ways(
        Cmd::ListUsers,
        &users,
        &[
            0x05, 0x01, 0x02, 0x05, b'a', b'l', b'i', b'c', b'e', 0x03, b'b', b'o', b'b',
        ],
    );
    // The empty list is byte-identical with a success status reply.
    reply_both_ways(Cmd::ListUsers, &Reply::Users(vec![]), &[0x05, 0x01, 0x00]);
    let as_status = Reply::Status {
        cmd: Cmd::ListUsers,
        status: Status::Success,
    };
    assert_eq!(as_status.to_vec(), [0x05, 0x01, 0x00]);
}

#[test]
fn doc_example_metrics() {
    request_both_ways(&Request::Metrics, &[0x05, 0x02]);
    let m = Reply::Metrics {
        historic: 42,
        active: 3,
        bytes: 1_048_576,
    };
    reply_both_ways(
        Cmd::Metrics,
        &m,
        &[
            0x05, 0x02, //
            0x08, 0, 0, 0, 0, 0, 0, 0, 0x2a, //
            0x08, 0, 0, 0, 0, 0, 0, 0, 0x03, //
            0x08, 0, 0, 0, 0, 0, 0x10, 0, 0,
        ],
    );
}

#[test]
fn doc_example_set_max_clients() {
    request_both_ways(
        &Request::SetMaxClients(1000),
        &[0x05, 0x03, 0x04, 0x00, 0x00, 0x03, 0xe8],
    );
    request_both_ways(
        &Request::SetMaxClients(u32::MAX),
        &[0x05, 0x03, 0x04, 0xff, 0xff, 0xff, 0xff],
    );
    request_both_ways(&Request::SetMaxClients(0), &[0x05, 0x03, 0x04, 0, 0, 0, 0]);
    let ok = Reply::Status {
        cmd: Cmd::SetMaxClients,
        status: Status::Success,
    };
    reply_both_ways(Cmd::SetMaxClients, &ok, &[0x05, 0x03, 0x00]);
}

#[test]
fn doc_example_remove_user() {
    request_both_ways(
        &Request::RemoveUser { username: n("bob") },
        &[0x05, 0x04, 0x03, b'b', b'o', b'b'],
    );
    let ok = Reply::Status {
        cmd: Cmd::RemoveUser,
        status: Status::Success,
    };
    reply_both_ways(Cmd::RemoveUser, &ok, &[0x05, 0x04, 0x00]);
    let missing = Reply::Status {
        cmd: Cmd::RemoveUser,
        status: Status::NoSuchUser,
    };
    reply_both_ways(Cmd::RemoveUser, &missing, &[0x05, 0x04, 0x08]);
}

#[test]
fn doc_example_change_password() {
    request_both_ways(
        &Request::ChangePassword {
            username: n("alice"),
            password: pw("newpw"),
        },
        &[
            0x05, 0x05, 0x05, b'a', b'l', b'i', b'c', b'e', 0x05, b'n', b'e', b'w', b'p', b'w',
        ],
    );
    let ok = Reply::Status {
        cmd: Cmd::ChangePassword,
        status: Status::Success,
    };
    reply_both_ways(Cmd::ChangePassword, &ok, &[0x05, 0x05, 0x00]);
    let missing = Reply::Status {
        cmd: Cmd::ChangePassword,
        status: Status::NoSuchUser,
    };
    reply_both_ways(Cmd::ChangePassword, &missing, &[0x05, 0x05, 0x08]);
}

#[test]
fn doc_example_error_reply() {
    // A malformed list request answered with the status form.
    let r = Reply::Status {
        cmd: Cmd::ListUsers,
        status: Status::Malformed,
    };
    reply_both_ways(Cmd::ListUsers, &r, &[0x05, 0x01, 0x05]);
    let r = Reply::Status {
        cmd: Cmd::Metrics,
        status: Status::GeneralFailure,
    };
    reply_both_ways(Cmd::Metrics, &r, &[0x05, 0x02, 0x01]);
    // An unknown command echoes its CMD.
    let r = Reply::Status {
        cmd: Cmd::Other(0x09),
        status: Status::UnknownCommand,
    };
    reply_both_ways(Cmd::Other(0x09), &r, &[0x05, 0x09, 0x04]);
}

/// The "Errors" examples of the documentation, answered as a server does:
/// the status of the decoding error, with the request's CMD echoed.
#[test]
fn doc_example_errors_as_a_server_answers() {
    fn answer(request: &[u8]) -> Vec<u8> {
        let err = Request::from_message(request).unwrap_err();
        let cmd = peek_cmd(request).unwrap();
        Reply::Status {
            cmd,
            status: err.status(),
        }
        .to_vec()
    }
    assert_eq!(answer(&[0x05, 0x01, 0x00]), [0x05, 0x01, 0x05]);
    assert_eq!(answer(&[0x05, 0x03, 0x02, 0x03, 0xe8]), [0x05, 0x03, 0x05]);
    assert_eq!(answer(&[0x05, 0x09]), [0x05, 0x09, 0x04]);
    assert_eq!(answer(&[0x04, 0x01]), [0x05, 0x01, 0x03]);
}

// --- codes -----------------------------------------------------------------

#[test]
fn cmd_codes() {
    let table = [
        (0x00, Cmd::AddUser),
        (0x01, Cmd::ListUsers),
        (0x02, Cmd::Metrics),
        (0x03, Cmd::SetMaxClients),
        (0x04, Cmd::RemoveUser),
        (0x05, Cmd::ChangePassword),
        (0x06, Cmd::Tree),
        (0x07, Cmd::Fault),
        (0x08, Cmd::Stats),
    ];
    for (b, c) in table {
        assert_eq!(Cmd::from(b), c);
        assert_eq!(u8::from(c), b);
    }
    for b in 0u8..=255 {
        assert_eq!(u8::from(Cmd::from(b)), b);
    }
    assert_eq!(Cmd::from(0x09), Cmd::Other(0x09));
    assert_eq!(Cmd::Other(0x2a).to_string(), "unknown command 0x2a");
    assert_eq!(Cmd::SetMaxClients.to_string(), "set max clients");
}

#[test]
fn status_codes() {
    let table = [
        (0x00, Status::Success, "success"),
        (0x01, Status::GeneralFailure, "general server failure"),
        (0x02, Status::AuthFailed, "authentication failed"),
        (0x03, Status::UnsupportedVersion, "unsupported version"),
        (0x04, Status::UnknownCommand, "unknown command"),
        (0x05, Status::Malformed, "malformed message"),
        (0x06, Status::UserExists, "user already exists"),
        (0x07, Status::UserLimit, "user limit reached"),
        (0x08, Status::NoSuchUser, "no such user"),
        (
            0x09,
            Status::FaultInjectionOff,
            "fault injection is off (start the server with --fault-injection)",
        ),
        (0x0A, Status::NoSuchNode, "no such node"),
        (
            0x0B,
            Status::ShuttingDown,
            "the server is shutting down (changes are refused)",
        ),
    ];
    for (b, s, words) in table {
        assert_eq!(Status::from(b), s);
        assert_eq!(u8::from(s), b);
        assert_eq!(s.description(), words);
        assert_eq!(s.to_string(), words);
    }
    for b in 0u8..=255 {
        assert_eq!(u8::from(Status::from(b)), b);
    }
    assert_eq!(Status::from(0x0C), Status::Other(0x0C));
    assert_eq!(Status::Other(0xff).to_string(), "unknown status 0xff");
    assert!(Status::Success.is_success());
    assert!(!Status::Other(0).is_success());
}

#[test]
fn error_status() {
    assert_eq!(
        Error::UnsupportedVersion(4).status(),
        Status::UnsupportedVersion
    );
    assert_eq!(Error::UnknownCommand(9).status(), Status::UnknownCommand);
    assert_eq!(Error::Malformed("x").status(), Status::Malformed);
    assert_eq!(Error::ValueTooLarge(9).status(), Status::Malformed);
    assert_eq!(u8::from(Error::Malformed("x").status()), 0x05);
}

#[test]
fn peek_cmd_reads_second_byte() {
    assert_eq!(peek_cmd(&[]), None);
    assert_eq!(peek_cmd(&[0x05]), None);
    assert_eq!(peek_cmd(&[0x05, 0x03, 0x07]), Some(Cmd::SetMaxClients));
    assert_eq!(peek_cmd(&[0x04, 0x01]), Some(Cmd::ListUsers));
    assert_eq!(peek_cmd(&[0x05, 0x77]), Some(Cmd::Other(0x77)));
}

// --- auth errors -----------------------------------------------------------

#[test]
fn auth_bad_version() {
    assert_eq!(
        AuthRequest::from_message(&[0x05, 0x01, b'a', 0x01, b'b']),
        Err(Error::UnsupportedVersion(0x05))
    );
    // Reported as soon as the first byte is seen.
    assert_eq!(
        AuthRequest::decode(&mut &[0x02][..]),
        Err(Error::UnsupportedVersion(0x02))
    );
    assert_eq!(
        AuthReply::from_message(&[0x01, 0x00]),
        Err(Error::UnsupportedVersion(0x01))
    );
}

#[test]
fn auth_zero_lengths() {
    assert_eq!(
        AuthRequest::from_message(&[0x01, 0x00, 0x01, b'p']),
        Err(Error::Credential(CredentialError::Empty(Field::UserName)))
    );
    assert_eq!(
        AuthRequest::from_message(&[0x01, 0x01, b'u', 0x00]),
        Err(Error::Credential(CredentialError::Empty(Field::Password)))
    );
}

#[test]
fn auth_not_utf8() {
    assert_eq!(
        AuthRequest::from_message(&[0x01, 0x01, 0xff, 0x01, b'p']),
        Err(Error::Credential(CredentialError::NotUtf8(Field::UserName)))
    );
    assert_eq!(
        AuthRequest::from_message(&[0x01, 0x01, b'u', 0x02, 0xc3, 0x28]),
        Err(Error::Credential(CredentialError::NotUtf8(Field::Password)))
    );
}

#[test]
fn auth_truncated_and_trailing() {
    let full = [0x01, 0x01, b'u', 0x02, b'p', b'w'];
    for n in 0..full.len() {
        let mut b = &full[..n];
        assert_eq!(AuthRequest::decode(&mut b), Ok(None), "prefix {n}");
        assert_eq!(b.len(), n, "nothing consumed on None");
        assert_eq!(
            AuthRequest::from_message(&full[..n]),
            Err(Error::Malformed("truncated message"))
        );
    }
    let mut long = full.to_vec();
    long.push(0);
    assert_eq!(
        AuthRequest::from_message(&long),
        Err(Error::Malformed("trailing bytes"))
    );
    assert_eq!(AuthReply::decode(&mut &[0x05][..]), Ok(None));
    assert_eq!(
        AuthReply::from_message(&[0x05]),
        Err(Error::Malformed("truncated message"))
    );
    assert_eq!(
        AuthReply::from_message(&[0x05, 0x00, 0x00]),
        Err(Error::Malformed("trailing bytes"))
    );
}

#[test]
fn auth_max_lengths() {
    let req = AuthRequest {
        username: n(&"u".repeat(255)),
        password: pw(&"p".repeat(255)),
    };
    let bytes = req.to_vec();
    assert_eq!(bytes.len(), 1 + 1 + 255 + 1 + 255);
    assert_eq!(bytes[1], 0xff);
    assert_eq!(AuthRequest::from_message(&bytes).unwrap(), req);
}

#[test]
fn decode_leaves_following_bytes() {
    let mut buf = BytesMut::new();
    Request::ListUsers.encode(&mut buf);
    Request::SetMaxClients(7).encode(&mut buf);
    assert_eq!(Request::decode(&mut buf), Ok(Some(Request::ListUsers)));
    assert_eq!(
        Request::decode(&mut buf),
        Ok(Some(Request::SetMaxClients(7)))
    );
    assert!(buf.is_empty());
    assert_eq!(Request::decode(&mut buf), Ok(None));
}

#[test]
fn decode_non_contiguous_buffer() {
    let bytes = Request::AddUser {
        username: n("alice"),
        password: pw("pw"),
    }
    .to_vec();
    for split in 0..=bytes.len() {
        let (a, b) = bytes.split_at(split);
        let mut chain = a.chain(b);
        assert_eq!(
            Request::decode(&mut chain).unwrap(),
            Some(Request::from_message(&bytes).unwrap())
        );
        assert_eq!(chain.remaining(), 0);
    }
}

// --- request errors --------------------------------------------------------

#[test]
fn request_bad_version() {
    assert_eq!(
        Request::from_message(&[0x04, 0x01]),
        Err(Error::UnsupportedVersion(0x04))
    );
    assert_eq!(
        Request::decode(&mut &[0x01][..]),
        Err(Error::UnsupportedVersion(0x01))
    );
    // VER is checked before CMD.
    assert_eq!(
        Request::from_message(&[0x04, 0x77]),
        Err(Error::UnsupportedVersion(0x04))
    );
}

#[test]
fn request_unknown_command() {
    assert_eq!(
        Request::from_message(&[0x05, 0x09]),
        Err(Error::UnknownCommand(0x09))
    );
    assert_eq!(
        Request::decode(&mut &[0x05, 0xff, 0x00][..]),
        Err(Error::UnknownCommand(0xff))
    );
    assert_eq!(
        Request::from_message(&[0x05, 0x09]).unwrap_err().status(),
        Status::UnknownCommand
    );
}

#[test]
fn request_slen_must_be_4() {
    for slen in [0u8, 1, 2, 3, 5, 8, 0xff] {
        let msg = [0x05, 0x03, slen, 0, 0, 0, 1];
        assert_eq!(
            Request::from_message(&msg),
            Err(Error::Malformed("SLEN must be 4")),
            "SLEN {slen}"
        );
    }
    // Even before SIZE has arrived.
    assert_eq!(
        Request::decode(&mut &[0x05, 0x03, 0x02][..]),
        Err(Error::Malformed("SLEN must be 4"))
    );
}

#[test]
fn request_trailing_byte() {
    for msg in [
        &[0x05, 0x01, 0x00][..],
        &[0x05, 0x02, 0x00],
        &[0x05, 0x03, 0x04, 0, 0, 0, 1, 0],
        &[0x05, 0x00, 0x01, b'u', 0x01, b'p', 0x00],
        &[0x05, 0x04, 0x01, b'u', b'x'],
        &[0x05, 0x05, 0x01, b'u', 0x01, b'p', 0x00],
    ] {
        assert_eq!(
            Request::from_message(msg),
            Err(Error::Malformed("trailing bytes")),
            "{msg:02x?}"
        );
    }
}

#[test]
fn request_zero_length_name() {
    assert_eq!(
        Request::from_message(&[0x05, 0x00, 0x00, 0x01, b'p']),
        Err(Error::Credential(CredentialError::Empty(Field::UserName)))
    );
    assert_eq!(
        Request::from_message(&[0x05, 0x00, 0x01, b'u', 0x00]),
        Err(Error::Credential(CredentialError::Empty(Field::Password)))
    );
    assert_eq!(
        Request::from_message(&[0x05, 0x04, 0x00]),
        Err(Error::Credential(CredentialError::Empty(Field::UserName)))
    );
    assert_eq!(
        Request::from_message(&[0x05, 0x05, 0x01, b'u', 0x00]),
        Err(Error::Credential(CredentialError::Empty(Field::Password)))
    );
    assert_eq!(
        Request::from_message(&[0x05, 0x00, 0x01, 0x80, 0x01, b'p']),
        Err(Error::Credential(CredentialError::NotUtf8(Field::UserName)))
    );
}

#[test]
fn request_truncated() {
    let msgs = [
        Request::AddUser {
            username: n("al"),
            password: pw("pw"),
        }
        .to_vec(),
        Request::SetMaxClients(0x01020304).to_vec(),
        Request::RemoveUser { username: n("bob") }.to_vec(),
        Request::ChangePassword {
            username: n("al"),
            password: pw("x"),
        }
        .to_vec(),
        Request::ListUsers.to_vec(),
        Request::Metrics.to_vec(),
    ];
    for full in msgs {
        for n in 0..full.len() {
            let mut b = &full[..n];
            assert_eq!(Request::decode(&mut b), Ok(None), "{:02x?}", &full[..n]);
            assert_eq!(b.len(), n);
            assert_eq!(
                Request::from_message(&full[..n]),
                Err(Error::Malformed("truncated message"))
            );
        }
    }
    assert_eq!(
        Request::from_message(&[]),
        Err(Error::Malformed("truncated message"))
    );
}

// --- reply errors ----------------------------------------------------------

#[test]
fn reply_bad_version_and_wrong_cmd() {
    assert_eq!(
        Reply::decode_for(Cmd::AddUser, &[0x01, 0x00, 0x00]),
        Err(Error::UnsupportedVersion(0x01))
    );
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x04, 0x01, 0x00]),
        Err(Error::UnsupportedVersion(0x04))
    );
    assert_eq!(
        Reply::decode_for(Cmd::AddUser, &[0x05, 0x03, 0x00]),
        Err(Error::Malformed("reply is for a different command"))
    );
    // The seed's swapped table: a list reply carrying CMD 0x02 is rejected.
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x05, 0x02, 0x00]),
        Err(Error::Malformed("reply is for a different command"))
    );
}

#[test]
fn reply_truncated_and_trailing() {
    assert_eq!(
        Reply::decode_for(Cmd::AddUser, &[]),
        Err(Error::Malformed("empty reply"))
    );
    for cmd in [
        Cmd::AddUser,
        Cmd::ListUsers,
        Cmd::Metrics,
        Cmd::SetMaxClients,
    ] {
        assert_eq!(
            Reply::decode_for(cmd, &[0x05]),
            Err(Error::Malformed("truncated reply"))
        );
        assert!(matches!(
            Reply::decode_for(cmd, &[0x05, u8::from(cmd)]),
            Err(Error::Malformed(_))
        ));
    }
    assert_eq!(
        Reply::decode_for(Cmd::SetMaxClients, &[0x05, 0x03, 0x00, 0x00]),
        Err(Error::Malformed("trailing bytes"))
    );
    // A list whose LLEN promises more names than there are.
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x05, 0x01, 0x02, 0x01, b'a']),
        Err(Error::Malformed("truncated message"))
    );
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x05, 0x01, 0x01, 0x01, b'a', b'b']),
        Err(Error::Malformed("trailing bytes"))
    );
    let m = Reply::Metrics {
        historic: 1,
        active: 2,
        bytes: 3,
    }
    .to_vec();
    for n in 4..m.len() {
        assert_eq!(
            Reply::decode_for(Cmd::Metrics, &m[..n]),
            Err(Error::Malformed("truncated message")),
            "{n}"
        );
    }
    let mut long = m.clone();
    long.push(0);
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &long),
        Err(Error::Malformed("trailing bytes"))
    );
}

#[test]
fn reply_three_bytes_is_status_form() {
    // A non-zero third byte is a status, for every command.
    for cmd in [
        Cmd::AddUser,
        Cmd::ListUsers,
        Cmd::Metrics,
        Cmd::SetMaxClients,
        Cmd::RemoveUser,
        Cmd::ChangePassword,
    ] {
        let r = Reply::decode_for(cmd, &[0x05, u8::from(cmd), 0x02]).unwrap();
        assert_eq!(
            r,
            Reply::Status {
                cmd,
                status: Status::AuthFailed
            }
        );
        assert_eq!(r.cmd(), cmd);
        assert_eq!(r.status(), Status::AuthFailed);
    }
    assert_eq!(
        Reply::decode_for(Cmd::AddUser, &[0x05, 0x00, 0x42]).unwrap(),
        Reply::Status {
            cmd: Cmd::AddUser,
            status: Status::Other(0x42)
        }
    );
    // Metrics "success" without values is not a reply.
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &[0x05, 0x02, 0x00]),
        Err(Error::Malformed(
            "metrics reply with success status and no values"
        ))
    );
}

#[test]
fn reply_zero_length_user_name() {
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x05, 0x01, 0x02, 0x01, b'a', 0x00]),
        Err(Error::Credential(CredentialError::Empty(Field::UserName)))
    );
    assert_eq!(
        Reply::decode_for(Cmd::ListUsers, &[0x05, 0x01, 0x01, 0x01, 0xfe]),
        Err(Error::Credential(CredentialError::NotUtf8(Field::UserName)))
    );
}

#[test]
fn reply_metrics_value_lengths() {
    // Short values are fine.
    assert_eq!(
        Reply::decode_for(
            Cmd::Metrics,
            &[0x05, 0x02, 0x01, 0x07, 0x02, 0x01, 0x00, 0x03, 0x01, 0x00, 0x00]
        ),
        Ok(Reply::Metrics {
            historic: 7,
            active: 256,
            bytes: 65536
        })
    );
    // Zero length is malformed.
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &[0x05, 0x02, 0x00, 0x01, 0x00, 0x01, 0x00]),
        Err(Error::Malformed("zero-length metrics value"))
    );
    // Longer than 8 bytes with leading zeroes: fits. HLEN 12 (four zero
    // bytes then u64::MAX), ALLEN 1 (5), BLEN 255 (254 zero bytes then 9).
    let mut v = vec![0u8; 255];
    v[254] = 0x09;
    let mut msg = vec![0x05, 0x02];
    msg.push(12);
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&u64::MAX.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x05]);
    msg.push(0xff);
    msg.extend_from_slice(&v);
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &msg),
        Ok(Reply::Metrics {
            historic: u64::MAX,
            active: 5,
            bytes: 9
        })
    );
}

#[test]
fn reply_metrics_value_too_large() {
    // 9 bytes, first one non-zero: 2^64 does not fit.
    let msg = [
        0x05, 0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x01, 0x00,
    ];
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &msg),
        Err(Error::ValueTooLarge(9))
    );
    // 255 bytes, a non-zero byte far from the end.
    let mut msg = vec![0x05, 0x02, 0x01, 0x00, 0x01, 0x00, 0xff];
    let mut v = vec![0u8; 255];
    v[100] = 1;
    msg.extend_from_slice(&v);
    assert_eq!(
        Reply::decode_for(Cmd::Metrics, &msg),
        Err(Error::ValueTooLarge(255))
    );
    assert_eq!(Error::ValueTooLarge(9).status(), Status::Malformed);
}

#[test]
fn users_constructor_checks() {
    assert!(Reply::users(vec![n("a"); 255]).is_ok());
    assert_eq!(
        Reply::users(vec![n("a"); 256]),
        Err(Error::Malformed("more than 255 users"))
    );
    let full = Reply::users(vec![n(&"u".repeat(255)); 255]).unwrap();
    let bytes = full.to_vec();
    assert_eq!(bytes.len(), 3 + 255 * 256);
    assert_eq!(Reply::decode_for(Cmd::ListUsers, &bytes).unwrap(), full);
}

#[test]
#[should_panic(expected = "at most 255 users, got 256")]
fn encoding_too_many_users_panics() {
    let _ = Reply::Users(vec![n("a"); 256]).to_vec();
}

/// Names and passwords that would corrupt the users file or forge a log
/// line are STATUS 0x05 (malformed), in every message that carries one.
#[test]
fn credential_rules_are_malformed() {
    let bad_names: [&[u8]; 7] = [
        b"carl\nmallory",
        b"a:b",
        b"#x",
        b" x",
        b"\x1b[2J",
        b"a\0",
        b"\xff",
    ];
    let bad_passwords: [&[u8]; 4] = [b"pw\nmallory:evil", b"pw\r", b"p\0w", b"\xc3"];
    let field = |v: &[u8]| [&[v.len() as u8][..], v].concat();
    for cmd in [CMD_ADD_USER, CMD_CHANGE_PASSWORD] {
        for name in bad_names {
            let msg = [&[VERSION, cmd][..], &field(name), &field(b"pw")].concat();
            let e = Request::from_message(&msg).unwrap_err();
            assert_eq!(e.status(), Status::Malformed, "{name:?}");
        }
        for pass in bad_passwords {
            let msg = [&[VERSION, cmd][..], &field(b"carl"), &field(pass)].concat();
            let e = Request::from_message(&msg).unwrap_err();
            assert_eq!(e.status(), Status::Malformed, "{pass:?}");
        }
    }
    for name in bad_names {
        let msg = [&[VERSION, CMD_REMOVE_USER][..], &field(name)].concat();
        assert_eq!(
            Request::from_message(&msg).unwrap_err().status(),
            Status::Malformed
        );
        let msg = [&[AUTH_VERSION][..], &field(name), &field(b"pw")].concat();
        assert_eq!(
            AuthRequest::from_message(&msg).unwrap_err().status(),
            Status::Malformed
        );
    }
    // The error never carries the value.
    let msg = [
        &[VERSION, CMD_ADD_USER][..],
        &field(b"carl"),
        &field(b"sekrit\n"),
    ]
    .concat();
    assert!(!Request::from_message(&msg)
        .unwrap_err()
        .to_string()
        .contains("sekrit"));
}

#[test]
fn debug_never_shows_password() {
    let req = Request::AddUser {
        username: n("alice"),
        password: pw("hunter2"),
    };
    assert!(!format!("{req:?}").contains("hunter2"));
    let auth = AuthRequest::from_message(&[
        0x01, 0x01, b'a', 0x07, b'h', b'u', b'n', b't', b'e', b'r', b'2',
    ])
    .unwrap();
    assert!(!format!("{auth:?}").contains("hunter2"));
    assert!(auth.password.ct_eq("hunter2"));
}

#[test]
fn tree_and_fault_requests() {
    assert_eq!(Request::from_message(&[0x05, 0x06]), Ok(Request::Tree));
    assert!(
        Request::from_message(&[0x05, 0x06, 0x00]).is_err(),
        "trailing"
    );
    let fault = Request::Fault {
        node: "listener/0".into(),
        action: FaultAction::Stop,
    };
    let wire = fault.to_vec();
    assert_eq!(wire[..3], [0x05, 0x07, 10]);
    assert_eq!(*wire.last().unwrap(), 0x01);
    assert_eq!(Request::from_message(&wire), Ok(fault));
    for cut in 2..wire.len() {
        assert_eq!(Request::decode(&mut &wire[..cut]), Ok(None), "prefix {cut}");
    }
    for (bad, why) in [
        (&[0x05, 0x07, 0x00, 0x00][..], "zero-length"),
        (&[0x05, 0x07, 0x01, b' ', 0x00][..], "printable"),
        (&[0x05, 0x07, 0x01, 0x80, 0x00][..], "printable"),
        (&[0x05, 0x07, 0x01, b'x', 0x02][..], "action"),
    ] {
        let e = Request::from_message(bad).unwrap_err();
        assert_eq!(e.status(), Status::Malformed);
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn tree_replies() {
    use crate::protocol::manager::tree::*;
    let node = TreeNode {
        depth: 0,
        name: "root".into(),
        kind: NodeKind::Supervisor,
        restart: RestartType::Permanent,
        strategy: StrategyCode::OneForOne,
        state: NodeState::Running,
        intensity: 2,
        period_ms: 60_000,
        restarts: 0,
        failures: 0,
        injected: 0,
        sessions: None,
        last_failure: None,
    };
    let reply = Reply::Tree(TreeReply {
        total: 1,
        nodes: vec![node],
    });
    let wire = reply.to_vec();
    assert_eq!(wire[..7], [0x05, 0x06, 0x00, 0x00, 0x01, 0x00, 0x01]);
    assert_eq!(Reply::decode_for(Cmd::Tree, &wire), Ok(reply));
    // A failure is the 3-byte status form.
    assert_eq!(
        Reply::decode_for(Cmd::Tree, &[0x05, 0x06, 0x04]),
        Ok(Reply::Status {
            cmd: Cmd::Tree,
            status: Status::UnknownCommand
        })
    );
    assert!(Reply::decode_for(Cmd::Tree, &[0x05, 0x06, 0x00]).is_err());
    let mut trailing = wire.clone();
    trailing.push(0);
    assert!(Reply::decode_for(Cmd::Tree, &trailing).is_err());
    assert!(Reply::decode_for(Cmd::Tree, &wire[..wire.len() - 1]).is_err());
    assert_eq!(
        Reply::decode_for(Cmd::Fault, &[0x05, 0x07, 0x09]),
        Ok(Reply::Status {
            cmd: Cmd::Fault,
            status: Status::FaultInjectionOff
        })
    );
}
