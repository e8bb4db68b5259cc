//! The read position of a followed events file, kept in SQLite so that a
//! restarted `ttp run` resumes where it stopped.
//!
//! A position names the file by identity (device, inode and a fingerprint
//! of its first bytes), not only by path, so that a file rotated while the
//! daemon was down is told apart from its successor. The writer stores a
//! position in the same transaction as the tags of the events before it:
//! after a crash the daemon re-reads at most what was not committed, and
//! re-inserting those tags changes nothing (their UUIDs are deterministic).

use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;

/// How many leading bytes of a file its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 64;

/// Which file, by identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Lowercase hex of the file's first bytes (up to
    /// [`FINGERPRINT_BYTES`]) when it was opened.
    pub fingerprint: String,
}

impl FileId {
    /// Whether `head` (the first bytes of a file now) is consistent with
    /// this fingerprint: the same bytes as far as both go.
    pub fn same_start(&self, head: &[u8]) -> bool {
        let now = crate::tag::hex_lower(head);
        let n = now.len().min(self.fingerprint.len());
        now[..n] == self.fingerprint[..n] && now.len() >= self.fingerprint.len()
    }
}

/// Where reading a followed source stands: every byte before `offset` of
/// file `file` has been tagged and committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPosition {
    /// The followed path (absolute), the key of the stored position.
    pub source: Arc<str>,
    pub file: Arc<FileId>,
    pub offset: u64,
}

/// The table, created by the store's migrations.
pub const SCHEMA: &str = "
CREATE TABLE ttp_input_position (
  source VARCHAR NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
  fingerprint VARCHAR NOT NULL, byte_offset INTEGER NOT NULL, updated_at DATETIME NOT NULL,
  PRIMARY KEY (source)
);
";

/// Saves a position (inside the caller's transaction).
pub fn save(conn: &Connection, p: &InputPosition) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ttp_input_position (source, dev, ino, fingerprint, byte_offset, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(source) DO UPDATE SET dev = excluded.dev, \
         ino = excluded.ino, fingerprint = excluded.fingerprint, byte_offset = excluded.byte_offset, \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        &*p.source,
        p.file.dev as i64,
        p.file.ino as i64,
        p.file.fingerprint,
        p.offset as i64,
        crate::timefmt::now()
    ])?;
    Ok(())
}

/// The stored position of `source`, if any (none in a file without the
/// table yet).
pub fn load(conn: &Connection, source: &str) -> rusqlite::Result<Option<InputPosition>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ttp_input_position'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        "SELECT dev, ino, fingerprint, byte_offset FROM ttp_input_position WHERE source = ?1",
        [source],
        |r| {
            Ok(InputPosition {
                source: source.into(),
                file: Arc::new(FileId {
                    dev: r.get::<_, i64>(0)? as u64,
                    ino: r.get::<_, i64>(1)? as u64,
                    fingerprint: r.get(2)?,
                }),
                offset: r.get::<_, i64>(3)?.max(0) as u64,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_by_prefix() {
        let id = FileId {
            dev: 1,
            ino: 2,
            fingerprint: crate::tag::hex_lower(b"{\"a\":1}\n"),
        };
        assert!(id.same_start(b"{\"a\":1}\n{\"b\":2}\n"));
        assert!(!id.same_start(b"{\"a\":2}\n"));
        assert!(!id.same_start(b"{\"a\""), "a shorter file is another file");
    }

    #[test]
    fn positions_round_trip() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(load(&conn, "/x").unwrap(), None);
        conn.execute_batch(SCHEMA).unwrap();
        let p = InputPosition {
            source: "/x".into(),
            file: Arc::new(FileId {
                dev: 7,
                ino: u64::MAX >> 1,
                fingerprint: "ab".into(),
            }),
            offset: 1234,
        };
        save(&conn, &p).unwrap();
        assert_eq!(load(&conn, "/x").unwrap(), Some(p));
    }
}
