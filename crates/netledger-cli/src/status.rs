//! `netledger status`: what is pinned and attached, the last cuts, the store.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use netledger::Bucket;
use netledger_sinks::store::{Access, Store};
use serde_json::json;

use crate::cli::{StatusArgs, StatusFormat};

fn age(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) if d.as_secs() >= 3600 => {
            format!("{}h{}m ago", d.as_secs() / 3600, d.as_secs() % 3600 / 60)
        }
        Ok(d) if d.as_secs() >= 60 => format!("{}m{}s ago", d.as_secs() / 60, d.as_secs() % 60),
        Ok(d) => format!("{:.1}s ago", d.as_secs_f64()),
        Err(_) => "in the future".into(),
    }
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let mut ifaces = Vec::new();
    let mut text = Vec::new();
    for iface in netledger::pinned_interfaces()? {
        match netledger::pin_status(&iface) {
            Ok(st) => {
                let m = &st.manifest;
                let owner = if st.owner_alive {
                    format!("{} (pid {}) running", m.owner.command(), m.pid)
                } else {
                    format!("{} not running (pid {} gone)", m.owner.command(), m.pid)
                };
                text.push(format!(
                    "{iface}: {owner}; {}",
                    netledger::describe(&m.config)
                ));
                let mut legs = Vec::new();
                for l in &st.legs {
                    text.push(format!(
                        "  {} via {}: {}; last cut {} ended {}{}",
                        l.hook.direction(),
                        l.hook.name(),
                        if l.attached {
                            "attached"
                        } else {
                            "NOT attached"
                        },
                        l.last_seq,
                        age(l.last_cut_end),
                        if l.open_cut {
                            "; a cut is open (the next start finishes it)"
                        } else {
                            ""
                        }
                    ));
                    legs.push(json!({
                        "dir": l.hook.direction().name(),
                        "hook": l.hook.name(),
                        "attached": l.attached,
                        "last_seq": l.last_seq,
                        "last_cut_end": netledger::rfc3339(l.last_cut_end),
                        "open_cut": l.open_cut,
                    }));
                }
                ifaces.push(json!({
                    "iface": iface,
                    "owner": m.owner.command(),
                    "pid": m.pid,
                    "running": st.owner_alive,
                    "config": m.config,
                    "instance": m.instance,
                    "legs": legs,
                }));
            }
            Err(e) => {
                text.push(format!("{iface}: {}", crate::one_line(&e.into())));
            }
        }
    }
    if ifaces.is_empty() && text.is_empty() {
        text.push(
            "nothing pinned: netledger is not counting on any interface in this network namespace"
                .into(),
        );
    }
    // The store, if it is there and readable.
    let mut store_json = json!(null);
    match Store::open(&args.db, Access::ReadOnly) {
        Ok(store) => {
            let size: u64 = ["", "-wal"]
                .iter()
                .filter_map(|s| std::fs::metadata(format!("{}{s}", args.db.display())).ok())
                .map(|m| m.len())
                .sum();
            text.push(format!(
                "store {} ({:.1} MiB)",
                args.db.display(),
                size as f64 / 1048576.0
            ));
            let mut totals = Vec::new();
            for (id, info) in store.ledgers()? {
                let (cuts, b) = store.totals(id)?;
                let seen = b.get(Bucket::Seen);
                let last = store.last_cut(id)?;
                text.push(format!(
                    "  {} {} ({}): {cuts} cuts, {} packets, {} bytes seen{}",
                    info.iface,
                    info.dir,
                    &info.instance[..info.instance.len().min(8)],
                    seen.packets,
                    seen.bytes,
                    last.map(|c| format!("; last cut {} ended {}", c.seq, age(c.end)))
                        .unwrap_or_default()
                ));
                totals.push(json!({
                    "iface": info.iface, "dir": info.dir.name(), "instance": info.instance,
                    "cuts": cuts, "seen": seen, "counted": b.get(Bucket::Counted),
                    "last_seq": last.map(|c| c.seq),
                }));
            }
            store_json = json!({"path": args.db, "bytes": size, "ledgers": totals});
        }
        Err(e) => text.push(format!("store {}: {e}", args.db.display())),
    }
    match args.format {
        StatusFormat::Table => {
            for l in text {
                println!("{l}");
            }
        }
        StatusFormat::Json => {
            println!("{}", json!({"interfaces": ifaces, "store": store_json}));
        }
    }
    Ok(ExitCode::SUCCESS)
}
