//! What the analysts' page (`ttp serve`'s `/`) asks of the tags: the
//! ATT&CK matrix's cells under every filter, one attacker's techniques on a
//! timeline, each rule's firings in a window, a rule version's text, and a
//! cheap marker of change for live updates.

use super::{QueryError, Reader, TagFilter, Window};
use rusqlite::types::Value as SqlValue;
use rusqlite::OptionalExtension;
use serde::Serialize;

/// One cell of the matrix: a (tactic, technique, sub-technique) with its
/// tags and distinct attackers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub tags: u64,
    pub attackers: u64,
}

/// One technique of an attacker: when it was first and last seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub tags: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// A rule's firings in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firings {
    pub rule_id: String,
    pub tags: u64,
    pub last: String,
}

/// A stored rule version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleText {
    pub rule_id: String,
    pub rule_version: i64,
    pub sha256: String,
    pub source_path: String,
    pub yaml_content: String,
    pub first_loaded_at: String,
    pub last_loaded_at: String,
}

/// What changed since last asked: the tags stored and the newest rule-log
/// entry (a reload, a rejection, a state change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Marker {
    pub tags: u64,
    pub rule_events: i64,
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// The matrix under one filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Matrix {
    /// Per (tactic, technique), sub-techniques included.
    pub techniques: Vec<Cell>,
    /// Per (tactic, technique, sub-technique), for tags that name one.
    pub sub_techniques: Vec<Cell>,
    pub tags: u64,
    pub attackers: u64,
}

