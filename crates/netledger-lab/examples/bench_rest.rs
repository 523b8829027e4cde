//! Runs three parts of `netledger bench` on their own and prints their
//! tables: read-side exactness, snapshot/drain throughput and real packets
//! through a veth pair. Full sizes first, then quick mode (as the end-to-end
//! test runs it), with the time each part took.
//!
//! Run as root: `cargo run --release -p netledger --example bench_rest`
//! Arguments (optional): `full` or `quick` (only that mode), and a
//! comma-separated list of parts (`exactness,drain,real`); `--rounds N`.

use std::time::Instant;

use netledger::bench::{self, Measurement, Options};

type Part = fn(&Options<'_>) -> netledger::Result<Vec<Measurement>>;

const PARTS: [(&str, Part); 3] = [
    ("exactness", bench::exactness),
    ("drain", bench::drain),
    ("real", bench::real_packets),
];

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1e6 {
        format!("{v:.3e}")
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn table(ms: &[Measurement]) {
    println!("| what | median | unit | ratio | to | samples | tags |");
    println!("|---|---|---|---|---|---|---|");
    for m in ms {
        let samples: Vec<String> = m.samples.iter().map(|s| fmt_value(*s)).collect();
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            fmt_value(m.value),
            m.unit,
            m.ratio.map(|r| format!("{r:.3}")).unwrap_or_default(),
            m.baseline.clone().unwrap_or_default(),
            samples.join(" "),
            tags.join(" "),
        );
    }
}

fn main() {
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
    for quick in modes {
        let opts = Options {
            quick,
            rounds: rounds.unwrap_or(if quick { 1 } else { 5 }),
            progress: &progress,
        };
        for (name, part) in PARTS {
            if only.as_ref().is_some_and(|o| !o.iter().any(|p| p == name)) {
                continue;
            }
            let t = Instant::now();
            let ms = part(&opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            println!(
                "\n### {name}{} ({} rounds): {:.1} s\n",
                if quick { ", quick" } else { "" },
                opts.rounds,
                t.elapsed().as_secs_f64()
            );
            table(&ms);
        }
    }
}
