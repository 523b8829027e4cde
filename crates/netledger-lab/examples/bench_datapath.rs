//! Parts 1, 1b and 4 of `netledger bench` on their own: data-path cost of
//! every way of counting (ns/packet through test_run), where the data paths'
//! ns go (models with one part taken away at a time), and the lock
//! strategy's slowdown while locked snapshots run on another CPU. Prints a
//! markdown table of every figure, with its samples and tags.
//!
//! Needs root. Run with:
//! `cargo run --release -p netledger-lab --example bench_datapath [-- --quick] [--rounds N] [--only datapath|breakdown|reader]`

use std::time::Instant;

use netledger_lab::bench::report::{markdown, PARTS};
use netledger_lab::bench::Options;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(if quick { 1 } else { 5 });
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    netledger::quiet_libbpf();
    let started = Instant::now();
    let progress = move |what: &str| {
        eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    };
    let opts = Options {
        quick,
        rounds,
        progress: &progress,
    };
    let mut out = std::io::stdout().lock();
    for (key, title, part) in PARTS {
        if !["datapath", "breakdown", "reader"].contains(&key)
            || only.as_deref().is_some_and(|o| o != key)
        {
            continue;
        }
        let ms = part(&opts)?;
        let title = format!("{title} (rounds {rounds}; quick {quick})");
        markdown(&mut out, &title, &ms, true)?;
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
