//! Rules in SQLite: the current definitions (`ttp_rule`, DECNET's columns),
//! every distinct version ever loaded (`ttp_rule_version`), the audit log
//! (`ttp_rule_event`) and the operators' rule state (`ttp_rule_state`,
//! DECNET's columns).
//!
//! Inside a daemon only the writer thread calls the writing functions; the
//! `ttp rule` commands are separate processes with their own connection.

use crate::diag::Diagnostic;
use crate::rule::Rule;
use crate::ruleset::Change;
use crate::state::{RuleState, StateKind};
use crate::timefmt;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Who writes `ttp_rule.updated_by`.
pub const UPDATED_BY: &str = "ttp-engine";

/// An audit action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Loaded,
    Updated,
    Removed,
    Rejected,
    State,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Loaded => "loaded",
            Action::Updated => "updated",
            Action::Removed => "removed",
            Action::Rejected => "rejected",
            Action::State => "state",
        }
    }
}

pub fn log_event(
    conn: &Connection,
    rule_id: Option<&str>,
    path: Option<&str>,
    action: Action,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ttp_rule_event (at, rule_id, path, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![timefmt::now(), rule_id, path, action.as_str(), detail],
    )?;
    Ok(())
}

/// Records a rule as serving: its current definition and its version.
/// Returns a warning when the text changed but `rule_version` did not
/// (its tags would share UUIDs with the earlier text's).
fn record_rule(conn: &Connection, rule: &Rule, now: &str) -> rusqlite::Result<Option<String>> {
    let path = rule.source.path.display().to_string();
    conn.prepare_cached(
        "INSERT INTO ttp_rule (rule_id, rule_version, source_path, yaml_content, updated_at, updated_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT(rule_id) DO UPDATE SET rule_version = excluded.rule_version, \
         source_path = excluded.source_path, yaml_content = excluded.yaml_content, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )?
    .execute(params![rule.rule_id, rule.rule_version, path, &*rule.source.text, now, UPDATED_BY],
    )?;
    let clash: Option<String> = conn
        .prepare_cached(
            "SELECT sha256 FROM ttp_rule_version WHERE rule_id = ?1 AND rule_version = ?2 AND sha256 != ?3 LIMIT 1",
        )?
        .query_row(
            params![rule.rule_id, rule.rule_version, rule.source.sha256],
            |r| r.get(0),
        )
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO ttp_rule_version (rule_id, rule_version, sha256, yaml_content, source_path, first_loaded_at, last_loaded_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT(sha256) DO UPDATE SET last_loaded_at = excluded.last_loaded_at, source_path = excluded.source_path",
    )?
    .execute(params![rule.rule_id, rule.rule_version, rule.source.sha256, &*rule.source.text, path, now],
    )?;
    Ok(clash.map(|_| {
        format!(
            "{}: the text of rule {} changed but rule_version is still {}: its tags share UUIDs with the earlier text's; bump rule_version",
            path, rule.rule_id, rule.rule_version
        )
    }))
}

fn first_error(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .find(|d| d.is_error())
        .map(|d| {
            format!(
                "{}:{}:{}: {}[{}]: {}",
                d.path.display(),
                d.line,
                d.col,
                d.severity,
                d.code,
                d.message
            )
        })
        .unwrap_or_default()
}

/// Persists the changes of one reload in one transaction. Returns warnings
/// (rule text changed without a version bump).
pub fn record_changes(conn: &Connection, changes: &[Change]) -> rusqlite::Result<Vec<String>> {
    let tx = conn.unchecked_transaction()?;
    let now = timefmt::now();
    let mut warnings = Vec::new();
    for change in changes {
        match change {
            Change::Loaded(rule) => {
                warnings.extend(record_rule(&tx, rule, &now)?);
                let path = rule.source.path.display().to_string();
                log_event(
                    &tx,
                    Some(&rule.rule_id),
                    Some(&path),
                    Action::Loaded,
                    &format!("version {}", rule.rule_version),
                )?;
            }
            Change::Updated { old, new } => {
                warnings.extend(record_rule(&tx, new, &now)?);
                let path = new.source.path.display().to_string();
                let detail = format!(
                    "version {} -> {} (sha256 {} -> {})",
                    old.rule_version,
                    new.rule_version,
                    &old.source.sha256[..12],
                    &new.source.sha256[..12]
                );
                log_event(
                    &tx,
                    Some(&new.rule_id),
                    Some(&path),
                    Action::Updated,
                    &detail,
                )?;
            }
            Change::Removed { rule, path } => {
                tx.execute(
                    "DELETE FROM ttp_rule WHERE rule_id = ?1 AND source_path = ?2",
                    params![rule.rule_id, path.display().to_string()],
                )?;
                log_event(
                    &tx,
                    Some(&rule.rule_id),
                    Some(&path.display().to_string()),
                    Action::Removed,
                    "",
                )?;
            }
            Change::Rejected {
                path,
                diagnostics,
                kept,
            } => {
                let detail = match kept {
                    Some(k) => format!(
                        "{} (version {} keeps serving)",
                        first_error(diagnostics),
                        k.rule_version
                    ),
                    None => first_error(diagnostics),
                };
                log_event(
                    &tx,
                    kept.as_ref().map(|k| k.rule_id.as_str()),
                    Some(&path.display().to_string()),
                    Action::Rejected,
                    &detail,
                )?;
            }
        }
    }
    tx.commit()?;
    Ok(warnings)
}

/// What a start-up sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub loaded: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Rules whose text changed while `rule_version` did not.
    pub warnings: Vec<String>,
}

