//! `netledger reset`: take counters out of a running ledger, losslessly.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use netledger::{Count, KeySelector, Ledger};

use crate::output::KeyFields;
use crate::timefmt::rfc3339;
use crate::{Format, ResetArgs};

#[derive(serde::Serialize)]
struct ResetRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iface: &'a str,
    at: &'a str,
    key: KeyFields,
    packets: u64,
    bytes: u64,
}

pub fn run(args: ResetArgs) -> Result<ExitCode> {
    let ledger = Ledger::open_pinned(&args.iface)?;
    let selector = KeySelector {
        src: args.src,
        dst: args.dst,
        proto: args.proto,
        sport: args.sport,
        dport: args.dport,
        vlan: args.vlan,
    };
    let filter = if selector.is_empty() {
        None
    } else {
        Some(selector.filter(ledger.config())?)
    };
    let mut taken = ledger.reset(filter.as_ref())?;
    taken.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
    let at = rfc3339(SystemTime::now());

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut total = Count::default();
    match args.format {
        Format::Jsonl => {
            for (k, c) in &taken {
                let rec = ResetRecord {
                    kind: "reset",
                    iface: &args.iface,
                    at: &at,
                    key: KeyFields::of(k),
                    packets: c.packets,
                    bytes: c.bytes,
                };
                serde_json::to_writer(&mut out, &rec)?;
                writeln!(out)?;
                total.add(*c);
            }
        }
        Format::Csv => {
            writeln!(out, "type,iface,at,key,packets,bytes")?;
            for (k, c) in &taken {
                writeln!(
                    out,
                    "reset,{},{at},\"{k}\",{},{}",
                    args.iface, c.packets, c.bytes
                )?;
                total.add(*c);
            }
        }
        Format::Table => {
            writeln!(out, "{at}  {}  reset", args.iface)?;
            for (k, c) in &taken {
                writeln!(out, "  {k}  {} packets  {} bytes", c.packets, c.bytes)?;
                total.add(*c);
            }
        }
    }
    out.flush().context("writing what was reset")?;
    eprintln!(
        "netledger: reset {} flows on {}: {} packets, {} bytes taken out of the ledger",
        taken.len(),
        args.iface,
        total.packets,
        total.bytes
    );
    Ok(ExitCode::SUCCESS)
}
