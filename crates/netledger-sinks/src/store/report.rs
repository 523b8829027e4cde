//! `netledger report`: traffic per period (hour, day, month; vnstat-like)
//! or per key (flow, source, destination) over a range of time, as a table,
//! JSON lines or CSV, each ending with a reconciliation check.
//!
//! Periods: each interface's received (`in`) and sent (`out`) traffic per
//! period, from the per-ledger hourly totals. Days and months are cut in
//! the report's [`Zone`], so a day around a change of summer time lasts 23
//! or 25 hours and a month is the calendar month the operator means. The
//! store keeps UTC hours: each is counted in the local period where it
//! starts (in a zone whose offset is not a whole number of hours, an hour
//! straddling local midnight counts in the day it starts in). The period
//! holding "now" is running: its rate is over the part elapsed, and an
//! extra "estimated" row scales its totals to the whole period (never
//! added to sums).
//!
//! Keys: per flow key, or per source or destination address, most bytes
//! first, from the flow records when every cut in the range still has
//! them (exact cut boundaries), else from the per-key hourly rollups (the
//! range rounded to whole UTC hours; the output says so). They are written
//! by the text sinks, one interval per interface and direction.
//!
//! A cut belongs to a range (and an hour) by its start. The check compares
//! numbers read from different tables: the sum of the rows (flow records,
//! per-key or per-ledger hourly rows), the interface total (the flow totals
//! of the `cut` rows), the `counted` bucket of the same cuts, and `seen`
//! against the sum of the buckets that partition it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::SystemTime;

use netledger::{Bucket, Buckets, Count, Direction, FlowKey, Interval, KeyMode, LedgerConfig};
use serde::Serialize;

use crate::csv::key_columns;
use crate::table::bit_rate;
use crate::text::{text_sink, TextFormat};

use super::codec::{hour_ceil, hour_of, ms, time};
use super::error::{Error, Result};
use super::localtime::{offset_text, Zone};
use super::query::{self, CutSums, Grouping, KeySource};
use super::{LedgerId, Store};

/// What a report has one row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum By {
    /// Per flow key.
    Flow,
    /// Per source address (or prefix).
    Src,
    /// Per destination address (or prefix).
    Dst,
    /// Per UTC hour, labelled in local time.
    Hour,
    /// Per local day.
    #[default]
    Day,
    /// Per local month.
    Month,
}

impl By {
    /// Every kind of row.
    pub const ALL: [By; 6] = [By::Flow, By::Src, By::Dst, By::Hour, By::Day, By::Month];

    /// Its name on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            By::Flow => "flow",
            By::Src => "src",
            By::Dst => "dst",
            By::Hour => "hour",
            By::Day => "day",
            By::Month => "month",
        }
    }

    /// Rows per period of time (hour, day, month), not per key.
    pub fn is_period(self) -> bool {
        matches!(self, By::Hour | By::Day | By::Month)
    }
}

impl fmt::Display for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for By {
    type Err = Error;
    fn from_str(s: &str) -> Result<By> {
        By::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| Error::Invalid {
                what: "report rows",
                value: s.to_string(),
                expected: "flow, src, dst, hour, day or month",
            })
    }
}

/// What `netledger report` was asked.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Only this interface.
    pub iface: Option<String>,
    /// Only this direction.
    pub dir: Option<Direction>,
    /// Cuts starting at or after this (rounded down to the hour where rows
    /// come from hourly totals).
    pub since: Option<SystemTime>,
    /// Cuts starting before this (rounded up to the hour likewise).
    pub until: Option<SystemTime>,
    /// What a row is.
    pub by: By,
    /// At most this many key rows per interface and direction (the table
    /// shows 20 unless told; JSON lines and CSV all). Periods are all shown.
    pub top: Option<usize>,
    /// The output format.
    pub format: TextFormat,
    /// The zone periods are cut in.
    pub zone: Zone,
    /// The time taken as now: the running period, relative times.
    pub now: SystemTime,
}

impl ReportQuery {
    /// Every interface and direction, all history, per local day, as a table.
    pub fn new(now: SystemTime) -> ReportQuery {
        ReportQuery {
            iface: None,
            dir: None,
            since: None,
            until: None,
            by: By::Day,
            top: None,
            format: TextFormat::Table,
            zone: Zone::Local,
            now,
        }
    }
}

