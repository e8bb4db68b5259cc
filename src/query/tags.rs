//! Stored tags, newest first, with every filter of `ttp query tags` and of
//! DECNET's tag-detail route (§3.5).

use super::{QueryError, Reader, ShaSource, Window};
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

/// Which tags to list. Every id is compared exactly as given: callers
/// normalise case first (the CLI does; DECNET's API does not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagFilter {
    pub attacker: Option<String>,
    /// Tags anchored on the identity, plus (in DECNET's database) those of
    /// the attackers pointing at it, as the identity rollup counts them.
    pub identity: Option<String>,
    pub session: Option<String>,
    pub decky: Option<String>,
    /// The stored parent `technique_id`.
    pub technique: Option<String>,
    /// The stored `sub_technique_id`; `Some("")` matches nothing, as DECNET's
    /// empty `?sub_technique_id=` does.
    pub sub_technique: Option<String>,
    pub tactic: Option<String>,
    pub rule_id: Option<String>,
    pub window: Window,
    /// `None`: every matching tag.
    pub limit: Option<u32>,
    /// Tags skipped before the first listed (with a limit: pages).
    pub offset: Option<u32>,
}

/// One stored tag, every column, in the order `--emit-tags` writes a tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagRow {
    pub uuid: String,
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub identity_uuid: Option<String>,
    pub session_id: Option<String>,
    pub decky_id: Option<String>,
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub confidence: f64,
    pub rule_id: String,
    pub rule_version: i64,
    /// The stored JSON (a string if it does not parse).
    pub evidence: serde_json::Value,
    pub attack_release: String,
    /// The stored value (null for intel tags, DECNET's Q22).
    pub mitre_url: Option<String>,
    pub created_at: String,
    /// Empty for rows written by DECNET.
    pub rule_sha256: String,
}

impl TagFilter {
    pub(super) fn sql(&self, reader: &Reader) -> (String, Vec<SqlValue>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        let mut eq = |col: &str, v: &Option<String>| {
            if let Some(v) = v {
                sql.push_str(&format!(" AND t.{col} = ?"));
                args.push(SqlValue::Text(v.clone()));
            }
        };
        eq("attacker_uuid", &self.attacker);
        eq("session_id", &self.session);
        eq("decky_id", &self.decky);
        eq("technique_id", &self.technique);
        eq("sub_technique_id", &self.sub_technique);
        eq("tactic", &self.tactic);
        eq("rule_id", &self.rule_id);
        if let Some(id) = &self.identity {
            if let Some((_, cond, a)) = super::Scope::Identity(id.clone()).sql(reader) {
                sql.push_str(" AND ");
                sql.push_str(&cond);
                args.extend(a);
            }
        }
        self.window.push_sql("t.", &mut sql, &mut args);
        (sql, args)
    }
}

/// The order tags are listed in: newest first, then by UUID (as SQLite's
/// `ORDER BY created_at DESC, uuid` compares texts, bytewise).
fn newest_first(a: &TagRow, b: &TagRow) -> std::cmp::Ordering {
    b.created_at
        .cmp(&a.created_at)
        .then_with(|| a.uuid.cmp(&b.uuid))
}

impl Reader {
    /// Matching tags, newest first (ties by uuid, so pages are stable).
    pub fn tags(&self, filter: &TagFilter) -> Result<Vec<TagRow>, QueryError> {
        // One merged query is a compound `SELECT` of a term per partition:
        // at most as many as the view joins in one, more merged here.
        self.tags_merging(filter, crate::store::VIEW_ARMS)
    }

    /// [`Reader::tags`], merging at most `arms` partitions per query.
    pub(crate) fn tags_merging(
        &self,
        filter: &TagFilter,
        arms: usize,
    ) -> Result<Vec<TagRow>, QueryError> {
        let partitions = match filter.limit {
            Some(_) if self.schema.has_partitions => self.partitions()?,
            _ => Vec::new(),
        };
        if partitions.len() <= arms.max(1) {
            return self.tags_of(filter, &partitions);
        }
        // Each group of partitions gives its first `offset + limit`; the
        // page is cut from their merge.
        let wanted = TagFilter {
            limit: filter
                .limit
                .map(|n| n.saturating_add(filter.offset.unwrap_or(0))),
            offset: None,
            ..filter.clone()
        };
        let mut rows = Vec::new();
        for group in partitions.chunks(arms.max(1)) {
            rows.extend(self.tags_of(&wanted, group)?);
        }
        rows.sort_by(newest_first);
        Ok(rows
            .into_iter()
            .skip(filter.offset.unwrap_or(0) as usize)
            .take(filter.limit.map_or(usize::MAX, |n| n as usize))
            .collect())
    }

