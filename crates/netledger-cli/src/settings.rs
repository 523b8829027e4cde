//! The service's settings: a TOML file (`--config`, default
//! `/etc/netledger/netledger.toml` when present) under the command-line
//! flags, which win. Unknown keys and wrong types are refused with the file,
//! the line and what was expected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use netledger::{KeyMode, LedgerConfig, Strategy, XdpMode};
use serde::Deserialize;

use crate::cli::{DirectionArg, ExportOpts, HookArg, RunArgs};

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/netledger/netledger.toml";
/// The default history store.
pub const DEFAULT_DB: &str = "/var/lib/netledger/netledger.db";

/// The file's contents; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Interfaces to count on.
    pub interfaces: Option<Vec<String>>,
    /// Key mode: src-ip, dst-ip, ip-pair or five-tuple.
    pub key: Option<KeyMode>,
    /// The outer VLAN id is part of the key.
    pub vlan: Option<bool>,
    /// IPv4 prefix length to aggregate to.
    pub prefix4: Option<u8>,
    /// IPv6 prefix length to aggregate to.
    pub prefix6: Option<u8>,
    /// Capacity of the flow map.
    pub max_flows: Option<u32>,
    /// lock or swap.
    pub strategy: Option<Strategy>,
    /// Evict a flow after N intervals without traffic (strategy lock).
    pub evict_idle: Option<u32>,
    /// Interval length, e.g. "10s".
    pub interval: Option<String>,
    /// The history store.
    pub db: Option<PathBuf>,
    /// How long per-cut flow records are kept, e.g. "48h".
    pub retention: Option<String>,
    /// XDP attach mode: auto, native or generic.
    pub xdp_mode: Option<String>,
    /// in, out or both.
    pub direction: Option<String>,
    /// Where ingress is counted: auto, xdp or tc.
    pub hook: Option<String>,
    /// Prometheus endpoint address.
    pub metrics: Option<String>,
    /// Per-flow series for the top N keys.
    pub metrics_flows: Option<usize>,
    /// IPFIX collectors, udp://HOST:PORT or tcp://HOST:PORT.
    pub ipfix: Option<Vec<String>>,
    /// The control socket.
    pub socket: Option<PathBuf>,
}

impl FileSettings {
    /// Read `path`, or the default file if it exists (`None` and absent: empty).
    pub fn load(path: Option<&Path>) -> Result<FileSettings> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(FileSettings::default())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            // The line number and the line itself: wrong types are reported
            // at the value, so the line names the key.
            let at = e
                .span()
                .map(|s| {
                    let n = text[..s.start].matches('\n').count();
                    let line = text.lines().nth(n).unwrap_or("").trim();
                    format!(" at line {} (`{line}`)", n + 1)
                })
                .unwrap_or_default();
            anyhow::anyhow!(
                "{}{at}: {}; fix the file or pass another with --config",
                path.display(),
                e.message()
            )
        })
    }
}

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/netledger/netledger.sock";

/// Everything `run` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interfaces: Vec<String>,
    pub ledger: LedgerConfig,
    pub direction: DirectionArg,
    pub hook: HookArg,
    pub interval: Duration,
    pub db: PathBuf,
    pub retention: Duration,
    pub xdp_mode: XdpMode,
    pub socket: PathBuf,
    pub exports: ExportOpts,
    pub jsonl: bool,
}

