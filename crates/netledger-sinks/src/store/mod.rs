//! The history store: every committed cut of every ledger in one SQLite
//! file, and the reports read from it.
//!
//! The daemon cuts an interval, [`Store::commit`]s it, and only then clears
//! the kernel's copy. A commit is one transaction holding the cut row, its
//! flow records and the hourly rollups, and it is idempotent by the cut's
//! sequence number: after a `kill -9` anywhere, redoing the last cut counts
//! it exactly once.
//!
//! Tables (see `schema.rs`): `ledger` (one per counting instance, interface,
//! direction and key configuration), `cut` (one per commit, kept forever),
//! `flow` (the records, removed by [`Store::prune`] after the flow
//! retention), `hour_key` (per key and UTC hour) and `hour_ledger` (per
//! ledger and UTC hour). The rollups always equal the sum of every cut ever
//! committed; `hour_ledger` is never pruned, `hour_key` only by an explicit
//! rollup retention.
//!
//! A [`Store`] is one connection: `Send`, not `Sync`. Several processes may
//! open the same file (WAL journal): one writer at a time, readers never
//! blocked; a writer waits up to [`BUSY_TIMEOUT`] for the lock. A user who
//! may read the file and its directory (mode 0640 and 0750 with a group of
//! theirs) but not write there opens it [`Access::ReadOnly`] for reports,
//! whether the writer is running or not.

mod codec;
mod commit;
mod error;
pub mod localtime;
mod query;
pub mod report;
mod schema;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use netledger::{Direction, Interval, KeyMode, LedgerConfig, Sink, SinkError, Strategy};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

pub use commit::{Committed, Pruned};
pub use error::{Error, Result};
pub use localtime::{parse_time, LocalTime, Zone};
pub use report::{write_report, By, Check, ReportQuery};
pub use schema::SCHEMA_VERSION;

use codec::{ms, time};
use error::sql;

/// How long a writer waits for another's lock before failing with
/// [`Error::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long flow records are kept unless told otherwise; the rollups
/// outlive them.
pub const DEFAULT_FLOW_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// The WAL is truncated to this size after a checkpoint, so that one cut of
/// a million flows does not leave a file of that size behind.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// Pages kept in memory (64 MiB, in KiB as SQLite takes it when negative):
/// a cut of a million keys upserts into a large rollup index.
const CACHE_KIB: i64 = 64 << 10;

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create it when missing, migrate it, commit and prune (the daemon).
    ReadWrite,
    /// Read only (reports); the file must exist and have this build's schema.
    ReadOnly,
}

/// A ledger's row id in its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerId(i64);

impl LedgerId {
    /// The row id.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// What identifies a ledger: the counting instance (the daemon's random id
/// of its pin set), where it counts, and how its keys are made. Flow
/// records of one ledger are all of one key configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerInfo {
    /// The counting instance.
    pub instance: String,
    /// The interface.
    pub iface: String,
    /// The direction counted.
    pub dir: Direction,
    /// What a key is made of.
    pub key_mode: KeyMode,
    /// Whether the outer VLAN id is part of the key.
    pub vlan: bool,
    /// IPv4 prefix length addresses are aggregated to, if any.
    pub prefix4: Option<u8>,
    /// IPv6 prefix length addresses are aggregated to, if any.
    pub prefix6: Option<u8>,
    /// How counters are kept and cut.
    pub strategy: Strategy,
}

impl LedgerInfo {
    /// The ledger of `instance` counting `iface` in `dir` with `cfg`.
    pub fn new(instance: &str, iface: &str, dir: Direction, cfg: &LedgerConfig) -> LedgerInfo {
        LedgerInfo {
            instance: instance.to_string(),
            iface: iface.to_string(),
            dir,
            key_mode: cfg.key_mode,
            vlan: cfg.vlan,
            prefix4: cfg.prefix4,
            prefix6: cfg.prefix6,
            strategy: cfg.strategy,
        }
    }

    /// A configuration with this ledger's key settings (the rest default):
    /// what the text sinks need to lay out its keys.
    pub fn config(&self) -> LedgerConfig {
        LedgerConfig {
            key_mode: self.key_mode,
            vlan: self.vlan,
            prefix4: self.prefix4,
            prefix6: self.prefix6,
            strategy: self.strategy,
            ..LedgerConfig::default()
        }
    }
}

/// A committed cut's identity and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutInfo {
    /// Its sequence number.
    pub seq: u64,
    /// The previous cut (millisecond precision).
    pub start: SystemTime,
    /// This cut (millisecond precision).
    pub end: SystemTime,
}

/// An open history store: one SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    access: Access,
}

