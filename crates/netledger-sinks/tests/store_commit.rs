//! Committing cuts: idempotent by sequence number, all or nothing when the
//! disk is full or another writer holds the lock, whole after a `kill -9`
//! at any point; retention that prunes flow records and never the
//! per-ledger hours; rollups that always equal the sum of every cut.

mod store_common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use netledger::{Bucket, Count, Direction, Interval, Sink};
use netledger_sinks::store::{
    Access, Committed, Error, LedgerInfo, Pruned, Store, StoreSink, DEFAULT_FLOW_RETENTION,
};
use store_common::*;

fn info(iface: &str, dir: Direction) -> LedgerInfo {
    LedgerInfo::new("t1", iface, dir, &Default::default())
}

/// Cut `seq` of eth0 in: a minute long, starting `seq` minutes after noon.
fn cut(seq: u64) -> Interval {
    let start = at("2026-12-01T12:00:00Z") + Duration::from_secs(60 * (seq - 1));
    interval(
        "eth0",
        Direction::In,
        seq,
        start,
        start + Duration::from_secs(60),
        flows_for(Kind::Five, Direction::In, seq),
        seq,
    )
}

/// `n` distinct five-tuple flows.
fn many_flows(n: u32, salt: u32) -> Vec<(netledger::FlowKey, Count)> {
    (0..n)
        .map(|i| {
            let src = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let k = ports(&src, (i % 60_000) as u16 + 1024, "192.0.2.1", 443, 6);
            let p = u64::from(i % 7 + salt + 1);
            (k, count(p, p * 1000))
        })
        .collect()
}

