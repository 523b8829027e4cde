//! `netledger reset`: take counters out of a running ledger, losslessly, and
//! print them as an interval (the same formats and schema as `watch`).

use std::io;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use netledger::{Bucket, Buckets, Count, Interval, KeySelector, Ledger};

use crate::cli::ResetArgs;

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
    let start = SystemTime::now();
    let taken = ledger.reset(&selector)?;
    let end = SystemTime::now();
    // What was taken was counted under its keys: the interval's `counted`
    // (and `seen`) are its sum; no frame of another bucket was taken.
    let mut total = Count::default();
    for (_, c) in &taken {
        total.add(*c);
    }
    let mut buckets = Buckets::default();
    buckets.add_to(Bucket::Seen, total);
    buckets.add_to(Bucket::Counted, total);
    let n = taken.len();
    let iv = Interval::new(start, end, taken, buckets).labelled(&args.iface, ledger.direction());

    let stdout = io::stdout();
    let mut sink =
        netledger_sinks::text_sink(args.format.into(), stdout.lock(), ledger.config(), None);
    sink.interval(&iv).map_err(|e| anyhow::anyhow!(e))?;
    sink.close().map_err(|e| anyhow::anyhow!(e))?;
    eprintln!(
        "netledger: reset {n} flows on {}: {} packets, {} bytes taken out of the ledger",
        args.iface, total.packets, total.bytes
    );
    Ok(ExitCode::SUCCESS)
}
