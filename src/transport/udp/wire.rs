//! Byte-level work on whole SCTP packets (RFC 9260 section 3), for what
//! sctp-proto 0.10.8 gets wrong or cannot express: fixing fields in its
//! outgoing packets, removing parameters it cannot parse from incoming ones,
//! and building the few packets the driver sends on its own (ABORT,
//! SHUTDOWN COMPLETE). Every function here works on one packet as carried in
//! one UDP datagram (RFC 6951): a 12-byte common header, then chunks.

use crc::{Crc, CRC_32_ISCSI};

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

pub(crate) const COMMON_HEADER_LEN: usize = 12;

pub(crate) const CT_INIT: u8 = 1;
pub(crate) const CT_INIT_ACK: u8 = 2;
pub(crate) const CT_SACK: u8 = 3;
pub(crate) const CT_HEARTBEAT: u8 = 4;
pub(crate) const CT_HEARTBEAT_ACK: u8 = 5;
pub(crate) const CT_ABORT: u8 = 6;
pub(crate) const CT_SHUTDOWN: u8 = 7;
pub(crate) const CT_SHUTDOWN_ACK: u8 = 8;
pub(crate) const CT_SHUTDOWN_COMPLETE: u8 = 14;

/// The T bit of ABORT and SHUTDOWN COMPLETE: the verification tag is the
/// one the receiver of this packet put into the packet being answered.
pub(crate) const FLAG_T: u8 = 0x01;

/// INIT/INIT ACK parameters that sctp-proto 0.10.8 cannot parse and that
/// make it drop the whole chunk (their "stop processing" bit is clear):
/// IPv4 address (5), IPv6 address (6), Cookie Preservative (9), Host Name
/// Address (11). An SCTP-over-UDP association is single-homed on the UDP
/// source address anyway (RFC 6951 section 5.4), so dropping them changes
/// nothing.
const UNPARSED_INIT_PARAMS: [u16; 4] = [5, 6, 9, 11];

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// CRC32c of a packet, computed with the checksum field taken as zero.
pub(crate) fn checksum(pkt: &[u8]) -> u32 {
    let mut digest = CRC32C.digest();
    digest.update(&pkt[..8]);
    digest.update(&[0u8; 4]);
    digest.update(&pkt[COMMON_HEADER_LEN..]);
    digest.finalize()
}

/// Whether the packet is long enough and its CRC32c is right. The checksum
/// is stored least significant byte first, as sctp-proto, Linux and usrsctp
/// all do.
pub(crate) fn checksum_ok(pkt: &[u8]) -> bool {
    pkt.len() >= COMMON_HEADER_LEN
        && u32::from_le_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]) == checksum(pkt)
}

pub(crate) fn set_checksum(pkt: &mut [u8]) {
    let sum = checksum(pkt);
    pkt[8..12].copy_from_slice(&sum.to_le_bytes());
}

/// The common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub src_port: u16,
    pub dst_port: u16,
    pub vtag: u32,
}

pub(crate) fn header(pkt: &[u8]) -> Option<Header> {
    if pkt.len() < COMMON_HEADER_LEN {
        return None;
    }
    Some(Header {
        src_port: be16(pkt, 0),
        dst_port: be16(pkt, 2),
        vtag: be32(pkt, 4),
    })
}

/// One chunk inside a packet: its type, flags, where it starts and its
/// length as written in the chunk header (without trailing padding).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkRef {
    pub typ: u8,
    pub flags: u8,
    pub offset: usize,
    pub len: usize,
}

/// The chunks of a packet; stops at the first malformed chunk header.
pub(crate) fn chunks(pkt: &[u8]) -> impl Iterator<Item = ChunkRef> + '_ {
    let mut off = COMMON_HEADER_LEN;
    std::iter::from_fn(move || {
        if off + 4 > pkt.len() {
            return None;
        }
        let len = be16(pkt, off + 2) as usize;
        if len < 4 || off + len > pkt.len() {
            return None;
        }
        let c = ChunkRef {
            typ: pkt[off],
            flags: pkt[off + 1],
            offset: off,
            len,
        };
        off += pad4(len);
        Some(c)
    })
}

pub(crate) fn first_chunk_type(pkt: &[u8]) -> Option<u8> {
    chunks(pkt).next().map(|c| c.typ)
}