impl Store {
    /// Open the store at `path`. Read-write creates the directory (0750)
    /// and the file (0640) when missing, switches to the WAL journal and
    /// migrates the schema; read-only needs an existing store of this
    /// build's schema. A file that is not SQLite, another program's
    /// database, or a store of a newer schema is refused before anything is
    /// written to it.
    pub fn open(path: impl AsRef<Path>, access: Access) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let exists = path.try_exists().map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if !exists {
            match access {
                Access::ReadOnly => return Err(Error::Missing { path }),
                Access::ReadWrite => create(&path)?,
            }
        }
        check_header(&path)?;
        let conn = match access {
            Access::ReadWrite => connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?,
            Access::ReadOnly => connect_read_only(&path)?,
        };
        let found = schema::inspect(&conn, &path)?;
        match found {
            schema::Found::Foreign => return Err(Error::NotAStore { path }),
            schema::Found::Version(v) if v > SCHEMA_VERSION => {
                return Err(Error::NewerSchema {
                    path,
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            _ => {}
        }
        let mut store = Store { conn, path, access };
        match access {
            Access::ReadWrite => store.prepare_for_writing()?,
            Access::ReadOnly => {
                let found = match found {
                    schema::Found::Version(v) => v,
                    _ => 0,
                };
                if found != SCHEMA_VERSION {
                    return Err(Error::OlderSchema {
                        path: store.path,
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(store)
    }

    /// The journal, durability and cache settings of a writer, then the
    /// migrations.
    fn prepare_for_writing(&mut self) -> Result<()> {
        let path = self.path.clone();
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql(&path, "switching to the WAL journal"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::BadValue {
                path,
                what: "journal mode",
                value: mode,
            });
        }
        // NORMAL in WAL mode: a commit survives the process dying at any
        // point; only a power loss can take back the last commits.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(&path, "setting synchronous"))?;
        self.conn
            .pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(sql(&path, "setting journal_size_limit"))?;
        self.conn
            .pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(sql(&path, "setting cache_size"))?;
        schema::migrate(&mut self.conn, &path)
    }

    /// How long a write waits for another writer's lock before failing
    /// with [`Error::Busy`] ([`BUSY_TIMEOUT`] unless set).
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.conn
            .busy_timeout(timeout)
            .map_err(sql(&self.path, "setting the busy timeout"))
    }

    /// Cap the database file's size at about `max_bytes` (None: SQLite's
    /// own limit), for hosts that bound the store's disk use. A commit that
    /// would grow it beyond fails with [`Error::Full`] and changes nothing,
    /// like a full disk. The cap never goes below the current size, and
    /// holds for this connection only.
    pub fn set_size_limit(&mut self, max_bytes: Option<u64>) -> Result<()> {
        let op = "setting the size limit";
        let page: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql(&self.path, op))?;
        let pages = match max_bytes {
            Some(b) => i64::try_from(b / page.max(1) as u64)
                .unwrap_or(i64::MAX)
                .max(1),
            // SQLite's default maximum page count.
            None => 0xFFFF_FFFE,
        };
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sql(&self.path, op))?;
        Ok(())
    }

    /// Where the store is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The ledger described by `info`: found, or created (read-write only).
    pub fn ledger(&mut self, info: &LedgerInfo) -> Result<LedgerId> {
        let op = "creating a ledger";
        let p4 = info.prefix4.map_or(-1, i64::from);
        let p6 = info.prefix6.map_or(-1, i64::from);
        let params = rusqlite::params![
            info.instance,
            info.iface,
            info.dir.name(),
            info.key_mode.name(),
            info.vlan,
            p4,
            p6,
            info.strategy.name()
        ];
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&self.path, op))?;
        tx.execute(
            "INSERT INTO ledger (instance, iface, dir, key_mode, vlan, prefix4, prefix6, strategy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            params,
        )
        .map_err(sql(&self.path, op))?;
        let id: i64 = tx
            .query_row(
                "SELECT id FROM ledger WHERE instance = ?1 AND iface = ?2 AND dir = ?3
                 AND key_mode = ?4 AND vlan = ?5 AND prefix4 = ?6 AND prefix6 = ?7
                 AND strategy = ?8",
                params,
                |r| r.get(0),
            )
            .map_err(sql(&self.path, op))?;
        tx.commit().map_err(sql(&self.path, op))?;
        Ok(LedgerId(id))
    }

    /// Every ledger, in the order they were created.
    pub fn ledgers(&self) -> Result<Vec<(LedgerId, LedgerInfo)>> {
        query::ledgers(&self.conn, &self.path, None, None)
    }

    /// The cut of `ledger` with the highest sequence number, if any: where
    /// a restarted daemon resumes.
    pub fn last_cut(&self, ledger: LedgerId) -> Result<Option<CutInfo>> {
        self.conn
            .query_row(
                "SELECT seq, start_ms, end_ms FROM cut WHERE ledger = ?1
                 ORDER BY seq DESC LIMIT 1",
                [ledger.0],
                |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(&self.path, "reading the last cut"))?
            .map(|(seq, start, end)| {
                Ok(CutInfo {
                    seq: codec::uint(&self.path, "sequence number", seq)?,
                    start: time(start),
                    end: time(end),
                })
            })
            .transpose()
    }

    /// The buckets of every cut ever committed for `ledger`, and how many
    /// cuts: what its counters have reached (cut rows are never pruned).
    pub fn totals(&self, ledger: LedgerId) -> Result<(u64, netledger::Buckets)> {
        let s = query::cut_sums(&self.conn, &self.path, ledger, i64::MIN, i64::MAX)?;
        Ok((s.cuts, s.buckets))
    }

    /// The highest sequence number committed for `ledger`, if any.
    pub fn last_seq(&self, ledger: LedgerId) -> Result<Option<u64>> {
        Ok(self.last_cut(ledger)?.map(|c| c.seq))
    }

    /// The ledger's row: its description.
    fn ledger_info(&self, ledger: LedgerId) -> Result<LedgerInfo> {
        query::ledger(&self.conn, &self.path, ledger)?.ok_or_else(|| Error::UnknownLedger {
            path: self.path.clone(),
            ledger: ledger.0,
        })
    }
}

/// Create the store's directory (0750) and file (0640) where missing.
fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let err = |source| Error::Create {
                what: "directory",
                path: dir.to_path_buf(),
                source,
            };
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(err)?;
            // Exactly 0750 whatever the umask: the group may read reports.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750)).map_err(err)?;
        }
    }
    let err = |source| Error::Create {
        what: "file",
        path: path.to_path_buf(),
        source,
    };
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
    {
        Ok(_) => fs::set_permissions(path, fs::Permissions::from_mode(0o640)).map_err(err),
        // Another process created it in between: open that one.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// SQLite's file header.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Refuse a file that is neither empty nor starts with SQLite's header,
/// before SQLite opens it (and might write to it).
fn check_header(path: &Path) -> Result<()> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(100);
    File::open(path)
        .map_err(read_err)?
        .take(100)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if head.is_empty() {
        return Ok(());
    }
    if head.len() < 100 || !head.starts_with(SQLITE_MAGIC) {
        return Err(Error::NotSqlite {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// A connection with `flags` and the busy timeout.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql(path, "opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql(path, "setting the busy timeout"))?;
    Ok(conn)
}

/// A read-only connection. A WAL database needs its `-shm` file. While the
/// writer runs it exists, and a reader of the file's group uses it read-only.
/// When the writer is not running it is absent, and a reader that may not
/// create files in the directory (a user reading root's store) opens the
/// file as immutable instead: with no `-wal` file there are no pages of a
/// writer it could miss (a writer starting during the report is not seen).
fn connect_read_only(path: &Path) -> Result<Connection> {
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let probe = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    });
    // SQLite says CANTOPEN or READONLY_DIRECTORY when it cannot create the
    // `-shm` file.
    let no_shm = |e: &rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == ErrorCode::CannotOpen
                || f.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY
        }
        _ => false,
    };
    match probe {
        Err(e) if no_shm(&e) => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            if Path::new(&wal).exists() {
                return Err(error::classify(path, "opening read-only", e));
            }
            drop(conn);
            let uri = format!("file:{}?immutable=1", uri_path(path));
            connect(
                Path::new(&uri),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            )
        }
        _ => Ok(conn),
    }
}

