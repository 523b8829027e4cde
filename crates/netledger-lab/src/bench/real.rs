//! 5. Real frames per second through a veth pair between two namespaces.
//!
//! One thread sends the same 64-byte UDP frame from the first namespace in a
//! tight loop (an AF_PACKET socket, [`RawSocket`]) for a fixed time; the
//! figure is what the receiving end counted (`rx_packets` of its interface,
//! from `/proc/thread-self/net/dev` inside its namespace) per second of
//! sending. The receiving end has, in turn: no program; an empty XDP_PASS
//! program (any XDP program switches veth to its NAPI receive path, so
//! this separates that switch from the cost of counting); `lock` attached;
//! `swap` attached. The conditions take turns round by round, in a rotating
//! order, and each ratio is taken within a round.
//!
//! Nothing leaves the two namespaces: the frame's destination is the
//! receiving interface, which has no address and drops it after counting.
//! The receiving namespace has IPv6 off and no addresses, so it sends
//! nothing of its own.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use anyhow::Result;
use netledger::lab::attach_xdp_fd;
use netledger::{Attachment, Bucket, Ledger, LedgerConfig, XdpMode};

use super::{load_ledgers, median, Measurement, Options};
use crate::harness::{allowed_cpus, pin_to, Flow};
use crate::netns::{veth_pair, Ipv6Mode, NetNs, RawSocket};
use crate::EmptyProgram;

const SECTION: &str = "real";
/// The sending and the receiving end of the pair.
const TX: &str = "nlb0";
const RX: &str = "nlb1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    NoProgram,
    Empty,
    Lock,
    Swap,
}

impl Condition {
    const ALL: [Condition; 4] = [
        Condition::NoProgram,
        Condition::Empty,
        Condition::Lock,
        Condition::Swap,
    ];

