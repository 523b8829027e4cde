//! The conservation harness: drive a counting program from several pinned
//! writer threads with exact packet counts, cut it from another thread as
//! fast as it goes (or at a pace), keep every record, and compare what was
//! sent with what the cuts returned, per key.
//!
//! Each writer runs `BPF_PROG_TEST_RUN` with an exact `repeat` over K
//! distinct UDP five-tuples ([`Flow`]), one key per call, rotating, until it
//! has sent its budget. Every key has its own frame size, so a record whose
//! bytes are not `packets * size` is torn or holds another key's packets.
//! When the writers are done, one final cut takes what is left. The
//! [`Report`] holds, per key and in total, packets and bytes sent and
//! counted, lost and double-counted packets, records with incoherent bytes,
//! and, for a [`Ledger`], the conservation buckets of every interval
//! (`evict_race`, reroutes, evicted keys).
//!
//! What is counted and how it is cut is a [`Target`]: a [`Ledger`] of either
//! strategy (its cut is [`Ledger::cut`]), or a [`NaiveLedger`], the classic
//! locked hash map reset from userspace, which loses counts.
//!
//! Every XDP test run updates the XDP dispatcher and waits for an RCU grace
//! period (milliseconds), so `repeat` must be large (100,000 or more per
//! call) for the program, not the wait, to dominate.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netledger::lab::types::{nl_flow_key, nl_key_flags};
use netledger::lab::{decode_key, TestRun};
use netledger::{Bucket, Buckets, Count, FlowKey, Ledger, LedgerConfig};

pub use crate::naive::{NaiveLedger, NaiveReset};

/// XDP_PASS: the only verdict a counting program may return.
const XDP_PASS: u32 = 2;

/// One UDP/IPv4 flow the writers send, with its own frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// The whole Ethernet frame, in bytes (at least 42).
    pub len: usize,
}

impl Flow {
    /// The smallest Ethernet + IPv4 + UDP frame.
    pub const MIN_LEN: usize = 14 + 20 + 8;

    /// The `i`-th of a family of distinct flows: 10.0.0.1:(40000 + i) to
    /// 10.1.x.y:9000 (10.1.0.1 for i = 0), frame size `64 + i` (sizes repeat after 1400 flows).
    pub fn nth(i: usize) -> Flow {
        let i16 = (i & 0xffff) as u16;
        Flow {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 1, ((i + 1) >> 8) as u8, (i + 1) as u8),
            sport: 40000u16.wrapping_add(i16),
            dport: 9000,
            len: 64 + i % 1400,
        }
    }

    /// `n` distinct flows: `Flow::nth(0..n)`.
    pub fn family(n: usize) -> Vec<Flow> {
        (0..n).map(Flow::nth).collect()
    }

    /// The frame: Ethernet, IPv4 (no options, checksum set), UDP (no
    /// checksum), zero payload up to `len`.
    pub fn frame(&self) -> Vec<u8> {
        assert!(
            (Self::MIN_LEN..=65535 + 14).contains(&self.len),
            "frame length {} out of range",
            self.len
        );
        let mut f = vec![0u8; self.len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((self.len - 14) as u16).to_be_bytes());
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let sum = ip
            .chunks(2)
            .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let udp = &mut f[34..42];
        udp[0..2].copy_from_slice(&self.sport.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dport.to_be_bytes());
        udp[4..6].copy_from_slice(&((self.len - 34) as u16).to_be_bytes());
        f
    }

    /// The data path's five-tuple key for this flow (whole addresses).
    pub fn raw_key(&self) -> nl_flow_key {
        let mut k = nl_flow_key::default();
        k.src[..4].copy_from_slice(&self.src.octets());
        k.dst[..4].copy_from_slice(&self.dst.octets());
        k.sport = self.sport;
        k.dport = self.dport;
        k.family = 4;
        k.proto = 17;
        k.flags = nl_key_flags::NL_KEY_F_PORTS.0 as u8;
        k
    }

    /// The key a ledger loaded with `cfg` files this flow under. (Prefixes
    /// are not applied to the raw key here: use configurations without them.)
    pub fn key(&self, cfg: &LedgerConfig) -> FlowKey {
        decode_key(&self.raw_key(), cfg)
    }

    pub fn bytes(&self, packets: u64) -> u64 {
        packets * self.len as u64
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} > {}:{} udp, {} B",
            IpAddr::V4(self.src),
            self.sport,
            IpAddr::V4(self.dst),
            self.dport,
            self.len
        )
    }
}

