//! `netledger run`: the service. Counts on every configured interface (and
//! direction) around the clock, cuts every interval, commits each cut to
//! the history store *before* it clears the kernel's copy, then hands it to
//! the other sinks (metrics, IPFIX, JSON lines, the control socket).
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
use netledger::{AttachOptions, LinkState, Service, Sink, Started};
use netledger_sinks::jsonl::JsonLines;
use netledger_sinks::store::{Access, Committed, LedgerId, LedgerInfo, Store};

use crate::exports::Exports;
use crate::settings::Settings;
use crate::signals::{install_stop_handlers, stop_requested, Ticker};
use crate::socket::{self, Hello};

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
        // Never silent: each one is for crash tests only.
        if !delay.is_zero() {
            eprintln!(
                "netledger: warning: NETLEDGER_TEST_CUT_DELAY_MS is set: every step of a cut waits {delay:?} (a test setting; unset it)"
            );
        }
        if clear_first {
            eprintln!(
                "netledger: warning: NETLEDGER_TEST_CLEAR_BEFORE_COMMIT is set: cuts are cleared before they are committed, and a crash LOSES COUNTS (a test setting; unset it)"
            );
        }
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
    /// One store ledger per leg (direction), in the service's order.
    ledger_ids: Vec<LedgerId>,
    /// Per leg, the last cut the store held when the metrics were seeded
    /// from it (0: none): a cut redone up to it is in the counters already.
    seeded_through: Vec<u64>,
    /// The link was last seen gone (log once per change).
    gone: bool,
    /// The last store error was logged (log once until it clears).
    store_failing: bool,
}

/// Log one event on stderr.
fn log(iface: &str, what: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "netledger: {iface}: {what}");
}

/// The other sinks of every committed interval.
struct After {
    exports: Exports,
    jsonl: Option<JsonLines<io::Stdout>>,
    socket: Option<socket::Server>,
}

