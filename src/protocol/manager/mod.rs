//! The manager protocol (the user's seed; `docs/manager-protocol.md`). Pure:
//! no I/O. Every packet is exactly one SCTP message.
//!
//! CONTRACT (used by the rest of the crate; keep these names and signatures):
//! each message type has `decode<B: Buf>(&mut B) -> Result<Option<Self>, Error>`
//! (None = incomplete), `from_message(&[u8]) -> Result<Self, Error>` (a whole
//! SCTP message: incomplete or trailing bytes are `Error::Malformed`) and
//! `encode<B: BufMut>(&self, &mut B)`.
//!
//! [`Reply`] is the exception: which success form a reply takes depends on the
//! command that was sent, so it is decoded with [`Reply::decode_for`] from a
//! whole message.
//!
//! # Decoding
//! `decode` never panics and never treats "not enough bytes yet" as an error:
//! it returns `Ok(None)`. It reports an error as soon as the bytes it has seen
//! are wrong (a bad version is an error even before the rest has arrived).
//! On `Ok(Some(_))` exactly the message's bytes are consumed. On `Ok(None)` or
//! `Err(_)` nothing is consumed when the buffer is contiguous (`&[u8]`,
//! `Bytes`, `BytesMut`); with a non-contiguous buffer (e.g. `Chain`) the
//! buffer may be partly consumed and the caller decodes again from the start
//! of the message.
//!
//! # Encoding
//! Encoders are infallible for values the protocol can carry. User names and
//! passwords are [`UserName`] and [`Secret`], which fit their fields by
//! construction (decoding checks the same rules: a name or password outside
//! them is [`Error::Credential`], answered with STATUS 0x05). A user list of
//! more than 255 names cannot be carried: encoding one is a caller bug and
//! panics; check first with [`Reply::users`].

use bytes::{Buf, BufMut};
use std::fmt;

pub mod stats;
pub mod tree;
pub use tree::{FaultAction, TreeNode, TreeReply};

use crate::protocol::credentials::Field;
use crate::protocol::{CredentialError, Secret, UserName};

// ---------------------------------------------------------------------------
// Wire constants: every fixed byte of the protocol, in one table.
// ---------------------------------------------------------------------------

/// `VER` of the authentication message.
pub const AUTH_VERSION: u8 = 0x01;
/// `VER` of the auth reply, requests and replies.
pub const VERSION: u8 = 0x05;

/// `CMD` 0x00: add user (seed).
pub const CMD_ADD_USER: u8 = 0x00;
/// `CMD` 0x01: list users (seed).
pub const CMD_LIST_USERS: u8 = 0x01;
/// `CMD` 0x02: get metrics (seed).
pub const CMD_METRICS: u8 = 0x02;
/// `CMD` 0x03: set max clients (seed).
pub const CMD_SET_MAX_CLIENTS: u8 = 0x03;
/// `CMD` 0x04: remove user (extension).
pub const CMD_REMOVE_USER: u8 = 0x04;
/// `CMD` 0x05: change password (extension).
pub const CMD_CHANGE_PASSWORD: u8 = 0x05;
/// `CMD` 0x06: the supervision tree (extension).
pub const CMD_TREE: u8 = 0x06;
/// `CMD` 0x07: inject a fault (extension; `--fault-injection` only).
pub const CMD_FAULT: u8 = 0x07;
/// `CMD` 0x08: every counter as key/value pairs (extension).
pub const CMD_STATS: u8 = 0x08;

