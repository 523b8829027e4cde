//! The real consumers of netledger's exports as the export tests start them
//! on loopback inside a test namespace: the lab's helpers
//! ([`netledger_lab::consumers`]), which the sinks' own tests share.
//!
//! A missing tool fails the test with what to install; nothing skips.

pub use netledger_lab::consumers::*;
