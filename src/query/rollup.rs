//! Per-technique rollups: one row per distinct (technique, sub-technique)
//! of the tags in a scope, as DECNET's TTP API computes them (§3.4): the
//! string `MAX` of the tactics, the number of tag rows, first and last seen,
//! the highest confidence. Rows come in DECNET's observed order, made
//! explicit: by technique, then sub-technique with the bare technique first.

use super::{QueryError, Reader, Window};
use crate::attack::Attack;
use crate::store::{minute_of, MINUTE_LEN};
use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use std::collections::btree_map::{BTreeMap, Entry};

/// Which tags a rollup counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tag.
    Fleet,
    Attacker(String),
    /// Tags anchored on the identity plus those of every attacker whose
    /// `attackers.identity_id` points at it (DECNET's database only);
    /// merged identities are not followed (DECNET's Q24).
    Identity(String),
    Session(String),
    /// Tags whose own `identity_uuid` belongs to an identity of the
    /// campaign (DECNET's Q23: tags anchored on an attacker do not count).
    Campaign(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Fleet => "fleet",
            Scope::Attacker(_) => "attacker",
            Scope::Identity(_) => "identity",
            Scope::Session(_) => "session",
            Scope::Campaign(_) => "campaign",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Scope::Fleet => None,
            Scope::Attacker(x) | Scope::Identity(x) | Scope::Session(x) | Scope::Campaign(x) => {
                Some(x)
            }
        }
    }

    /// The `WHERE` condition on `ttp_tag t` (and the `JOIN` it needs), with
    /// its arguments; `None` when the database cannot hold such tags (a
    /// campaign in our own database, which has no identities table).
    pub(crate) fn sql(&self, reader: &Reader) -> Option<(&'static str, String, Vec<SqlValue>)> {
        let text = |x: &String| SqlValue::Text(x.clone());
        Some(match self {
            Scope::Fleet => ("", "1=1".to_string(), vec![]),
            Scope::Attacker(x) => ("", "t.attacker_uuid = ?".to_string(), vec![text(x)]),
            Scope::Session(x) => ("", "t.session_id = ?".to_string(), vec![text(x)]),
            Scope::Identity(x) if reader.schema.has_attackers => (
                "",
                "(t.identity_uuid = ? OR t.attacker_uuid IN \
                 (SELECT uuid FROM attackers WHERE identity_id = ?))"
                    .to_string(),
                vec![text(x), text(x)],
            ),
            Scope::Identity(x) => ("", "t.identity_uuid = ?".to_string(), vec![text(x)]),
            Scope::Campaign(x) if reader.schema.has_identities => (
                " JOIN attacker_identities ai ON ai.uuid = t.identity_uuid",
                "ai.campaign_id = ?".to_string(),
                vec![text(x)],
            ),
            Scope::Campaign(_) => return None,
        })
    }
}

/// One technique (or sub-technique) of a rollup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupRow {
    pub technique_id: String,
    pub technique_name: Option<String>,
    pub sub_technique_id: Option<String>,
    pub sub_technique_name: Option<String>,
    /// The string maximum of the group's tactics (DECNET's Q21).
    pub tactic: String,
    /// Tag rows, not distinct events.
    pub count: i64,
    /// Distinct identities (campaign rollups only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_count: Option<i64>,
    /// Stored `created_at` text.
    pub first_seen: String,
    pub last_seen: String,
    pub confidence_max: f64,
    /// Looked up again from the ATT&CK table for `sub_technique_id` or
    /// `technique_id` (DECNET's Q22), `None` for ids it does not know.
    pub mitre_url: Option<String>,
}

/// A kept group being merged (`Reader::fleet_by_minute`).
struct Kept {
    tactic: String,
    count: i64,
    first: String,
    last: String,
    confidence: f64,
}

impl Kept {
    fn merge(&mut self, other: Kept) {
        self.count += other.count;
        if other.tactic > self.tactic {
            self.tactic = other.tactic;
        }
        if other.first < self.first {
            self.first = other.first;
        }
        if other.last > self.last {
            self.last = other.last;
        }
        self.confidence = self.confidence.max(other.confidence);
    }
}