/// The reconciliation at the end of every report, summed over its
/// interfaces and directions; `differences` names each one that does not
/// add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// The sum of every row (all of them, beyond `--top` too).
    pub rows: Count,
    /// The flow totals of the cuts (the interface total).
    pub total: Count,
    /// The `counted` bucket of the same cuts.
    pub counted: Count,
    /// The `seen` bucket of the same cuts.
    pub seen: Count,
    /// The sum of the buckets that partition `seen`.
    pub buckets: Count,
    /// One sentence per disagreement, naming the interface and direction.
    pub differences: Vec<String>,
}

impl Check {
    /// Every number agrees.
    pub fn exact(&self) -> bool {
        self.differences.is_empty()
    }

    /// "exact", or "mismatch: " and the differences.
    pub fn verdict(&self) -> String {
        if self.exact() {
            "exact".to_string()
        } else {
            format!("mismatch: {}", self.differences.join("; "))
        }
    }

    /// The check as one line of text.
    fn line(&self) -> String {
        let rel = |a: Count, b: Count| if a == b { "=" } else { "!=" };
        format!(
            "check: rows {} {} interface total {} {} counted {}; seen {} {} buckets {}: {}",
            text(self.rows),
            rel(self.rows, self.total),
            text(self.total),
            rel(self.total, self.counted),
            text(self.counted),
            text(self.seen),
            rel(self.seen, self.buckets),
            text(self.buckets),
            self.verdict()
        )
    }
}

/// "12 packets 3456 bytes".
fn text(c: Count) -> String {
    format!("{} packets {} bytes", c.packets, c.bytes)
}

/// The numbers of one interface and direction that must agree.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    rows: Count,
    total: Count,
    counted: Count,
    seen: Count,
    buckets: Count,
}

impl Tally {
    /// Add the cut-table side: flow totals and buckets.
    fn add_cuts(&mut self, s: &CutSums) {
        self.total.add(s.flow_total);
        self.counted.add(s.buckets.get(Bucket::Counted));
        self.seen.add(s.buckets.get(Bucket::Seen));
        self.buckets.add(parts(&s.buckets));
    }
}

/// The sum of the buckets that partition `seen`.
fn parts(b: &Buckets) -> Count {
    let mut sum = Count::default();
    for p in Bucket::PARTS {
        sum.add(b.get(p));
    }
    sum
}

/// `a - b` per field, signed.
fn delta(a: Count, b: Count) -> String {
    let d = |x: u64, y: u64| i128::from(x) - i128::from(y);
    format!(
        "{:+} packets {:+} bytes",
        d(a.packets, b.packets),
        d(a.bytes, b.bytes)
    )
}

/// The check over every group, naming each group that does not add up.
fn check_of(groups: &BTreeMap<(String, Direction), Tally>) -> Check {
    let mut c = Check::default();
    for ((iface, dir), t) in groups {
        c.rows.add(t.rows);
        c.total.add(t.total);
        c.counted.add(t.counted);
        c.seen.add(t.seen);
        c.buckets.add(t.buckets);
        let mut say = |what: &str, a: Count, b: Count, vs: &str| {
            if a != b {
                c.differences.push(format!(
                    "{iface} {dir}: {what} {} but {vs} {} ({})",
                    text(a),
                    text(b),
                    delta(a, b)
                ));
            }
        };
        say("rows", t.rows, t.total, "interface total");
        say("interface total", t.total, t.counted, "counted");
        say("seen", t.seen, t.buckets, "buckets");
    }
    c
}

/// The ledgers of the query, per interface and direction.
fn groups(store: &Store, q: &ReportQuery) -> Result<BTreeMap<(String, Direction), Vec<LedgerId>>> {
    let mut out: BTreeMap<(String, Direction), Vec<LedgerId>> = BTreeMap::new();
    for (id, info) in query::ledgers(&store.conn, &store.path, q.iface.as_deref(), q.dir)? {
        out.entry((info.iface, info.dir)).or_default().push(id);
    }
    Ok(out)
}

/// Write the report `q` asks for to `out`; its check says whether the
/// numbers reconcile.
pub fn write_report(store: &Store, q: &ReportQuery, out: &mut dyn Write) -> Result<Check> {
    if q.by.is_period() {
        let r = period_report(store, q)?;
        r.write(q.format, out)?;
        Ok(r.check)
    } else {
        let mut r = key_report(store, q)?;
        r.write(q.format, q.top, out)?;
        Ok(r.check)
    }
}

