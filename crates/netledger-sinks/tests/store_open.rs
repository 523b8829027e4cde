//! Opening the history store: creation with its modes, migrations from an
//! empty file, and refusals (missing file read-only, newer schema, garbage,
//! corruption, another program's database) that leave the file untouched.

mod store_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::os::unix::fs::chown;
use std::process::Command;
use std::time::SystemTime;

use netledger::Direction;
use netledger_sinks::store::{
    write_report, Access, By, Error, LedgerInfo, ReportQuery, Store, Zone, SCHEMA_VERSION,
};
use store_common::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn info() -> LedgerInfo {
    LedgerInfo::new("t1", "eth0", Direction::In, &Default::default())
}

/// A store with one cut, closed.
fn store_with_a_cut(path: &Path) {
    let mut s = Store::open(path, Access::ReadWrite).unwrap();
    let id = s.ledger(&info()).unwrap();
    let iv = interval(
        "eth0",
        Direction::In,
        1,
        at("2026-12-01T00:00:00Z"),
        at("2026-12-01T00:01:00Z"),
        flows_for(Kind::Five, Direction::In, 1),
        1,
    );
    s.commit(id, &iv).unwrap();
}

fn version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn creates_its_directory_and_file_with_their_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/netledger/history.db");
    let store = Store::open(&path, Access::ReadWrite).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(mode(path.parent().unwrap()), 0o750);
    assert_eq!(mode(&path), 0o640);
    drop(store);
    assert_eq!(version(&path), SCHEMA_VERSION);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn read_only_open_of_a_missing_file_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere/history.db");
    let err = Store::open(&path, Access::ReadOnly).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("history store {} does not exist", path.display())
    );
    assert!(!path.parent().unwrap().exists());
}

#[test]
fn migrates_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    fs::write(&path, b"").unwrap();
    // Read-only does not migrate: an empty file is not a store yet.
    let err = Store::open(&path, Access::ReadOnly).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OlderSchema {
                found: 0,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    drop(Store::open(&path, Access::ReadWrite).unwrap());
    assert_eq!(version(&path), SCHEMA_VERSION);
    // Opening again finds it current; read-only now works.
    drop(Store::open(&path, Access::ReadWrite).unwrap());
    let ro = Store::open(&path, Access::ReadOnly).unwrap();
    assert!(ro.ledgers().unwrap().is_empty());
    assert_eq!(rows(&path, "cut"), 0);
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    store_with_a_cut(&path);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    }
    let before = fs::read(&path).unwrap();
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let err = Store::open(&path, access).unwrap_err();
        match &err {
            Error::NewerSchema {
                found, supported, ..
            } => {
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{msg}"
        );
        assert!(msg.contains(&format!("up to {SCHEMA_VERSION}")), "{msg}");
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn garbage_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for bytes in [&garbage[..], b"hello\n"] {
        fs::write(&path, bytes).unwrap();
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let err = Store::open(&path, access).unwrap_err();
            assert!(matches!(err, Error::NotSqlite { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("{} is not a SQLite database", path.display())
            );
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    store_with_a_cut(&path);
    let good = fs::read(&path).unwrap();
    // The schema page's content after the file header, then a header with
    // an impossible page size.
    let mut schema = good.clone();
    schema[100..4096].fill(0xA5);
    let mut header = good.clone();
    header[16..18].copy_from_slice(&[0x00, 0x03]);
    for bad in [schema, header] {
        fs::write(&path, &bad).unwrap();
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let err = Store::open(&path, access).unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. } | Error::NotSqlite { .. }),
                "{err:?}"
            );
        }
        assert_eq!(fs::read(&path).unwrap(), bad);
    }
}

#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
    }
    let before = fs::read(&path).unwrap();
    let err = Store::open(&path, Access::ReadWrite).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_read_only_store_refuses_writes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    store_with_a_cut(&path);
    let before = dump(&path);
    let mut ro = Store::open(&path, Access::ReadOnly).unwrap();
    let (id, _) = ro.ledgers().unwrap()[0].clone();
    assert_eq!(ro.last_seq(id).unwrap(), Some(1));
    let iv = interval(
        "eth0",
        Direction::In,
        2,
        at("2026-12-01T00:01:00Z"),
        at("2026-12-01T00:02:00Z"),
        flows_for(Kind::Five, Direction::In, 2),
        2,
    );
    let err = ro.commit(id, &iv).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is read-only (committing a cut)"),
        "{err}"
    );
    let err = ro.ledger(&LedgerInfo::new(
        "t2",
        "eth1",
        Direction::Out,
        &Default::default(),
    ));
    assert!(matches!(err, Err(Error::ReadOnly { .. })), "{err:?}");
    drop(ro);
    assert_eq!(dump(&path), before);
    // A writer commits the same cut afterwards.
    let mut rw = Store::open(&path, Access::ReadWrite).unwrap();
    rw.commit(id, &iv).unwrap();
    assert_eq!(rw.last_seq(id).unwrap(), Some(2));
}

/// Where [`a_store_reads_read_only`] finds the store when another test
/// runs it as another user; without it, the test makes its own.
const READER_DB: &str = "NETLEDGER_STORE_TEST_READER_DB";

/// A store opened read-only gives an exact report. Run on a store of its
/// own, and by the test below as another user on root's store.
#[test]
fn a_store_reads_read_only() {
    let own = tempfile::tempdir().unwrap();
    let path = match std::env::var_os(READER_DB) {
        Some(path) => PathBuf::from(path),
        None => {
            let path = own.path().join("history.db");
            store_with_a_cut(&path);
            path
        }
    };
    let store = Store::open(&path, Access::ReadOnly).unwrap();
    let mut q = ReportQuery::new(SystemTime::now());
    q.zone = Zone::Utc;
    q.by = By::Flow;
    let check = write_report(&store, &q, &mut std::io::sink()).unwrap();
    assert!(check.exact(), "{}", check.verdict());
    assert!(check.rows.packets > 0, "the store's cut is in the report");
    println!("reader saw {} packets", check.rows.packets);
}

/// The operator's setup: root's store in a directory of mode 0750 and a
/// file of 0640, both of a group the reading user is in. The reader may
/// not create files there, whether the daemon has the store open (its
/// `-wal` and `-shm` files exist) or not (they do not).
#[test]
fn a_user_who_may_not_write_the_directory_reads_the_store() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "acting as another user needs root: run the tests as root"
    );
    let setpriv = Path::new("/usr/bin/setpriv");
    assert!(
        setpriv.exists(),
        "{} is missing: apt-get install util-linux",
        setpriv.display()
    );
    let (uid, gid) = (65534, 65534); // nobody, nogroup
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = top.path().join("lib/history.db");
    store_with_a_cut(&path);
    let dir = path.parent().unwrap();
    chown(dir, Some(0), Some(gid)).unwrap();
    chown(&path, Some(0), Some(gid)).unwrap();
    assert_eq!((mode(dir), mode(&path)), (0o750, 0o640));
    // The test binary where that user may run it.
    let exe = top.path().join("reader");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    for daemon_running in [false, true] {
        let writer = daemon_running.then(|| {
            let w = Store::open(&path, Access::ReadWrite).unwrap();
            w.ledgers().unwrap();
            w
        });
        let wal = path.with_extension("db-wal");
        assert_eq!(wal.exists(), daemon_running);
        let out = Command::new(setpriv)
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
            ])
            .arg(&exe)
            .args(["--exact", "a_store_reads_read_only", "--nocapture"])
            .env(READER_DB, &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("reader saw "),
            "daemon running: {daemon_running}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(writer);
    }
}
