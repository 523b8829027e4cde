//! `netledger watch`: attach, hand one interval at a time (per direction)
//! to a text sink and the exports, detach.

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use netledger::{Attachment, Direction, Ledger, LedgerConfig, Pins};
use netledger_sinks::text::is_broken_pipe;

use crate::cli::{HookOpts, WatchArgs};
use crate::exports::Exports;
use crate::signals::{install_stop_handlers, stop_requested, Ticker};

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

/// What a watch (or a `top` on its own) counts with: a ledger per hook,
/// the interface claimed in bpffs where it can be, and the hooks attached.
/// Fields drop in order: the attachments, then the pins, then the ledgers.
pub struct Counting {
    pub attachments: Vec<Attachment>,
    pub pins: Option<Pins>,
    pub ledgers: Vec<Ledger>,
}

/// Load a ledger per hook `hooks` names on `iface`, claim the interface and
/// attach. The ledgers are loaded first: every interval starts at load,
/// before attaching, so nothing is missed. The claim (pins in bpffs) lets
/// other netledger processes see the watch and, with lock, `reset` reach
/// its ledger; an interface another netledger owns is an error, but where
/// only the pins cannot be made (no bpffs) the counting goes on and
/// `unpinned` hears why.
pub fn attach(
    iface: &str,
    cfg: &LedgerConfig,
    hooks: &HookOpts,
    unpinned: impl FnOnce(netledger::Error),
) -> Result<Counting> {
    let ledgers = hooks
        .direction
        .hooks(hooks.hook, iface)
        .iter()
        .map(|&h| Ledger::load_at(cfg.clone(), h))
        .collect::<netledger::Result<Vec<_>>>()?;
    let refs: Vec<&Ledger> = ledgers.iter().collect();
    let pins = match netledger::pin_watch(iface, &refs) {
        Ok(p) => Some(p),
        Err(
            e @ (netledger::Error::Owned { .. }
            | netledger::Error::ServicePinned { .. }
            | netledger::Error::AlreadyRunning { .. }),
        ) => return Err(e.into()),
        Err(e) => {
            unpinned(e);
            None
        }
    };
    let mut attachments = Vec::new();
    for l in &ledgers {
        attachments.push(l.attach(iface, hooks.xdp_mode.into(), hooks.tc_attach.into())?);
    }
    Ok(Counting {
        attachments,
        pins,
        ledgers,
    })
}

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let cfg = args.key.config();
    cfg.validate()?;
    netledger::preflight()?;
    // Fails with the fix when the interface does not exist.
    netledger::ifindex(&args.iface)?;
    install_stop_handlers()?;
    let Counting {
        ledgers,
        pins,
        mut attachments,
    } = attach(&args.iface, &cfg, &args.hooks, |e| {
        eprintln!("netledger: warning: other netledger processes will not see this watch: {e}");
    })?;
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
    let mut ticker = Ticker::new(args.interval);
    let mut done = 0u64;
    loop {
        ticker.wait();
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
