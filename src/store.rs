//! The SQLite file: schema and migrations, and the single tag writer.
//!
//! `ttp_tag` has DECNET's columns, types, CHECKs and indexes (spec §10) plus
//! `rule_sha256`. All writes go through one [`TagWriter`] thread fed by a
//! channel, in batched transactions; inserts are idempotent on `uuid`.

use crate::catalog::{self, SyncReport};
use crate::position::InputPosition;
use crate::rule::Rule;
use crate::ruleset::Change;
use crate::tag::Tag;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;
use uuid::Uuid;

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

/// The schema, one migration per step; `PRAGMA user_version` is the number
/// of steps applied.
const MIGRATIONS: &[&str] = &[
    // 1: DECNET's ttp_tag (spec §10) plus rule_sha256.
    r#"
CREATE TABLE ttp_tag (
  uuid VARCHAR NOT NULL, source_kind VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
  attacker_uuid VARCHAR, identity_uuid VARCHAR, session_id VARCHAR, decky_id VARCHAR,
  tactic VARCHAR NOT NULL, technique_id VARCHAR NOT NULL, sub_technique_id VARCHAR,
  confidence FLOAT NOT NULL, rule_id VARCHAR NOT NULL, rule_version INTEGER NOT NULL,
  evidence JSON NOT NULL, attack_release VARCHAR NOT NULL, mitre_url VARCHAR,
  created_at DATETIME NOT NULL,
  rule_sha256 VARCHAR NOT NULL DEFAULT '',
  PRIMARY KEY (uuid),
  CONSTRAINT ttp_tag_has_anchor CHECK (attacker_uuid IS NOT NULL OR identity_uuid IS NOT NULL),
  CONSTRAINT ttp_tag_confidence_range CHECK (confidence >= 0.0 AND confidence <= 1.0),
  FOREIGN KEY(attacker_uuid) REFERENCES attackers (uuid) ON DELETE CASCADE,
  FOREIGN KEY(identity_uuid) REFERENCES attacker_identities (uuid) ON DELETE CASCADE
);
CREATE INDEX ix_ttp_tag_attack_release ON ttp_tag (attack_release);
CREATE INDEX ix_ttp_tag_attacker_technique ON ttp_tag (attacker_uuid, technique_id);
CREATE INDEX ix_ttp_tag_attacker_uuid ON ttp_tag (attacker_uuid);
CREATE INDEX ix_ttp_tag_created_at ON ttp_tag (created_at);
CREATE INDEX ix_ttp_tag_decky_id ON ttp_tag (decky_id);
CREATE INDEX ix_ttp_tag_identity_technique ON ttp_tag (identity_uuid, technique_id);
CREATE INDEX ix_ttp_tag_identity_uuid ON ttp_tag (identity_uuid);
CREATE INDEX ix_ttp_tag_rule_id ON ttp_tag (rule_id);
CREATE INDEX ix_ttp_tag_session_id ON ttp_tag (session_id);
CREATE INDEX ix_ttp_tag_sub_technique_id ON ttp_tag (sub_technique_id);
CREATE INDEX ix_ttp_tag_tactic ON ttp_tag (tactic);
CREATE INDEX ix_ttp_tag_technique_created ON ttp_tag (technique_id, created_at);
CREATE INDEX ix_ttp_tag_technique_id ON ttp_tag (technique_id);
"#,
    // 2: rules (DECNET's ttp_rule and ttp_rule_state), every version, audit log.
    r#"
CREATE TABLE ttp_rule (
  rule_id VARCHAR NOT NULL, rule_version INTEGER NOT NULL, source_path VARCHAR NOT NULL,
  yaml_content TEXT NOT NULL, updated_at DATETIME NOT NULL, updated_by VARCHAR NOT NULL,
  PRIMARY KEY (rule_id)
);
CREATE TABLE ttp_rule_state (
  rule_id VARCHAR NOT NULL, state VARCHAR NOT NULL,
  confidence_max FLOAT, expires_at DATETIME, reason VARCHAR, set_by VARCHAR,
  set_at DATETIME NOT NULL,
  PRIMARY KEY (rule_id)
);
CREATE TABLE ttp_rule_version (
  rule_id VARCHAR NOT NULL, rule_version INTEGER NOT NULL, sha256 VARCHAR NOT NULL,
  yaml_content TEXT NOT NULL, source_path VARCHAR NOT NULL,
  first_loaded_at DATETIME NOT NULL, last_loaded_at DATETIME NOT NULL,
  PRIMARY KEY (sha256)
);
CREATE INDEX ix_ttp_rule_version_rule_id ON ttp_rule_version (rule_id, rule_version);
CREATE TABLE ttp_rule_event (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at DATETIME NOT NULL, rule_id VARCHAR, path VARCHAR,
  action VARCHAR NOT NULL CHECK (action IN ('loaded', 'updated', 'removed', 'rejected', 'state')),
  detail TEXT
);
CREATE INDEX ix_ttp_rule_event_rule_id ON ttp_rule_event (rule_id, id);
CREATE INDEX ix_ttp_rule_event_path ON ttp_rule_event (path, id);
"#,
    // 3: the read position of a followed events file.
    crate::position::SCHEMA,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    // (An SQLite `file:` URI is SQLite's to open as it says.)
    let uri = path.to_str().is_some_and(|p| p.starts_with("file:"));
    if !uri && !path.exists() {
        create_private(path, opts.file_mode).map_err(|e| StoreError::Create {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
            path: path.to_path_buf(),
        },
        _ => StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let err = |e| classify(path, e, opts);
    conn.busy_timeout(opts.busy_timeout).map_err(err)?;
    // Reading the version is the first access: it detects a file that is
    // not SQLite.
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // Switching a new file to WAL needs an exclusive lock; two processes
    // doing it at once can deadlock, and SQLite then answers one of them
    // "busy" without waiting: retry for as long as a lock may be waited for.
    let started = Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && started.elapsed() < opts.busy_timeout =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.map_err(err)?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "could not switch the database to WAL");
    }
    // The FOREIGN KEY clauses name DECNET's attacker tables, which this file
    // does not hold; the bundled SQLite enforces foreign keys by default.
    // Checkpointing every 10,000 pages (40 MB of WAL) instead of 1,000 copies
    // the index pages that bulk inserts touch again and again less often.
    conn.execute_batch(
        "PRAGMA foreign_keys=OFF; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; \
         PRAGMA wal_autocheckpoint=10000;",
    )
    .map_err(err)?;
    if version < SCHEMA_VERSION {
        migrate(&conn, path).map_err(|e| match e {
            MigrateError::Sqlite(e) => err(e),
            MigrateError::TooNew(found) => StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            },
        })?;
    }
    Ok(conn)
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction,
/// reading the version again inside it: two processes opening a new file at
/// once take turns, and the second finds the schema in place.
fn migrate(conn: &Connection, path: &Path) -> Result<(), MigrateError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), MigrateError> {
        let from: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if from > SCHEMA_VERSION {
            return Err(MigrateError::TooNew(from));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        if from < SCHEMA_VERSION {
            tracing::debug!(db = %path.display(), from, to = SCHEMA_VERSION, "schema migrated");
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(MigrateError::from),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Inserts tags in one transaction; returns the tags that were new.
pub fn insert_tags<'a>(conn: &Connection, tags: &'a [Tag]) -> rusqlite::Result<Vec<&'a Tag>> {
    insert_tags_at(conn, tags, None)
}

/// Inserts tags and, in the same transaction, the read position reached
/// once the events behind them were tagged.
pub fn insert_tags_at<'a>(
    conn: &Connection,
    tags: &'a [Tag],
    position: Option<&InputPosition>,
) -> rusqlite::Result<Vec<&'a Tag>> {
    let tx = conn.unchecked_transaction()?;
    if let Some(p) = position {
        crate::position::save(&tx, p)?;
    }
    let mut new = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO ttp_tag (uuid, source_kind, source_id, attacker_uuid, identity_uuid, \
             session_id, decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, \
             rule_version, evidence, attack_release, mitre_url, created_at, rule_sha256) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
             ON CONFLICT(uuid) DO NOTHING",
        )?;
        for t in tags {
            // Stored exactly as DECNET stores it: `json.dumps(evidence)`.
            let evidence = crate::pyjson::dumps_object(t.evidence.iter());
            let mut uuid = Uuid::encode_buffer();
            let uuid: &str = t.uuid.hyphenated().encode_lower(&mut uuid);
            let n = stmt.execute(params![
                uuid,
                t.source_kind,
                t.source_id,
                t.attacker_uuid,
                t.identity_uuid,
                t.session_id,
                t.decky_id,
                t.tactic,
                t.technique_id,
                t.sub_technique_id,
                t.confidence,
                t.rule_id,
                t.rule_version,
                evidence,
                t.attack_release,
                t.mitre_url,
                t.created_at,
                t.rule_sha256,
            ])?;
            if n > 0 {
                new.push(t);
            }
        }
    }
    tx.commit()?;
    Ok(new)
}

