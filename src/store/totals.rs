//! Our own file's kept rollups: the answers to the questions users ask
//! most, kept up to date by the writer so that they read a few rows
//! instead of every tag (issue #13: at 10 M tags a scan of one attacker's
//! tags or of the last hour's took 64–430 ms).
//!
//! - `ttp_technique_totals` (schema step 5): the fleet rollup;
//! - `ttp_attacker_technique_totals`: the rollup of each attacker;
//! - `ttp_technique_minute_totals`: the fleet rollup of each minute (the
//!   first 16 characters of `created_at`, `YYYY-MM-DD HH:MM`), from which
//!   a rollup over a time window adds whole minutes and reads only the
//!   tags of its two partial minutes (`query::rollup`).
//!
//! Each row is a (technique, sub-technique) group: the string maximum of
//! its tactics, its tag count, first and last `created_at`, highest
//! confidence, as the rollups compute them. `sub_technique_id` is '' for
//! none (a primary key cannot hold NULL). The writer adds each batch's new
//! tags in its transaction ([`add`]: one upsert per group of the batch);
//! the view's triggers recompute the groups a hand `INSERT`, `DELETE` or
//! `UPDATE` of `ttp_tag` touches ([`recompute`]), so the totals stay exact.

use crate::tag::Tag;
use rusqlite::{params, Connection};
use std::collections::BTreeMap;

/// Schema step 8: the attacker and per-minute totals, filled from the tags
/// already stored.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE ttp_attacker_technique_totals (
  attacker_uuid VARCHAR NOT NULL,
  technique_id VARCHAR NOT NULL, sub_technique_id VARCHAR NOT NULL, tactic VARCHAR NOT NULL,
  count INTEGER NOT NULL, first_seen DATETIME NOT NULL, last_seen DATETIME NOT NULL,
  confidence_max FLOAT NOT NULL,
  PRIMARY KEY (attacker_uuid, technique_id, sub_technique_id)
) WITHOUT ROWID;
INSERT INTO ttp_attacker_technique_totals
SELECT attacker_uuid, technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), COUNT(*),
       MIN(created_at), MAX(created_at), MAX(confidence)
FROM ttp_tag WHERE attacker_uuid IS NOT NULL
GROUP BY attacker_uuid, technique_id, COALESCE(sub_technique_id, '');
CREATE TABLE ttp_technique_minute_totals (
  minute VARCHAR NOT NULL,
  technique_id VARCHAR NOT NULL, sub_technique_id VARCHAR NOT NULL, tactic VARCHAR NOT NULL,
  count INTEGER NOT NULL, first_seen DATETIME NOT NULL, last_seen DATETIME NOT NULL,
  confidence_max FLOAT NOT NULL,
  PRIMARY KEY (minute, technique_id, sub_technique_id)
) WITHOUT ROWID;
INSERT INTO ttp_technique_minute_totals
SELECT substr(created_at, 1, 16), technique_id, COALESCE(sub_technique_id, ''), MAX(tactic),
       COUNT(*), MIN(created_at), MAX(created_at), MAX(confidence)
FROM ttp_tag
GROUP BY substr(created_at, 1, 16), technique_id, COALESCE(sub_technique_id, '');
"#;

/// The length of a minute's key: `YYYY-MM-DD HH:MM`.
pub const MINUTE_LEN: usize = 16;

/// The tags of the minute `{k}` (a key), through the `created_at` indexes:
/// every text that starts with the key sorts between the key and the key
/// followed by the highest code point.
const IN_MINUTE: &str = "created_at >= {k} AND created_at < {k} || char(1114111) \
                             AND substr(created_at, 1, 16) = {k}";

/// One kept group, as a batch adds it.
#[derive(Debug, Clone, PartialEq)]
struct Group<'a> {
    tactic: &'a str,
    count: i64,
    first: &'a str,
    last: &'a str,
    confidence: f64,
}

