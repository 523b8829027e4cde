//! Reading: ledgers, sums over cuts, hourly totals and per-key rows, each
//! straight from its own table so that reports can reconcile them.

use std::path::Path;

use netledger::{Buckets, Count, Direction, FlowKey, KeyMode, Strategy};
use rusqlite::{Connection, OptionalExtension, Row};

use super::codec::{bucket_sums, buckets_from, count_from, key_from, uint};
use super::error::{sql, Error, Result};
use super::{LedgerId, LedgerInfo};

/// The columns of a ledger row.
const LEDGER_COLUMNS: &str = "id, instance, iface, dir, key_mode, vlan, prefix4, prefix6, strategy";

/// A ledger from a row of [`LEDGER_COLUMNS`].
fn ledger_from(path: &Path, r: &Row<'_>) -> Result<(LedgerId, LedgerInfo)> {
    let get_err = |source| Error::Sqlite {
        path: path.to_path_buf(),
        op: "reading a ledger",
        source,
    };
    let bad = |what: &'static str, value: String| Error::BadValue {
        path: path.to_path_buf(),
        what,
        value,
    };
    let text = |i: usize| r.get::<_, String>(i).map_err(get_err);
    let num = |i: usize| r.get::<_, i64>(i).map_err(get_err);
    let dir = text(3)?;
    let mode = text(4)?;
    let strategy = text(8)?;
    let prefix = |i: usize| -> Result<Option<u8>> {
        match num(i)? {
            -1 => Ok(None),
            p => u8::try_from(p)
                .map(Some)
                .map_err(|_| bad("prefix length", p.to_string())),
        }
    };
    Ok((
        LedgerId(num(0)?),
        LedgerInfo {
            instance: text(1)?,
            iface: text(2)?,
            dir: dir
                .parse::<Direction>()
                .map_err(|_| bad("direction", dir))?,
            key_mode: mode.parse::<KeyMode>().map_err(|_| bad("key mode", mode))?,
            vlan: num(5)? != 0,
            prefix4: prefix(6)?,
            prefix6: prefix(7)?,
            strategy: strategy
                .parse::<Strategy>()
                .map_err(|_| bad("strategy", strategy))?,
        },
    ))
}

/// The ledgers counting `iface` in `dir` (every one for None), by id.
pub(crate) fn ledgers(
    conn: &Connection,
    path: &Path,
    iface: Option<&str>,
    dir: Option<Direction>,
) -> Result<Vec<(LedgerId, LedgerInfo)>> {
    let op = "listing ledgers";
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger
             WHERE (?1 IS NULL OR iface = ?1) AND (?2 IS NULL OR dir = ?2) ORDER BY id"
        ))
        .map_err(sql(path, op))?;
    let mut rows = st
        .query(rusqlite::params![iface, dir.map(Direction::name)])
        .map_err(sql(path, op))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql(path, op))? {
        out.push(ledger_from(path, r)?);
    }
    Ok(out)
}

/// The ledger `id`, if there is one.
pub(crate) fn ledger(conn: &Connection, path: &Path, id: LedgerId) -> Result<Option<LedgerInfo>> {
    let op = "reading a ledger";
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = ?1"
        ))
        .map_err(sql(path, op))?;
    let mut rows = st.query([id.0]).map_err(sql(path, op))?;
    match rows.next().map_err(sql(path, op))? {
        Some(r) => Ok(Some(ledger_from(path, r)?.1)),
        None => Ok(None),
    }
}

/// Sums over the cuts of one ledger that started in a range, from the
/// `cut` table alone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CutSums {
    /// How many cuts.
    pub cuts: u64,
    /// The first one's start.
    pub first_start_ms: Option<i64>,
    /// The last one's end.
    pub last_end_ms: Option<i64>,
    /// Cuts with flow records that retention removed.
    pub flows_gone: u64,
    /// The sum of their flow records as committed.
    pub flow_total: Count,
    /// The sum of their buckets.
    pub buckets: Buckets,
}

