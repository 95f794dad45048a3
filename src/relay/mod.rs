//! The outbound side of a session: resolving and connecting to the target
//! ([`connect`]) and moving bytes both ways while counting them ([`copy`]).

pub mod connect;
pub mod copy;