impl Reader {
    /// The matrix's cells under `filter` (its limit is ignored): distinct
    /// attackers are counted per cell, so a parent's are not the sum of
    /// its sub-techniques'.
    ///
    /// One plain scan, aggregated here: SQLite would sort every matching
    /// tag for each `GROUP BY` (a temporary B-tree), five times slower.
    pub fn matrix(&self, filter: &TagFilter) -> Result<Matrix, QueryError> {
        use std::collections::{HashMap, HashSet};
        #[derive(Default)]
        struct Acc {
            tags: u64,
            attackers: HashSet<u32>,
        }
        let (cond, args) = filter.sql(self);
        let sql = format!(
            "SELECT t.tactic, t.technique_id, t.sub_technique_id, t.attacker_uuid \
             FROM ttp_tag t WHERE 1=1{cond}"
        );
        let mut stmt = self.conn().prepare_cached(&sql).map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| self.err(e))?;
        // Attackers as small numbers; cells keyed by "tactic\0technique"
        // and "tactic\0technique\0sub" (one key buffer, no allocation for
        // a cell already seen).
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut parents: HashMap<String, Acc> = HashMap::new();
        let mut subs: HashMap<String, Acc> = HashMap::new();
        let mut all = Acc::default();
        let mut key = String::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let tactic = r.get_ref(0).map_err(|e| self.err(e))?;
            let technique = r.get_ref(1).map_err(|e| self.err(e))?;
            let (Ok(tactic), Ok(technique)) = (tactic.as_str(), technique.as_str()) else {
                continue;
            };
            let attacker = match r.get_ref(3).map_err(|e| self.err(e))?.as_str_or_null() {
                Ok(Some(a)) => Some(match ids.get(a) {
                    Some(&id) => id,
                    None => {
                        let id = ids.len() as u32;
                        ids.insert(a.to_string(), id);
                        id
                    }
                }),
                _ => None,
            };
            let add = |map: &mut HashMap<String, Acc>, key: &str| {
                let acc = match map.get_mut(key) {
                    Some(acc) => acc,
                    None => map.entry(key.to_string()).or_default(),
                };
                acc.tags += 1;
                if let Some(a) = attacker {
                    acc.attackers.insert(a);
                }
            };
            key.clear();
            key.push_str(tactic);
            key.push('\0');
            key.push_str(technique);
            add(&mut parents, &key);
            if let Ok(Some(sub)) = r.get_ref(2).map_err(|e| self.err(e))?.as_str_or_null() {
                key.push('\0');
                key.push_str(sub);
                add(&mut subs, &key);
            }
            all.tags += 1;
            if let Some(a) = attacker {
                all.attackers.insert(a);
            }
        }
        let cells = |map: HashMap<String, Acc>| -> Vec<Cell> {
            let mut v: Vec<Cell> = map
                .into_iter()
                .map(|(k, acc)| {
                    let mut parts = k.split('\0');
                    Cell {
                        tactic: parts.next().unwrap_or_default().to_string(),
                        technique_id: parts.next().unwrap_or_default().to_string(),
                        sub_technique_id: parts.next().map(String::from),
                        tags: acc.tags,
                        attackers: acc.attackers.len() as u64,
                    }
                })
                .collect();
            v.sort_by(|a, b| {
                (&a.tactic, &a.technique_id, &a.sub_technique_id).cmp(&(
                    &b.tactic,
                    &b.technique_id,
                    &b.sub_technique_id,
                ))
            });
            v
        };
        Ok(Matrix {
            techniques: cells(parents),
            sub_techniques: cells(subs),
            tags: all.tags,
            attackers: all.attackers.len() as u64,
        })
    }

    /// One attacker's techniques, each with its first and last tag time,
    /// first seen first.
    pub fn timeline(
        &self,
        attacker: &str,
        window: &Window,
    ) -> Result<Vec<TimelineRow>, QueryError> {
        let mut sql = String::from(
            "SELECT t.tactic, t.technique_id, t.sub_technique_id, count(*), min(t.created_at), \
             max(t.created_at) FROM ttp_tag t WHERE t.attacker_uuid = ?",
        );
        let mut args = vec![SqlValue::Text(attacker.to_string())];
        window.push_sql("t.", &mut sql, &mut args);
        sql.push_str(" GROUP BY t.tactic, t.technique_id, t.sub_technique_id ORDER BY 5, 2, 3, 1");
        let mut stmt = self.conn().prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(TimelineRow {
                    tactic: r.get(0)?,
                    technique_id: r.get(1)?,
                    sub_technique_id: r.get(2)?,
                    tags: count(r.get(3)?),
                    first_seen: r.get(4)?,
                    last_seen: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Each rule's tags in `window`, with its newest.
    pub fn firings(&self, window: &Window) -> Result<Vec<Firings>, QueryError> {
        let mut sql =
            String::from("SELECT t.rule_id, count(*), max(t.created_at) FROM ttp_tag t WHERE 1=1");
        let mut args = Vec::new();
        window.push_sql("t.", &mut sql, &mut args);
        sql.push_str(" GROUP BY t.rule_id ORDER BY t.rule_id");
        let mut stmt = self.conn().prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(Firings {
                    rule_id: r.get(0)?,
                    tags: count(r.get(1)?),
                    last: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The text of the rule version whose SHA-256 is `sha256` (none in a
    /// database without the version history, or for an unknown hash).
    pub fn rule_text(&self, sha256: &str) -> Result<Option<RuleText>, QueryError> {
        if !self.has_table("ttp_rule_version")? {
            return Ok(None);
        }
        self.conn()
            .query_row(
                "SELECT rule_id, rule_version, sha256, source_path, yaml_content, first_loaded_at, \
                 last_loaded_at FROM ttp_rule_version WHERE sha256 = ?1",
                [sha256],
                |r| {
                    Ok(RuleText {
                        rule_id: r.get(0)?,
                        rule_version: r.get(1)?,
                        sha256: r.get(2)?,
                        source_path: r.get(3)?,
                        yaml_content: r.get(4)?,
                        first_loaded_at: r.get(5)?,
                        last_loaded_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The tags stored and the newest rule-log id: when either moves, the
    /// page has something new to show.
    pub fn marker(&self) -> Result<Marker, QueryError> {
        let tags = self.count_tags(&TagFilter::default())?;
        let rule_events = if self.has_table("ttp_rule_event")? {
            self.conn()
                .query_row("SELECT COALESCE(max(id), 0) FROM ttp_rule_event", [], |r| {
                    r.get(0)
                })
                .map_err(|e| self.err(e))?
        } else {
            0
        };
        Ok(Marker { tags, rule_events })
    }

    /// SQLite's count of commits by other connections: it moves whenever a
    /// writer commits, and costs no read of any table.
    pub fn data_version(&self) -> Result<i64, QueryError> {
        self.conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    pub(crate) fn has_table(&self, name: &str) -> Result<bool, QueryError> {
        super::table_exists(self.conn(), name).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Tag;

    fn db_with_tags() -> (tempfile::TempDir, Reader) {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("t.db");
        let conn = crate::store::open(&path, &Default::default()).unwrap();
        let tag = |i: u32, attacker: &str, technique: &str, sub: Option<&str>, at: &str| Tag {
            source_kind: "auth_attempt".into(),
            source_id: format!("e{i}"),
            attacker_uuid: Some(attacker.into()),
            tactic: "TA0006".into(),
            sub_technique_id: sub.map(String::from),
            created_at: at.into(),
            ..Tag::sample(
                uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, &i.to_le_bytes()),
                technique,
            )
        };
        let tags = vec![
            tag(
                1,
                "a1",
                "T1110",
                Some("T1110.001"),
                "2026-11-20 08:00:00.000000",
            ),
            tag(
                2,
                "a1",
                "T1110",
                Some("T1110.001"),
                "2026-11-20 09:00:00.000000",
            ),
            tag(
                3,
                "a2",
                "T1110",
                Some("T1110.001"),
                "2026-11-20 10:00:00.000000",
            ),
            tag(4, "a2", "T1110", None, "2026-11-20 11:00:00.000000"),
        ];
        crate::store::insert_tags(&conn, &tags).unwrap();
        (dir, Reader::open(&path).unwrap())
    }

    #[test]
    fn cells_timelines_and_firings() {
        let (_dir, reader) = db_with_tags();
        let m = reader.matrix(&TagFilter::default()).unwrap();
        let got: Vec<(&str, u64, u64)> = m
            .techniques
            .iter()
            .map(|c| (c.technique_id.as_str(), c.tags, c.attackers))
            .collect();
        assert_eq!(got, [("T1110", 4, 2)]);
        let got: Vec<(Option<&str>, u64, u64)> = m
            .sub_techniques
            .iter()
            .map(|c| (c.sub_technique_id.as_deref(), c.tags, c.attackers))
            .collect();
        assert_eq!(got, [(Some("T1110.001"), 3, 2)]);
        assert_eq!((m.tags, m.attackers), (4, 2));
        let since = TagFilter {
            window: Window {
                since: Some("2026-11-20 09:30:00.000000".into()),
                ..Window::default()
            },
            ..TagFilter::default()
        };
        let m = reader.matrix(&since).unwrap();
        assert_eq!((m.tags, m.attackers), (2, 1));
        assert_eq!(m.sub_techniques[0].tags, 1);
        let line = reader.timeline("a1", &Window::default()).unwrap();
        assert_eq!(line.len(), 1);
        assert_eq!(
            (
                line[0].tags,
                line[0].first_seen.as_str(),
                line[0].last_seen.as_str()
            ),
            (
                2,
                "2026-11-20 08:00:00.000000",
                "2026-11-20 09:00:00.000000"
            )
        );
        let f = reader.firings(&Window::default()).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].tags, f[0].last.as_str()),
            (4, "2026-11-20 11:00:00.000000")
        );
        assert_eq!(reader.marker().unwrap().tags, 4);
        assert!(reader.rule_text("0".repeat(64).as_str()).unwrap().is_none());
    }
}