/// `STATUS` 0x00: success.
pub const STATUS_SUCCESS: u8 = 0x00;
/// `STATUS` 0x01: general server failure.
pub const STATUS_GENERAL_FAILURE: u8 = 0x01;
/// `STATUS` 0x02: authentication failed.
pub const STATUS_AUTH_FAILED: u8 = 0x02;
/// `STATUS` 0x03: unsupported version.
pub const STATUS_UNSUPPORTED_VERSION: u8 = 0x03;
/// `STATUS` 0x04: unknown command.
pub const STATUS_UNKNOWN_COMMAND: u8 = 0x04;
/// `STATUS` 0x05: malformed message.
pub const STATUS_MALFORMED: u8 = 0x05;
/// `STATUS` 0x06: user already exists.
pub const STATUS_USER_EXISTS: u8 = 0x06;
/// `STATUS` 0x07: user limit reached.
pub const STATUS_USER_LIMIT: u8 = 0x07;
/// `STATUS` 0x08 (extension): no such user.
pub const STATUS_NO_SUCH_USER: u8 = 0x08;
/// `STATUS` 0x09 (extension): fault injection is off on this server.
pub const STATUS_FAULT_INJECTION_OFF: u8 = 0x09;
/// `STATUS` 0x0A (extension): no such node (or not a worker).
pub const STATUS_NO_SUCH_NODE: u8 = 0x0A;
/// `STATUS` 0x0B (extension): the server is shutting down; a command that
/// would change it is refused (reading commands are still answered).
pub const STATUS_SHUTTING_DOWN: u8 = 0x0B;

/// `SLEN` of set max clients: the only valid value.
pub const SET_MAX_CLIENTS_SLEN: u8 = 4;
/// `HLEN`, `ALLEN`, `BLEN` as the server sends them (u64 big-endian).
pub const METRICS_VALUE_LEN: u8 = 8;
/// Longest user name or password (`ULEN`/`PLEN` are one byte, 0 is invalid).
pub const MAX_FIELD_LEN: usize = 255;
/// Most users in a list reply (`LLEN` is one byte).
pub const MAX_USERS: usize = 255;

// ---------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------

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
    /// Extension 0x06: the supervision tree.
    Tree,
    /// Extension 0x07: inject a fault into a node.
    Fault,
    /// Extension 0x08: every counter, as key/value pairs.
    Stats,
    Other(u8),
}

impl From<u8> for Cmd {
    fn from(b: u8) -> Self {
        match b {
            CMD_ADD_USER => Cmd::AddUser,
            CMD_LIST_USERS => Cmd::ListUsers,
            CMD_METRICS => Cmd::Metrics,
            CMD_SET_MAX_CLIENTS => Cmd::SetMaxClients,
            CMD_REMOVE_USER => Cmd::RemoveUser,
            CMD_CHANGE_PASSWORD => Cmd::ChangePassword,
            CMD_TREE => Cmd::Tree,
            CMD_FAULT => Cmd::Fault,
            CMD_STATS => Cmd::Stats,
            other => Cmd::Other(other),
        }
    }
}

impl From<Cmd> for u8 {
    fn from(c: Cmd) -> u8 {
        match c {
            Cmd::AddUser => CMD_ADD_USER,
            Cmd::ListUsers => CMD_LIST_USERS,
            Cmd::Metrics => CMD_METRICS,
            Cmd::SetMaxClients => CMD_SET_MAX_CLIENTS,
            Cmd::RemoveUser => CMD_REMOVE_USER,
            Cmd::ChangePassword => CMD_CHANGE_PASSWORD,
            Cmd::Tree => CMD_TREE,
            Cmd::Fault => CMD_FAULT,
            Cmd::Stats => CMD_STATS,
            Cmd::Other(b) => b,
        }
    }
}

impl Cmd {
    /// The command's name in words ("add user", ...).
    pub fn description(self) -> &'static str {
        match self {
            Cmd::AddUser => "add user",
            Cmd::ListUsers => "list users",
            Cmd::Metrics => "get metrics",
            Cmd::SetMaxClients => "set max clients",
            Cmd::RemoveUser => "remove user",
            Cmd::ChangePassword => "change password",
            Cmd::Tree => "supervision tree",
            Cmd::Fault => "inject fault",
            Cmd::Stats => "statistics",
            Cmd::Other(_) => "unknown command",
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::Other(b) => write!(f, "unknown command {b:#04x}"),
            c => f.write_str(c.description()),
        }
    }
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
    /// Extension: FAULT on a server started without `--fault-injection`.
    FaultInjectionOff,
    /// Extension: FAULT names no node (or a supervisor, not a worker).
    NoSuchNode,
    /// Extension: the server is draining; changes are refused.
    ShuttingDown,
    Other(u8),
}

