//! Interval records as a table, JSON lines or CSV (one set of fields for all three).

use std::io::{self, Write};

use netledger::{Bucket, Count, FlowKey, Interval, KeyMode, LedgerConfig, L4};
use serde::Serialize;

use crate::timefmt::rfc3339;
use crate::Format;

/// The key's fields, only those of the key mode.
#[derive(Serialize, Default)]
pub struct KeyFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// A protocol: its name where it has a well-known one, else its number.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Proto {
    Name(&'static str),
    Number(u8),
}

impl Proto {
    fn of(p: u8) -> Proto {
        match p {
            1 => Proto::Name("icmp"),
            6 => Proto::Name("tcp"),
            17 => Proto::Name("udp"),
            58 => Proto::Name("icmpv6"),
            132 => Proto::Name("sctp"),
            n => Proto::Number(n),
        }
    }

    fn text(&self) -> String {
        match self {
            Proto::Name(n) => n.to_string(),
            Proto::Number(n) => n.to_string(),
        }
    }
}

impl KeyFields {
    pub fn of(k: &FlowKey) -> KeyFields {
        let mut f = KeyFields {
            src: k.src.map(|a| a.to_string()),
            dst: k.dst.map(|a| a.to_string()),
            proto: k.proto.map(Proto::of),
            vlan: k.vlan,
            ..Default::default()
        };
        match k.l4 {
            L4::Ports { src, dst } => {
                f.sport = Some(src);
                f.dport = Some(dst);
            }
            L4::Icmp { kind, code } => {
                f.icmp_type = Some(kind);
                f.icmp_code = Some(code);
            }
            L4::None => {}
        }
        f
    }
}

#[derive(Serialize)]
struct FlowRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iface: &'a str,
    start: &'a str,
    end: &'a str,
    key: KeyFields,
    packets: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct BucketsRecord {
    counted: Count,
    non_ip: Count,
    malformed: Count,
    map_full: Count,
    evict_race: Count,
}

#[derive(Serialize)]
struct SummaryRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iface: &'a str,
    start: &'a str,
    end: &'a str,
    seen: Count,
    buckets: BucketsRecord,
}

/// Writes intervals in one format.
pub struct Printer<W: Write> {
    out: W,
    format: Format,
    iface: String,
    mode: KeyMode,
    vlan: bool,
    top: Option<usize>,
    wrote_header: bool,
}

impl<W: Write> Printer<W> {
    pub fn new(
        out: W,
        format: Format,
        iface: &str,
        cfg: &LedgerConfig,
        top: Option<usize>,
    ) -> Self {
        Printer {
            out,
            format,
            iface: iface.to_string(),
            mode: cfg.key_mode,
            vlan: cfg.vlan,
            top: top.or(match format {
                Format::Table => Some(20),
                _ => None,
            }),
            wrote_header: false,
        }
    }

    pub fn interval(&mut self, iv: &Interval) -> io::Result<()> {
        let start = rfc3339(iv.start);
        let end = rfc3339(iv.end);
        let shown = &iv.flows[..iv.flows.len().min(self.top.unwrap_or(usize::MAX))];
        match self.format {
            Format::Jsonl => self.jsonl(iv, shown, &start, &end)?,
            Format::Csv => self.csv(iv, shown, &start, &end)?,
            Format::Table => self.table(iv, shown, &start, &end)?,
        }
        self.out.flush()
    }

    fn jsonl(
        &mut self,
        iv: &Interval,
        shown: &[(FlowKey, Count)],
        start: &str,
        end: &str,
    ) -> io::Result<()> {
        for (k, c) in shown {
            let rec = FlowRecord {
                kind: "flow",
                iface: &self.iface,
                start,
                end,
                key: KeyFields::of(k),
                packets: c.packets,
                bytes: c.bytes,
            };
            serde_json::to_writer(&mut self.out, &rec)?;
            self.out.write_all(b"\n")?;
        }
        let b = &iv.buckets;
        let rec = SummaryRecord {
            kind: "summary",
            iface: &self.iface,
            start,
            end,
            seen: b.get(Bucket::Seen),
            buckets: BucketsRecord {
                counted: b.get(Bucket::Counted),
                non_ip: b.get(Bucket::NonIp),
                malformed: b.get(Bucket::Malformed),
                map_full: b.get(Bucket::MapFull),
                evict_race: b.get(Bucket::EvictRace),
            },
        };
        serde_json::to_writer(&mut self.out, &rec)?;
        self.out.write_all(b"\n")
    }

    /// The key columns of this key mode.
    fn key_columns(&self) -> Vec<&'static str> {
        let mut cols = Vec::new();
        if self.mode.has_src() {
            cols.push("src");
        }
        if self.mode.has_dst() {
            cols.push("dst");
        }
        if self.mode == KeyMode::FiveTuple {
            cols.extend(["proto", "sport", "dport", "icmp_type", "icmp_code"]);
        }
        if self.vlan {
            cols.push("vlan");
        }
        cols
    }

    fn csv(
        &mut self,
        iv: &Interval,
        shown: &[(FlowKey, Count)],
        start: &str,
        end: &str,
    ) -> io::Result<()> {
        let cols = self.key_columns();
        if !self.wrote_header {
            writeln!(
                self.out,
                "type,iface,start,end,bucket,{},packets,bytes",
                cols.join(",")
            )?;
            self.wrote_header = true;
        }
        let opt = |v: Option<String>| v.unwrap_or_default();
        for (k, c) in shown {
            let f = KeyFields::of(k);
            let vals: Vec<String> = cols
                .iter()
                .map(|col| match *col {
                    "src" => opt(f.src.clone()),
                    "dst" => opt(f.dst.clone()),
                    "proto" => opt(f.proto.as_ref().map(Proto::text)),
                    "sport" => opt(f.sport.map(|v| v.to_string())),
                    "dport" => opt(f.dport.map(|v| v.to_string())),
                    "icmp_type" => opt(f.icmp_type.map(|v| v.to_string())),
                    "icmp_code" => opt(f.icmp_code.map(|v| v.to_string())),
                    "vlan" => opt(f.vlan.map(|v| v.to_string())),
                    _ => String::new(),
                })
                .collect();
            writeln!(
                self.out,
                "flow,{},{start},{end},,{},{},{}",
                self.iface,
                vals.join(","),
                c.packets,
                c.bytes
            )?;
        }
        let blanks = ",".repeat(cols.len());
        for b in Bucket::ALL {
            let c = iv.buckets.get(b);
            writeln!(
                self.out,
                "summary,{},{start},{end},{}{blanks},{},{}",
                self.iface,
                b.name(),
                c.packets,
                c.bytes
            )?;
        }
        Ok(())
    }

    fn table(
        &mut self,
        iv: &Interval,
        shown: &[(FlowKey, Count)],
        start: &str,
        end: &str,
    ) -> io::Result<()> {
        let secs = iv.duration().as_secs_f64().max(1e-9);
        writeln!(self.out, "{start} .. {end}  {}  ({secs:.3} s)", self.iface)?;
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
                bits(c.bytes as f64 * 8.0 / secs)
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
        writeln!(self.out)
    }
}

/// A bit rate with a unit.
fn bits(bps: f64) -> String {
    let units = [(1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")];
    for (scale, unit) in units {
        if bps >= scale {
            return format!("{:.1} {unit}", bps / scale);
        }
    }
    format!("{bps:.0} bit/s")
}