// ---------------------------------------------------------------- keys

/// Where the rows of a key report come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsFrom {
    /// The flow records of the cuts that started in the range.
    Flows,
    /// The per-key hourly rollups: the range rounded to whole UTC hours.
    Hourly,
}

impl RowsFrom {
    /// "flows" or "hourly".
    pub fn name(self) -> &'static str {
        match self {
            RowsFrom::Flows => "flows",
            RowsFrom::Hourly => "hourly",
        }
    }
}

/// A report per key: one interval per interface and direction.
#[derive(Debug, Clone)]
pub struct KeyReport {
    /// Flow, Src or Dst.
    pub by: By,
    /// Flow records or hourly rollups.
    pub rows_from: RowsFrom,
    /// The range's start: as asked, else the first cut's start (rounded
    /// down to the hour for hourly rows; None without cuts).
    pub from: Option<SystemTime>,
    /// The range's end: as asked, else the last cut's end (rounded up to
    /// the hour for hourly rows).
    pub until: Option<SystemTime>,
    /// Per-key hourly rows before this were removed by the rollup retention.
    pub key_hours_pruned_before: Option<SystemTime>,
    /// The key columns to show: the widest key configuration of the ledgers.
    pub layout: LedgerConfig,
    /// Per interface and direction: the keys' sums over the range, most
    /// bytes first, and the buckets summed over the same cuts.
    pub intervals: Vec<Interval>,
    /// The reconciliation.
    pub check: Check,
}

/// The per-key report `q` asks for (`q.by` is Flow, Src or Dst).
pub fn key_report(store: &Store, q: &ReportQuery) -> Result<KeyReport> {
    let (conn, path) = (&store.conn, store.path.as_path());
    let grouping = match q.by {
        By::Src => Grouping::Src,
        By::Dst => Grouping::Dst,
        _ => Grouping::Key,
    };
    let groups = groups(store, q)?;
    let since = q.since.map(ms);
    let until = q.until.map(ms);
    // Flow records if every cut in the range still has them.
    let mut rows_from = RowsFrom::Flows;
    'find: for ids in groups.values() {
        for id in ids {
            let s = query::cut_sums(
                conn,
                path,
                *id,
                since.unwrap_or(i64::MIN),
                until.unwrap_or(i64::MAX),
            )?;
            if s.flows_gone > 0 {
                rows_from = RowsFrom::Hourly;
                break 'find;
            }
        }
    }
    let (from, to, source) = match rows_from {
        RowsFrom::Flows => (since, until, KeySource::Flows),
        RowsFrom::Hourly => (since.map(hour_of), until.map(hour_ceil), KeySource::Hours),
    };
    let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));

    let ledgers: HashMap<LedgerId, super::LedgerInfo> = store.ledgers()?.into_iter().collect();
    let mut tallies = BTreeMap::new();
    let mut intervals = Vec::new();
    let mut used = Vec::new();
    // The cuts' span: the range's bounds where the query gives none.
    let (mut span_start, mut span_end): (Option<i64>, Option<i64>) = (None, None);
    for ((iface, dir), ids) in &groups {
        let mut tally = Tally::default();
        let mut buckets = Buckets::default();
        let mut keys: HashMap<FlowKey, Count> = HashMap::new();
        let (mut first, mut last_end): (Option<i64>, Option<i64>) = (None, None);
        for id in ids {
            let s = query::cut_sums(conn, path, *id, lo, hi)?;
            if s.cuts == 0 {
                continue;
            }
            used.extend(ledgers.get(id));
            tally.add_cuts(&s);
            buckets.add(&s.buckets);
            first = match (first, s.first_start_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last_end = last_end.max(s.last_end_ms);
            for (k, c) in query::key_rows(conn, path, *id, lo, hi, source, grouping)? {
                keys.entry(k).or_default().add(c);
            }
        }
        let (Some(first), Some(last_end)) = (first, last_end) else {
            continue;
        };
        for c in keys.values() {
            tally.rows.add(*c);
        }
        span_start = Some(span_start.map_or(first, |s: i64| s.min(first)));
        span_end = Some(span_end.map_or(last_end, |e: i64| e.max(last_end)));
        intervals.push(
            Interval::new(
                time(first),
                time(last_end),
                keys.into_iter().collect(),
                buckets,
            )
            .labelled(iface, *dir),
        );
        tallies.insert((iface.clone(), *dir), tally);
    }
    let layout = match q.by {
        By::Src => key_layout(KeyMode::SrcIp, false),
        By::Dst => key_layout(KeyMode::DstIp, false),
        _ => widest(&used),
    };
    let (from, to) = match rows_from {
        RowsFrom::Flows => (from.or(span_start), to.or(span_end)),
        RowsFrom::Hourly => (
            from.or(span_start.map(hour_of)),
            to.or(span_end.map(hour_ceil)),
        ),
    };
    Ok(KeyReport {
        by: q.by,
        rows_from,
        from: from.map(time),
        until: to.map(time),
        key_hours_pruned_before: query::key_hours_pruned_before(conn, path)?.map(time),
        layout,
        intervals,
        check: check_of(&tallies),
    })
}

