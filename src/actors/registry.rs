//! `UserRegistry`: owns the SOCKS users and checks their credentials.
//!
//! Holds at most `capacity` users (255 at most: the manager's list reply
//! counts them in one byte). With a users file, every change is written to it
//! atomically before it takes effect; a failed write changes nothing.

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
        if users.len() > capacity {
            return Err(format!(
                "{} users configured but the registry holds at most {capacity} (--max-users)",
                users.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &users {
            if !seen.insert(name.as_str()) {
                return Err(format!("user {name:?} is configured twice"));
            }
        }
        let auth_required = Arc::new(AtomicBool::new(!users.is_empty()));
        Ok(UserRegistry {
            users,
            capacity,
            file,
            log,
            auth_required,
        })
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
        self.users = next;
        self.auth_required
            .store(!self.users.is_empty(), Ordering::Release);
        Ok(())
    }
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
