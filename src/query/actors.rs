//! Everything the STIX and MISP exports say about one attacker: who it is
//! (DECNET's `attackers` row when the database has one, else what its tags
//! show), its technique rollup, its tags newest first, the command lines it
//! ran and DECNET's threat-intel verdict on it.

use super::{QueryError, Reader, RollupRow, Scope, TagFilter, TagRow, Window};
use rusqlite::OptionalExtension;

/// At most this many tags per attacker go into an export (DECNET's cap).
pub const TAGS_PER_ACTOR: u32 = 2000;
/// At most this many distinct command lines per attacker.
pub const COMMANDS_PER_ACTOR: usize = 500;

/// One attacker, as the exports describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub attacker_uuid: String,
    pub ip: Option<String>,
    pub identity_uuid: Option<String>,
    /// Stored timestamps (`2026-11-20 08:00:00.000000`): DECNET's attacker
    /// row, else the first and last tag.
    pub first_seen: String,
    pub last_seen: String,
    /// DECNET's event count, else the number of distinct tagged events.
    pub event_count: i64,
    pub country_code: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    /// Distinct command lines, first seen first: DECNET's stored list, then
    /// the `command_text` of the attacker's command tags.
    pub commands: Vec<String>,
    pub intel: Option<Intel>,
    pub rollup: Vec<RollupRow>,
    /// Newest first, at most [`TAGS_PER_ACTOR`].
    pub tags: Vec<TagRow>,
}

/// DECNET's `attacker_intel` row, the fields an export reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Intel {
    pub verdict: Option<String>,
    pub abuseipdb_score: Option<i64>,
    pub greynoise_classification: Option<String>,
    pub greynoise_tags: Vec<String>,
    pub feodo_listed: bool,
    pub feodo_family: Option<String>,
    pub threatfox_listed: bool,
    pub threatfox_threat_types: Vec<String>,
}

impl Reader {
    /// The attacker `uuid`, or `None` when the database does not know it
    /// (no `attackers` row in DECNET's database; no tag in ours).
    pub fn actor(&self, uuid: &str, window: &Window) -> Result<Option<Actor>, QueryError> {
        let mut found = self.actor_heads(Some(uuid), window)?;
        match found.pop() {
            Some(head) => self.complete(head, window).map(Some),
            None => Ok(None),
        }
    }

    /// Every attacker, by uuid.
    pub fn actors(&self, window: &Window) -> Result<Vec<Actor>, QueryError> {
        self.actor_heads(None, window)?
            .into_iter()
            .map(|head| self.complete(head, window))
            .collect()
    }