/// Totals from the writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub new: u64,
    pub already_present: u64,
    pub transactions: u64,
}

/// Called with each tag the writer newly inserted.
pub type NewTagSink = Box<dyn FnMut(&Tag) + Send>;

enum Msg {
    Tags(Vec<Tag>),
    /// The read position after the events whose tags were sent before it.
    Position(InputPosition),
    Changes(Vec<Change>),
    Sync(
        Vec<Arc<Rule>>,
        PathBuf,
        SyncSender<Result<SyncReport, StoreError>>,
    ),
    ExpireStates(i64),
    Flush(SyncSender<()>),
}

/// Rows buffered before a transaction is committed regardless of input.
const BATCH_ROWS: usize = 10_000;

/// The one writer of a process: a thread owning the connection, fed by a
/// channel. Tags are inserted in batched transactions; rule changes, the
/// start-up rule sync and state expiry go through it too, in order.
pub struct TagWriter {
    handle: WriterHandle,
    join: JoinHandle<Result<WriteStats, StoreError>>,
}

/// A way to send work to the writer; cheap to clone, one per thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
}

impl TagWriter {
    /// Opens the database (in the caller's thread, so errors surface at
    /// once) and starts the writer thread.
    pub fn start(
        path: &Path,
        opts: &StoreOptions,
        sink: Option<NewTagSink>,
    ) -> Result<TagWriter, StoreError> {
        let conn = open(path, opts)?;
        // A few batches in flight: enough to overlap matching and writing,
        // few enough to bound memory (a batch holds thousands of tags).
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        let path = path.to_path_buf();
        let opts = opts.clone();
        let join = std::thread::Builder::new()
            .name("ttp-writer".into())
            .spawn(move || writer_loop(conn, rx, sink, &path, &opts))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(TagWriter {
            handle: WriterHandle { tx },
            join,
        })
    }

