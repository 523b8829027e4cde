//! `netledger demo`: the whole job on a testbed it builds and removes.
//!
//! Two network namespaces joined by a veth pair; the data path is attached
//! to the receiving end. Known frames from several flows (IPv4 and IPv6, TCP
//! and UDP, one VLAN-tagged flow, plus ARP and a truncated frame) are sent
//! from the other end; the ledger is printed and compared with what was sent.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;
use netledger::{Bucket, Count, FlowKey, KeyMode, Ledger, LedgerConfig, XdpMode, L4};
use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket};

use crate::cli::{DemoArgs, Format};

const SRC_MAC: [u8; 6] = [0x02, 0x6e, 0x6c, 0x00, 0x00, 0x02];
const DST_MAC: [u8; 6] = [0x02, 0x6e, 0x6c, 0x00, 0x00, 0x01];

/// One flow of the demo traffic.
struct Flow {
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    tcp: bool,
    sport: u16,
    dport: u16,
    payload: usize,
    /// Frames relative to --packets.
    weight: u32,
}

fn flows() -> Vec<Flow> {
    let v4 = |c, d| IpAddr::V4(Ipv4Addr::new(10, 78, c, d));
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x6e6c, 0, 0, 0, 0, 0, last));
    let flow = |vlan, src, dst, tcp, sport, dport, payload, weight| Flow {
        vlan,
        src,
        dst,
        tcp,
        sport,
        dport,
        payload,
        weight,
    };
    vec![
        flow(None, v4(0, 2), v4(0, 1), false, 40000, 9000, 100, 3),
        flow(None, v4(0, 3), v4(0, 1), false, 40001, 53, 40, 1),
        flow(None, v4(0, 2), v4(0, 1), true, 40002, 443, 1200, 2),
        flow(None, v6(2), v6(1), false, 40003, 9000, 300, 1),
        flow(None, v6(2), v6(1), true, 40004, 80, 700, 2),
        flow(Some(42), v4(42, 2), v4(42, 1), false, 40005, 5000, 80, 1),
    ]
}

impl Flow {
    fn frame(&self, seq: u32) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let payload = vec![0x6e; self.payload];
        let mut out = Vec::new();
        macro_rules! finish {
            ($ip:expr) => {{
                if self.tcp {
                    $ip.tcp(self.sport, self.dport, seq.wrapping_mul(1000), 64240)
                        .ack(1)
                        .psh()
                        .write(&mut out, &payload)
                } else {
                    $ip.udp(self.sport, self.dport).write(&mut out, &payload)
                }
            }};
        }
        // The IP layer over `$l2` (Ethernet, or Ethernet and a VLAN tag).
        macro_rules! over_ip {
            ($l2:expr) => {{
                match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => finish!($l2.ipv4(s.octets(), d.octets(), 64)),
                    (IpAddr::V6(s), IpAddr::V6(d)) => finish!($l2.ipv6(s.octets(), d.octets(), 64)),
                    _ => unreachable!("a flow's addresses share a family"),
                }
            }};
        }
        let res = match self.vlan {
            None => over_ip!(eth),
            Some(v) => over_ip!(eth.single_vlan(v.try_into().expect("valid VLAN id"))),
        };
        res.expect("writing to a Vec cannot fail");
        out
    }

    fn key(&self) -> FlowKey {
        let addr = |ip: IpAddr| netledger::Addr {
            ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        };
        FlowKey {
            src: Some(addr(self.src)),
            dst: Some(addr(self.dst)),
            proto: Some(if self.tcp { 6 } else { 17 }),
            l4: L4::Ports {
                src: self.sport,
                dst: self.dport,
            },
            fragment: false,
            vlan: Some(self.vlan.unwrap_or(0)),
        }
    }
}

/// An ARP request: not IP, so it belongs in non_ip.
fn arp_frame() -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[10, 78, 0, 2, 0, 0, 0, 0, 0, 0, 10, 78, 0, 1]);
    f
}