/// What one cut took out of a target.
#[derive(Debug, Clone, Default)]
pub struct CutOut {
    /// Per-key counts taken (several records of one key are fine).
    pub flows: Vec<(FlowKey, Count)>,
    /// The interval's conservation buckets, if the target keeps them.
    pub buckets: Option<Buckets>,
}

/// Something the harness can drive and cut.
pub trait Target: Sync {
    /// For reports.
    fn name(&self) -> String;
    /// The key under which the target counts `flow`.
    fn key_of(&self, flow: &Flow) -> FlowKey;
    /// Run the program on `frame` exactly `repeat` times; the mean ns per run.
    /// An error means the number of runs is unknown: the harness stops.
    fn drive(&self, frame: &[u8], repeat: u32) -> Result<u32>;
    /// Take everything counted since the previous cut, while writers run.
    fn cut(&self) -> Result<CutOut>;
    /// Take what is left once every writer has returned (by default, a cut).
    fn finish(&self) -> Result<CutOut> {
        self.cut()
    }
    /// Target-specific figures for the report (name, value), read at the end.
    fn notes(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(Vec::new())
    }
}

/// The mean ns per run of a test run that passed the frame; an error for
/// any other verdict.
fn verdict(r: TestRun) -> Result<u32> {
    if r.retval != XDP_PASS {
        bail!("the program returned {}, not XDP_PASS", r.retval);
    }
    Ok(r.duration_ns)
}

impl Target for Ledger {
    fn name(&self) -> String {
        let cfg = self.config();
        format!(
            "ledger, strategy {}, idle_cuts {}",
            cfg.strategy, cfg.idle_cuts
        )
    }

    fn key_of(&self, flow: &Flow) -> FlowKey {
        flow.key(self.config())
    }

    fn drive(&self, frame: &[u8], repeat: u32) -> Result<u32> {
        verdict(self.test_run(frame, repeat)?)
    }

    fn cut(&self) -> Result<CutOut> {
        let i = Ledger::cut(self)?;
        Ok(CutOut {
            flows: i.flows,
            buckets: Some(i.buckets),
        })
    }
}

impl Target for NaiveLedger {
    fn name(&self) -> String {
        format!("naive locked hash, {}", self.method.name())
    }

    fn key_of(&self, flow: &Flow) -> FlowKey {
        flow.key(self.config())
    }

    fn drive(&self, frame: &[u8], repeat: u32) -> Result<u32> {
        verdict(self.test_run(frame, repeat)?)
    }

    fn cut(&self) -> Result<CutOut> {
        Ok(CutOut {
            flows: self.cut_with(self.method)?,
            buckets: None,
        })
    }

    fn notes(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(vec![("missed in the program", self.missed()?)])
    }
}

/// How often the cutter cuts while writers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Back to back, as fast as cuts go.
    Continuous,
    /// One cut per period (a cut longer than the period delays the next).
    Every(Duration),
    /// No cuts until the final one.
    Never,
}

