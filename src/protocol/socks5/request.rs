//! Requests and replies (RFC 1928 sections 4 and 6).

use bytes::{Buf, BufMut};

use super::{Address, Command, Error, Reply, ReplyCode, Request, RSV, VERSION};

/// Reads `VER | CODE | RSV` and returns CODE; `RSV` is ignored.
fn decode_head<B: Buf>(buf: &mut B) -> Result<Option<u8>, Error> {
    if buf.remaining() < 1 {
        return Ok(None);
    }
    let ver = buf.get_u8();
    if ver != VERSION {
        return Err(Error::BadVersion(ver));
    }
    if buf.remaining() < 2 {
        return Ok(None);
    }
    let code = buf.get_u8();
    let _rsv = buf.get_u8();
    Ok(Some(code))
}

impl Request {
    pub fn new(command: Command, address: Address) -> Self {
        Request { command, address }
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        let Some(cmd) = decode_head(buf)? else {
            return Ok(None);
        };
        let Some(address) = Address::decode(buf)? else {
            return Ok(None);
        };
        Ok(Some(Request {
            command: Command::from(cmd),
            address,
        }))
    }

    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.command.into());
        buf.put_u8(RSV);
        self.address.encode(buf);
    }

    pub fn encoded_len(&self) -> usize {
        3 + self.address.encoded_len()
    }
}

impl Reply {
    pub fn new(code: ReplyCode, address: Address) -> Self {
        Reply { code, address }
    }

    /// A failure reply: `code` with bound address `0.0.0.0:0`.
    pub fn failure(code: ReplyCode) -> Self {
        Reply {
            code,
            address: Address::unspecified_v4(),
        }
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        let Some(rep) = decode_head(buf)? else {
            return Ok(None);
        };
        let Some(address) = Address::decode(buf)? else {
            return Ok(None);
        };
        Ok(Some(Reply {
            code: ReplyCode::from(rep),
            address,
        }))
    }

    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.code.into());
        buf.put_u8(RSV);
        self.address.encode(buf);
    }

    pub fn encoded_len(&self) -> usize {
        3 + self.address.encoded_len()
    }
}
