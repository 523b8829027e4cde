//! `netledger run`: the service. Counts on every configured interface around
//! the clock, cuts every interval, commits each cut to the history store
//! *before* it clears the kernel's copy, and hands it to the other sinks.
//!
//! The kernel side keeps counting whether or not this process runs: the
//! programs, maps and links are pinned, and the next `run` adopts them and
//! first finishes any cut a killed process left open (the store, which
//! refuses a cut number twice, says whether it was committed). SIGTERM
//! commits a final cut and exits, leaving the kernel side counting.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use netledger::{LinkState, Service, Sink, Started};
use netledger_sinks::store::{Access, Committed, LedgerId, LedgerInfo, Store};

use crate::settings::Settings;
use crate::signals::{install_stop_handlers, sleep_until, stop_requested};

/// Test hooks, read once: a pause inside every cut (to widen the windows a
/// crash test kills in) and the wrong order (clear before commit), which a
/// crash test must show loses counts.
struct Faults {
    delay: Duration,
    clear_first: bool,
}

impl Faults {
    fn from_env() -> Faults {
        let delay = std::env::var("NETLEDGER_TEST_CUT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let clear_first = std::env::var_os("NETLEDGER_TEST_CLEAR_BEFORE_COMMIT").is_some();
        Faults { delay, clear_first }
    }

    fn pause(&self) {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
    }
}

/// One interface the service counts on.
struct Counted {
    service: Service,
    ledger_id: LedgerId,
    /// The link was last seen gone (log once per change).
    gone: bool,
    /// The last store error was logged (log once until it clears).
    store_failing: bool,
}

/// Log one event on stderr.
fn log(iface: &str, what: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "netledger: {iface}: {what}");
}

pub struct RunOptions {
    pub settings: Settings,
    /// Also write every interval to stdout as JSON lines.
    pub jsonl: bool,
    /// A line per cut on stderr.
    pub verbose: bool,
}

