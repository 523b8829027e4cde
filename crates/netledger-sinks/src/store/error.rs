//! What can go wrong with the history store and its reports, said with the
//! values involved (path, operation, versions, sequence numbers). The
//! command line adds the advice.

use std::io;
use std::path::{Path, PathBuf};

use netledger::Direction;
use rusqlite::ErrorCode;

/// The store's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the store and of its reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A read-only open of a file that is not there.
    #[error("history store {path} does not exist")]
    Missing {
        /// The path asked for.
        path: PathBuf,
    },
    /// Creating the store's directory or file failed.
    #[error("cannot create {what} {path}: {source}")]
    Create {
        /// "directory" or "file".
        what: &'static str,
        /// What was being created.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Reading the file's header failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The store's path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with SQLite's header.
    #[error("{path} is not a SQLite database")]
    NotSqlite {
        /// The file.
        path: PathBuf,
    },
    /// A SQLite database, but of something else: it has tables and no
    /// netledger `meta` table. Nothing is written to it.
    #[error("{path} is a SQLite database that netledger did not create (it has no meta table)")]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// SQLite found the file damaged.
    #[error("{path} is corrupt ({op}): {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a later netledger, whose schema this one
    /// does not know. Nothing is written to it.
    #[error(
        "{path} has schema version {found}, written by a newer netledger; this one knows versions up to {supported}"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in its `meta` table.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A read-only open of a store whose schema is older than this build's:
    /// only a read-write open migrates.
    #[error(
        "{path} has schema version {found}, older than this netledger's {supported}, and a read-only open does not migrate it"
    )]
    OlderSchema {
        /// The file.
        path: PathBuf,
        /// The version in its `meta` table (0: an empty database).
        found: i64,
        /// This build's version.
        supported: i64,
    },
    /// Another connection held the lock longer than the busy timeout.
    #[error("{path} is locked by another writer ({op}): {source}")]
    Busy {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file system (or the database's page limit) is full.
    #[error("{path}: no space left ({op}): {source}")]
    Full {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A write to a store opened read-only, or whose file or directory
    /// cannot be written.
    #[error("{path} is read-only ({op}): {source}")]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("{path}: {op} failed: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A cut numbered 0: committed cuts are numbered from 1.
    #[error("cut of ledger {ledger} has sequence number 0; committed cuts are numbered from 1")]
    SeqZero {
        /// The ledger's id.
        ledger: i64,
    },
    /// An interval labelled with another interface or direction than the
    /// ledger it was committed to.
    #[error(
        "interval of {iv_iface} {iv_dir} committed to ledger {ledger}, which counts {iface} {dir}"
    )]
    WrongLedger {
        /// The ledger's id.
        ledger: i64,
        /// The ledger's interface.
        iface: String,
        /// The ledger's direction.
        dir: Direction,
        /// The interval's interface.
        iv_iface: String,
        /// The interval's direction.
        iv_dir: Direction,
    },
    /// A ledger id that is not in this store.
    #[error("ledger {ledger} is not in {path}")]
    UnknownLedger {
        /// The file.
        path: PathBuf,
        /// The id given.
        ledger: i64,
    },
    /// A count beyond what SQLite's signed 64-bit integers hold.
    #[error("{what} {value} does not fit in SQLite's signed 64-bit integers")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// A stored value that netledger could not have written.
    #[error("{path}: stored {what} {value:?} is invalid")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// The value as text.
        value: String,
    },
    /// A report option out of its range.
    #[error("invalid {what}: {value:?} (expected {expected})")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// The value given.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A time on the command line that is neither RFC 3339, a date, nor relative.
    #[error("invalid time {value:?} (expected {expected})")]
    InvalidTime {
        /// The text given.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A time zone name without a file in the zone database.
    #[error("time zone {name:?} is not in {dir}")]
    UnknownZone {
        /// The name given.
        name: String,
        /// The zone database searched.
        dir: PathBuf,
    },
    /// The C library could not convert a time in a zone.
    #[error("converting {what} in time zone {zone} failed")]
    LocalTime {
        /// The zone.
        zone: String,
        /// The time converted, as the C library was given it.
        what: String,
    },
    /// Writing a report to its output failed.
    #[error("writing the report failed: {source}")]
    Write {
        /// The error, a closed pipe included.
        #[source]
        source: io::Error,
    },
    /// A text sink refused an interval of a report.
    #[error("writing the report failed: {source}")]
    Sink {
        /// The sink's error.
        #[source]
        source: netledger::SinkError,
    },
}

impl Error {
    /// Whether the failure is a closed output pipe (the reader went away):
    /// not a failure of the command.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Write { source } => source.kind() == io::ErrorKind::BrokenPipe,
            Error::Sink { source } => crate::text::is_broken_pipe(source),
            _ => false,
        }
    }
}

/// A function making a SQLite failure of `op` on the store at `path` into
/// the error naming its cause: busy, full, read-only, corrupt, not SQLite.
pub(crate) fn sql<'p>(
    path: &'p Path,
    op: &'static str,
) -> impl FnOnce(rusqlite::Error) -> Error + 'p {
    move |source| classify(path, op, source)
}

/// The error naming a SQLite failure's cause.
pub(crate) fn classify(path: &Path, op: &'static str, source: rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Error::Busy { path, op, source }
        }
        Some(ErrorCode::DiskFull) => Error::Full { path, op, source },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly { path, op, source },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt { path, op, source },
        Some(ErrorCode::NotADatabase) => Error::NotSqlite { path },
        _ => Error::Sqlite { path, op, source },
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Write { source }
    }
}