/// A configuration with only a key layout.
fn key_layout(key_mode: KeyMode, vlan: bool) -> LedgerConfig {
    LedgerConfig {
        key_mode,
        vlan,
        ..LedgerConfig::default()
    }
}

/// The key layout holding every field of every ledger's keys.
fn widest(ledgers: &[&super::LedgerInfo]) -> LedgerConfig {
    let any = |f: &dyn Fn(&super::LedgerInfo) -> bool| ledgers.iter().any(|l| f(l));
    let mode = if ledgers.is_empty() || any(&|l| l.key_mode == KeyMode::FiveTuple) {
        KeyMode::FiveTuple
    } else {
        match (
            any(&|l| l.key_mode.has_src()),
            any(&|l| l.key_mode.has_dst()),
        ) {
            (true, true) => KeyMode::IpPair,
            (true, false) => KeyMode::SrcIp,
            _ => KeyMode::DstIp,
        }
    };
    key_layout(mode, any(&|l| l.vlan))
}

/// An RFC 3339 UTC time, or `none`.
fn utc_or(t: Option<SystemTime>, none: &str) -> String {
    t.map_or_else(|| none.to_string(), netledger::rfc3339)
}

/// A JSON line's `{"type":"check",...}`.
#[derive(Serialize)]
struct CheckRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_from: Option<&'static str>,
    start: Option<String>,
    end: Option<String>,
    rows: Count,
    total: Count,
    counted: Count,
    seen: Count,
    buckets: Count,
    status: &'static str,
    differences: &'a [String],
}

impl<'a> CheckRecord<'a> {
    fn new(
        c: &'a Check,
        by: By,
        rows_from: Option<RowsFrom>,
        start: Option<String>,
        end: Option<String>,
    ) -> Self {
        CheckRecord {
            kind: "check",
            by: by.name(),
            rows_from: rows_from.map(RowsFrom::name),
            start,
            end,
            rows: c.rows,
            total: c.total,
            counted: c.counted,
            seen: c.seen,
            buckets: c.buckets,
            status: if c.exact() { "exact" } else { "mismatch" },
            differences: &c.differences,
        }
    }
}

/// Write one JSON line.
fn json_line(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(v).map_err(|e| Error::Write { source: e.into() })?;
    writeln!(out, "{line}")?;
    Ok(())
}

