//! The view model: what the intervals add up to since the view started.
//!
//! Every [`Interval`] is one interface and direction (a [`Stream`]) between
//! two cuts. Per key the model keeps the cumulative count since it started,
//! the count of the newest interval, and the sums of three sliding windows
//! of 2, 10 and 40 seconds (like iftop) kept up to date interval by interval.
//! Per stream it keeps the cumulative buckets and the rate of every recent
//! interval for the sparkline.
//!
//! Window rule: an average is taken over whole intervals, using their real
//! start and end. The newest interval is always in every window; an older
//! one is in a window of length W while its midpoint is less than W before
//! the newest interval's end. With 1 s cuts the 2 s average is therefore
//! exactly the last two intervals, even when a cut is a few milliseconds
//! late, and with 5 s cuts it is the last interval alone. The average is
//! the window's count divided by the sum of its intervals' durations, so
//! before 40 s of data the 40 s average is the average of what there is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use netledger::{Bucket, Buckets, Count, Direction, FlowKey, Interval};

/// The averaging windows, shortest first.
pub const WINDOWS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(40),
];

/// How many interval rates a stream keeps for its sparkline: more than any
/// terminal is wide.
const SPARK_POINTS: usize = 512;

/// Where an interval was counted: an interface and a direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stream {
    /// The interface.
    pub iface: String,
    /// The direction.
    pub dir: Direction,
}

impl Stream {
    /// The stream an interval belongs to.
    pub fn of(iv: &Interval) -> Stream {
        Stream {
            iface: iv.iface.clone(),
            dir: iv.dir,
        }
    }
}

/// A rate: bits and packets per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Bits per second (bytes × 8; L2 length as counted).
    pub bits: f64,
    /// Packets per second.
    pub packets: f64,
}

impl Rate {
    /// `c` spread over `d`; zero over an empty duration.
    pub fn of(c: Count, d: Duration) -> Rate {
        let secs = d.as_secs_f64();
        if secs <= 0.0 {
            return Rate::default();
        }
        Rate {
            bits: c.bytes as f64 * 8.0 / secs,
            packets: c.packets as f64 / secs,
        }
    }
}

/// One key's figures in one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row's identity for the life of the model: the same stream and
    /// key always have the same id, and no other row has it.
    pub id: u64,
    /// Where it was counted.
    pub stream: Stream,
    /// The key.
    pub key: FlowKey,
    /// Over the stream's newest interval (zero if the key had no traffic in
    /// it).
    pub last: Rate,
    /// Over the windows of [`WINDOWS`]: 2 s, 10 s, 40 s.
    pub avg: [Rate; 3],
    /// Exact packets and bytes since the view started.
    pub total: Count,
    /// `total.bytes` as a fraction of every flow's bytes in the stream since
    /// the view started (0 to 1).
    pub share: f64,
}

/// The conservation check of a set of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// `seen == counted + non_ip + malformed + map_full + evict_race`, in
    /// packets and in bytes.
    Exact,
    /// `seen - (sum of the parts)`: not conserved.
    Off {
        /// Packets seen minus packets in the parts.
        packets: i128,
        /// Bytes seen minus bytes in the parts.
        bytes: i128,
    },
}

impl Identity {
    /// Check `b`.
    pub fn of(b: &Buckets) -> Identity {
        let seen = b.get(Bucket::Seen);
        let (mut p, mut y) = (0i128, 0i128);
        for part in Bucket::PARTS {
            p += i128::from(b.get(part).packets);
            y += i128::from(b.get(part).bytes);
        }
        let packets = i128::from(seen.packets) - p;
        let bytes = i128::from(seen.bytes) - y;
        if packets == 0 && bytes == 0 {
            Identity::Exact
        } else {
            Identity::Off { packets, bytes }
        }
    }
}

