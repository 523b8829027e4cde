//! Part 5, real frames per second through a veth pair between two
//! namespaces, for each hook and for a pcap-based accountant.
//!
//! One thread pinned to the first CPU sends the same 64-byte UDP frame from
//! the first namespace as fast as it can (an AF_PACKET socket, `sendmmsg`
//! bursts) for a fixed time; the figure is what the receiving end counted
//! (`rx_packets` of its interface, from `/proc/thread-self/net/dev` inside
//! its namespace) per second of sending. On a veth pair the receive path
//! runs on the sending CPU (in its softirq), so every frame's sending and
//! receiving share one CPU: a program's cost shows as fewer frames.
//!
//! The receiving end has, in turn: no program; an empty XDP program
//! (XDP_PASS; any XDP program switches veth to its NAPI receive path and
//! copies each frame into a page-pool buffer, which this separates from the
//! cost of counting); `swap` and `lock` through XDP (native); an empty tc
//! program (tcx, returning "next"); `swap` and `lock` through tc (tcx); and
//! pmacctd, the reference: libpcap on the receiving interface, the memory
//! plugin, the same five-tuple aggregation (what it keeps is what it counted,
//! read with the `pmacct` client). The conditions take turns round by
//! round, in a rotating order, and each ratio is taken within a round.
//!
//! Nothing leaves the two namespaces: the frame's destination is the
//! receiving interface, which has no address and drops it after counting.
//! The receiving namespace has IPv6 off and no addresses, so it sends
//! nothing of its own.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use netledger::lab::{attach_tc_fd, attach_xdp_fd};
use netledger::{Attachment, Bucket, Hook, Ledger, LedgerConfig, Strategy, TcMode, XdpMode};

use super::programs::BenchPrograms;
use super::{median, Measurement, Options};
use crate::harness::{allowed_cpus, pin_to, Flow};
use crate::netns::{veth_pair, Ipv6Mode, NetNs, RawSocket};

const SECTION: &str = "real";
/// The sending and the receiving end of the pair.
const TX: &str = "nlb0";
const RX: &str = "nlb1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    NoProgram,
    XdpEmpty,
    XdpSwap,
    XdpLock,
    TcEmpty,
    TcSwap,
    TcLock,
    Pmacctd,
}

impl Condition {
    const ALL: [Condition; 8] = [
        Condition::NoProgram,
        Condition::XdpEmpty,
        Condition::XdpSwap,
        Condition::XdpLock,
        Condition::TcEmpty,
        Condition::TcSwap,
        Condition::TcLock,
        Condition::Pmacctd,
    ];

    fn tag(self) -> &'static str {
        match self {
            Condition::NoProgram => "none",
            Condition::XdpEmpty => "xdp_empty",
            Condition::XdpSwap => "xdp_swap",
            Condition::XdpLock => "xdp_lock",
            Condition::TcEmpty => "tc_empty",
            Condition::TcSwap => "tc_swap",
            Condition::TcLock => "tc_lock",
            Condition::Pmacctd => "pmacctd",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Condition::NoProgram => "no program",
            Condition::XdpEmpty => "empty XDP program (XDP_PASS)",
            Condition::XdpSwap => "swap via XDP",
            Condition::XdpLock => "lock via XDP",
            Condition::TcEmpty => "empty tc program (tcx, returns next)",
            Condition::TcSwap => "swap via tc (tcx)",
            Condition::TcLock => "lock via tc (tcx)",
            Condition::Pmacctd => "pmacctd (libpcap, memory plugin)",
        }
    }

    /// The empty program of the same hook (None: no hook).
    fn empty(self) -> Option<Condition> {
        match self {
            Condition::XdpSwap | Condition::XdpLock => Some(Condition::XdpEmpty),
            Condition::TcSwap | Condition::TcLock => Some(Condition::TcEmpty),
            _ => None,
        }
    }

    fn hook(self) -> &'static str {
        match self {
            Condition::XdpEmpty | Condition::XdpSwap | Condition::XdpLock => "xdp",
            Condition::TcEmpty | Condition::TcSwap | Condition::TcLock => "tc",
            Condition::Pmacctd => "pcap",
            Condition::NoProgram => "none",
        }
    }

    fn strategy(self) -> Option<&'static str> {
        match self {
            Condition::XdpSwap | Condition::TcSwap => Some("swap"),
            Condition::XdpLock | Condition::TcLock => Some("lock"),
            _ => None,
        }
    }
}