impl KeyReport {
    /// Write the report in `format`, at most `top` keys per interface and
    /// direction. The text sinks write the intervals.
    pub fn write(
        &mut self,
        format: TextFormat,
        top: Option<usize>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let (from, until) = (self.from, self.until);
        match format {
            TextFormat::Table => {
                match self.rows_from {
                    RowsFrom::Flows => writeln!(
                        out,
                        "netledger report by {}: flow records of the cuts that started from {} until {} (exact cut boundaries)",
                        self.by,
                        utc_or(from, "the first cut"),
                        utc_or(until, "the last")
                    )?,
                    RowsFrom::Hourly => writeln!(
                        out,
                        "netledger report by {}: hourly per-key totals from {} until {} (rounded to whole UTC hours: retention removed the flow records of some cuts in the range)",
                        self.by,
                        utc_or(from, "the first hour"),
                        utc_or(until, "the last")
                    )?,
                }
                if let Some(t) = self.pruned_note() {
                    writeln!(out, "note: {t}")?;
                }
                writeln!(out)?;
                if self.intervals.is_empty() {
                    writeln!(out, "no cuts in the range")?;
                    writeln!(out)?;
                }
                let mut sink = text_sink(TextFormat::Table, &mut *out, &self.layout, top);
                for iv in &mut self.intervals {
                    sink.interval(iv).map_err(|source| Error::Sink { source })?;
                }
                drop(sink);
                writeln!(out, "{}", self.check.line())?;
            }
            TextFormat::Jsonl => {
                let mut sink = text_sink(TextFormat::Jsonl, &mut *out, &self.layout, top);
                for iv in &self.intervals {
                    sink.interval(iv).map_err(|source| Error::Sink { source })?;
                }
                drop(sink);
                json_line(
                    out,
                    &CheckRecord::new(
                        &self.check,
                        self.by,
                        Some(self.rows_from),
                        from.map(netledger::rfc3339),
                        until.map(netledger::rfc3339),
                    ),
                )?;
            }
            TextFormat::Csv => {
                let cols = key_columns(self.layout.key_mode, self.layout.vlan);
                writeln!(
                    out,
                    "type,iface,dir,start,end,bucket,{},packets,bytes",
                    cols.join(",")
                )?;
                for iv in &self.intervals {
                    let mut buf = Vec::new();
                    text_sink(TextFormat::Csv, &mut buf, &self.layout, top)
                        .interval(iv)
                        .map_err(|source| Error::Sink { source })?;
                    // The sink's own header is replaced by the one above.
                    for line in String::from_utf8_lossy(&buf).lines().skip(1) {
                        writeln!(out, "{line}")?;
                    }
                }
                let blanks = ",".repeat(cols.len());
                let (s, e) = (utc_or(from, ""), utc_or(until, ""));
                let c = &self.check;
                for (name, v) in [
                    ("rows", c.rows),
                    ("total", c.total),
                    ("counted", c.counted),
                    ("seen", c.seen),
                    ("buckets", c.buckets),
                ] {
                    writeln!(
                        out,
                        "check,,,{s},{e},{name}{blanks},{},{}",
                        v.packets, v.bytes
                    )?;
                }
                writeln!(out, "check,,,{s},{e},{}{blanks},,", csv_field(&c.verdict()))?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// The note when the range reaches before the per-key rollups' retention.
    fn pruned_note(&self) -> Option<String> {
        let before = self.key_hours_pruned_before?;
        let reaches_before = match self.from {
            Some(f) => f < before,
            None => true,
        };
        if self.rows_from == RowsFrom::Hourly && reaches_before {
            Some(format!(
                "per-key hourly totals before {} were removed by the rollup retention",
                netledger::rfc3339(before)
            ))
        } else {
            None
        }
    }
}

/// A CSV field: quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

// ------------------------------------------------------------- periods

/// A report per period, per interface.
#[derive(Debug, Clone)]
pub struct PeriodReport {
    /// Hour, Day or Month.
    pub by: By,
    /// The zone's name.
    pub zone: String,
    /// The time taken as now.
    pub now: SystemTime,
    /// The range's start: as asked rounded down to the hour, else the
    /// first cut's hour (None without cuts).
    pub from: Option<SystemTime>,
    /// The range's end: as asked rounded up to the hour, else the last
    /// cut's end.
    pub until: Option<SystemTime>,
    /// Per interface, by name.
    pub ifaces: Vec<IfacePeriods>,
    /// The reconciliation.
    pub check: Check,
}

/// One interface's periods.
#[derive(Debug, Clone)]
pub struct IfacePeriods {
    /// The interface.
    pub iface: String,
    /// Its periods with traffic in the range, oldest first, and the running one.
    pub periods: Vec<Period>,
    /// The running period's totals scaled to the whole period.
    pub estimated: Option<Period>,
}

impl IfacePeriods {
    /// The sums of the periods' rows (the estimate left out).
    pub fn sum(&self) -> (Count, Count) {
        let (mut rx, mut tx) = (Count::default(), Count::default());
        for p in &self.periods {
            rx.add(p.rx);
            tx.add(p.tx);
        }
        (rx, tx)
    }
}

/// One row of a period report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `2026-10-25T02:00+01:00` (hour), `2026-10-25` (day), `2026-10` (month).
    pub label: String,
    /// Its start, RFC 3339 in the report's zone.
    pub start: String,
    /// Its end, likewise.
    pub end: String,
    /// The seconds the average rate is over: the period's length, or the
    /// part elapsed of the running one.
    pub seconds: u64,
    /// Received: the ledgers counting `in`.
    pub rx: Count,
    /// Sent: the ledgers counting `out`.
    pub tx: Count,
    /// It holds now.
    pub running: bool,
    /// The running period's totals scaled to its whole length.
    pub estimated: bool,
}

impl Period {
    /// Received and sent.
    pub fn total(&self) -> Count {
        let mut t = self.rx;
        t.add(self.tx);
        t
    }

    /// Average bits per second.
    pub fn bit_rate(&self) -> f64 {
        self.total().bytes as f64 * 8.0 / self.seconds.max(1) as f64
    }
}

/// A period's bounds (seconds since the epoch) and label.
#[derive(Debug, Clone)]
struct Bounds {
    start: i64,
    end: i64,
    label: String,
}

/// The period of `by` in `zone` holding the UTC hour starting at `hour_ms`.
fn bounds(by: By, zone: &Zone, hour_ms: i64) -> Result<Bounds> {
    let h = hour_ms.div_euclid(1000);
    let lt = zone.local(h)?;
    let (y, m, d) = (lt.year, i64::from(lt.month), i64::from(lt.day));
    Ok(match by {
        By::Hour => Bounds {
            start: h,
            end: h + 3600,
            label: format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}{}",
                lt.hour,
                lt.minute,
                offset_text(lt.offset)
            ),
        },
        By::Month => Bounds {
            start: zone.unix(y, m, 1, 0, 0)?,
            end: zone.unix(y, m + 1, 1, 0, 0)?,
            label: format!("{y:04}-{m:02}"),
        },
        _ => Bounds {
            start: zone.unix(y, m, d, 0, 0)?,
            end: zone.unix(y, m, d + 1, 0, 0)?,
            label: format!("{y:04}-{m:02}-{d:02}"),
        },
    })
}

