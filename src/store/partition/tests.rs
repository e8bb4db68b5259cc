//! The partitions, on real SQLite files.

use super::*;
use crate::store::{insert_rows, open, StoreOptions, TagTable};
use crate::tag::Tag;

fn tag(i: u32, technique: &str) -> Tag {
    Tag {
        source_id: format!("s{i}"),
        attacker_uuid: Some(format!("a{}", i % 7)),
        created_at: format!("2026-01-01 00:00:{:02}.000000", i % 60),
        ..Tag::sample(
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, &i.to_le_bytes()),
            technique,
        )
    }
}

/// Stores `tags` as the writer does; returns how many were new.
fn store(conn: &Connection, parts: &Partitions, tags: &[Tag]) -> usize {
    let table = TagTable::with_partitions(parts.clone());
    let tx = crate::store::write_transaction(conn).unwrap();
    let n = insert_rows(&tx, &table, tags).unwrap().len();
    tx.commit().unwrap();
    n
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn partitions_close_index_and_keep_uuids_unique() {
    let dir = tempfile::TempDir::new().unwrap();
    let conn = open(&dir.path().join("p.db"), &StoreOptions::default()).unwrap();
    let mut parts = Partitions::load(&conn).unwrap();
    parts.limit = 100;
    assert_eq!(parts.live(), "ttp_tag_p000001");
    let first: Vec<Tag> = (0..120).map(|i| tag(i, "T1059")).collect();
    assert_eq!(store(&conn, &parts, &first), 120);
    assert_eq!(
        parts.maintain(&conn).unwrap(),
        Maintenance::Closed("ttp_tag_p000001".into(), 120)
    );
    assert_eq!(parts.live(), "ttp_tag_p000002");
    // A closed partition gets its deferred indexes, one per step,
    // then its statistics.
    let mut built = 0;
    loop {
        match parts.maintain(&conn).unwrap() {
            Maintenance::Indexed(name, _) => {
                assert_eq!(name, "ttp_tag_p000001");
                built += 1;
            }
            Maintenance::Completed(name) => {
                assert_eq!(name, "ttp_tag_p000001");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // (The live partition had one of them already.)
    assert_eq!(built, DEFERRED_INDEXES.len() - 1);
    assert_eq!(parts.maintain(&conn).unwrap(), Maintenance::Nothing);
    assert_eq!(
        index_columns(&conn, "ttp_tag_p000001").unwrap().len(),
        4 + 5 + 1
    );
    // Replaying the first tags with new ones: only the new are stored,
    // in the live partition; the view shows each tag once.
    let again: Vec<Tag> = (60..200).map(|i| tag(i, "T1059")).collect();
    assert_eq!(store(&conn, &parts, &again), 80);
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 200);
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT uuid) FROM ttp_tag"),
        200
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag_p000002"), 80);
    // The newest tags, read as `ttp query tags` reads them (merged from
    // each partition's order), equal the view sorted whole; so does the
    // whole listing (sorted after reading); counts too.
    let reader = crate::query::Reader::open(&dir.path().join("p.db")).unwrap();
    for attacker in [None, Some("a3".to_string())] {
        for limit in [Some(25), None] {
            let filter = crate::query::TagFilter {
                attacker: attacker.clone(),
                limit,
                ..Default::default()
            };
            let got: Vec<String> = reader
                .tags(&filter)
                .unwrap()
                .into_iter()
                .map(|t| t.uuid)
                .collect();
            let want: Vec<String> = conn
                .prepare(
                    "SELECT uuid FROM ttp_tag WHERE ?1 IS NULL OR attacker_uuid = ?1 \
                     ORDER BY created_at DESC, uuid LIMIT ?2",
                )
                .unwrap()
                .query_map(
                    rusqlite::params![&attacker, limit.map_or(-1, i64::from)],
                    |r| r.get(0),
                )
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, want, "{attacker:?}, limit {limit:?}");
            assert!(got.len() >= 25);
            let n = reader.count_tags(&filter).unwrap() as i64;
            assert_eq!(
                n,
                conn.query_row(
                    "SELECT count(*) FROM ttp_tag WHERE ?1 IS NULL OR attacker_uuid = ?1",
                    [&attacker],
                    |r| r.get::<_, i64>(0)
                )
                .unwrap()
            );
        }
    }
    // A writer starting later reads the same partitions and filters.
    let reloaded = Partitions::load(&conn).unwrap();
    assert_eq!(reloaded.live(), "ttp_tag_p000002");
    assert!(reloaded.unindexed.is_empty());
    assert_eq!(store(&conn, &reloaded, &first), 0);
    // The fleet totals count every partition.
    assert_eq!(
        count(
            &conn,
            "SELECT count FROM ttp_technique_totals WHERE technique_id = 'T1059'"
        ),
        200
    );
}

#[test]
fn a_second_writer_follows_a_partition_closed_by_the_first() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("two.db");
    let a = open(&path, &StoreOptions::default()).unwrap();
    let b = open(&path, &StoreOptions::default()).unwrap();
    let mut pa = Partitions::load(&a).unwrap();
    let mut pb = Partitions::load(&b).unwrap();
    pa.limit = 10;
    pb.limit = 10;
    let first: Vec<Tag> = (0..12).map(|i| tag(i, "T1059")).collect();
    assert_eq!(store(&a, &pa, &first), 12);
    assert!(matches!(pa.maintain(&a).unwrap(), Maintenance::Closed(..)));
    // `b` still holds the catalogue it read before the close: its batch
    // goes to the new live partition, and `a`'s tags are not stored twice.
    assert!(!pb.is_current(&b).unwrap());
    let overlapping: Vec<Tag> = (6..20).map(|i| tag(i, "T1059")).collect();
    assert_eq!(store(&b, &pb, &overlapping), 8);
    assert_eq!(count(&b, "SELECT count(*) FROM ttp_tag_p000002"), 8);
    assert_eq!(count(&b, "SELECT count(DISTINCT uuid) FROM ttp_tag"), 20);
    // Its upkeep reads the catalogue again instead of closing twice.
    assert!(matches!(
        pb.maintain(&b).unwrap(),
        Maintenance::Indexed(name, _) if name == "ttp_tag_p000001"
    ));
    assert_eq!(pb.live(), "ttp_tag_p000002");
    assert!(pb.is_current(&b).unwrap());
}