/// Start-up: the rules now serving replace the stored definitions; rules
/// stored but no longer serving are removed; every change is logged.
pub fn sync_rules(
    conn: &Connection,
    rules: &[Arc<Rule>],
    rules_dir: &Path,
) -> rusqlite::Result<SyncReport> {
    let stored: HashMap<String, (String, String, i64)> = {
        let mut stmt =
            conn.prepare("SELECT rule_id, source_path, yaml_content, rule_version FROM ttp_rule")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?;
        rows.collect::<Result<_, _>>()?
    };
    let tx = conn.unchecked_transaction()?;
    let now = timefmt::now();
    let mut report = SyncReport::default();
    for rule in rules {
        let previous = stored.get(&rule.rule_id);
        report.warnings.extend(record_rule(&tx, rule, &now)?);
        let path = rule.source.path.display().to_string();
        match previous {
            None => {
                report.loaded += 1;
                log_event(
                    &tx,
                    Some(&rule.rule_id),
                    Some(&path),
                    Action::Loaded,
                    &format!("version {}", rule.rule_version),
                )?;
            }
            Some((_, text, version))
                if crate::rule::parse::sha256_hex(text) != rule.source.sha256 =>
            {
                report.updated += 1;
                let detail = format!(
                    "version {} -> {} (changed since the last run)",
                    version, rule.rule_version
                );
                log_event(
                    &tx,
                    Some(&rule.rule_id),
                    Some(&path),
                    Action::Updated,
                    &detail,
                )?;
            }
            Some(_) => report.unchanged += 1,
        }
    }
    let serving: HashSet<&str> = rules.iter().map(|r| r.rule_id.as_str()).collect();
    // Only rules of this rules directory can be gone from it: another
    // process tagging with other rules (`ttp tag --rules OTHER`) leaves a
    // daemon's catalogue alone.
    let canonical = std::fs::canonicalize(rules_dir).ok();
    let mut gone: Vec<(&String, &String)> = stored
        .iter()
        .filter(|(id, _)| !serving.contains(id.as_str()))
        .filter(|(_, (path, _, _))| within(Path::new(path), rules_dir, canonical.as_deref()))
        .map(|(id, (path, _, _))| (id, path))
        .collect();
    gone.sort();
    for (id, path) in gone {
        report.removed += 1;
        tx.execute("DELETE FROM ttp_rule WHERE rule_id = ?1", params![id])?;
        log_event(
            &tx,
            Some(id),
            Some(path),
            Action::Removed,
            "not in the rules directory any more",
        )?;
    }
    tx.commit()?;
    Ok(report)
}

