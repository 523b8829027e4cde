//! CSV (the JSON lines' fields): a header row, then per interval one `flow` row per record and one
//! `summary` row per bucket (named in the `bucket` column). The key columns
//! are those of the key mode.

use std::io::Write;

use netledger::{Bucket, FlowKey, Interval, KeyMode, LedgerConfig, Sink, SinkError};

/// The CSV columns of a key of this mode.
pub fn key_columns(mode: KeyMode, vlan: bool) -> Vec<&'static str> {
    let mut cols = Vec::new();
    if mode.has_src() {
        cols.push("src");
    }
    if mode.has_dst() {
        cols.push("dst");
    }
    if mode == KeyMode::FiveTuple {
        cols.extend(["proto", "sport", "dport", "icmp_type", "icmp_code"]);
    }
    if vlan {
        cols.push("vlan");
    }
    cols
}

/// One key column's value (empty when the key has no such field).
pub fn key_column(key: &FlowKey, col: &str) -> String {
    let v: Option<String> = match col {
        "src" => key.src.map(|a| a.to_string()),
        "dst" => key.dst.map(|a| a.to_string()),
        "proto" => key.proto_text(),
        "sport" => key.ports().map(|p| p.0.to_string()),
        "dport" => key.ports().map(|p| p.1.to_string()),
        "icmp_type" => key.icmp().map(|i| i.0.to_string()),
        "icmp_code" => key.icmp().map(|i| i.1.to_string()),
        "vlan" => key.vlan.map(|v| v.to_string()),
        _ => None,
    };
    v.unwrap_or_default()
}

/// Writes intervals as CSV.
pub struct Csv<W: Write> {
    out: W,
    cols: Vec<&'static str>,
    top: Option<usize>,
    wrote_header: bool,
}

impl<W: Write> Csv<W> {
    /// For keys made as `cfg` says, at most `top` flow rows per interval.
    pub fn new(out: W, cfg: &LedgerConfig, top: Option<usize>) -> Self {
        Csv {
            out,
            cols: key_columns(cfg.key_mode, cfg.vlan),
            top,
            wrote_header: false,
        }
    }
}

impl<W: Write> Sink for Csv<W> {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        if !self.wrote_header {
            writeln!(
                self.out,
                "type,iface,dir,start,end,bucket,{},packets,bytes",
                self.cols.join(",")
            )?;
            self.wrote_header = true;
        }
        let (start, end) = (netledger::rfc3339(iv.start), netledger::rfc3339(iv.end));
        let shown = iv.flows.len().min(self.top.unwrap_or(usize::MAX));
        for (k, c) in &iv.flows[..shown] {
            let vals: Vec<String> = self.cols.iter().map(|col| key_column(k, col)).collect();
            writeln!(
                self.out,
                "flow,{},{},{start},{end},,{},{},{}",
                iv.iface,
                iv.dir,
                vals.join(","),
                c.packets,
                c.bytes
            )?;
        }
        let blanks = ",".repeat(self.cols.len());
        for b in Bucket::ALL {
            let c = iv.buckets.get(b);
            writeln!(
                self.out,
                "summary,{},{},{start},{end},{}{blanks},{},{}",
                iv.iface,
                iv.dir,
                b.name(),
                c.packets,
                c.bytes
            )?;
        }
        self.out.flush()?;
        Ok(())
    }
}
