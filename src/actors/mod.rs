//! The actor system, one actor per file. Each message sits beside the actor
//! that handles it (`listener::Closed`, `registry::AddUser`, ...).
//!
//! - [`listener::Listener`]: one per worker arbiter; accepts SOCKS clients,
//!   admits them through the supervisor's gate and starts one
//!   [`session::SocksSession`] child per client on its own worker.
//! - [`supervisor::ConnectionSupervisor`]: owns max clients (the admission
//!   gate, which shutdown closes for good).
//! - [`child`]: runs these actors as children of the supervision tree.
//! - [`registry::UserRegistry`]: users and authentication.
//! - [`metrics::MetricsCollector`]: historic and active connections, bytes
//!   (lock-free counters the sessions write; snapshots for the manager).
//! - [`manager_listener::ManagerListener`]: accepts SCTP associations.
//! - [`manager_session::ManagerSession`]: one manager request per association.

pub mod child;
pub mod listener;
pub mod manager_listener;
pub mod manager_session;
pub mod metrics;
pub mod registry;
pub mod session;
pub mod supervisor;