#[test]
fn the_view_takes_inserts_updates_and_deletes_like_a_table() {
    let dir = tempfile::TempDir::new().unwrap();
    let conn = open(&dir.path().join("v.db"), &StoreOptions::default()).unwrap();
    let mut parts = Partitions::load(&conn).unwrap();
    parts.limit = 10;
    crate::store::insert_tags(&conn, &(0..12).map(|i| tag(i, "T1059")).collect::<Vec<_>>())
        .unwrap();
    assert!(matches!(
        parts.maintain(&conn).unwrap(),
        Maintenance::Closed(..)
    ));
    let insert = |uuid: &str| {
        conn.execute(
            "INSERT INTO ttp_tag (uuid, source_kind, source_id, attacker_uuid, tactic, \
             technique_id, confidence, rule_id, rule_version, evidence, attack_release, created_at) \
             VALUES (?1, 'k', 's', 'a', 'TA0001', 'T1110', 0.5, 'R', 1, '{}', 'v', \
             '2026-01-02 00:00:00.000000')",
            [uuid],
        )
    };
    insert("hand-1").unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM ttp_tag_p000002 WHERE uuid = 'hand-1'"
        ),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT rule_sha256 = '' FROM ttp_tag WHERE uuid = 'hand-1'"
        ),
        1
    );
    // A UUID of a closed partition is refused as a table would refuse it.
    let old = tag(3, "T1059").uuid.to_string();
    let err = insert(&old).unwrap_err().to_string();
    assert!(err.contains("UNIQUE constraint failed"), "{err}");
    assert_eq!(
        count(
            &conn,
            "SELECT count FROM ttp_technique_totals WHERE technique_id = 'T1110'"
        ),
        1
    );
    // Updates and deletes reach the partition holding the row, and the
    // totals follow.
    conn.execute(
        "UPDATE ttp_tag SET technique_id = 'T1110' WHERE uuid = ?1",
        [&old],
    )
    .unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT count FROM ttp_technique_totals WHERE technique_id = 'T1110'"
        ),
        2
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count FROM ttp_technique_totals WHERE technique_id = 'T1059'"
        ),
        11
    );
    conn.execute("DELETE FROM ttp_tag WHERE technique_id = 'T1110'", [])
        .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 11);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM ttp_technique_totals WHERE technique_id = 'T1110'"
        ),
        0
    );
    // DECNET's column names and types, then ours.
    let columns: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM pragma_table_info('ttp_tag')")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(columns.len(), 18);
    assert_eq!(columns[0], ("uuid".into(), "VARCHAR".into()));
    assert_eq!(columns[13], ("evidence".into(), "JSON".into()));
    assert_eq!(columns[16], ("created_at".into(), "DATETIME".into()));
}

