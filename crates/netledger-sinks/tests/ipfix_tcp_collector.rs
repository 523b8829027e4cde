//! A TCP collector that is down, then comes up: the exporter drops and
//! counts records without blocking, reconnects once its backoff allows, and
//! sends the templates before any data on the new connection.

#[path = "ipfix_common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use netledger_sinks::ipfix::{Direction, Exporter, ExporterConfig, IpfixError};

#[test]
fn tcp_collector_down_then_up() {
    let port = free_tcp_port(None);
    let mut ex = Exporter::new(ExporterConfig {
        collectors: vec![format!("tcp://127.0.0.1:{port}")],
        observation_domain_id: 3,
        ..ExporterConfig::default()
    })
    .expect("exporter");
    let start = now_ms() - 30_000;
    let flows = sample_flows(start);
    let buckets = [sample_buckets(Direction::In, 2, start)];
    let t0 = Instant::now();

    // Nothing listens: the call returns quickly, every record is dropped.
    let called = Instant::now();
    let r = ex.export_at(t0, SystemTime::now(), &flows, &buckets);
    assert!(
        called.elapsed() < Duration::from_millis(500),
        "{:?}",
        called.elapsed()
    );
    assert_eq!((r.sent_records, r.dropped_records), (0, 8));
    assert!(
        matches!(r.errors.as_slice(), [IpfixError::Connect { .. }]),
        "{:?}",
        r.errors
    );
    assert_eq!(ex.dropped_total(0), Some(8));

    // The collector comes up, but the backoff (1 s) has not elapsed: the
    // exporter does not try yet and keeps dropping.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind collector");
    listener.set_nonblocking(true).expect("nonblocking");
    let r = ex.export_at(
        t0 + Duration::from_millis(500),
        SystemTime::now(),
        &flows[..2],
        &[],
    );
    assert_eq!((r.sent_records, r.dropped_records), (0, 2));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        listener.accept().is_err(),
        "no connection attempt within the backoff"
    );
    assert_eq!(ex.dropped_total(0), Some(10));

    // Backoff over: reconnect, templates first, sequence from zero.
    let r = ex.export_at(
        t0 + Duration::from_secs(1),
        SystemTime::now(),
        &flows,
        &buckets,
    );
    assert_eq!(
        (r.sent_records, r.dropped_records),
        (8, 0),
        "{:?}",
        r.errors
    );
    assert!(ex.collector_stats()[0].connected);
    let (mut conn, _) = listener.accept().expect("the exporter connected");
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let first = outline(&read_message(&mut conn).expect("first message"));
    assert_eq!((first.version, first.sequence, first.domain), (10, 0, 3));
    let set_ids: Vec<u16> = first.sets.iter().map(|s| s.0).collect();
    // Template set, options template set, then data sets only.
    assert_eq!(&set_ids[..2], &[2, 3], "{set_ids:?}");
    assert!(set_ids[2..].iter().all(|id| *id >= 256), "{set_ids:?}");

    // The next export on the same connection carries no templates and
    // continues the sequence.
    let r = ex.export_at(
        t0 + Duration::from_secs(2),
        SystemTime::now(),
        &flows[..1],
        &[],
    );
    assert_eq!(r.sent_records, 1);
    let next = outline(&read_message(&mut conn).expect("second message"));
    assert_eq!(next.sequence, 8);
    assert!(next.sets.iter().all(|s| s.0 >= 256), "{:?}", next.sets);
    assert_eq!(ex.dropped_total(0), Some(10));
    assert_eq!(ex.sent_total(0), Some(9));
}
