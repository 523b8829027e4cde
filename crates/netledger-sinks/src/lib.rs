//! Where netledger's intervals go. Each sink is one module implementing
//! [`netledger::Sink`]: the text formats ([`table`], [`jsonl`], [`csv`]),
//! and [`text`] to pick one by name.

pub mod csv;
pub mod jsonl;
pub mod table;
pub mod text;

pub use text::{text_sink, TextFormat};
