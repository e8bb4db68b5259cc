//! Per-technique rollups: one row per distinct (technique, sub-technique)
//! of the tags in a scope, as DECNET's TTP API computes them (§3.4): the
//! string `MAX` of the tactics, the number of tag rows, first and last seen,
//! the highest confidence. Rows come in DECNET's observed order, made
//! explicit: by technique, then sub-technique with the bare technique first.

use super::{QueryError, Reader, Window};
use crate::attack::Attack;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

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

impl RollupRow {
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

    fn rollup_rows(&self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<RollupRow>, QueryError> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(|e| self.err(e))?;
        let attack = Attack::embedded();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let technique_id: String = r.get(0)?;
                let sub_technique_id: Option<String> = r.get(1)?;
                Ok(RollupRow {
                    technique_name: attack.technique_name(&technique_id),
                    sub_technique_name: sub_technique_id
                        .as_deref()
                        .and_then(|s| attack.technique_name(s)),
                    mitre_url: attack
                        .mitre_url(sub_technique_id.as_deref().unwrap_or(&technique_id)),
                    technique_id,
                    sub_technique_id,
                    tactic: r.get(2)?,
                    count: r.get(3)?,
                    first_seen: r.get(4)?,
                    last_seen: r.get(5)?,
                    confidence_max: r.get(6)?,
                    identity_count: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
