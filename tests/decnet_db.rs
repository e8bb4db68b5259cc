//! `ttp` on a database made by DECNET (`../shared/reference/decnet-api-golden/
//! fixture.sqlite`, copied): it is recognised, written into, and DECNET's
//! tables stay exactly as DECNET made them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn ttp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttp"));
    c.env_remove("TTP_RULES")
        .env_remove("TTP_DB")
        .env("TTP_LOG", "warn");
    c
}

/// Every schema object: (type, name, table, sql).
fn schema(db: &Path) -> Vec<(String, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn fixture_copy(dir: &Path) -> PathBuf {
    let sh = common::shared();
    let db = dir.join("decnet.db");
    std::fs::copy(sh.join("reference/decnet-api-golden/fixture.sqlite"), &db).unwrap();
    db
}

fn tag(db: &Path) -> String {
    let sh = common::shared();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ttp()
        .args(["tag", "--rules"])
        .arg(sh.join("reference/decnet-rules"))
        .arg("--db")
        .arg(db)
        .arg("--events")
        .arg(root.join("tests/data/decnet_round2.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn decnets_database_is_written_into_and_its_schema_is_untouched() {
    let work = tempfile::TempDir::new().unwrap();
    let db = fixture_copy(work.path());
    let before = schema(&db);
    let tags_before = count(&db, "SELECT count(*) FROM ttp_tag");
    let version_before = count(&db, "PRAGMA user_version");

    let first = tag(&db);
    assert!(first.contains("22 new"), "{first}");
    let second = tag(&db);
    assert!(second.contains("0 new, 22 already present"), "{second}");

    // DECNET's objects are all there, byte for byte; ours are added beside.
    let after = schema(&db);
    for object in &before {
        assert!(after.contains(object), "{object:?} changed or vanished");
    }
    let added: Vec<&str> = after
        .iter()
        .filter(|o| !before.contains(o))
        .map(|o| o.1.as_str())
        .collect();
    for name in &added {
        // (`sqlite_sequence` is SQLite's own, made for our audit log's
        // AUTOINCREMENT key.)
        assert!(
            name.starts_with("ttp_")
                || name.starts_with("ix_ttp_")
                || name.starts_with("sqlite_autoindex_ttp_")
                || *name == "sqlite_sequence",
            "unexpected new object {name}"
        );
        assert!(
            !["ttp_tag", "ttp_rule", "ttp_rule_state"].contains(name),
            "DECNET's own table {name} re-created"
        );
    }
    assert!(added.contains(&"ttp_tag_rule_sha256"), "{added:?}");
    assert_eq!(count(&db, "PRAGMA user_version"), version_before);

    // The rows: in DECNET's table, with their rule text's hash beside.
    assert_eq!(count(&db, "SELECT count(*) FROM ttp_tag"), tags_before + 22);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag t JOIN ttp_tag_rule_sha256 s USING (uuid) \
             WHERE length(s.rule_sha256) = 64 AND t.source_id LIKE 'r2-%'"
        ),
        22
    );
    // Every table still reads.
    let conn = rusqlite::Connection::open(&db).unwrap();
    for (kind, name, _, _) in &after {
        if kind == "table" && !name.starts_with("sqlite_") {
            conn.query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn rule_state_tags_listing_and_the_daemon_work_on_decnets_database() {
    let work = tempfile::TempDir::new().unwrap();
    let db = fixture_copy(work.path());
    tag(&db);
    let dbs = db.to_str().unwrap();
    // DECNET's ttp_rule_state drives our state commands and theirs.
    let out = ttp()
        .args(["rule", "disable", "R0013", "--db", dbs])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_rule_state WHERE rule_id = 'R0013' AND state = 'disabled'"
        ),
        1
    );
    let out = ttp()
        .args(["tags", "--db", dbs, "--rule", "R0013", "--format", "ndjson"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
    let out = ttp().args(["rule", "list", "--db", dbs]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("R0013"));

    // `ttp run` on it: a disabled rule stays off, the others tag.
    let sh = common::shared();
    let mut child = ttp()
        .args(["run", "--rules"])
        .arg(sh.join("reference/decnet-rules"))
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            r#"{{"source_kind":"command","source_id":"live-1","attacker_uuid":"a","payload":{{"command_text":"cat /etc/passwd; uname -a"}}}}"#
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE source_id = 'live-1' AND rule_id = 'R0013'"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE source_id = 'live-1'"
        ) > 0
    );
}