impl RollupRow {
    /// A row, with the names and URL looked up in the ATT&CK table.
    #[allow(clippy::too_many_arguments)]
    fn new(
        attack: &Attack,
        technique_id: String,
        sub_technique_id: Option<String>,
        tactic: String,
        count: i64,
        first_seen: String,
        last_seen: String,
        confidence_max: f64,
        identity_count: Option<i64>,
    ) -> RollupRow {
        RollupRow {
            technique_name: attack.technique_name(&technique_id),
            sub_technique_name: sub_technique_id
                .as_deref()
                .and_then(|s| attack.technique_name(s)),
            mitre_url: attack.mitre_url(sub_technique_id.as_deref().unwrap_or(&technique_id)),
            technique_id,
            sub_technique_id,
            tactic,
            count,
            identity_count,
            first_seen,
            last_seen,
            confidence_max,
        }
    }

    /// The id shown for the row: the sub-technique when there is one.
    pub fn id(&self) -> &str {
        self.sub_technique_id
            .as_deref()
            .unwrap_or(&self.technique_id)
    }
}

impl Reader {
    /// The rollup of `scope` within `window`.
    pub fn rollup(&self, scope: &Scope, window: &Window) -> Result<Vec<RollupRow>, QueryError> {
        if *scope == Scope::Fleet && window.is_empty() && self.schema.has_totals {
            return self.fleet_totals();
        }
        if self.schema.has_kept_rollups && window.min_confidence.is_none() {
            match scope {
                Scope::Attacker(a) if window.is_empty() => return self.attacker_totals(a),
                Scope::Fleet => {
                    if let Some(rows) = self.fleet_by_minute(window)? {
                        return Ok(rows);
                    }
                }
                _ => {}
            }
        }
        self.rollup_scan(scope, window)
    }

    /// The rollup computed from the tags themselves.
    fn rollup_scan(&self, scope: &Scope, window: &Window) -> Result<Vec<RollupRow>, QueryError> {
        let Some((join, cond, mut args)) = scope.sql(self) else {
            return Ok(Vec::new());
        };
        let identities = matches!(scope, Scope::Campaign(_));
        let mut sql = format!(
            "SELECT t.technique_id, t.sub_technique_id, MAX(t.tactic), COUNT(*), \
             MIN(t.created_at), MAX(t.created_at), MAX(t.confidence), {} \
             FROM ttp_tag t{join} WHERE {cond}",
            if identities {
                "COUNT(DISTINCT t.identity_uuid)"
            } else {
                "NULL"
            }
        );
        window.push_sql("t.", &mut sql, &mut args);
        sql.push_str(
            " GROUP BY t.technique_id, t.sub_technique_id \
             ORDER BY t.technique_id, t.sub_technique_id",
        );
        self.rollup_rows(&sql, args)
    }

    /// The fleet rollup from the totals the writer keeps (the same
    /// rows as the scan, without reading every tag).
    fn fleet_totals(&self) -> Result<Vec<RollupRow>, QueryError> {
        self.rollup_rows(
            "SELECT technique_id, NULLIF(sub_technique_id, ''), tactic, count, first_seen, \
             last_seen, confidence_max, NULL FROM ttp_technique_totals \
             ORDER BY technique_id, sub_technique_id",
            Vec::new(),
        )
    }

    /// One attacker's rollup from the totals the writer keeps.
    fn attacker_totals(&self, attacker: &str) -> Result<Vec<RollupRow>, QueryError> {
        self.rollup_rows(
            "SELECT technique_id, NULLIF(sub_technique_id, ''), tactic, count, first_seen, \
             last_seen, confidence_max, NULL FROM ttp_attacker_technique_totals \
             WHERE attacker_uuid = ?1 ORDER BY technique_id, sub_technique_id",
            vec![SqlValue::Text(attacker.to_string())],
        )
    }