/// Past [`VIEW_ARMS`] partitions (here 3) the view joins views of that
/// many, and the newest tags are merged a group at a time: the same
/// answers as one compound, which SQLite refuses past 500 terms.
#[test]
fn many_partitions_are_joined_by_views_of_views() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("p.db");
    let conn = open(&path, &StoreOptions::default()).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    let mut parts = Partitions::load(&conn).unwrap();
    parts.limit = 3;
    // 30 tags with distinct times, 6 more sharing some of them.
    let ids: Vec<u32> = (0..30).chain(60..66).collect();
    for batch in ids.chunks(3) {
        let tags: Vec<Tag> = batch.iter().map(|&i| tag(i, "T1059")).collect();
        assert_eq!(store(&conn, &parts, &tags), 3);
        while parts.maintain(&conn).unwrap() != Maintenance::Nothing {}
    }
    assert_eq!(parts.closed.len(), 12);
    let chunk_views = "SELECT count(*) FROM sqlite_master WHERE type = 'view' \
                       AND name LIKE 'ttp_tag_chunk_%'";
    rebuild_view_in(&conn, 3).unwrap();
    // 13 partitions: 5 views of at most 3.
    assert_eq!(count(&conn, chunk_views), 5);
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 36);
    let one = tag(61, "T1059").uuid.to_string();
    assert_eq!(
        conn.query_row(
            "SELECT count(*) FROM ttp_tag WHERE uuid = ?1",
            [&one],
            |r| { r.get::<_, i64>(0) }
        )
        .unwrap(),
        1
    );
    // Hand edits through the view still reach every partition.
    conn.execute("DELETE FROM ttp_tag WHERE uuid = ?1", [&one])
        .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 35);
    assert_eq!(
        count(
            &conn,
            "SELECT count FROM ttp_technique_totals WHERE technique_id = 'T1059'"
        ),
        35
    );
    // Pages of the newest tags, merged three partitions at a time, equal
    // the view sorted whole.
    let reader = crate::query::Reader::open(&path).unwrap();
    for (limit, offset) in [(7, 0), (7, 5), (40, 0), (3, 33)] {
        let filter = crate::query::TagFilter {
            limit: Some(limit),
            offset: Some(offset),
            ..Default::default()
        };
        let got: Vec<String> = reader
            .tags_merging(&filter, 3)
            .unwrap()
            .into_iter()
            .map(|t| t.uuid)
            .collect();
        let want: Vec<String> = conn
            .prepare("SELECT uuid FROM ttp_tag ORDER BY created_at DESC, uuid LIMIT ?1 OFFSET ?2")
            .unwrap()
            .query_map([limit, offset], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "limit {limit} offset {offset}");
        assert!(!got.is_empty());
    }
    // Back under the bound: one view again, the chunks gone.
    rebuild_view(&conn).unwrap();
    assert_eq!(count(&conn, chunk_views), 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 35);
}

/// 501 partitions: one compound would be refused by SQLite ("too many
/// terms in compound SELECT").
#[test]
fn the_view_passes_sqlites_limit_of_500_terms() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE ttp_tag_partition (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, \
         state VARCHAR NOT NULL, rows INTEGER, bloom BLOB, closed_at DATETIME);",
    )
    .unwrap();
    let n = 501;
    for id in 1..=n {
        let name = table_name(id);
        conn.execute_batch(&create_table(&name)).unwrap();
        let state = if id == n { "live" } else { "closed" };
        conn.execute(
            "INSERT INTO ttp_tag_partition (id, name, state) VALUES (?1, ?2, ?3)",
            params![id, name, state],
        )
        .unwrap();
    }
    let tables: Vec<String> = (1..=n).map(table_name).collect();
    let one = conn.execute_batch(&view_sql(&tables, &table_name(n), n as usize));
    assert!(
        one.unwrap_err().to_string().contains("too many terms"),
        "SQLite's limit moved: VIEW_ARMS may be too cautious"
    );
    rebuild_view(&conn).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 0);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'ttp_tag_chunk_%'"
        ),
        2
    );
}

