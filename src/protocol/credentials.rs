//! Credentials as they cross a boundary: [`UserName`] and [`Secret`].
//!
//! Every place a user name or password enters the process (the RFC 1929
//! sub-negotiation, the manager protocol, `--user`/`--admin`, the users file)
//! builds one of these once; everything behind the boundary takes them as
//! they are. The rules make the users file unambiguous and the logs safe:
//!
//! - a user name is 1 to 255 bytes of UTF-8 with no control character, no
//!   invisible or bidirectional formatting character (which would make one
//!   name look like another in a listing), no `:` (the file's separator)
//!   and no leading `#` or whitespace (a comment or a blank line to the
//!   file's reader);
//! - a password is 1 to 255 bytes of UTF-8 with no CR, LF or NUL (which
//!   would end or split a line of the file).
//!
//! 255 bytes is what RFC 1929 section 2 (ULEN, PLEN) and the manager
//! protocol's one-octet lengths can carry.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// The longest user name or password, in bytes (RFC 1929's ULEN and PLEN).
pub const MAX_CREDENTIAL_LEN: usize = 255;

/// Which credential a [`CredentialError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    UserName,
    Password,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::UserName => "user name",
            Field::Password => "password",
        })
    }
}

/// Why a user name or password was refused. Never carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("{0} is empty")]
    Empty(Field),
    #[error("{0} is {1} bytes long (at most 255)")]
    TooLong(Field, usize),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(Field),
    #[error("user name contains a control character")]
    NameControl,
    #[error("user name contains an invisible or bidirectional formatting character")]
    NameInvisible,
    #[error("user name contains ':'")]
    NameColon,
    #[error("user name starts with '#' or whitespace")]
    NameStart,
    #[error("password contains CR, LF or NUL")]
    PasswordLineBreak,
}

/// Invisible and bidirectional formatting characters (zero-width spaces
/// and joiners, direction marks and overrides, line and paragraph
/// separators, word joiner and invisible operators, isolates, the BOM):
/// characters a terminal acts on or hides.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn check_len(field: Field, s: &str) -> Result<(), CredentialError> {
    match s.len() {
        0 => Err(CredentialError::Empty(field)),
        n if n > MAX_CREDENTIAL_LEN => Err(CredentialError::TooLong(field, n)),
        _ => Ok(()),
    }
}

/// A validated user name (see the module header for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Checks `s` against the user-name rules.
    pub fn new(s: impl Into<String>) -> Result<UserName, CredentialError> {
        let s = s.into();
        check_len(Field::UserName, &s)?;
        // One pass over the bytes (C1 controls are C2 80..=C2 9F in UTF-8):
        // the same as `char::is_control`, and cheap in a debug build.
        let b = s.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            let c1 = c == 0xc2 && matches!(b.get(i + 1), Some(0x80..=0x9f));
            if c < 0x20 || c == 0x7f || c1 {
                return Err(CredentialError::NameControl);
            }
            if c == b':' {
                return Err(CredentialError::NameColon);
            }
        }
        if !s.is_ascii() && s.chars().any(is_invisible_format) {
            return Err(CredentialError::NameInvisible);
        }
        if s.starts_with('#') || s.starts_with(char::is_whitespace) {
            return Err(CredentialError::NameStart);
        }
        Ok(UserName(s))
    }

    /// From wire bytes (which must be UTF-8).
    pub fn from_bytes(b: &[u8]) -> Result<UserName, CredentialError> {
        let s = std::str::from_utf8(b).map_err(|_| CredentialError::NotUtf8(Field::UserName))?;
        UserName::new(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes (1..=255).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for UserName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = CredentialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserName::new(s)
    }
}

impl TryFrom<&str> for UserName {
    type Error = CredentialError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        UserName::new(s)
    }
}

