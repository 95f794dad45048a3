//! Method negotiation (RFC 1928 section 3) and username/password
//! sub-negotiation (RFC 1929 section 2).

use bytes::{Buf, BufMut};

use super::{
    put_short_field, short_field_len, AuthReply, AuthRequest, Error, Greeting, Method,
    MethodSelection, AUTH_STATUS_FAILURE, AUTH_STATUS_SUCCESS, AUTH_VERSION, MAX_FIELD_LEN,
    VERSION,
};
use crate::protocol::{Secret, UserName};

impl Greeting {
    pub fn new(methods: Vec<Method>) -> Self {
        Greeting { methods }
    }

    /// Whether the client offers `method`.
    pub fn offers(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let ver = buf.get_u8();
        if ver != VERSION {
            return Err(Error::BadVersion(ver));
        }
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let n = usize::from(buf.get_u8());
        if n == 0 {
            return Err(Error::NoMethods);
        }
        if buf.remaining() < n {
            return Ok(None);
        }
        let methods = (0..n).map(|_| Method::from(buf.get_u8())).collect();
        Ok(Some(Greeting { methods }))
    }

    /// Encodes the greeting. More than 255 methods is a caller bug (debug
    /// assertion; release builds send the first 255). An empty list encodes
    /// `NMETHODS` = 0, which servers reject.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        debug_assert!(self.methods.len() <= MAX_FIELD_LEN, "more than 255 methods");
        let methods = &self.methods[..self.methods.len().min(MAX_FIELD_LEN)];
        buf.put_u8(VERSION);
        buf.put_u8(methods.len() as u8);
        for &m in methods {
            buf.put_u8(m.into());
        }
    }

    pub fn encoded_len(&self) -> usize {
        2 + self.methods.len().min(MAX_FIELD_LEN)
    }
}

impl MethodSelection {
    pub const NO_AUTH: MethodSelection = MethodSelection {
        method: Method::NoAuth,
    };
    pub const USER_PASS: MethodSelection = MethodSelection {
        method: Method::UserPass,
    };
    pub const NO_ACCEPTABLE: MethodSelection = MethodSelection {
        method: Method::NoAcceptable,
    };

    pub fn new(method: Method) -> Self {
        MethodSelection { method }
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let ver = buf.get_u8();
        if ver != VERSION {
            return Err(Error::BadVersion(ver));
        }
        if buf.remaining() < 1 {
            return Ok(None);
        }
        Ok(Some(MethodSelection {
            method: Method::from(buf.get_u8()),
        }))
    }

    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.method.into());
    }

    pub fn encoded_len(&self) -> usize {
        2
    }
}

impl AuthRequest {
    pub fn new(username: UserName, password: Secret) -> Self {
        AuthRequest { username, password }
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let ver = buf.get_u8();
        if ver != AUTH_VERSION {
            return Err(Error::BadAuthVersion(ver));
        }
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let ulen = usize::from(buf.get_u8());
        // UNAME and the PLEN octet after it.
        if buf.remaining() < ulen + 1 {
            return Ok(None);
        }
        let mut name = [0u8; MAX_FIELD_LEN];
        buf.copy_to_slice(&mut name[..ulen]);
        let plen = usize::from(buf.get_u8());
        if buf.remaining() < plen {
            return Ok(None);
        }
        let mut pass = [0u8; MAX_FIELD_LEN];
        buf.copy_to_slice(&mut pass[..plen]);
        // Judged only once the whole message is in (a short read is not an error).
        let username = UserName::from_bytes(&name[..ulen])?;
        let password = Secret::from_bytes(&pass[..plen])?;
        Ok(Some(AuthRequest { username, password }))
    }

    /// Encodes the request. A name or password longer than 255 bytes is a
    /// caller bug (debug assertion; release builds send the first 255 bytes).
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(AUTH_VERSION);
        put_short_field(buf, self.username.as_bytes());
        put_short_field(buf, self.password.expose().as_bytes());
    }

    pub fn encoded_len(&self) -> usize {
        1 + short_field_len(self.username.as_bytes())
            + short_field_len(self.password.expose().as_bytes())
    }
}

impl AuthReply {
    pub const SUCCESS: AuthReply = AuthReply {
        status: AUTH_STATUS_SUCCESS,
    };
    pub const FAILURE: AuthReply = AuthReply {
        status: AUTH_STATUS_FAILURE,
    };

    /// RFC 1929: `STATUS` X'00' is success, anything else is failure.
    pub fn is_success(&self) -> bool {
        self.status == AUTH_STATUS_SUCCESS
    }

    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        if buf.remaining() < 1 {
            return Ok(None);
        }
        let ver = buf.get_u8();
        if ver != AUTH_VERSION {
            return Err(Error::BadAuthVersion(ver));
        }
        if buf.remaining() < 1 {
            return Ok(None);
        }
        Ok(Some(AuthReply {
            status: buf.get_u8(),
        }))
    }

    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(AUTH_VERSION);
        buf.put_u8(self.status);
    }

    pub fn encoded_len(&self) -> usize {
        2
    }
}
