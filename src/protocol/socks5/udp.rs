//! UDP ASSOCIATE datagram header (RFC 1928 section 7).

use bytes::{Buf, BufMut};

use super::{Address, Error, UdpHeader, RSV};

impl UdpHeader {
    /// An unfragmented header (`FRAG` = 0) for `address`.
    pub fn new(address: Address) -> Self {
        UdpHeader { frag: 0, address }
    }

    /// Decodes the header and leaves `buf` positioned at DATA. `RSV` is
    /// ignored. `Ok(None)` means the datagram is truncated (drop it).
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 3 {
            return Ok(None);
        }
        let _rsv = buf.get_u16();
        let frag = buf.get_u8();
        let Some(address) = Address::decode(buf)? else {
            return Ok(None);
        };
        Ok(Some(UdpHeader { frag, address }))
    }

    /// Encodes the header; the caller appends DATA.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(RSV);
        buf.put_u8(RSV);
        buf.put_u8(self.frag);
        self.address.encode(buf);
    }

    pub fn encoded_len(&self) -> usize {
        3 + self.address.encoded_len()
    }
}