/// The cut/flow/rollup rows as (hour_ledger sums, hour_key sums) from the
/// store's file.
fn hour_tables(path: &Path) -> (String, String) {
    let d = dump(path);
    let pick = |t: &str| {
        d.lines()
            .filter(|l| l.starts_with(&format!("{t}:")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    (pick("hour_ledger"), pick("hour_key"))
}

#[test]
fn commits_and_finds_the_last_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("h.db"), Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    assert_eq!(s.ledger(&info("eth0", Direction::In)).unwrap(), id);
    assert_ne!(s.ledger(&info("eth0", Direction::Out)).unwrap(), id);
    assert_eq!(s.last_cut(id).unwrap(), None);
    for seq in 1..=3 {
        let iv = cut(seq);
        assert_eq!(
            s.commit(id, &iv).unwrap(),
            Committed::Inserted {
                flows: iv.flows.len()
            }
        );
    }
    let last = s.last_cut(id).unwrap().unwrap();
    assert_eq!(last.seq, 3);
    assert_eq!(last.start, cut(3).start);
    assert_eq!(last.end, cut(3).end);
    assert_eq!(s.last_seq(id).unwrap(), Some(3));
}

#[test]
fn the_same_seq_twice_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut s = Store::open(&path, Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    s.commit(id, &cut(1)).unwrap();
    let once = dump(&path);
    assert_eq!(
        s.commit(id, &cut(1)).unwrap(),
        Committed::AlreadyThere { same_counts: true }
    );
    assert_eq!(dump(&path), once);
    // A redone cut whose counts differ is not stored either, and says so.
    let mut other = cut(1);
    other.flows[0].1.bytes += 1;
    assert_eq!(
        s.commit(id, &other).unwrap(),
        Committed::AlreadyThere { same_counts: false }
    );
    assert_eq!(dump(&path), once);
}

#[test]
fn bad_commits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("h.db"), Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    let mut zero = cut(1);
    zero.seq = 0;
    assert!(matches!(s.commit(id, &zero), Err(Error::SeqZero { .. })));
    let wlan = cut(1).labelled("wlan0", Direction::In);
    let err = s.commit(id, &wlan).unwrap_err();
    assert!(matches!(err, Error::WrongLedger { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "interval of wlan0 in committed to ledger {}, which counts eth0 in",
            id.get()
        )
    );
    let out = s.ledger(&info("eth0", Direction::Out)).unwrap();
    assert!(matches!(
        s.commit(out, &cut(1)),
        Err(Error::WrongLedger { .. })
    ));
    let mut huge = cut(1);
    huge.flows[0].1.bytes = u64::MAX;
    assert!(matches!(s.commit(id, &huge), Err(Error::TooLarge { .. })));
    assert_eq!(s.last_seq(id).unwrap(), None);
}

#[test]
fn a_commit_that_fills_the_disk_changes_nothing_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut s = Store::open(&path, Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    for seq in 1..=3 {
        s.commit(id, &cut(seq)).unwrap();
    }
    let before = dump(&path);
    // No growth allowed: the cut's pages do not fit, mid-transaction.
    s.set_size_limit(Some(1)).unwrap();
    let mut big = cut(4);
    big.flows = many_flows(5000, 0);
    big.buckets = buckets_for(&big.flows, 4);
    let err = s.commit(id, &big).unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no space left (committing a cut)"),
        "{err}"
    );
    assert_eq!(dump(&path), before);
    assert_eq!(s.last_seq(id).unwrap(), Some(3));
    // Space again: the same cut commits, once.
    s.set_size_limit(None).unwrap();
    assert_eq!(
        s.commit(id, &big).unwrap(),
        Committed::Inserted { flows: 5000 }
    );
    assert_eq!(
        s.commit(id, &big).unwrap(),
        Committed::AlreadyThere { same_counts: true }
    );
    assert_eq!(
        rows(&path, "flow") as usize,
        5000 + (1..=3).map(|q| cut(q).flows.len()).sum::<usize>()
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (cuts, bytes): (i64, i64) = conn
        .query_row(
            "SELECT sum(cuts), sum(flow_bytes) FROM hour_ledger",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let want: u64 =
        (1..=3).map(|q| cut(q).flow_total().bytes).sum::<u64>() + big.flow_total().bytes;
    assert_eq!((cuts, bytes as u64), (4, want));
}

#[test]
fn a_commit_that_finds_the_store_locked_changes_nothing_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut s = Store::open(&path, Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    s.commit(id, &cut(1)).unwrap();
    s.set_busy_timeout(Duration::from_millis(100)).unwrap();
    let before = dump(&path);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = Instant::now();
    let err = s.commit(id, &cut(2)).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(dump(&path), before);
    s.commit(id, &cut(2)).unwrap();
    assert_eq!(s.last_seq(id).unwrap(), Some(2));
}

/// Expected rollups from the intervals themselves: per (ledger, hour, key)
/// and per (ledger, hour) as text lines comparable with the tables.
#[test]
fn rollups_equal_the_sum_of_every_cut_and_survive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut s = Store::open(&path, Access::ReadWrite).unwrap();
    let mut ivs = fixed_intervals();
    // One key twice in one cut (records are not merged by every strategy).
    let (_, dup) = ivs.iter_mut().find(|(_, iv)| iv.seq == 2).unwrap();
    let again = dup.flows[0];
    dup.flows.push(again);
    dup.buckets = buckets_for(&dup.flows, 99);
    let mut want_key: BTreeMap<(String, i64, String), Count> = BTreeMap::new();
    let mut want_hour: BTreeMap<(String, i64), (u64, Count, Count, Count)> = BTreeMap::new();
    for (info, iv) in &ivs {
        let id = s.ledger(info).unwrap();
        s.commit(id, iv).unwrap();
        let ms = iv
            .start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let hour = ms / 3_600_000 * 3_600_000;
        let l = format!("{}", id.get());
        for (k, c) in &iv.flows {
            want_key
                .entry((l.clone(), hour, serde_json::to_string(k).unwrap()))
                .or_default()
                .add(*c);
        }
        let e = want_hour.entry((l, hour)).or_default();
        e.0 += 1;
        e.1.add(iv.flow_total());
        e.2.add(iv.buckets.get(Bucket::Seen));
        e.3.add(iv.buckets.get(Bucket::Counted));
    }
    let check = |path: &Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        // Per key: rebuild the key's JSON from the sentinel-coded columns
        // through a report-independent decoding.
        let mut st = conn
            .prepare(
                "SELECT ledger, hour_ms, src, dst, proto, sport, dport, icmp_type, icmp_code,
                 fragment, vlan, packets, bytes FROM hour_key",
            )
            .unwrap();
        let mut got_key: BTreeMap<(String, i64, String), Count> = BTreeMap::new();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let s = |i| r.get::<_, String>(i).unwrap();
            let n = |i| r.get::<_, i64>(i).unwrap();
            let addr = |t: String| {
                (!t.is_empty()).then(|| {
                    let (ip, p) = t
                        .split_once('/')
                        .map_or((t.as_str(), None), |(a, b)| (a, Some(b.parse().unwrap())));
                    store_common::addr(ip, p)
                })
            };
            let opt = |v: i64| (v != -1).then_some(v);
            let key = netledger::FlowKey {
                src: addr(s(2)),
                dst: addr(s(3)),
                proto: opt(n(4)).map(|v| v as u8),
                l4: match (opt(n(5)), opt(n(6)), opt(n(7)), opt(n(8))) {
                    (Some(a), Some(b), _, _) => netledger::L4::Ports {
                        src: a as u16,
                        dst: b as u16,
                    },
                    (_, _, Some(a), Some(b)) => netledger::L4::Icmp {
                        kind: a as u8,
                        code: b as u8,
                    },
                    _ => netledger::L4::None,
                },
                fragment: n(9) == 1,
                vlan: opt(n(10)).map(|v| v as u16),
            };
            got_key.insert(
                (n(0).to_string(), n(1), serde_json::to_string(&key).unwrap()),
                count(n(11) as u64, n(12) as u64),
            );
        }
        assert_eq!(got_key, want_key);
        let mut st = conn
            .prepare(
                "SELECT ledger, hour_ms, cuts, flow_packets, flow_bytes, seen_packets, seen_bytes,
                 counted_packets, counted_bytes FROM hour_ledger",
            )
            .unwrap();
        let got_hour: BTreeMap<(String, i64), (u64, Count, Count, Count)> = st
            .query_map([], |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
                Ok((
                    (r.get::<_, i64>(0)?.to_string(), r.get(1)?),
                    (
                        n(2)?,
                        count(n(3)?, n(4)?),
                        count(n(5)?, n(6)?),
                        count(n(7)?, n(8)?),
                    ),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got_hour, want_hour);
    };
    check(&path);
    let cuts = rows(&path, "cut");
    let (hours, keys) = hour_tables(&path);

    let pruned = s.prune(at(NOW), DEFAULT_FLOW_RETENTION, None).unwrap();
    assert!(pruned.cuts > 0 && pruned.flow_rows > 0, "{pruned:?}");
    assert_eq!(pruned.key_hour_rows, 0);
    // Only cuts that ended more than 48 hours before now lost their records.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (kept_old, gone_new): (i64, i64) = conn
        .query_row(
            "SELECT
               (SELECT count(*) FROM flow f JOIN cut c USING (ledger, seq) WHERE c.end_ms < ?1),
               (SELECT count(*) FROM cut WHERE flows_kept = 0 AND end_ms >= ?1)",
            [at(NOW)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                - 48 * 3_600_000],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kept_old, gone_new), (0, 0));
    assert!(rows(&path, "flow") > 0, "March's recent cuts keep theirs");
    assert_eq!(rows(&path, "cut"), cuts);
    assert_eq!(hour_tables(&path), (hours.clone(), keys.clone()));
    check(&path);
    // Pruning again finds nothing more.
    assert_eq!(
        s.prune(at(NOW), DEFAULT_FLOW_RETENTION, None).unwrap(),
        Pruned::default()
    );

    // A rollup retention removes old per-key hours, never per-ledger ones.
    let month = Duration::from_secs(30 * 86_400);
    let pruned = s
        .prune(at(NOW), DEFAULT_FLOW_RETENTION, Some(month))
        .unwrap();
    assert!(pruned.key_hour_rows > 0);
    let (hours_after, keys_after) = hour_tables(&path);
    assert_eq!(hours_after, hours);
    assert_ne!(keys_after, keys);
    let oldest: i64 = conn
        .query_row("SELECT min(hour_ms) FROM hour_key", [], |r| r.get(0))
        .unwrap();
    assert!(
        oldest
            >= at("2027-02-27T09:00:00Z")
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
    );
}

#[test]
fn the_sink_commits_each_interval_and_numbers_unnumbered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/h.db");
    let mut sink = StoreSink::open(&path, &info("eth0", Direction::In)).unwrap();
    for seq in [0, 0, 7] {
        let mut iv = cut(1);
        iv.seq = seq;
        sink.interval(&iv).unwrap();
    }
    // A redone cut is not an error: it is there already.
    sink.interval(&cut(7)).unwrap();
    sink.close().unwrap();
    let id = sink.ledger();
    let store = sink.into_store();
    let seqs: Vec<u64> = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut st = conn.prepare("SELECT seq FROM cut ORDER BY seq").unwrap();
        st.query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(seqs, [1, 2, 7]);
    assert_eq!(store.last_seq(id).unwrap(), Some(7));
}