    fn tag(self) -> &'static str {
        match self {
            Condition::NoProgram => "none",
            Condition::Empty => "empty",
            Condition::Lock => "lock",
            Condition::Swap => "swap",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Condition::NoProgram => "no program",
            Condition::Empty => "empty XDP_PASS program",
            Condition::Lock => "lock attached",
            Condition::Swap => "swap attached",
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

/// Attach `cond`'s program to the receiving end, natively if veth takes it
/// (None for no program; detached when the attachment drops).
fn attach(
    cond: Condition,
    rx: &NetNs,
    empty: &EmptyProgram,
    lock: &Ledger,
    swap: &Ledger,
) -> Result<Option<Attachment>> {
    let attached = match cond {
        Condition::NoProgram => return Ok(None),
        Condition::Empty => rx.try_run(|| attach_xdp_fd(empty.fd(), RX, XdpMode::Auto)),
        Condition::Lock => rx.try_run(|| lock.attach_xdp(RX, XdpMode::Auto)),
        Condition::Swap => rx.try_run(|| swap.attach_xdp(RX, XdpMode::Auto)),
    };
    Ok(Some(attached.map_err(setup_err(
        "entering the receiving namespace",
    ))??))
}

/// Frames the counting program saw so far (None for no ledger).
fn seen(cond: Condition, lock: &Ledger, swap: &Ledger) -> Result<Option<u64>> {
    let ledger = match cond {
        Condition::Lock => lock,
        Condition::Swap => swap,
        _ => return Ok(None),
    };
    Ok(Some(ledger.buckets()?.get(Bucket::Seen).packets))
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
    /// To no program, and to the empty program, within each round.
    ratio: Vec<f64>,
    ratio_empty: Vec<f64>,
    received: u64,
    sent: u64,
    refused: u64,
    seen: u64,
    mode: Option<XdpMode>,
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

    (opts.progress)("real: namespaces, veth pair, programs");
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

    let empty = EmptyProgram::load()?;
    let (lock, swap) = load_ledgers(&LedgerConfig::default())?;

    let mut tallies: Vec<Tally> = Condition::ALL.iter().map(|_| Tally::default()).collect();
    for r in 0..rounds {
        (opts.progress)(&format!(
            "real: round {} of {rounds}: {:.1} s of 64-byte frames per condition (no program, empty, lock, swap)",
            r + 1,
            len.as_secs_f64()
        ));
        let mut this = [None; 4];
        for k in 0..Condition::ALL.len() {
            let i = (k + r) % Condition::ALL.len();
            let cond = Condition::ALL[i];
            let attached = attach(cond, &rx_ns, &empty, &lock, &swap)?;
            let seen0 = seen(cond, &lock, &swap)?;
            let rx0 = rx_packets(&rx_ns)?;
            let (sent, refused, secs) = blast(&sock, &frame, len, cpu)?;
            // Let frames still in the receive ring be counted.
            std::thread::sleep(Duration::from_millis(20));
            let rx1 = rx_packets(&rx_ns)?;
            let t = &mut tallies[i];
            t.mode = attached.as_ref().map(|a| a.mode);
            drop(attached);
            if let (Some(a), Some(b)) = (seen0, seen(cond, &lock, &swap)?) {
                t.seen += b - a;
            }
            let received = rx1.saturating_sub(rx0);
            t.rate.push(received as f64 / secs);
            t.received += received;
            t.sent += sent;
            t.refused += refused;
            this[i] = Some(received as f64 / secs);
        }
        for (t, v) in tallies.iter_mut().zip(this).skip(1) {
            if let (Some(v), Some(none)) = (v, this[0]) {
                t.ratio.push(v / none);
            }
            if let (Some(v), Some(empty)) = (v, this[1]) {
                t.ratio_empty.push(v / empty);
            }
        }
    }
    drop(sock);
    drop(veth);

    let base = median(&tallies[0].rate);
    let base_name = format!("{}, frames/s received", Condition::NoProgram.name());
    let mut out = Vec::new();
    // Ratios to the empty program, after every ratio to no program (which
    // is what targets look up first).
    let mut to_empty = Vec::new();
    for (cond, t) in Condition::ALL.into_iter().zip(tallies) {
        let is_base = cond == Condition::NoProgram;
        let mut tags = vec![
            ("program", cond.tag().to_string()),
            ("metric", "frames/s".to_string()),
        ];
        if let Some(m) = t.mode {
            tags.push(("xdp_mode", m.name().to_string()));
        }
        let seen_note = if matches!(cond, Condition::Lock | Condition::Swap) {
            format!(", the program counted {}", t.seen)
        } else {
            String::new()
        };
        let value = median(&t.rate);
        out.push(Measurement {
            section: SECTION,
            name: format!(
                "{}, frames/s received ({} received of {} sent, {} refused{seen_note})",
                cond.name(),
                t.received,
                t.sent,
                t.refused
            ),
            tags: tags.clone(),
            value,
            unit: "frames/s",
            ratio: (!is_base).then(|| value / base),
            baseline: (!is_base).then(|| base_name.clone()),
            samples: t.rate,
        });
        if !is_base {
            tags[1].1 = "ratio".to_string();
            if cond == Condition::Swap {
                tags.push(("target", "real_swap_vs_none".to_string()));
            }
            if cond != Condition::Empty {
                let mut tags = tags.clone();
                tags.retain(|(k, _)| *k != "target");
                tags.push(("baseline", "empty".to_string()));
                to_empty.push(Measurement {
                    section: SECTION,
                    name: format!(
                        "{} / empty XDP_PASS program, frames/s (per-round ratios)",
                        cond.name()
                    ),
                    tags,
                    value: median(&t.ratio_empty),
                    unit: "x",
                    ratio: None,
                    baseline: None,
                    samples: t.ratio_empty,
                });
            }
            tags.push(("baseline", "none".to_string()));
            out.push(Measurement {
                section: SECTION,
                name: format!("{} / no program, frames/s (per-round ratios)", cond.name()),
                tags,
                value: median(&t.ratio),
                unit: "x",
                ratio: None,
                baseline: None,
                samples: t.ratio,
            });
        }
    }
    out.extend(to_empty);
    Ok(out)
}
