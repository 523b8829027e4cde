//! What the caller tells the view about the counting: the header line.

use std::time::{Duration, SystemTime};

use netledger::{Direction, Strategy};

use crate::format;

/// Who attached the programs the view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `netledger top` loaded and attached the data path itself and detaches
    /// it when the view ends.
    Standalone,
    /// The view reads intervals from a running `netledger run`.
    Client {
        /// The daemon's process id.
        pid: u32,
    },
}

impl Source {
    /// The long form: "standalone: attached by top" or "client of netledger
    /// run (pid N)".
    pub fn text(self) -> String {
        match self {
            Source::Standalone => "standalone: attached by top".into(),
            Source::Client { pid } => format!("client of netledger run (pid {pid})"),
        }
    }

    /// The short form for narrow terminals.
    pub fn short(self) -> String {
        match self {
            Source::Standalone => "standalone".into(),
            Source::Client { pid } => format!("client pid {pid}"),
        }
    }
}

/// The header line's facts, fixed for the life of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The interfaces counted.
    pub ifaces: Vec<String>,
    /// The directions counted.
    pub dirs: Vec<Direction>,
    /// The hook, as the user should read it: "xdp native", "xdp generic",
    /// "tc".
    pub hook: String,
    /// The counting strategy.
    pub strategy: Strategy,
    /// How often an interval is cut.
    pub interval: Duration,
    /// When counting started: the uptime is measured from it (the daemon's
    /// start for a client, the attach for a standalone view).
    pub since: SystemTime,
    /// Who attached the programs.
    pub source: Source,
}

impl Header {
    /// "eth0 in", "eth0,eth1 in+out".
    pub fn where_text(&self) -> String {
        let dirs: Vec<&str> = self.dirs.iter().map(|d| d.name()).collect();
        let mut out = self.ifaces.join(",");
        if !dirs.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&dirs.join("+"));
        }
        out
    }

    /// The header line in at most `width` characters at time `now`. Where
    /// and the uptime are kept longest; long forms give way to short ones
    /// before a field is left out.
    pub fn line(&self, now: SystemTime, width: usize) -> String {
        let up = format::uptime(now.duration_since(self.since).unwrap_or_default());
        // (text, short text), most important last: dropped first to last.
        let mut fields: Vec<(String, Option<String>)> = vec![
            ("netledger top".into(), None),
            (self.hook.clone(), None),
            (self.strategy.name().into(), None),
            (
                format!("every {}", format::interval(self.interval)),
                Some(format::interval(self.interval)),
            ),
            (self.source.text(), Some(self.source.short())),
            (format!("up {up}"), None),
            (self.where_text(), None),
        ];
        let order = [0usize, 1, 2, 3, 4, 5, 6];
        // The display order differs from the order of importance.
        let display = [0usize, 6, 1, 2, 3, 5, 4];
        let render = |fields: &[(String, Option<String>)], kept: &[bool]| -> String {
            let mut parts: Vec<&str> = display
                .iter()
                .filter(|i| kept[**i])
                .map(|i| fields[*i].0.as_str())
                .collect();
            parts.retain(|p| !p.is_empty());
            parts.join("  ")
        };
        let mut kept = [true; 7];
        let fits = |text: &str| text.chars().count() <= width;
        // First the long forms give way, least important first...
        for i in order {
            if fits(&render(&fields, &kept)) {
                break;
            }
            if let Some(short) = fields[i].1.take() {
                fields[i].0 = short;
            }
        }
        // ...then whole fields.
        for i in order {
            if fits(&render(&fields, &kept)) {
                break;
            }
            kept[i] = false;
        }
        format::middle(&render(&fields, &kept), width)
    }
}