/// A failure setting up or using the namespaces, the pair or the socket.
fn setup_err(what: &str) -> impl FnOnce(io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::Error::new(e).context(format!("real-packet benchmark, {what}"))
}

/// The receiving interface's rx_packets, read inside its namespace.
fn rx_packets(ns: &NetNs) -> Result<u64> {
    let text = ns
        .try_run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))
        .and_then(|r| r)
        .map_err(setup_err("reading /proc/thread-self/net/dev"))?;
    // "  nlb1: rx_bytes rx_packets rx_errs ..."
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim() == RX)
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| {
            setup_err("reading rx_packets")(io::Error::other(format!(
                "no line for {RX} in /proc/thread-self/net/dev"
            )))
        })
}

/// The four ledgers measured: swap and lock at XDP and at tc ingress.
struct Ledgers {
    xdp_swap: Ledger,
    xdp_lock: Ledger,
    tc_swap: Ledger,
    tc_lock: Ledger,
}

impl Ledgers {
    fn load() -> Result<Ledgers> {
        let at = |strategy, hook| {
            Ledger::load_at(
                LedgerConfig {
                    strategy,
                    ..LedgerConfig::default()
                },
                hook,
            )
        };
        Ok(Ledgers {
            xdp_swap: at(Strategy::Swap, Hook::Xdp)?,
            xdp_lock: at(Strategy::Lock, Hook::Xdp)?,
            tc_swap: at(Strategy::Swap, Hook::TcIngress)?,
            tc_lock: at(Strategy::Lock, Hook::TcIngress)?,
        })
    }

    fn get(&self, cond: Condition) -> Option<&Ledger> {
        match cond {
            Condition::XdpSwap => Some(&self.xdp_swap),
            Condition::XdpLock => Some(&self.xdp_lock),
            Condition::TcSwap => Some(&self.tc_swap),
            Condition::TcLock => Some(&self.tc_lock),
            _ => None,
        }
    }
}

/// What a condition attached: a program, or pmacctd.
enum Attached {
    Nothing,
    Program(Attachment),
    Pmacctd(Pmacctd),
}

/// Attach `cond`'s program to the receiving end (XDP natively if veth takes
/// it; tc through tcx), or start pmacctd on it.
fn attach(
    cond: Condition,
    rx: &NetNs,
    bench: &BenchPrograms,
    ledgers: &Ledgers,
    dir: &Path,
) -> Result<Attached> {
    let enter = setup_err("entering the receiving namespace");
    let att = match cond {
        Condition::NoProgram => return Ok(Attached::Nothing),
        Condition::Pmacctd => return Ok(Attached::Pmacctd(Pmacctd::start(rx, dir)?)),
        Condition::XdpEmpty => rx
            .try_run(|| attach_xdp_fd(bench.prog("empty"), RX, XdpMode::Auto))
            .map_err(enter)??,
        Condition::TcEmpty => rx
            .try_run(|| attach_tc_fd(bench.prog("empty_tc"), RX, Hook::TcIngress, TcMode::Tcx))
            .map_err(enter)??,
        _ => {
            let ledger = ledgers.get(cond).expect("a counting condition");
            rx.try_run(|| ledger.attach(RX, XdpMode::Auto, TcMode::Tcx))
                .map_err(enter)??
        }
    };
    Ok(Attached::Program(att))
}

/// pmacctd on the receiving interface: libpcap, the memory plugin, the
/// five-tuple; started in the receiving namespace, stopped by its pid.
struct Pmacctd {
    child: Child,
    pipe: PathBuf,
}