pub fn run(s: Settings, _: (), verbose: bool) -> Result<ExitCode> {
    crate::settings::check_interfaces(&s.interfaces)?;
    s.ledger.validate()?;
    netledger::preflight()?;
    // The store first: a store that cannot be opened (corrupt, newer
    // schema, unwritable) ends the start before anything is attached.
    let mut store = Store::open(&s.db, Access::ReadWrite)
        .with_context(|| format!("opening the store {}", s.db.display()))?;
    install_stop_handlers()?;
    let faults = Faults::from_env();
    let mut exports = Exports::start(&s.exports, s.ledger.strategy)?;
    // Before anything is attached: a socket path that cannot be used ends
    // the start with nothing changed.
    socket::clear_stale(&s.socket)?;

    let mut counted: Vec<Counted> = Vec::new();
    let opts = AttachOptions {
        xdp: s.xdp_mode,
        ..Default::default()
    };
    for iface in &s.interfaces {
        let hooks = s.direction.hooks(s.hook, iface);
        let (service, started) = Service::start(iface, &s.ledger, &hooks, opts).with_context(|| {
            // What started before keeps counting, pinned: say so.
            let before: Vec<&str> = counted.iter().map(|c| c.service.manifest().iface.as_str()).collect();
            if before.is_empty() {
                format!("starting on {iface}")
            } else {
                format!(
                    "starting on {iface} ({} stay attached and counting; the next `netledger run` takes them over, `netledger down` detaches them)",
                    before.join(", ")
                )
            }
        })?;
        let m = service.manifest().clone();
        let mut ledger_ids = Vec::new();
        let mut seeded_through = Vec::new();
        for leg in service.legs() {
            let dir = leg.ledger().direction();
            let id = store.ledger(&LedgerInfo::new(&m.instance, iface, dir, &m.config))?;
            if let Some(metrics) = &mut exports.metrics {
                // Counters continue from what the store holds: they never go back.
                let mut total = netledger::Buckets::default();
                for (other, info) in store.ledgers()? {
                    if info.iface == *iface && info.dir == dir {
                        total.add(&store.totals(other)?.1);
                    }
                }
                metrics.seed(iface, dir, total);
            }
            seeded_through.push(store.last_seq(id)?.unwrap_or(0));
            ledger_ids.push(id);
        }
        let hooks: Vec<String> = hooks
            .iter()
            .map(|h| format!("{} via {}", h.direction(), h.name()))
            .collect();
        match started {
            Started::Fresh => log(
                iface,
                format_args!(
                    "attached ({}; {}; store {})",
                    hooks.join(", "),
                    netledger::describe(&m.config),
                    s.db.display()
                ),
            ),
            Started::Adopted => log(
                iface,
                format_args!(
                    "adopted the pinned ledgers ({}; last cut {}; {})",
                    hooks.join(", "),
                    service.legs()[0].ledger().last_seq()?,
                    netledger::describe(&m.config)
                ),
            ),
        }
        counted.push(Counted {
            service,
            ledger_ids,
            seeded_through,
            gone: false,
            store_failing: false,
        });
    }
    let hello = Hello {
        kind: "hello".into(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        since_ns: socket::ns(SystemTime::now()),
        interval_ms: s.interval.as_millis() as u64,
        strategy: s.ledger.strategy.to_string(),
        ledgers: counted
            .iter()
            .flat_map(|c| {
                c.service.legs().iter().map(|l| {
                    (
                        c.service.manifest().iface.clone(),
                        l.ledger().direction().to_string(),
                        l.ledger().hook().name().to_string(),
                    )
                })
            })
            .collect(),
    };
    let socket = match socket::Server::start(&s.socket, hello) {
        Ok(srv) => Some(srv),
        Err(e) => {
            log(
                "socket",
                format_args!(
                    "{}; `netledger top` will attach on its own",
                    crate::one_line(&e)
                ),
            );
            None
        }
    };
    let mut after = After {
        exports,
        jsonl: s.jsonl.then(|| JsonLines::new(io::stdout(), None)),
        socket,
    };
    notify_ready();

    // A cut a killed process left open is finished first, before the next.
    for c in &mut counted {
        for i in 0..c.service.legs().len() {
            if c.service.legs()[i].ledger().has_open_cut()? {
                log(
                    &c.service.manifest().iface,
                    "finishing the cut a previous process left open",
                );
                cut_once(c, i, &mut store, &faults, &mut after, verbose);
            }
        }
    }

    let mut ticker = Ticker::new(s.interval);
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    loop {
        ticker.wait();
        let stopping = stop_requested();
        for c in &mut counted {
            check_links(c);
            for i in 0..c.service.legs().len() {
                cut_once(c, i, &mut store, &faults, &mut after, verbose);
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(3600) {
            last_prune = Instant::now();
            if let Err(e) = store.prune(SystemTime::now(), s.retention, None) {
                log(
                    "store",
                    format_args!("pruning old flow records failed: {e}"),
                );
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
fn check_links(c: &mut Counted) {
    let iface = c.service.manifest().iface.clone();
    match c.service.check_links() {
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
        Err(e) => log(
            &iface,
            format_args!("attaching again failed: {}", crate::one_line(&e.into())),
        ),
    }
}

/// One cut of leg `leg`: take it, commit it, clear it, then the other sinks.
/// A cut the store refuses stays open in the kernel (which keeps counting)
/// and is taken again at the next tick.
fn cut_once(
    c: &mut Counted,
    leg: usize,
    store: &mut Store,
    faults: &Faults,
    after: &mut After,
    verbose: bool,
) {
    let ledger = c.service.legs()[leg].ledger();
    let iface = c.service.manifest().iface.clone();
    let took = Instant::now();
    let cut = match ledger.take_cut() {
        Ok(cut) => cut,
        Err(e) => {
            log(
                &iface,
                format_args!("cut failed: {}", crate::one_line(&e.into())),
            );
            return;
        }
    };
    let seq = cut.interval.seq;
    faults.pause();
    if faults.clear_first {
        // The wrong order, for tests only: what is cleared before it is
        // committed is lost if the process dies in between.
        if let Err(e) = ledger.finish_cut(&cut) {
            log(&iface, format_args!("clearing cut {seq} failed: {e}"));
            return;
        }
        faults.pause();
    }
    match store.commit(c.ledger_ids[leg], &cut.interval) {
        Ok(done) => {
            if c.store_failing {
                log(&iface, "store writable again: committed what was waiting");
                c.store_failing = false;
            }
            if let Committed::AlreadyThere { same_counts: false } = done {
                log(
                    &iface,
                    format_args!(
                        "cut {seq} was committed before with other counts; the stored one is kept"
                    ),
                );
            }
            if verbose {
                log(
                    &iface,
                    format_args!(
                        "{} cut {seq} {}: {} flows, {} packets",
                        cut.interval.dir,
                        match done {
                            Committed::AlreadyThere { .. } => "already committed",
                            _ => "committed",
                        },
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
                        "store: committing cut {seq} failed: {e}; the kernel keeps counting and the cut is retried every interval"
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
            log(
                &iface,
                format_args!("clearing cut {seq} failed: {e}; retried next interval"),
            );
            return;
        }
    }
    after.exports.cut_took(took.elapsed());
    if seq <= c.seeded_through[leg] {
        // A cut a killed process committed but did not clear: the store
        // had it when the counters were seeded, so they hold it already.
        after.exports.interval_except_metrics(&cut.interval);
    } else {
        after.exports.interval(&cut.interval);
    }
    if let Some(sink) = &mut after.jsonl {
        if let Err(e) = sink.interval(&cut.interval) {
            if !netledger_sinks::text::is_broken_pipe(&e) {
                log(&iface, format_args!("writing JSON lines failed: {e}"));
            }
        }
    }
    if let Some(srv) = &after.socket {
        srv.publish(&cut.interval);
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
