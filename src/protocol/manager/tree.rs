//! The body of the TREE reply (extension `CMD 0x06`) and the FAULT
//! request's action (extension `CMD 0x07`). Pure codecs, like the rest of
//! the manager protocol; see docs/manager-protocol.md section 8.
//!
//! ```text
//! TREE success: VER(0x05) CMD(0x06) STATUS(0x00) TOTAL(2) COUNT(2) COUNT x NODE
//! NODE = DEPTH(1) NLEN(1) NAME(1..255) KIND(1) RESTART(1) STRATEGY(1)
//!        STATE(1) INTENSITY(4) PERIOD_MS(8) RESTARTS(8) FAILURES(8)
//!        INJECTED(8) FLAGS(1)
//!        [LIVE(8) CRASHED(8)]                      if FLAGS bit 0
//!        [FAILED_AT_MS(8) RLEN(2) REASON(RLEN)]    if FLAGS bit 1
//! ```
//!
//! Nodes come in pre-order: a node's parent is the closest earlier node of
//! smaller depth. `TOTAL` is the number of nodes in the tree, `COUNT` the
//! number carried: fewer when the whole tree does not fit one message
//! (the server leaves out the last listeners). Numbers are big-endian; `FAILED_AT_MS` is milliseconds
//! since the Unix epoch; `NAME` is printable ASCII, `REASON` UTF-8.

use bytes::{Buf, BufMut};

use super::Error;

/// A code byte with its known values and `Other(u8)` for the rest.
macro_rules! code {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $byte:literal, $text:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            Other(u8),
        }
        impl From<u8> for $name {
            fn from(b: u8) -> Self {
                match b {
                    $($byte => $name::$variant,)*
                    other => $name::Other(other),
                }
            }
        }
        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $($name::$variant => $byte,)*
                    $name::Other(b) => b,
                }
            }
        }
        impl $name {
            /// The value in words (`"unknown"` for `Other`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(_) => "unknown",
                }
            }
        }
    };
}

code!(
    /// `KIND`: what a node is.
    NodeKind { Supervisor = 0, "supervisor"; Actor = 1, "actor"; Task = 2, "task"; }
);
code!(
    /// `RESTART`: OTP's restart type.
    RestartType { Permanent = 0, "permanent"; Transient = 1, "transient"; Temporary = 2, "temporary"; }
);
code!(
    /// `STRATEGY`: a supervisor's restart strategy (`None` for workers).
    StrategyCode { None = 0, "-"; OneForOne = 1, "one_for_one"; OneForAll = 2, "one_for_all"; RestForOne = 3, "rest_for_one"; }
);
code!(
    /// `STATE`.
    NodeState { Running = 0, "running"; Restarting = 1, "restarting"; BackingOff = 2, "backing off"; Stopped = 3, "stopped"; }
);
code!(
    /// FAULT's `ACTION`.
    FaultAction { Panic = 0, "panic"; Stop = 1, "stop"; }
);

/// The longest `REASON` a server sends (longer ones are cut at a character
/// boundary and end with "...").
pub const MAX_REASON: usize = 512;

/// `FLAGS` bit 0: `LIVE` and `CRASHED` follow.
const HAS_SESSIONS: u8 = 0x01;
/// `FLAGS` bit 1: `FAILED_AT_MS`, `RLEN` and `REASON` follow.
const HAS_FAILURE: u8 = 0x02;

/// One node of a TREE reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    pub depth: u8,
    /// `registry`, `listener/0`, ...: 1..=255 bytes of printable ASCII.
    pub name: String,
    pub kind: NodeKind,
    pub restart: RestartType,
    pub strategy: StrategyCode,
    pub state: NodeState,
    /// At most `intensity` restarts within `period_ms`.
    pub intensity: u32,
    pub period_ms: u64,
    pub restarts: u64,
    pub failures: u64,
    /// Faults injected on purpose, counted apart from `failures`.
    pub injected: u64,
    /// (live, crashed) sessions, for workers that have sessions.
    pub sessions: Option<(u64, u64)>,
    /// (milliseconds since the Unix epoch, reason) of the last failure.
    pub last_failure: Option<(u64, String)>,
}

/// Whether `name` may be a node name on the wire.
pub fn valid_node_name(name: &[u8]) -> bool {
    (1..=255).contains(&name.len()) && name.iter().all(|b| b.is_ascii_graphic())
}

