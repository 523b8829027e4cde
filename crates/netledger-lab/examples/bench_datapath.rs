//! Parts 1 and 4 of `netledger bench` on their own: data-path cost of every
//! way of counting (ns/packet through test_run), and the lock strategy's
//! slowdown while a locked snapshot loop runs on another CPU. Prints a
//! markdown table of every figure.
//!
//! Needs root. Run with:
//! `cargo run --release -p netledger --example bench_datapath [-- --quick] [--rounds N] [--only datapath|reader]`

use std::time::Instant;

use netledger::bench::{self, Measurement, Options};

fn table(ms: &[Measurement]) {
    println!("| what | median | unit | ratio | samples (min-max) |");
    println!("|---|---|---|---|---|");
    for m in ms {
        let (lo, hi) = m
            .samples
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
        println!(
            "| {} | {:.2} | {} | {} | {} ({:.1}-{:.1}) |",
            m.name,
            m.value,
            m.unit,
            m.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            m.samples.len(),
            lo,
            hi
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
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
    if part("datapath") {
        let datapath = bench::datapath(&opts)?;
        println!("### 1. Data-path cost (test_run; rounds {rounds}; quick {quick})\n");
        table(&datapath);
    }
    if part("reader") {
        let reader = bench::reader_slowdown(&opts)?;
        println!("\n### 4. Data-path slowdown from a concurrent reader (rounds {rounds})\n");
        table(&reader);
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