/// Where [`cuts_commit_one_after_another`] commits when the kill test runs
/// it (until killed); without it, the test commits a few cuts of its own.
const CHILD_DB: &str = "NETLEDGER_STORE_TEST_CHILD_DB";

/// Flow records per cut in the kill test.
const KILL_FLOWS: u32 = 20_000;

/// Cuts of [`KILL_FLOWS`] records, committed one after another: three into
/// a store of its own, checked; run by the kill test, as many as it takes
/// to be killed.
#[test]
fn cuts_commit_one_after_another() {
    let own = tempfile::tempdir().unwrap();
    let (path, cuts) = match std::env::var_os(CHILD_DB) {
        Some(path) => (PathBuf::from(path), 10_000u64),
        None => (own.path().join("h.db"), 3),
    };
    let mut s = Store::open(&path, Access::ReadWrite).unwrap();
    let id = s.ledger(&info("eth0", Direction::In)).unwrap();
    for seq in 1..=cuts {
        let mut iv = cut(seq);
        iv.flows = many_flows(KILL_FLOWS, seq as u32);
        iv.buckets = buckets_for(&iv.flows, seq);
        s.commit(id, &iv).unwrap();
    }
    assert_eq!(s.last_seq(id).unwrap(), Some(cuts));
    assert_eq!(rows(&path, "flow"), (cuts * u64::from(KILL_FLOWS)) as i64);
}