/// A direction's totals over every interface counted in it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirTotals {
    /// The direction.
    pub dir: Direction,
    /// The buckets since the view started.
    pub buckets: Buckets,
    /// Their check.
    pub identity: Identity,
    /// Frames seen per second over each stream's newest interval, added up.
    pub rate: Rate,
    /// Every flow's packets and bytes since the view started.
    pub flows: Count,
}

/// A stream's line in the footer.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTotals {
    /// The stream.
    pub stream: Stream,
    /// Frames seen per second over its newest interval.
    pub rate: Rate,
    /// Bytes seen per second of each interval, oldest first (the sparkline).
    pub history: Vec<u64>,
    /// Intervals received.
    pub intervals: u64,
    /// Intervals missing from the sequence numbers received (a gap means
    /// the totals lack them).
    pub missed: u64,
    /// The newest interval's length.
    pub length: Duration,
}

/// Everything the screen shows, computed at one moment: the view draws only
/// from this, so a paused view keeps an old sheet while the model goes on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sheet {
    /// One row per key with traffic within the 40 s window, per stream, in
    /// no particular order.
    pub rows: Vec<Row>,
    /// Per direction, in then out.
    pub dirs: Vec<DirTotals>,
    /// Per stream, by interface then direction.
    pub streams: Vec<StreamTotals>,
    /// Intervals received in all.
    pub intervals: u64,
    /// The earliest start of an interval received: what "since start" means.
    pub since: Option<SystemTime>,
    /// The latest end of an interval received.
    pub until: Option<SystemTime>,
}

impl Sheet {
    /// No interval has arrived yet.
    pub fn is_waiting(&self) -> bool {
        self.intervals == 0
    }
}

/// One interval as the windows need it: counts by key id.
#[derive(Debug)]
struct Past {
    start: SystemTime,
    end: SystemTime,
    flows: Vec<(u32, Count)>,
}

impl Past {
    fn length(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// The middle of the interval.
    fn midpoint(&self) -> SystemTime {
        self.start + self.length() / 2
    }
}

/// A sliding window: the intervals from `first` (an absolute index) to the
/// newest, their total length, and their sums by key id.
#[derive(Debug, Default)]
struct Window {
    first: u64,
    length: Duration,
    sums: Vec<Count>,
}

/// A key id not in the 40 s window.
const INACTIVE: u32 = u32::MAX;

/// What the model keeps per stream. Keys are interned: one hash lookup per
/// record, then plain vectors indexed by key id.
#[derive(Debug, Default)]
struct Series {
    /// The stream's number in the model, part of its rows' ids.
    number: u32,
    /// Recent intervals, oldest first; `history[0]` has absolute index `base`.
    history: VecDeque<Past>,
    base: u64,
    windows: [Window; 3],
    ids: HashMap<FlowKey, u32>,
    keys: Vec<FlowKey>,
    /// Per key id since the view started.
    totals: Vec<Count>,
    /// Per key id: its count in interval `last_at[id]`.
    last: Vec<Count>,
    last_at: Vec<u64>,
    /// The ids with traffic in the 40 s window, and each id's place in it.
    active: Vec<u32>,
    place: Vec<u32>,
    newest: u64,
    last_length: Duration,
    last_seen: Count,
    flows: Count,
    buckets: Buckets,
    spark: VecDeque<u64>,
    intervals: u64,
    last_seq: Option<u64>,
    missed: u64,
}

impl Series {
    fn intern(&mut self, key: FlowKey) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        // u32::MAX is INACTIVE; four billion keys in one view is beyond any
        // flow map.
        let id = u32::try_from(self.keys.len()).unwrap_or(INACTIVE - 1);
        self.ids.insert(key, id);
        self.keys.push(key);
        self.totals.push(Count::default());
        self.last.push(Count::default());
        self.last_at.push(u64::MAX);
        self.place.push(INACTIVE);
        for w in &mut self.windows {
            w.sums.push(Count::default());
        }
        id
    }