/// [`CutSums`] of the cuts of `ledger` with `from <= start_ms < to`.
pub(crate) fn cut_sums(
    conn: &Connection,
    path: &Path,
    ledger: LedgerId,
    from: i64,
    to: i64,
) -> Result<CutSums> {
    let op = "summing cuts";
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT count(*), min(start_ms), max(end_ms),
                    coalesce(sum(flows_kept = 0 AND flows > 0), 0),
                    coalesce(sum(flow_packets), 0), coalesce(sum(flow_bytes), 0),
                    {}, coalesce(sum(reroutes), 0), coalesce(sum(evicted), 0)
             FROM cut WHERE ledger = ?1 AND start_ms >= ?2 AND start_ms < ?3",
            bucket_sums("")
        ))
        .map_err(sql(path, op))?;
    let mut rows = st.query([ledger.0, from, to]).map_err(sql(path, op))?;
    let Some(r) = rows.next().map_err(sql(path, op))? else {
        return Ok(CutSums::default());
    };
    let get_err = |source| Error::Sqlite {
        path: path.to_path_buf(),
        op,
        source,
    };
    let num = |i: usize| r.get::<_, i64>(i).map_err(get_err);
    let opt = |i: usize| r.get::<_, Option<i64>>(i).map_err(get_err);
    let mut buckets = buckets_from(path, r, 6)?;
    buckets.reroutes = uint(path, "reroutes", num(18)?)?;
    buckets.evicted = uint(path, "evicted", num(19)?)?;
    Ok(CutSums {
        cuts: uint(path, "cut count", num(0)?)?,
        first_start_ms: opt(1)?,
        last_end_ms: opt(2)?,
        flows_gone: uint(path, "cut count", num(3)?)?,
        flow_total: count_from(path, r, 4)?,
        buckets,
    })
}

/// The hours of `ledger` in `from <= hour_ms < to` and the sum of the flow
/// records committed in each, from `hour_ledger` alone.
pub(crate) fn ledger_hours(
    conn: &Connection,
    path: &Path,
    ledger: LedgerId,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Count)>> {
    let op = "reading hourly totals";
    let mut st = conn
        .prepare_cached(
            "SELECT hour_ms, flow_packets, flow_bytes FROM hour_ledger
             WHERE ledger = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 ORDER BY hour_ms",
        )
        .map_err(sql(path, op))?;
    let mut rows = st.query([ledger.0, from, to]).map_err(sql(path, op))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql(path, op))? {
        let hour: i64 = r.get(0).map_err(sql(path, op))?;
        out.push((hour, count_from(path, r, 1)?));
    }
    Ok(out)
}

/// Where per-key rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// The flow records of the cuts that started in the range.
    Flows,
    /// The per-key hourly rollups of the hours in the range.
    Hours,
}

/// How per-key rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// By the whole key.
    Key,
    /// By source address.
    Src,
    /// By destination address.
    Dst,
}

/// The per-key sums of `ledger` over `from..to` (cut starts or hours),
/// grouped as asked; keys with fields left out have them absent.
pub(crate) fn key_rows(
    conn: &Connection,
    path: &Path,
    ledger: LedgerId,
    from: i64,
    to: i64,
    source: KeySource,
    grouping: Grouping,
) -> Result<Vec<(FlowKey, Count)>> {
    let op = "reading per-key totals";
    let (select, group) = match grouping {
        Grouping::Key => (
            "k.src, k.dst, k.proto, k.sport, k.dport, k.icmp_type, k.icmp_code, k.fragment, k.vlan",
            "1, 2, 3, 4, 5, 6, 7, 8, 9",
        ),
        Grouping::Src => ("k.src, '', -1, -1, -1, -1, -1, 0, -1", "k.src"),
        Grouping::Dst => ("'', k.dst, -1, -1, -1, -1, -1, 0, -1", "k.dst"),
    };
    let from_where = match source {
        KeySource::Flows => {
            "cut c JOIN flow k ON k.ledger = c.ledger AND k.seq = c.seq
             WHERE c.ledger = ?1 AND c.start_ms >= ?2 AND c.start_ms < ?3"
        }
        KeySource::Hours => "hour_key k WHERE k.ledger = ?1 AND k.hour_ms >= ?2 AND k.hour_ms < ?3",
    };
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {select}, sum(k.packets), sum(k.bytes) FROM {from_where} GROUP BY {group}"
        ))
        .map_err(sql(path, op))?;
    let mut rows = st.query([ledger.0, from, to]).map_err(sql(path, op))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql(path, op))? {
        out.push((key_from(path, r, 0)?, count_from(path, r, 9)?));
    }
    Ok(out)
}

/// Where the rollup retention has removed per-key hourly rows up to
/// (exclusive), if it ever did.
pub(crate) fn key_hours_pruned_before(conn: &Connection, path: &Path) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'key_hours_pruned_before_ms'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql(path, "reading the store's facts"))
}
