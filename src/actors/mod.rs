//! The actor system, one actor per file. Each message sits beside the actor
//! that handles it (`supervisor::Admit`, `registry::AddUser`, ...).
//!
//! - [`listener::Listener`]: accepts SOCKS clients.
//! - [`supervisor::ConnectionSupervisor`]: admits against max clients, starts
//!   one [`session::SocksSession`] per client on a worker arbiter.
//! - [`registry::UserRegistry`]: users and authentication.
//! - [`metrics::MetricsCollector`]: historic and active connections, bytes.
//! - [`manager_listener::ManagerListener`]: accepts SCTP associations.
//! - [`manager_session::ManagerSession`]: one manager request per association.

pub mod listener;
pub mod manager_listener;
pub mod manager_session;
pub mod metrics;
pub mod registry;
pub mod session;
pub mod supervisor;
