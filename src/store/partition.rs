//! Our own file's tags, in partitions (issue #13).
//!
//! A single `ttp_tag` table slows down as it grows: its random UUID key and
//! 13 indexes spread every batch over pages that no longer fit the cache.
//! So in our own file `ttp_tag` is a view (`UNION ALL`, DECNET's column
//! names and types, plus `rule_sha256`) over tables `ttp_tag_p000001`,
//! `ttp_tag_p000002`, …:
//!
//! - the **live** partition takes the writer's inserts; it carries the
//!   UUID key and the four indexes the common queries need (attacker ×
//!   time, identity × technique, technique × time, time);
//! - when it holds [`PARTITION_ROWS`] rows it is **closed**: a new live
//!   partition starts, the closed one gets a Bloom filter of its UUIDs
//!   (stored in `ttp_tag_partition.bloom`) and, one per writer pass, the
//!   indexes of the filters users apply ([`DEFERRED_INDEXES`]).
//!
//! A tag UUID stays unique across partitions: before a tag goes into the
//! live partition, the closed partitions whose filter may hold its UUID
//! are asked (about 0.2 % of tags ask a partition for nothing).
//!
//! `INSTEAD OF` triggers keep `INSERT`, `UPDATE` and `DELETE` on the view
//! working for `sqlite3` users, and the kept totals exact
//! (`store::totals`). The partitions are the view's: a hand edit of one
//! directly bypasses the totals.

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

mod bloom;

use bloom::Bloom;

/// Rows a live partition takes before it is closed.
pub const PARTITION_ROWS: i64 = 250_000;

/// The columns, in DECNET's order, then ours.
const COLUMNS: [&str; 18] = [
    "uuid",
    "source_kind",
    "source_id",
    "attacker_uuid",
    "identity_uuid",
    "session_id",
    "decky_id",
    "tactic",
    "technique_id",
    "sub_technique_id",
    "confidence",
    "rule_id",
    "rule_version",
    "evidence",
    "attack_release",
    "mitre_url",
    "created_at",
    "rule_sha256",
];

/// Indexes every partition has from the start: what the common queries
/// (one attacker's newest tags, an identity's tags and rollup, a technique
/// over time, the newest tags) need.
const LIVE_INDEXES: [(&str, &str); 4] = [
    ("attacker_created", "attacker_uuid,created_at"),
    ("identity_technique", "identity_uuid,technique_id"),
    ("technique_created", "technique_id,created_at"),
    ("created_at", "created_at"),
];

/// What a closed partition gets besides, built when it closes, one per
/// writer pass: the indexes of the filters `ttp query tags` and the API
/// offer (decky, rule, session, sub-technique, tactic). The rest of
/// DECNET's are left out of our own file: `attacker_uuid`, `identity_uuid`
/// and `technique_id` are prefixes of live indexes, nothing asks for one
/// `attack_release`, and an attacker's rollup reads the kept totals (an
/// index build is 150-330 ms of the writer's time per 250,000 tags).
/// `attacker_created` is listed for the partitions of a file written
/// before it was a live index.
const DEFERRED_INDEXES: [(&str, &str); 6] = [
    ("attacker_created", "attacker_uuid,created_at"),
    ("decky_id", "decky_id"),
    ("rule_id", "rule_id"),
    ("session_id", "session_id"),
    ("sub_technique_id", "sub_technique_id"),
    ("tactic", "tactic"),
];

/// DECNET's indexes a small table adopted as the live partition (schema
/// step 6) drops: the live partition's inserts pay only for its own.
const ADOPTED_DROPS: [&str; 10] = [
    "attack_release",
    "attacker_technique",
    "attacker_uuid",
    "decky_id",
    "identity_uuid",
    "rule_id",
    "session_id",
    "sub_technique_id",
    "tactic",
    "technique_id",
];

/// Schema step 6: the single table becomes partition 1 (its indexes keep
/// DECNET's names), the partition catalogue is created; [`adopt`] finishes
/// the step (it needs to look at the data).
pub(super) const MIGRATION: &str = r#"
DROP TRIGGER IF EXISTS ttp_tag_totals_delete;
DROP TRIGGER IF EXISTS ttp_tag_totals_update;
PRAGMA legacy_alter_table = ON;
ALTER TABLE ttp_tag RENAME TO ttp_tag_p000001;
PRAGMA legacy_alter_table = OFF;
CREATE TABLE ttp_tag_partition (
  id INTEGER PRIMARY KEY,
  name VARCHAR NOT NULL UNIQUE,
  state VARCHAR NOT NULL CHECK (state IN ('live', 'closed')),
  rows INTEGER,
  bloom BLOB,
  closed_at DATETIME
);
"#;

