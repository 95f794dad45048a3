//! The manager protocol (the user's seed; `docs/manager-protocol.md`). Pure:
//! no I/O. Every packet is exactly one SCTP message.
//!
//! CONTRACT (used by the rest of the crate; keep these names and signatures):
//! each message type has `decode<B: Buf>(&mut B) -> Result<Option<Self>, Error>`
//! (None = incomplete), `from_message(&[u8]) -> Result<Self, Error>` (a whole
//! SCTP message: incomplete or trailing bytes are `Error::Malformed`) and
//! `encode<B: BufMut>(&self, &mut B)`.

use bytes::{Buf, BufMut};

use crate::protocol::Password;

/// `VER` of the authentication message.
pub const AUTH_VERSION: u8 = 0x01;
/// `VER` of the auth reply, requests and replies.
pub const VERSION: u8 = 0x05;

/// Command codes. 0x00..=0x03 are the seed's; 0x04.. are extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    AddUser,
    ListUsers,
    Metrics,
    SetMaxClients,
    /// Extension 0x04: remove a user.
    RemoveUser,
    /// Extension 0x05: change a user's password.
    ChangePassword,
    Other(u8),
}

/// Status codes (spec section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    GeneralFailure,
    AuthFailed,
    UnsupportedVersion,
    UnknownCommand,
    Malformed,
    UserExists,
    UserLimit,
    /// Extension: the named user does not exist (remove/change password).
    NoSuchUser,
    Other(u8),
}

/// Client -> server, first message: `VER(0x01) ULEN UNAME PLEN PASSWD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub username: String,
    pub password: Password,
}

/// Server -> client: `VER(0x05) STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReply {
    pub status: Status,
}

/// Client -> server, second message: `VER(0x05) CMD DATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    AddUser {
        username: String,
        password: Password,
    },
    ListUsers,
    Metrics,
    SetMaxClients(u32),
    RemoveUser {
        username: String,
    },
    ChangePassword {
        username: String,
        password: Password,
    },
}

/// Server -> client, last message. Which success form to expect depends on
/// the request, so decoding a reply takes the command that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `VER CMD STATUS`: add user, set max clients, extensions, and every
    /// error reply.
    Status { cmd: Cmd, status: Status },
    /// `VER CMD HLEN HIST ALLEN ACTIVE BLEN BYTES` (server sends 8-byte values).
    Metrics {
        historic: u64,
        active: u64,
        bytes: u64,
    },
    /// `VER CMD LLEN (ULEN UNAME)*`.
    Users(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unsupported version {0:#04x}")]
    UnsupportedVersion(u8),
    #[error("unknown command {0:#04x}")]
    UnknownCommand(u8),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("value of {0} bytes does not fit in 64 bits")]
    ValueTooLarge(usize),
}

impl Error {
    /// The status a server answers with for a message that failed to decode.
    pub fn status(&self) -> Status {
        unimplemented!()
    }
}
