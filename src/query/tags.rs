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
    fn sql(&self, reader: &Reader) -> (String, Vec<SqlValue>) {
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

impl Reader {
    /// Matching tags, newest first (ties by uuid, so pages are stable).
    pub fn tags(&self, filter: &TagFilter) -> Result<Vec<TagRow>, QueryError> {
        let (cond, mut args) = filter.sql(self);
        let (sha, join) = match self.schema.sha_source {
            ShaSource::Column => ("t.rule_sha256", ""),
            ShaSource::SideTable => (
                "COALESCE(s.rule_sha256, '')",
                " LEFT JOIN ttp_tag_rule_sha256 s ON s.uuid = t.uuid",
            ),
            ShaSource::None => ("''", ""),
        };
        let mut sql = format!(
            "SELECT t.uuid, t.source_kind, t.source_id, t.attacker_uuid, t.identity_uuid, \
             t.session_id, t.decky_id, t.tactic, t.technique_id, t.sub_technique_id, \
             t.confidence, t.rule_id, t.rule_version, t.evidence, t.attack_release, \
             t.mitre_url, t.created_at, {sha} FROM ttp_tag t{join} WHERE 1=1{cond} \
             ORDER BY t.created_at DESC, t.uuid"
        );
        if let Some(n) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(SqlValue::Integer(i64::from(n)));
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
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// How many tags match, whatever the limit.
    pub fn count_tags(&self, filter: &TagFilter) -> Result<u64, QueryError> {
        let (cond, args) = filter.sql(self);
        let sql = format!("SELECT count(*) FROM ttp_tag t WHERE 1=1{cond}");
        self.conn()
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}