impl From<u8> for Status {
    fn from(b: u8) -> Self {
        match b {
            STATUS_SUCCESS => Status::Success,
            STATUS_GENERAL_FAILURE => Status::GeneralFailure,
            STATUS_AUTH_FAILED => Status::AuthFailed,
            STATUS_UNSUPPORTED_VERSION => Status::UnsupportedVersion,
            STATUS_UNKNOWN_COMMAND => Status::UnknownCommand,
            STATUS_MALFORMED => Status::Malformed,
            STATUS_USER_EXISTS => Status::UserExists,
            STATUS_USER_LIMIT => Status::UserLimit,
            STATUS_NO_SUCH_USER => Status::NoSuchUser,
            STATUS_FAULT_INJECTION_OFF => Status::FaultInjectionOff,
            STATUS_NO_SUCH_NODE => Status::NoSuchNode,
            STATUS_SHUTTING_DOWN => Status::ShuttingDown,
            other => Status::Other(other),
        }
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Success => STATUS_SUCCESS,
            Status::GeneralFailure => STATUS_GENERAL_FAILURE,
            Status::AuthFailed => STATUS_AUTH_FAILED,
            Status::UnsupportedVersion => STATUS_UNSUPPORTED_VERSION,
            Status::UnknownCommand => STATUS_UNKNOWN_COMMAND,
            Status::Malformed => STATUS_MALFORMED,
            Status::UserExists => STATUS_USER_EXISTS,
            Status::UserLimit => STATUS_USER_LIMIT,
            Status::NoSuchUser => STATUS_NO_SUCH_USER,
            Status::FaultInjectionOff => STATUS_FAULT_INJECTION_OFF,
            Status::NoSuchNode => STATUS_NO_SUCH_NODE,
            Status::ShuttingDown => STATUS_SHUTTING_DOWN,
            Status::Other(b) => b,
        }
    }
}

impl Status {
    /// `true` for `0x00`.
    pub fn is_success(self) -> bool {
        self == Status::Success
    }

    /// The status in words, for the client to print ("authentication failed").
    pub fn description(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::GeneralFailure => "general server failure",
            Status::AuthFailed => "authentication failed",
            Status::UnsupportedVersion => "unsupported version",
            Status::UnknownCommand => "unknown command",
            Status::Malformed => "malformed message",
            Status::UserExists => "user already exists",
            Status::UserLimit => "user limit reached",
            Status::NoSuchUser => "no such user",
            Status::FaultInjectionOff => {
                "fault injection is off (start the server with --fault-injection)"
            }
            Status::NoSuchNode => "no such node",
            Status::ShuttingDown => "the server is shutting down (changes are refused)",
            Status::Other(_) => "unknown status",
        }
    }
}

impl fmt::Display for Status {
    /// The description; an unknown code also shows its value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Other(b) => write!(f, "unknown status {b:#04x}"),
            s => f.write_str(s.description()),
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// Client -> server, first message: `VER(0x01) ULEN UNAME PLEN PASSWD`.
///
/// ```text
/// +-----+------+----------+------+----------+
/// | VER | ULEN |  UNAME   | PLEN |  PASSWD  |
/// +-----+------+----------+------+----------+
/// |  1  |  1   | 1 to 255 |  1   | 1 to 255 |
/// +-----+------+----------+------+----------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub username: UserName,
    pub password: Secret,
}

/// Server -> client: `VER(0x05) STATUS`.
///
/// ```text
/// +-----+--------+
/// | VER | STATUS |
/// +-----+--------+
/// |  1  |   1    |
/// +-----+--------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReply {
    pub status: Status,
}

