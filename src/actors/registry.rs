//! `UserRegistry`: owns the SOCKS users and checks their credentials.
//!
//! Holds at most `capacity` users (255 at most: the manager's list reply
//! counts them in one byte). With a users file, every change is written to it
//! atomically before it takes effect; a failed write changes nothing.
//! [`Reload`] (on SIGHUP) replaces the whole set with what was read back
//! from the file; sessions already authenticated are not touched.

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::protocol::{ct_eq, Password};
use crate::users_file;

pub struct UserRegistry {
    /// Insertion order is the order `ListUsers` reports.
    users: Vec<(String, Password)>,
    capacity: usize,
    file: Option<PathBuf>,
    log: Logger,
    /// `!users.is_empty()`, published for sessions to read without a message.
    auth_required: Arc<AtomicBool>,
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

impl UserRegistry {
    /// `users` beyond `capacity` are an error for the caller to report.
    pub fn new(
        users: Vec<(String, Password)>,
        capacity: usize,
        file: Option<PathBuf>,
        log: Logger,
    ) -> Result<Self, String> {
        check(&users, capacity)?;
        let auth_required = Arc::new(AtomicBool::new(!users.is_empty()));
        Ok(UserRegistry {
            users,
            capacity,
            file,
            log,
            auth_required,
        })
    }

    /// Adopts `users` as they are (no file write) and publishes the flag.
    fn adopt(&mut self, users: Vec<(String, Password)>) {
        self.users = users;
        self.auth_required
            .store(!self.users.is_empty(), Ordering::Release);
    }

    /// Whether authentication is required, kept current by the registry.
    pub fn auth_flag(&self) -> Arc<AtomicBool> {
        self.auth_required.clone()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.users.iter().position(|(n, _)| n == name)
    }

    /// Writes `next` to the users file (if any); only then is it adopted.
    fn commit(&mut self, next: Vec<(String, Password)>) -> Result<(), RegistryError> {
        if let Some(path) = &self.file {
            if let Err(e) = users_file::store(path, &next) {
                warn!(self.log, "users file write failed; change not applied";
                      "path" => %path.display(), "error" => %e);
                return Err(RegistryError::Io(e.to_string()));
            }
        }
        self.adopt(next);
        Ok(())
    }
}

/// A user set must fit the capacity and name nobody twice.
fn check(users: &[(String, Password)], capacity: usize) -> Result<(), String> {
    if users.len() > capacity {
        return Err(format!(
            "{} users configured but the registry holds at most {capacity} (--max-users)",
            users.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in users {
        if !seen.insert(name.as_str()) {
            return Err(format!("user {name:?} is configured twice"));
        }
    }
    Ok(())
}

impl Actor for UserRegistry {
    type Context = Context<Self>;
}

/// Is authentication required (does any user exist)?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AuthRequired;

/// Check a user's credentials (constant time in the password).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Authenticate {
    pub username: String,
    pub password: Password,
}

#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct AddUser {
    pub username: String,
    pub password: Password,
}

#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct RemoveUser {
    pub username: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct ChangePassword {
    pub username: String,
    pub password: Password,
}

/// The user names, in the order they were added.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListUsers;

/// Replace every user with `users` (read back from the users file, merged
/// with `--user`): nothing is written. Refused, changing nothing, if they do
/// not fit `--max-users` or name someone twice. Resolves to the new count.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct Reload {
    pub users: Vec<(String, Password)>,
}

impl Handler<AuthRequired> for UserRegistry {
    type Result = bool;
    fn handle(&mut self, _: AuthRequired, _: &mut Context<Self>) -> bool {
        !self.users.is_empty()
    }
}

impl Handler<Authenticate> for UserRegistry {
    type Result = bool;
    fn handle(&mut self, msg: Authenticate, _: &mut Context<Self>) -> bool {
        match self.find(&msg.username) {
            Some(i) => self.users[i].1.ct_eq(msg.password.expose()),
            None => {
                // Spend the same effort for an unknown user.
                let _ = ct_eq(
                    msg.password.expose().as_bytes(),
                    msg.password.expose().as_bytes(),
                );
                false
            }
        }
    }
}

impl Handler<AddUser> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: AddUser, _: &mut Context<Self>) -> Self::Result {
        if self.find(&msg.username).is_some() {
            return Err(RegistryError::Exists);
        }
        if self.users.len() >= self.capacity {
            return Err(RegistryError::Full);
        }
        let mut next = self.users.clone();
        next.push((msg.username.clone(), msg.password));
        self.commit(next)?;
        info!(self.log, "user added"; "user" => %msg.username, "users" => self.users.len());
        Ok(())
    }
}

impl Handler<RemoveUser> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: RemoveUser, _: &mut Context<Self>) -> Self::Result {
        let i = self.find(&msg.username).ok_or(RegistryError::NoSuchUser)?;
        let mut next = self.users.clone();
        next.remove(i);
        self.commit(next)?;
        info!(self.log, "user removed"; "user" => %msg.username, "users" => self.users.len());
        Ok(())
    }
}

