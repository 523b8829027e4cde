//! `netledger watch`: attach, hand one interval at a time (per direction)
//! to a text sink and the exports, detach.

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use netledger::{Direction, Ledger};
use netledger_sinks::text::is_broken_pipe;

use crate::cli::WatchArgs;
use crate::exports::Exports;
use crate::signals::{install_stop_handlers, sleep_until, stop_requested};

/// "ingress", "egress" or "ingress and egress".
pub fn counting(ledgers: &[Ledger]) -> String {
    let names: Vec<&str> = ledgers
        .iter()
        .map(|l| match l.direction() {
            Direction::In => "ingress",
            Direction::Out => "egress",
        })
        .collect();
    names.join(" and ")
}

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let cfg = args.key.config();
    cfg.validate()?;
    netledger::preflight()?;
    // Fails with the fix when the interface does not exist.
    netledger::ifindex(&args.iface)?;
    install_stop_handlers()?;
    let hooks = args.hooks.direction.hooks(args.hooks.hook, &args.iface);

    // Loaded first: every interval starts at load, before attaching, so
    // nothing is missed.
    let ledgers = hooks
        .iter()
        .map(|&h| Ledger::load_at(cfg.clone(), h))
        .collect::<netledger::Result<Vec<_>>>()?;
    // Claim the interface (and, with lock, let `reset` reach the ledger).
    // Without bpffs the watch still runs; only reset is unavailable.
    let refs: Vec<&Ledger> = ledgers.iter().collect();
    let pins = match netledger::pin_watch(&args.iface, &refs) {
        Ok(p) => Some(p),
        Err(
            e @ (netledger::Error::Owned { .. }
            | netledger::Error::ServicePinned { .. }
            | netledger::Error::AlreadyRunning { .. }),
        ) => return Err(e.into()),
        Err(e) => {
            eprintln!("netledger: warning: other netledger processes will not see this watch: {e}");
            None
        }
    };
    let mut attachments = Vec::new();
    for l in &ledgers {
        attachments.push(l.attach(
            &args.iface,
            args.hooks.xdp_mode.into(),
            args.hooks.tc_attach.into(),
        )?);
    }
    let how: Vec<String> = attachments
        .iter()
        .map(|a| format!("{} {}", a.hook.direction(), a.how))
        .collect();
    let mut exports = Exports::start(&args.exports, cfg.strategy)?;
    eprintln!(
        "netledger: counting {} on {} ({}, key {}, strategy {}); Ctrl-C to stop",
        counting(&ledgers),
        args.iface,
        how.join(", "),
        cfg.key_mode,
        cfg.strategy
    );

    let stdout = io::stdout();
    let mut sink = netledger_sinks::text_sink(args.format.into(), stdout.lock(), &cfg, args.top);
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        sleep_until(started + args.interval * (done as u32 + 1));
        let last = stop_requested() || args.count.is_some_and(|n| done + 1 >= n);
        if last {
            // Detach and let in-flight runs finish, so the final reading
            // holds every frame the hooks saw: nothing counted goes unreported.
            attachments.clear();
            for l in &ledgers {
                l.wait_for_programs()?;
            }
        }
        for l in &ledgers {
            let took = Instant::now();
            let interval = l.cut()?;
            exports.cut_took(took.elapsed());
            if let Err(e) = sink.interval(&interval) {
                if is_broken_pipe(&e) {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(anyhow::anyhow!(e)).context("writing the interval");
            }
            exports.interval(&interval);
        }
        done += 1;
        if last {
            break;
        }
    }
    sink.close().map_err(|e| anyhow::anyhow!(e))?;
    drop(pins);
    eprintln!("netledger: detached from {}", args.iface);
    Ok(ExitCode::SUCCESS)
}
