//! `netledger`: exact per-flow packet and byte accounting with eBPF.

mod advice;
mod demo;
mod reset;
mod signals;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use netledger::{KeyMode, LedgerConfig, Strategy, XdpMode};

#[derive(Parser)]
#[command(
    name = "netledger",
    version,
    about = "Exact per-flow packet and byte accounting with eBPF (XDP ingress)",
    long_about = "netledger counts packets and bytes per flow in the kernel and reports them exactly: \
                  packets and bytes of a flow always come from the same instant (read under the flow's \
                  spin lock), and every frame the hook sees lands in exactly one bucket: its flow, \
                  non_ip, malformed or map_full. Needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)."
)]
struct Cli {
    /// Show libbpf's own diagnostics (verifier log on load failures).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Count traffic arriving on an interface and print one interval at a time.
    Watch(WatchArgs),
    /// Take the counters of a running `watch` (all keys, or those selected) out
    /// of its ledger, losslessly, and print what was taken.
    Reset(ResetArgs),
    /// Build a namespace and veth pair, send known traffic, print the ledger and check it.
    Demo(DemoArgs),
    /// Measure every way of counting side by side on this machine (root; takes minutes).
    Bench(BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyArg {
    SrcIp,
    DstIp,
    IpPair,
    FiveTuple,
}

impl From<KeyArg> for KeyMode {
    fn from(k: KeyArg) -> Self {
        match k {
            KeyArg::SrcIp => KeyMode::SrcIp,
            KeyArg::DstIp => KeyMode::DstIp,
            KeyArg::IpPair => KeyMode::IpPair,
            KeyArg::FiveTuple => KeyMode::FiveTuple,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

impl From<XdpModeArg> for XdpMode {
    fn from(m: XdpModeArg) -> Self {
        match m {
            XdpModeArg::Auto => XdpMode::Auto,
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Generic => XdpMode::Generic,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    /// Counters behind per-flow spin locks: live coherent mid-interval reads
    /// and `netledger reset` (both only with lock), lossless in-kernel cuts,
    /// idle keys evicted.
    Lock,
    /// Lock-free per-CPU counters, cut by swapping maps: the cheapest data
    /// path and one consistent cut across all keys; no live reads and no
    /// reset; each cut waits one RCU grace period (10-50 ms).
    Swap,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Lock => Strategy::Lock,
            StrategyArg::Swap => Strategy::Swap,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text, with rates.
    Table,
    /// One JSON object per line: flow records, then one summary per interval.
    Jsonl,
    /// Comma-separated, header row first.
    Csv,
}

impl From<Format> for netledger_sinks::TextFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => Self::Table,
            Format::Jsonl => Self::Jsonl,
            Format::Csv => Self::Csv,
        }
    }
}

/// How flows are keyed (shared by watch and demo).
#[derive(Args, Clone)]
pub struct KeyOpts {
    /// What a flow is: source address, destination address, the address pair,
    /// or addresses + protocol + ports (ICMP type/code).
    #[arg(long = "key", value_enum, default_value = "five-tuple")]
    key: KeyArg,
    /// Make the outer VLAN id part of the key (0 for untagged frames).
    #[arg(long)]
    vlan: bool,
    /// Aggregate IPv4 addresses to this prefix length (1-32).
    #[arg(long, value_name = "LEN")]
    prefix4: Option<u8>,
    /// Aggregate IPv6 addresses to this prefix length (1-128).
    #[arg(long, value_name = "LEN")]
    prefix6: Option<u8>,
    /// Capacity of the flow map; packets of new flows beyond it are counted in map_full.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_flows: u32,
    /// How counters are kept and cut (see `lock` and `swap` below). swap is
    /// the default: its data path is the cheapest and stays flat under
    /// contention (docs/benchmarks.md); choose lock for `reset` and live reads.
    #[arg(long, value_enum, default_value = "swap")]
    strategy: StrategyArg,
    /// Evict a flow after N intervals without traffic, so the map does not
    /// fill up (0: never). Nothing counted is lost by an eviction.
    #[arg(long, value_name = "N", default_value_t = 5)]
    evict_idle: u32,
}

impl KeyOpts {
    pub fn config(&self) -> LedgerConfig {
        LedgerConfig {
            key_mode: self.key.into(),
            vlan: self.vlan,
            prefix4: self.prefix4,
            prefix6: self.prefix6,
            max_flows: self.max_flows,
            strategy: self.strategy.into(),
            idle_cuts: self.evict_idle,
        }
    }
}

#[derive(Args)]
pub struct WatchArgs {
    /// Interface to count (ingress).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    #[command(flatten)]
    key: KeyOpts,
    /// Interval length, e.g. 1s, 250ms, 2m. Each interval is cut exactly: every
    /// packet is in exactly one. With --strategy swap a cut waits for an RCU
    /// grace period (10-50 ms), so intervals shorter than that stretch to it.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this many intervals (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Show at most N flows per interval, most bytes first (default: all; 20 for table).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// XDP attach mode: native (in the driver), generic (skb path), or auto (native if possible).
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpModeArg,
}

#[derive(Args)]
pub struct ResetArgs {
    /// Interface of the running `netledger watch` (in this network namespace).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    /// Only keys with this source address (a host selects its prefix's key).
    #[arg(long, value_name = "ADDR")]
    src: Option<std::net::IpAddr>,
    /// Only keys with this destination address.
    #[arg(long, value_name = "ADDR")]
    dst: Option<std::net::IpAddr>,
    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp or a number.
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    proto: Option<u8>,
    /// Only this source port.
    #[arg(long, value_name = "PORT")]
    sport: Option<u16>,
    /// Only this destination port.
    #[arg(long, value_name = "PORT")]
    dport: Option<u16>,
    /// Only this VLAN id (ledgers keyed with --vlan).
    #[arg(long = "vlan", value_name = "ID")]
    vlan: Option<u16>,
    /// Output format of what was taken.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn parse_proto(s: &str) -> Result<u8, String> {
    netledger::parse_proto(s)
        .ok_or_else(|| format!("{s:?} is not a protocol; use tcp, udp, icmp, icmpv6, sctp or 0-255"))
}

#[derive(Args)]
pub struct BenchArgs {
    /// Tiny sizes and one round: checks that every part runs, in seconds.
    #[arg(long)]
    quick: bool,
    /// Rounds per figure (medians are over these; default 5, 1 with --quick).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Also write every figure and target as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Draw ns/packet per strategy against the number of keys (SVG).
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Only these parts, comma-separated: datapath, exactness, drain, reader, real.
    #[arg(long, value_name = "PARTS")]
    only: Option<String>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Output format of the ledger.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Frames per flow.
    #[arg(long, value_name = "N", default_value_t = 100)]
    packets: u32,
    /// How counters are kept and cut (as for watch).
    #[arg(long, value_enum, default_value = "swap")]
    strategy: StrategyArg,
}

/// Parse "1s", "250ms", "1.5s", "2m", "100us".
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 1s, 250ms or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    if !(0.01..=86400.0).contains(&secs) {
        return Err(format!(
            "{s} is out of range; intervals go from 10ms to 24h"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.verbose {
        // libbpf's own chatter (verifier logs) only with --verbose; our errors say what to do.
        netledger::quiet_libbpf();
    }
    let res = match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Reset(args) => reset::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => netledger_lab::bench::report::run(netledger_lab::bench::report::BenchCli {
            quick: args.quick,
            rounds: args.rounds,
            json: args.json,
            plot: args.plot,
            only: args.only,
        }),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netledger: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error, its causes and the fix on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    if let Some(fix) = e
        .chain()
        .find_map(|c| c.downcast_ref::<netledger::Error>())
        .and_then(advice::advice)
    {
        s.push_str("; ");
        s.push_str(&fix);
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("1ms").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