impl Handler<ChangePassword> for UserRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: ChangePassword, _: &mut Context<Self>) -> Self::Result {
        let i = self.find(&msg.username).ok_or(RegistryError::NoSuchUser)?;
        let mut next = self.users.clone();
        next[i].1 = msg.password;
        self.commit(next)?;
        info!(self.log, "password changed"; "user" => %msg.username);
        Ok(())
    }
}

impl Handler<Reload> for UserRegistry {
    type Result = Result<usize, String>;
    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        check(&msg.users, self.capacity)?;
        let before: std::collections::HashSet<String> =
            self.users.iter().map(|(n, _)| n.clone()).collect();
        let added = msg
            .users
            .iter()
            .filter(|(n, _)| !before.contains(n))
            .count();
        let removed = before.len() + added - msg.users.len();
        self.adopt(msg.users);
        info!(self.log, "users reloaded";
              "users" => self.users.len(), "added" => added, "removed" => removed);
        Ok(self.users.len())
    }
}

impl Handler<ListUsers> for UserRegistry {
    type Result = Vec<String>;
    fn handle(&mut self, _: ListUsers, _: &mut Context<Self>) -> Vec<String> {
        self.users.iter().map(|(n, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::discard;

    fn pw(s: &str) -> Password {
        Password::new(s)
    }

    #[actix_rt::test]
    async fn add_list_auth_limits() {
        let r = UserRegistry::new(vec![], 2, None, discard())
            .unwrap()
            .start();
        assert!(!r.send(AuthRequired).await.unwrap());
        r.send(AddUser {
            username: "a".into(),
            password: pw("1"),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            r.send(AddUser {
                username: "a".into(),
                password: pw("2")
            })
            .await
            .unwrap(),
            Err(RegistryError::Exists)
        );
        r.send(AddUser {
            username: "b".into(),
            password: pw("2"),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            r.send(AddUser {
                username: "c".into(),
                password: pw("3")
            })
            .await
            .unwrap(),
            Err(RegistryError::Full)
        );
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["a", "b"]);
        assert!(r.send(AuthRequired).await.unwrap());
        assert!(r
            .send(Authenticate {
                username: "a".into(),
                password: pw("1")
            })
            .await
            .unwrap());
        assert!(!r
            .send(Authenticate {
                username: "a".into(),
                password: pw("2")
            })
            .await
            .unwrap());
        assert!(!r
            .send(Authenticate {
                username: "z".into(),
                password: pw("1")
            })
            .await
            .unwrap());
        r.send(ChangePassword {
            username: "a".into(),
            password: pw("9"),
        })
        .await
        .unwrap()
        .unwrap();
        assert!(r
            .send(Authenticate {
                username: "a".into(),
                password: pw("9")
            })
            .await
            .unwrap());
        r.send(RemoveUser {
            username: "a".into(),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            r.send(RemoveUser {
                username: "a".into()
            })
            .await
            .unwrap(),
            Err(RegistryError::NoSuchUser)
        );
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["b"]);
    }

    #[test]
    fn rejects_too_many_or_duplicates() {
        let two = vec![("a".to_string(), pw("1")), ("b".to_string(), pw("2"))];
        assert!(UserRegistry::new(two, 1, None, discard()).is_err());
        let dup = vec![("a".to_string(), pw("1")), ("a".to_string(), pw("2"))];
        assert!(UserRegistry::new(dup, 5, None, discard()).is_err());
    }

    #[actix_rt::test]
    async fn reload_replaces_everyone_or_nobody() {
        let r = UserRegistry::new(vec![("a".into(), pw("1"))], 2, None, discard())
            .unwrap()
            .start();
        let auth = |u: &str, p: &str| {
            r.send(Authenticate {
                username: u.into(),
                password: pw(p),
            })
        };
        let n = r
            .send(Reload {
                users: vec![("b".into(), pw("2")), ("c".into(), pw("3"))],
            })
            .await
            .unwrap();
        assert_eq!(n, Ok(2));
        assert!(!auth("a", "1").await.unwrap(), "a was removed");
        assert!(auth("c", "3").await.unwrap());
        // Too many, or a name twice: refused, nothing changes.
        let three = vec![
            ("x".into(), pw("1")),
            ("y".into(), pw("1")),
            ("z".into(), pw("1")),
        ];
        assert!(r.send(Reload { users: three }).await.unwrap().is_err());
        let twice = vec![("x".into(), pw("1")), ("x".into(), pw("2"))];
        assert!(r.send(Reload { users: twice }).await.unwrap().is_err());
        assert_eq!(r.send(ListUsers).await.unwrap(), vec!["b", "c"]);
        // Reloading to nobody turns authentication off.
        assert_eq!(r.send(Reload { users: vec![] }).await.unwrap(), Ok(0));
        assert!(!r.send(AuthRequired).await.unwrap());
    }

    #[actix_rt::test]
    async fn failed_write_changes_nothing() {
        // A users file inside a directory that does not exist cannot be written.
        let path = std::env::temp_dir().join("actor-socks-no-such-dir/x/users");
        let r = UserRegistry::new(vec![], 5, Some(path), discard())
            .unwrap()
            .start();
        let res = r
            .send(AddUser {
                username: "a".into(),
                password: pw("1"),
            })
            .await
            .unwrap();
        assert!(matches!(res, Err(RegistryError::Io(_))));
        assert!(r.send(ListUsers).await.unwrap().is_empty());
    }
}