pub(crate) fn has_chunk(pkt: &[u8], typ: u8) -> bool {
    chunks(pkt).any(|c| c.typ == typ)
}

/// Initiate Tag and Initial TSN of the INIT or INIT ACK a packet starts with.
pub(crate) fn init_tag_and_tsn(pkt: &[u8]) -> Option<(u32, u32)> {
    let c = chunks(pkt).next()?;
    if (c.typ != CT_INIT && c.typ != CT_INIT_ACK) || c.len < 20 {
        return None;
    }
    Some((be32(pkt, c.offset + 4), be32(pkt, c.offset + 16)))
}

/// Cumulative TSN Ack of the last SACK chunk in a packet.
pub(crate) fn sack_cumulative_tsn(pkt: &[u8]) -> Option<u32> {
    chunks(pkt)
        .filter(|c| c.typ == CT_SACK && c.len >= 8)
        .last()
        .map(|c| be32(pkt, c.offset + 4))
}

/// Rewrites the Cumulative TSN Ack of every SHUTDOWN chunk in the packet to
/// `cum_tsn` and fixes the checksum. Returns whether anything was changed.
///
/// sctp-proto 0.10.8 fills this field with its own `cumulative_tsn_ack_point`
/// (the highest of *our* TSNs the peer acknowledged) where RFC 9260 section
/// 3.3.8 wants the last of the *peer's* TSNs we received in sequence
/// (`peer_last_tsn`); a strict peer such as usrsctp sees an acknowledgement
/// of data it never sent and answers with ABORT.
pub(crate) fn patch_shutdown_cumulative_tsn(pkt: &mut [u8], cum_tsn: u32) -> bool {
    let offsets: Vec<usize> = chunks(pkt)
        .filter(|c| c.typ == CT_SHUTDOWN && c.len >= 8)
        .map(|c| c.offset)
        .collect();
    let mut changed = false;
    for off in offsets {
        if be32(pkt, off + 4) != cum_tsn {
            pkt[off + 4..off + 8].copy_from_slice(&cum_tsn.to_be_bytes());
            changed = true;
        }
    }
    if changed {
        set_checksum(pkt);
    }
    changed
}

/// If the packet is an INIT or INIT ACK carrying parameters sctp-proto
/// 0.10.8 cannot parse (address parameters and the like, see
/// [`UNPARSED_INIT_PARAMS`]), returns a copy without them and with a fresh
/// checksum. The caller must have checked the original checksum.
pub(crate) fn strip_unparsed_init_params(pkt: &[u8]) -> Option<Vec<u8>> {
    let c = chunks(pkt).next()?;
    if (c.typ != CT_INIT && c.typ != CT_INIT_ACK) || c.len < 20 {
        return None;
    }
    let params_start = c.offset + 20;
    let chunk_end = c.offset + c.len;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    let mut off = params_start;
    while off + 4 <= chunk_end {
        let typ = be16(pkt, off);
        let plen = be16(pkt, off + 2) as usize;
        if plen < 4 || off + plen > chunk_end {
            // Malformed: leave the packet to sctp-proto as it is.
            return None;
        }
        if UNPARSED_INIT_PARAMS.contains(&typ) {
            removed = true;
        } else {
            kept.push(&pkt[off..off + plen]);
        }
        off += pad4(plen);
    }
    if !removed {
        return None;
    }
    let mut out = Vec::with_capacity(pkt.len());
    out.extend_from_slice(&pkt[..params_start]);
    for (i, p) in kept.iter().enumerate() {
        out.extend_from_slice(p);
        if i + 1 != kept.len() {
            out.resize(pad4(out.len()), 0);
        }
    }
    // The chunk length covers the padding of every parameter but the last.
    let new_len = out.len() - c.offset;
    out[c.offset + 2..c.offset + 4].copy_from_slice(&(new_len as u16).to_be_bytes());
    out.resize(pad4(out.len()), 0);
    // INIT and INIT ACK travel alone, but keep anything that followed.
    let rest = c.offset + pad4(c.len);
    if rest < pkt.len() {
        out.extend_from_slice(&pkt[rest..]);
    }
    set_checksum(&mut out);
    Some(out)
}

