//! `netledger watch`: attach, print one interval at a time, detach.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netledger::Ledger;

use crate::output::Printer;
use crate::WatchArgs;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM end the watch after its final partial interval.
pub fn install_stop_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as usize;
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error()).context("installing the signal handler");
        }
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleep until `deadline` or a stop request, whichever comes first.
fn sleep_until(deadline: Instant) {
    while !stop_requested() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let cfg = args.key.config();
    cfg.validate()?;
    netledger::preflight()?;
    // Fails with the fix when the interface does not exist.
    netledger::xdp_program_id(&args.iface)?;
    install_stop_handlers()?;

    // The first interval starts at load, before attaching: nothing is missed.
    let ledger = Ledger::load(cfg.clone())?;
    let attachment = ledger.attach_xdp(&args.iface, args.xdp_mode.into())?;
    // Reachable by `netledger reset` while it runs (strategy lock). Without
    // bpffs the watch still runs; only reset is unavailable.
    let pins = match cfg.strategy {
        netledger::Strategy::Lock => match ledger.pin(&args.iface) {
            Ok(p) => Some(p),
            Err(e @ netledger::Error::AlreadyRunning { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("netledger: warning: `netledger reset` will not reach this watch: {e}");
                None
            }
        },
        netledger::Strategy::Swap => None,
    };
    eprintln!(
        "netledger: counting ingress on {} ({} XDP, key {}, strategy {}); Ctrl-C to stop",
        attachment.iface, attachment.mode, cfg.key_mode, cfg.strategy
    );

    let stdout = io::stdout();
    let mut printer = Printer::new(stdout.lock(), args.format, &args.iface, &cfg, args.top);
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
        if let Err(e) = printer.interval(&interval) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e).context("writing the interval");
        }
        done += 1;
        if last {
            break;
        }
    }
    drop(pins);
    io::stderr().flush().ok();
    eprintln!("netledger: detached from {}", args.iface);
    Ok(ExitCode::SUCCESS)
}