/// How a run is set up. Build with [`Harness::new`], adjust fields, [`Harness::run`].
#[derive(Debug, Clone)]
pub struct Harness {
    /// The flows; their keys under the target must be distinct.
    pub flows: Vec<Flow>,
    /// One writer per entry, pinned to that CPU.
    pub writer_cpus: Vec<usize>,
    /// Packets each writer sends in total (exactly, unless the deadline hits).
    pub packets_per_writer: u64,
    /// Runs per test_run call (the last call of a writer may be shorter).
    pub repeat: u32,
    /// Writer w starts on flow `w * K / N` instead of flow 0 (then each
    /// writer's calls rotate over every flow in order).
    pub stagger: bool,
    pub pace: Pace,
    /// Pin the cutter too (None: let the scheduler place it).
    pub cutter_cpu: Option<usize>,
    /// Writers stop starting calls after this long; the report then says
    /// `completed: false` (its figures stay exact for what was sent).
    pub deadline: Duration,
}

impl Harness {
    /// `keys` flows of [`Flow::family`], one writer per CPU, repeat
    /// 500,000, continuous cuts, staggered writers, a 120 s deadline.
    pub fn new(keys: usize, writer_cpus: &[usize], packets_per_writer: u64) -> Harness {
        Harness {
            flows: Flow::family(keys),
            writer_cpus: writer_cpus.to_vec(),
            packets_per_writer,
            repeat: 500_000,
            stagger: true,
            pace: Pace::Continuous,
            cutter_cpu: None,
            deadline: Duration::from_secs(120),
        }
    }

    /// Drive `target` and cut it, then tally every record against what was sent.
    pub fn run<T: Target + ?Sized>(&self, target: &T) -> Result<Report> {
        let k = self.flows.len();
        let invalid = |what: &str, value: String, expected: &str| {
            anyhow!("invalid {what}: {value} (expected {expected})")
        };
        if k == 0 || self.writer_cpus.is_empty() || self.repeat == 0 {
            return Err(invalid(
                "harness",
                format!(
                    "{k} flows, {} writers, repeat {}",
                    self.writer_cpus.len(),
                    self.repeat
                ),
                "at least one flow and one writer, repeat > 0",
            ));
        }
        let keys: Vec<FlowKey> = self.flows.iter().map(|f| target.key_of(f)).collect();
        let mut index: HashMap<FlowKey, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if index.insert(*key, i).is_some() {
                return Err(invalid(
                    "harness flows",
                    key.to_string(),
                    "flows with distinct keys",
                ));
            }
        }
        let frames: Vec<Vec<u8>> = self.flows.iter().map(Flow::frame).collect();

        // Whatever the target counted before this run is not ours.
        let pre = target.cut()?;
        let mut pre_drained = Count::default();
        for (_, c) in &pre.flows {
            pre_drained.add(*c);
        }

        let n = self.writer_cpus.len();
        let stop = AtomicBool::new(false);
        let writers_done = AtomicUsize::new(0);
        let first_error = FirstError::default();
        let fail = |e: anyhow::Error| {
            first_error.set(e);
            stop.store(true, Ordering::SeqCst);
        };
        let start = Instant::now();

