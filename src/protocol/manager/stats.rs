//! The body of the STATS reply (extension `CMD 0x08`): counters as
//! key/value pairs. Pure codec; see docs/manager-protocol.md section 8.
//!
//! ```text
//! STATS success: VER(0x05) CMD(0x08) STATUS(0x00) COUNT(2) COUNT x PAIR
//! PAIR = KLEN(2) KEY(1..65535, UTF-8, no control character) VALUE(8)
//! ```

use bytes::{Buf, BufMut};

use super::Error;

/// Whether `key` may be a STATS key.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= usize::from(u16::MAX) && !key.chars().any(char::is_control)
}

/// `STATUS(0x00) COUNT(2) PAIR*` (after `VER CMD`).
pub(super) fn parse_stats<B: Buf>(buf: &mut B) -> Result<Option<Vec<(String, u64)>>, Error> {
    if buf.remaining() < 3 {
        return Ok(None);
    }
    if buf.get_u8() != super::STATUS_SUCCESS {
        return Err(Error::Malformed(
            "stats reply: a failure status carries no values",
        ));
    }
    let count = buf.get_u16();
    let mut pairs = Vec::with_capacity(usize::from(count).min(1024));
    for _ in 0..count {
        if buf.remaining() < 2 {
            return Ok(None);
        }
        let len = usize::from(buf.get_u16());
        if buf.remaining() < len + 8 {
            return Ok(None);
        }
        let mut key = vec![0u8; len];
        buf.copy_to_slice(&mut key);
        let key = String::from_utf8(key).map_err(|_| Error::Malformed("stats key is not UTF-8"))?;
        if !valid_key(&key) {
            return Err(Error::Malformed(
                "stats key empty or with a control character",
            ));
        }
        pairs.push((key, buf.get_u64()));
    }
    Ok(Some(pairs))
}

/// # Panics
/// On more than 65535 pairs or an invalid key (a caller bug: the server's
/// keys are fixed names and user names).
pub(super) fn encode_stats<B: BufMut>(pairs: &[(String, u64)], buf: &mut B) {
    buf.put_u8(super::STATUS_SUCCESS);
    buf.put_u16(u16::try_from(pairs.len()).expect("at most 65535 pairs"));
    for (k, v) in pairs {
        assert!(valid_key(k), "bad stats key");
        buf.put_u16(k.len() as u16);
        buf.put_slice(k.as_bytes());
        buf.put_u64(*v);
    }
}

/// The bytes `pairs` take in a reply (with `VER CMD STATUS COUNT`).
pub fn encoded_len(pairs: &[(String, u64)]) -> usize {
    5 + pairs.iter().map(|(k, _)| 2 + k.len() + 8).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let pairs = vec![
            ("a_total".to_string(), 7),
            ("user/é/x".to_string(), u64::MAX),
        ];
        let mut wire = Vec::new();
        encode_stats(&pairs, &mut wire);
        assert_eq!(wire.len() + 2, encoded_len(&pairs));
        assert_eq!(parse_stats(&mut &wire[..]), Ok(Some(pairs)));
        for cut in 0..wire.len() {
            assert_eq!(parse_stats(&mut &wire[..cut]), Ok(None), "prefix {cut}");
        }
        let mut bad = wire.clone();
        bad[5] = 0x07; // a control character in the first key
        assert!(parse_stats(&mut &bad[..]).is_err());
        let mut bad = wire;
        bad[3] = 0; // first KLEN 0
        bad[4] = 0;
        assert!(parse_stats(&mut &bad[..]).is_err());
    }
}
