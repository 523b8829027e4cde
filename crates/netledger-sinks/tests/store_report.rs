//! `netledger report` on a fixed database: the exact text of every kind of
//! row in every format against golden files in tests/golden/report_*
//! (`UPDATE_GOLDEN=1 cargo test` rewrites them), periods cut in
//! Europe/Berlin across both changes of summer time and a month's end, and
//! the reconciliation check, both when the numbers agree and when a row was
//! changed behind the store's back.

mod store_common;

use std::time::Duration;

use netledger::{Count, Direction};
use netledger_sinks::store::report::{key_report, period_report, RowsFrom};
use netledger_sinks::store::{By, ReportQuery, Store, Zone, DEFAULT_FLOW_RETENTION};
use netledger_sinks::TextFormat;
use store_common::*;
use tempfile::TempDir;

const FORMATS: [(TextFormat, &str); 3] = [
    (TextFormat::Table, "table"),
    (TextFormat::Jsonl, "jsonl"),
    (TextFormat::Csv, "csv"),
];

/// The fixed database in a temporary directory (removed when dropped).
fn db() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = fixed_db(&dir.path().join("history.db"));
    (dir, store)
}

/// Every format of one report against its golden files; each must reconcile.
fn goldens(store: &Store, name: &str, by: By, zone: Zone, adjust: impl Fn(&mut ReportQuery)) {
    for (format, ext) in FORMATS {
        let (got, check) = report(store, by, format, zone.clone(), &adjust);
        assert!(check.exact(), "{name}.{ext}: {}", check.verdict());
        if format == TextFormat::Jsonl {
            for line in got.lines() {
                let _: serde_json::Value = serde_json::from_str(line).unwrap();
            }
        }
        if format == TextFormat::Csv {
            let cols = got.lines().next().unwrap().split(',').count();
            assert!(
                got.lines().all(|l| l.split(',').count() == cols),
                "{name}.csv: ragged rows"
            );
        }
        golden(&format!("{name}.{ext}"), &got);
    }
}