    fn actor_heads(&self, uuid: Option<&str>, window: &Window) -> Result<Vec<Actor>, QueryError> {
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let sql = if self.schema.has_attackers {
            let mut sql = "SELECT uuid, ip, identity_id, first_seen, last_seen, event_count, \
                 country_code, asn, as_name, commands FROM attackers WHERE 1=1"
                .to_string();
            if let Some(u) = uuid {
                sql.push_str(" AND uuid = ?");
                args.push(u.to_string().into());
            }
            sql.push_str(" ORDER BY uuid");
            sql
        } else {
            let mut sql = "SELECT t.attacker_uuid, NULL, MAX(t.identity_uuid), MIN(t.created_at), \
                 MAX(t.created_at), COUNT(DISTINCT t.source_kind || ':' || t.source_id), \
                 NULL, NULL, NULL, NULL FROM ttp_tag t WHERE t.attacker_uuid IS NOT NULL"
                .to_string();
            if let Some(u) = uuid {
                sql.push_str(" AND t.attacker_uuid = ?");
                args.push(u.to_string().into());
            }
            window.push_sql("t.", &mut sql, &mut args);
            sql.push_str(" GROUP BY t.attacker_uuid ORDER BY t.attacker_uuid");
            sql
        };
        let mut stmt = self.conn().prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let stored: Option<String> = r.get(9)?;
                Ok(Actor {
                    attacker_uuid: r.get(0)?,
                    ip: r.get::<_, Option<String>>(1)?.filter(|s| !s.is_empty()),
                    identity_uuid: r.get::<_, Option<String>>(2)?.filter(|s| !s.is_empty()),
                    first_seen: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    last_seen: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    event_count: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                    country_code: r.get::<_, Option<String>>(6)?.filter(|s| !s.is_empty()),
                    asn: r.get::<_, Option<i64>>(7)?.filter(|n| *n != 0),
                    as_name: r.get::<_, Option<String>>(8)?.filter(|s| !s.is_empty()),
                    commands: stored.as_deref().map(stored_commands).unwrap_or_default(),
                    intel: None,
                    rollup: Vec::new(),
                    tags: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    fn complete(&self, mut actor: Actor, window: &Window) -> Result<Actor, QueryError> {
        actor.rollup = self.rollup(&Scope::Attacker(actor.attacker_uuid.clone()), window)?;
        actor.tags = self.tags(&TagFilter {
            attacker: Some(actor.attacker_uuid.clone()),
            window: window.clone(),
            limit: Some(TAGS_PER_ACTOR),
            ..TagFilter::default()
        })?;
        // Oldest first, so the list reads in the order the attacker typed.
        for tag in actor.tags.iter().rev() {
            if let Some(cmd) = tag.evidence.get("command_text").and_then(|v| v.as_str()) {
                push_command(&mut actor.commands, cmd);
            }
        }
        if self.schema.has_intel {
            actor.intel = self.intel(&actor.attacker_uuid)?;
        }
        Ok(actor)
    }

    fn intel(&self, attacker: &str) -> Result<Option<Intel>, QueryError> {
        self.conn()
            .query_row(
                "SELECT aggregate_verdict, abuseipdb_score, greynoise_classification, greynoise_tags, \
                 feodo_listed, feodo_malware_family, threatfox_listed, threatfox_threat_types \
                 FROM attacker_intel WHERE attacker_uuid = ?1",
                [attacker],
                |r| {
                    Ok(Intel {
                        verdict: r.get::<_, Option<String>>(0)?.filter(|s| !s.is_empty()),
                        abuseipdb_score: r.get(1)?,
                        greynoise_classification: r
                            .get::<_, Option<String>>(2)?
                            .filter(|s| !s.is_empty()),
                        greynoise_tags: string_list(r.get::<_, Option<String>>(3)?),
                        feodo_listed: r.get::<_, Option<bool>>(4)?.unwrap_or(false),
                        feodo_family: r.get::<_, Option<String>>(5)?.filter(|s| !s.is_empty()),
                        threatfox_listed: r.get::<_, Option<bool>>(6)?.unwrap_or(false),
                        threatfox_threat_types: string_list(r.get::<_, Option<String>>(7)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// DECNET's stored command list (`attackers.commands`): JSON objects whose
/// line is under `command_text` or, as DECNET's profiler writes it,
/// `command`. Anything unreadable is skipped.
fn stored_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) {
        for item in items {
            let line = item
                .get("command_text")
                .or_else(|| item.get("command"))
                .and_then(|v| v.as_str());
            if let Some(line) = line {
                push_command(&mut out, line);
            }
        }
    }
    out
}

fn push_command(list: &mut Vec<String>, line: &str) {
    let line = line.trim();
    if !line.is_empty() && list.len() < COMMANDS_PER_ACTOR && !list.iter().any(|c| c == line) {
        list.push(line.to_string());
    }
}

/// A JSON list of strings stored as text; anything else reads as empty.
fn string_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .map(|v| {
            v.into_iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_commands_read_both_keys_and_skip_junk() {
        let got = stored_commands(
            r#"[{"command": "uname -a"}, {"command_text": "id"}, {"command": "uname -a"},
                {"other": 1}, 5, {"command": "  "}]"#,
        );
        assert_eq!(got, vec!["uname -a", "id"]);
        assert!(stored_commands("not json").is_empty());
        assert!(stored_commands("{}").is_empty());
    }

    #[test]
    fn string_lists_tolerate_anything() {
        assert_eq!(string_list(Some(r#"["a", 1, "b"]"#.into())), vec!["a", "b"]);
        assert!(string_list(Some("{}".into())).is_empty());
        assert!(string_list(None).is_empty());
    }
}
