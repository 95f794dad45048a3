//! `UserRegistry`: the one writer of the user table ([`crate::auth`]).
//!
//! Holds at most `capacity` users (255 at most: the manager's list reply
//! counts them in one byte). Every change builds a new table, writes the
//! users file (if any) atomically, and only then publishes the table, so a
//! failed write changes nothing. Sessions read the published table without
//! a message; the registry is never on a client's path. [`Reload`] (on
//! SIGHUP) replaces the whole set with what was read back from the file;
//! sessions already authenticated are not touched. The file holds the users
//! of the file and the manager (the manager's with hashed passwords), not
//! those of `--user`, which come back from the flags on every start; a
//! `--user` user the manager removed or changed stays so across reloads
//! (see [`merge`]).

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{Auth, Credential, Origin, UserEntry, UserTable};
use crate::protocol::UserName;
use crate::users_file;

pub struct UserRegistry {
    auth: Arc<Auth>,
    capacity: usize,
    file: Option<PathBuf>,
    log: Logger,
    /// `--user` users the manager removed or changed since the start: a
    /// reload does not bring back their flag (see [`merge`]).
    overridden: HashSet<UserName>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("user already exists")]
    Exists,
    #[error("user limit reached")]
    Full,
    #[error("no such user")]
    NoSuchUser,
    #[error("could not write the users file: {0}")]
    Io(String),
}

/// Why a set of users cannot be adopted (at start or on reload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    #[error("{0} users configured but the registry holds at most {1} (--max-users)")]
    TooMany(usize, usize),
    #[error("user {0:?} is configured twice")]
    Twice(String),
}

/// A user to adopt: name, credential, origin.
pub type UserRecord = (UserName, Credential, Origin);

/// The users from the `--user` flags and from the users file, merged: a
/// flag wins over the file for the same name, unless the manager removed or
/// changed that user since the start (`overridden`), in which case only the
/// file counts (it holds the changed user, or nobody). Flags first, then
/// the file's users in file order.
pub fn merge(
    flags: Vec<UserRecord>,
    stored: Vec<UserRecord>,
    overridden: &HashSet<UserName>,
) -> Vec<UserRecord> {
    let mut users: Vec<UserRecord> = flags
        .into_iter()
        .filter(|(n, _, _)| !overridden.contains(n))
        .collect();
    let from_flags = users.len();
    for s in stored {
        // Only a flag hides a stored user: a name twice in the file stays
        // twice, for `table` to refuse.
        if users[..from_flags].iter().all(|(n, _, _)| *n != s.0) {
            users.push(s);
        }
    }
    users
}

/// A table of `users` that fits `capacity`.
pub fn table(users: Vec<UserRecord>, capacity: usize) -> Result<UserTable, UsersError> {
    if users.len() > capacity {
        return Err(UsersError::TooMany(users.len(), capacity));
    }
    let entries = users
        .into_iter()
        .map(|(n, c, o)| Arc::new(UserEntry::new(n, c, o)))
        .collect();
    UserTable::new(entries).map_err(|n| UsersError::Twice(n.to_string()))
}

impl UserRegistry {
    /// The registry of `auth`'s table, which it alone writes from now on.
    pub fn new(auth: Arc<Auth>, capacity: usize, file: Option<PathBuf>, log: Logger) -> Self {
        UserRegistry {
            auth,
            capacity,
            file,
            log,
            overridden: HashSet::new(),
        }
    }

    /// Notes that the manager removed or changed `name`, if it came from
    /// a flag.
    fn override_flag(&mut self, current: &UserTable, name: &UserName) {
        if current
            .get(name.as_str())
            .is_some_and(|e| e.origin == Origin::Flag)
        {
            self.overridden.insert(name.clone());
        }
    }

    /// Writes `next` to the users file (if any); only then is it published.
    fn commit(&mut self, next: Vec<Arc<UserEntry>>) -> Result<(), RegistryError> {
        let table = UserTable::new(next).map_err(|_| RegistryError::Exists)?;
        if let Some(path) = &self.file {
            let stored = table
                .entries()
                .iter()
                .filter(|e| e.origin == Origin::Stored)
                .map(|e| (&e.name, &e.credential));
            if let Err(e) = users_file::store(path, stored) {
                warn!(self.log, "users file write failed; change not applied";
                      "path" => %path.display(), "error" => %e);
                return Err(RegistryError::Io(e.to_string()));
            }
        }
        self.publish(table);
        Ok(())
    }

