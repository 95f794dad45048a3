//! `cargo +nightly fuzz run manager_decoders` (from the repository root).
//! The first input byte picks the manager-protocol decoder (and, for
//! replies, the command they answer), the rest is one whole SCTP message.
//! Checks: no panic; a decoded message re-encodes to bytes that decode to
//! the same value.
#![no_main]

use actor_socks::protocol::manager::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(v) = AuthRequest::from_message(msg) {
                assert_eq!(AuthRequest::from_message(&v.to_vec()), Ok(v));
            }
        }
        1 => {
            if let Ok(v) = AuthReply::from_message(msg) {
                assert_eq!(AuthReply::from_message(&v.to_vec()), Ok(v));
            }
        }
        2 => {
            if let Ok(v) = Request::from_message(msg) {
                assert_eq!(Request::from_message(&v.to_vec()), Ok(v));
            }
        }
        _ => {
            let cmd = Cmd::from(which >> 2);
            if let Ok(v) = Reply::decode_for(cmd, msg) {
                // Values may have been sent with leading zero bytes; the
                // re-encoding is canonical, and must decode the same.
                assert_eq!(Reply::decode_for(cmd, &v.to_vec()), Ok(v));
            }
        }
    }
});