    /// Matching tags of the view, or (with a limit) merged from each of
    /// `partitions`' own time order.
    fn tags_of(
        &self,
        filter: &TagFilter,
        partitions: &[String],
    ) -> Result<Vec<TagRow>, QueryError> {
        let (cond, mut args) = filter.sql(self);
        let (sha, join) = match self.schema.sha_source {
            ShaSource::Column => ("t.rule_sha256", ""),
            ShaSource::SideTable => (
                "COALESCE(s.rule_sha256, '')",
                " LEFT JOIN ttp_tag_rule_sha256 s ON s.uuid = t.uuid",
            ),
            ShaSource::None => ("''", ""),
        };
        let columns = format!(
            "t.uuid, t.source_kind, t.source_id, t.attacker_uuid, t.identity_uuid, \
             t.session_id, t.decky_id, t.tactic, t.technique_id, t.sub_technique_id, \
             t.confidence, t.rule_id, t.rule_version, t.evidence, t.attack_release, \
             t.mitre_url, t.created_at, {sha}"
        );
        // Every matching tag: sorted here once read. SQLite's sorter copies
        // each whole row (evidence included) into its records and back: a
        // quarter of the time of listing 19,552 tags of one attacker.
        // Both compare the texts bytewise (SQLite's BINARY collation).
        let sort_here = partitions.is_empty() && filter.limit.is_none();
        let mut sql = if partitions.is_empty() {
            let mut sql = format!("SELECT {columns} FROM ttp_tag t{join} WHERE 1=1{cond}");
            if !sort_here {
                sql.push_str(" ORDER BY t.created_at DESC, t.uuid");
            }
            sql
        } else {
            // The newest few of a view over partitions: SQLite sorts a view
            // as a whole (every tag read); a compound ordered at its end is
            // merged from each partition's own order (its time index), and
            // stops at the limit.
            let one = args.clone();
            let mut arms = Vec::with_capacity(partitions.len());
            for (i, p) in partitions.iter().enumerate() {
                if i > 0 {
                    args.extend(one.iter().cloned());
                }
                arms.push(format!("SELECT {columns} FROM {p} t WHERE 1=1{cond}"));
            }
            format!(
                "{} ORDER BY created_at DESC, uuid",
                arms.join(" UNION ALL ")
            )
        };
        if let Some(n) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(SqlValue::Integer(i64::from(n)));
            if let Some(skip) = filter.offset {
                sql.push_str(" OFFSET ?");
                args.push(SqlValue::Integer(i64::from(skip)));
            }
        }
        let mut stmt = self.conn().prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let evidence: String = r.get(13)?;
                Ok(TagRow {
                    uuid: r.get(0)?,
                    source_kind: r.get(1)?,
                    source_id: r.get(2)?,
                    attacker_uuid: r.get(3)?,
                    identity_uuid: r.get(4)?,
                    session_id: r.get(5)?,
                    decky_id: r.get(6)?,
                    tactic: r.get(7)?,
                    technique_id: r.get(8)?,
                    sub_technique_id: r.get(9)?,
                    confidence: r.get(10)?,
                    rule_id: r.get(11)?,
                    rule_version: r.get(12)?,
                    evidence: crate::pyjson::parse(evidence.as_bytes())
                        .unwrap_or(serde_json::Value::String(evidence)),
                    attack_release: r.get(14)?,
                    mitre_url: r.get(15)?,
                    created_at: r.get(16)?,
                    rule_sha256: r.get(17)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut rows = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        if sort_here {
            rows.sort_unstable_by(newest_first);
        }
        Ok(rows)
    }

    /// Our own file's partitions, oldest first (read per query: the writer
    /// adds one every [`crate::store::PARTITION_ROWS`] tags).
    fn partitions(&self) -> Result<Vec<String>, QueryError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT name FROM ttp_tag_partition ORDER BY id")
            .map_err(|e| self.err(e))?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        names
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    /// How many tags match, whatever the limit.
    pub fn count_tags(&self, filter: &TagFilter) -> Result<u64, QueryError> {
        let (cond, args) = filter.sql(self);
        // Every tag: our own file's fleet totals hold the count (a count
        // reads every tag).
        let only_attacker = TagFilter {
            attacker: None,
            limit: None,
            offset: None,
            ..filter.clone()
        } == TagFilter::default();
        let sql = if cond.is_empty() && self.schema.has_totals {
            "SELECT COALESCE(sum(count), 0) FROM ttp_technique_totals".to_string()
        } else if only_attacker && filter.attacker.is_some() && self.schema.has_kept_rollups {
            // One attacker's tags: its kept rollup holds the count.
            "SELECT COALESCE(sum(count), 0) FROM ttp_attacker_technique_totals \
             WHERE attacker_uuid = ?"
                .to_string()
        } else {
            format!("SELECT count(*) FROM ttp_tag t WHERE 1=1{cond}")
        };
        self.conn()
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}
