//! An aligned table for people: per interval a header line, one row per
//! flow with its packet and bit rates, and the buckets.

use std::io::Write;

use netledger::{Bucket, Interval, Sink, SinkError};

/// Writes intervals as a table.
pub struct Table<W: Write> {
    out: W,
    top: Option<usize>,
}

impl<W: Write> Table<W> {
    /// At most `top` rows per interval (all for None).
    pub fn new(out: W, top: Option<usize>) -> Self {
        Table { out, top }
    }
}

/// A bit rate with a unit.
pub fn bit_rate(bps: f64) -> String {
    let units = [(1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")];
    for (scale, unit) in units {
        if bps >= scale {
            return format!("{:.1} {unit}", bps / scale);
        }
    }
    format!("{bps:.0} bit/s")
}

impl<W: Write> Sink for Table<W> {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        let (start, end) = (netledger::rfc3339(iv.start), netledger::rfc3339(iv.end));
        let secs = iv.duration().as_secs_f64().max(1e-9);
        let shown = &iv.flows[..iv.flows.len().min(self.top.unwrap_or(usize::MAX))];
        writeln!(
            self.out,
            "{start} .. {end}  {} {}  ({secs:.3} s)",
            iv.iface, iv.dir
        )?;
        let width = shown
            .iter()
            .map(|(k, _)| k.to_string().len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            self.out,
            "  {:<width$}  {:>10}  {:>12}  {:>10}  {:>12}",
            "FLOW", "PACKETS", "BYTES", "PPS", "BIT/S"
        )?;
        for (k, c) in shown {
            writeln!(
                self.out,
                "  {:<width$}  {:>10}  {:>12}  {:>10.1}  {:>12}",
                k.to_string(),
                c.packets,
                c.bytes,
                c.packets as f64 / secs,
                bit_rate(c.bytes as f64 * 8.0 / secs)
            )?;
        }
        if shown.len() < iv.flows.len() {
            writeln!(
                self.out,
                "  ... {} more flows",
                iv.flows.len() - shown.len()
            )?;
        }
        let parts: Vec<String> = Bucket::ALL
            .iter()
            .map(|b| {
                let c = iv.buckets.get(*b);
                format!("{} {}/{}B", b.name(), c.packets, c.bytes)
            })
            .collect();
        writeln!(self.out, "  {}", parts.join("  "))?;
        writeln!(self.out)?;
        self.out.flush()?;
        Ok(())
    }
}
