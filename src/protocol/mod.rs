//! Pure wire codecs: no tokio, no actix, no sockets.
//!
//! Decoders follow one shape: `decode(&mut impl Buf) -> Result<Option<T>, Error>`
//! where `Ok(None)` means "incomplete, read more" (never an error), and
//! encoders are `encode(&self, &mut impl BufMut)`.

pub mod credentials;
pub mod manager;
pub mod socks5;

pub use credentials::{ct_eq, CredentialError, Secret, UserName};