/// `run`'s flags over the configuration file over the defaults.
pub fn resolve(a: RunArgs) -> Result<(Settings, ())> {
    let f = FileSettings::load(a.config.as_deref())?;
    let ledger = LedgerConfig {
        key_mode: a.key.map(KeyMode::from).or(f.key).unwrap_or_default(),
        vlan: a.vlan || f.vlan.unwrap_or(false),
        prefix4: a.prefix4.or(f.prefix4),
        prefix6: a.prefix6.or(f.prefix6),
        max_flows: a.max_flows.or(f.max_flows).unwrap_or(65536),
        strategy: a
            .strategy
            .map(Strategy::from)
            .or(f.strategy)
            .unwrap_or_default(),
        idle_cuts: a.evict_idle.or(f.evict_idle).unwrap_or(5),
    };
    let value = |what: &str, v: &str, choices: &[&str]| -> Result<usize> {
        choices.iter().position(|c| *c == v).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid {what} {v:?} in the configuration file (expected {})",
                choices.join(", ")
            )
        })
    };
    let direction = match (a.direction, f.direction.as_deref()) {
        (Some(d), _) => d,
        (None, Some(v)) => [DirectionArg::In, DirectionArg::Out, DirectionArg::Both]
            [value("direction", v, &["in", "out", "both"])?],
        (None, None) => DirectionArg::In,
    };
    let hook = match (a.hook, f.hook.as_deref()) {
        (Some(h), _) => h,
        (None, Some(v)) => {
            [HookArg::Auto, HookArg::Xdp, HookArg::Tc][value("hook", v, &["auto", "xdp", "tc"])?]
        }
        (None, None) => HookArg::Auto,
    };
    let xdp_mode = match (a.xdp_mode, f.xdp_mode.as_deref()) {
        (Some(m), _) => m.into(),
        (None, Some(v)) => parse_xdp_mode(v)?,
        (None, None) => XdpMode::Auto,
    };
    let interval = match (a.interval, f.interval.as_deref()) {
        (Some(d), _) => d,
        (None, Some(v)) => parse_interval(v)
            .map_err(|e| anyhow::anyhow!("interval in the configuration file: {e}"))?,
        (None, None) => Duration::from_secs(10),
    };
    let retention = match a.retention.as_deref().or(f.retention.as_deref()) {
        Some(v) => parse_duration_in(v, 60.0, 10.0 * 365.0 * 86400.0)
            .map_err(|e| anyhow::anyhow!("retention: {e}"))?,
        None => netledger_sinks::store::DEFAULT_FLOW_RETENTION,
    };
    let mut exports = a.exports;
    if exports.metrics.is_none() {
        exports.metrics = f.metrics;
    }
    if exports.metrics_flows == 0 {
        exports.metrics_flows = f.metrics_flows.unwrap_or(0);
    }
    if exports.ipfix.is_empty() {
        exports.ipfix = f.ipfix.unwrap_or_default();
    }
    let interfaces = if a.ifaces.is_empty() {
        f.interfaces.unwrap_or_default()
    } else {
        a.ifaces
    };
    Ok((
        Settings {
            interfaces,
            ledger,
            direction,
            hook,
            interval,
            db: a.db.or(f.db).unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            retention,
            xdp_mode,
            socket: a
                .socket
                .or(f.socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            exports,
            jsonl: a.jsonl,
        },
        (),
    ))
}

/// A duration such as "1s", "250ms", "1.5s", "2m", "48h", "7d", between `min` and `max`.
pub fn parse_duration_in(s: &str, min: f64, max: f64) -> Result<Duration, String> {
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
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}; use ms, s, m, h or d"
            ))
        }
    };
    if !(min..=max).contains(&secs) {
        return Err(format!("{s} is out of range ({min} s to {max} s)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An interval length: 10 ms to 24 h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, 0.01, 86400.0).map_err(|e| {
        if e.contains("out of range") {
            format!("{s} is out of range; intervals go from 10ms to 24h")
        } else {
            e
        }
    })
}

/// An XDP mode by name.
pub fn parse_xdp_mode(s: &str) -> Result<XdpMode> {
    Ok(s.parse::<XdpMode>()?)
}

/// Check a resolved set of interfaces.
pub fn check_interfaces(ifaces: &[String]) -> Result<()> {
    if ifaces.is_empty() {
        bail!("no interface to count on; pass --iface IF (repeatable) or set `interfaces` in the configuration file");
    }
    for (i, a) in ifaces.iter().enumerate() {
        if ifaces[..i].contains(a) {
            bail!("interface {a:?} is named twice");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileSettings> {
        let dir = std::env::temp_dir().join(format!("nl-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&p, text).unwrap();
        let r = FileSettings::load(Some(&p));
        std::fs::remove_file(&p).unwrap();
        let _ = std::fs::remove_dir(&dir);
        r
    }

    #[test]
    fn a_full_file_parses() {
        let f = parse(
            "interfaces = [\"eth0\", \"eth1\"]\nkey = \"src-ip\"\nvlan = true\nprefix4 = 24\nprefix6 = 64\nmax_flows = 1000\nstrategy = \"lock\"\nevict_idle = 3\ninterval = \"10s\"\ndb = \"/tmp/x.db\"\nretention = \"48h\"\nxdp_mode = \"generic\"\n",
        )
        .unwrap();
        assert_eq!(f.interfaces.unwrap(), ["eth0", "eth1"]);
        assert_eq!(f.key, Some(KeyMode::SrcIp));
        assert_eq!(f.strategy, Some(Strategy::Lock));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_one_clear_line() {
        let e = parse("interfaces = [\"eth0\"]\nintreval = \"5s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("intreval"), "{e}");
        let e = parse("max_flows = \"many\"\n").unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("max_flows") || e.contains("integer"),
            "{e}"
        );
        let e = parse("key = \"six-tuple\"\n").unwrap_err().to_string();
        assert!(e.contains("six-tuple"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn missing_default_file_is_empty_but_a_named_one_is_required() {
        assert!(FileSettings::load(Some(Path::new("/nonexistent/nl.toml"))).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_interval("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_interval("1ms").is_err());
        assert!(parse_interval("abc").is_err());
        assert!(parse_interval("5x").is_err());
        assert_eq!(
            parse_duration_in("2d", 1.0, 1e9).unwrap(),
            Duration::from_secs(172800)
        );
    }
}
