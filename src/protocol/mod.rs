//! Pure wire codecs: no tokio, no actix, no sockets.
//!
//! Decoders follow one shape: `decode(&mut impl Buf) -> Result<Option<T>, Error>`
//! where `Ok(None)` means "incomplete, read more" (never an error), and
//! encoders are `encode(&self, &mut impl BufMut)`.

pub mod manager;
pub mod socks5;

use std::fmt;

/// A password: its `Debug` and `Display` never print it, so it cannot end up in
/// a log record by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
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

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the optimiser from short-circuiting the loop.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert_eq!(format!("{p}"), "***");
        assert!(p.ct_eq("hunter2"));
        assert!(!p.ct_eq("hunter3"));
        assert!(!p.ct_eq("hunter"));
    }
}
