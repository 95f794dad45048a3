//! The server's counters: a leaf module that the data plane (`relay/`),
//! the sessions, the listeners and the manager write into, and that the
//! `MetricsCollector`, STATS (manager `0x08`) and the Prometheus endpoint
//! read. Relaxed atomics: each counter is exact on its own, a reading is
//! not one instant across them. Nothing here blocks the data path: per-byte
//! counting is two atomic adds (the total and, once authenticated, the
//! user's); the per-user and per-manager-command tables take a lock only
//! when a session starts or a manager request ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::protocol::UserName;

/// At most this many users have counters of their own (the registry
/// holds at most 255; names of removed users are kept until this fills,
/// after which new names count only in the totals).
pub const MAX_USER_COUNTERS: usize = 1024;

/// Reply codes counted one by one (`0x00`..=`0x08`); others are "other".
pub const REPLY_CODES: usize = 9;

/// Why UDP ASSOCIATE datagrams were dropped (the relay's `Drops`).
pub const UDP_DROP_REASONS: [&str; 7] = [
    "fragmented",
    "stranger",
    "refused_sender",
    "malformed",
    "unresolved",
    "denied",
    "unsendable",
];

/// One user's counters.
#[derive(Debug, Default)]
pub struct UserCounters {
    sessions: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl UserCounters {
    pub fn add_up(&self, n: u64) {
        self.bytes_up.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_down(&self, n: u64) {
        self.bytes_down.fetch_add(n, Ordering::Relaxed);
    }
}

/// A user's counters as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserTotals {
    pub sessions: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// Why a client was turned away before its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-clients` reached.
    MaxClients,
    /// `--max-clients-per-ip` reached.
    PerIp,
    /// The client rules (`--allow-client`, `--deny-client`).
    ClientRules,
}

/// The counters; see the module header.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    historic: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    refused: AtomicU64,
    refused_per_ip: AtomicU64,
    denied: AtomicU64,
    auth_failures: AtomicU64,
    admin_auth_failures: AtomicU64,
    admin_locked_out: AtomicU64,
    admin_evicted: AtomicU64,
    session_crashes: AtomicU64,
    manager_session_crashes: AtomicU64,
    replies: [AtomicU64; REPLY_CODES + 1],
    udp_dropped: [AtomicU64; UDP_DROP_REASONS.len()],
    users: Mutex<HashMap<UserName, Arc<UserCounters>>>,
    /// (command, status) -> requests answered.
    manager: Mutex<HashMap<(u8, u8), u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: Instant::now(),
            historic: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            admin_auth_failures: AtomicU64::new(0),
            admin_locked_out: AtomicU64::new(0),
            admin_evicted: AtomicU64::new(0),
            session_crashes: AtomicU64::new(0),
            manager_session_crashes: AtomicU64::new(0),
            replies: Default::default(),
            udp_dropped: Default::default(),
            users: Mutex::default(),
            manager: Mutex::default(),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    /// A SOCKS client failed RFC 1929 authentication (or was refused for
    /// want of any user).
    pub fn auth_failed(&self) {
        add(&self.auth_failures, 1);
    }
    /// A manager login failed (wrong or malformed credentials).
    pub fn admin_auth_failed(&self) {
        add(&self.admin_auth_failures, 1);
    }
    /// A manager login was refused unchecked: its source is locked out.
    pub fn admin_locked_out(&self) {
        add(&self.admin_locked_out, 1);
    }
    /// An unauthenticated manager association was closed to make room.
    pub fn admin_evicted(&self) {
        add(&self.admin_evicted, 1);
    }
    /// A session's request succeeded (its first 0x00 reply was sent).
    pub fn succeeded(&self) {
        add(&self.historic, 1);
    }
    /// Bytes relayed client to target.
    pub fn add_up(&self, n: u64) {
        add(&self.bytes_up, n);
    }
    /// Bytes relayed target to client.
    pub fn add_down(&self, n: u64) {
        add(&self.bytes_down, n);
    }
    /// A client was turned away before its session.
    pub fn refused(&self, why: Refusal) {
        add(
            match why {
                Refusal::MaxClients => &self.refused,
                Refusal::PerIp => &self.refused_per_ip,
                Refusal::ClientRules => &self.denied,
            },
            1,
        );
    }
    /// A SOCKS session panicked (and was ended, never restarted).
    pub fn session_crashed(&self) {
        add(&self.session_crashes, 1);
    }
    /// A manager session panicked.
    pub fn manager_session_crashed(&self) {
        add(&self.manager_session_crashes, 1);
    }
    /// A session's request was answered with `code` (RFC 1928 REP).
    pub fn replied(&self, code: u8) {
        let i = usize::from(code).min(REPLY_CODES);
        add(&self.replies[i], 1);
    }
    /// Datagrams an association dropped, by reason (at its end).
    pub fn udp_dropped(&self, by_reason: &[(&str, u64)]) {
        for (reason, n) in by_reason {
            if let Some(i) = UDP_DROP_REASONS.iter().position(|r| r == reason) {
                add(&self.udp_dropped[i], *n);
            }
        }
    }

