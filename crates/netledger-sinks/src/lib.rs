//! Where netledger's intervals go. Each sink is one module implementing
//! [`netledger::Sink`]: the text formats ([`table`], [`jsonl`], [`csv`]),
//! and [`text`] to pick one by name; the history [`store`], whose reports
//! are written through the text formats; the Prometheus endpoint
//! ([`metrics`], over the exposition formats of [`prometheus`]); and the
//! IPFIX exporter ([`export`], over the encoder of [`ipfix`]).

pub mod csv;
pub mod export;
pub mod ipfix;
pub mod jsonl;
pub mod metrics;
pub mod prometheus;
pub mod store;
pub mod table;
pub mod text;

pub use text::{text_sink, TextFormat};