    fn activate(&mut self, id: u32) {
        let i = id as usize;
        if self.place[i] == INACTIVE {
            self.place[i] = self.active.len() as u32;
            self.active.push(id);
        }
    }

    fn deactivate(&mut self, id: u32) {
        let at = self.place[id as usize];
        if at == INACTIVE {
            return;
        }
        self.active.swap_remove(at as usize);
        if let Some(&moved) = self.active.get(at as usize) {
            self.place[moved as usize] = at;
        }
        self.place[id as usize] = INACTIVE;
    }

    fn push(&mut self, iv: Interval) {
        let length = iv.duration();
        let seen = iv.buckets.get(Bucket::Seen);
        // Sequence numbers count cuts: a jump means intervals this view
        // never received. 0 marks an unnumbered cut (a reset's).
        if iv.seq != 0 {
            if let Some(prev) = self.last_seq {
                self.missed += iv.seq.saturating_sub(prev + 1);
            }
            self.last_seq = Some(iv.seq);
        }
        self.intervals += 1;
        self.buckets.add(&iv.buckets);
        self.last_length = length;
        self.last_seen = seen;
        let secs = length.as_secs_f64();
        self.spark.push_back(if secs > 0.0 {
            (seen.bytes as f64 / secs).round() as u64
        } else {
            0
        });
        if self.spark.len() > SPARK_POINTS {
            self.spark.pop_front();
        }

        let index = self.base + self.history.len() as u64;
        self.newest = index;
        let mut flows = Vec::with_capacity(iv.flows.len());
        for (k, c) in iv.flows {
            let id = self.intern(k);
            let i = id as usize;
            self.totals[i].add(c);
            self.flows.add(c);
            if self.last_at[i] == index {
                self.last[i].add(c);
            } else {
                self.last[i] = c;
                self.last_at[i] = index;
            }
            for w in &mut self.windows {
                w.sums[i].add(c);
            }
            self.activate(id);
            flows.push((id, c));
        }
        for w in &mut self.windows {
            w.length += length;
        }
        let end = iv.end;
        self.history.push_back(Past {
            start: iv.start,
            end,
            flows,
        });
        for (n, span) in WINDOWS.iter().enumerate() {
            let from = end.checked_sub(*span);
            loop {
                let w = &mut self.windows[n];
                if w.first >= index {
                    break;
                }
                let Some(old) = self.history.get((w.first - self.base) as usize) else {
                    break;
                };
                if from.is_none_or(|from| old.midpoint() > from) {
                    break;
                }
                w.length = w.length.saturating_sub(old.length());
                w.first += 1;
                let mut gone = Vec::new();
                for (id, c) in &old.flows {
                    let sum = &mut w.sums[*id as usize];
                    *sum = sum.since(*c);
                    if sum.is_zero() {
                        gone.push(*id);
                    }
                }
                // The 40 s window decides which keys have rows.
                if n == WINDOWS.len() - 1 {
                    for id in gone {
                        self.deactivate(id);
                    }
                }
            }
        }
        // The longest window starts earliest: nothing before it is needed.
        let keep_from = self.windows.iter().map(|w| w.first).min().unwrap_or(index);
        while self.base < keep_from && !self.history.is_empty() {
            self.history.pop_front();
            self.base += 1;
        }
    }
}

/// The view model: fed every interval, asked for a [`Sheet`] when the
/// screen is drawn.
#[derive(Debug, Default)]
pub struct Model {
    series: BTreeMap<Stream, Series>,
    intervals: u64,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl Model {
    /// A model of nothing yet.
    pub fn new() -> Model {
        Model::default()
    }

    /// Add one interval of one stream. Intervals of a stream must come in
    /// the order they were cut; streams may interleave freely.
    pub fn push(&mut self, iv: Interval) {
        self.intervals += 1;
        self.since = Some(self.since.map_or(iv.start, |s| s.min(iv.start)));
        self.until = Some(self.until.map_or(iv.end, |u| u.max(iv.end)));
        let number = self.series.len() as u32;
        self.series
            .entry(Stream::of(&iv))
            .or_insert_with(|| Series {
                number,
                ..Series::default()
            })
            .push(iv);
    }

    /// Intervals received.
    pub fn intervals(&self) -> u64 {
        self.intervals
    }

    /// The streams seen so far, by interface then direction.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.series.keys()
    }

