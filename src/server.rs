//! Wires the actors together.