    /// Whether the writer thread has stopped (on an error: `finish` says
    /// which).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Another handle for another thread.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits everything queued and stops the writer. Every other handle
    /// must have been dropped (the writer runs until the last one is).
    pub fn finish(self) -> Result<WriteStats, StoreError> {
        let TagWriter { handle, join } = self;
        drop(handle);
        join.join().unwrap_or(Err(StoreError::WriterGone))
    }
}

impl std::ops::Deref for TagWriter {
    type Target = WriterHandle;
    fn deref(&self) -> &WriterHandle {
        &self.handle
    }
}

impl WriterHandle {
    fn send_msg(&self, msg: Msg) -> Result<(), StoreError> {
        self.tx.send(msg).map_err(|_| StoreError::WriterGone)
    }

    /// Queues tags for writing (blocks when the writer is behind).
    pub fn send(&self, tags: Vec<Tag>) -> Result<(), StoreError> {
        if tags.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Tags(tags))
    }

    /// Queues the read position reached: committed with the tags sent
    /// before it, never before them.
    pub fn send_position(&self, position: InputPosition) -> Result<(), StoreError> {
        self.send_msg(Msg::Position(position))
    }

    /// Queues the changes of a reload for the rule catalog.
    pub fn send_changes(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Changes(changes))
    }

    /// Asks the writer to delete states expired at `now` (and log them).
    pub fn expire_states(&self, now: i64) -> Result<(), StoreError> {
        self.send_msg(Msg::ExpireStates(now))
    }

    /// Records the serving rules of `rules_dir` at start-up and waits for
    /// the result.
    pub fn sync_rules(
        &self,
        rules: Vec<Arc<Rule>>,
        rules_dir: &Path,
    ) -> Result<SyncReport, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send_msg(Msg::Sync(rules, rules_dir.to_path_buf(), reply))?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send_msg(Msg::Flush(reply))?;
        done.recv().map_err(|_| StoreError::WriterGone)
    }
}