impl<'a> Group<'a> {
    fn of(t: &'a Tag) -> Group<'a> {
        Group {
            tactic: &t.tactic,
            count: 0,
            first: &t.created_at,
            last: &t.created_at,
            confidence: t.confidence,
        }
    }

    fn add(&mut self, t: &'a Tag) {
        self.count += 1;
        self.tactic = self.tactic.max(t.tactic.as_str());
        self.first = self.first.min(t.created_at.as_str());
        self.last = self.last.max(t.created_at.as_str());
        self.confidence = self.confidence.max(t.confidence);
    }
}

/// What an upsert does to a kept row (the columns after the key).
const MERGE: &str = "count = count + excluded.count, \
                     tactic = MAX(tactic, excluded.tactic), \
                     first_seen = MIN(first_seen, excluded.first_seen), \
                     last_seen = MAX(last_seen, excluded.last_seen), \
                     confidence_max = MAX(confidence_max, excluded.confidence_max)";

/// Adds newly stored tags to the kept totals, one upsert per group of the
/// batch, in the caller's transaction. (A trigger per row did the fleet's
/// alone at twice the cost of the whole insert.)
pub(super) fn add(tx: &Connection, new: &[&Tag]) -> rusqlite::Result<()> {
    let mut fleet: BTreeMap<(&str, &str), Group> = BTreeMap::new();
    let mut attacker: BTreeMap<(&str, &str, &str), Group> = BTreeMap::new();
    let mut minute: BTreeMap<(&str, &str, &str), Group> = BTreeMap::new();
    for &t in new {
        let technique = t.technique_id.as_str();
        let sub = t.sub_technique_id.as_deref().unwrap_or("");
        fleet
            .entry((technique, sub))
            .or_insert_with(|| Group::of(t))
            .add(t);
        if let Some(a) = &t.attacker_uuid {
            attacker
                .entry((a, technique, sub))
                .or_insert_with(|| Group::of(t))
                .add(t);
        }
        minute
            .entry((minute_of(&t.created_at), technique, sub))
            .or_insert_with(|| Group::of(t))
            .add(t);
    }
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT INTO ttp_technique_totals VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (technique_id, sub_technique_id) DO UPDATE SET {MERGE}"
    ))?;
    for ((technique, sub), g) in fleet {
        stmt.execute(params![
            technique,
            sub,
            g.tactic,
            g.count,
            g.first,
            g.last,
            g.confidence
        ])?;
    }
    for (table, keyed) in [
        ("ttp_attacker_technique_totals", attacker),
        ("ttp_technique_minute_totals", minute),
    ] {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT DO UPDATE SET {MERGE}"
        ))?;
        for ((key, technique, sub), g) in keyed {
            stmt.execute(params![
                key,
                technique,
                sub,
                g.tactic,
                g.count,
                g.first,
                g.last,
                g.confidence
            ])?;
        }
    }
    Ok(())
}

/// The minute key of a stored `created_at` (SQLite's `substr(x, 1, 16)`:
/// the first 16 characters).
pub fn minute_of(created_at: &str) -> &str {
    match created_at.char_indices().nth(MINUTE_LEN) {
        Some((end, _)) => &created_at[..end],
        None => created_at,
    }
}

/// Trigger statements that recompute, from the tags, the three kept
/// groups of the row `row` (`OLD` or `NEW`): run after a hand `DELETE`,
/// `UPDATE` or `INSERT`.
pub(super) fn recompute(row: &str) -> String {
    let group = format!(
        "technique_id = {row}.technique_id AND sub_technique_id = COALESCE({row}.sub_technique_id, '')"
    );
    let tags =
        format!("technique_id = {row}.technique_id AND sub_technique_id IS {row}.sub_technique_id");
    let columns = "technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), COUNT(*), \
                   MIN(created_at), MAX(created_at), MAX(confidence)";
    let minute = format!("substr({row}.created_at, 1, 16)");
    let in_minute = IN_MINUTE.replace("{k}", &minute);
    format!(
        "DELETE FROM ttp_technique_totals WHERE {group};
  INSERT INTO ttp_technique_totals
  SELECT {columns} FROM ttp_tag WHERE {tags}
  GROUP BY technique_id, COALESCE(sub_technique_id, '');
  DELETE FROM ttp_attacker_technique_totals WHERE attacker_uuid = {row}.attacker_uuid AND {group};
  INSERT INTO ttp_attacker_technique_totals
  SELECT attacker_uuid, {columns} FROM ttp_tag
  WHERE attacker_uuid = {row}.attacker_uuid AND {tags}
  GROUP BY attacker_uuid, technique_id, COALESCE(sub_technique_id, '');
  DELETE FROM ttp_technique_minute_totals WHERE minute = {minute} AND {group};
  INSERT INTO ttp_technique_minute_totals
  SELECT {minute}, {columns} FROM ttp_tag WHERE {in_minute} AND {tags}
  GROUP BY technique_id, COALESCE(sub_technique_id, '');
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_is_the_first_sixteen_characters() {
        assert_eq!(minute_of("2026-11-29 10:04:05.123456"), "2026-11-29 10:04");
        assert_eq!(minute_of("2026-11-29"), "2026-11-29");
        // Characters, as SQLite's substr counts them, not bytes.
        assert_eq!(minute_of("é".repeat(20).as_str()), "é".repeat(16));
    }
}
