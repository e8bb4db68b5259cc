//! The schema, in two flavours.
//!
//! **Our own file**: DECNET's `ttp_tag` (columns, CHECKs, indexes) plus
//! `rule_sha256`, DECNET's `ttp_rule` and `ttp_rule_state`, and our tables;
//! the version is `PRAGMA user_version`.
//!
//! **A database made by DECNET** (it holds DECNET's `ttp_tag` and its
//! `attackers` table, and `user_version` is 0): DECNET's tables are used
//! exactly as they are, never dropped, re-created or altered. What we keep
//! beyond them lives in tables of our own (`ttp_tag_rule_sha256` for each
//! tag's rule text, `ttp_rule_version`, `ttp_rule_event`,
//! `ttp_input_position`, `ttp_correlation_window`), versioned in `ttp_engine_schema`; `user_version`
//! is left alone.

use super::{classify, create_private, StoreError, StoreOptions};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::{Duration, Instant};

/// Every rule text ever loaded, and the audit log: ours in both flavours.
macro_rules! rule_history {
    () => {
        r#"
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
"#
    };
}

/// Our own file's schema, one migration per step; `PRAGMA user_version` is
/// the number of steps applied.
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
    concat!(
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
"#,
        rule_history!()
    ),
    // 3: the read position of a followed events file.
    crate::position::SCHEMA,
    // 4: the ATT&CK names as tables, and the rollups as views.
    super::views::OWN,
    // 5: the fleet rollup kept by triggers.
    super::views::TOTALS,
    // 6: ttp_tag becomes a view over partitions (finished by `partition::adopt`).
    super::partition::MIGRATION,
    // 7: the correlation rules' windows.
    crate::correlate::durable::SCHEMA,
    // 8: the attacker and per-minute rollups kept (finished by
    // `partition::retrigger`).
    super::totals::SCHEMA,
];

/// The step of [`MIGRATIONS`] after which [`super::partition::adopt`] runs.
const PARTITIONED_AT: usize = 6;

/// The step of [`MIGRATIONS`] after which [`super::partition::retrigger`] runs.
const KEPT_ROLLUPS_AT: usize = 8;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// In a database made by DECNET: our tables beside DECNET's, one step each;
/// `ttp_engine_schema.version` is the number of steps applied. DECNET's
/// `ttp_rule` and `ttp_rule_state` are created (with DECNET's DDL) only by
/// a DECNET revision too old to have them.
const DECNET_EXTRAS: &[&str] = &[
    concat!(
        r#"
CREATE TABLE IF NOT EXISTS ttp_rule (
  rule_id VARCHAR NOT NULL, rule_version INTEGER NOT NULL, source_path VARCHAR NOT NULL,
  yaml_content TEXT NOT NULL, updated_at DATETIME NOT NULL, updated_by VARCHAR NOT NULL,
  PRIMARY KEY (rule_id)
);
CREATE TABLE IF NOT EXISTS ttp_rule_state (
  rule_id VARCHAR NOT NULL, state VARCHAR NOT NULL,
  confidence_max FLOAT, expires_at DATETIME, reason VARCHAR, set_by VARCHAR,
  set_at DATETIME NOT NULL,
  PRIMARY KEY (rule_id)
);
CREATE TABLE ttp_tag_rule_sha256 (
  uuid VARCHAR NOT NULL, rule_sha256 VARCHAR NOT NULL,
  PRIMARY KEY (uuid)
);
"#,
        rule_history!()
    ),
    crate::position::SCHEMA,
    super::views::DECNET,
    crate::correlate::durable::SCHEMA,
];

/// Which schema a database file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A file made by ttp (or a new one).
    Own,
    /// A database made by DECNET: its tables as they are, ours beside them.
    Decnet,
}

