//! Who may use the proxy: the authentication mode, the user table and the
//! check of RFC 1929 credentials. State, not an actor: the `UserRegistry`
//! alone writes the table (a new snapshot per change), sessions read it
//! without a message, so a registry that stops or restarts takes no user
//! away.
//!
//! # How authentication is decided
//! - `--auth none`: clients never authenticate (users may still be kept).
//! - `--auth required`: username/password (RFC 1929) always; with no user at
//!   all every client gets METHOD `0xFF` (no acceptable method).
//! - `--auth auto` (the default): required as soon as a user exists, or from
//!   the start with `--user` or `--users-file`. Once required it stays
//!   required for the life of the process: removing the last user, or a
//!   SIGHUP with an emptied file, leaves every client refused (and a WARN),
//!   never an open proxy.

pub mod password;
pub mod throttle;

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::{Secret, UserName};
pub use password::{Check, Credential, PhcString, Verifier};

/// `--auth`: how the proxy decides whether clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthPolicy {
    /// Required once any user exists or `--user`/`--users-file` is given;
    /// never switched off again.
    #[default]
    Auto,
    /// Always required (no users: nobody gets in).
    Required,
    /// Never: an open proxy.
    None,
}

impl std::fmt::Display for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthPolicy::Auto => "auto",
            AuthPolicy::Required => "required",
            AuthPolicy::None => "none",
        })
    }
}

/// Where a user came from: `--user` users are not written to the users
/// file (they come back from the flags on every start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    /// The users file or the manager: kept in the file.
    Stored,
}

/// One user as the table holds it.
#[derive(Debug)]
pub struct UserEntry {
    pub name: UserName,
    pub credential: Credential,
    pub origin: Origin,
    /// The digest of the last successful verification of a hashed
    /// credential (see [`password`]); a changed password is a new entry.
    verified: Mutex<Option<password::Digest>>,
}

impl UserEntry {
    pub fn new(name: UserName, credential: Credential, origin: Origin) -> UserEntry {
        UserEntry {
            name,
            credential,
            origin,
            verified: Mutex::new(None),
        }
    }
}

/// An immutable snapshot of the users, in the order they were added.
#[derive(Debug, Default)]
pub struct UserTable {
    entries: Vec<Arc<UserEntry>>,
    index: HashMap<UserName, usize>,
    hashed: usize,
}

impl UserTable {
    /// A table of `entries`; `Err(name)` for a name given twice.
    pub fn new(entries: Vec<Arc<UserEntry>>) -> Result<UserTable, UserName> {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if index.insert(e.name.clone(), i).is_some() {
                return Err(e.name.clone());
            }
        }
        let hashed = entries.iter().filter(|e| e.credential.is_hashed()).count();
        Ok(UserTable {
            entries,
            index,
            hashed,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<UserEntry>> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    pub fn entries(&self) -> &[Arc<UserEntry>] {
        &self.entries
    }

    pub fn names(&self) -> Vec<UserName> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The outcome of an RFC 1929 check, for the reply and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; `cached` when no hash had to be computed.
    Accepted {
        cached: bool,
    },
    NoSuchUser,
    WrongPassword,
    /// The verifier's queue is full (a flood): refused without hashing.
    Busy,
}

impl Verdict {
    pub fn accepted(self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }

    /// Words for the access log.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "accepted",
            Verdict::NoSuchUser => "no such user",
            Verdict::WrongPassword => "wrong password",
            Verdict::Busy => "verifier busy",
        }
    }
}

const OPEN: u8 = 0;
const REQUIRED: u8 = 1;

/// The authentication state shared by the registry (writer) and every
/// session (readers).
pub struct Auth {
    policy: AuthPolicy,
    /// `OPEN` or `REQUIRED`; goes from open to required at most once.
    state: AtomicU8,
    users: ArcSwap<UserTable>,
    verifier: Verifier,
}

