//! Stored passwords: plaintext as an operator wrote it, or an Argon2id PHC
//! string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`).
//!
//! Hashing and verifying cost tens of milliseconds of CPU by design, so they
//! never run on a session worker: [`Verifier`] runs them on tokio's blocking
//! pool, at most [`Verifier::slots`] at once (so a flood of wrong passwords
//! takes at most that many cores), and remembers each successful
//! verification as a keyed digest (BLAKE2s-256 MAC under a random key made
//! at start, compared in constant time): a user who logged in once logs in
//! again in microseconds, and the cache is useless to anyone who reads the
//! process's memory without the key, since it holds no password.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::protocol::{Secret, UserName};

/// Argon2id memory cost for new hashes, KiB (OWASP's first recommendation:
/// 19 MiB, 2 passes, 1 lane).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes for new hashes.
pub const T_COST: u32 = 2;
/// Argon2id lanes for new hashes.
pub const P_COST: u32 = 1;
/// The most memory a stored hash may ask for, KiB: a hand-edited file cannot
/// make one verification take gigabytes.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;
/// The most passes a stored hash may ask for.
pub const MAX_T_COST: u32 = 16;
/// The most lanes a stored hash may ask for.
pub const MAX_P_COST: u32 = 8;

/// Why a stored password string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a PHC string: {0}")]
    NotPhc(String),
    #[error("only argon2id hashes are accepted, not {0}")]
    Algorithm(String),
    #[error("hash parameters out of bounds (m <= {MAX_M_COST_KIB} KiB, t <= {MAX_T_COST}, p <= {MAX_P_COST})")]
    TooCostly,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// An Argon2id PHC string, checked once: it parses, it is argon2id, and its
/// cost is bounded.
#[derive(Clone, PartialEq, Eq)]
pub struct PhcString(String);

impl PhcString {
    pub fn parse(s: &str) -> Result<PhcString, HashError> {
        let h = PasswordHash::new(s).map_err(|e| HashError::NotPhc(e.to_string()))?;
        if h.algorithm.as_str() != "argon2id" {
            return Err(HashError::Algorithm(h.algorithm.as_str().to_string()));
        }
        let p = Params::try_from(&h).map_err(|e| HashError::NotPhc(e.to_string()))?;
        if p.m_cost() > MAX_M_COST_KIB || p.t_cost() > MAX_T_COST || p.p_cost() > MAX_P_COST {
            return Err(HashError::TooCostly);
        }
        if h.hash.is_none() {
            return Err(HashError::NotPhc("no hash value".into()));
        }
        Ok(PhcString(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhcString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret, but no use in a log either.
        f.write_str("PhcString(..)")
    }
}

/// How a user's password is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Written by hand (users file) or given with `--user`.
    Plain(Secret),
    /// Argon2id: what the manager stores, and `hash-password` prints.
    Hashed(PhcString),
}

impl Credential {
    /// Reads a users-file password field: a value starting with `$argon2`
    /// must be a valid PHC string (a typo is an error, never a plaintext
    /// password that looks like a hash); anything else is plaintext.
    pub fn from_file_field(s: &str) -> Result<Credential, String> {
        if s.starts_with("$argon2") {
            return PhcString::parse(s)
                .map(Credential::Hashed)
                .map_err(|e| e.to_string());
        }
        Secret::new(s)
            .map(Credential::Plain)
            .map_err(|e| e.to_string())
    }

    /// The users-file form (plaintext or PHC string).
    pub fn file_field(&self) -> &str {
        match self {
            Credential::Plain(s) => s.expose(),
            Credential::Hashed(h) => h.as_str(),
        }
    }

