//! What `sqlite3` users query: the ATT&CK names as tables, and views that
//! answer the rollups of `ttp query` / `ttp serve` in plain SQL.
//!
//! Created by a migration in both flavours (in DECNET's database they are
//! ours, beside DECNET's tables, which stay untouched). The ATT&CK tables
//! are filled from the vendored table and filled again whenever a build
//! with another ATT&CK release opens the file. `docs/queries.md` shows them
//! at work; `tests/sql_views.rs` checks they equal the library's rollups.

use crate::attack::{Attack, TABLE_RELEASE};
use rusqlite::Connection;

/// The ATT&CK tables and the views every flavour has.
macro_rules! attack_and_views {
    () => {
        concat!(
            r#"
CREATE TABLE ttp_attack_release (release VARCHAR NOT NULL);
CREATE TABLE ttp_attack_tactic (
  tactic_id VARCHAR NOT NULL, shortname VARCHAR NOT NULL, name VARCHAR NOT NULL,
  matrix_order INTEGER NOT NULL,
  PRIMARY KEY (tactic_id)
);
CREATE TABLE ttp_attack_technique (
  technique_id VARCHAR NOT NULL, name VARCHAR NOT NULL, full_name VARCHAR NOT NULL,
  parent_id VARCHAR, is_subtechnique BOOLEAN NOT NULL, tactics VARCHAR NOT NULL,
  url VARCHAR NOT NULL, stix_id VARCHAR, revoked BOOLEAN NOT NULL, deprecated BOOLEAN NOT NULL,
  PRIMARY KEY (technique_id)
);
CREATE VIEW ttp_tag_named AS
SELECT t.*,
       COALESCE(t.sub_technique_id, t.technique_id) AS attack_id,
       tn.full_name AS technique_name,
       sn.full_name AS sub_technique_name,
       ta.name AS tactic_name
FROM ttp_tag t
LEFT JOIN ttp_attack_technique tn ON tn.technique_id = t.technique_id
LEFT JOIN ttp_attack_technique sn ON sn.technique_id = t.sub_technique_id
LEFT JOIN ttp_attack_tactic ta ON ta.tactic_id = t.tactic;
CREATE VIEW ttp_technique_rollup AS
SELECT g.technique_id, tn.full_name AS technique_name,
       g.sub_technique_id, sn.full_name AS sub_technique_name,
       g.tactic, g.count, g.first_seen, g.last_seen, g.confidence_max, u.url AS mitre_url
FROM (SELECT technique_id, sub_technique_id, MAX(tactic) AS tactic, COUNT(*) AS count,
             MIN(created_at) AS first_seen, MAX(created_at) AS last_seen,
             MAX(confidence) AS confidence_max
      FROM ttp_tag GROUP BY technique_id, sub_technique_id) g
LEFT JOIN ttp_attack_technique tn ON tn.technique_id = g.technique_id
LEFT JOIN ttp_attack_technique sn ON sn.technique_id = g.sub_technique_id
LEFT JOIN ttp_attack_technique u ON u.technique_id = COALESCE(g.sub_technique_id, g.technique_id);
"#,
            keyed_rollup!("ttp_attacker_rollup", "attacker_uuid", "ttp_tag"),
            keyed_rollup!("ttp_session_rollup", "session_id", "ttp_tag"),
        )
    };
}

/// The view `$view`: one row per (`$key`, technique, sub-technique) of the
/// tags `$tags` (a table, or a subquery with those columns) whose `$key` is
/// set, with the names and URL from the ATT&CK tables.
macro_rules! keyed_rollup {
    ($view:literal, $key:literal, $tags:expr) => {
        concat!(
            "CREATE VIEW ", $view, " AS\n",
            "SELECT g.", $key, r#", g.technique_id, tn.full_name AS technique_name,
       g.sub_technique_id, sn.full_name AS sub_technique_name,
       g.tactic, g.count, g.first_seen, g.last_seen, g.confidence_max, u.url AS mitre_url
FROM (SELECT "#, $key, r#", technique_id, sub_technique_id, MAX(tactic) AS tactic,
             COUNT(*) AS count, MIN(created_at) AS first_seen, MAX(created_at) AS last_seen,
             MAX(confidence) AS confidence_max
      FROM "#, $tags, " WHERE ", $key, r#" IS NOT NULL
      GROUP BY "#, $key, r#", technique_id, sub_technique_id) g
LEFT JOIN ttp_attack_technique tn ON tn.technique_id = g.technique_id
LEFT JOIN ttp_attack_technique sn ON sn.technique_id = g.sub_technique_id
LEFT JOIN ttp_attack_technique u ON u.technique_id = COALESCE(g.sub_technique_id, g.technique_id);
"#
        )
    };
}

/// Our own file: an identity's tags are those anchored on it.
pub(super) const OWN: &str = concat!(
    attack_and_views!(),
    keyed_rollup!("ttp_identity_rollup", "identity_uuid", "ttp_tag")
);

/// DECNET's database: also the tags of every attacker whose
/// `attackers.identity_id` points at the identity, each tag once per
/// identity (as DECNET's identity rollup counts them).
pub(super) const DECNET: &str = concat!(
    attack_and_views!(),
    keyed_rollup!(
        "ttp_identity_rollup",
        "identity_uuid",
        "(SELECT identity_uuid, uuid, technique_id, sub_technique_id, tactic, created_at, \
         confidence FROM ttp_tag WHERE identity_uuid IS NOT NULL \
         UNION \
         SELECT a.identity_id, t.uuid, t.technique_id, t.sub_technique_id, t.tactic, \
         t.created_at, t.confidence FROM ttp_tag t JOIN attackers a ON a.uuid = t.attacker_uuid \
         WHERE a.identity_id IS NOT NULL)"
    )
);