/// Whether a stored `source_path` lies in `dir` (as spelled, or once both
/// are resolved: the file itself may be gone, its directory may not).
fn within(path: &Path, dir: &Path, canonical: Option<&Path>) -> bool {
    if path.starts_with(dir) {
        return true;
    }
    let Some(canonical) = canonical else {
        return false;
    };
    let resolved = path
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.join(path.file_name().unwrap_or_default()))
        .or_else(|| std::path::absolute(path).ok());
    resolved.is_some_and(|p| p.starts_with(canonical))
}

fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RuleState> {
    let expires: Option<String> = r.get(3)?;
    Ok(RuleState {
        rule_id: r.get(0)?,
        state: StateKind::parse(&r.get::<_, String>(1)?),
        confidence_max: r.get(2)?,
        expires_at: expires.as_deref().and_then(timefmt::parse_unix),
        reason: r.get(4)?,
        set_by: r.get(5)?,
        set_at: r.get(6)?,
    })
}

/// Every stored rule state.
pub fn load_states(conn: &Connection) -> rusqlite::Result<Vec<RuleState>> {
    let mut stmt = conn.prepare(
        "SELECT rule_id, state, confidence_max, expires_at, reason, set_by, set_at FROM ttp_rule_state ORDER BY rule_id",
    )?;
    let rows = stmt.query_map([], state_from_row)?;
    rows.collect()
}

/// Sets (or, for a plain `enabled` with no expiry, clears) a rule's state,
/// and logs it.
pub fn set_state(conn: &Connection, s: &RuleState) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let clear = s.state == StateKind::Enabled && s.expires_at.is_none();
    if clear {
        tx.execute(
            "DELETE FROM ttp_rule_state WHERE rule_id = ?1",
            params![s.rule_id],
        )?;
    } else {
        tx.execute(
            "INSERT INTO ttp_rule_state (rule_id, state, confidence_max, expires_at, reason, set_by, set_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT(rule_id) DO UPDATE SET state = excluded.state, confidence_max = excluded.confidence_max, \
             expires_at = excluded.expires_at, reason = excluded.reason, set_by = excluded.set_by, set_at = excluded.set_at",
            params![
                s.rule_id,
                s.state.as_str(),
                s.confidence_max,
                s.expires_at.map(timefmt::format_unix),
                s.reason,
                s.set_by,
                s.set_at
            ],
        )?;
    }
    let mut detail = s.state.as_str().to_string();
    if let Some(m) = s.confidence_max {
        detail.push_str(&format!(" max {m}"));
    }
    if let Some(e) = s.expires_at {
        detail.push_str(&format!(" until {}", timefmt::format_unix(e)));
    }
    if let Some(r) = &s.reason {
        detail.push_str(&format!(": {r}"));
    }
    log_event(&tx, Some(&s.rule_id), None, Action::State, &detail)?;
    tx.commit()
}

/// Deletes states that have expired (the rules are enabled again) and logs
/// each. Returns the rule ids.
pub fn expire_states(conn: &Connection, now: i64) -> rusqlite::Result<Vec<String>> {
    let expired: Vec<RuleState> = load_states(conn)?
        .into_iter()
        .filter(|s| s.expired(now))
        .collect();
    let tx = conn.unchecked_transaction()?;
    for s in &expired {
        tx.execute(
            "DELETE FROM ttp_rule_state WHERE rule_id = ?1",
            params![s.rule_id],
        )?;
        log_event(
            &tx,
            Some(&s.rule_id),
            None,
            Action::State,
            &format!("{} expired; enabled again", s.state.as_str()),
        )?;
    }
    tx.commit()?;
    Ok(expired.into_iter().map(|s| s.rule_id).collect())
}

/// One line of `ttp rule list`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub rule_id: String,
    pub rule_version: i64,
    pub source_path: String,
    pub state: String,
    pub confidence_max: Option<f64>,
    pub expires_at: Option<String>,
    pub last_error: Option<String>,
}

