//! What a cut costs for strategy `lock`: the exchange walks every bucket of
//! the index (a hash of --max-flows buckets) and takes every live key. Times
//! a cut for maps of several sizes and numbers of live keys.
//!
//! Run as root: `cargo run --release -p netledger --example cut_cost`

use std::time::Instant;

use netledger::types::nl_flow_key;
use netledger::{Count, Ledger, LedgerConfig};

fn key(i: u32) -> nl_flow_key {
    let mut k = nl_flow_key {
        family: 4,
        proto: 17,
        flags: 1,
        sport: (i & 0xffff) as u16,
        dport: 9000,
        ..Default::default()
    };
    k.src[..4].copy_from_slice(&(0x0a00_0000 | (i >> 16)).to_be_bytes());
    k.dst[..4].copy_from_slice(&[10, 255, 0, 1]);
    k
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

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
                ..Default::default()
            })
            .expect("load (run as root)");
            let keys: Vec<nl_flow_key> = (0..live).map(key).collect();
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
            let (f, l) = (median(firsts), median(laters));
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