impl Auth {
    /// `users` to start with under `policy`; `configured` when `--user` or
    /// `--users-file` was given (which makes `auto` required at once).
    pub fn new(policy: AuthPolicy, users: UserTable, configured: bool) -> Auth {
        let required = match policy {
            AuthPolicy::Required => true,
            AuthPolicy::None => false,
            AuthPolicy::Auto => configured || !users.is_empty(),
        };
        // Half the cores verify hashes at most, one at least.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Auth {
            policy,
            state: AtomicU8::new(if required { REQUIRED } else { OPEN }),
            users: ArcSwap::from_pointee(users),
            verifier: Verifier::new(cores / 2, 256),
        }
    }

    pub fn policy(&self) -> AuthPolicy {
        self.policy
    }

    /// Must clients authenticate (RFC 1929)?
    pub fn required(&self) -> bool {
        self.state.load(Ordering::Acquire) == REQUIRED
    }

    /// The current users.
    pub fn users(&self) -> Arc<UserTable> {
        self.users.load_full()
    }

    /// Publishes a new table (the registry alone calls this). Under `auto`
    /// a non-empty table latches authentication on for good.
    pub fn publish(&self, table: UserTable) {
        if self.policy == AuthPolicy::Auto && !table.is_empty() {
            self.state.store(REQUIRED, Ordering::Release);
        }
        self.users.store(Arc::new(table));
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Checks RFC 1929 credentials against the current table. A hashed
    /// credential is verified off the calling thread (see [`password`]);
    /// an unknown name costs a decoy verification when any user is hashed,
    /// so timing does not tell which names exist.
    pub async fn verify(&self, name: &UserName, password: &Secret) -> Verdict {
        let table = self.users();
        let Some(entry) = table.get(name.as_str()).cloned() else {
            if table.hashed > 0 && self.verifier.decoy(password).await == Check::Busy {
                return Verdict::Busy;
            }
            return Verdict::NoSuchUser;
        };
        drop(table);
        match &entry.credential {
            Credential::Plain(s) => {
                if s.ct_eq(password.expose()) {
                    Verdict::Accepted { cached: true }
                } else {
                    Verdict::WrongPassword
                }
            }
            Credential::Hashed(phc) => {
                let cached = *entry.verified.lock().unwrap_or_else(|e| e.into_inner());
                let check = self
                    .verifier
                    .check(name, password, phc, cached, |d| {
                        *entry.verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
                    })
                    .await;
                match check {
                    Check::Match { cached } => Verdict::Accepted { cached },
                    Check::Mismatch => Verdict::WrongPassword,
                    Check::Busy => Verdict::Busy,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, pass: &str) -> Arc<UserEntry> {
        Arc::new(UserEntry::new(
            UserName::new(name).unwrap(),
            Credential::Plain(Secret::new(pass).unwrap()),
            Origin::Stored,
        ))
    }

    #[test]
    fn auto_latches_on_and_never_off() {
        let a = Auth::new(AuthPolicy::Auto, UserTable::default(), false);
        assert!(!a.required());
        a.publish(UserTable::new(vec![entry("a", "1")]).unwrap());
        assert!(a.required());
        a.publish(UserTable::default());
        assert!(a.required(), "an emptied table keeps authentication on");
        // Configured users make auto required from the start, even if empty.
        assert!(Auth::new(AuthPolicy::Auto, UserTable::default(), true).required());
        assert!(Auth::new(AuthPolicy::Required, UserTable::default(), false).required());
        let none = Auth::new(AuthPolicy::None, UserTable::default(), true);
        none.publish(UserTable::new(vec![entry("a", "1")]).unwrap());
        assert!(!none.required());
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = UserTable::new(vec![entry("a", "1"), entry("a", "2")]).unwrap_err();
        assert_eq!(e, "a");
    }

    #[tokio::test]
    async fn verdicts() {
        let hashed = Arc::new(UserEntry::new(
            UserName::new("h").unwrap(),
            Credential::Hashed(password::hash(&Secret::new("hp").unwrap()).unwrap()),
            Origin::Stored,
        ));
        let t = UserTable::new(vec![entry("p", "pp"), hashed]).unwrap();
        let a = Auth::new(AuthPolicy::Auto, t, false);
        let v = |n: &str, p: &str| {
            let (n, p) = (UserName::new(n).unwrap(), Secret::new(p).unwrap());
            let a = &a;
            async move { a.verify(&n, &p).await }
        };
        assert_eq!(v("p", "pp").await, Verdict::Accepted { cached: true });
        assert_eq!(v("p", "px").await, Verdict::WrongPassword);
        assert_eq!(v("h", "hp").await, Verdict::Accepted { cached: false });
        assert_eq!(v("h", "hp").await, Verdict::Accepted { cached: true });
        assert_eq!(v("h", "hx").await, Verdict::WrongPassword);
        assert_eq!(v("h", "hp").await, Verdict::Accepted { cached: true });
        assert_eq!(v("nobody", "hp").await, Verdict::NoSuchUser);
    }
}