    /// The figures as they stand.
    pub fn sheet(&self) -> Sheet {
        let mut rows = Vec::new();
        let mut streams = Vec::new();
        let mut dirs: Vec<DirTotals> = Vec::new();
        for (stream, s) in &self.series {
            let [w2, w10, w40] = &s.windows;
            rows.reserve(s.active.len());
            for &id in &s.active {
                let i = id as usize;
                let total = s.totals[i];
                let last = if s.last_at[i] == s.newest {
                    s.last[i]
                } else {
                    Count::default()
                };
                rows.push(Row {
                    id: u64::from(s.number) << 32 | u64::from(id),
                    stream: stream.clone(),
                    key: s.keys[i],
                    last: Rate::of(last, s.last_length),
                    avg: [
                        Rate::of(w2.sums[i], w2.length),
                        Rate::of(w10.sums[i], w10.length),
                        Rate::of(w40.sums[i], w40.length),
                    ],
                    total,
                    share: if s.flows.bytes == 0 {
                        0.0
                    } else {
                        total.bytes as f64 / s.flows.bytes as f64
                    },
                });
            }
            let rate = Rate::of(s.last_seen, s.last_length);
            streams.push(StreamTotals {
                stream: stream.clone(),
                rate,
                history: s.spark.iter().copied().collect(),
                intervals: s.intervals,
                missed: s.missed,
                length: s.last_length,
            });
            let d = match dirs.iter_mut().position(|d| d.dir == stream.dir) {
                Some(at) => &mut dirs[at],
                None => {
                    dirs.push(DirTotals {
                        dir: stream.dir,
                        buckets: Buckets::default(),
                        identity: Identity::Exact,
                        rate: Rate::default(),
                        flows: Count::default(),
                    });
                    let last = dirs.len() - 1;
                    &mut dirs[last]
                }
            };
            d.buckets.add(&s.buckets);
            d.rate.bits += rate.bits;
            d.rate.packets += rate.packets;
            d.flows.add(s.flows);
        }
        for d in &mut dirs {
            d.identity = Identity::of(&d.buckets);
        }
        dirs.sort_by_key(|d| d.dir);
        Sheet {
            rows,
            dirs,
            streams,
            intervals: self.intervals,
            since: self.since,
            until: self.until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netledger::{Addr, L4};
    use std::time::UNIX_EPOCH;

    fn key(n: u8) -> FlowKey {
        FlowKey {
            src: Some(Addr {
                ip: [10, 0, 0, n].into(),
                prefix: 32,
            }),
            dst: Some(Addr {
                ip: [10, 0, 0, 100].into(),
                prefix: 32,
            }),
            proto: Some(17),
            l4: L4::Ports { src: 1000, dst: 53 },
            fragment: false,
            vlan: None,
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_640_400_000 + ms)
    }

    fn iv(from_ms: u64, to_ms: u64, seq: u64, flows: &[(u8, u64, u64)]) -> Interval {
        let flows: Vec<(FlowKey, Count)> = flows
            .iter()
            .map(|&(k, packets, bytes)| (key(k), Count { packets, bytes }))
            .collect();
        let mut b = Buckets::default();
        for (_, c) in &flows {
            b.add_to(Bucket::Seen, *c);
            b.add_to(Bucket::Counted, *c);
        }
        let mut iv =
            Interval::new(at(from_ms), at(to_ms), flows, b).labelled("eth0", Direction::In);
        iv.seq = seq;
        iv
    }

    fn row(s: &Sheet, k: u8) -> &Row {
        s.rows.iter().find(|r| r.key == key(k)).expect("row")
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn one_second_cuts_average_over_2_10_and_40_intervals() {
        let mut m = Model::new();
        // Key 1 sends n × 1000 bytes in second n (n = 1..=50): the window
        // averages are arithmetic means of the last 2, 10 and 40 seconds.
        for n in 1..=50u64 {
            m.push(iv((n - 1) * 1000, n * 1000, n, &[(1, n, n * 1000)]));
        }
        let s = m.sheet();
        let r = row(&s, 1);
        close(r.last.bits, 50_000.0 * 8.0);
        close(r.last.packets, 50.0);
        close(r.avg[0].bits, (49.0 + 50.0) / 2.0 * 8000.0);
        close(r.avg[1].bits, (41..=50).sum::<u64>() as f64 / 10.0 * 8000.0);
        close(r.avg[2].bits, (11..=50).sum::<u64>() as f64 / 40.0 * 8000.0);
        close(r.avg[2].packets, (11..=50).sum::<u64>() as f64 / 40.0);
        assert_eq!(
            r.total,
            Count {
                packets: (1..=50).sum(),
                bytes: (1..=50).sum::<u64>() * 1000
            }
        );
    }

    #[test]
    fn real_lengths_not_nominal_ones() {
        let mut m = Model::new();
        // Cuts 1003 ms apart: still two intervals in the 2 s window, and the
        // rate is over 2006 ms, not 2 s.
        let mut t = 0;
        for n in 1..=12u64 {
            m.push(iv(t, t + 1003, n, &[(1, 10, 10_030)]));
            t += 1003;
        }
        let s = m.sheet();
        let r = row(&s, 1);
        close(r.last.bits, 10_030.0 * 8.0 / 1.003);
        close(r.avg[0].bits, 2.0 * 10_030.0 * 8.0 / 2.006);
        close(r.avg[1].bits, 10.0 * 10_030.0 * 8.0 / 10.03);
        // 12 intervals, less than 40 s: the average of what there is.
        close(r.avg[2].bits, 12.0 * 10_030.0 * 8.0 / 12.036);

        // Cuts 997 ms apart: still two.
        let mut m = Model::new();
        let mut t = 0;
        for n in 1..=3u64 {
            m.push(iv(t, t + 997, n, &[(1, 1, 100 * n)]));
            t += 997;
        }
        let r = row(&m.sheet(), 1).clone();
        close(r.avg[0].bits, (200.0 + 300.0) * 8.0 / 1.994);
    }

    #[test]
    fn uneven_intervals_are_weighted_by_their_length() {
        let mut m = Model::new();
        // 0.5 s with 1000 B, then 5 s with 10_000 B, then 0.5 s with 500 B.
        m.push(iv(0, 500, 1, &[(1, 1, 1000)]));
        m.push(iv(500, 5500, 2, &[(1, 10, 10_000)]));
        m.push(iv(5500, 6000, 3, &[(1, 1, 500)]));
        let s = m.sheet();
        let r = row(&s, 1);
        close(r.last.bits, 500.0 * 8.0 / 0.5);
        // 2 s window: the 5 s interval's midpoint (3 s) is 3 s before the
        // end (6 s): only the newest interval.
        close(r.avg[0].bits, 500.0 * 8.0 / 0.5);
        // 10 s: all three, 11_500 B over 6 s.
        close(r.avg[1].bits, 11_500.0 * 8.0 / 6.0);
        close(r.avg[2].bits, 11_500.0 * 8.0 / 6.0);
    }

    #[test]
    fn long_intervals_keep_the_newest_in_every_window() {
        let mut m = Model::new();
        for n in 1..=3u64 {
            m.push(iv((n - 1) * 25_000, n * 25_000, n, &[(1, n, n * 25_000)]));
        }
        let s = m.sheet();
        let r = row(&s, 1);
        // 25 s cuts: 2 s and 10 s are the newest interval alone; 40 s
        // reaches the one before (its midpoint, 37.5 s, is 37.5 s before
        // the end, 75 s) but not the first (62.5 s before).
        close(r.avg[0].bits, 75_000.0 * 8.0 / 25.0);
        close(r.avg[1].bits, 75_000.0 * 8.0 / 25.0);
        close(r.avg[2].bits, 125_000.0 * 8.0 / 50.0);
    }

    #[test]
    fn keys_leave_after_40_seconds_but_keep_their_totals() {
        let mut m = Model::new();
        m.push(iv(0, 1000, 1, &[(1, 1, 100), (2, 2, 200)]));
        for n in 2..=41u64 {
            m.push(iv((n - 1) * 1000, n * 1000, n, &[(2, 2, 200)]));
        }
        let s = m.sheet();
        assert!(s.rows.iter().all(|r| r.key != key(1)), "key 1 left");
        // Back again: its total goes on from where it was.
        m.push(iv(41_000, 42_000, 42, &[(1, 1, 100)]));
        let s = m.sheet();
        let r = row(&s, 1);
        assert_eq!(
            r.total,
            Count {
                packets: 2,
                bytes: 200
            }
        );
        assert_eq!(r.avg[0].bits, 100.0 * 8.0 / 2.0);
        let r2 = row(&s, 2);
        assert_eq!(r2.last, Rate::default());
        close(r2.avg[0].bits, 200.0 * 8.0 / 2.0);
        close(r2.share, 41.0 * 200.0 / (41.0 * 200.0 + 200.0));
    }

    #[test]
    fn buckets_identity_and_gaps() {
        let mut m = Model::new();
        let mut a = iv(0, 1000, 1, &[(1, 3, 300)]);
        a.buckets.add_to(
            Bucket::Seen,
            Count {
                packets: 2,
                bytes: 120,
            },
        );
        a.buckets.add_to(
            Bucket::NonIp,
            Count {
                packets: 2,
                bytes: 120,
            },
        );
        m.push(a);
        let s = m.sheet();
        assert_eq!(s.dirs.len(), 1);
        assert_eq!(s.dirs[0].identity, Identity::Exact);
        assert_eq!(s.dirs[0].buckets.get(Bucket::Seen).packets, 5);
        let mut b = iv(1000, 2000, 4, &[(1, 1, 100)]);
        b.buckets.add_to(
            Bucket::Seen,
            Count {
                packets: 1,
                bytes: 64,
            },
        );
        m.push(b);
        let s = m.sheet();
        assert_eq!(
            s.dirs[0].identity,
            Identity::Off {
                packets: 1,
                bytes: 64
            }
        );
        assert_eq!(s.streams[0].missed, 2);
        assert_eq!(s.streams[0].history, vec![420, 164]);
    }

    #[test]
    fn streams_are_kept_apart() {
        let mut m = Model::new();
        m.push(iv(0, 1000, 1, &[(1, 1, 100)]));
        m.push(iv(0, 1000, 1, &[(1, 2, 200)]).labelled("eth0", Direction::Out));
        m.push(iv(0, 1000, 1, &[(1, 4, 400)]).labelled("eth1", Direction::In));
        let s = m.sheet();
        assert_eq!(s.rows.len(), 3);
        assert_eq!(s.streams.len(), 3);
        assert_eq!(s.dirs.len(), 2);
        assert_eq!(
            s.dirs[0].flows,
            Count {
                packets: 5,
                bytes: 500
            }
        );
        assert_eq!(
            s.dirs[1].flows,
            Count {
                packets: 2,
                bytes: 200
            }
        );
        close(s.dirs[0].rate.bits, 500.0 * 8.0);
        assert!(s.rows.iter().all(|r| r.share == 1.0));
    }
}