/// A copy of the packet without its chunks of type `typ` (fresh checksum),
/// or `None` when it has none. The result may hold no chunk at all.
pub(crate) fn without_chunks(pkt: &[u8], typ: u8) -> Option<Vec<u8>> {
    if !has_chunk(pkt, typ) {
        return None;
    }
    let mut out = pkt[..COMMON_HEADER_LEN].to_vec();
    for c in chunks(pkt).filter(|c| c.typ != typ) {
        let end = (c.offset + pad4(c.len)).min(pkt.len());
        out.extend_from_slice(&pkt[c.offset..end]);
        out.resize(pad4(out.len()), 0);
    }
    set_checksum(&mut out);
    Some(out)
}

/// A HEARTBEAT chunk whose Heartbeat Information (parameter type 1) is
/// `info`; the peer must echo it in a HEARTBEAT ACK (RFC 9260 section 8.3).
pub(crate) fn heartbeat_packet(src_port: u16, dst_port: u16, vtag: u32, info: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[CT_HEARTBEAT, 0, 0, 16]);
    p.extend_from_slice(&[0, 1, 0, 12]);
    p.extend_from_slice(&info.to_be_bytes());
    set_checksum(&mut p);
    p
}

fn control_packet(src_port: u16, dst_port: u16, vtag: u32, typ: u8, flags: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[typ, flags, 0, 4]);
    set_checksum(&mut p);
    p
}

/// An ABORT chunk without error causes.
pub(crate) fn abort_packet(src_port: u16, dst_port: u16, vtag: u32, t_bit: bool) -> Vec<u8> {
    let flags = if t_bit { FLAG_T } else { 0 };
    control_packet(src_port, dst_port, vtag, CT_ABORT, flags)
}

/// A SHUTDOWN COMPLETE chunk.
pub(crate) fn shutdown_complete_packet(
    src_port: u16,
    dst_port: u16,
    vtag: u32,
    t_bit: bool,
) -> Vec<u8> {
    let flags = if t_bit { FLAG_T } else { 0 };
    control_packet(src_port, dst_port, vtag, CT_SHUTDOWN_COMPLETE, flags)
}