/// Client -> server, second message: `VER(0x05) CMD DATA`.
///
/// ```text
/// +-----+-----+----------+
/// | VER | CMD |   DATA   |
/// +-----+-----+----------+
/// |  1  |  1  | variable |
/// +-----+-----+----------+
///
/// CMD 0x00 add user        DATA = ULEN(1) UNAME(1..255) PLEN(1) PASSWD(1..255)
/// CMD 0x01 list users      DATA = empty
/// CMD 0x02 get metrics     DATA = empty
/// CMD 0x03 set max clients DATA = SLEN(1) = 0x04, SIZE(4) u32 big-endian
/// CMD 0x04 remove user     DATA = ULEN(1) UNAME(1..255)                 (extension)
/// CMD 0x05 change password DATA = ULEN(1) UNAME(1..255) PLEN(1) PASSWD(1..255)
///                                                                        (extension)
/// CMD 0x06 tree            DATA = empty                                 (extension)
/// CMD 0x07 inject fault    DATA = NLEN(1) NODE(1..255) ACTION(1)        (extension)
/// CMD 0x08 statistics      DATA = empty                                 (extension)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    AddUser {
        username: UserName,
        password: Secret,
    },
    ListUsers,
    Metrics,
    SetMaxClients(u32),
    RemoveUser {
        username: UserName,
    },
    ChangePassword {
        username: UserName,
        password: Secret,
    },
    /// The supervision tree.
    Tree,
    /// Inject a fault into a node: `registry`, `listener/0`, `session/17`...
    /// (printable ASCII, 1..=255 bytes).
    Fault {
        node: String,
        action: FaultAction,
    },
    /// Every counter, as key/value pairs.
    Stats,
}

/// Server -> client, last message. Which success form to expect depends on
/// the request, so decoding a reply takes the command that was sent.
///
/// ```text
/// Status form (add user, set max clients, extensions; every error reply):
/// +-----+-----+--------+
/// | VER | CMD | STATUS |
/// +-----+-----+--------+
/// |  1  |  1  |   1    |
/// +-----+-----+--------+
///
/// Metrics (CMD 0x02):
/// +-----+-----+------+----------+-------+----------+------+----------+
/// | VER | CMD | HLEN |   HIST   | ALLEN |  ACTIVE  | BLEN |  BYTES   |
/// +-----+-----+------+----------+-------+----------+------+----------+
/// |  1  |  1  |  1   | 1 to 255 |   1   | 1 to 255 |  1   | 1 to 255 |
/// +-----+-----+------+----------+-------+----------+------+----------+
///
/// List users (CMD 0x01):
/// +-----+-----+------+--------------------------------+
/// | VER | CMD | LLEN | LLEN x ( ULEN(1) UNAME(ULEN) ) |
/// +-----+-----+------+--------------------------------+
/// ```
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
    Users(Vec<UserName>),
    /// `VER CMD(0x06) STATUS(0x00) TOTAL(2) COUNT(2) NODE*` (see [`tree`]).
    Tree(TreeReply),
    /// `VER CMD(0x08) STATUS(0x00) COUNT(2) (KLEN(2) KEY VALUE(8))*` (see
    /// [`stats`]).
    Stats(Vec<(String, u64)>),
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
    /// A user name or password outside the credential rules
    /// ([`crate::protocol::credentials`]).
    #[error("malformed message: {0}")]
    Credential(#[from] CredentialError),
}

impl Error {
    /// The status a server answers with for a message that failed to decode.
    pub fn status(&self) -> Status {
        match self {
            Error::UnsupportedVersion(_) => Status::UnsupportedVersion,
            Error::UnknownCommand(_) => Status::UnknownCommand,
            Error::Malformed(_) | Error::ValueTooLarge(_) | Error::Credential(_) => {
                Status::Malformed
            }
        }
    }
}

/// The command of a request message, so that a server can echo `CMD` in its
/// error reply even when the request does not decode: the second byte, if
/// there is one (no check of `VER`).
pub fn peek_cmd(msg: &[u8]) -> Option<Cmd> {
    msg.get(1).copied().map(Cmd::from)
}