/// `reason` cut to at most [`MAX_REASON`] bytes at a character boundary.
pub fn clip_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_string();
    }
    let mut end = MAX_REASON - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

impl TreeNode {
    /// # Panics
    /// If the name is not valid ([`valid_node_name`]) or the reason is
    /// longer than 65535 bytes (callers clip it with [`clip_reason`]).
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        assert!(valid_node_name(self.name.as_bytes()), "bad node name");
        buf.put_u8(self.depth);
        buf.put_u8(self.name.len() as u8);
        buf.put_slice(self.name.as_bytes());
        for code in [
            u8::from(self.kind),
            self.restart.into(),
            self.strategy.into(),
            self.state.into(),
        ] {
            buf.put_u8(code);
        }
        buf.put_u32(self.intensity);
        buf.put_u64(self.period_ms);
        buf.put_u64(self.restarts);
        buf.put_u64(self.failures);
        buf.put_u64(self.injected);
        let flags = if self.sessions.is_some() {
            HAS_SESSIONS
        } else {
            0
        } | if self.last_failure.is_some() {
            HAS_FAILURE
        } else {
            0
        };
        buf.put_u8(flags);
        if let Some((live, crashed)) = self.sessions {
            buf.put_u64(live);
            buf.put_u64(crashed);
        }
        if let Some((at, reason)) = &self.last_failure {
            let len = u16::try_from(reason.len()).expect("reason clipped");
            buf.put_u64(*at);
            buf.put_u16(len);
            buf.put_slice(reason.as_bytes());
        }
    }

    /// One node; `Ok(None)` when the buffer ends inside it.
    pub(super) fn parse<B: Buf>(buf: &mut B) -> Result<Option<TreeNode>, Error> {
        macro_rules! need {
            ($n:expr) => {
                if buf.remaining() < $n {
                    return Ok(None);
                }
            };
        }
        need!(2);
        let depth = buf.get_u8();
        let len = buf.get_u8() as usize;
        need!(len);
        let mut name = vec![0u8; len];
        buf.copy_to_slice(&mut name);
        if !valid_node_name(&name) {
            return Err(Error::Malformed(
                "node name is not 1..255 printable ASCII bytes",
            ));
        }
        let name = String::from_utf8(name).map_err(|_| Error::Malformed("node name"))?;
        need!(4 + 4 + 8 + 8 * 3 + 1);
        let kind = NodeKind::from(buf.get_u8());
        let restart = RestartType::from(buf.get_u8());
        let strategy = StrategyCode::from(buf.get_u8());
        let state = NodeState::from(buf.get_u8());
        let intensity = buf.get_u32();
        let period_ms = buf.get_u64();
        let restarts = buf.get_u64();
        let failures = buf.get_u64();
        let injected = buf.get_u64();
        let flags = buf.get_u8();
        if flags & !(HAS_SESSIONS | HAS_FAILURE) != 0 {
            return Err(Error::Malformed("unknown node flags"));
        }
        let sessions = if flags & HAS_SESSIONS != 0 {
            need!(16);
            Some((buf.get_u64(), buf.get_u64()))
        } else {
            None
        };
        let last_failure = if flags & HAS_FAILURE != 0 {
            need!(10);
            let at = buf.get_u64();
            let len = buf.get_u16() as usize;
            need!(len);
            let mut reason = vec![0u8; len];
            buf.copy_to_slice(&mut reason);
            let reason =
                String::from_utf8(reason).map_err(|_| Error::Malformed("reason is not UTF-8"))?;
            Some((at, reason))
        } else {
            None
        };
        Ok(Some(TreeNode {
            depth,
            name,
            kind,
            restart,
            strategy,
            state,
            intensity,
            period_ms,
            restarts,
            failures,
            injected,
            sessions,
            last_failure,
        }))
    }
}

/// A TREE reply's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeReply {
    /// Nodes in the server's tree (`TOTAL`).
    pub total: u16,
    /// The nodes carried, in pre-order (at most `total`).
    pub nodes: Vec<TreeNode>,
}

impl TreeReply {
    /// Nodes the reply had to leave out.
    pub fn omitted(&self) -> usize {
        usize::from(self.total).saturating_sub(self.nodes.len())
    }
}

