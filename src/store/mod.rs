//! The SQLite file: errors, options, retrying writes and read-only
//! connections here; the schema and its two flavours (our own file, or a
//! database made by DECNET) in [`schema`]; the single tag writer in
//! [`writer`].
//!
//! `ttp_tag` has DECNET's columns, types, CHECKs and indexes (spec §10). All
//! writes go through one [`TagWriter`] thread fed by a channel, in batched
//! transactions; inserts are idempotent on `uuid`.

mod batch;
mod checkpoint;
mod partition;
mod schema;
mod stats;
mod totals;
mod views;
mod writer;

pub use batch::Batch;
pub use partition::{PARTITION_ROWS, VIEW_ARMS};
pub use schema::{open, Flavor, SCHEMA_VERSION};
pub use totals::{minute_of, MINUTE_LEN};
pub use writer::{
    insert_rows, insert_tags, insert_tags_at, save_windows, write_transaction, Checkpoint,
    NewTagSink, TagTable, TagWriter, WriteStats, WriterHandle,
};

use rusqlite::{Connection, ErrorCode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: the database is locked by another process (waited {waited_ms} ms)")]
    Locked { path: PathBuf, waited_ms: u64 },
    #[error(
        "{path}: the database is read-only (check the file's and its directory's permissions)"
    )]
    ReadOnly { path: PathBuf },
    #[error("{path}: not an SQLite database")]
    NotADatabase { path: PathBuf },
    #[error(
        "{path}: the database schema version {found} is newer than this ttp supports ({supported})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: cannot create the database: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot open the database: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: no such database (`ttp tag` creates it)")]
    Missing { path: PathBuf },
    #[error("the tag writer stopped unexpectedly")]
    WriterGone,
    #[error(
        "{path}: the database file was deleted or replaced while in use; what was written since \
         went to a file without a name. Restart to write to the file now at that path"
    )]
    Replaced { path: PathBuf },
}

/// Options for opening the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for another process's lock.
    pub busy_timeout: Duration,
    /// When a write fails for a reason that can pass (another process holds
    /// the lock past `busy_timeout`, the disk is full, an I/O error), retry
    /// it with backoff for as long as it takes instead of failing (the
    /// daemon's writer). Meanwhile the writer's bounded channel holds the
    /// producers back, so memory stays bounded and nothing is lost.
    pub wait_when_unwritable: bool,
    /// Permissions of a database file this process creates (tags hold
    /// attacker data: owner-only by default).
    pub file_mode: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(5),
            wait_when_unwritable: false,
            file_mode: 0o600,
        }
    }
}

/// The identity of the file at `path` (device and inode), to notice it
/// being deleted or replaced under us.
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// Creates an empty database file with `mode` unless one exists (SQLite
/// would create it with 0644 less the umask; its WAL and shared-memory
/// files then take the database file's permissions).
fn create_private(path: &Path, mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a write may succeed later: locked, full, or an I/O error.
fn passing(e: &rusqlite::Error) -> Option<&'static str> {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Some("the database is locked by another process")
        }
        Some(ErrorCode::DiskFull) => Some("the disk is full"),
        Some(ErrorCode::SystemIoFailure) => Some("an I/O error"),
        _ => None,
    }
}

/// How often a write that keeps failing is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs one write (a whole transaction). With `wait_when_unwritable`, a
/// failure that can pass is retried with backoff until it succeeds, and
/// reported when it starts, every [`REPORT_EVERY`] while it lasts, and when
/// it ends.
fn write_with_retry<T>(
    path: &Path,
    opts: &StoreOptions,
    what: &str,
    mut op: impl FnMut() -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut delay = Duration::from_millis(50);
    let mut since: Option<Instant> = None;
    let mut reported: Option<Instant> = None;
    loop {
        match op() {
            Ok(v) => {
                if let Some(since) = since {
                    tracing::warn!(
                        db = %path.display(),
                        "writing {what} again after {:.1} s; nothing was lost",
                        since.elapsed().as_secs_f64()
                    );
                }
                return Ok(v);
            }
            Err(e) => {
                let Some(why) = passing(&e).filter(|_| opts.wait_when_unwritable) else {
                    return Err(classify(path, e, opts));
                };
                let start = *since.get_or_insert_with(Instant::now);
                if reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                    reported = Some(Instant::now());
                    tracing::error!(
                        db = %path.display(),
                        "cannot write {what}: {why} ({e}); waiting and retrying \
                         ({:.0} s so far); input is held back meanwhile",
                        start.elapsed().as_secs_f64()
                    );
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn classify(path: &Path, e: rusqlite::Error, opts: &StoreOptions) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path,
            waited_ms: opts.busy_timeout.as_millis() as u64,
        },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::Open { path, source: e }
        }
        _ => StoreError::Sqlite { path, source: e },
    }
}

