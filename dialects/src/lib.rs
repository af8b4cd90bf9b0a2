//! The `fx` dialect.