/// The JSON lines of a report, parsed.
fn json(
    store: &Store,
    by: By,
    zone: Zone,
    adjust: impl Fn(&mut ReportQuery),
) -> Vec<serde_json::Value> {
    let (got, _) = report(store, by, TextFormat::Jsonl, zone, adjust);
    got.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tzdata_is_installed() {
    assert!(
        std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file(),
        "the report tests need the zone database: apt-get install -y tzdata"
    );
}

#[test]
fn by_hour_across_the_end_of_summer_time() {
    let (_dir, store) = db();
    let window = |q: &mut ReportQuery| {
        q.since = Some(at("2026-10-24T20:00:00Z"));
        q.until = Some(at("2026-10-25T04:00:00Z"));
    };
    goldens(&store, "report_hour", By::Hour, berlin(), window);
    let (utc, _) = report(&store, By::Hour, TextFormat::Table, Zone::Utc, window);
    golden("report_hour_utc.table", &utc);
    // Two local hours labelled 02:00, an hour apart.
    let labels: Vec<String> = json(&store, By::Hour, berlin(), window)
        .iter()
        .filter(|r| r["type"] == "period" && r["iface"] == "eth0")
        .map(|r| r["period"].as_str().unwrap().to_string())
        .collect();
    assert!(
        labels.contains(&"2026-10-25T02:00+02:00".to_string()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"2026-10-25T02:00+01:00".to_string()),
        "{labels:?}"
    );
}

#[test]
fn by_day_in_local_time_and_utc() {
    let (_dir, store) = db();
    goldens(&store, "report_day", By::Day, berlin(), |_| {});
    let (utc, _) = report(&store, By::Day, TextFormat::Table, Zone::Utc, |_| {});
    golden("report_day_utc.table", &utc);
    let recs = json(&store, By::Day, berlin(), |_| {});
    let day = |label: &str| {
        recs.iter()
            .find(|r| r["iface"] == "eth0" && r["period"] == label && r["estimated"] == false)
            .unwrap_or_else(|| panic!("no day {label}"))
            .clone()
    };
    // Clocks go back on 2026-10-25 and forward on 2027-03-28.
    assert_eq!(day("2026-10-25")["seconds"], 25 * 3600);
    assert_eq!(day("2026-10-25")["start"], "2026-10-25T00:00:00+02:00");
    assert_eq!(day("2026-10-25")["end"], "2026-10-26T00:00:00+01:00");
    assert_eq!(day("2027-03-28")["seconds"], 23 * 3600);
    // The running day: 11.5 hours elapsed at 11:30 local time, and its
    // estimate is its totals scaled to 24 hours.
    let today = day("2027-03-29");
    assert_eq!(today["running"], true);
    assert_eq!(today["seconds"], 11 * 3600 + 1800);
    let est = recs
        .iter()
        .find(|r| r["iface"] == "eth0" && r["estimated"] == true)
        .unwrap();
    assert_eq!(est["period"], "2027-03-29");
    let bytes = |r: &serde_json::Value, side: &str| r[side]["bytes"].as_u64().unwrap();
    for side in ["rx", "tx"] {
        assert_eq!(
            bytes(est, side),
            bytes(&today, side) * 86_400 / 41_400,
            "{side}"
        );
    }
    assert_eq!(bytes(est, "total"), bytes(est, "rx") + bytes(est, "tx"));
}

#[test]
fn by_month_in_local_time_and_utc() {
    let (_dir, store) = db();
    goldens(&store, "report_month", By::Month, berlin(), |_| {});
    let (utc, _) = report(&store, By::Month, TextFormat::Table, Zone::Utc, |_| {});
    golden("report_month_utc.table", &utc);
    let total = |zone: Zone, label: &str| -> u64 {
        json(&store, By::Month, zone, |_| {})
            .iter()
            .filter(|r| r["period"] == label && r["estimated"] == false)
            .map(|r| r["total"]["bytes"].as_u64().unwrap())
            .sum()
    };
    // The cut at 23:00 UTC on October 31st is November's in Berlin.
    let (local_oct, utc_oct) = (total(berlin(), "2026-10"), total(Zone::Utc, "2026-10"));
    let (local_nov, utc_nov) = (total(berlin(), "2026-11"), total(Zone::Utc, "2026-11"));
    assert!(local_oct < utc_oct, "{local_oct} {utc_oct}");
    assert_eq!(local_oct + local_nov, utc_oct + utc_nov);
}

#[test]
fn a_half_hour_offset_counts_each_utc_hour_in_the_day_it_starts_in() {
    let (_dir, store) = db();
    let india = Zone::named("Asia/Kolkata").unwrap();
    let hours = |q: &mut ReportQuery| {
        q.since = Some(at("2026-10-24T17:00:00Z"));
        q.until = Some(at("2026-10-24T20:00:00Z"));
    };
    let (_, check) = report(&store, By::Day, TextFormat::Jsonl, india.clone(), hours);
    assert!(check.exact(), "{}", check.verdict());
    let recs = json(&store, By::Day, india.clone(), hours);
    let days: Vec<(&str, &str)> = recs
        .iter()
        .filter(|r| r["type"] == "period" && r["iface"] == "eth0")
        .map(|r| (r["period"].as_str().unwrap(), r["start"].as_str().unwrap()))
        .collect();
    // 17:00Z and 18:00Z start at 22:30 and 23:30 on the 24th, 19:00Z at
    // 00:30 on the 25th.
    assert_eq!(
        days,
        [
            ("2026-10-24", "2026-10-24T00:00:00+05:30"),
            ("2026-10-25", "2026-10-25T00:00:00+05:30")
        ]
    );
    let hour = |from: &str, to: &str| {
        report(&store, By::Hour, TextFormat::Jsonl, Zone::Utc, |q| {
            q.since = Some(at(from));
            q.until = Some(at(to));
        })
        .1
        .rows
    };
    let day24: u64 = recs
        .iter()
        .filter(|r| r["period"] == "2026-10-24")
        .map(|r| r["total"]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        day24,
        hour("2026-10-24T17:00:00Z", "2026-10-24T19:00:00Z").bytes
    );
    let (_, labels) = report(&store, By::Hour, TextFormat::Table, india, hours);
    assert!(labels.exact());
}

#[test]
fn by_flow_over_all_history_uses_the_hourly_rollups() {
    let (_dir, store) = db();
    goldens(&store, "report_flow", By::Flow, berlin(), |_| {});
    let mut q = ReportQuery::new(at(NOW));
    q.by = By::Flow;
    q.since = Some(at("2026-10-24T20:30:00Z"));
    let r = key_report(&store, &q).unwrap();
    assert_eq!(r.rows_from, RowsFrom::Hourly);
    assert_eq!(
        r.from,
        Some(at("2026-10-24T20:00:00Z")),
        "rounded to the hour"
    );
}

#[test]
fn by_flow_within_flow_retention_uses_the_flow_records() {
    let (_dir, store) = db();
    let recent = |q: &mut ReportQuery| q.since = Some(at("2027-03-28T00:00:00Z"));
    goldens(&store, "report_flow_exact", By::Flow, berlin(), recent);
    let mut q = ReportQuery::new(at(NOW));
    q.by = By::Flow;
    q.since = Some(at("2027-03-28T01:30:00Z"));
    let r = key_report(&store, &q).unwrap();
    assert_eq!(r.rows_from, RowsFrom::Flows);
    // Exact cut boundaries: the first cut starting at or after 01:30.
    let start = r.intervals.iter().map(|iv| iv.start).min().unwrap();
    assert_eq!(start, at("2027-03-28T03:00:00Z"));
}

#[test]
fn by_source_and_destination() {
    let (_dir, store) = db();
    goldens(&store, "report_src", By::Src, berlin(), |_| {});
    goldens(&store, "report_dst", By::Dst, berlin(), |q| {
        q.since = Some(at("2027-03-28T00:00:00Z"))
    });
}

#[test]
fn top_interface_and_direction_filters() {
    let (_dir, store) = db();
    let (got, check) = report(&store, By::Flow, TextFormat::Table, berlin(), |q| {
        q.iface = Some("eth0".into());
        q.dir = Some(Direction::Out);
        q.top = Some(3);
    });
    assert!(check.exact());
    assert!(got.contains("more flows"));
    assert!(!got.contains("wlan0") && !got.contains("eth0 in"));
    golden("report_flow_eth0_out_top3.table", &got);
}

#[test]
fn an_empty_range_says_so_and_reconciles() {
    let (_dir, store) = db();
    for by in By::ALL {
        let (got, check) = report(&store, by, TextFormat::Table, Zone::Utc, |q| {
            q.since = Some(at("2030-01-01T00:00:00Z"));
        });
        assert!(check.exact());
        assert_eq!(check.rows, Count::default());
        assert!(got.contains("no cuts in the range"), "{by}: {got}");
    }
}

/// The sum of every committed interval's flow records and buckets, from
/// the intervals themselves (not the store).
fn committed_totals() -> (Count, Count) {
    let (mut flows, mut seen) = (Count::default(), Count::default());
    for (_, iv) in fixed_intervals() {
        flows.add(iv.flow_total());
        seen.add(iv.buckets.get(netledger::Bucket::Seen));
    }
    (flows, seen)
}

#[test]
fn every_report_of_the_fixed_database_reconciles() {
    let (_dir, store) = db();
    let (flows, seen) = committed_totals();
    let ranges: [(Option<&str>, Option<&str>); 4] = [
        (None, None),
        (Some("2027-03-28T00:00:00Z"), None),
        (Some("2026-10-25T00:30:00Z"), Some("2026-10-31T22:10:00Z")),
        (Some("2026-10-20T00:00:00Z"), Some("2026-10-27T00:00:00Z")),
    ];
    for by in By::ALL {
        for zone in [berlin(), Zone::Utc] {
            for (since, until) in ranges {
                let (_, check) = report(&store, by, TextFormat::Jsonl, zone.clone(), |q| {
                    q.since = since.map(at);
                    q.until = until.map(at);
                });
                assert!(
                    check.exact(),
                    "{by} {since:?} {until:?}: {}",
                    check.verdict()
                );
                assert_eq!(check.rows, check.total);
                assert_eq!(check.total, check.counted);
                assert_eq!(check.seen, check.buckets);
                if since.is_none() && until.is_none() {
                    assert_eq!(check.rows, flows, "{by}: all history");
                    assert_eq!(check.seen, seen, "{by}: all history");
                }
            }
        }
    }
    // Periods and keys over the same whole hours count the same traffic.
    let hours = |q: &mut ReportQuery| {
        q.since = Some(at("2026-10-25T00:00:00Z"));
        q.until = Some(at("2026-10-31T22:00:00Z"));
    };
    let (_, days) = report(&store, By::Day, TextFormat::Csv, Zone::Utc, hours);
    let (_, keys) = report(&store, By::Flow, TextFormat::Csv, Zone::Utc, hours);
    assert_eq!(days.rows, keys.rows);
}

#[test]
fn the_period_sums_match_the_jsonl_rows() {
    let (_dir, store) = db();
    let mut q = ReportQuery::new(at(NOW));
    q.zone = berlin();
    let r = period_report(&store, &q).unwrap();
    let mut sum = Count::default();
    for i in &r.ifaces {
        let (rx, tx) = i.sum();
        sum.add(rx);
        sum.add(tx);
        assert!(i.estimated.is_some(), "{}: the running day", i.iface);
    }
    assert_eq!(sum, r.check.rows);
}

/// Run SQL on the store's file behind its back.
fn tamper(dir: &TempDir, sql: &str) {
    let conn = rusqlite::Connection::open(dir.path().join("history.db")).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

#[test]
fn a_flow_row_deleted_behind_the_stores_back_shows_in_the_check() {
    let (dir, store) = db();
    let id = ledger_id(&store, "c3", "eth0", Direction::In);
    tamper(
        &dir,
        &format!(
            "DELETE FROM flow WHERE ledger = {} AND seq = (SELECT max(seq) FROM cut WHERE ledger = {0}) AND n = 0",
            id.get()
        ),
    );
    let recent = |q: &mut ReportQuery| q.since = Some(at("2027-03-28T00:00:00Z"));
    let (table, check) = report(&store, By::Flow, TextFormat::Table, berlin(), recent);
    assert!(!check.exact());
    assert_eq!(check.differences.len(), 1, "{:?}", check.differences);
    assert!(
        check.differences[0].starts_with("eth0 in: rows "),
        "{:?}",
        check.differences
    );
    assert!(check.rows.bytes < check.total.bytes);
    let last = table.lines().last().unwrap();
    assert!(
        last.starts_with("check: rows ") && last.contains(" != interface total "),
        "{last}"
    );
    assert!(last.contains(": mismatch: eth0 in: rows "), "{last}");
    for (format, marker) in [
        (TextFormat::Jsonl, "\"status\":\"mismatch\""),
        (TextFormat::Csv, "mismatch: eth0 in: rows"),
    ] {
        let (got, _) = report(&store, By::Src, format, berlin(), recent);
        assert!(got.lines().last().unwrap().contains(marker), "{got}");
    }
    // The hourly rollups still hold the record: whole history reconciles.
    let (_, all) = report(&store, By::Flow, TextFormat::Table, berlin(), |_| {});
    assert!(all.exact(), "{}", all.verdict());
}

#[test]
fn an_hourly_total_changed_behind_the_stores_back_shows_in_period_reports() {
    let (dir, store) = db();
    let id = ledger_id(&store, "b2", "wlan0", Direction::Out);
    tamper(
        &dir,
        &format!(
            "UPDATE hour_ledger SET flow_bytes = flow_bytes + 1000 WHERE ledger = {} AND hour_ms = (SELECT min(hour_ms) FROM hour_ledger WHERE ledger = {0})",
            id.get()
        ),
    );
    for by in [By::Hour, By::Day, By::Month] {
        let (_, check) = report(&store, by, TextFormat::Table, berlin(), |_| {});
        assert_eq!(check.differences.len(), 1, "{by}: {:?}", check.differences);
        let d = &check.differences[0];
        assert!(d.starts_with("wlan0 out: rows "), "{by}: {d}");
        assert!(d.contains(" but interface total "), "{by}: {d}");
        assert!(d.ends_with(" (+0 packets +1000 bytes)"), "{by}: {d}");
        assert_eq!(check.rows.bytes, check.total.bytes + 1000);
    }
}

#[test]
fn counted_and_seen_disagreements_are_named() {
    let (dir, store) = db();
    let id = ledger_id(&store, "a1", "eth0", Direction::Out);
    tamper(
        &dir,
        &format!(
            "UPDATE cut SET counted_packets = counted_packets + 2 WHERE ledger = {} AND seq = 3",
            id.get()
        ),
    );
    tamper(
        &dir,
        &format!(
            "UPDATE cut SET seen_bytes = seen_bytes - 5 WHERE ledger = {} AND seq = 4",
            id.get()
        ),
    );
    let (text, check) = report(&store, By::Day, TextFormat::Table, Zone::Utc, |_| {});
    let d = &check.differences;
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("eth0 out: interface total "), "{d:?}");
    assert!(d[0].contains(" but counted "), "{d:?}");
    assert!(d[0].ends_with(" (-2 packets +0 bytes)"), "{d:?}");
    // counted is one of the buckets that add up to seen: both changed.
    assert!(d[1].starts_with("eth0 out: seen "), "{d:?}");
    assert!(d[1].ends_with(" (-2 packets -5 bytes)"), "{d:?}");
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("interface total") && last.contains(" != counted "),
        "{last}"
    );
    assert!(last.contains(" != buckets "), "{last}");
}

#[test]
fn the_rollup_retention_is_named_where_a_range_reaches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = fixed_db(&dir.path().join("history.db"));
    let pruned = store
        .prune(
            at(NOW),
            DEFAULT_FLOW_RETENTION,
            Some(Duration::from_secs(30 * 86_400)),
        )
        .unwrap();
    assert!(pruned.key_hour_rows > 0);
    let (text, check) = report(&store, By::Flow, TextFormat::Table, Zone::Utc, |_| {});
    assert!(
        text.contains("note: per-key hourly totals before 2027-02-27T09:00:00.000Z were removed by the rollup retention"),
        "{text}"
    );
    // October's keys are gone, its cuts are not: the check says by how much.
    assert!(!check.exact());
    // Periods come from the per-ledger hours, which retention never touches.
    let (_, days) = report(&store, By::Day, TextFormat::Table, Zone::Utc, |_| {});
    assert!(days.exact(), "{}", days.verdict());
    // A range after the retention's bound is whole again.
    let (text, recent) = report(&store, By::Flow, TextFormat::Table, Zone::Utc, |q| {
        q.since = Some(at("2027-03-01T00:00:00Z"))
    });
    assert!(recent.exact(), "{}", recent.verdict());
    assert!(!text.contains("note:"));
}