/// `path` escaped for a `file:` URI: every byte but unreserved ones and `/`.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A [`Sink`] committing every interval to one ledger of a store (for
/// commands that write history as they go). Intervals numbered 0 get the
/// next sequence number of the ledger.
#[derive(Debug)]
pub struct StoreSink {
    store: Store,
    ledger: LedgerId,
}

impl StoreSink {
    /// Commit to `ledger` of `store`.
    pub fn new(store: Store, ledger: LedgerId) -> StoreSink {
        StoreSink { store, ledger }
    }

    /// Open (or create) the store at `path` and the ledger `info` in it.
    pub fn open(path: impl AsRef<Path>, info: &LedgerInfo) -> Result<StoreSink> {
        let mut store = Store::open(path, Access::ReadWrite)?;
        let ledger = store.ledger(info)?;
        Ok(StoreSink { store, ledger })
    }

    /// The ledger committed to.
    pub fn ledger(&self) -> LedgerId {
        self.ledger
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store back, for pruning or reports.
    pub fn into_store(self) -> Store {
        self.store
    }
}

impl Sink for StoreSink {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        let seq = match iv.seq {
            0 => self.store.last_seq(self.ledger)?.unwrap_or(0) + 1,
            n => n,
        };
        self.store.commit_as(self.ledger, iv, seq)?;
        Ok(())
    }
}

/// The time as the store keeps it (millisecond precision).
pub fn stored_time(t: SystemTime) -> SystemTime {
    time(ms(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_escape_what_uris_reserve() {
        assert_eq!(
            uri_path(Path::new("/var/lib/a b?c#d%")),
            "/var/lib/a%20b%3Fc%23d%25"
        );
    }
}