// ---------------------------------------------------------------------------
// Decoding helpers: every read checks `remaining()` first.
// ---------------------------------------------------------------------------

/// `Ok(None)` from the enclosing decoder when fewer than `$n` bytes remain.
macro_rules! need {
    ($buf:expr, $n:expr) => {
        if $buf.remaining() < $n {
            return Ok(None);
        }
    };
}

/// `LEN(1) VALUE(LEN)` with LEN 1..=255: the raw bytes (zero length is an
/// error as soon as it is seen).
fn read_field<B: Buf>(buf: &mut B, field: Field) -> Result<Option<Vec<u8>>, Error> {
    need!(buf, 1);
    let len = buf.get_u8() as usize;
    if len == 0 {
        return Err(Error::Credential(CredentialError::Empty(field)));
    }
    need!(buf, len);
    let mut bytes = vec![0u8; len];
    buf.copy_to_slice(&mut bytes);
    Ok(Some(bytes))
}

/// A user-name field, checked against the credential rules.
fn read_name<B: Buf>(buf: &mut B) -> Result<Option<UserName>, Error> {
    match read_field(buf, Field::UserName)? {
        None => Ok(None),
        Some(b) => Ok(Some(UserName::from_bytes(&b)?)),
    }
}

/// A password field, checked against the credential rules.
fn read_secret<B: Buf>(buf: &mut B) -> Result<Option<Secret>, Error> {
    match read_field(buf, Field::Password)? {
        None => Ok(None),
        Some(b) => Ok(Some(Secret::from_bytes(&b)?)),
    }
}

/// Writes `LEN VALUE`; the credential types are 1..=255 bytes by construction.
fn put_field<B: BufMut>(buf: &mut B, value: &str) {
    debug_assert!((1..=MAX_FIELD_LEN).contains(&value.len()));
    buf.put_u8(value.len() as u8);
    buf.put_slice(value.as_bytes());
}

/// Runs `parse` on a copy of the buffer's bytes when it is contiguous, and
/// consumes them only on success; `None` when the buffer is not contiguous.
fn decode_contiguous<B: Buf, T>(
    buf: &mut B,
    parse: impl FnOnce(&mut &[u8]) -> Result<Option<T>, Error>,
) -> Option<Result<Option<T>, Error>> {
    let chunk = buf.chunk();
    if chunk.len() != buf.remaining() {
        return None;
    }
    let mut view = chunk;
    let result = parse(&mut view);
    let used = chunk.len() - view.len();
    if let Ok(Some(_)) = result {
        buf.advance(used);
    }
    Some(result)
}

/// A whole message: incomplete or trailing bytes are `Malformed`.
fn whole_message<T>(
    msg: &[u8],
    parse: impl FnOnce(&mut &[u8]) -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let mut view = msg;
    match parse(&mut view)? {
        None => Err(Error::Malformed("truncated message")),
        Some(_) if !view.is_empty() => Err(Error::Malformed("trailing bytes")),
        Some(value) => Ok(value),
    }
}

// ---------------------------------------------------------------------------
// AuthRequest
// ---------------------------------------------------------------------------

impl AuthRequest {
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        decode_contiguous(buf, |b| Self::parse(b)).unwrap_or_else(|| Self::parse(buf))
    }

    pub fn from_message(msg: &[u8]) -> Result<Self, Error> {
        whole_message(msg, |b| Self::parse(b))
    }

    /// # Panics
    /// If the user name or password is not 1..=255 bytes.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(AUTH_VERSION);
        put_field(buf, self.username.as_str());
        put_field(buf, self.password.expose());
    }

    /// The encoding as one message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(3 + self.username.len() + self.password.expose().len());
        self.encode(&mut v);
        v
    }

    fn parse<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        need!(buf, 1);
        let ver = buf.get_u8();
        if ver != AUTH_VERSION {
            return Err(Error::UnsupportedVersion(ver));
        }
        let Some(username) = read_name(buf)? else {
            return Ok(None);
        };
        let Some(password) = read_secret(buf)? else {
            return Ok(None);
        };
        Ok(Some(AuthRequest { username, password }))
    }
}

