//! Writing: the crash-safe commit of a cut, and retention.

use std::time::{Duration, SystemTime};

use netledger::Interval;
use rusqlite::{params, params_from_iter, OptionalExtension, TransactionBehavior};

use super::codec::{
    self, bucket_columns, bucket_values, hour_of, int, ms, KeyColumns, KEY_COLUMNS,
};
use super::error::{sql, Error, Result};
use super::{LedgerId, Store};

/// What [`Store::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The cut is stored now, with this many flow records.
    Inserted {
        /// Flow records written.
        flows: usize,
    },
    /// A cut of this ledger with this sequence number was already stored
    /// (the daemon redid a cut whose commit had landed before it died):
    /// nothing changed. The kernel's copy can be cleared.
    AlreadyThere {
        /// Whether the stored cut has the same buckets and flow totals as
        /// the interval given. `false` means the redone cut is not the one
        /// stored (worth a warning: the stored one is kept).
        same_counts: bool,
    },
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Cuts whose flow records were removed (their cut rows stay).
    pub cuts: u64,
    /// Flow records removed.
    pub flow_rows: u64,
    /// Per-key hourly rows removed by the rollup retention.
    pub key_hour_rows: u64,
}

impl Store {
    /// Commit one cut of `ledger` in one transaction: the cut row, its flow
    /// records, and the hourly rollups of its keys and of the ledger (UTC
    /// hour of its start). Idempotent by `iv.seq`, which must be > 0: if the
    /// ledger already has that cut, nothing changes and
    /// [`Committed::AlreadyThere`] says so. On any error (disk full, locked,
    /// read-only) the transaction is rolled back and the store is as
    /// before: committing the same cut again later is correct.
    pub fn commit(&mut self, ledger: LedgerId, iv: &Interval) -> Result<Committed> {
        self.commit_as(ledger, iv, iv.seq)
    }

    /// [`Store::commit`] with the sequence number `seq` instead of `iv.seq`.
    pub(crate) fn commit_as(
        &mut self,
        ledger: LedgerId,
        iv: &Interval,
        seq: u64,
    ) -> Result<Committed> {
        if seq == 0 {
            return Err(Error::SeqZero { ledger: ledger.0 });
        }
        let info = self.ledger_info(ledger)?;
        if !iv.iface.is_empty() && (iv.iface != info.iface || iv.dir != info.dir) {
            return Err(Error::WrongLedger {
                ledger: ledger.0,
                iface: info.iface,
                dir: info.dir,
                iv_iface: iv.iface.clone(),
                iv_dir: iv.dir,
            });
        }
        let seq = int("sequence number", seq)?;
        let (start_ms, end_ms) = (ms(iv.start), ms(iv.end));
        let hour = hour_of(start_ms);
        // Summed here, checked: a count beyond SQLite's range is an error,
        // not an overflow.
        let mut flow_total = [0i64; 2];
        for (_, c) in &iv.flows {
            let (p, b) = (int("packets", c.packets)?, int("bytes", c.bytes)?);
            flow_total[0] = flow_total[0].checked_add(p).ok_or(Error::TooLarge {
                what: "flow packets of the cut",
                value: c.packets,
            })?;
            flow_total[1] = flow_total[1].checked_add(b).ok_or(Error::TooLarge {
                what: "flow bytes of the cut",
                value: c.bytes,
            })?;
        }
        let flows = int("flow count", iv.flows.len() as u64)?;
        let buckets = bucket_values(&iv.buckets)?;
        let reroutes = int("reroutes", iv.buckets.reroutes)?;
        let evicted = int("evicted", iv.buckets.evicted)?;
        let totals = [flows, flow_total[0], flow_total[1]];

        let path = self.path.as_path();
        let op = "committing a cut";
        // IMMEDIATE: take the write lock (waiting up to the busy timeout)
        // before reading whether the cut is there.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path, op))?;

        let cols = bucket_columns("");
        let stored = tx
            .query_row(
                &format!(
                    "SELECT flows, flow_packets, flow_bytes, {cols}, reroutes, evicted
                     FROM cut WHERE ledger = ?1 AND seq = ?2"
                ),
                [ledger.0, seq],
                |r| {
                    let mut v = [0i64; 17];
                    for (i, x) in v.iter_mut().enumerate() {
                        *x = r.get(i)?;
                    }
                    Ok(v)
                },
            )
            .optional()
            .map_err(sql(path, op))?;
        if let Some(v) = stored {
            // Dropping the transaction rolls it back: nothing was written.
            let mut given = [0i64; 17];
            given[..3].copy_from_slice(&totals);
            given[3..15].copy_from_slice(&buckets);
            given[15] = reroutes;
            given[16] = evicted;
            return Ok(Committed::AlreadyThere {
                same_counts: v == given,
            });
        }

        let mut cut_row: Vec<i64> = vec![ledger.0, seq, start_ms, end_ms];
        cut_row.extend_from_slice(&totals);
        cut_row.extend_from_slice(&buckets);
        cut_row.extend([reroutes, evicted]);
        let marks = placeholders(cut_row.len());
        tx.execute(
            &format!(
                "INSERT INTO cut (ledger, seq, start_ms, end_ms, flows, flow_packets, flow_bytes,
                 {cols}, reroutes, evicted) VALUES ({marks})"
            ),
            params_from_iter(cut_row.iter()),
        )
        .map_err(sql(path, op))?;

