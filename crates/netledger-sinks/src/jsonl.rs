//! JSON lines: each interval's flow records, then its summary, one object
//! per line (the shape is `netledger::Record`'s).

use std::io::Write;

use netledger::{Interval, Sink, SinkError};

/// Writes intervals as JSON lines.
pub struct JsonLines<W: Write> {
    out: W,
    top: Option<usize>,
}

impl<W: Write> JsonLines<W> {
    /// At most `top` flow records per interval (all for None).
    pub fn new(out: W, top: Option<usize>) -> Self {
        JsonLines { out, top }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        for rec in iv.records(self.top) {
            serde_json::to_writer(&mut self.out, &rec)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}