impl PartialEq<str> for UserName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for UserName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A validated password: its `Debug` and `Display` never print it, its
/// equality is constant-time, and [`Secret::expose`] is the one (greppable)
/// way to read it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Checks `s` against the password rules.
    pub fn new(s: impl Into<String>) -> Result<Secret, CredentialError> {
        let s = s.into();
        check_len(Field::Password, &s)?;
        if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(CredentialError::PasswordLineBreak);
        }
        Ok(Secret(s))
    }

    /// From wire bytes (which must be UTF-8).
    pub fn from_bytes(b: &[u8]) -> Result<Secret, CredentialError> {
        let s = std::str::from_utf8(b).map_err(|_| CredentialError::NotUtf8(Field::Password))?;
        Secret::new(s)
    }

    /// The secret itself; call sites are few and greppable.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality (the time taken depends only on the lengths).
    pub fn ct_eq(&self, other: &str) -> bool {
        ct_eq(self.0.as_bytes(), other.as_bytes())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.ct_eq(&other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = CredentialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::new(s)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Parses `NAME:PASS` (the first `:` separates, so the password may hold
/// more): the form of `--user`, `--admin` and `ACTOR_SOCKS_ADMIN`.
pub fn parse_pair(s: &str) -> Result<(UserName, Secret), String> {
    let (name, pass) = s
        .split_once(':')
        .ok_or_else(|| "expected NAME:PASS".to_string())?;
    let name = UserName::new(name).map_err(|e| e.to_string())?;
    let pass = Secret::new(pass).map_err(|e| e.to_string())?;
    Ok((name, pass))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        assert!(UserName::new("alice").is_ok());
        assert!(UserName::new("bob smith").is_ok());
        assert!(UserName::new("émile").is_ok());
        assert_eq!(
            UserName::new(""),
            Err(CredentialError::Empty(Field::UserName))
        );
        assert_eq!(
            UserName::new("a".repeat(256)),
            Err(CredentialError::TooLong(Field::UserName, 256))
        );
        assert!(UserName::new("a".repeat(255)).is_ok());
        for bad in [
            "a\nb", "a\rb", "a\0", "\x1b[31m", "a\u{7f}", "a\u{85}b", "tab\t",
        ] {
            assert_eq!(
                UserName::new(bad),
                Err(CredentialError::NameControl),
                "{bad:?}"
            );
        }
        assert_eq!(UserName::new("a:b"), Err(CredentialError::NameColon));
        for bad in [
            "ad\u{202e}nimda",
            "a\u{200b}b",
            "a\u{2028}",
            "\u{feff}root",
            "x\u{2066}y",
        ] {
            assert_eq!(
                UserName::new(bad),
                Err(CredentialError::NameInvisible),
                "{bad:?}"
            );
        }
        assert!(UserName::new("trailing space ").is_ok());
        for bad in ["#x", " x", "\u{a0}x", "\u{3000}x"] {
            assert_eq!(
                UserName::new(bad),
                Err(CredentialError::NameStart),
                "{bad:?}"
            );
        }
        assert_eq!(
            UserName::from_bytes(&[0xff]),
            Err(CredentialError::NotUtf8(Field::UserName))
        );
    }

    #[test]
    fn secrets() {
        assert!(Secret::new("pa:ss #x").is_ok());
        assert!(Secret::new(" leading space").is_ok());
        for bad in ["a\nb", "a\r", "\0"] {
            assert_eq!(Secret::new(bad), Err(CredentialError::PasswordLineBreak));
        }
        assert_eq!(
            Secret::new(""),
            Err(CredentialError::Empty(Field::Password))
        );
        assert!(Secret::new("p".repeat(256)).is_err());
        let p = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "Secret(***)");
        assert_eq!(format!("{p}"), "***");
        assert!(p.ct_eq("hunter2") && !p.ct_eq("hunter3") && !p.ct_eq("hunter"));
        // The error never carries the value.
        let e = Secret::new("sekrit\n").unwrap_err().to_string();
        assert!(!e.contains("sekrit"));
    }

    #[test]
    fn pairs() {
        let (n, p) = parse_pair("alice:pa:ss").unwrap();
        assert_eq!(n, "alice");
        assert!(p.ct_eq("pa:ss"));
        assert!(parse_pair("alice").is_err());
        assert!(parse_pair(":x").is_err());
        assert!(parse_pair("a:").is_err());
        assert!(parse_pair("#a:x").is_err());
    }

    proptest! {
        /// The byte scan agrees with `char::is_control`.
        #[test]
        fn control_scan_matches_the_char_rule(s in any::<String>()) {
            let expect = s.chars().any(char::is_control);
            let got = UserName::new(s.clone()) == Err(CredentialError::NameControl);
            // Other rules may refuse first; a control char always refuses.
            prop_assert!(!got || expect);
            if expect && !s.contains(':') && !s.is_empty() && s.len() <= 255 {
                prop_assert!(UserName::new(s).is_err());
            }
        }

        /// Whatever is accepted cannot break a `name:password` line.
        #[test]
        fn accepted_values_are_line_safe(s in any::<String>()) {
            if let Ok(n) = UserName::new(s.clone()) {
                prop_assert!(!n.as_str().contains([':', '\n', '\r']));
                prop_assert!(!n.as_str().starts_with('#'));
                prop_assert!(n.as_str().trim() == n.as_str().trim_end());
            }
            if let Ok(p) = Secret::new(s) {
                prop_assert!(!p.expose().contains(['\n', '\r', '\0']));
            }
        }
    }
}