// ---------------------------------------------------------------------------
// AuthReply
// ---------------------------------------------------------------------------

impl AuthReply {
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        decode_contiguous(buf, |b| Self::parse(b)).unwrap_or_else(|| Self::parse(buf))
    }

    pub fn from_message(msg: &[u8]) -> Result<Self, Error> {
        whole_message(msg, |b| Self::parse(b))
    }

    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.status.into());
    }

    /// The encoding as one message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2);
        self.encode(&mut v);
        v
    }

    fn parse<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        need!(buf, 1);
        let ver = buf.get_u8();
        if ver != VERSION {
            return Err(Error::UnsupportedVersion(ver));
        }
        need!(buf, 1);
        Ok(Some(AuthReply {
            status: Status::from(buf.get_u8()),
        }))
    }
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

impl Request {
    /// Decodes `VER CMD DATA`. `VER` is checked before `CMD`: a message with
    /// both wrong is `UnsupportedVersion`. `ListUsers`/`Metrics` are complete
    /// after two bytes; use [`Request::from_message`] to reject trailing bytes.
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        decode_contiguous(buf, |b| Self::parse(b)).unwrap_or_else(|| Self::parse(buf))
    }

    pub fn from_message(msg: &[u8]) -> Result<Self, Error> {
        whole_message(msg, |b| Self::parse(b))
    }

    /// # Panics
    /// If a user name or password is not 1..=255 bytes.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.cmd().into());
        match self {
            Request::AddUser { username, password }
            | Request::ChangePassword { username, password } => {
                put_field(buf, username.as_str());
                put_field(buf, password.expose());
            }
            Request::ListUsers | Request::Metrics => {}
            Request::SetMaxClients(n) => {
                buf.put_u8(SET_MAX_CLIENTS_SLEN);
                buf.put_u32(*n);
            }
            Request::RemoveUser { username } => put_field(buf, username.as_str()),
            Request::Tree | Request::Stats => {}
            Request::Fault { node, action } => {
                assert!(tree::valid_node_name(node.as_bytes()), "bad node name");
                buf.put_u8(node.len() as u8);
                buf.put_slice(node.as_bytes());
                buf.put_u8((*action).into());
            }
        }
    }

    /// The encoding as one message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The request's command code.
    pub fn cmd(&self) -> Cmd {
        match self {
            Request::AddUser { .. } => Cmd::AddUser,
            Request::ListUsers => Cmd::ListUsers,
            Request::Metrics => Cmd::Metrics,
            Request::SetMaxClients(_) => Cmd::SetMaxClients,
            Request::RemoveUser { .. } => Cmd::RemoveUser,
            Request::ChangePassword { .. } => Cmd::ChangePassword,
            Request::Tree => Cmd::Tree,
            Request::Stats => Cmd::Stats,
            Request::Fault { .. } => Cmd::Fault,
        }
    }

    fn parse<B: Buf>(buf: &mut B) -> Result<Option<Self>, Error> {
        need!(buf, 1);
        let ver = buf.get_u8();
        if ver != VERSION {
            return Err(Error::UnsupportedVersion(ver));
        }
        need!(buf, 1);
        let cmd = Cmd::from(buf.get_u8());
        let request = match cmd {
            Cmd::AddUser | Cmd::ChangePassword => {
                let Some(username) = read_name(buf)? else {
                    return Ok(None);
                };
                let Some(password) = read_secret(buf)? else {
                    return Ok(None);
                };
                if cmd == Cmd::AddUser {
                    Request::AddUser { username, password }
                } else {
                    Request::ChangePassword { username, password }
                }
            }
            Cmd::ListUsers => Request::ListUsers,
            Cmd::Metrics => Request::Metrics,
            Cmd::SetMaxClients => {
                need!(buf, 1);
                if buf.get_u8() != SET_MAX_CLIENTS_SLEN {
                    return Err(Error::Malformed("SLEN must be 4"));
                }
                need!(buf, 4);
                Request::SetMaxClients(buf.get_u32())
            }
            Cmd::RemoveUser => {
                let Some(username) = read_name(buf)? else {
                    return Ok(None);
                };
                Request::RemoveUser { username }
            }
            Cmd::Tree => Request::Tree,
            Cmd::Stats => Request::Stats,
            Cmd::Fault => {
                need!(buf, 1);
                let len = buf.get_u8() as usize;
                if len == 0 {
                    return Err(Error::Malformed("zero-length node name"));
                }
                need!(buf, len);
                let mut name = vec![0u8; len];
                buf.copy_to_slice(&mut name);
                if !tree::valid_node_name(&name) {
                    return Err(Error::Malformed("node name is not printable ASCII"));
                }
                need!(buf, 1);
                let action = match FaultAction::from(buf.get_u8()) {
                    FaultAction::Other(_) => return Err(Error::Malformed("unknown fault action")),
                    a => a,
                };
                let node = String::from_utf8(name).map_err(|_| Error::Malformed("node name"))?;
                Request::Fault { node, action }
            }
            Cmd::Other(b) => return Err(Error::UnknownCommand(b)),
        };
        Ok(Some(request))
    }
}