impl Flavor {
    /// Looks at a file: DECNET's `ttp_tag` and `attackers` with
    /// `user_version` 0 mean DECNET's database.
    pub fn of(conn: &Connection) -> rusqlite::Result<Flavor> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > 0 {
            return Ok(Flavor::Own);
        }
        let decnet: bool = conn.query_row(
            "SELECT count(*) = 2 FROM sqlite_master WHERE type = 'table' \
             AND name IN ('ttp_tag', 'attackers')",
            [],
            |r| r.get(0),
        )?;
        Ok(if decnet { Flavor::Decnet } else { Flavor::Own })
    }

    fn steps(self) -> &'static [&'static str] {
        match self {
            Flavor::Own => MIGRATIONS,
            Flavor::Decnet => DECNET_EXTRAS,
        }
    }
}

/// The number of steps applied, in the flavour's own record of it.
fn applied(conn: &Connection, flavor: Flavor) -> rusqlite::Result<i64> {
    match flavor {
        Flavor::Own => conn.query_row("PRAGMA user_version", [], |r| r.get(0)),
        Flavor::Decnet => {
            let exists: bool = conn.query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ttp_engine_schema'",
                [],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(0);
            }
            conn.query_row(
                "SELECT coalesce(max(version), 0) FROM ttp_engine_schema",
                [],
                |r| r.get(0),
            )
        }
    }
}

/// Refuses a file whose schema is newer than this build knows.
pub(super) fn check_version(conn: &Connection, _path: &Path) -> Result<Flavor, MigrateError> {
    let flavor = Flavor::of(conn)?;
    let version = applied(conn, flavor)?;
    if version > flavor.steps().len() as i64 {
        return Err(MigrateError::TooNew(version));
    }
    Ok(flavor)
}

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
    check_version(&conn, path).map_err(|e| migrate_error(path, e, opts))?;
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
    migrate(&conn, path).map_err(|e| migrate_error(path, e, opts))?;
    Ok(conn)
}

fn migrate_error(path: &Path, e: MigrateError, opts: &StoreOptions) -> StoreError {
    match e {
        MigrateError::Sqlite(e) => classify(path, e, opts),
        MigrateError::TooNew(found) => StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        },
    }
}

pub(super) enum MigrateError {
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
    // Nothing to do, the common case: no write lock taken.
    let flavor = Flavor::of(conn)?;
    if applied(conn, flavor)? == flavor.steps().len() as i64
        && super::views::attack_is_stale(conn)? == Some(false)
    {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), MigrateError> {
        let flavor = Flavor::of(conn)?;
        let steps = flavor.steps();
        let from = applied(conn, flavor)?;
        if from > steps.len() as i64 {
            return Err(MigrateError::TooNew(from));
        }
        if flavor == Flavor::Decnet {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS ttp_engine_schema (version INTEGER NOT NULL)",
            )?;
        }
        if from > 0 && from < steps.len() as i64 {
            tracing::info!(db = %path.display(), ?flavor, from, to = steps.len(),
                "migrating the schema in place (a step that reads every tag takes about 8 s per million tags)");
        }
        for (i, sql) in steps.iter().enumerate().skip(from as usize) {
            conn.execute_batch(sql)?;
            if flavor == Flavor::Own && i + 1 == PARTITIONED_AT {
                super::partition::adopt(conn)?;
            }
            if flavor == Flavor::Own && i + 1 == KEPT_ROLLUPS_AT {
                super::partition::retrigger(conn)?;
            }
            match flavor {
                Flavor::Own => conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?,
                Flavor::Decnet => {
                    conn.execute("DELETE FROM ttp_engine_schema", [])?;
                    conn.execute(
                        "INSERT INTO ttp_engine_schema (version) VALUES (?1)",
                        [i as i64 + 1],
                    )?;
                }
            }
        }
        if super::views::attack_is_stale(conn)? == Some(true) {
            super::views::fill_attack(conn)?;
        }
        if from < steps.len() as i64 {
            tracing::info!(db = %path.display(), ?flavor, from, to = steps.len(), "schema migrated");
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
