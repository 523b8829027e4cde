//! Differential fuzzing of the data path's parser: an oracle and a source
//! of frames, compared with the real programs by `tests/fuzz.rs`.
//!
//! - [`reference`](mod@reference): an independent classifier of frames into
//!   flow keys and conservation buckets, written from the documented parsing
//!   rules (docs/ARCHITECTURE.md, "The data path"); its module documentation
//!   is the specification, rule by rule.
//! - [`hostile`]: a seeded, deterministic generator of hostile Ethernet
//!   frames.

pub mod hostile;
pub mod reference;
