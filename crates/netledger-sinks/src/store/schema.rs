//! The store's tables, and the migrations that bring any older store (an
//! empty file included) to this build's schema.
//!
//! Conventions: times are milliseconds since the Unix epoch (UTC); counts
//! are SQLite integers (signed 64-bit); absent key fields are '' for an
//! address and -1 for a number, never NULL, so that rollup primary keys
//! compare equal and upserts find their row.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::{sql, Error, Result};

/// The schema version this build writes; `meta.schema_version` holds the
/// version of a store.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[i]` brings a store from version `i` to `i + 1`. A migration
/// is only ever appended: released ones never change.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1];

/// The key and count columns of `flow` and `hour_key`, one per line.
macro_rules! key_columns {
    () => {
        "    src       TEXT    NOT NULL,
    dst       TEXT    NOT NULL,
    proto     INTEGER NOT NULL,
    sport     INTEGER NOT NULL,
    dport     INTEGER NOT NULL,
    icmp_type INTEGER NOT NULL,
    icmp_code INTEGER NOT NULL,
    fragment  INTEGER NOT NULL,
    vlan      INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
"
    };
}

/// The totals of `cut` and `hour_ledger`: flow sums, buckets, reroutes,
/// evictions, one per line.
macro_rules! cut_totals {
    () => {
        "    flow_packets       INTEGER NOT NULL,
    flow_bytes         INTEGER NOT NULL,
    seen_packets       INTEGER NOT NULL,
    seen_bytes         INTEGER NOT NULL,
    counted_packets    INTEGER NOT NULL,
    counted_bytes      INTEGER NOT NULL,
    non_ip_packets     INTEGER NOT NULL,
    non_ip_bytes       INTEGER NOT NULL,
    malformed_packets  INTEGER NOT NULL,
    malformed_bytes    INTEGER NOT NULL,
    map_full_packets   INTEGER NOT NULL,
    map_full_bytes     INTEGER NOT NULL,
    evict_race_packets INTEGER NOT NULL,
    evict_race_bytes   INTEGER NOT NULL,
    reroutes           INTEGER NOT NULL,
    evicted            INTEGER NOT NULL,
"
    };
}

/// Version 1: ledgers, cuts, flow records, hourly rollups.
const V1: &str = concat!(
    "
-- Facts about the store itself: schema_version; key_hours_pruned_before_ms
-- (per-key hourly rows before it were removed by retention).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL
) WITHOUT ROWID;

-- One counting instance: a daemon's pin set (instance) on one interface
-- and direction, with the key configuration its flow records were made with.
CREATE TABLE ledger (
    id       INTEGER PRIMARY KEY,
    instance TEXT    NOT NULL,
    iface    TEXT    NOT NULL,
    dir      TEXT    NOT NULL CHECK (dir IN ('in', 'out')),
    key_mode TEXT    NOT NULL,
    vlan     INTEGER NOT NULL,
    prefix4  INTEGER NOT NULL,  -- -1: whole addresses
    prefix6  INTEGER NOT NULL,  -- -1: whole addresses
    strategy TEXT    NOT NULL,
    UNIQUE (instance, iface, dir, key_mode, vlan, prefix4, prefix6, strategy)
);

-- One committed cut: its interval, the sum of its flow records and its
-- conservation buckets. Never pruned: reports reconcile against it.
CREATE TABLE cut (
    ledger             INTEGER NOT NULL REFERENCES ledger (id),
    seq                INTEGER NOT NULL CHECK (seq > 0),
    start_ms           INTEGER NOT NULL,
    end_ms             INTEGER NOT NULL,
    flows              INTEGER NOT NULL,  -- flow records committed
    flows_kept         INTEGER NOT NULL DEFAULT 1,  -- 0 once retention removed them
",
    cut_totals!(),
    "    PRIMARY KEY (ledger, seq)
) WITHOUT ROWID;
CREATE INDEX cut_start ON cut (ledger, start_ms);
-- The cuts retention has still to visit.
CREATE INDEX cut_flows_kept ON cut (end_ms) WHERE flows_kept = 1;

-- The flow records of a cut, numbered (n) in key order; removed by retention.
CREATE TABLE flow (
    ledger    INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    n         INTEGER NOT NULL,
",
    key_columns!(),
    "    PRIMARY KEY (ledger, seq, n),
    FOREIGN KEY (ledger, seq) REFERENCES cut (ledger, seq)
) WITHOUT ROWID;

-- Per key and UTC hour (the hour holding the cut's start): the sum of every
-- flow record committed. Removed only by an explicit rollup retention.
CREATE TABLE hour_key (
    ledger    INTEGER NOT NULL REFERENCES ledger (id),
    hour_ms   INTEGER NOT NULL,
",
    key_columns!(),
    "    PRIMARY KEY (ledger, hour_ms, src, dst, proto, sport, dport, icmp_type, icmp_code,
                 fragment, vlan)
) WITHOUT ROWID;

-- Per ledger and UTC hour: the sum of every cut committed. Never pruned.
CREATE TABLE hour_ledger (
    ledger             INTEGER NOT NULL REFERENCES ledger (id),
    hour_ms            INTEGER NOT NULL,
    cuts               INTEGER NOT NULL,
    flows              INTEGER NOT NULL,
",
    cut_totals!(),
    "    PRIMARY KEY (ledger, hour_ms)
) WITHOUT ROWID;
",
);

/// What a database holds, as far as netledger is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No table at all: a new or empty file (version 0).
    Empty,
    /// A netledger store of this schema version.
    Version(i64),
    /// Tables, but no `meta` table: not ours.
    Foreign,
}

/// Read what `conn` holds without writing anything.
pub(crate) fn inspect(conn: &Connection, path: &Path) -> Result<Found> {
    let op = "reading the schema";
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(sql(path, op))?;
    if tables == 0 {
        return Ok(Found::Empty);
    }
    let has_meta: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(sql(path, op))?;
    if has_meta == 0 {
        return Ok(Found::Foreign);
    }
    let v: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path, op))?;
    match v {
        Some(v) if v >= 1 => Ok(Found::Version(v)),
        other => Err(Error::BadValue {
            path: path.to_path_buf(),
            what: "schema_version",
            value: format!("{other:?}"),
        }),
    }
}

/// Bring the store to [`SCHEMA_VERSION`] in one transaction, holding the
/// write lock from the start so two processes opening a new store at once
/// do not both create it.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(path, "starting the migration"))?;
    let from = match inspect(&tx, path)? {
        Found::Empty => 0,
        Found::Version(v) if v > SCHEMA_VERSION => {
            return Err(Error::NewerSchema {
                path: path.to_path_buf(),
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        Found::Version(v) => v,
        Found::Foreign => {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
            })
        }
    };
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &MIGRATIONS[from as usize..] {
        tx.execute_batch(step)
            .map_err(sql(path, "migrating the schema"))?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )
    .map_err(sql(path, "migrating the schema"))?;
    tx.commit().map_err(sql(path, "committing the migration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A released migration never changes: version 1's text, byte for byte,
    /// is the one stores were created with (FNV-1a 64 of it).
    #[test]
    fn v1_is_as_released() {
        let hash = V1.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!((V1.len(), hash), (4619, 0xa498_b96f_d8b6_22fe));
    }
}