        let (writers, cuts, writers_took) = thread::scope(|s| {
            let handles: Vec<_> = self
                .writer_cpus
                .iter()
                .enumerate()
                .map(|(w, &cpu)| {
                    let (stop, writers_done, frames, fail) = (&stop, &writers_done, &frames, &fail);
                    s.spawn(move || {
                        // Counts the writer as done even if it panics.
                        let _done = Done(writers_done);
                        let mut out = WriterOut {
                            cpu,
                            sent: vec![Count::default(); k],
                            ..Default::default()
                        };
                        if let Err(e) =
                            pin_to(cpu).context(format!("pinning writer {w} to CPU {cpu}"))
                        {
                            fail(e);
                            return out;
                        }
                        let mut flow = if self.stagger { w * k / n } else { 0 };
                        let mut left = self.packets_per_writer;
                        while left > 0 {
                            if stop.load(Ordering::Relaxed) || start.elapsed() >= self.deadline {
                                return out;
                            }
                            let r = left.min(u64::from(self.repeat)) as u32;
                            match target.drive(&frames[flow], r) {
                                Ok(ns) => {
                                    out.sent[flow].packets += u64::from(r);
                                    out.sent[flow].bytes += self.flows[flow].bytes(u64::from(r));
                                    out.ns_total += f64::from(ns) * f64::from(r);
                                    out.calls += 1;
                                    left -= u64::from(r);
                                }
                                Err(e) => {
                                    fail(e);
                                    return out;
                                }
                            }
                            flow = (flow + 1) % k;
                        }
                        out.completed = true;
                        out.took = start.elapsed();
                        out
                    })
                })
                .collect();

            let cutter = s.spawn(|| {
                // Stops the writers if the cutter fails or panics.
                let guard = StopOnDrop(&stop);
                let mut cuts: Vec<TimedCut> = Vec::new();
                if let Some(cpu) = self.cutter_cpu {
                    if let Err(e) = pin_to(cpu).context(format!("pinning the cutter to CPU {cpu}"))
                    {
                        fail(e);
                        return cuts;
                    }
                }
                let running =
                    || writers_done.load(Ordering::SeqCst) < n && !stop.load(Ordering::SeqCst);
                let mut next = Instant::now();
                while running() {
                    match self.pace {
                        Pace::Never => {
                            thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        Pace::Every(period) => {
                            let now = Instant::now();
                            if now < next {
                                thread::sleep((next - now).min(Duration::from_millis(5)));
                                continue;
                            }
                            next += period;
                        }
                        Pace::Continuous => {}
                    }
                    let t0 = Instant::now();
                    match target.cut() {
                        Ok(out) => cuts.push(TimedCut {
                            at: t0 - start,
                            took: t0.elapsed(),
                            last: false,
                            flows: out.flows,
                            buckets: out.buckets,
                        }),
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    }
                }
                drop(guard);
                cuts
            });

            let mut writers = Vec::new();
            let mut panic = None;
            for h in handles {
                match h.join() {
                    Ok(w) => writers.push(w),
                    Err(p) => panic = Some(p),
                }
            }
            let writers_took = start.elapsed();
            let cuts = cutter.join();
            if let Some(p) = panic {
                std::panic::resume_unwind(p);
            }
            match cuts {
                Ok(c) => (writers, c, writers_took),
                Err(p) => std::panic::resume_unwind(p),
            }
        });
        first_error.into_result()?;

        // Every writer has returned: nothing runs the program any more.
        let mut cuts = cuts;
        let t0 = Instant::now();
        let last = target.finish()?;
        cuts.push(TimedCut {
            at: t0 - start,
            took: t0.elapsed(),
            last: true,
            flows: last.flows,
            buckets: last.buckets,
        });
        let total = start.elapsed();
        let notes = target.notes()?;

        Ok(Report::tally(
            target.name(),
            &self.flows,
            &keys,
            &index,
            writers,
            cuts,
            pre_drained,
            writers_took,
            total,
            notes,
        ))
    }
}

/// Counts a writer as finished when dropped (returned or panicked).
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The first error of several threads: the others see that one failed and
/// stop; the caller gets that error once they are joined.
#[derive(Debug, Default)]
pub struct FirstError {
    failed: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
}

