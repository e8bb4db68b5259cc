//! Durable windows: each correlation group's window is checkpointed into
//! `ttp_correlation_window`, in the writer's transaction that also commits
//! the tags and the read position of the events counted in it. After a
//! restart (or a kill -9) the windows are read back, so counting goes on
//! where the last checkpoint left it: events after the committed read
//! position are read again and counted once, and a firing they complete
//! gets the same deterministic UUID as before.
//!
//! The table is a log, appended in `seq` order: a changed group's whole
//! window, a dropped (evicted) group as a row without state, a rule's
//! reset as a row without group. Appending writes neighbouring pages;
//! updating rows in place would touch pages all over a large table (half
//! of a 150 MB table for 27,000 changed groups, measured). Reading back
//! replays the log. When the log holds many more rows than there are
//! groups, a checkpoint appends every group and deletes everything before
//! it (a compaction), so the log stays within a few times the live state.
//!
//! Each row remembers the SHA-256 of its rule's `correlate:` block:
//! windows saved under another block (its selection, grouping or window
//! changed while the daemon was down) are not restored but reset (the
//! store's writer says so in the audit log).

use super::window::{Changes, GroupState};
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// The table, created by the store's migrations (both flavours).
pub const SCHEMA: &str = "
CREATE TABLE ttp_correlation_window (
  seq INTEGER PRIMARY KEY,
  rule_id VARCHAR NOT NULL,
  group_key VARCHAR,
  block_sha256 VARCHAR NOT NULL,
  state JSON,
  at DATETIME NOT NULL
);
";

/// A rule's saved windows are dropped: why, and how many groups it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Reset {
    pub why: String,
    pub groups: usize,
}

/// The changes of one rule's windows, to be committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDelta {
    pub rule_id: String,
    pub block_sha256: String,
    /// Set when the rule's windows are dropped first (its block changed,
    /// or the rule is gone).
    pub reset: Option<Reset>,
    pub changes: Changes,
}

/// The window changes since the last checkpoint, every rule's.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WindowDelta {
    pub rules: Vec<RuleDelta>,
    /// Every group of every rule is in `rules`: the rows before them are
    /// deleted once they are written (a compaction).
    pub compact: bool,
}

impl WindowDelta {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rows this delta appends.
    pub fn rows(&self) -> usize {
        self.rules
            .iter()
            .map(|r| {
                r.changes.upserts.len() + r.changes.deletes.len() + usize::from(r.reset.is_some())
            })
            .sum()
    }
}