/// A read-only connection for a reading command (`ttp tags`): the file must
/// exist, be SQLite, and have a schema this build knows (a newer file is
/// refused, as the writer refuses it).
pub fn open_reader(db: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    if !db.exists() {
        return Err(StoreError::Missing {
            path: db.to_path_buf(),
        });
    }
    let conn = read_connection(db, opts).map_err(|e| classify(db, e, opts))?;
    schema::check_version(&conn, db).map_err(|e| match e {
        schema::MigrateError::Sqlite(e) => classify(db, e, opts),
        schema::MigrateError::TooNew(found) => StoreError::TooNew {
            path: db.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        },
    })?;
    Ok(conn)
}

/// A read-only connection of its own (WAL readers never block the writer).
pub fn read_connection(db: &Path, opts: &StoreOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(opts.busy_timeout)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ErrorCode;

    #[test]
    fn migrations_run_once_and_newer_files_are_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("t.db");
        let opts = StoreOptions::default();
        let conn = open(&path, &opts).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        // Reopening applies nothing again (CREATE TABLE would fail).
        open(&path, &opts).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        assert!(matches!(
            open(&path, &opts),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn a_full_disk_is_waited_out_when_asked() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("full.db");
        let conn = open(&path, &StoreOptions::default()).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // A real SQLITE_FULL: the file may not grow by a single page.
        conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let big = "x".repeat(200_000);
        let write = |c: &Connection| {
            c.execute(
                "INSERT INTO ttp_rule_event (at, action, detail) VALUES ('now', 'state', ?1)",
                [&big],
            )
        };
        let failing = write_with_retry(&path, &StoreOptions::default(), "test rows", || {
            write(&conn)
        });
        assert!(
            matches!(&failing, Err(StoreError::Sqlite { source, .. }) if source.sqlite_error_code() == Some(ErrorCode::DiskFull)),
            "{failing:?}"
        );
        let waiting = StoreOptions {
            wait_when_unwritable: true,
            ..StoreOptions::default()
        };
        let mut attempts = 0;
        let n = write_with_retry(&path, &waiting, "test rows", || {
            attempts += 1;
            if attempts == 3 {
                // Space comes back.
                conn.execute_batch("PRAGMA max_page_count = 1000000")?;
            }
            write(&conn)
        })
        .unwrap();
        assert_eq!((n, attempts), (1, 3));
    }

    #[test]
    fn the_checks_of_decnet_hold() {
        let dir = tempfile::TempDir::new().unwrap();
        let conn = open(&dir.path().join("c.db"), &StoreOptions::default()).unwrap();
        let no_anchor = conn.execute(
            "INSERT INTO ttp_tag (uuid, source_kind, source_id, tactic, technique_id, confidence, \
             rule_id, rule_version, evidence, attack_release, created_at) \
             VALUES ('u', 'k', 's', 'TA0001', 'T1', 0.5, 'r', 1, '{}', 'v15.1', 'now')",
            [],
        );
        assert!(no_anchor.is_err());
        let too_confident = conn.execute(
            "INSERT INTO ttp_tag (uuid, source_kind, source_id, attacker_uuid, tactic, technique_id, \
             confidence, rule_id, rule_version, evidence, attack_release, created_at) \
             VALUES ('u', 'k', 's', 'a', 'TA0001', 'T1', 1.5, 'r', 1, '{}', 'v15.1', 'now')",
            [],
        );
        assert!(too_confident.is_err());
    }
}
