//! Reading tags back: rollups per technique (fleet, attacker, identity,
//! session, campaign), stored tags with every filter, and the windows and
//! ids they take. Each [`Reader`] holds a read-only connection of its own, so
//! queries never block the writer (WAL).
//!
//! The same functions answer `ttp query`, `ttp serve` and the exports; the
//! SQL follows DECNET's TTP API (`decnet-worker-and-api.md` §3.4–§3.5), with
//! the order made explicit where DECNET relied on SQLite's group order.

mod actors;
pub mod json;
mod matrix;
mod rollup;
mod tags;
mod window;

pub use actors::{Actor, Intel, COMMANDS_PER_ACTOR, TAGS_PER_ACTOR};
pub use matrix::{Cell, Firings, Marker, Matrix, RuleText, TimelineRow};
pub use rollup::{RollupRow, Scope};
pub use tags::{TagFilter, TagRow};
pub use window::{parse_instant, Window};

use crate::store::{StoreError, StoreOptions};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{what} {value:?} is not a time: give RFC 3339 (2026-11-20T08:00:00Z), a date (2026-11-20) or an age (7d, 24h, 30m)")]
    BadTime { what: &'static str, value: String },
    /// The rule catalogue could not be read (its directory, its table).
    #[error("the rule catalogue: {0}")]
    Catalogue(String),
}

/// A read-only view of a tag database: ours or DECNET's.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
    schema: Schema,
}

/// Which of the optional tables a database has: probed once per database,
/// not per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// DECNET's `attackers` table is there (identity rollups follow it).
    has_attackers: bool,
    /// DECNET's `attacker_identities` table is there (campaign rollups).
    has_identities: bool,
    /// Where `rule_sha256` lives: our column, DECNET's side table, nowhere.
    sha_source: ShaSource,
    /// Our kept fleet rollup (`ttp_technique_totals`) is there.
    has_totals: bool,
    /// Our kept attacker and per-minute rollups are there (schema step 8).
    has_kept_rollups: bool,
    /// DECNET's `attacker_intel` table is there (the exports' intel note).
    has_intel: bool,
    /// Our own file's `ttp_tag` is a view over partitions
    /// (`ttp_tag_partition` lists them).
    has_partitions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShaSource {
    Column,
    SideTable,
    None,
}

/// Whether the database has a table or view of this name.
pub(crate) fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
        [name],
        |r| r.get(0),
    )
}

impl Schema {
    /// Looks the tables up; a file without `ttp_tag` is not a tag database.
    pub fn probe(conn: &Connection, db: &Path) -> Result<Schema, QueryError> {
        let table = |name: &str| table_exists(conn, name).map_err(|e| sqlite_error(db, e));
        if !table("ttp_tag")? {
            return Err(QueryError::Store(StoreError::NotADatabase {
                path: db.to_path_buf(),
            }));
        }
        let has_attackers = table("attackers")?;
        let has_identities = table("attacker_identities")?;
        let has_totals = table("ttp_technique_totals")?;
        let has_kept_rollups =
            table("ttp_technique_minute_totals")? && table("ttp_attacker_technique_totals")?;
        let has_intel = table("attacker_intel")?;
        let has_partitions = table("ttp_tag_partition")?;
        let sha_source = if table("ttp_tag_rule_sha256")? {
            ShaSource::SideTable
        } else {
            let has_column: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('ttp_tag') WHERE name = 'rule_sha256'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| sqlite_error(db, e))?;
            if has_column > 0 {
                ShaSource::Column
            } else {
                ShaSource::None
            }
        };
        Ok(Schema {
            has_attackers,
            has_identities,
            sha_source,
            has_totals,
            has_kept_rollups,
            has_intel,
            has_partitions,
        })
    }

    /// The database holds DECNET's tables (attackers, identities, users).
    pub fn is_decnet(&self) -> bool {
        self.has_attackers
    }
}

impl Reader {
    /// Opens `db` read-only; the file must exist and have a schema we read.
    pub fn open(db: &Path) -> Result<Reader, QueryError> {
        let conn = crate::store::open_reader(db, &StoreOptions::default())?;
        Reader::from_connection(conn, db)
    }

    /// Wraps a connection opened elsewhere, probing its schema.
    pub fn from_connection(conn: Connection, db: &Path) -> Result<Reader, QueryError> {
        let schema = Schema::probe(&conn, db)?;
        Ok(Reader::with_schema(conn, db, schema))
    }

    /// Wraps a connection (a pool's) whose schema was probed before.
    pub fn with_schema(conn: Connection, db: &Path, schema: Schema) -> Reader {
        Reader {
            conn,
            path: db.to_path_buf(),
            schema,
        }
    }

    pub fn schema(&self) -> Schema {
        self.schema
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database holds DECNET's tables (attackers, identities, users).
    pub fn is_decnet(&self) -> bool {
        self.schema.is_decnet()
    }

    /// Gives the connection back (to a pool).
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> QueryError {
        sqlite_error(&self.path, e)
    }
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> QueryError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => QueryError::Store(StoreError::NotADatabase {
            path: path.to_path_buf(),
        }),
        _ => QueryError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// A stored `created_at` (`2026-11-20 08:00:00.000000`) as DECNET's API
/// writes it: ISO 8601 with a `T`, no offset, microseconds dropped when
/// they are all zero (`2026-11-20T08:00:00`, `2026-11-28T20:39:12.023771`). With
/// `utc`, a `Z` is appended (our opt-in fix of DECNET's Q29).
pub fn api_time(stored: &str, utc: bool) -> String {
    let mut s = stored.replacen(' ', "T", 1);
    if let Some(dot) = s.find('.') {
        if s[dot + 1..].bytes().all(|b| b == b'0') {
            s.truncate(dot);
        }
    }
    if utc && !s.is_empty() && !s.ends_with('Z') {
        s.push('Z');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_time_drops_zero_microseconds_only() {
        assert_eq!(
            api_time("2026-11-20 08:00:00.000000", false),
            "2026-11-20T08:00:00"
        );
        assert_eq!(
            api_time("2026-11-28 20:39:12.023771", false),
            "2026-11-28T20:39:12.023771"
        );
        assert_eq!(
            api_time("2026-11-28 20:39:12.500000", true),
            "2026-11-28T20:39:12.500000Z"
        );
        assert_eq!(
            api_time("2026-11-20 08:00:00", true),
            "2026-11-20T08:00:00Z"
        );
    }
}