/// The latest rejection of a path that came after its latest load.
fn last_error(conn: &Connection, path: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT detail FROM ttp_rule_event WHERE path = ?1 AND action = 'rejected' \
         AND id > COALESCE((SELECT max(id) FROM ttp_rule_event WHERE path = ?1 AND action IN ('loaded','updated')), 0) \
         ORDER BY id DESC LIMIT 1",
        params![path],
        |r| r.get(0),
    )
    .optional()
}

/// Every stored rule with its state and last error, plus files whose last
/// load failed and that serve no rule (listed with an empty rule id).
pub fn list_rules(conn: &Connection) -> rusqlite::Result<Vec<RuleRow>> {
    let mut out = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT r.rule_id, r.rule_version, r.source_path, s.state, s.confidence_max, s.expires_at \
             FROM ttp_rule r LEFT JOIN ttp_rule_state s ON s.rule_id = r.rule_id ORDER BY r.source_path, r.rule_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RuleRow {
                rule_id: r.get(0)?,
                rule_version: r.get(1)?,
                source_path: r.get(2)?,
                state: r
                    .get::<_, Option<String>>(3)?
                    .unwrap_or_else(|| "enabled".into()),
                confidence_max: r.get(4)?,
                expires_at: r.get(5)?,
                last_error: None,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    for row in &mut out {
        row.last_error = last_error(conn, &row.source_path)?;
    }
    let broken: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT path FROM ttp_rule_event WHERE action = 'rejected' AND rule_id IS NULL \
             AND path NOT IN (SELECT source_path FROM ttp_rule) ORDER BY path",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for path in broken {
        // Only files whose most recent event is a rejection.
        let latest: Option<String> = conn
            .query_row(
                "SELECT action FROM ttp_rule_event WHERE path = ?1 ORDER BY id DESC LIMIT 1",
                params![path],
                |r| r.get(0),
            )
            .optional()?;
        if latest.as_deref() == Some("rejected") {
            let err = last_error(conn, &path)?;
            out.push(RuleRow {
                rule_id: String::new(),
                rule_version: 0,
                source_path: path,
                state: "broken".into(),
                confidence_max: None,
                expires_at: None,
                last_error: err,
            });
        }
    }
    Ok(out)
}

/// A rule's current text and its version history (newest first).
#[derive(Debug, Clone, Serialize)]
pub struct RuleDetail {
    pub rule: RuleRow,
    pub yaml_content: String,
    pub versions: Vec<VersionRow>,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub rule_version: i64,
    pub sha256: String,
    pub source_path: String,
    pub first_loaded_at: String,
    pub last_loaded_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub at: String,
    pub action: String,
    pub path: Option<String>,
    pub detail: Option<String>,
}

pub fn show_rule(conn: &Connection, rule_id: &str) -> rusqlite::Result<Option<RuleDetail>> {
    let Some(rule) = list_rules(conn)?.into_iter().find(|r| r.rule_id == rule_id) else {
        return Ok(None);
    };
    let yaml_content: String = conn.query_row(
        "SELECT yaml_content FROM ttp_rule WHERE rule_id = ?1",
        params![rule_id],
        |r| r.get(0),
    )?;
    let versions = {
        let mut stmt = conn.prepare(
            "SELECT rule_version, sha256, source_path, first_loaded_at, last_loaded_at FROM ttp_rule_version \
             WHERE rule_id = ?1 ORDER BY last_loaded_at DESC, first_loaded_at DESC",
        )?;
        let rows = stmt.query_map(params![rule_id], |r| {
            Ok(VersionRow {
                rule_version: r.get(0)?,
                sha256: r.get(1)?,
                source_path: r.get(2)?,
                first_loaded_at: r.get(3)?,
                last_loaded_at: r.get(4)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let events = {
        let mut stmt = conn.prepare(
            "SELECT at, action, path, detail FROM ttp_rule_event WHERE rule_id = ?1 ORDER BY id DESC LIMIT 50",
        )?;
        let rows = stmt.query_map(params![rule_id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                action: r.get(1)?,
                path: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    Ok(Some(RuleDetail {
        rule,
        yaml_content,
        versions,
        events,
    }))
}

/// Whether the catalog knows this rule id.
pub fn rule_exists(conn: &Connection, rule_id: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM ttp_rule WHERE rule_id = ?1",
        params![rule_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}