impl Pmacctd {
    fn start(rx: &NetNs, dir: &Path) -> Result<Pmacctd> {
        let conf = dir.join("pmacctd.conf");
        let pipe = dir.join("pmacctd.pipe");
        let _ = std::fs::remove_file(&pipe);
        std::fs::write(
            &conf,
            format!(
                "daemonize: false\n\
                 pcap_interface: {RX}\n\
                 promisc: false\n\
                 aggregate: src_host, dst_host, src_port, dst_port, proto\n\
                 plugins: memory\n\
                 imt_path: {}\n\
                 plugin_pipe_size: 10240000\n\
                 plugin_buffer_size: 10240\n",
                pipe.display()
            ),
        )
        .context("writing pmacctd's configuration")?;
        let log = std::fs::File::create(dir.join("pmacctd.log"))?;
        let child = rx
            .try_run(|| {
                use std::os::unix::process::CommandExt;
                Command::new("pmacctd")
                    .arg("-f")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    // Its own process group: its plugin process is stopped with it.
                    .process_group(0)
                    .spawn()
            })
            .map_err(setup_err("entering the receiving namespace"))?
            .context("starting pmacctd (Debian package pmacct)")?;
        let mut p = Pmacctd { child, pipe };
        // Ready once its plugin answers a query.
        let t = Instant::now();
        loop {
            if p.counted().is_ok() {
                break;
            }
            if let Some(status) = p.child.try_wait()? {
                return Err(anyhow!(
                    "pmacctd exited ({status}); see {}",
                    dir.join("pmacctd.log").display()
                ));
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(anyhow!("pmacctd did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The capture is open before the plugin answers; a moment for it.
        std::thread::sleep(Duration::from_millis(200));
        Ok(p)
    }

    /// Packets counted so far, every flow.
    fn counted(&self) -> Result<u64> {
        let out = Command::new("pmacct")
            .arg("-p")
            .arg(&self.pipe)
            .args(["-s", "-O", "json"])
            .stdin(Stdio::null())
            .output()
            .context("running the pmacct client")?;
        if !out.status.success() {
            return Err(anyhow!("pmacct -s failed: {}", out.status));
        }
        let mut total = 0u64;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            total += v["packets"].as_u64().unwrap_or(0);
        }
        Ok(total)
    }

    /// Stop it (its process group, by its pid) and wait for it.
    fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of the process group we created.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Frames per `sendmmsg` call: amortises the syscall (about a microsecond
/// here), so the receive path is a larger share of each frame's cost.
const BURST: usize = 64;

/// Send `frame` from `sock` in a tight loop of `sendmmsg` calls for `len`,
/// pinned to `cpu`: (frames sent, sends refused with ENOBUFS, seconds).
fn blast(sock: &RawSocket, frame: &[u8], len: Duration, cpu: usize) -> Result<(u64, u64, f64)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(cpu).map_err(setup_err("pinning the sender"))?;
            let fd = sock.as_fd().as_raw_fd();
            // Every message is the same frame.
            let mut iov = libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            };
            let mut msgs: Vec<libc::mmsghdr> = (0..BURST)
                .map(|_| {
                    // SAFETY: mmsghdr is plain data; all zeroes is a valid value.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = &mut iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let (mut sent, mut refused) = (0u64, 0u64);
            let start = Instant::now();
            loop {
                // SAFETY: BURST valid headers, each pointing at one valid iovec.
                let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BURST as _, 0) };
                if n >= 0 {
                    sent += n as u64;
                } else {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        // The receiving end's queue is full: a frame was dropped.
                        Some(libc::ENOBUFS) | Some(libc::EAGAIN) => refused += 1,
                        Some(libc::EINTR) => {}
                        _ => return Err(setup_err("sending")(e)),
                    }
                }
                let t = start.elapsed();
                if t >= len {
                    return Ok((sent, refused, t.as_secs_f64()));
                }
            }
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// What one condition gave over all rounds.
#[derive(Default)]
struct Tally {
    rate: Vec<f64>,
    /// Frames the accountant counted (kept) per second.
    kept_rate: Vec<f64>,
    /// To no program, and to the empty program of its hook, within each round.
    ratio: Vec<f64>,
    ratio_empty: Vec<f64>,
    /// Kept to no program's received, within each round.
    kept_ratio: Vec<f64>,
    received: u64,
    sent: u64,
    refused: u64,
    kept: u64,
    mode: Option<String>,
}

/// Frames the accountant of `cond` has counted so far (None: none).
fn kept(cond: Condition, ledgers: &Ledgers, attached: &Attached) -> Result<Option<u64>> {
    if let Attached::Pmacctd(p) = attached {
        return p.counted().map(Some);
    }
    match ledgers.get(cond) {
        Some(l) => Ok(Some(l.buckets()?.get(Bucket::Seen).packets)),
        None => Ok(None),
    }
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let rounds = opts.rounds.max(1);
    let rounds = if opts.quick { rounds.min(2) } else { rounds };
    let len = opts.size(Duration::from_millis(300), Duration::from_secs(2));
    let cpu = allowed_cpus()
        .map_err(setup_err("reading the CPU affinity"))?
        .first()
        .copied()
        .unwrap_or(0);
    let have_pmacctd = Command::new("pmacctd")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !have_pmacctd {
        (opts.progress)("real: pmacctd not installed (Debian package pmacct): not measured");
    }
    let conditions: Vec<Condition> = Condition::ALL
        .into_iter()
        .filter(|c| have_pmacctd || *c != Condition::Pmacctd)
        .collect();

    (opts.progress)("real: namespaces, veth pair, programs");
    let dir = tempdir()?;
    let tx_ns = NetNs::create("nlbench-tx").map_err(setup_err("creating a namespace"))?;
    let rx_ns = NetNs::create("nlbench-rx").map_err(setup_err("creating a namespace"))?;
    // Declared after the namespaces: dropped (deleted) before them.
    let veth = veth_pair(TX, Some(&tx_ns), RX, Some(&rx_ns))
        .map_err(setup_err("creating the veth pair"))?;
    veth.a()
        .prepare(Ipv6Mode::Off)
        .map_err(setup_err("preparing the sending end"))?;
    veth.b()
        .prepare(Ipv6Mode::Off)
        .map_err(setup_err("preparing the receiving end"))?;
    let mut frame = Flow::nth(0).frame();
    frame[0..6].copy_from_slice(&veth.b().mac().map_err(setup_err("reading a MAC address"))?);
    frame[6..12].copy_from_slice(&veth.a().mac().map_err(setup_err("reading a MAC address"))?);
    let sock =
        RawSocket::open_in(Some(&tx_ns), TX).map_err(setup_err("opening the sending socket"))?;

    let bench = BenchPrograms::load(1024)?;
    let ledgers = Ledgers::load()?;

    let mut tallies: Vec<Tally> = conditions.iter().map(|_| Tally::default()).collect();
    let index = |c: Condition| conditions.iter().position(|&x| x == c);
    for r in 0..rounds {
        (opts.progress)(&format!(
            "real: round {} of {rounds}: {:.1} s of 64-byte frames per condition ({})",
            r + 1,
            len.as_secs_f64(),
            conditions
                .iter()
                .map(|c| c.tag())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut this: Vec<Option<f64>> = vec![None; conditions.len()];
        let mut this_kept: Vec<Option<f64>> = vec![None; conditions.len()];
        for k in 0..conditions.len() {
            let i = (k + r) % conditions.len();
            let cond = conditions[i];
            let attached = attach(cond, &rx_ns, &bench, &ledgers, &dir)?;
            let kept0 = kept(cond, &ledgers, &attached)?;
            let rx0 = rx_packets(&rx_ns)?;
            let (sent, refused, secs) = blast(&sock, &frame, len, cpu)?;
            // Let frames still in the receive ring be counted.
            std::thread::sleep(Duration::from_millis(if cond == Condition::Pmacctd {
                500
            } else {
                20
            }));
            let rx1 = rx_packets(&rx_ns)?;
            let t = &mut tallies[i];
            let kept1 = match attached {
                Attached::Nothing => None,
                Attached::Program(a) => {
                    t.mode = Some(a.how.to_string());
                    drop(a);
                    kept(cond, &ledgers, &Attached::Nothing)?
                }
                Attached::Pmacctd(p) => {
                    let n = p.counted();
                    p.stop();
                    Some(n?)
                }
            };
            let received = rx1.saturating_sub(rx0);
            t.rate.push(received as f64 / secs);
            t.received += received;
            t.sent += sent;
            t.refused += refused;
            this[i] = Some(received as f64 / secs);
            if let (Some(a), Some(b)) = (kept0, kept1) {
                t.kept += b - a;
                t.kept_rate.push((b - a) as f64 / secs);
                this_kept[i] = Some((b - a) as f64 / secs);
            }
        }
        let none = index(Condition::NoProgram).and_then(|i| this[i]);
        for (j, cond) in conditions.iter().enumerate() {
            let t = &mut tallies[j];
            if let (Some(v), Some(none)) = (this[j], none) {
                t.ratio.push(v / none);
            }
            if let (Some(k), Some(none)) = (this_kept[j], none) {
                t.kept_ratio.push(k / none);
            }
            if let Some(e) = cond.empty().and_then(index).and_then(|e| this[e]) {
                if let Some(v) = this[j] {
                    t.ratio_empty.push(v / e);
                }
            }
        }
    }
    drop(sock);
    drop(veth);
    let _ = std::fs::remove_dir_all(&dir);

    let base = index(Condition::NoProgram)
        .map(|i| median(&tallies[i].rate))
        .unwrap_or(f64::NAN);
    let base_name = format!("{}, frames/s received", Condition::NoProgram.name());
    let mut out = Vec::new();
    let mut ratios = Vec::new();
    for (cond, t) in conditions.iter().zip(tallies) {
        let is_base = *cond == Condition::NoProgram;
        let tags = |metric: &str| {
            let mut v = vec![
                ("program", cond.tag().to_string()),
                ("hook", cond.hook().to_string()),
                ("metric", metric.to_string()),
            ];
            if let Some(s) = cond.strategy() {
                v.push(("strategy", s.to_string()));
            }
            if let Some(m) = &t.mode {
                v.push(("attach", m.clone()));
            }
            v
        };
        let kept_note = if t.kept_rate.is_empty() {
            String::new()
        } else {
            format!(", counted {}", t.kept)
        };
        let value = median(&t.rate);
        out.push(Measurement {
            section: SECTION,
            name: format!(
                "{}: frames/s received ({} received of {} sent, {} refused{kept_note})",
                cond.name(),
                t.received,
                t.sent,
                t.refused,
            ),
            tags: tags("frames/s"),
            value,
            unit: "frames/s",
            ratio: (!is_base).then(|| value / base),
            baseline: (!is_base).then(|| base_name.clone()),
            samples: t.rate.clone(),
        });
        if !t.kept_rate.is_empty() {
            let kv = median(&t.kept_rate);
            out.push(Measurement {
                section: SECTION,
                name: format!("{}: frames/s counted (kept)", cond.name()),
                tags: tags("kept frames/s"),
                value: kv,
                unit: "frames/s",
                ratio: Some(kv / base),
                baseline: Some(base_name.clone()),
                samples: t.kept_rate.clone(),
            });
        }
        if is_base {
            continue;
        }
        if !t.kept_ratio.is_empty() {
            let mut tg = tags("ratio");
            tg.push(("baseline", "none".to_string()));
            tg.push(("counted", "kept".to_string()));
            ratios.push(Measurement::of(
                SECTION,
                format!(
                    "{}: frames/s counted / no program's received (per-round ratios)",
                    cond.name()
                ),
                tg,
                "x",
                t.kept_ratio,
            ));
        }
        let mut tg = tags("ratio");
        tg.push(("baseline", "none".to_string()));
        ratios.push(Measurement::of(
            SECTION,
            format!("{} / no program, frames/s (per-round ratios)", cond.name()),
            tg,
            "x",
            t.ratio,
        ));
        if let Some(e) = cond.empty() {
            let mut tg = tags("ratio");
            tg.push(("baseline", e.tag().to_string()));
            ratios.push(Measurement::of(
                SECTION,
                format!(
                    "{} / {}, frames/s (per-round ratios)",
                    cond.name(),
                    e.name()
                ),
                tg,
                "x",
                t.ratio_empty,
            ));
        }
    }
    out.extend(ratios);
    Ok(out)
}

/// A private directory for pmacctd's configuration, pipe and log.
fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("nlbench-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