        {
            let mut insert_flow = tx
                .prepare_cached(&format!(
                    "INSERT INTO flow (ledger, seq, n, {KEY_COLUMNS}, packets, bytes)
                     VALUES ({})",
                    placeholders(14)
                ))
                .map_err(sql(path, op))?;
            // In key order: the rollup's index (and the flow table) grow
            // at neighbouring pages instead of the interval's bytes order
            // scattering a million upserts over the whole index.
            let mut order: Vec<usize> = (0..iv.flows.len()).collect();
            order.sort_unstable_by(|&a, &b| iv.flows[a].0.cmp(&iv.flows[b].0));
            let mut k = KeyColumns::default();
            for (n, (key, c)) in order.iter().map(|&i| &iv.flows[i]).enumerate() {
                k.set(key);
                let (p, b) = (int("packets", c.packets)?, int("bytes", c.bytes)?);
                let [proto, sport, dport, kind, code, frag, vlan] = k.nums;
                insert_flow
                    .execute(params![
                        ledger.0, seq, n as i64, k.src, k.dst, proto, sport, dport, kind, code,
                        frag, vlan, p, b
                    ])
                    .map_err(sql(path, op))?;
            }
        }

        // The cut's keys into the hourly rollup, read back from the rows
        // just written (in key order): one statement, SQLite looping.
        tx.execute(
            &format!(
                "INSERT INTO hour_key (ledger, hour_ms, {KEY_COLUMNS}, packets, bytes)
                 SELECT ledger, ?3, {KEY_COLUMNS}, packets, bytes FROM flow
                 WHERE ledger = ?1 AND seq = ?2
                 ON CONFLICT (ledger, hour_ms, {KEY_COLUMNS}) DO UPDATE SET
                 packets = packets + excluded.packets, bytes = bytes + excluded.bytes"
            ),
            [ledger.0, seq, hour],
        )
        .map_err(sql(path, op))?;

        let sums: Vec<String> = ["flows", "flow_packets", "flow_bytes"]
            .into_iter()
            .map(str::to_string)
            .chain(cols.split(", ").map(str::to_string))
            .chain(["reroutes".to_string(), "evicted".to_string()])
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect();
        let mut hour_row: Vec<i64> = vec![ledger.0, hour];
        hour_row.extend_from_slice(&cut_row[4..]);
        tx.execute(
            &format!(
                "INSERT INTO hour_ledger (ledger, hour_ms, cuts, flows, flow_packets, flow_bytes,
                 {cols}, reroutes, evicted) VALUES (?1, ?2, 1, {})
                 ON CONFLICT (ledger, hour_ms) DO UPDATE SET cuts = cuts + 1, {}",
                placeholders_from(3, hour_row.len() - 2),
                sums.join(", ")
            ),
            params_from_iter(hour_row.iter()),
        )
        .map_err(sql(path, op))?;

        tx.commit().map_err(sql(path, op))?;
        Ok(Committed::Inserted {
            flows: iv.flows.len(),
        })
    }

    /// Retention, in one transaction: remove the flow records of cuts that
    /// ended before `now - flow_retention` (the cut rows stay, and the
    /// rollups already hold their sums) and, when `rollup_retention` is
    /// given, the per-key hourly rows of hours that ended before
    /// `now - rollup_retention`. The per-ledger hourly rows are never
    /// removed.
    pub fn prune(
        &mut self,
        now: SystemTime,
        flow_retention: Duration,
        rollup_retention: Option<Duration>,
    ) -> Result<Pruned> {
        let path = self.path.as_path();
        let op = "pruning";
        let now_ms = ms(now);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path, op))?;
        let mut pruned = Pruned::default();
        let before = now_ms.saturating_sub(codec::dur_ms(flow_retention));
        let cuts: Vec<(i64, i64)> = {
            let mut st = tx
                .prepare("SELECT ledger, seq FROM cut WHERE flows_kept = 1 AND end_ms < ?1")
                .map_err(sql(path, op))?;
            let rows = st
                .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql(path, op))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(sql(path, op))?
        };
        // Two statements prepared once for every cut (there may be
        // thousands an hour).
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM flow WHERE ledger = ?1 AND seq = ?2")
                .map_err(sql(path, op))?;
            let mut mark = tx
                .prepare_cached("UPDATE cut SET flows_kept = 0 WHERE ledger = ?1 AND seq = ?2")
                .map_err(sql(path, op))?;
            for (ledger, seq) in cuts {
                let n = delete.execute([ledger, seq]).map_err(sql(path, op))?;
                mark.execute([ledger, seq]).map_err(sql(path, op))?;
                pruned.cuts += 1;
                pruned.flow_rows += n as u64;
            }
        }
        if let Some(keep) = rollup_retention {
            // Hours that ended at or before this instant go.
            let bound = hour_of(now_ms.saturating_sub(codec::dur_ms(keep)));
            let n = tx
                .execute("DELETE FROM hour_key WHERE hour_ms < ?1", [bound])
                .map_err(sql(path, op))?;
            if n > 0 {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_hours_pruned_before_ms', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    [bound],
                )
                .map_err(sql(path, op))?;
            }
            pruned.key_hour_rows = n as u64;
        }
        tx.commit().map_err(sql(path, op))?;
        Ok(pruned)
    }
}

/// `?1, ?2, ... ?n`.
fn placeholders(n: usize) -> String {
    placeholders_from(1, n)
}

/// `n` placeholders numbered from `first`.
fn placeholders_from(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(3), "?1, ?2, ?3");
        assert_eq!(placeholders_from(3, 2), "?3, ?4");
    }
}