/// The answer RFC 9260 section 8.4 prescribes for an "out of the blue"
/// packet (one that belongs to no association we know), if any: SHUTDOWN
/// ACK gets SHUTDOWN COMPLETE, INIT gets ABORT (when we refuse it), ABORT,
/// SHUTDOWN COMPLETE and anything malformed get nothing, everything else
/// gets ABORT. Both answers reflect the packet's verification tag (T bit).
pub(crate) fn out_of_the_blue_reply(pkt: &[u8]) -> Option<Vec<u8>> {
    if !checksum_ok(pkt) {
        return None;
    }
    let h = header(pkt)?;
    let mut types = chunks(pkt).map(|c| c.typ);
    let first = types.next()?;
    match first {
        CT_ABORT | CT_SHUTDOWN_COMPLETE => None,
        CT_SHUTDOWN_ACK => Some(shutdown_complete_packet(
            h.dst_port, h.src_port, h.vtag, true,
        )),
        CT_INIT => {
            let (tag, _) = init_tag_and_tsn(pkt)?;
            Some(abort_packet(h.dst_port, h.src_port, tag, false))
        }
        _ => {
            if chunks(pkt).any(|c| c.typ == CT_ABORT || c.typ == CT_SHUTDOWN_COMPLETE) {
                None
            } else {
                Some(abort_packet(h.dst_port, h.src_port, h.vtag, true))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_with_params(params: &[(u16, &[u8])]) -> Vec<u8> {
        let mut chunk = vec![CT_INIT, 0, 0, 0];
        chunk.extend_from_slice(&0x1122_3344u32.to_be_bytes()); // initiate tag
        chunk.extend_from_slice(&65536u32.to_be_bytes()); // a_rwnd
        chunk.extend_from_slice(&10u16.to_be_bytes());
        chunk.extend_from_slice(&10u16.to_be_bytes());
        chunk.extend_from_slice(&777u32.to_be_bytes()); // initial TSN
        for (i, (t, v)) in params.iter().enumerate() {
            chunk.extend_from_slice(&t.to_be_bytes());
            chunk.extend_from_slice(&((4 + v.len()) as u16).to_be_bytes());
            chunk.extend_from_slice(v);
            if i + 1 != params.len() {
                chunk.resize(pad4(chunk.len()), 0);
            }
        }
        let len = chunk.len() as u16;
        chunk[2..4].copy_from_slice(&len.to_be_bytes());
        chunk.resize(pad4(chunk.len()), 0);
        let mut pkt = vec![0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0, 0, 0, 0, 0];
        pkt.extend_from_slice(&chunk);
        set_checksum(&mut pkt);
        pkt
    }

    #[test]
    fn strips_address_parameters_and_keeps_the_rest() {
        let pkt = init_with_params(&[
            (5, &[127, 0, 0, 1]),
            (0x8008, &[0x82, 0xc0, 0x0f]),
            (6, &[0; 16]),
            (12, &[0, 5, 0, 6]),
        ]);
        assert!(checksum_ok(&pkt));
        let out = strip_unparsed_init_params(&pkt).expect("changed");
        assert!(checksum_ok(&out));
        assert_eq!(init_tag_and_tsn(&out), Some((0x1122_3344, 777)));
        let c = chunks(&out).next().unwrap();
        // 20 fixed + 8 (0x8008, 7 bytes padded) + 8 (type 12)
        assert_eq!(c.len, 36);
        assert_eq!(out.len(), 12 + 36);
        assert!(strip_unparsed_init_params(&out).is_none());
    }

    #[test]
    fn last_parameter_padding_is_not_counted() {
        let pkt = init_with_params(&[(12, &[0, 5]), (5, &[127, 0, 0, 1]), (0x8008, &[0x82])]);
        let out = strip_unparsed_init_params(&pkt).unwrap();
        let c = chunks(&out).next().unwrap();
        assert_eq!(c.len, 20 + 8 + 5);
        assert_eq!(out.len(), 12 + 20 + 8 + 8);
        assert!(checksum_ok(&out));
    }

    #[test]
    fn patches_shutdown() {
        let mut pkt = vec![
            0,
            1,
            0,
            2,
            0,
            0,
            0,
            9,
            0,
            0,
            0,
            0,
            CT_SHUTDOWN,
            0,
            0,
            8,
            0,
            0,
            0,
            5,
        ];
        set_checksum(&mut pkt);
        assert!(patch_shutdown_cumulative_tsn(&mut pkt, 0xdead_beef));
        assert!(checksum_ok(&pkt));
        assert_eq!(be32(&pkt, 16), 0xdead_beef);
        assert!(!patch_shutdown_cumulative_tsn(&mut pkt, 0xdead_beef));
    }

    #[test]
    fn removes_heartbeat_acks() {
        let mut pkt = vec![0, 1, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0];
        pkt.extend_from_slice(&[
            CT_HEARTBEAT_ACK,
            0,
            0,
            16,
            0,
            1,
            0,
            12,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
        ]);
        pkt.extend_from_slice(&[CT_SACK, 0, 0, 16, 0, 0, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
        set_checksum(&mut pkt);
        let out = without_chunks(&pkt, CT_HEARTBEAT_ACK).unwrap();
        assert!(checksum_ok(&out));
        assert_eq!(first_chunk_type(&out), Some(CT_SACK));
        assert_eq!(sack_cumulative_tsn(&out), Some(5));
        assert_eq!(out.len(), 12 + 16);
        let only = without_chunks(&out, CT_SACK).unwrap();
        assert_eq!(only.len(), 12);
        assert!(first_chunk_type(&only).is_none());
        let hb = heartbeat_packet(1, 2, 3, 42);
        assert!(checksum_ok(&hb));
        assert_eq!(first_chunk_type(&hb), Some(CT_HEARTBEAT));
    }

    #[test]
    fn ootb_replies() {
        let mut sa = vec![0, 1, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, CT_SHUTDOWN_ACK, 0, 0, 4];
        set_checksum(&mut sa);
        let r = out_of_the_blue_reply(&sa).unwrap();
        assert_eq!(
            header(&r).unwrap(),
            Header {
                src_port: 2,
                dst_port: 1,
                vtag: 9
            }
        );
        assert_eq!(first_chunk_type(&r), Some(CT_SHUTDOWN_COMPLETE));
        assert_eq!(r[13], FLAG_T);
        let ab = abort_packet(1, 2, 3, true);
        assert!(out_of_the_blue_reply(&ab).is_none());
        let init = init_with_params(&[]);
        let r = out_of_the_blue_reply(&init).unwrap();
        assert_eq!(header(&r).unwrap().vtag, 0x1122_3344);
        assert_eq!(r[13], 0);
    }
}
