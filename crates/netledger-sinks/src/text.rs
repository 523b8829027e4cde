//! The three text formats, chosen by name.

use std::io::Write;

use netledger::{LedgerConfig, Sink};

use crate::{csv::Csv, jsonl::JsonLines, table::Table};

/// A text format of intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// Aligned text with rates, for people.
    Table,
    /// One JSON object per line: flow records, then one summary per interval.
    Jsonl,
    /// Comma-separated, header row first.
    Csv,
}

/// The sink writing `format` to `out` for a ledger keyed as `cfg` says,
/// at most `top` flows per interval (the table shows 20 unless told).
pub fn text_sink<'w>(
    format: TextFormat,
    out: impl Write + 'w,
    cfg: &LedgerConfig,
    top: Option<usize>,
) -> Box<dyn Sink + 'w> {
    match format {
        TextFormat::Table => Box::new(Table::new(out, top.or(Some(20)))),
        TextFormat::Jsonl => Box::new(JsonLines::new(out, top)),
        TextFormat::Csv => Box::new(Csv::new(out, cfg, top)),
    }
}

/// Whether a sink's error is a closed pipe (the reader went away): not a
/// failure of the command.
pub fn is_broken_pipe(e: &netledger::SinkError) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