pub fn run(opts: RunOptions) -> Result<ExitCode> {
    let s = &opts.settings;
    crate::settings::check_interfaces(&s.interfaces)?;
    s.ledger.validate()?;
    netledger::preflight()?;
    // The store first: a store that cannot be opened (corrupt, newer
    // schema, unwritable) ends the start before anything is attached.
    let mut store = Store::open(&s.db, Access::ReadWrite)
        .with_context(|| format!("opening the store {}", s.db.display()))?;
    install_stop_handlers()?;
    let faults = Faults::from_env();

    let mut counted = Vec::new();
    for iface in &s.interfaces {
        let (service, started) = Service::start(iface, &s.ledger, s.xdp_mode)?;
        let m = service.manifest().clone();
        let ledger_id = store.ledger(&LedgerInfo::new(&m.instance, iface, netledger::Direction::In, &m.config))?;
        match started {
            Started::Fresh => log(
                iface,
                format_args!(
                    "attached ({}; store {})",
                    netledger::describe(&m.config),
                    s.db.display()
                ),
            ),
            Started::Adopted => log(
                iface,
                format_args!(
                    "adopted the pinned ledger (last cut {}; {})",
                    service.ledger().last_seq()?,
                    netledger::describe(&m.config)
                ),
            ),
        }
        counted.push(Counted {
            service,
            ledger_id,
            gone: false,
            store_failing: false,
        });
    }
    notify_ready();

    let mut jsonl = opts
        .jsonl
        .then(|| netledger_sinks::jsonl::JsonLines::new(io::stdout(), None));
    // A cut a killed process left open is finished first, before the next.
    for c in &mut counted {
        if c.service.ledger().has_open_cut()? {
            log(c.service.manifest().iface.as_str(), "finishing the cut a previous process left open");
            cut_once(c, &mut store, &faults, jsonl.as_mut(), opts.verbose);
        }
    }

    let started = Instant::now();
    let mut ticks = 0u32;
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    loop {
        ticks += 1;
        sleep_until(started + s.interval * ticks);
        let stopping = stop_requested();
        for c in &mut counted {
            check_link(c);
            cut_once(c, &mut store, &faults, jsonl.as_mut(), opts.verbose);
        }
        if last_prune.elapsed() >= Duration::from_secs(3600) {
            last_prune = Instant::now();
            if let Err(e) = store.prune(SystemTime::now(), s.retention, None) {
                log("store", format_args!("pruning old flow records failed: {e}"));
            }
        }
        if stopping {
            break;
        }
    }
    for c in &counted {
        log(
            &c.service.manifest().iface,
            "stopped; the kernel side keeps counting (the next `netledger run` takes over, `netledger down` detaches)",
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-attach when the interface came back; log when it went.
fn check_link(c: &mut Counted) {
    let iface = c.service.manifest().iface.clone();
    match c.service.check_link() {
        Ok(LinkState::Attached) => {}
        Ok(LinkState::Gone) => {
            if !c.gone {
                log(&iface, "interface gone; counting resumes when it is back");
                c.gone = true;
            }
        }
        Ok(LinkState::Reattached) => {
            log(&iface, "interface back: attached again");
            c.gone = false;
        }
        Err(e) => log(&iface, format_args!("attaching again failed: {}", crate::one_line_of(&e.into()))),
    }
}

/// One cut: take it, commit it, clear it, then the other sinks. A cut the
/// store refuses stays open in the kernel (which keeps counting) and is
/// taken again at the next tick.
fn cut_once(
    c: &mut Counted,
    store: &mut Store,
    faults: &Faults,
    jsonl: Option<&mut netledger_sinks::jsonl::JsonLines<io::Stdout>>,
    verbose: bool,
) {
    let ledger = c.service.ledger();
    let iface = c.service.manifest().iface.clone();
    let cut = match ledger.take_cut() {
        Ok(cut) => cut,
        Err(e) => {
            log(&iface, format_args!("cut failed: {}", crate::one_line_of(&e.into())));
            return;
        }
    };
    faults.pause();
    if faults.clear_first {
        // The wrong order, for tests only: what is cleared before it is
        // committed is lost if the process dies in between.
        if let Err(e) = ledger.finish_cut(&cut) {
            log(&iface, format_args!("clearing cut {} failed: {e}", cut.interval.seq));
            return;
        }
        faults.pause();
    }
    match store.commit(c.ledger_id, &cut.interval) {
        Ok(done) => {
            if c.store_failing {
                log(&iface, "store writable again: committed what was waiting");
                c.store_failing = false;
            }
            if verbose {
                let what = match done {
                    Committed::New => "committed",
                    Committed::AlreadyThere => "already committed",
                };
                log(
                    &iface,
                    format_args!(
                        "cut {} {what}: {} flows, {} packets",
                        cut.interval.seq,
                        cut.interval.flows.len(),
                        cut.interval.buckets.get(netledger::Bucket::Seen).packets
                    ),
                );
            }
        }
        Err(e) => {
            if !c.store_failing {
                log(
                    &iface,
                    format_args!(
                        "store: committing cut {} failed: {e}; the kernel keeps counting and the cut is retried every interval",
                        cut.interval.seq
                    ),
                );
                c.store_failing = true;
            }
            return;
        }
    }
    faults.pause();
    if !faults.clear_first {
        if let Err(e) = ledger.finish_cut(&cut) {
            log(&iface, format_args!("clearing cut {} failed: {e}; retried next interval", cut.interval.seq));
            return;
        }
    }
    if let Some(sink) = jsonl {
        if let Err(e) = sink.interval(&cut.interval) {
            if !netledger_sinks::text::is_broken_pipe(&e) {
                log(&iface, format_args!("writing JSON lines failed: {e}"));
            }
        }
    }
}

/// Tell systemd (Type=notify) the service is up, if it asked.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let _ = sock.send_to(b"READY=1", path);
}
