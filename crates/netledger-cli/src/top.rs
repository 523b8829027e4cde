//! `netledger top`: the live view. A client of `netledger run` where the
//! service counts on the interface (nothing is attached twice); otherwise it
//! attaches itself like `watch` and detaches when it ends.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use netledger::{Attachment, Direction, Interval, Ledger, Pins, Strategy};
use netledger_tui::{Feed, FeedError, Header, Next, Options, Source};

use crate::cli::TopArgs;
use crate::settings::DEFAULT_SOCKET;
use crate::signals::Ticker;
use crate::socket::Client;
use crate::watch::Counting;

/// Intervals from the service, for one interface (or all).
struct ClientFeed {
    client: Client,
    iface: Option<String>,
}

impl Feed for ClientFeed {
    fn next(&mut self, timeout: Duration) -> Result<Next, FeedError> {
        match self.client.next(timeout) {
            Ok(Some(iv)) if self.iface.as_ref().is_none_or(|i| *i == iv.iface) => {
                Ok(Next::Interval(iv))
            }
            Ok(_) => Ok(Next::Idle),
            Err(e) => Ok(Next::End(e.to_string())),
        }
    }
}

/// Counting of its own: ledgers attached by top, cut every interval.
struct OwnFeed {
    ledgers: Vec<Ledger>,
    _attachments: Vec<Attachment>,
    _pins: Option<Pins>,
    ticker: Ticker,
    ready: VecDeque<Interval>,
}

impl Feed for OwnFeed {
    fn next(&mut self, timeout: Duration) -> Result<Next, FeedError> {
        if let Some(iv) = self.ready.pop_front() {
            return Ok(Next::Interval(iv));
        }
        let now = Instant::now();
        if now < self.ticker.due() {
            std::thread::sleep((self.ticker.due() - now).min(timeout));
            return Ok(Next::Idle);
        }
        self.ticker.advance();
        for l in &self.ledgers {
            self.ready.push_back(l.cut().map_err(FeedError::from)?);
        }
        Ok(self.ready.pop_front().map_or(Next::Idle, Next::Interval))
    }
}

fn exit_of(r: Result<netledger_tui::Outcome, netledger_tui::Error>) -> Result<ExitCode> {
    match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(netledger_tui::Error::NotATerminal) => anyhow::bail!(
            "netledger top needs a terminal (stdout is not one); use `netledger watch` for output to a pipe or file"
        ),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

pub fn run(args: TopArgs) -> Result<ExitCode> {
    let options = Options {
        stop_requested: Some(crate::signals::stop_requested),
    };
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return exit_of(Err(netledger_tui::Error::NotATerminal));
    }
    crate::signals::install_stop_handlers()?;
    let socket = args.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into());
    if let Some(client) = Client::connect(&socket)? {
        let h = &client.hello;
        let counts_here = args
            .iface
            .as_ref()
            .is_none_or(|i| h.ledgers.iter().any(|(f, _, _)| f == i));
        if counts_here {
            let ledgers: Vec<_> = h
                .ledgers
                .iter()
                .filter(|(f, _, _)| args.iface.as_ref().is_none_or(|i| i == f))
                .collect();
            let mut ifaces: Vec<String> = ledgers.iter().map(|(f, _, _)| f.clone()).collect();
            ifaces.dedup();
            let mut dirs: Vec<Direction> = ledgers
                .iter()
                .filter_map(|(_, d, _)| d.parse().ok())
                .collect();
            dirs.sort();
            dirs.dedup();
            let mut hooks: Vec<String> = ledgers.iter().map(|(_, _, k)| k.clone()).collect();
            hooks.dedup();
            let header = Header {
                ifaces,
                dirs,
                hook: hooks.join("+"),
                strategy: h.strategy.parse().unwrap_or(Strategy::Swap),
                interval: Duration::from_millis(h.interval_ms),
                since: UNIX_EPOCH + Duration::from_nanos(h.since_ns),
                source: Source::Client { pid: h.pid },
            };
            let feed = ClientFeed {
                client,
                iface: args.iface.clone(),
            };
            return exit_of(netledger_tui::run_with(header, feed, options));
        }
    }
    // No service counts here: attach like `watch`.
    let iface = args.iface.clone().context(
        "no `netledger run` answers on the control socket; name the interface with --iface to attach top itself",
    )?;
    let cfg = args.key.config();
    cfg.validate()?;
    netledger::preflight()?;
    netledger::ifindex(&iface)?;
    let Counting {
        attachments,
        pins,
        ledgers,
    } = crate::watch::attach(&iface, &cfg, &args.hooks, |_| {})?;
    let hook = attachments
        .iter()
        .map(|a| a.how.to_string())
        .collect::<Vec<_>>()
        .join("+");
    let header = Header {
        ifaces: vec![iface.clone()],
        dirs: ledgers.iter().map(|l| l.direction()).collect(),
        hook,
        strategy: cfg.strategy,
        interval: args.interval,
        since: SystemTime::now(),
        source: Source::Standalone,
    };
    let feed = OwnFeed {
        ledgers,
        _attachments: attachments,
        _pins: pins,
        ticker: Ticker::new(args.interval),
        ready: VecDeque::new(),
    };
    // The feed, with the ledgers, links and pins, drops when the view ends:
    // nothing stays attached.
    exit_of(netledger_tui::run_with(header, feed, options))
}