    /// A session authenticated as `user`: counted, and its counters to add
    /// its bytes to (None once [`MAX_USER_COUNTERS`] names are known).
    pub fn user_session(&self, user: &UserName) -> Option<Arc<UserCounters>> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let len = users.len();
        let c = match users.get(user) {
            Some(c) => c.clone(),
            None if len >= MAX_USER_COUNTERS => return None,
            None => users.entry(user.clone()).or_default().clone(),
        };
        add(&c.sessions, 1);
        Some(c)
    }
    /// A manager request was answered with `status`.
    pub fn manager_request(&self, cmd: u8, status: u8) {
        let mut m = self.manager.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((cmd, status)).or_default() += 1;
    }

    /// Every counter, read now.
    pub fn read(&self) -> Totals {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut per_user: Vec<(UserName, UserTotals)> = users
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    UserTotals {
                        sessions: get(&c.sessions),
                        bytes_up: get(&c.bytes_up),
                        bytes_down: get(&c.bytes_down),
                    },
                )
            })
            .collect();
        drop(users);
        per_user.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut manager: Vec<((u8, u8), u64)> = self
            .manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        manager.sort();
        Totals {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            historic: get(&self.historic),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            refused_max_clients: get(&self.refused),
            refused_per_ip: get(&self.refused_per_ip),
            denied_client_rules: get(&self.denied),
            auth_failures: get(&self.auth_failures),
            admin_auth_failures: get(&self.admin_auth_failures),
            admin_locked_out: get(&self.admin_locked_out),
            admin_evicted: get(&self.admin_evicted),
            session_crashes: get(&self.session_crashes),
            manager_session_crashes: get(&self.manager_session_crashes),
            replies: std::array::from_fn(|i| get(&self.replies[i])),
            udp_dropped: std::array::from_fn(|i| get(&self.udp_dropped[i])),
            users: per_user,
            manager_requests: manager,
        }
    }
}

/// Every counter at one reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub uptime_secs: f64,
    pub historic: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub refused_max_clients: u64,
    pub refused_per_ip: u64,
    pub denied_client_rules: u64,
    pub auth_failures: u64,
    pub admin_auth_failures: u64,
    pub admin_locked_out: u64,
    pub admin_evicted: u64,
    pub session_crashes: u64,
    pub manager_session_crashes: u64,
    /// Replies by code: `0x00`..=`0x08`, then every other code.
    pub replies: [u64; REPLY_CODES + 1],
    /// UDP datagrams dropped, by [`UDP_DROP_REASONS`].
    pub udp_dropped: [u64; UDP_DROP_REASONS.len()],
    /// Per user, by name.
    pub users: Vec<(UserName, UserTotals)>,
    /// ((command, status), requests), sorted.
    pub manager_requests: Vec<((u8, u8), u64)>,
}

/// A reading for STATS and Prometheus: the counters, with what lives
/// elsewhere (the gate's open clients and limit, the tree's restarts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub totals: Totals,
    pub active: u64,
    pub max_clients: u64,
    pub restarts: u64,
}