/// Our own file: the fleet rollup kept up to date, so that the most asked
/// question (`GET /ttp/techniques`, `ttp query techniques`) reads a few
/// dozen rows instead of scanning every tag. The writer adds each batch's
/// new tags in the same transaction (`totals::add`: a trigger per
/// inserted row doubled the cost of storing a tag); triggers recompute the
/// groups a delete or an update touches, so hand edits keep it exact. The
/// technique rollup view reads it too. (`sub_technique_id` is '' for none:
/// a primary key cannot hold NULL.)
pub(super) const TOTALS: &str = r#"
CREATE TABLE ttp_technique_totals (
  technique_id VARCHAR NOT NULL, sub_technique_id VARCHAR NOT NULL, tactic VARCHAR NOT NULL,
  count INTEGER NOT NULL, first_seen DATETIME NOT NULL, last_seen DATETIME NOT NULL,
  confidence_max FLOAT NOT NULL,
  PRIMARY KEY (technique_id, sub_technique_id)
) WITHOUT ROWID;
INSERT INTO ttp_technique_totals
SELECT technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), COUNT(*), MIN(created_at),
       MAX(created_at), MAX(confidence)
FROM ttp_tag GROUP BY technique_id, COALESCE(sub_technique_id, '');
CREATE TRIGGER ttp_tag_totals_delete AFTER DELETE ON ttp_tag BEGIN
  DELETE FROM ttp_technique_totals
  WHERE technique_id = OLD.technique_id AND sub_technique_id = COALESCE(OLD.sub_technique_id, '');
  INSERT INTO ttp_technique_totals
  SELECT technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), COUNT(*), MIN(created_at),
         MAX(created_at), MAX(confidence)
  FROM ttp_tag
  WHERE technique_id = OLD.technique_id AND sub_technique_id IS OLD.sub_technique_id
  GROUP BY technique_id, COALESCE(sub_technique_id, '');
END;
CREATE TRIGGER ttp_tag_totals_update AFTER UPDATE ON ttp_tag BEGIN
  DELETE FROM ttp_technique_totals
  WHERE (technique_id = OLD.technique_id AND sub_technique_id = COALESCE(OLD.sub_technique_id, ''))
     OR (technique_id = NEW.technique_id AND sub_technique_id = COALESCE(NEW.sub_technique_id, ''));
  INSERT INTO ttp_technique_totals
  SELECT technique_id, COALESCE(sub_technique_id, ''), MAX(tactic), COUNT(*), MIN(created_at),
         MAX(created_at), MAX(confidence)
  FROM ttp_tag
  WHERE (technique_id = OLD.technique_id AND sub_technique_id IS OLD.sub_technique_id)
     OR (technique_id = NEW.technique_id AND sub_technique_id IS NEW.sub_technique_id)
  GROUP BY technique_id, COALESCE(sub_technique_id, '');
END;
DROP VIEW ttp_technique_rollup;
CREATE VIEW ttp_technique_rollup AS
SELECT g.technique_id, tn.full_name AS technique_name,
       NULLIF(g.sub_technique_id, '') AS sub_technique_id, sn.full_name AS sub_technique_name,
       g.tactic, g.count, g.first_seen, g.last_seen, g.confidence_max, u.url AS mitre_url
FROM ttp_technique_totals g
LEFT JOIN ttp_attack_technique tn ON tn.technique_id = g.technique_id
LEFT JOIN ttp_attack_technique sn ON sn.technique_id = NULLIF(g.sub_technique_id, '')
LEFT JOIN ttp_attack_technique u ON u.technique_id = COALESCE(NULLIF(g.sub_technique_id, ''), g.technique_id);
"#;

/// Whether the ATT&CK tables hold another release than this build's (or
/// are not there yet: `None` when the migration has not run).
pub(super) fn attack_is_stale(conn: &Connection) -> rusqlite::Result<Option<bool>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ttp_attack_release'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    let release: Option<String> =
        conn.query_row("SELECT max(release) FROM ttp_attack_release", [], |r| {
            r.get(0)
        })?;
    Ok(Some(release.as_deref() != Some(TABLE_RELEASE)))
}

/// Fills the ATT&CK tables with the vendored release (inside the caller's
/// transaction).
pub(super) fn fill_attack(conn: &Connection) -> rusqlite::Result<()> {
    let attack = Attack::embedded();
    conn.execute_batch(
        "DELETE FROM ttp_attack_release; DELETE FROM ttp_attack_tactic; \
         DELETE FROM ttp_attack_technique;",
    )?;
    conn.execute(
        "INSERT INTO ttp_attack_release (release) VALUES (?1)",
        [TABLE_RELEASE],
    )?;
    let mut tactic = conn.prepare(
        "INSERT INTO ttp_attack_tactic (tactic_id, shortname, name, matrix_order) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, t) in attack.tactics().into_iter().enumerate() {
        tactic.execute(rusqlite::params![t.id, t.shortname, t.name, i as i64 + 1])?;
    }
    let mut technique = conn.prepare(
        "INSERT INTO ttp_attack_technique (technique_id, name, full_name, parent_id, \
         is_subtechnique, tactics, url, stix_id, revoked, deprecated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for t in attack.techniques() {
        let parent =
            t.id.split_once('.')
                .map(|(p, _)| p)
                .filter(|_| t.is_subtechnique);
        technique.execute(rusqlite::params![
            t.id,
            t.name,
            attack
                .technique_name(&t.id)
                .unwrap_or_else(|| t.name.clone()),
            parent,
            t.is_subtechnique,
            t.tactics.join(","),
            attack.mitre_url(&t.id).unwrap_or_default(),
            attack.stix(&t.id).map(|s| s.id.as_str()),
            t.revoked,
            t.deprecated,
        ])?;
    }
    Ok(())
}
