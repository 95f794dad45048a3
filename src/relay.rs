//! The outbound side of a session.