fn table_name(id: i64) -> String {
    format!("ttp_tag_p{id:06}")
}

/// The `CREATE TABLE` of a partition: DECNET's columns and CHECKs, plus
/// `rule_sha256`.
fn create_table(name: &str) -> String {
    format!(
        r#"
CREATE TABLE {name} (
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
"#
    )
}

/// The most partitions one `UNION ALL` of the view joins: SQLite refuses a
/// compound `SELECT` of more than 500 terms, so past this many the view
/// joins views (`ttp_tag_chunk_0001`, …) of this many partitions each
/// (250,000 tags a partition: 100 M tags).
pub const VIEW_ARMS: usize = 400;

/// The view `ttp_tag` over `tables` and its `INSTEAD OF` triggers; `live`
/// takes inserts made through the view.
fn view_sql(tables: &[String], live: &str, arms: usize) -> String {
    let cols = COLUMNS.join(", ");
    let select = |from: &[String]| {
        from.iter()
            .map(|t| format!("SELECT {cols} FROM {t}"))
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n")
    };
    let mut chunks = String::new();
    let union = if tables.len() <= arms {
        select(tables)
    } else {
        let mut names = Vec::new();
        for (i, part) in tables.chunks(arms.max(1)).enumerate() {
            let name = format!("ttp_tag_chunk_{:04}", i + 1);
            chunks.push_str(&format!("CREATE VIEW {name} AS\n{};\n", select(part)));
            names.push(name);
        }
        select(&names)
    };
    let new_values = COLUMNS
        .iter()
        .map(|c| match *c {
            "rule_sha256" => "COALESCE(NEW.rule_sha256, '')".to_string(),
            c => format!("NEW.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let deletes: String = tables
        .iter()
        .map(|t| format!("  DELETE FROM {t} WHERE uuid = OLD.uuid;\n"))
        .collect();
    let updates: String = tables
        .iter()
        .map(|t| format!("  UPDATE {t} SET ({cols}) = ({new_values}) WHERE uuid = OLD.uuid;\n"))
        .collect();
    format!(
        "DROP VIEW IF EXISTS ttp_tag;
{chunks}CREATE VIEW ttp_tag AS
{union};
CREATE TRIGGER ttp_tag_insert INSTEAD OF INSERT ON ttp_tag BEGIN
  SELECT RAISE(ABORT, 'UNIQUE constraint failed: ttp_tag.uuid')
  WHERE EXISTS (SELECT 1 FROM ttp_tag WHERE uuid = NEW.uuid);
  INSERT INTO {live} ({cols}) VALUES ({new_values});
  {totals}
END;
CREATE TRIGGER ttp_tag_delete INSTEAD OF DELETE ON ttp_tag BEGIN
{deletes}  {old}
END;
CREATE TRIGGER ttp_tag_update INSTEAD OF UPDATE ON ttp_tag BEGIN
{updates}  {old}
  {new}
END;
",
        totals = super::totals::recompute("NEW"),
        old = super::totals::recompute("OLD"),
        new = super::totals::recompute("NEW"),
    )
}

/// A new live partition: table, live indexes, catalogue row.
fn create_partition(conn: &Connection, id: i64) -> rusqlite::Result<String> {
    let name = table_name(id);
    let mut sql = create_table(&name);
    for (suffix, cols) in LIVE_INDEXES {
        sql.push_str(&format!(
            "CREATE INDEX ix_{name}_{suffix} ON {name} ({cols});\n"
        ));
    }
    conn.execute_batch(&sql)?;
    conn.execute(
        "INSERT INTO ttp_tag_partition (id, name, state) VALUES (?1, ?2, 'live')",
        params![id, name],
    )?;
    Ok(name)
}

/// Re-creates the view and its triggers over every partition.
fn rebuild_view(conn: &Connection) -> rusqlite::Result<()> {
    rebuild_view_in(conn, VIEW_ARMS)
}

fn rebuild_view_in(conn: &Connection, arms: usize) -> rusqlite::Result<()> {
    let chunks: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE 'ttp\\_tag\\_chunk\\_%' ESCAPE '\\'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in chunks {
        conn.execute_batch(&format!("DROP VIEW {name}"))?;
    }
    let mut stmt = conn.prepare("SELECT name, state FROM ttp_tag_partition ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut tables = Vec::new();
    let mut live = None;
    for row in rows {
        let (name, state) = row?;
        if state == "live" {
            live = Some(name.clone());
        }
        tables.push(name);
    }
    let live = live.ok_or_else(|| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("ttp_tag_partition has no live partition".into()),
        )
    })?;
    conn.execute_batch(&view_sql(&tables, &live, arms))
}

/// The index columns `table` has, one comma-joined list per index.
fn index_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT (SELECT group_concat(name, ',') FROM \
           (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) \
         FROM pragma_index_list(?1) il",
    )?;
    let rows = stmt.query_map([table], |r| r.get::<_, Option<String>>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(r?);
    }
    Ok(out)
}

/// Finishes schema step 6 inside the migration's transaction: partition 1
/// (the former table) stays live while it is small, its deferred indexes
/// dropped, or is closed and a new live partition starts; then the view.
pub(super) fn adopt(conn: &Connection) -> rusqlite::Result<()> {
    adopt_at(conn, PARTITION_ROWS)
}

fn adopt_at(conn: &Connection, limit: i64) -> rusqlite::Result<()> {
    let first = table_name(1);
    let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {first}"), [], |r| r.get(0))?;
    if rows < limit {
        for suffix in ADOPTED_DROPS {
            conn.execute_batch(&format!("DROP INDEX IF EXISTS ix_ttp_tag_{suffix};"))?;
        }
        add_live_indexes(conn, &first)?;
        conn.execute(
            "INSERT INTO ttp_tag_partition (id, name, state) VALUES (1, ?1, 'live')",
            [&first],
        )?;
    } else {
        let bloom = Bloom::of_table(conn, &first, rows)?;
        conn.execute(
            "INSERT INTO ttp_tag_partition (id, name, state, rows, bloom, closed_at) \
             VALUES (1, ?1, 'closed', ?2, ?3, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            params![first, rows, bloom.to_bytes()],
        )?;
        create_partition(conn, 2)?;
    }
    rebuild_view(conn)
}

/// Creates the live indexes `table` lacks (compared by columns: an index
/// of DECNET's name may already serve).
fn add_live_indexes(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    let have = index_columns(conn, table)?;
    for (suffix, cols) in LIVE_INDEXES {
        if !have.iter().any(|h| h == cols) {
            conn.execute_batch(&format!(
                "CREATE INDEX ix_{table}_{suffix} ON {table} ({cols})"
            ))?;
        }
    }
    Ok(())
}

/// Finishes schema step 8 inside the migration's transaction: the view's
/// triggers keep the new totals too, in place of each partition's own
/// (opening a connection parsed them all: 17 of its 25 ms at 40
/// partitions), and the live partition gets the live indexes it lacks
/// (closed ones get theirs from the writer, as [`DEFERRED_INDEXES`]).
pub(super) fn retrigger(conn: &Connection) -> rusqlite::Result<()> {
    let mut live = None;
    let names: Vec<(String, String)> = conn
        .prepare("SELECT name, state FROM ttp_tag_partition ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, state) in names {
        conn.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {name}_totals_delete; \
             DROP TRIGGER IF EXISTS {name}_totals_update;"
        ))?;
        if state == "live" {
            live = Some(name);
        }
    }
    if let Some(live) = live {
        add_live_indexes(conn, &live)?;
    }
    rebuild_view(conn)
}