    /// The fleet rollup of a time window: the kept totals of the minutes
    /// wholly inside it, plus the tags of its partial first and last
    /// minutes. `None` when a bound is too short to have a minute (the
    /// scan answers then).
    fn fleet_by_minute(&self, window: &Window) -> Result<Option<Vec<RollupRow>>, QueryError> {
        let minute = |bound: &Option<String>| match bound {
            Some(b) if b.chars().count() < MINUTE_LEN => Err(()),
            Some(b) => Ok(Some(minute_of(b).to_string())),
            None => Ok(None),
        };
        let (Ok(first), Ok(last)) = (minute(&window.since), minute(&window.until)) else {
            return Ok(None);
        };
        let mut groups: BTreeMap<(String, String), Kept> = BTreeMap::new();
        let mut bucket_sql = "SELECT technique_id, sub_technique_id, MAX(tactic), SUM(count), \
             MIN(first_seen), MAX(last_seen), MAX(confidence_max) \
             FROM ttp_technique_minute_totals WHERE 1=1"
            .to_string();
        let mut args = Vec::new();
        if let Some(k) = &first {
            bucket_sql.push_str(" AND minute > ?");
            args.push(SqlValue::Text(k.clone()));
        }
        if let Some(k) = &last {
            bucket_sql.push_str(" AND minute < ?");
            args.push(SqlValue::Text(k.clone()));
        }
        bucket_sql.push_str(" GROUP BY technique_id, sub_technique_id");
        self.add_kept(&mut groups, &bucket_sql, args)?;
        // The partial minutes, from the tags (each partition's time index).
        let mut edges = Vec::new();
        if let (Some(since), Some(k)) = (&window.since, &first) {
            edges.push((since.clone(), k.clone()));
        }
        if let Some(k) = &last {
            if first.as_ref() != Some(k) {
                // (From `since` when the window is empty, since > until.)
                let from = match &window.since {
                    Some(since) if since > k => since.clone(),
                    _ => k.clone(),
                };
                edges.push((from, k.clone()));
            }
        }
        for (from, k) in edges {
            let mut sql = "SELECT technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), \
                 COUNT(*), MIN(created_at), MAX(created_at), MAX(confidence) FROM ttp_tag \
                 WHERE created_at >= ? AND created_at < ? AND substr(created_at, 1, 16) = ?"
                .to_string();
            let mut args = vec![
                SqlValue::Text(from),
                SqlValue::Text(format!("{k}\u{10FFFF}")),
                SqlValue::Text(k),
            ];
            if let Some(until) = &window.until {
                sql.push_str(" AND created_at < ?");
                args.push(SqlValue::Text(until.clone()));
            }
            sql.push_str(" GROUP BY 1, 2");
            self.add_kept(&mut groups, &sql, args)?;
        }
        let attack = Attack::embedded();
        Ok(Some(
            groups
                .into_iter()
                .map(|((technique_id, sub), g)| {
                    RollupRow::new(
                        attack,
                        technique_id,
                        (!sub.is_empty()).then_some(sub),
                        g.tactic,
                        g.count,
                        g.first,
                        g.last,
                        g.confidence,
                        None,
                    )
                })
                .collect(),
        ))
    }

