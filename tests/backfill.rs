//! `ttp backfill` against DECNET's executed `backfill.json`: the seed it
//! describes, written into a copy of DECNET's `fixture.sqlite` emptied of
//! its own attackers, replayed with DECNET's pack.

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn seed(dir: &Path) -> PathBuf {
    let db = dir.join("decnet.db");
    std::fs::copy(
        common::shared().join("reference/decnet-api-golden/fixture.sqlite"),
        &db,
    )
    .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; DELETE FROM attackers; DELETE FROM canary_triggers;",
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let at = |days: i64| ttp_engine::timefmt::format(now - time::Duration::days(days));
    let g: Value = serde_json::from_slice(
        &std::fs::read(common::shared().join("reference/decnet-api-golden/backfill.json")).unwrap(),
    )
    .unwrap();
    let s = &g["seed"];
    let attacker = |uuid: &str, identity: Option<&str>, commands: String, last_seen: String| {
        conn.execute(
            "INSERT INTO attackers (uuid, ip, identity_id, first_seen, last_seen, event_count, service_count, \
             decky_count, services, deckies, is_traversal, bounty_count, credential_count, fingerprints, \
             commands, rotation_count, ipv6_leak_count, updated_at) \
             VALUES (?1, ?1, ?2, ?3, ?3, 1, 1, 1, '[]', '[]', 0, 0, 0, '[]', ?4, 0, 0, ?3)",
            rusqlite::params![uuid, identity, last_seen, commands],
        )
        .unwrap();
    };
    attacker(
        "att-bf-profiler",
        None,
        s["att-bf-profiler.commands"].to_string(),
        at(1),
    );
    attacker(
        "att-bf-text",
        s["att-bf-text.identity_id"].as_str(),
        s["att-bf-text.commands"].to_string(),
        at(1),
    );
    attacker(
        "att-bf-old",
        None,
        json!([{"id": "c-old", "command_text": "cat /etc/passwd"}]).to_string(),
        at(30),
    );
    attacker(
        "att-bf-bad",
        None,
        s["att-bf-bad.commands"].as_str().unwrap().to_string(),
        at(1),
    );
    for t in s["canary_triggers"].as_array().unwrap() {
        conn.execute(
            "INSERT INTO canary_triggers (uuid, token_uuid, occurred_at, src_ip, user_agent, raw_headers, attacker_id) \
             VALUES (?1, 'tok-1', ?2, '192.0.2.9', ?3, '{}', ?4)",
            rusqlite::params![t["uuid"].as_str(), at(1), t["user_agent"].as_str(), t["attacker_id"].as_str()],
        )
        .unwrap();
    }
    db
}

fn backfill(db: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .arg("backfill")
        .args(args)
        .arg("--rules")
        .arg(common::shared().join("reference/decnet-rules"))
        .arg("--db")
        .arg(db)
        .env("TTP_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The report without its timings and cut-off time.
fn report(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            let l = l.split(" elapsed_s=").next().unwrap();
            match l.split_once("since=") {
                Some((a, b)) => format!("{a}since=<t>{}", &b[b.find(' ').unwrap()..]),
                None => l.to_string(),
            }
        })
        .collect()
}

fn tags(db: &Path) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT uuid, source_id, attacker_uuid, identity_uuid, session_id, decky_id, rule_id, \
             technique_id, sub_technique_id, confidence, evidence FROM ttp_tag \
             WHERE attacker_uuid LIKE 'att-bf-%' ORDER BY uuid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let ev: String = r.get(10)?;
        Ok(json!({
            "uuid": r.get::<_, String>(0)?, "source_id": r.get::<_, String>(1)?,
            "attacker_uuid": r.get::<_, Option<String>>(2)?, "identity_uuid": r.get::<_, Option<String>>(3)?,
            "session_id": r.get::<_, Option<String>>(4)?, "decky_id": r.get::<_, Option<String>>(5)?,
            "rule_id": r.get::<_, String>(6)?, "technique_id": r.get::<_, String>(7)?,
            "sub_technique_id": r.get::<_, Option<String>>(8)?, "confidence": r.get::<_, f64>(9)?,
            "evidence": serde_json::from_str::<Value>(&ev).unwrap(),
        }))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn backfill_gives_decnets_report_and_rows() {
    let work = tempfile::TempDir::new().unwrap();
    let db = seed(work.path());
    let g: Value = serde_json::from_slice(
        &std::fs::read(common::shared().join("reference/decnet-api-golden/backfill.json")).unwrap(),
    )
    .unwrap();
    let lines = |k: &str| -> Vec<String> {
        let v: Vec<String> = g[k][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        report(&v.join("\n"))
    };

    let (code, out, err) = backfill(&db, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report(&out), lines("dry_run"));
    assert!(tags(&db).is_empty());

    // First run: DECNET's three rows, and (our fix of Q16) the commands of
    // the profiler-shaped row, which DECNET cannot read.
    let (code, out, err) = backfill(&db, &[]);
    assert_eq!(code, 0, "{err}");
    let got = tags(&db);
    let mut decnet: Vec<Value> = g["tags_after_first_run"].as_array().unwrap().clone();
    decnet.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
    let ours: Vec<Value> = got
        .iter()
        .filter(|t| t["attacker_uuid"] != "att-bf-profiler")
        .cloned()
        .collect();
    for want in &decnet {
        let have = ours
            .iter()
            .find(|t| t["uuid"] == want["uuid"])
            .unwrap_or_else(|| panic!("{want} missing"));
        for k in [
            "source_id",
            "attacker_uuid",
            "identity_uuid",
            "session_id",
            "decky_id",
            "rule_id",
            "technique_id",
            "sub_technique_id",
            "confidence",
            "evidence",
        ] {
            assert_eq!(have[k], want[k], "{k} of {}", want["uuid"]);
        }
    }
    assert_eq!(ours.len(), decnet.len(), "{ours:#?}");
    let profiler: Vec<&Value> = got
        .iter()
        .filter(|t| t["attacker_uuid"] == "att-bf-profiler")
        .collect();
    assert!(
        profiler.iter().any(|t| t["rule_id"] == "R0014"),
        "{profiler:#?}"
    );
    let expected_first: Vec<String> = lines("first_run")
        .into_iter()
        .map(|l| l.replace("inserted=3", &format!("inserted={}", got.len())))
        .collect();
    assert_eq!(report(&out), expected_first);

    let (code, out, _) = backfill(&db, &[]);
    assert_eq!(code, 0);
    assert_eq!(report(&out), lines("second_run"));

    let (code, _, err) = backfill(&db, &["--source", "email"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim(), g["bad_source"][0][0].as_str().unwrap());
    let (code, out, _) = backfill(&db, &["--since-days", "0"]);
    assert_eq!((code, out.as_str()), (2, ""));

    let (code, out, err) = backfill(&db, &["--since-days", "31", "--batch-size", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report(&out), lines("thirty_one_days_batch_1"));
    assert_eq!(tags(&db).len(), got.len() + 1);
}