    fn publish(&self, table: UserTable) {
        let empty = table.is_empty();
        self.auth.publish(table);
        if empty && self.auth.required() {
            warn!(
                self.log,
                "no users left and authentication is required: \
                             every client is refused (METHOD 0xFF) until a user is added"
            );
        }
    }
}

impl Actor for UserRegistry {
    type Context = Context<Self>;
}

/// A restart keeps everything: the table lives in [`Auth`] (sessions read
/// it without this actor), and what the registry holds itself (the file's
/// path, the overridden `--user` names) is configuration and history that
/// a crash must not lose. Every change is complete before it is published
/// (file first, then the table), so a panic mid-change publishes nothing.
impl Supervised for UserRegistry {}

crate::handle_fault!(UserRegistry);

/// Add a user (the manager hashes the password first).
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct AddUser {
    pub username: UserName,
    pub credential: Credential,
}

#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct RemoveUser {
    pub username: UserName,
}

#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct ChangePassword {
    pub username: UserName,
    pub credential: Credential,
}

/// The user names, in the order they were added.
#[derive(Message)]
#[rtype(result = "Vec<UserName>")]
pub struct ListUsers;

/// Replace every user with the `--user` flags' and the users file's, read
/// again (see [`merge`]): nothing is written. Refused, changing nothing, if
/// they do not fit `--max-users` or name someone twice. Resolves to the new
/// count.
#[derive(Message)]
#[rtype(result = "Result<usize, UsersError>")]
pub struct Reload {
    pub flags: Vec<UserRecord>,
    /// The users file's users; `None` without a users file: the users the
    /// manager added or changed (which live only in the registry then)
    /// are kept.
    pub stored: Option<Vec<UserRecord>>,
}

impl Handler<AddUser> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: AddUser, _: &mut Context<Self>) -> Self::Result {
        let current = self.auth.users();
        if current.get(msg.username.as_str()).is_some() {
            return Err(RegistryError::Exists);
        }
        if current.len() >= self.capacity {
            return Err(RegistryError::Full);
        }
        let mut next = current.entries().to_vec();
        next.push(Arc::new(UserEntry::new(
            msg.username.clone(),
            msg.credential,
            Origin::Stored,
        )));
        self.commit(next)?;
        info!(self.log, "user added"; "user" => %msg.username, "users" => current.len() + 1);
        Ok(())
    }
}

impl Handler<RemoveUser> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: RemoveUser, _: &mut Context<Self>) -> Self::Result {
        let current = self.auth.users();
        if current.get(msg.username.as_str()).is_none() {
            return Err(RegistryError::NoSuchUser);
        }
        let next: Vec<_> = current
            .entries()
            .iter()
            .filter(|e| e.name != msg.username)
            .cloned()
            .collect();
        let left = next.len();
        self.commit(next)?;
        self.override_flag(&current, &msg.username);
        info!(self.log, "user removed"; "user" => %msg.username, "users" => left);
        Ok(())
    }
}

impl Handler<ChangePassword> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: ChangePassword, _: &mut Context<Self>) -> Self::Result {
        let current = self.auth.users();
        if current.get(msg.username.as_str()).is_none() {
            return Err(RegistryError::NoSuchUser);
        }
        let mut next = current.entries().to_vec();
        if let Some(slot) = next.iter_mut().find(|e| e.name == msg.username) {
            // A new entry: the old one's cached verification goes with it. A
            // changed `--user` password is kept in the file from now on.
            *slot = Arc::new(UserEntry::new(
                msg.username.clone(),
                msg.credential,
                Origin::Stored,
            ));
        }
        self.commit(next)?;
        self.override_flag(&current, &msg.username);
        info!(self.log, "password changed"; "user" => %msg.username);
        Ok(())
    }
}

impl Handler<Reload> for UserRegistry {
    type Result = Result<usize, UsersError>;
    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        let before = self.auth.users();
        // Without a users file, what the manager added or changed lives
        // only here: a reload (of the flags, from a config file) keeps it.
        let stored = match msg.stored {
            Some(stored) => stored,
            None => before
                .entries()
                .iter()
                .filter(|e| e.origin == Origin::Stored)
                .map(|e| (e.name.clone(), e.credential.clone(), Origin::Stored))
                .collect(),
        };
        let users = merge(msg.flags, stored, &self.overridden);
        let next = table(users, self.capacity)?;
        let added = next
            .entries()
            .iter()
            .filter(|e| before.get(e.name.as_str()).is_none())
            .count();
        let removed = before.len() + added - next.len();
        let n = next.len();
        self.publish(next);
        info!(self.log, "users reloaded"; "users" => n, "added" => added, "removed" => removed);
        Ok(n)
    }
}

