//! What a cut costs for strategy `lock`: the exchange walks the whole slot
//! array (--max-flows slots) and takes every live key. Times a cut for maps
//! of several sizes and numbers of live keys.
//!
//! Run as root: `cargo run --release -p netledger-lab --example cut_cost`

use std::time::Instant;

use netledger::lab::types::nl_flow_key;
use netledger::{Count, Ledger, LedgerConfig, Strategy};
use netledger_lab::bench::{median, numbered_key};

fn main() {
    println!("| slots (--max-flows) | live keys | first cut (takes every key) | later cut (walk only) | per live key | per slot |");
    println!("|---|---|---|---|---|---|");
    for slots in [65_536u32, 1 << 20] {
        for live in [0u32, 1_000, 10_000, 65_536, 1 << 20] {
            if live > slots {
                continue;
            }
            let ledger = Ledger::load(LedgerConfig {
                max_flows: slots,
                strategy: Strategy::Lock,
                ..Default::default()
            })
            .expect("load (run as root)");
            let keys: Vec<nl_flow_key> = (0..live).map(numbered_key).collect();
            let mut firsts = Vec::new();
            let mut laters = Vec::new();
            for _ in 0..3 {
                ledger
                    .populate(
                        &keys,
                        Count {
                            packets: 1,
                            bytes: 64,
                        },
                    )
                    .expect("populate");
                let t = Instant::now();
                let iv = ledger.cut().expect("cut");
                firsts.push(t.elapsed().as_secs_f64());
                assert_eq!(iv.flow_total().packets, u64::from(live), "every key taken");
                let t = Instant::now();
                ledger.cut().expect("cut");
                laters.push(t.elapsed().as_secs_f64());
            }
            let (f, l) = (median(&firsts), median(&laters));
            println!(
                "| {slots} | {live} | {:.2} ms | {:.2} ms | {} | {:.1} ns |",
                f * 1e3,
                l * 1e3,
                if live > 0 {
                    format!("{:.0} ns", (f - l) / f64::from(live) * 1e9)
                } else {
                    "-".into()
                },
                l / f64::from(slots) * 1e9,
            );
        }
    }
}