// ---------------------------------------------------------------------------
// Reply
// ---------------------------------------------------------------------------

impl Reply {
    /// A list-users reply, checked: at most 255 users.
    pub fn users(names: Vec<UserName>) -> Result<Reply, Error> {
        if names.len() > MAX_USERS {
            return Err(Error::Malformed("more than 255 users"));
        }
        Ok(Reply::Users(names))
    }

    /// The command this reply answers.
    pub fn cmd(&self) -> Cmd {
        match self {
            Reply::Status { cmd, .. } => *cmd,
            Reply::Metrics { .. } => Cmd::Metrics,
            Reply::Users(_) => Cmd::ListUsers,
            Reply::Tree(_) => Cmd::Tree,
            Reply::Stats(_) => Cmd::Stats,
        }
    }

    /// The reply's status: the status form's own, `Success` for the success
    /// forms of metrics and list users.
    pub fn status(&self) -> Status {
        match self {
            Reply::Status { status, .. } => *status,
            Reply::Metrics { .. } | Reply::Users(_) | Reply::Tree(_) | Reply::Stats(_) => {
                Status::Success
            }
        }
    }

    /// Metrics values are always sent as 8 bytes (u64 big-endian).
    ///
    /// Note that `Users(vec![])` and `Status { cmd: ListUsers, status:
    /// Success }` are the same three bytes `05 01 00`.
    ///
    /// # Panics
    /// If `Users` holds more than 255 names or a name outside 1..=255 bytes
    /// (build it with [`Reply::users`]).
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.cmd().into());
        match self {
            Reply::Status { status, .. } => buf.put_u8((*status).into()),
            Reply::Metrics {
                historic,
                active,
                bytes,
            } => {
                for value in [historic, active, bytes] {
                    buf.put_u8(METRICS_VALUE_LEN);
                    buf.put_u64(*value);
                }
            }
            Reply::Users(names) => {
                assert!(
                    names.len() <= MAX_USERS,
                    "manager protocol: a list reply carries at most 255 users, got {}",
                    names.len()
                );
                buf.put_u8(names.len() as u8);
                for name in names {
                    put_field(buf, name.as_str());
                }
            }
            Reply::Tree(t) => tree::encode_tree(t, buf),
            Reply::Stats(pairs) => stats::encode_stats(pairs, buf),
        }
    }

    /// The encoding as one message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes a whole reply message to a request of command `cmd`.
    ///
    /// - `VER` must be 0x05 (else `UnsupportedVersion`); `CMD` must equal
    ///   `cmd` (else `Malformed`).
    /// - A 3-byte message `VER CMD STATUS` is the status form, for every
    ///   command. Two cases are special: for list users, `05 01 00` is the
    ///   empty list (`Users(vec![])`, byte-identical with a success status);
    ///   for metrics, `05 02 00` (success without values) is `Malformed`.
    /// - Otherwise list users and metrics take their success forms, parsed
    ///   exactly (incomplete or trailing bytes are `Malformed`); every other
    ///   command only has the 3-byte form.
    /// - Metrics values may be 1..=255 bytes long (0 is `Malformed`); a value
    ///   that does not fit a u64 is `ValueTooLarge`.
    pub fn decode_for(cmd: Cmd, msg: &[u8]) -> Result<Reply, Error> {
        let Some(&ver) = msg.first() else {
            return Err(Error::Malformed("empty reply"));
        };
        if ver != VERSION {
            return Err(Error::UnsupportedVersion(ver));
        }
        let Some(&got) = msg.get(1) else {
            return Err(Error::Malformed("truncated reply"));
        };
        if got != u8::from(cmd) {
            return Err(Error::Malformed("reply is for a different command"));
        }
        if msg.len() == 3 && msg[2] != STATUS_SUCCESS {
            return Ok(Reply::Status {
                cmd,
                status: Status::from(msg[2]),
            });
        }
        match cmd {
            Cmd::ListUsers => whole_message(&msg[2..], |b| parse_users(b)),
            Cmd::Metrics if msg.len() == 3 => Err(Error::Malformed(
                "metrics reply with success status and no values",
            )),
            Cmd::Metrics => whole_message(&msg[2..], |b| parse_metrics(b)),
            Cmd::Tree if msg.len() == 3 => Err(Error::Malformed(
                "tree reply with success status and no nodes",
            )),
            Cmd::Tree => whole_message(&msg[2..], |b| Ok(tree::parse_tree(b)?.map(Reply::Tree))),
            Cmd::Stats if msg.len() == 3 => Err(Error::Malformed(
                "stats reply with success status and no values",
            )),
            Cmd::Stats => {
                whole_message(&msg[2..], |b| Ok(stats::parse_stats(b)?.map(Reply::Stats)))
            }
            _ if msg.len() < 3 => Err(Error::Malformed("truncated reply")),
            _ if msg.len() > 3 => Err(Error::Malformed("trailing bytes")),
            _ => Ok(Reply::Status {
                cmd,
                status: Status::from(msg[2]),
            }),
        }
    }
}