    /// Merges groups (technique, sub-technique or '', tactic, count, first,
    /// last, confidence) read by `sql` into `groups`.
    fn add_kept(
        &self,
        groups: &mut BTreeMap<(String, String), Kept>,
        sql: &str,
        args: Vec<SqlValue>,
    ) -> Result<(), QueryError> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let read = || -> rusqlite::Result<((String, String), Kept)> {
                Ok((
                    (r.get(0)?, r.get(1)?),
                    Kept {
                        tactic: r.get(2)?,
                        count: r.get(3)?,
                        first: r.get(4)?,
                        last: r.get(5)?,
                        confidence: r.get(6)?,
                    },
                ))
            };
            let (key, k) = read().map_err(|e| self.err(e))?;
            match groups.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(k);
                }
                Entry::Occupied(mut o) => o.get_mut().merge(k),
            }
        }
        Ok(())
    }

    fn rollup_rows(&self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<RollupRow>, QueryError> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(|e| self.err(e))?;
        let attack = Attack::embedded();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(RollupRow::new(
                    attack,
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Tag;
    use proptest::prelude::*;
    use time::macros::datetime;

    const TECHNIQUES: [&str; 3] = ["T1059", "T1110", "T1005"];

    fn at(micros: u32) -> String {
        crate::timefmt::format(
            datetime!(2026-11-29 10:00 UTC) + time::Duration::microseconds(i64::from(micros)),
        )
    }

    /// (attacker, technique, sub-technique, tactic, time, confidence)
    type Spec = (u8, usize, u8, u8, u32, u8);

    fn tag(i: usize, (attacker, technique, sub, tactic, time, confidence): Spec) -> Tag {
        let technique = TECHNIQUES[technique];
        Tag {
            uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &i.to_le_bytes()),
            source_kind: "shell_command".into(),
            source_id: format!("s{i}"),
            attacker_uuid: (attacker < 3).then(|| format!("a{attacker}")),
            identity_uuid: Some("i".into()),
            session_id: None,
            decky_id: None,
            tactic: format!("TA000{tactic}"),
            technique_id: technique.into(),
            sub_technique_id: (sub > 0).then(|| format!("{technique}.00{sub}")),
            confidence: f64::from(confidence) / 10.0,
            rule_id: "R1".into(),
            rule_version: 1,
            evidence: Default::default(),
            attack_release: "v".into(),
            mitre_url: None,
            created_at: at(time),
            rule_sha256: String::new(),
        }
    }

    /// Offsets within five minutes, some on a minute's first microsecond.
    fn offset() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..300_000_000, (0u32..6).prop_map(|m| m * 60_000_000)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The kept rollups (an attacker's; the fleet's over a window, from
        /// whole minutes plus partial ones) equal the rollups computed from
        /// the tags, after batches, hand deletes, updates and inserts.
        #[test]
        fn kept_rollups_equal_the_scan(
            specs in proptest::collection::vec(
                (0u8..4, 0usize..3, 0u8..3, 1u8..4, offset(), 0u8..=10), 1..80),
            split in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..6),
            windows in proptest::collection::vec(
                (proptest::option::of(offset()), proptest::option::of(offset())), 1..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let conn = crate::store::open(&path, &Default::default()).unwrap();
            let tags: Vec<Tag> = specs.iter().enumerate().map(|(i, s)| tag(i, *s)).collect();
            let (a, b) = tags.split_at(split.index(tags.len() + 1));
            crate::store::insert_tags(&conn, a).unwrap();
            crate::store::insert_tags(&conn, b).unwrap();
            for (which, edit) in &edits {
                let uuid = tags[which.index(tags.len())].uuid.to_string();
                let sql = match edit {
                    0 => "DELETE FROM ttp_tag WHERE uuid = ?1",
                    1 => "UPDATE ttp_tag SET technique_id = 'T1005', sub_technique_id = NULL, \
                          created_at = '2026-11-29 10:02:30.000000' WHERE uuid = ?1",
                    _ => "INSERT INTO ttp_tag SELECT ?1 || '-copy', source_kind, source_id, \
                          attacker_uuid, identity_uuid, session_id, decky_id, tactic, \
                          technique_id, sub_technique_id, confidence, rule_id, rule_version, \
                          evidence, attack_release, mitre_url, created_at, rule_sha256 \
                          FROM ttp_tag WHERE uuid = ?1",
                };
                // (A second copy of one tag breaks the key: skipped.)
                let _ = conn.execute(sql, [&uuid]);
            }
            let reader = Reader::open(&path).unwrap();
            prop_assert!(reader.schema.has_kept_rollups);
            for a in ["a0", "a1", "a2", "nobody"] {
                let scope = Scope::Attacker(a.into());
                let whole = Window::default();
                prop_assert_eq!(
                    reader.rollup(&scope, &whole).unwrap(),
                    reader.rollup_scan(&scope, &whole).unwrap()
                );
            }
            for (since, until) in windows {
                let window = Window {
                    since: since.map(at),
                    until: until.map(at),
                    min_confidence: None,
                };
                let kept = reader.fleet_by_minute(&window).unwrap().unwrap();
                prop_assert_eq!(
                    &kept,
                    &reader.rollup_scan(&Scope::Fleet, &window).unwrap(),
                    "{:?}", window
                );
                prop_assert_eq!(kept, reader.rollup(&Scope::Fleet, &window).unwrap());
            }
        }
    }
}
