//! Ferrax runtime.
