//! `cargo +nightly fuzz run socks5_decoders` (from the repository root).
//! The first input byte picks the SOCKS5 decoder, the rest is its input.
//! Checks: no panic; a decoded value re-encodes to `encoded_len` bytes that
//! decode to the same value; `decode_from` agrees with `decode`.
#![no_main]

use actor_socks::protocol::socks5::*;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

fn check<T: Message + PartialEq + Debug>(data: &[u8]) {
    let mut view = data;
    let got = T::decode(&mut view);
    let used = data.len() - view.len();

    let mut buf = BytesMut::from(data);
    let via_buf = decode_from::<T>(&mut buf);
    assert_eq!(got, via_buf);
    match &got {
        Ok(Some(_)) => assert_eq!(buf.len(), data.len() - used),
        _ => assert_eq!(buf.len(), data.len()),
    }

    if let Ok(Some(value)) = got {
        let mut out = Vec::new();
        value.encode(&mut out);
        assert_eq!(out.len(), value.encoded_len());
        assert_eq!(out.len(), used);
        assert_eq!(T::decode(&mut &out[..]), Ok(Some(value)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => check::<Address>(rest),
        1 => check::<Greeting>(rest),
        2 => check::<MethodSelection>(rest),
        3 => check::<AuthRequest>(rest),
        4 => check::<AuthReply>(rest),
        5 => check::<Request>(rest),
        6 => check::<Reply>(rest),
        _ => check::<UdpHeader>(rest),
    }
});