    pub fn is_hashed(&self) -> bool {
        matches!(self, Credential::Hashed(_))
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid constants");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh salt (blocking: tens of milliseconds).
pub fn hash(password: &Secret) -> Result<PhcString, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let h = argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| HashError::Hashing(e.to_string()))?;
    Ok(PhcString(h.to_string()))
}

/// Checks `password` against `phc` (blocking: the hash's own cost).
pub fn verify_blocking(phc: &PhcString, password: &Secret) -> bool {
    match PasswordHash::new(phc.as_str()) {
        // Verification uses the parameters stored in the hash.
        Ok(h) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A keyed digest of one successful verification.
pub type Digest = [u8; 32];

/// What [`Verifier::check`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The password matches; `cached` when no hash had to be computed.
    Match {
        cached: bool,
    },
    Mismatch,
    /// Too many verifications are waiting already: refused without hashing.
    Busy,
}

/// Runs hash verifications off the session workers, bounded, with the cache
/// of successful ones (see the module header). One per process, shared.
pub struct Verifier {
    key: [u8; 32],
    slots: Arc<Semaphore>,
    n_slots: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Verifier {
    /// `slots` verifications at once (at least 1), `max_waiting` more
    /// queued; beyond that a check answers [`Check::Busy`].
    pub fn new(slots: usize, max_waiting: usize) -> Verifier {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let n_slots = slots.max(1);
        Verifier {
            key,
            slots: Arc::new(Semaphore::new(n_slots)),
            n_slots,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Verifications that may run at once.
    pub fn slots(&self) -> usize {
        self.n_slots
    }

    /// The digest that stands for "`name` logged in with `password` against
    /// `phc`": a MAC under the process key over the three, length-prefixed.
    pub fn digest(&self, name: &UserName, password: &Secret, phc: &PhcString) -> Digest {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.key).expect("32-byte key");
        for part in [
            name.as_bytes(),
            password.expose().as_bytes(),
            phc.as_str().as_bytes(),
        ] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks `password` against `phc`: the cached digest first (constant
    /// time), else Argon2 on the blocking pool under the bound. A match
    /// that had to be computed is stored through `remember`.
    pub async fn check(
        &self,
        name: &UserName,
        password: &Secret,
        phc: &PhcString,
        cached: Option<Digest>,
        remember: impl FnOnce(Digest),
    ) -> Check {
        let digest = self.digest(name, password, phc);
        if let Some(c) = cached {
            if crate::protocol::ct_eq(&c, &digest) {
                return Check::Match { cached: true };
            }
        }
        match self.run(phc.clone(), password.clone()).await {
            Some(true) => {
                remember(digest);
                Check::Match { cached: false }
            }
            Some(false) => Check::Mismatch,
            None => Check::Busy,
        }
    }

    /// Spends one verification's effort on nothing (an unknown user's
    /// login costs what a known user's does).
    pub async fn decoy(&self, password: &Secret) -> Check {
        static DECOY: std::sync::OnceLock<PhcString> = std::sync::OnceLock::new();
        let phc = DECOY
            .get_or_init(|| hash(&Secret::new("decoy").expect("valid")).expect("hashes"))
            .clone();
        match self.run(phc, password.clone()).await {
            None => Check::Busy,
            Some(_) => Check::Mismatch,
        }
    }

    /// Argon2 verification on the blocking pool; `None` when too many wait.
    async fn run(&self, phc: PhcString, password: Secret) -> Option<bool> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting + self.n_slots {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Given back on every path, the future's cancellation included.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting);
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        let r = tokio::task::spawn_blocking(move || {
            let ok = verify_blocking(&phc, &password);
            drop(permit);
            ok
        })
        .await;
        Some(r.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    #[test]
    fn hashes_verify_and_parse_back() {
        let h = hash(&secret("pw")).unwrap();
        assert!(h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking(&h, &secret("pw")));
        assert!(!verify_blocking(&h, &secret("pX")));
        assert_eq!(PhcString::parse(h.as_str()).unwrap(), h);
        assert_eq!(format!("{h:?}"), "PhcString(..)");
    }

    #[test]
    fn file_fields() {
        assert!(matches!(
            Credential::from_file_field("plain pw"),
            Ok(Credential::Plain(_))
        ));
        // Looks like a hash: must be one.
        assert!(Credential::from_file_field("$argon2id$garbage").is_err());
        // Other algorithms and costly parameters are refused.
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$dGVzdGhhc2h0ZXN0aGFzaA";
        assert!(Credential::from_file_field(argon2i)
            .unwrap_err()
            .contains("argon2id"));
        let costly = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$dGVzdGhhc2h0ZXN0aGFzaA";
        assert!(Credential::from_file_field(costly)
            .unwrap_err()
            .contains("out of bounds"));
    }

    #[tokio::test]
    async fn cache_makes_repeat_logins_cheap_and_is_keyed() {
        let v = Verifier::new(1, 8);
        let name = UserName::new("alice").unwrap();
        let h = hash(&secret("pw")).unwrap();
        let mut stored = None;
        let c = v
            .check(&name, &secret("pw"), &h, None, |d| stored = Some(d))
            .await;
        assert_eq!(c, Check::Match { cached: false });
        let d = stored.expect("a match is remembered");
        let c = v
            .check(&name, &secret("pw"), &h, Some(d), |_| {
                panic!("no new entry")
            })
            .await;
        assert_eq!(c, Check::Match { cached: true });
        // A wrong password does not match the cached digest, and is not cached.
        let c = v
            .check(&name, &secret("px"), &h, Some(d), |_| panic!("not cached"))
            .await;
        assert_eq!(c, Check::Mismatch);
        // Another process (another key) computes another digest.
        let other = Verifier::new(1, 8);
        assert_ne!(other.digest(&name, &secret("pw"), &h), d);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_beyond_the_queue_is_busy() {
        let v = Arc::new(Verifier::new(1, 2));
        let h = hash(&secret("pw")).unwrap();
        let name = UserName::new("a").unwrap();
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (v, h, name) = (v.clone(), h.clone(), name.clone());
                tokio::spawn(async move { v.check(&name, &secret("bad"), &h, None, |_| {}).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap() == Check::Busy {
                busy += 1;
            }
        }
        // One running and two waiting at most: the rest are refused at once.
        assert!(busy >= 9, "busy: {busy}");
        assert_eq!(v.waiting.load(Ordering::Acquire), 0);
    }
}