impl FirstError {
    /// Keep `e` unless an error was kept already.
    pub fn set(&self, e: anyhow::Error) {
        self.failed.store(true, Ordering::SeqCst);
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    /// Some thread failed.
    pub fn is_set(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The first error, if any (once every thread is done).
    pub fn into_result(self) -> Result<()> {
        match self.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Sets the stop flag when dropped: a thread that fails or panics while it
/// holds one stops the others.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What one writer did.
#[derive(Debug, Clone, Default)]
pub struct WriterOut {
    pub cpu: usize,
    /// Per flow (index into the harness's flows).
    pub sent: Vec<Count>,
    pub calls: u64,
    /// Sum over calls of mean ns per run times runs.
    ns_total: f64,
    /// Sent its whole budget.
    pub completed: bool,
    /// When it finished, from the start of the run.
    pub took: Duration,
}

impl WriterOut {
    pub fn packets(&self) -> u64 {
        self.sent.iter().map(|c| c.packets).sum()
    }
}

/// One cut, as the cutter took it.
#[derive(Debug, Clone)]
pub struct TimedCut {
    /// When it started, from the start of the run.
    pub at: Duration,
    /// How long the cut took.
    pub took: Duration,
    /// The final cut, after the writers.
    pub last: bool,
    pub flows: Vec<(FlowKey, Count)>,
    pub buckets: Option<Buckets>,
}

/// One flow: sent versus counted.
#[derive(Debug, Clone)]
pub struct KeyTally {
    pub flow: Flow,
    pub key: FlowKey,
    pub sent: Count,
    /// The sum of every record of this key.
    pub counted: Count,
    /// Records of this key, and those whose bytes were not packets * size.
    pub records: u64,
    pub incoherent: u64,
}

impl KeyTally {
    /// Packets sent but never counted.
    pub fn lost(&self) -> u64 {
        self.sent.packets.saturating_sub(self.counted.packets)
    }

    /// Packets counted more than once (or counted here but sent to another key).
    pub fn duplicated(&self) -> u64 {
        self.counted.packets.saturating_sub(self.sent.packets)
    }

    pub fn exact(&self) -> bool {
        self.sent == self.counted && self.incoherent == 0
    }
}

/// Everything a run showed.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub per_key: Vec<KeyTally>,
    pub writers: Vec<WriterOut>,
    /// Every cut, the final one last.
    pub cuts: Vec<TimedCut>,
    /// Records of keys the writers never sent (summed per key).
    pub foreign: Vec<(FlowKey, Count)>,
    /// What the target held before the run (taken and ignored).
    pub pre_drained: Count,
    /// From the start until the last writer returned, and until the final cut.
    pub writers_took: Duration,
    pub total: Duration,
    /// The buckets of every interval added up (targets that keep them).
    pub buckets: Option<Buckets>,
    /// Intervals whose buckets were not conserved.
    pub unconserved_intervals: u64,
    /// Intervals whose `counted` bucket differs from the sum of their
    /// records: zero only for a cut that is one snapshot across keys and
    /// buckets (swap); the lock exchange reads its buckets after the flows.
    pub skewed_intervals: u64,
    pub notes: Vec<(&'static str, u64)>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn tally(
        target: String,
        flows: &[Flow],
        keys: &[FlowKey],
        index: &HashMap<FlowKey, usize>,
        writers: Vec<WriterOut>,
        cuts: Vec<TimedCut>,
        pre_drained: Count,
        writers_took: Duration,
        total: Duration,
        notes: Vec<(&'static str, u64)>,
    ) -> Report {
        let mut per_key: Vec<KeyTally> = flows
            .iter()
            .zip(keys)
            .map(|(f, k)| KeyTally {
                flow: *f,
                key: *k,
                sent: Count::default(),
                counted: Count::default(),
                records: 0,
                incoherent: 0,
            })
            .collect();
        for w in &writers {
            for (t, c) in per_key.iter_mut().zip(&w.sent) {
                t.sent.add(*c);
            }
        }
        let mut foreign: HashMap<FlowKey, Count> = HashMap::new();
        let mut buckets: Option<Buckets> = None;
        let (mut unconserved, mut skewed) = (0, 0);
        for cut in &cuts {
            let mut in_records = Count::default();
            for (key, c) in &cut.flows {
                in_records.add(*c);
                match index.get(key) {
                    Some(&i) => {
                        let t = &mut per_key[i];
                        t.counted.add(*c);
                        t.records += 1;
                        if c.bytes != t.flow.bytes(c.packets) {
                            t.incoherent += 1;
                        }
                    }
                    None => foreign.entry(*key).or_default().add(*c),
                }
            }
            if let Some(b) = &cut.buckets {
                if !b.conserved() {
                    unconserved += 1;
                }
                if b.get(Bucket::Counted) != in_records {
                    skewed += 1;
                }
                let sum = buckets.get_or_insert_with(Buckets::default);
                for bucket in Bucket::ALL {
                    sum.add_to(bucket, b.get(bucket));
                }
                sum.reroutes += b.reroutes;
                sum.evicted += b.evicted;
            }
        }
        let mut foreign: Vec<(FlowKey, Count)> = foreign.into_iter().collect();
        foreign.sort_by_key(|(k, _)| *k);
        Report {
            target,
            per_key,
            writers,
            cuts,
            foreign,
            pre_drained,
            writers_took,
            total,
            buckets,
            unconserved_intervals: unconserved,
            skewed_intervals: skewed,
            notes,
        }
    }

    /// Packets and bytes the writers sent.
    pub fn sent(&self) -> Count {
        let mut c = Count::default();
        for t in &self.per_key {
            c.add(t.sent);
        }
        c
    }

    /// Packets and bytes the records attribute to the flows sent.
    pub fn counted(&self) -> Count {
        let mut c = Count::default();
        for t in &self.per_key {
            c.add(t.counted);
        }
        c
    }

    /// Packets lost, summed over keys.
    pub fn lost(&self) -> u64 {
        self.per_key.iter().map(KeyTally::lost).sum()
    }

    /// Packets counted twice (or under the wrong key), summed over keys,
    /// plus packets in records of keys never sent.
    pub fn duplicated(&self) -> u64 {
        self.per_key.iter().map(KeyTally::duplicated).sum::<u64>() + self.foreign_packets()
    }

    pub fn foreign_packets(&self) -> u64 {
        self.foreign.iter().map(|(_, c)| c.packets).sum()
    }

    /// `lost / sent`, in packets.
    pub fn loss_rate(&self) -> f64 {
        let sent = self.sent().packets;
        if sent == 0 {
            0.0
        } else {
            self.lost() as f64 / sent as f64
        }
    }

    pub fn records(&self) -> u64 {
        self.per_key.iter().map(|t| t.records).sum()
    }

    pub fn incoherent_records(&self) -> u64 {
        self.per_key.iter().map(|t| t.incoherent).sum()
    }

    /// Cuts taken while writers ran (the final cut not included).
    pub fn cuts_during(&self) -> usize {
        self.cuts.iter().filter(|c| !c.last).count()
    }

    /// Mean and longest cut while writers ran.
    pub fn cut_times(&self) -> (Duration, Duration) {
        let during: Vec<Duration> = self
            .cuts
            .iter()
            .filter(|c| !c.last)
            .map(|c| c.took)
            .collect();
        if during.is_empty() {
            return (Duration::ZERO, Duration::ZERO);
        }
        let sum: Duration = during.iter().sum();
        (
            sum / during.len() as u32,
            during.iter().copied().max().unwrap_or_default(),
        )
    }

    /// Every writer sent its whole budget.
    pub fn completed(&self) -> bool {
        self.writers.iter().all(|w| w.completed)
    }

    /// Mean ns per packet the kernel measured, over every call of every writer.
    pub fn ns_per_packet(&self) -> f64 {
        let packets: u64 = self.writers.iter().map(WriterOut::packets).sum();
        let ns: f64 = self.writers.iter().map(|w| w.ns_total).sum();
        if packets == 0 {
            0.0
        } else {
            ns / packets as f64
        }
    }

    /// The summed buckets' `evict_race` packets (0 without buckets).
    pub fn evict_race(&self) -> u64 {
        self.buckets.map_or(0, |b| b.get(Bucket::EvictRace).packets)
    }

    /// Every key exact (packets and bytes), every record coherent, nothing
    /// foreign, every interval conserved, and the buckets' `seen` equal to
    /// what was sent.
    pub fn exact(&self) -> bool {
        self.per_key.iter().all(KeyTally::exact)
            && self.foreign.is_empty()
            && self.unconserved_intervals == 0
            && match &self.buckets {
                Some(b) => b.get(Bucket::Seen) == self.sent(),
                None => true,
            }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self.sent();
        let counted = self.counted();
        let (mean, max) = self.cut_times();
        writeln!(f, "target: {}", self.target)?;
        writeln!(
            f,
            "  writers: {} on CPUs {:?}, {} calls, {:.1} ns/packet (kernel), {} in {:.2} s{}",
            self.writers.len(),
            self.writers.iter().map(|w| w.cpu).collect::<Vec<_>>(),
            self.writers.iter().map(|w| w.calls).sum::<u64>(),
            self.ns_per_packet(),
            if self.completed() {
                "done"
            } else {
                "STOPPED EARLY"
            },
            self.writers_took.as_secs_f64(),
            if self.pre_drained.is_zero() {
                String::new()
            } else {
                format!(" (drained {:?} from before)", self.pre_drained)
            },
        )?;
        writeln!(
            f,
            "  cuts: {} while writing ({:.0}/s, mean {:.3} ms, max {:.3} ms) + 1 final; {} records; total {:.2} s",
            self.cuts_during(),
            self.cuts_during() as f64 / self.writers_took.as_secs_f64().max(1e-9),
            mean.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            self.records(),
            self.total.as_secs_f64(),
        )?;
        writeln!(
            f,
            "  sent {} packets / {} bytes; counted {} / {}; lost {} ({:.4}%), duplicated {}, foreign {}, incoherent records {}",
            sent.packets,
            sent.bytes,
            counted.packets,
            counted.bytes,
            self.lost(),
            self.loss_rate() * 100.0,
            self.duplicated(),
            self.foreign_packets(),
            self.incoherent_records(),
        )?;
        if let Some(b) = &self.buckets {
            let parts: Vec<String> = Bucket::ALL
                .iter()
                .map(|&k| format!("{} {}", k.name(), b.get(k).packets))
                .collect();
            writeln!(
                f,
                "  buckets (packets, all intervals): {}; reroutes {}, evicted {}; unconserved intervals {}, skewed intervals {}",
                parts.join(", "),
                b.reroutes,
                b.evicted,
                self.unconserved_intervals,
                self.skewed_intervals,
            )?;
        }
        for (name, v) in &self.notes {
            writeln!(f, "  {name}: {v}")?;
        }
        for t in &self.per_key {
            writeln!(
                f,
                "  {:<48} sent {:>10} counted {:>10} lost {:>9} dup {:>6} records {:>6} incoherent {}",
                t.flow.to_string(),
                t.sent.packets,
                t.counted.packets,
                t.lost(),
                t.duplicated(),
                t.records,
                t.incoherent,
            )?;
        }
        for (k, c) in &self.foreign {
            writeln!(
                f,
                "  foreign key {k}: {} packets, {} bytes",
                c.packets, c.bytes
            )?;
        }
        Ok(())
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; the kernel fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Pin the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: as above; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_what_they_say() {
        for i in [0, 1, 7, 300] {
            let flow = Flow::nth(i);
            let f = flow.frame();
            assert_eq!(f.len(), 64 + i);
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            // The IPv4 header checksums to zero.
            let sum = f[14..34]
                .chunks(2)
                .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
            let sum = (sum & 0xffff) + (sum >> 16);
            assert_eq!(sum, 0xffff);
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
            assert_eq!(u16::from_be_bytes([f[38], f[39]]) as usize, f.len() - 34);
            assert_eq!(u16::from_be_bytes([f[34], f[35]]), flow.sport);
        }
    }

    #[test]
    fn family_keys_are_distinct() {
        let cfg = LedgerConfig::default();
        let keys: std::collections::HashSet<FlowKey> =
            Flow::family(2000).iter().map(|f| f.key(&cfg)).collect();
        assert_eq!(keys.len(), 2000);
    }
}
