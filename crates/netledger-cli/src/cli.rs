//! The command line: every subcommand, flag and help text (also the source
//! of the shell completions and the man page).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use netledger::{Hook, KeyMode, LedgerConfig, Strategy, XdpMode};

use crate::settings::{parse_interval, DEFAULT_DB};

#[derive(Parser)]
#[command(
    name = "netledger",
    version,
    about = "Exact per-flow packet and byte accounting with eBPF (XDP and tc, ingress and egress)",
    long_about = "netledger counts packets and bytes per flow in the kernel and reports them exactly: \
                  packets and bytes of a flow always come from the same instant, and every frame the \
                  hook sees lands in exactly one bucket: its flow, non_ip, malformed, map_full or \
                  evict_race. Cuts never lose or double-count a packet. Needs root (or CAP_BPF, \
                  CAP_PERFMON and CAP_NET_ADMIN)."
)]
pub struct Cli {
    /// Show libbpf's own diagnostics (verifier log on load failures); with
    /// `run`, a line per cut.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Count traffic on an interface and print one interval at a time.
    Watch(WatchArgs),
    /// Take the counters of a running `watch --strategy lock` (all keys, or
    /// those selected) out of its ledger, losslessly, and print what was taken.
    Reset(ResetArgs),
    /// Build a namespace and veth pair, send known traffic, print the ledger and check it.
    Demo(DemoArgs),
    /// Measure every way of counting side by side on this machine (root; takes minutes).
    Bench(BenchArgs),
    /// The service: count on interfaces around the clock, commit every cut to
    /// the history store before the kernel's copy is cleared (a kill -9 loses
    /// nothing), export metrics and IPFIX. Runs in the foreground.
    Run(RunArgs),
    /// Detach the service's programs from interfaces, commit their last
    /// counts to the store and remove their pins.
    Down(DownArgs),
    /// What is attached and pinned, the last cuts, the store and its totals.
    Status(StatusArgs),
    /// History from the store, like vnstat: per hour, day or month, or per flow.
    Report(ReportArgs),
    /// A live view of the top flows, with exact totals (a client of `netledger
    /// run` where it counts, else it attaches itself like `watch`).
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `netledger man | man -l -`.
    Man,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KeyArg {
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
pub enum XdpModeArg {
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
pub enum StrategyArg {
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

/// Which way traffic is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// What arrives (XDP or tc ingress, see --hook).
    In,
    /// What leaves (tc egress, through tcx or clsact).
    Out,
    /// Both, each with its own ledger, buckets and records.
    Both,
}

/// Where ingress is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    /// tc on veth interfaces (where XDP would make the driver copy every
    /// frame), XDP elsewhere.
    Auto,
    /// XDP: every frame as the driver received it, before the stack.
    Xdp,
    /// tc (tcx): after GRO; a merged packet counts as the frames it merged.
    Tc,
}

impl DirectionArg {
    /// The hooks to count at on `iface`.
    pub fn hooks(self, hook: HookArg, iface: &str) -> Vec<Hook> {
        let ingress = match hook {
            HookArg::Xdp => Hook::Xdp,
            HookArg::Tc => Hook::TcIngress,
            HookArg::Auto => {
                if netledger::driver(iface).as_deref() == Some("veth") {
                    Hook::TcIngress
                } else {
                    Hook::Xdp
                }
            }
        };
        match self {
            DirectionArg::In => vec![ingress],
            DirectionArg::Out => vec![Hook::TcEgress],
            DirectionArg::Both => vec![ingress, Hook::TcEgress],
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

/// How flows are keyed (shared by watch, demo and top).
#[derive(Args, Clone)]
pub struct KeyOpts {
    /// What a flow is: source address, destination address, the address pair,
    /// or addresses + protocol + ports (ICMP type/code).
    #[arg(long = "key", value_enum, default_value = "five-tuple")]
    pub key: KeyArg,
    /// Make the outer VLAN id part of the key (0 for untagged frames).
    #[arg(long)]
    pub vlan: bool,
    /// Aggregate IPv4 addresses to this prefix length (1-32).
    #[arg(long, value_name = "LEN")]
    pub prefix4: Option<u8>,
    /// Aggregate IPv6 addresses to this prefix length (1-128).
    #[arg(long, value_name = "LEN")]
    pub prefix6: Option<u8>,
    /// Capacity of the flow map; packets of new flows beyond it are counted in map_full.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub max_flows: u32,
    /// How counters are kept and cut (see `lock` and `swap` below). swap is
    /// the default: its data path is the cheapest and stays flat under
    /// contention (docs/benchmarks.md); choose lock for `reset` and live reads.
    #[arg(long, value_enum, default_value = "swap")]
    pub strategy: StrategyArg,
    /// Evict a flow after N intervals without traffic, so the map does not
    /// fill up (0: never; strategy lock). Nothing counted is lost by an eviction.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub evict_idle: u32,
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

/// Where the hooks go (shared by watch, run and top).
#[derive(Args, Clone)]
pub struct HookOpts {
    /// Count what arrives (in), what leaves (out), or both.
    #[arg(long, value_enum, default_value = "in")]
    pub direction: DirectionArg,
    /// Where ingress is counted: auto picks tc on veth interfaces, where XDP
    /// makes the driver copy every frame (docs/benchmarks.md), and XDP
    /// elsewhere. Egress is always tc.
    #[arg(long, value_enum, default_value = "auto")]
    pub hook: HookArg,
    /// XDP attach mode: native (in the driver), generic (skb path), or auto (native if possible).
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeArg,
    /// How tc programs are attached: tcx (kernel 6.6+, alongside other
    /// programs), a clsact qdisc and filter (older kernels; the qdisc is
    /// removed only if netledger created it and nothing else uses it), or auto
    /// (tcx where the kernel has it).
    #[arg(long, value_enum, default_value = "auto")]
    pub tc_attach: TcAttachArg,
}

/// How tc programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TcAttachArg {
    Auto,
    Tcx,
    Clsact,
}

impl From<TcAttachArg> for netledger::TcMode {
    fn from(m: TcAttachArg) -> Self {
        match m {
            TcAttachArg::Auto => netledger::TcMode::Auto,
            TcAttachArg::Tcx => netledger::TcMode::Tcx,
            TcAttachArg::Clsact => netledger::TcMode::Clsact,
        }
    }
}

/// Exports (shared by watch and run).
#[derive(Args, Debug, Clone, Default)]
pub struct ExportOpts {
    /// Serve Prometheus metrics at ADDR (HOST:PORT, [V6]:PORT, or PORT for
    /// 127.0.0.1:PORT; loopback unless you name another address).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Also export per-flow series for the top N keys by bytes (labels from
    /// the key mode); the rest are counted in netledger_flow_series_dropped_total.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub metrics_flows: usize,
    /// Export flow records and the buckets over IPFIX to a collector:
    /// udp://HOST:PORT or tcp://HOST:PORT (repeatable).
    #[arg(long, value_name = "URL")]
    pub ipfix: Vec<String>,
    /// IPFIX observation domain id.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    pub ipfix_domain: u32,
    /// Largest IPFIX message, in bytes (UDP payload).
    #[arg(long, value_name = "BYTES", default_value_t = 1400)]
    pub ipfix_mtu: usize,
    /// How often templates are sent again over UDP.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_interval)]
    pub ipfix_template_refresh: Duration,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Interface to count.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: String,
    #[command(flatten)]
    pub key: KeyOpts,
    #[command(flatten)]
    pub hooks: HookOpts,
    /// Interval length, e.g. 1s, 250ms, 2m. Each interval is cut exactly: every
    /// packet is in exactly one. With --strategy swap a cut waits for an RCU
    /// grace period (10-50 ms), so intervals shorter than that stretch to it.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many intervals (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Show at most N flows per interval, most bytes first (default: all; 20 for table).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub exports: ExportOpts,
}

#[derive(Args)]
pub struct ResetArgs {
    /// Interface of the running `netledger watch` (in this network namespace).
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: String,
    /// Only keys with this source address (a host selects its prefix's key).
    #[arg(long, value_name = "ADDR")]
    pub src: Option<IpAddr>,
    /// Only keys with this destination address.
    #[arg(long, value_name = "ADDR")]
    pub dst: Option<IpAddr>,
    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp or a number.
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    pub proto: Option<u8>,
    /// Only this source port.
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,
    /// Only this destination port.
    #[arg(long, value_name = "PORT")]
    pub dport: Option<u16>,
    /// Only this VLAN id (ledgers keyed with --vlan).
    #[arg(long = "vlan", value_name = "ID")]
    pub vlan: Option<u16>,
    /// Output format of what was taken.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn parse_proto(s: &str) -> Result<u8, String> {
    netledger::parse_proto(s).ok_or_else(|| {
        format!("{s:?} is not a protocol; use tcp, udp, icmp, icmpv6, sctp or 0-255")
    })
}

#[derive(Args)]
pub struct BenchArgs {
    /// Tiny sizes and one round: checks that every part runs, in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Rounds per figure (medians are over these; default 5, 1 with --quick).
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Also write every figure and target as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw ns/packet per strategy against the number of keys (SVG).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Only these parts, comma-separated: datapath, breakdown, exactness, drain, reader, real, cuts.
    #[arg(long, value_name = "PARTS")]
    pub only: Option<String>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Output format of the ledger.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Frames per flow.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub packets: u32,
    /// How counters are kept and cut (as for watch).
    #[arg(long, value_enum, default_value = "swap")]
    pub strategy: StrategyArg,
}

/// `run`'s settings: each flag, when given, wins over the configuration file.
#[derive(Args)]
pub struct RunArgs {
    /// The configuration file (TOML); default /etc/netledger/netledger.toml when present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to count on (repeatable).
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// What a flow is (default five-tuple).
    #[arg(long = "key", value_enum)]
    pub key: Option<KeyArg>,
    /// Make the outer VLAN id part of the key.
    #[arg(long)]
    pub vlan: bool,
    /// Aggregate IPv4 addresses to this prefix length (1-32).
    #[arg(long, value_name = "LEN")]
    pub prefix4: Option<u8>,
    /// Aggregate IPv6 addresses to this prefix length (1-128).
    #[arg(long, value_name = "LEN")]
    pub prefix6: Option<u8>,
    /// Capacity of the flow map (default 65536).
    #[arg(long, value_name = "N")]
    pub max_flows: Option<u32>,
    /// lock or swap (default swap).
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Evict a flow after N intervals without traffic (strategy lock; default 5).
    #[arg(long, value_name = "N")]
    pub evict_idle: Option<u32>,
    /// Count what arrives (in), what leaves (out), or both (default in).
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// Where ingress is counted (default auto: tc on veth, XDP elsewhere).
    #[arg(long, value_enum)]
    pub hook: Option<HookArg>,
    /// XDP attach mode (default auto).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// Interval length (default 10s).
    #[arg(long, value_name = "D", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// The history store (default /var/lib/netledger/netledger.db).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// How long per-cut flow records are kept (default 48h; rollups are kept for good).
    #[arg(long, value_name = "D")]
    pub retention: Option<String>,
    /// Also write every interval to stdout as JSON lines.
    #[arg(long)]
    pub jsonl: bool,
    /// The control socket `top` connects to (default /run/netledger/netledger.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub exports: ExportOpts,
}

#[derive(Args)]
pub struct DownArgs {
    /// Interface to take down (repeatable; default: every pinned interface).
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// The history store the last counts are committed to.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB)]
    pub db: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The history store to summarise.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatusFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// Text for people.
    Table,
    /// One JSON object.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    Flow,
    Src,
    Dst,
    Hour,
    Day,
    Month,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirFilter {
    In,
    Out,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The history store (read only).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// Only this interface.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: Option<String>,
    /// Only this direction.
    #[arg(long, value_enum)]
    pub dir: Option<DirFilter>,
    /// From (RFC 3339, a date, or relative: -1d, -6h, -30m, -2w).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Until (same forms; default now).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Rows per flow, per source or destination address, or per hour, day or month.
    #[arg(long, value_enum, default_value = "day")]
    pub by: ByArg,
    /// At most N rows per interface and direction (by flow/src/dst; default 20 in the table).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Cut hours, days and months in UTC instead of local time.
    #[arg(long)]
    pub utc: bool,
}

#[derive(Args)]
pub struct TopArgs {
    /// Interface to show (default: every interface the service counts on).
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub key: KeyOpts,
    #[command(flatten)]
    pub hooks: HookOpts,
    /// Interval length when top attaches itself.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// The service's control socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}
