//! actor-socks: a SOCKS5 proxy (RFC 1928, RFC 1929) built as an actix actor
//! system, administered at runtime over SCTP.
//!
//! Modules:
//! - [`protocol`]: pure codecs (no sockets, no runtime): [`protocol::socks5`]
//!   for RFC 1928/1929 and [`protocol::manager`] for the SCTP manager protocol.
//! - [`actors`]: one file per actor: the `Listener` accepts, the
//!   `ConnectionSupervisor` admits against max clients, the `UserRegistry` holds
//!   users, the `MetricsCollector` counts, a `SocksSession` serves one client,
//!   a `ManagerSession` serves one SCTP association.
//! - [`relay`]: the outbound side of a session: resolving and connecting
//!   (happy eyeballs), the counted bidirectional copy.
//! - [`transport`]: SCTP I/O for the manager: kernel SCTP (tokio-sctp) and a
//!   userspace SCTP stack over UDP (sctp-proto).
//! - [`config`]: command-line flags (clap) and the resulting settings;
//!   [`config_file`]: `--config`, a TOML file of the same flags.
//! - [`auth`]: the authentication mode, the user table (written by the
//!   `UserRegistry`, read by sessions without a message), password hashing
//!   and the manager's login throttle.
//! - [`rules`]: which clients may connect and which targets may be reached.
//! - [`users_file`]: the `--users-file` format, read and written atomically.
//! - [`logging`]: slog setup (human text or JSON), values escaped.
//! - [`manager_client`]: the manager client (`actor-socks-manager`, and
//!   `examples/manager_client.rs`).
//! - [`ratelog`]: rate-limited log lines whose counts add up exactly.
//! - [`supervision`]: the supervision tree (OTP strategies, intensity,
//!   backoff, escalation), decided sans-IO; `actors::child` runs actors
//!   under it, [`supervision::task`] tasks.
//! - [`server`]: wires the actors together; used by `main.rs` and by tests.
//! - [`stats`]: the counters everyone writes (a leaf: the data plane
//!   imports it, not the actors).
//! - [`sys`]: the few libc calls (file-descriptor limit).
#![deny(unsafe_code)]

// The supervision tree catches panics and restarts what panicked; with
// panic = "abort" a panic would end the process instead.
#[cfg(panic = "abort")]
compile_error!(
    "actor-socks must be built with panic = \"unwind\": its supervision tree catches panics"
);

pub mod actors;
pub mod auth;
pub mod config;
pub mod config_file;
pub mod logging;
pub mod manager_client;
pub mod prometheus;
pub mod protocol;
pub mod ratelog;
pub mod relay;
pub mod rules;
pub mod server;
pub mod stats;
pub mod supervision;
pub mod sys;
pub mod transport;
pub mod users_file;