/// `STATUS(0x00) TOTAL(2) COUNT(2) COUNT x NODE` (after `VER CMD`).
pub(super) fn parse_tree<B: Buf>(buf: &mut B) -> Result<Option<TreeReply>, Error> {
    if buf.remaining() < 5 {
        return Ok(None);
    }
    if buf.get_u8() != super::STATUS_SUCCESS {
        return Err(Error::Malformed(
            "tree reply: a failure status carries no nodes",
        ));
    }
    let total = buf.get_u16();
    let count = buf.get_u16();
    if count > total {
        return Err(Error::Malformed("tree reply: more nodes than the tree has"));
    }
    let mut nodes = Vec::with_capacity(usize::from(count).min(1024));
    for _ in 0..count {
        match TreeNode::parse(buf)? {
            Some(n) => nodes.push(n),
            None => return Ok(None),
        }
    }
    Ok(Some(TreeReply { total, nodes }))
}

/// # Panics
/// If `total` is below the number of nodes.
pub(super) fn encode_tree<B: BufMut>(tree: &TreeReply, buf: &mut B) {
    let count = u16::try_from(tree.nodes.len()).expect("at most 65535 nodes");
    assert!(count <= tree.total, "more nodes than the tree has");
    buf.put_u8(super::STATUS_SUCCESS);
    buf.put_u16(tree.total);
    buf.put_u16(count);
    for n in &tree.nodes {
        n.encode(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> TreeNode {
        TreeNode {
            depth: 1,
            name: name.into(),
            kind: NodeKind::Actor,
            restart: RestartType::Permanent,
            strategy: StrategyCode::None,
            state: NodeState::BackingOff,
            intensity: 3,
            period_ms: 10_000,
            restarts: 2,
            failures: 1,
            injected: 1,
            sessions: Some((5, 1)),
            last_failure: Some((1_700_000_000_000, "panicked: é".into())),
        }
    }

    #[test]
    fn round_trips_and_every_prefix_is_incomplete() {
        let mut plain = node("registry");
        plain.sessions = None;
        plain.last_failure = None;
        let tree = TreeReply {
            total: 3,
            nodes: vec![node("listener/0"), plain],
        };
        assert_eq!(tree.omitted(), 1);
        let mut wire = Vec::new();
        encode_tree(&tree, &mut wire);
        let mut view = &wire[..];
        assert_eq!(parse_tree(&mut view).unwrap(), Some(tree));
        assert!(view.is_empty());
        for cut in 0..wire.len() {
            let mut view = &wire[..cut];
            assert_eq!(parse_tree(&mut view), Ok(None), "prefix of {cut}");
        }
    }

    #[test]
    fn rejects_bad_names_flags_and_reasons() {
        let mut wire = Vec::new();
        let one = TreeReply {
            total: 1,
            nodes: vec![node("x")],
        };
        encode_tree(&one, &mut wire);
        // NAME "x" at offset 7: a space is not printable ASCII here.
        let mut bad = wire.clone();
        bad[7] = b' ';
        assert!(parse_tree(&mut &bad[..]).is_err());
        // COUNT above TOTAL.
        let mut bad = wire.clone();
        bad[4] = 2;
        assert!(parse_tree(&mut &bad[..]).is_err());
        // FLAGS is after 5 + 2 + 1 + 4 + 4 + 8 + 24 bytes.
        let flags_at = 5 + 2 + 1 + 4 + 4 + 8 + 24;
        let mut bad = wire.clone();
        bad[flags_at] |= 0x80;
        assert!(parse_tree(&mut &bad[..]).is_err());
        let mut bad = wire.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff; // the last byte of "é" broken
        assert!(parse_tree(&mut &bad[..]).is_err());
        let mut bad = wire;
        bad[0] = 0x01;
        assert!(parse_tree(&mut &bad[..]).is_err());
    }

    #[test]
    fn unknown_codes_are_other() {
        assert_eq!(NodeState::from(9), NodeState::Other(9));
        assert_eq!(u8::from(NodeState::Other(9)), 9);
        assert_eq!(FaultAction::from(1), FaultAction::Stop);
        assert_eq!(StrategyCode::OneForAll.as_str(), "one_for_all");
    }

    #[test]
    fn reasons_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(400);
        let c = clip_reason(&long);
        assert!(c.len() <= MAX_REASON && c.ends_with("..."));
        assert_eq!(clip_reason("short"), "short");
    }
}