fn writer_loop(
    conn: Connection,
    rx: Receiver<Msg>,
    mut sink: Option<NewTagSink>,
    path: &Path,
    opts: &StoreOptions,
) -> Result<WriteStats, StoreError> {
    let mut stats = WriteStats::default();
    let mut pending: Vec<Tag> = Vec::new();
    let mut position: Option<InputPosition> = None;
    let identity = file_identity(path);
    let mut open = true;
    while open {
        // Block for the first message, then drain what is queued; anything
        // other than tags (and positions) first commits the tags before it
        // (order kept).
        let mut other: Option<Msg> = None;
        match rx.recv() {
            Ok(Msg::Tags(t)) => pending.extend(t),
            Ok(Msg::Position(p)) => position = Some(p),
            Ok(m) => other = Some(m),
            Err(_) => open = false,
        }
        while open && other.is_none() && pending.len() < BATCH_ROWS {
            match rx.try_recv() {
                Ok(Msg::Tags(t)) => pending.extend(t),
                Ok(Msg::Position(p)) => position = Some(p),
                Ok(m) => other = Some(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !pending.is_empty() || position.is_some() {
            let at = position.take();
            let new = write_with_retry(path, opts, "tags", || {
                insert_tags_at(&conn, &pending, at.as_ref())
            })?;
            stats.transactions += 1;
            stats.new += new.len() as u64;
            stats.already_present += (pending.len() - new.len()) as u64;
            if let Some(sink) = sink.as_mut() {
                for t in new {
                    sink(t);
                }
            }
            pending.clear();
            // Deleted or replaced under us: later commits would vanish.
            if file_identity(path) != identity {
                tracing::error!(db = %path.display(), "the database file was deleted or replaced while in use");
                return Err(StoreError::Replaced {
                    path: path.to_path_buf(),
                });
            }
        }
        match other {
            None | Some(Msg::Tags(_)) | Some(Msg::Position(_)) => {}
            Some(Msg::Changes(changes)) => {
                let warnings = write_with_retry(path, opts, "rule changes", || {
                    catalog::record_changes(&conn, &changes)
                })?;
                for w in warnings {
                    tracing::warn!("{w}");
                }
            }
            Some(Msg::Sync(rules, dir, reply)) => {
                let _ = reply.send(write_with_retry(path, opts, "the rule catalogue", || {
                    catalog::sync_rules(&conn, &rules, &dir)
                }));
            }
            Some(Msg::ExpireStates(now)) => {
                let expired = write_with_retry(path, opts, "rule states", || {
                    catalog::expire_states(&conn, now)
                })?;
                for id in expired {
                    tracing::info!(rule_id = %id, "rule state expired; the rule is enabled again");
                }
            }
            Some(Msg::Flush(reply)) => {
                let _ = reply.send(());
            }
        }
    }
    Ok(stats)
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
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(db, e, opts))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: db.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
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