#[derive(Debug, Clone)]
struct Closed {
    name: String,
    bloom: Bloom,
}

/// The partitions as the writer sees them: where inserts go, and the
/// closed partitions to ask before a UUID counts as new.
#[derive(Debug, Clone, Default)]
pub struct Partitions {
    /// Rows a live partition takes ([`PARTITION_ROWS`]; smaller in tests).
    limit: i64,
    live: String,
    live_id: i64,
    closed: Vec<Closed>,
    /// Closed partitions still missing deferred indexes.
    unindexed: Vec<String>,
    /// SQLite's schema cookie when this was read: another process closing
    /// a partition (or building an index) changes it, and this is read
    /// again.
    schema_version: i64,
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}

impl Partitions {
    /// Reads the catalogue; a closed partition without a stored filter
    /// (none is written without one, but a hand edit may clear it) gets one
    /// computed here.
    pub fn load(conn: &Connection) -> rusqlite::Result<Partitions> {
        let mut parts = Partitions {
            limit: PARTITION_ROWS,
            schema_version: schema_version(conn)?,
            ..Partitions::default()
        };
        let mut stmt =
            conn.prepare("SELECT id, name, state, rows, bloom FROM ttp_tag_partition ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
            ))
        })?;
        for row in rows {
            let (id, name, state, count, bloom) = row?;
            if state == "live" {
                parts.live = name;
                parts.live_id = id;
                continue;
            }
            let bloom = match bloom.as_deref().and_then(Bloom::from_bytes) {
                Some(b) => b,
                None => {
                    let count = match count {
                        Some(c) => c,
                        None => {
                            conn.query_row(&format!("SELECT count(*) FROM {name}"), [], |r| {
                                r.get(0)
                            })?
                        }
                    };
                    Bloom::of_table(conn, &name, count)?
                }
            };
            let have = index_columns(conn, &name)?;
            if DEFERRED_INDEXES
                .iter()
                .any(|(_, cols)| !have.iter().any(|h| h == cols))
            {
                parts.unindexed.push(name.clone());
            }
            parts.closed.push(Closed { name, bloom });
        }
        if parts.live.is_empty() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some("ttp_tag_partition has no live partition".into()),
            ));
        }
        Ok(parts)
    }

    /// The table inserts go to.
    pub fn live(&self) -> &str {
        &self.live
    }

    /// Whether the schema is still the one this was read from (another
    /// process writing the same file may have closed a partition).
    pub fn is_current(&self, conn: &Connection) -> rusqlite::Result<bool> {
        Ok(schema_version(conn)? == self.schema_version)
    }

    /// Reads the catalogue again when another process changed it.
    fn refresh(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if !self.is_current(conn)? {
            let limit = self.limit;
            *self = Partitions::load(conn)?;
            self.limit = limit;
        }
        Ok(())
    }

    /// Whether `uuid` is stored in a closed partition.
    pub fn stored_elsewhere(
        &self,
        conn: &Connection,
        uuid: &Uuid,
        text: &str,
    ) -> rusqlite::Result<bool> {
        for c in self.closed.iter().rev() {
            if c.bloom.may_contain(uuid) {
                let found = conn
                    .prepare_cached(&format!("SELECT 1 FROM {} WHERE uuid = ?1", c.name))?
                    .query_row([text], |_| Ok(()))
                    .optional()?;
                if found.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Between two of the writer's transactions: closes the live partition
    /// once it is full, else builds one missing index of a closed one.
    /// Each step is its own transaction; returns whether it did anything.
    pub fn maintain(&mut self, conn: &Connection) -> rusqlite::Result<Maintenance> {
        self.refresh(conn)?;
        let top: i64 = conn.query_row(
            &format!("SELECT COALESCE(max(rowid), 0) FROM {}", self.live),
            [],
            |r| r.get(0),
        )?;
        if top >= self.limit {
            let rows: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {}", self.live), [], |r| {
                    r.get(0)
                })?;
            if rows >= self.limit {
                return self.close(conn);
            }
        }
        let Some(name) = self.unindexed.first().cloned() else {
            return Ok(Maintenance::Nothing);
        };
        let have = index_columns(conn, &name)?;
        let missing = DEFERRED_INDEXES
            .iter()
            .find(|(_, cols)| !have.iter().any(|h| h == cols));
        match missing {
            Some((suffix, cols)) => {
                conn.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS ix_{name}_{suffix} ON {name} ({cols})"
                ))?;
                self.schema_version = schema_version(conn)?;
                Ok(Maintenance::Indexed(name, (*suffix).to_string()))
            }
            None => {
                self.unindexed.remove(0);
                conn.execute_batch(&format!("PRAGMA analysis_limit = 1000; ANALYZE {name};"))?;
                self.schema_version = schema_version(conn)?;
                Ok(Maintenance::Completed(name))
            }
        }
    }

    /// Closes the live partition: under the write lock (no other process
    /// adds a row the filter would miss), its filter, the next live table
    /// and the view, in one transaction.
    fn close(&mut self, conn: &Connection) -> rusqlite::Result<Maintenance> {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let rows: i64 = tx.query_row(&format!("SELECT count(*) FROM {}", self.live), [], |r| {
            r.get(0)
        })?;
        let bloom = Bloom::of_table(&tx, &self.live, rows)?;
        tx.execute(
            "UPDATE ttp_tag_partition SET state = 'closed', rows = ?2, bloom = ?3, \
             closed_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = ?1 AND state = 'live'",
            params![self.live_id, rows, bloom.to_bytes()],
        )?;
        let next = create_partition(&tx, self.live_id + 1)?;
        rebuild_view(&tx)?;
        self.schema_version = schema_version(&tx)?;
        tx.commit()?;
        let closed = std::mem::replace(&mut self.live, next);
        self.live_id += 1;
        self.unindexed.push(closed.clone());
        self.closed.push(Closed {
            name: closed.clone(),
            bloom,
        });
        Ok(Maintenance::Closed(closed, rows))
    }
}

/// What [`Partitions::maintain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintenance {
    Nothing,
    /// The partition closed, with its row count.
    Closed(String, i64),
    /// One deferred index built on a closed partition.
    Indexed(String, String),
    /// A closed partition has all its indexes and statistics.
    Completed(String),
}

#[cfg(test)]
mod tests;