/// An IPv4 frame cut inside its IP header: malformed.
fn truncated_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0x00, 0x00, 0x54, 0, 0]);
    f
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    netledger::preflight()?;
    let cfg = LedgerConfig {
        key_mode: KeyMode::FiveTuple,
        vlan: true,
        strategy: args.strategy.into(),
        ..Default::default()
    };
    let ledger = Ledger::load(cfg.clone())?;

    let tag = std::process::id() % 100_000;
    let sender = NetNs::create("nl-demo-tx").context("creating the sender namespace")?;
    let counter = NetNs::create("nl-demo-rx").context("creating the counting namespace")?;
    let (tx_if, rx_if) = (format!("nldtx{tag}"), format!("nldrx{tag}"));
    let veth = netns::veth_pair(&tx_if, Some(&sender), &rx_if, Some(&counter))
        .context("creating the veth pair")?;
    // No IPv6 and no offloads: the kernel sends nothing of its own, and
    // every frame sent is one frame on the wire.
    for end in [veth.a(), veth.b()] {
        end.prepare(Ipv6Mode::Off)
            .with_context(|| format!("configuring {}", end.name()))?;
    }
    eprintln!(
        "netledger demo: namespaces {} -> {}, veth {tx_if} -> {rx_if}",
        sender.name(),
        counter.name()
    );

    let attachment = counter
        .run(|| ledger.attach_xdp(&rx_if, XdpMode::Auto))
        .context("attaching to the demo veth")?;
    eprintln!(
        "netledger demo: counting ingress on {rx_if} ({} XDP)",
        attachment.mode
    );

    // The traffic: each flow's frames, interleaved, plus 3 ARP and 2 truncated frames.
    let flows = flows();
    let mut expected: BTreeMap<FlowKey, Count> = BTreeMap::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let rounds = flows.iter().map(|f| f.weight).max().unwrap_or(1) * args.packets;
    for i in 0..rounds {
        for f in &flows {
            if i < f.weight * args.packets {
                let frame = f.frame(i);
                expected.entry(f.key()).or_default().add(Count {
                    packets: 1,
                    bytes: frame.len() as u64,
                });
                frames.push(frame);
            }
        }
    }
    let extras = [
        arp_frame(),
        arp_frame(),
        arp_frame(),
        truncated_frame(),
        truncated_frame(),
    ];
    let mut non_ip = Count::default();
    let mut malformed = Count::default();
    for f in &extras {
        let c = Count {
            packets: 1,
            bytes: f.len() as u64,
        };
        if f[12..14] == [0x08, 0x06] {
            non_ip.add(c);
        } else {
            malformed.add(c);
        }
    }
    frames.extend(extras);

    sender
        .run(|| -> io::Result<()> {
            let sock = RawSocket::open(&tx_if)?;
            for f in &frames {
                sock.send(f)?;
            }
            Ok(())
        })
        .context("sending the demo traffic")?;

    // Detach, let in-flight runs finish, then read the final ledger.
    drop(attachment);
    ledger.wait_for_programs()?;
    let interval = ledger.cut()?;

    {
        let stdout = io::stdout();
        let mut sink =
            netledger_sinks::text_sink(args.format.into(), stdout.lock(), &cfg, Some(usize::MAX));
        sink.interval(&interval)
            .and_then(|()| sink.close())
            .map_err(|e| anyhow::anyhow!(e))
            .context("writing the ledger")?;
    }

    // Verification: every flow, every bucket, exactly. It goes to stdout
    // after a table, to stderr where stdout must stay machine-readable.
    let mut report: Box<dyn Write> = match args.format {
        Format::Table => Box::new(io::stdout()),
        _ => Box::new(io::stderr()),
    };
    let mut ok = true;
    let counted: BTreeMap<FlowKey, Count> = interval.flows.iter().copied().collect();
    writeln!(report, "verification, sent vs counted:")?;
    for (key, sent) in &expected {
        let got = counted.get(key).copied().unwrap_or_default();
        let mark = if got == *sent { "ok" } else { "MISMATCH" };
        ok &= got == *sent;
        writeln!(
            report,
            "  {mark:<8} {key}: sent {} frames / {} bytes, counted {} / {}",
            sent.packets, sent.bytes, got.packets, got.bytes
        )?;
    }
    for (key, got) in &counted {
        if !expected.contains_key(key) {
            ok = false;
            writeln!(
                report,
                "  UNEXPECTED {key}: counted {} / {}",
                got.packets, got.bytes
            )?;
        }
    }
    for (bucket, sent) in [(Bucket::NonIp, non_ip), (Bucket::Malformed, malformed)] {
        let got = interval.buckets.get(bucket);
        let mark = if got == sent { "ok" } else { "MISMATCH" };
        ok &= got == sent;
        writeln!(
            report,
            "  {mark:<8} {}: sent {} frames / {} bytes, counted {} / {}",
            bucket.name(),
            sent.packets,
            sent.bytes,
            got.packets,
            got.bytes
        )?;
    }
    let conserved = interval.buckets.conserved();
    ok &= conserved;
    let total = frames.len();
    writeln!(
        report,
        "verification: {} ({} flows, {total} frames sent, {} seen; seen == sum of the buckets: {})",
        if ok { "EXACT" } else { "FAILED" },
        expected.len(),
        interval.buckets.get(Bucket::Seen).packets,
        if conserved { "yes" } else { "no" }
    )?;
    drop(veth);
    drop(counter);
    drop(sender);
    if !ok {
        bail!("the ledger does not match the traffic sent; rerun with --verbose and report it");
    }
    Ok(ExitCode::SUCCESS)
}