impl Handler<ListUsers> for UserRegistry {
    type Result = Vec<UserName>;
    fn handle(&mut self, _: ListUsers, _: &mut Context<Self>) -> Vec<UserName> {
        self.auth.users().names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthPolicy, Verdict};
    use crate::logging::discard;
    use crate::protocol::Secret;

    fn name(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    fn plain(s: &str) -> Credential {
        Credential::Plain(Secret::new(s).unwrap())
    }

    fn start(
        users: Vec<UserRecord>,
        cap: usize,
        file: Option<PathBuf>,
    ) -> (Arc<Auth>, Addr<UserRegistry>) {
        let configured = !users.is_empty() || file.is_some();
        let auth = Arc::new(Auth::new(
            AuthPolicy::Auto,
            table(users, cap).unwrap(),
            configured,
        ));
        let r = UserRegistry::new(auth.clone(), cap, file, discard()).start();
        (auth, r)
    }

    async fn verdict(auth: &Auth, n: &str, p: &str) -> Verdict {
        auth.verify(&name(n), &Secret::new(p).unwrap()).await
    }

    fn add(n: &str, p: &str) -> AddUser {
        AddUser {
            username: name(n),
            credential: plain(p),
        }
    }

    #[actix_rt::test]
    async fn add_list_auth_limits() {
        let (auth, r) = start(vec![], 2, None);
        assert!(!auth.required());
        r.send(add("a", "1")).await.unwrap().unwrap();
        assert!(auth.required());
        assert_eq!(
            r.send(add("a", "2")).await.unwrap(),
            Err(RegistryError::Exists)
        );
        r.send(add("b", "2")).await.unwrap().unwrap();
        assert_eq!(
            r.send(add("c", "3")).await.unwrap(),
            Err(RegistryError::Full)
        );
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["a", "b"]);
        assert!(verdict(&auth, "a", "1").await.accepted());
        assert_eq!(verdict(&auth, "a", "2").await, Verdict::WrongPassword);
        assert_eq!(verdict(&auth, "z", "1").await, Verdict::NoSuchUser);
        r.send(ChangePassword {
            username: name("a"),
            credential: plain("9"),
        })
        .await
        .unwrap()
        .unwrap();
        assert!(verdict(&auth, "a", "9").await.accepted());
        assert!(!verdict(&auth, "a", "1").await.accepted());
        r.send(RemoveUser {
            username: name("a"),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            r.send(RemoveUser {
                username: name("a")
            })
            .await
            .unwrap(),
            Err(RegistryError::NoSuchUser)
        );
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["b"]);
        // Removing the last user leaves authentication on: nobody gets in.
        r.send(RemoveUser {
            username: name("b"),
        })
        .await
        .unwrap()
        .unwrap();
        assert!(auth.required() && auth.users().is_empty());
    }

    #[test]
    fn rejects_too_many_or_duplicates() {
        let rec = |n: &str| (name(n), plain("1"), Origin::Flag);
        assert_eq!(
            table(vec![rec("a"), rec("b")], 1).unwrap_err(),
            UsersError::TooMany(2, 1)
        );
        assert!(matches!(
            table(vec![rec("a"), rec("a")], 5),
            Err(UsersError::Twice(_))
        ));
    }