/// `LLEN (ULEN UNAME)*`.
fn parse_users<B: Buf>(buf: &mut B) -> Result<Option<Reply>, Error> {
    need!(buf, 1);
    let count = buf.get_u8() as usize;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(name) = read_name(buf)? else {
            return Ok(None);
        };
        names.push(name);
    }
    Ok(Some(Reply::Users(names)))
}

/// `HLEN HIST ALLEN ACTIVE BLEN BYTES`.
fn parse_metrics<B: Buf>(buf: &mut B) -> Result<Option<Reply>, Error> {
    let mut values = [0u64; 3];
    for value in &mut values {
        let Some(v) = read_uint(buf)? else {
            return Ok(None);
        };
        *value = v;
    }
    let [historic, active, bytes] = values;
    Ok(Some(Reply::Metrics {
        historic,
        active,
        bytes,
    }))
}

/// `LEN(1) VALUE(LEN)`: an unsigned big-endian integer of 1..=255 bytes that
/// must fit a u64 (leading zero bytes are fine).
fn read_uint<B: Buf>(buf: &mut B) -> Result<Option<u64>, Error> {
    need!(buf, 1);
    let len = buf.get_u8() as usize;
    if len == 0 {
        return Err(Error::Malformed("zero-length metrics value"));
    }
    need!(buf, len);
    let mut value: u64 = 0;
    let mut too_large = false;
    for i in 0..len {
        let byte = buf.get_u8();
        if i < len.saturating_sub(8) {
            too_large |= byte != 0;
        } else {
            value = (value << 8) | u64::from(byte);
        }
    }
    if too_large {
        return Err(Error::ValueTooLarge(len));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests;
