//! Runs four parts of `netledger bench` on their own and prints their
//! tables: read-side exactness, live snapshots, real packets through a veth
//! pair, and the service's cuts. Full sizes first, then quick mode (as the end-to-end
//! test runs it), with the time each part took.
//!
//! Run as root: `cargo run --release -p netledger-lab --example bench_rest`
//! Arguments (optional): `full` or `quick` (only that mode), and a
//! comma-separated list of parts (`exactness,drain,real,cuts`); `--rounds N`.

use std::time::Instant;

use netledger_lab::bench::report::{markdown, PARTS};
use netledger_lab::bench::Options;

/// The parts this example runs (keys of [`PARTS`]).
const REST: [&str; 4] = ["exactness", "drain", "real", "cuts"];

fn main() -> anyhow::Result<()> {
    netledger::quiet_libbpf();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut modes = vec![false, true];
    let mut only: Option<Vec<String>> = None;
    let mut rounds: Option<usize> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "full" => modes = vec![false],
            "quick" => modes = vec![true],
            "--rounds" => rounds = it.next().and_then(|n| n.parse().ok()),
            list => only = Some(list.split(',').map(str::to_string).collect()),
        }
    }
    let started = Instant::now();
    let progress = move |what: &str| {
        eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    };
    let mut out = std::io::stdout().lock();
    for quick in modes {
        let opts = Options {
            quick,
            rounds: rounds.unwrap_or(if quick { 1 } else { 5 }),
            progress: &progress,
        };
        for (name, _, part) in PARTS {
            if !REST.contains(&name) || only.as_ref().is_some_and(|o| !o.iter().any(|p| p == name))
            {
                continue;
            }
            let t = Instant::now();
            let ms = part(&opts).map_err(|e| e.context(name))?;
            let title = format!(
                "{name}{} ({} rounds): {:.1} s",
                if quick { ", quick" } else { "" },
                opts.rounds,
                t.elapsed().as_secs_f64()
            );
            markdown(&mut out, &title, &ms, true)?;
        }
    }
    Ok(())
}