/// `c` scaled by `num / den`, rounded down.
fn scale(c: Count, num: u64, den: u64) -> Count {
    let s = |v: u64| {
        let r = u128::from(v) * u128::from(num) / u128::from(den.max(1));
        u64::try_from(r).unwrap_or(u64::MAX)
    };
    Count {
        packets: s(c.packets),
        bytes: s(c.bytes),
    }
}

/// The per-period report `q` asks for (`q.by` is Hour, Day or Month).
pub fn period_report(store: &Store, q: &ReportQuery) -> Result<PeriodReport> {
    let (conn, path) = (&store.conn, store.path.as_path());
    let zone = &q.zone;
    let from = q.since.map(|t| hour_of(ms(t)));
    let to = q.until.map(|t| hour_ceil(ms(t)));
    let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    let now_ms = ms(q.now);
    let now_hour = hour_of(now_ms);
    let mut cache: HashMap<i64, Bounds> = HashMap::new();
    let mut bounds_of = |hour: i64| -> Result<Bounds> {
        if let Some(b) = cache.get(&hour) {
            return Ok(b.clone());
        }
        let b = bounds(q.by, zone, hour)?;
        cache.insert(hour, b.clone());
        Ok(b)
    };
    let running = if (lo..hi).contains(&now_hour) {
        Some(bounds_of(now_hour)?)
    } else {
        None
    };

    let mut by_iface: BTreeMap<String, Vec<(LedgerId, Direction)>> = BTreeMap::new();
    for ((iface, dir), ids) in groups(store, q)? {
        by_iface
            .entry(iface)
            .or_default()
            .extend(ids.into_iter().map(|id| (id, dir)));
    }
    let mut tallies: BTreeMap<(String, Direction), Tally> = BTreeMap::new();
    // The cuts' span: the range's bounds where the query gives none.
    let (mut span_start, mut span_end): (Option<i64>, Option<i64>) = (None, None);
    let mut ifaces = Vec::new();
    for (iface, ledgers) in by_iface {
        // Per period start: its bounds, received, sent.
        let mut acc: BTreeMap<i64, (Bounds, Count, Count)> = BTreeMap::new();
        let mut any = false;
        for (id, dir) in ledgers {
            let tally = tallies.entry((iface.clone(), dir)).or_default();
            for (hour, c) in query::ledger_hours(conn, path, id, lo, hi)? {
                any = true;
                let b = bounds_of(hour)?;
                let e = acc
                    .entry(b.start)
                    .or_insert_with(|| (b, Count::default(), Count::default()));
                match dir {
                    Direction::In => e.1.add(c),
                    Direction::Out => e.2.add(c),
                }
                tally.rows.add(c);
            }
            let s = query::cut_sums(conn, path, id, lo, hi)?;
            any |= s.cuts > 0;
            if let (Some(a), Some(b)) = (s.first_start_ms, s.last_end_ms) {
                span_start = Some(span_start.map_or(a, |x| x.min(a)));
                span_end = Some(span_end.map_or(b, |x| x.max(b)));
            }
            tally.add_cuts(&s);
        }
        if !any {
            continue;
        }
        if let Some(r) = &running {
            acc.entry(r.start)
                .or_insert_with(|| (r.clone(), Count::default(), Count::default()));
        }
        let mut periods = Vec::new();
        let mut estimated = None;
        for (b, rx, tx) in acc.into_values() {
            let is_running = running.as_ref().is_some_and(|r| r.start == b.start);
            let length = u64::try_from(b.end - b.start).unwrap_or(0).max(1);
            let elapsed = u64::try_from(now_ms.div_euclid(1000) - b.start)
                .unwrap_or(0)
                .clamp(1, length);
            let p = Period {
                label: b.label.clone(),
                start: zone.local(b.start)?.rfc3339(),
                end: zone.local(b.end)?.rfc3339(),
                seconds: if is_running { elapsed } else { length },
                rx,
                tx,
                running: is_running,
                estimated: false,
            };
            if is_running {
                estimated = Some(Period {
                    seconds: length,
                    rx: scale(rx, length, elapsed),
                    tx: scale(tx, length, elapsed),
                    estimated: true,
                    ..p.clone()
                });
            }
            periods.push(p);
        }
        ifaces.push(IfacePeriods {
            iface,
            periods,
            estimated,
        });
    }
    Ok(PeriodReport {
        by: q.by,
        zone: zone.name(),
        now: q.now,
        from: from.or(span_start.map(hour_of)).map(time),
        until: to.or(span_end).map(time),
        ifaces,
        check: check_of(&tallies),
    })
}