impl Reading {
    /// The reading as STATS key/value pairs (docs/manager-protocol.md):
    /// stable names, `/`-separated for the per-reply, per-command and
    /// per-user ones. A user key is `user/NAME/COUNTER` with the name as it
    /// is (it may hold `/`: split on the first and the last).
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let t = &self.totals;
        let mut v: Vec<(String, u64)> = vec![
            ("uptime_seconds".into(), t.uptime_secs as u64),
            ("connections_total".into(), t.historic),
            ("active_connections".into(), self.active),
            ("max_clients".into(), self.max_clients),
            ("bytes_up_total".into(), t.bytes_up),
            ("bytes_down_total".into(), t.bytes_down),
            ("refused_max_clients_total".into(), t.refused_max_clients),
            ("refused_per_ip_total".into(), t.refused_per_ip),
            ("refused_client_rules_total".into(), t.denied_client_rules),
            ("auth_failures_total".into(), t.auth_failures),
            ("admin_auth_failures_total".into(), t.admin_auth_failures),
            ("admin_locked_out_total".into(), t.admin_locked_out),
            ("admin_evicted_total".into(), t.admin_evicted),
            ("session_crashes_total".into(), t.session_crashes),
            (
                "manager_session_crashes_total".into(),
                t.manager_session_crashes,
            ),
            ("restarts_total".into(), self.restarts),
        ];
        for (code, n) in t.replies.iter().enumerate() {
            let key = if code < REPLY_CODES {
                format!("replies/{code:#04x}_total")
            } else {
                "replies/other_total".to_string()
            };
            v.push((key, *n));
        }
        for (reason, n) in UDP_DROP_REASONS.iter().zip(t.udp_dropped) {
            v.push((format!("udp_dropped/{reason}_total"), n));
        }
        for ((cmd, status), n) in &t.manager_requests {
            v.push((
                format!("manager_requests/{cmd:#04x}/{status:#04x}_total"),
                *n,
            ));
        }
        for (name, u) in &t.users {
            v.push((format!("user/{name}/sessions_total"), u.sessions));
            v.push((format!("user/{name}/bytes_up_total"), u.bytes_up));
            v.push((format!("user/{name}/bytes_down_total"), u.bytes_down));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reads() {
        let c = Counters::default();
        c.add_up(3);
        c.add_down(4);
        c.refused(Refusal::PerIp);
        c.refused(Refusal::MaxClients);
        c.refused(Refusal::ClientRules);
        c.replied(0);
        c.replied(5);
        c.replied(0x2a);
        let alice = UserName::new("alice").unwrap();
        let u = c.user_session(&alice).unwrap();
        u.add_up(10);
        c.user_session(&alice).unwrap().add_down(1);
        c.udp_dropped(&[("denied", 2), ("fragmented", 1), ("no such reason", 9)]);
        c.manager_request(0x02, 0x00);
        c.manager_request(0x02, 0x00);
        c.manager_request(0x00, 0x06);
        let t = c.read();
        assert_eq!((t.bytes_up, t.bytes_down), (3, 4));
        assert_eq!(
            (
                t.refused_max_clients,
                t.refused_per_ip,
                t.denied_client_rules
            ),
            (1, 1, 1)
        );
        assert_eq!(
            (t.replies[0], t.replies[5], t.replies[REPLY_CODES]),
            (1, 1, 1)
        );
        assert_eq!(
            t.users,
            [(
                alice,
                UserTotals {
                    sessions: 2,
                    bytes_up: 10,
                    bytes_down: 1
                }
            )]
        );
        assert_eq!(t.manager_requests, [((0, 6), 1), ((2, 0), 2)]);
        assert_eq!(t.udp_dropped, [1, 0, 0, 0, 0, 2, 0]);
    }

    #[test]
    fn user_counters_are_bounded() {
        let c = Counters::default();
        for i in 0..MAX_USER_COUNTERS {
            assert!(c
                .user_session(&UserName::new(format!("u{i}")).unwrap())
                .is_some());
        }
        assert!(c
            .user_session(&UserName::new("one-more").unwrap())
            .is_none());
        assert!(
            c.user_session(&UserName::new("u7").unwrap()).is_some(),
            "known"
        );
        assert_eq!(c.read().users.len(), MAX_USER_COUNTERS);
    }
}
