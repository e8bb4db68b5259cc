//! Durable windows: each correlation group's window is checkpointed into
//! `ttp_correlation_window`, in the writer's transaction that also commits
//! the tags and the read position of the events counted in it. After a
//! restart (or a kill -9) the windows are read back, so counting goes on
//! where the last commit left it: events after the committed read position
//! are read again and counted once, and a firing they complete gets the
//! same deterministic UUID as before.
//!
//! A row is keyed by (rule, group) and remembers the SHA-256 of the rule's
//! `correlate:` block: windows saved under another block (its selection,
//! grouping or window changed while the daemon was down) are not restored,
//! and their rows are deleted (the store's writer says so in the audit
//! log).

use super::window::{Changes, GroupState};
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// The table, created by the store's migrations (both flavours).
pub const SCHEMA: &str = "
CREATE TABLE ttp_correlation_window (
  rule_id VARCHAR NOT NULL, group_key VARCHAR NOT NULL, block_sha256 VARCHAR NOT NULL,
  state JSON NOT NULL, updated_at DATETIME NOT NULL,
  PRIMARY KEY (rule_id, group_key)
) WITHOUT ROWID;
";

/// The changes of one rule's windows, to be committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDelta {
    pub rule_id: String,
    pub block_sha256: String,
    /// Set when the rule's saved windows are dropped first (its block
    /// changed, or the rule is gone): the reason, for the audit log.
    pub reset: Option<String>,
    pub changes: Changes,
}

/// The window changes since the last checkpoint, every rule's.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WindowDelta(pub Vec<RuleDelta>);

impl WindowDelta {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Rows this delta writes or deletes.
    pub fn rows(&self) -> usize {
        self.0
            .iter()
            .map(|r| {
                r.changes.upserts.len() + r.changes.deletes.len() + usize::from(r.reset.is_some())
            })
            .sum()
    }
}

/// Writes a delta inside the caller's transaction; returns, for the audit
/// log, each reset that dropped saved windows: (rule id, what happened).
pub fn save(conn: &Connection, delta: &WindowDelta) -> rusqlite::Result<Vec<(String, String)>> {
    let now = crate::timefmt::now();
    let mut resets = Vec::new();
    for rule in &delta.0 {
        if let Some(reason) = &rule.reset {
            let dropped = conn
                .prepare_cached("DELETE FROM ttp_correlation_window WHERE rule_id = ?1")?
                .execute([&rule.rule_id])?;
            if dropped > 0 {
                resets.push((
                    rule.rule_id.clone(),
                    format!("correlation windows reset ({dropped} groups dropped): {reason}"),
                ));
            }
        }
        let mut delete = conn.prepare_cached(
            "DELETE FROM ttp_correlation_window WHERE rule_id = ?1 AND group_key = ?2",
        )?;
        for group in &rule.changes.deletes {
            delete.execute(params![rule.rule_id, group])?;
        }
        let mut upsert = conn.prepare_cached(
            "INSERT INTO ttp_correlation_window (rule_id, group_key, block_sha256, state, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (rule_id, group_key) DO UPDATE SET \
             block_sha256 = excluded.block_sha256, state = excluded.state, updated_at = excluded.updated_at",
        )?;
        for (group, state) in &rule.changes.upserts {
            let json = serde_json::to_string(state)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            upsert.execute(params![rule.rule_id, group, rule.block_sha256, json, now])?;
        }
    }
    Ok(resets)
}

/// One rule's saved windows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SavedRule {
    /// The block they were counted under (several only if the table was
    /// edited by hand: then none is restored).
    pub block_sha256: String,
    pub mixed_blocks: bool,
    /// (group, state), least recently updated first.
    pub groups: Vec<(String, GroupState)>,
    /// Rows whose state could not be read (skipped, and said).
    pub unreadable: usize,
}

/// Every rule's saved windows, by rule id.
pub type Saved = HashMap<String, SavedRule>;

/// Reads every saved window (none in a file without the table).
pub fn load(conn: &Connection) -> rusqlite::Result<Saved> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ttp_correlation_window'",
        [],
        |r| r.get(0),
    )?;
    let mut saved = Saved::new();
    if !exists {
        return Ok(saved);
    }
    let mut stmt = conn.prepare(
        "SELECT rule_id, group_key, block_sha256, state FROM ttp_correlation_window \
         ORDER BY rule_id, updated_at, group_key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let rule_id: String = row.get(0)?;
        let group: String = row.get(1)?;
        let block: String = row.get(2)?;
        let state: String = row.get(3)?;
        let rule = saved.entry(rule_id).or_insert_with(|| SavedRule {
            block_sha256: block.clone(),
            ..SavedRule::default()
        });
        if rule.block_sha256 != block {
            rule.mixed_blocks = true;
        }
        match serde_json::from_str::<GroupState>(&state) {
            Ok(s) => rule.groups.push((group, s)),
            Err(_) => rule.unreadable += 1,
        }
    }
    Ok(saved)
}

/// The SHA-256 (lowercase hex) of a `correlate:` block's JSON.
pub fn block_sha256(block: &str) -> String {
    use sha2::Digest;
    crate::tag::hex_lower(&sha2::Sha256::digest(block.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::window::SavedEntry;
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn state(t: i64) -> GroupState {
        GroupState {
            newest: Some(t),
            fired: None,
            entries: vec![SavedEntry {
                t,
                v: Some("root".into()),
                n: 0.0,
                s: 0,
                id: "e1".into(),
            }],
        }
    }

    fn delta(
        reset: Option<&str>,
        upserts: Vec<(&str, GroupState)>,
        deletes: &[&str],
    ) -> WindowDelta {
        WindowDelta(vec![RuleDelta {
            rule_id: "C1".into(),
            block_sha256: "b1".into(),
            reset: reset.map(String::from),
            changes: Changes {
                upserts: upserts
                    .into_iter()
                    .map(|(g, s)| (g.to_string(), s))
                    .collect(),
                deletes: deletes.iter().map(|d| d.to_string()).collect(),
            },
        }])
    }

    #[test]
    fn saved_windows_read_back_and_resets_are_reported() {
        let conn = db();
        assert!(load(&conn).unwrap().is_empty());
        let none = save(
            &conn,
            &delta(None, vec![("a1", state(1)), ("a2", state(2))], &[]),
        )
        .unwrap();
        assert!(none.is_empty());
        save(&conn, &delta(None, vec![("a1", state(3))], &["a2"])).unwrap();
        let saved = load(&conn).unwrap();
        let rule = &saved["C1"];
        assert_eq!(rule.block_sha256, "b1");
        assert_eq!(rule.groups, vec![("a1".to_string(), state(3))]);
        // A row that is not a window is skipped, and counted.
        conn.execute(
            "INSERT INTO ttp_correlation_window VALUES ('C1', 'bad', 'b1', 'not json', '2026-01-01')",
            [],
        )
        .unwrap();
        assert_eq!(load(&conn).unwrap()["C1"].unreadable, 1);
        let resets = save(&conn, &delta(Some("the window changed"), vec![], &[])).unwrap();
        assert!(load(&conn).unwrap().is_empty());
        assert_eq!(
            resets,
            vec![(
                "C1".to_string(),
                "correlation windows reset (2 groups dropped): the window changed".to_string()
            )]
        );
        // Nothing saved, nothing said.
        assert!(save(&conn, &delta(Some("again"), vec![], &[]))
            .unwrap()
            .is_empty());
    }
}