/// Bytes as vnstat shows them: `512 B`, `1.50 KiB`, `3.25 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// A JSON line's `{"type":"period",...}`.
#[derive(Serialize)]
struct PeriodRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iface: &'a str,
    by: &'static str,
    period: &'a str,
    start: &'a str,
    end: &'a str,
    seconds: u64,
    rx: Count,
    tx: Count,
    total: Count,
    bit_rate: u64,
    running: bool,
    estimated: bool,
}

impl PeriodReport {
    /// The period's name in headings: "hour", "day", "month".
    fn unit(&self) -> &'static str {
        self.by.name()
    }

    /// Write the report in `format`.
    pub fn write(&self, format: TextFormat, out: &mut dyn Write) -> Result<()> {
        match format {
            TextFormat::Table => self.write_table(out)?,
            TextFormat::Jsonl => {
                for i in &self.ifaces {
                    for p in i.periods.iter().chain(&i.estimated) {
                        json_line(out, &self.record(&i.iface, p))?;
                    }
                }
                json_line(
                    out,
                    &CheckRecord::new(
                        &self.check,
                        self.by,
                        None,
                        self.from.map(netledger::rfc3339),
                        self.until.map(netledger::rfc3339),
                    ),
                )?;
            }
            TextFormat::Csv => {
                writeln!(
                    out,
                    "type,iface,by,period,start,end,seconds,rx_packets,rx_bytes,tx_packets,tx_bytes,total_packets,total_bytes,bit_rate,running,estimated"
                )?;
                for i in &self.ifaces {
                    for p in i.periods.iter().chain(&i.estimated) {
                        let r = self.record(&i.iface, p);
                        writeln!(
                            out,
                            "period,{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                            r.iface,
                            r.by,
                            r.period,
                            r.start,
                            r.end,
                            r.seconds,
                            r.rx.packets,
                            r.rx.bytes,
                            r.tx.packets,
                            r.tx.bytes,
                            r.total.packets,
                            r.total.bytes,
                            r.bit_rate,
                            r.running,
                            r.estimated
                        )?;
                    }
                }
                let (s, e) = (utc_or(self.from, ""), utc_or(self.until, ""));
                let c = &self.check;
                let by = self.by;
                for (name, v) in [
                    ("rows", c.rows),
                    ("total", c.total),
                    ("counted", c.counted),
                    ("seen", c.seen),
                    ("buckets", c.buckets),
                ] {
                    writeln!(
                        out,
                        "check,,{by},{name},{s},{e},,,,,,{},{},,,",
                        v.packets, v.bytes
                    )?;
                }
                writeln!(
                    out,
                    "check,,{by},{},{s},{e},,,,,,,,,,",
                    csv_field(&c.verdict())
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// The JSON line of one period.
    fn record<'a>(&self, iface: &'a str, p: &'a Period) -> PeriodRecord<'a> {
        let total = p.total();
        PeriodRecord {
            kind: "period",
            iface,
            by: self.by.name(),
            period: &p.label,
            start: &p.start,
            end: &p.end,
            seconds: p.seconds,
            rx: p.rx,
            tx: p.tx,
            total,
            bit_rate: u64::try_from(u128::from(total.bytes) * 8 / u128::from(p.seconds.max(1)))
                .unwrap_or(u64::MAX),
            running: p.running,
            estimated: p.estimated,
        }
    }

    /// The vnstat-like table: per interface one row per period, the sum,
    /// and the estimate of the running period below it.
    fn write_table(&self, out: &mut dyn Write) -> Result<()> {
        writeln!(
            out,
            "netledger report by {} in {}: hourly totals from {} until {} (now {})",
            self.unit(),
            self.zone,
            utc_or(self.from, "the first hour"),
            utc_or(self.until, "the last"),
            netledger::rfc3339(self.now)
        )?;
        if self.ifaces.is_empty() {
            writeln!(out)?;
            writeln!(out, "no cuts in the range")?;
        }
        let running = |p: &Period| {
            if p.running {
                format!("{} (so far)", p.label)
            } else {
                p.label.clone()
            }
        };
        let width = self
            .ifaces
            .iter()
            .flat_map(|i| i.periods.iter().map(running))
            .map(|l| l.len())
            .chain([self.unit().len(), "estimated".len()])
            .max()
            .unwrap_or(0);
        let row = |label: &str, rx: Count, tx: Count, rate: &str| {
            let mut t = rx;
            t.add(tx);
            format!(
                "  {label:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>13}  {:>12}  {:>13}",
                rx.packets,
                human_bytes(rx.bytes),
                tx.packets,
                human_bytes(tx.bytes),
                t.packets,
                human_bytes(t.bytes),
                rate
            )
        };
        for i in &self.ifaces {
            writeln!(out)?;
            writeln!(out, "{}", i.iface)?;
            let heading = format!(
                "  {:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>13}  {:>12}  {:>13}",
                self.unit().to_uppercase(),
                "RX PACKETS",
                "RX BYTES",
                "TX PACKETS",
                "TX BYTES",
                "TOTAL PACKETS",
                "TOTAL BYTES",
                "AVG. RATE"
            );
            writeln!(out, "{heading}")?;
            for p in &i.periods {
                writeln!(
                    out,
                    "{}",
                    row(&running(p), p.rx, p.tx, &bit_rate(p.bit_rate()))
                )?;
            }
            writeln!(out, "  {}", "-".repeat(heading.len() - 2))?;
            let (rx, tx) = i.sum();
            writeln!(out, "{}", row("sum", rx, tx, "").trim_end())?;
            if let Some(e) = &i.estimated {
                writeln!(
                    out,
                    "{}",
                    row("estimated", e.rx, e.tx, &bit_rate(e.bit_rate()))
                )?;
            }
        }
        if self.ifaces.iter().any(|i| i.estimated.is_some()) {
            writeln!(out)?;
            writeln!(
                out,
                "(so far): the running {0}, its rate over the part elapsed; estimated: its totals scaled to the whole {0}, not in the sum",
                self.unit()
            )?;
        }
        writeln!(out)?;
        writeln!(out, "{}", self.check.line())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_humanised_like_vnstat() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn estimates_scale_without_overflow() {
        let c = Count {
            packets: u64::MAX / 2,
            bytes: 10,
        };
        assert_eq!(scale(c, 2, 1).bytes, 20);
        assert_eq!(scale(c, 3, 1).packets, u64::MAX);
    }

    #[test]
    fn by_names_round_trip() {
        for b in By::ALL {
            assert_eq!(b.name().parse::<By>().unwrap(), b);
        }
        assert!("week".parse::<By>().is_err());
    }
}
