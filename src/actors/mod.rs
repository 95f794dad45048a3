//! The actor system, one actor per file.
