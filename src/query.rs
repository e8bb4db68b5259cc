//! Reading tags back: a read-only connection of its own (WAL lets it run
//! beside the writer). Backs the `ttp tags` command.

use crate::store::StoreError;
use rusqlite::params_from_iter;
use serde::Serialize;
use std::path::Path;

/// Which tags to list.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    pub rule_id: Option<String>,
    /// Matches `technique_id` or `sub_technique_id`.
    pub technique: Option<String>,
    pub attacker_uuid: Option<String>,
    pub limit: u32,
}

/// One stored tag, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagRow {
    pub uuid: String,
    pub created_at: String,
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub rule_id: String,
    pub rule_version: i64,
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub confidence: f64,
    pub evidence: serde_json::Value,
}

/// Newest tags first.
pub fn list_tags(db: &Path, filter: &TagFilter) -> Result<Vec<TagRow>, StoreError> {
    let err = |e: rusqlite::Error| StoreError::Sqlite {
        path: db.to_path_buf(),
        source: e,
    };
    let conn = crate::store::open_reader(db, &crate::store::StoreOptions::default())?;
    let mut sql = String::from(
        "SELECT uuid, created_at, source_kind, source_id, attacker_uuid, rule_id, rule_version, \
         tactic, technique_id, sub_technique_id, confidence, evidence FROM ttp_tag WHERE 1=1",
    );
    let mut args: Vec<String> = Vec::new();
    if let Some(r) = &filter.rule_id {
        sql.push_str(" AND rule_id = ?");
        args.push(r.clone());
    }
    if let Some(t) = &filter.technique {
        sql.push_str(" AND (technique_id = ? OR sub_technique_id = ?)");
        args.push(t.clone());
        args.push(t.clone());
    }
    if let Some(a) = &filter.attacker_uuid {
        sql.push_str(" AND attacker_uuid = ?");
        args.push(a.clone());
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, uuid LIMIT {}",
        filter.limit
    ));
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotADatabase {
                path: db.to_path_buf(),
            },
            _ => err(e),
        })?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), |r| {
            let evidence: String = r.get(11)?;
            Ok(TagRow {
                uuid: r.get(0)?,
                created_at: r.get(1)?,
                source_kind: r.get(2)?,
                source_id: r.get(3)?,
                attacker_uuid: r.get(4)?,
                rule_id: r.get(5)?,
                rule_version: r.get(6)?,
                tactic: r.get(7)?,
                technique_id: r.get(8)?,
                sub_technique_id: r.get(9)?,
                confidence: r.get(10)?,
                evidence: crate::pyjson::parse(evidence.as_bytes())
                    .unwrap_or(serde_json::Value::String(evidence)),
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A fixed-width table of rows, for terminals.
pub fn render_table(rows: &[TagRow]) -> String {
    let mut out = format!(
        "{:<26}  {:<12}  {:<20}  {:<10}  {:<12}  {:<7}  {:>4}\n",
        "created_at", "kind", "source_id", "rule", "technique", "tactic", "conf"
    );
    // Every field may come from an event or a rule file: control
    // characters are escaped (crate::text) before truncating.
    let cell = |s: &str, n: usize| truncate(&crate::text::line(s), n);
    for r in rows {
        let tech = r.sub_technique_id.as_deref().unwrap_or(&r.technique_id);
        out.push_str(&format!(
            "{:<26}  {:<12}  {:<20}  {:<10}  {:<12}  {:<7}  {:>4.2}\n",
            cell(&r.created_at, 26),
            cell(&r.source_kind, 12),
            cell(&r.source_id, 20),
            cell(&r.rule_id, 10),
            cell(tech, 12),
            cell(&r.tactic, 7),
            r.confidence
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
