//! The mechanisms behind a session's three commands: resolving and
//! connecting to a target ([`connect`]), moving bytes both ways while
//! counting them ([`copy`]), the BIND listening socket ([`bind`]) and the UDP
//! ASSOCIATE relay ([`udp`]).

pub mod bind;
pub mod connect;
pub mod copy;
pub mod udp;
