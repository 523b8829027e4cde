//! `netledger watch`: attach, hand one interval at a time to a text sink, detach.

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use netledger::{Ledger, Strategy};
use netledger_sinks::text::is_broken_pipe;

use crate::signals::{install_stop_handlers, sleep_until, stop_requested};
use crate::WatchArgs;

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let cfg = args.key.config();
    cfg.validate()?;
    netledger::preflight()?;
    // Fails with the fix when the interface does not exist.
    netledger::ifindex(&args.iface)?;
    install_stop_handlers()?;

    // The first interval starts at load, before attaching: nothing is missed.
    let ledger = Ledger::load(cfg.clone())?;
    let attachment = ledger.attach_xdp(&args.iface, args.xdp_mode.into())?;
    // Reachable by `netledger reset` while it runs (strategy lock). Without
    // bpffs the watch still runs; only reset is unavailable.
    let pins = match cfg.strategy {
        Strategy::Lock => match ledger.pin(&args.iface) {
            Ok(p) => Some(p),
            Err(e @ netledger::Error::AlreadyRunning { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("netledger: warning: `netledger reset` will not reach this watch: {e}");
                None
            }
        },
        Strategy::Swap => None,
    };
    eprintln!(
        "netledger: counting ingress on {} ({} XDP, key {}, strategy {}); Ctrl-C to stop",
        attachment.iface, attachment.mode, cfg.key_mode, cfg.strategy
    );

    let stdout = io::stdout();
    let mut sink =
        netledger_sinks::text_sink(args.format.into(), stdout.lock(), &cfg, args.top);
    let started = Instant::now();
    let mut done = 0u64;
    let mut attachment = Some(attachment);
    loop {
        sleep_until(started + args.interval * (done as u32 + 1));
        let last = stop_requested() || args.count.is_some_and(|n| done + 1 >= n);
        if last {
            // Detach and let in-flight runs finish, so the final reading
            // holds every frame the hook saw: nothing counted goes unreported.
            drop(attachment.take());
            ledger.wait_for_programs()?;
        }
        let interval = ledger.cut()?;
        if let Err(e) = sink.interval(&interval) {
            if is_broken_pipe(&e) {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(anyhow::anyhow!(e)).context("writing the interval");
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