#[test]
fn a_kill_during_commits_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    drop(Store::open(&path, Access::ReadWrite).unwrap());
    let exe = std::env::current_exe().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "cuts_commit_one_after_another", "--nocapture"])
            .env(CHILD_DB, &path)
            .spawn()
            .unwrap();
        // Wait for a cut or two more, then kill -9 at some point of the next.
        let start_cuts = rows(&path, "cut");
        let deadline = Instant::now() + Duration::from_secs(60);
        let target = start_cuts + 1 + round as i64;
        while rows(&path, "cut") < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: the child committed no new cut in 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(7 + 11 * round));
        // Still committing when killed, not ended by something else.
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the child ended before the kill"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}");
        eprintln!(
            "round {round}: killed with {} cuts stored",
            rows(&path, "cut")
        );
        // Whatever the moment, every committed cut is whole and counted once.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (cuts, flows, cut_flows, hour_cuts, key_bytes, cut_bytes): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM cut), (SELECT count(*) FROM flow),
                        (SELECT sum(flows) FROM cut), (SELECT sum(cuts) FROM hour_ledger),
                        (SELECT sum(bytes) FROM hour_key), (SELECT sum(flow_bytes) FROM cut)",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert!(cuts > 0);
        assert_eq!(flows, cut_flows, "round {round}");
        assert_eq!(flows, cuts * i64::from(KILL_FLOWS), "round {round}");
        assert_eq!(hour_cuts, cuts, "round {round}");
        assert_eq!(key_bytes, cut_bytes, "round {round}");
        // The restarted daemon redoes its last cut: already there.
        let mut s = Store::open(&path, Access::ReadWrite).unwrap();
        let id = s.ledger(&info("eth0", Direction::In)).unwrap();
        let last = s.last_seq(id).unwrap().unwrap();
        let mut iv = cut(last);
        iv.flows = many_flows(KILL_FLOWS, last as u32);
        iv.buckets = buckets_for(&iv.flows, last);
        assert_eq!(
            s.commit(id, &iv).unwrap(),
            Committed::AlreadyThere { same_counts: true }
        );
        drop(s);
        // Empty the store: the next round's child starts again at seq 1.
        conn.execute_batch(
            "DELETE FROM flow; DELETE FROM cut; DELETE FROM hour_key; DELETE FROM hour_ledger;",
        )
        .unwrap();
    }
}