/// Appends a delta inside the caller's transaction; returns, for the audit
/// log, each reset of a rule that had windows: (rule id, what happened).
pub fn save(conn: &Connection, delta: &WindowDelta) -> rusqlite::Result<Vec<(String, String)>> {
    let now = crate::timefmt::now();
    let before: Option<i64> = if delta.compact {
        Some(conn.query_row(
            "SELECT COALESCE(max(seq), 0) FROM ttp_correlation_window",
            [],
            |r| r.get(0),
        )?)
    } else {
        None
    };
    let mut append = conn.prepare_cached(
        "INSERT INTO ttp_correlation_window (rule_id, group_key, block_sha256, state, at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut resets = Vec::new();
    for rule in &delta.rules {
        let id = &rule.rule_id;
        if let Some(reset) = &rule.reset {
            append.execute(params![
                id,
                None::<&str>,
                rule.block_sha256,
                None::<&str>,
                now
            ])?;
            if reset.groups > 0 {
                resets.push((
                    id.clone(),
                    format!(
                        "correlation windows reset ({} groups dropped): {}",
                        reset.groups, reset.why
                    ),
                ));
            }
        }
        for group in &rule.changes.deletes {
            append.execute(params![id, group, rule.block_sha256, None::<&str>, now])?;
        }
        for (group, state) in &rule.changes.upserts {
            let json = serde_json::to_string(state)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            append.execute(params![id, group, rule.block_sha256, json, now])?;
        }
    }
    if let Some(seq) = before {
        conn.prepare_cached("DELETE FROM ttp_correlation_window WHERE seq <= ?1")?
            .execute([seq])?;
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
    /// (group, state), least recently saved first.
    pub groups: Vec<(String, GroupState)>,
    /// Rows whose state could not be read (skipped, and said).
    pub unreadable: usize,
}

/// Every rule's saved windows, by rule id, and the log's length.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Saved {
    pub rules: HashMap<String, SavedRule>,
    /// Rows in the log (to know when to compact it).
    pub log_rows: u64,
}

/// Replays the log (nothing in a file without the table).
pub fn load(conn: &Connection) -> rusqlite::Result<Saved> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ttp_correlation_window'",
        [],
        |r| r.get(0),
    )?;
    let mut saved = Saved::default();
    if !exists {
        return Ok(saved);
    }
    /// A rule while replaying: each group's newest row.
    #[derive(Default)]
    struct Replay {
        block: String,
        mixed: bool,
        groups: HashMap<String, (i64, Option<String>)>,
    }
    let mut rules: HashMap<String, Replay> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT seq, rule_id, group_key, block_sha256, state FROM ttp_correlation_window ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        saved.log_rows += 1;
        let seq: i64 = row.get(0)?;
        let rule_id: String = row.get(1)?;
        let group: Option<String> = row.get(2)?;
        let block: String = row.get(3)?;
        let state: Option<String> = row.get(4)?;
        let Some(group) = group else {
            // A reset: everything the rule had is gone.
            rules.remove(&rule_id);
            continue;
        };
        let rule = rules.entry(rule_id).or_insert_with(|| Replay {
            block: block.clone(),
            ..Replay::default()
        });
        if rule.block != block {
            rule.mixed = true;
        }
        match state {
            Some(s) => {
                rule.groups.insert(group, (seq, Some(s)));
            }
            None => {
                rule.groups.remove(&group);
            }
        }
    }
    for (id, replay) in rules {
        let mut groups: Vec<(i64, String, String)> = replay
            .groups
            .into_iter()
            .filter_map(|(g, (seq, s))| s.map(|s| (seq, g, s)))
            .collect();
        groups.sort_unstable_by_key(|g| g.0);
        let mut rule = SavedRule {
            block_sha256: replay.block,
            mixed_blocks: replay.mixed,
            ..SavedRule::default()
        };
        for (_, group, state) in groups {
            match serde_json::from_str::<GroupState>(&state) {
                Ok(s) => rule.groups.push((group, s)),
                Err(_) => rule.unreadable += 1,
            }
        }
        if !rule.groups.is_empty() || rule.unreadable > 0 {
            saved.rules.insert(id, rule);
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
        reset: Option<(&str, usize)>,
        upserts: Vec<(&str, GroupState)>,
        deletes: &[&str],
    ) -> WindowDelta {
        WindowDelta {
            rules: vec![RuleDelta {
                rule_id: "C1".into(),
                block_sha256: "b1".into(),
                reset: reset.map(|(why, groups)| Reset {
                    why: why.into(),
                    groups,
                }),
                changes: Changes {
                    upserts: upserts
                        .into_iter()
                        .map(|(g, s)| (g.to_string(), s))
                        .collect(),
                    deletes: deletes.iter().map(|d| d.to_string()).collect(),
                },
            }],
            compact: false,
        }
    }

    #[test]
    fn the_log_replays_to_the_last_state_of_each_group() {
        let conn = db();
        assert_eq!(load(&conn).unwrap(), Saved::default());
        let none = save(
            &conn,
            &delta(None, vec![("a1", state(1)), ("a2", state(2))], &[]),
        )
        .unwrap();
        assert!(none.is_empty());
        save(
            &conn,
            &delta(None, vec![("a3", state(3)), ("a1", state(4))], &["a2"]),
        )
        .unwrap();
        let saved = load(&conn).unwrap();
        assert_eq!(saved.log_rows, 5);
        let rule = &saved.rules["C1"];
        assert_eq!(rule.block_sha256, "b1");
        // a2 dropped; a3 then a1, in the order they were last saved.
        assert_eq!(
            rule.groups,
            vec![("a3".to_string(), state(3)), ("a1".to_string(), state(4))]
        );
        // A row that is not a window is skipped, and counted.
        conn.execute(
            "INSERT INTO ttp_correlation_window (rule_id, group_key, block_sha256, state, at) \
             VALUES ('C1', 'bad', 'b1', 'not json', '2026-01-01')",
            [],
        )
        .unwrap();
        assert_eq!(load(&conn).unwrap().rules["C1"].unreadable, 1);
        // A reset drops what came before it, and is reported when the rule
        // had groups.
        let resets = save(
            &conn,
            &delta(Some(("the window changed", 3)), vec![("a9", state(9))], &[]),
        )
        .unwrap();
        assert_eq!(
            resets,
            vec![(
                "C1".to_string(),
                "correlation windows reset (3 groups dropped): the window changed".to_string()
            )]
        );
        assert_eq!(
            load(&conn).unwrap().rules["C1"].groups,
            vec![("a9".to_string(), state(9))]
        );
        assert!(save(&conn, &delta(Some(("again", 0)), vec![], &[]))
            .unwrap()
            .is_empty());
        assert!(load(&conn).unwrap().rules.is_empty());
    }

    #[test]
    fn a_compaction_keeps_only_the_full_snapshot() {
        let conn = db();
        for t in 0..10 {
            save(
                &conn,
                &delta(None, vec![("a1", state(t)), ("a2", state(t))], &[]),
            )
            .unwrap();
        }
        assert_eq!(load(&conn).unwrap().log_rows, 20);
        let mut full = delta(None, vec![("a1", state(10)), ("a2", state(10))], &[]);
        full.compact = true;
        save(&conn, &full).unwrap();
        let saved = load(&conn).unwrap();
        assert_eq!(saved.log_rows, 2);
        assert_eq!(saved.rules["C1"].groups.len(), 2);
        assert_eq!(saved.rules["C1"].groups[0].1, state(10));
    }
}