    #[actix_rt::test]
    async fn reload_replaces_everyone_or_nobody() {
        let rec = |n: &str, p: &str| (name(n), plain(p), Origin::Stored);
        let (auth, r) = start(vec![rec("a", "1")], 2, None);
        let reload = |stored: Vec<UserRecord>| Reload {
            flags: vec![],
            stored: Some(stored),
        };
        let n = r
            .send(reload(vec![rec("b", "2"), rec("c", "3")]))
            .await
            .unwrap();
        assert_eq!(n, Ok(2));
        assert!(!verdict(&auth, "a", "1").await.accepted(), "a was removed");
        assert!(verdict(&auth, "c", "3").await.accepted());
        let three = vec![rec("x", "1"), rec("y", "1"), rec("z", "1")];
        assert!(r.send(reload(three)).await.unwrap().is_err());
        let twice = vec![rec("x", "1"), rec("x", "2")];
        assert!(r.send(reload(twice)).await.unwrap().is_err());
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["b", "c"]);
        // Reloading to nobody keeps authentication required.
        assert_eq!(r.send(reload(vec![])).await.unwrap(), Ok(0));
        assert!(auth.required());
    }

    /// Without a users file, a reload of the flags (SIGHUP with a config
    /// file) keeps what the manager added and changed.
    #[actix_rt::test]
    async fn without_a_file_a_reload_keeps_the_managers_changes() {
        let flag = |n: &str, p: &str| (name(n), plain(p), Origin::Flag);
        let (auth, r) = start(vec![flag("alice", "w")], 10, None);
        r.send(ChangePassword {
            username: name("alice"),
            credential: plain("x"),
        })
        .await
        .unwrap()
        .unwrap();
        r.send(add("bob", "b")).await.unwrap().unwrap();
        let n = r
            .send(Reload {
                flags: vec![flag("alice", "w"), flag("carol", "c")],
                stored: None,
            })
            .await
            .unwrap();
        assert_eq!(n, Ok(3));
        assert!(
            verdict(&auth, "alice", "x").await.accepted(),
            "changed stays so"
        );
        assert!(!verdict(&auth, "alice", "w").await.accepted());
        assert!(verdict(&auth, "bob", "b").await.accepted(), "added stays");
        assert!(
            verdict(&auth, "carol", "c").await.accepted(),
            "a new flag user"
        );
    }

    #[actix_rt::test]
    async fn failed_write_changes_nothing() {
        // A users file inside a directory that does not exist cannot be written.
        let path = std::env::temp_dir().join("actor-socks-no-such-dir/x/users");
        let (auth, r) = start(vec![], 5, Some(path));
        let res = r.send(add("a", "1")).await.unwrap();
        assert!(matches!(res, Err(RegistryError::Io(_))));
        assert!(r.send(ListUsers).await.unwrap().is_empty());
        assert!(auth.users().is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(String, String),
        Remove(String),
        Change(String, String),
    }

    fn ops() -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
        use proptest::prelude::*;
        // A few names so that operations collide; odd characters throughout.
        let name = prop_oneof![
            Just("alice".to_string()),
            Just("flagged".to_string()),
            Just("bob smith".to_string()),
            Just("ünï".to_string()),
            Just("x#y".to_string()),
            "[a-c]{1,2}",
            any::<String>(),
        ];
        let pass = prop_oneof!["[ -~]{1,20}", any::<String>()];
        let op = prop_oneof![
            (name.clone(), pass.clone()).prop_map(|(n, p)| Op::Add(n, p)),
            name.clone().prop_map(Op::Remove),
            (name, pass).prop_map(|(n, p)| Op::Change(n, p)),
        ];
        proptest::collection::vec(op, 0..24)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any sequence of adds, removes and password changes (whatever
        /// the manager accepts), then a reload of the users file with the
        /// `--user` flags: exactly the registry's users, each with its
        /// password.
        #[test]
        fn the_file_gives_back_exactly_the_registry(ops in ops()) {
            let dir = std::env::temp_dir().join(format!(
                "as-registry-prop-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("users");
            let flags = vec![(name("flagged"), plain("fpw"), Origin::Flag)];
            actix_rt::System::new().block_on(async {
                let (auth, r) = start(flags.clone(), 8, Some(path.clone()));
                for op in ops {
                    // What the manager codec would refuse never gets here.
                    let _ = match op {
                        Op::Add(n, p) => match (UserName::new(n), Secret::new(p)) {
                            (Ok(n), Ok(p)) => r.send(AddUser { username: n, credential: Credential::Plain(p) }).await.unwrap(),
                            _ => continue,
                        },
                        Op::Remove(n) => match UserName::new(n) {
                            Ok(n) => r.send(RemoveUser { username: n }).await.unwrap(),
                            _ => continue,
                        },
                        Op::Change(n, p) => match (UserName::new(n), Secret::new(p)) {
                            (Ok(n), Ok(p)) => r.send(ChangePassword { username: n, credential: Credential::Plain(p) }).await.unwrap(),
                            _ => continue,
                        },
                    };
                }
                let live = auth.users();
                // Reload as SIGHUP does: the flags and the file again.
                let stored: Vec<UserRecord> = if path.exists() {
                    users_file::load(&path)
                        .unwrap()
                        .into_iter()
                        .map(|(n, c)| (n, c, Origin::Stored))
                        .collect()
                } else {
                    vec![]
                };
                let n = r.send(Reload { flags: flags.clone(), stored: Some(stored) }).await.unwrap().unwrap();
                let reloaded = auth.users();
                let view = |t: &UserTable| {
                    let mut v: Vec<(String, String)> = t
                        .entries()
                        .iter()
                        .map(|e| (e.name.to_string(), e.credential.file_field().to_string()))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(n, live.len());
                assert_eq!(view(&reloaded), view(&live));
            });
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