/// DECNET's 13 indexes of `ttp_tag`.
const DECNET_INDEXES: [(&str, &str); 13] = [
    ("attack_release", "attack_release"),
    ("attacker_technique", "attacker_uuid,technique_id"),
    ("attacker_uuid", "attacker_uuid"),
    ("created_at", "created_at"),
    ("decky_id", "decky_id"),
    ("identity_technique", "identity_uuid,technique_id"),
    ("identity_uuid", "identity_uuid"),
    ("rule_id", "rule_id"),
    ("session_id", "session_id"),
    ("sub_technique_id", "sub_technique_id"),
    ("tactic", "tactic"),
    ("technique_created", "technique_id,created_at"),
    ("technique_id", "technique_id"),
];

/// A file of schema 5: one `ttp_tag` table with DECNET's 13 indexes.
fn schema_5(rows: u32) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    let mut sql = "PRAGMA foreign_keys = OFF;".to_string() + &create_table("ttp_tag");
    for (suffix, cols) in DECNET_INDEXES {
        sql.push_str(&format!(
            "CREATE INDEX ix_ttp_tag_{suffix} ON ttp_tag ({cols});\n"
        ));
    }
    conn.execute_batch(&sql).unwrap();
    conn.execute_batch(
        "CREATE TABLE ttp_technique_totals (technique_id, sub_technique_id, tactic, count, \
         first_seen, last_seen, confidence_max, PRIMARY KEY (technique_id, sub_technique_id));",
    )
    .unwrap();
    for i in 0..rows {
        let t = tag(i, "T1059");
        conn.execute(
            "INSERT INTO ttp_tag (uuid, source_kind, source_id, attacker_uuid, tactic, \
             technique_id, confidence, rule_id, rule_version, evidence, attack_release, created_at) \
             VALUES (?1, 'k', 's', 'a', 'TA0001', 'T1059', 0.5, 'R', 1, '{}', 'v', 'now')",
            [t.uuid.to_string()],
        )
        .unwrap();
    }
    conn.execute_batch(MIGRATION).unwrap();
    conn
}

/// The schema steps after 6 that the writer's inserts need (step 8's
/// totals).
fn later_steps(conn: &Connection) {
    conn.execute_batch(crate::store::totals::SCHEMA).unwrap();
    retrigger(conn).unwrap();
}

#[test]
fn the_single_table_of_schema_5_becomes_partition_1() {
    // Small: it stays live, without the indexes built at closing.
    let conn = schema_5(5);
    adopt_at(&conn, 10).unwrap();
    later_steps(&conn);
    let parts = Partitions::load(&conn).unwrap();
    assert_eq!(parts.live(), "ttp_tag_p000001");
    assert_eq!(
        index_columns(&conn, "ttp_tag_p000001").unwrap().len(),
        4 + 1
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 5);
    // Full: it is closed with a filter and all its indexes (under
    // DECNET's names), and a new live partition takes the inserts.
    let conn = schema_5(5);
    adopt_at(&conn, 5).unwrap();
    later_steps(&conn);
    let parts = Partitions::load(&conn).unwrap();
    assert_eq!(parts.live(), "ttp_tag_p000002");
    assert_eq!(
        index_columns(&conn, "ttp_tag_p000001").unwrap().len(),
        13 + 1
    );
    // DECNET's indexes lack one in time order per attacker: the writer
    // builds it.
    assert_eq!(parts.unindexed, ["ttp_tag_p000001"]);
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 5);
    let replay: Vec<Tag> = (0..8).map(|i| tag(i, "T1059")).collect();
    assert_eq!(store(&conn, &parts, &replay), 3);
    assert_eq!(count(&conn, "SELECT count(*) FROM ttp_tag"), 8);
}
