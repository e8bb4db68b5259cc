//! The real `ttp` binary against real rule files and a real SQLite file.

use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;
use std::path::Path;
use tempfile::TempDir;

fn ttp() -> Command {
    let mut c = Command::cargo_bin("ttp").unwrap();
    c.env_remove("TTP_RULES")
        .env_remove("TTP_DB")
        .env("TTP_LOG", "error");
    c
}

const WHOAMI: &str = "rule_id: T0001\nrule_version: 1\nname: whoami\napplies_to: [command]\n\
match:\n  pattern: '\\bwhoami\\b'\nemits:\n  - tactic: TA0007\n    technique_id: T1033\n    confidence: 0.6\n\
evidence_fields: [command_text]\n";

const WGET: &str = "rule_id: T0002\nrule_version: 1\nname: wget\napplies_to: [command]\n\
match:\n  all:\n    - {field: command_text, contains: [wget, curl], nocase: true}\n    - {field: command_text, regex: 'https?://'}\n\
emits:\n  - {tactic: TA0011, technique_id: T1105, confidence: 0.8}\n  - {tactic: TA0002, technique_id: T1059, sub_technique_id: T1059.004, confidence: 0.2}\n";

const BROKEN: &str = "rule_id: T0003\nrule_version: 1\nname: broken\napplies_to: [command]\n\
match:\n  pattern: '(unclosed'\nemits:\n  - tactic: TA0007\n    technique_id: T1033\n    confidence: 0.6\n";

fn rules_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn event(id: &str, cmd: &str) -> String {
    serde_json::json!({"source_kind":"command","source_id":id,"attacker_uuid":"att-1","payload":{"command_text":cmd}})
        .to_string()
}

#[test]
fn check_reports_located_errors_and_fails() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("sub/b.yaml", BROKEN)]);
    ttp()
        .args(["check", "--rules"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "b.yaml:6:12: error[E008]: invalid regex",
        ))
        .stdout(predicate::str::contains("6 |   pattern: '(unclosed'"))
        .stdout(predicate::str::contains("^"))
        .stdout(predicate::str::contains(
            "2 files, 1 rules loaded, 1 broken files: 1 errors",
        ));
}

#[test]
fn check_passes_on_good_rules_and_speaks_json() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yml", WGET)]);
    ttp()
        .args(["check", "--rules"])
        .arg(dir.path())
        .assert()
        .success();
    let out = ttp()
        .args(["check", "--format", "json", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules_loaded"], 2);
    assert_eq!(v["errors"], 0);
}

#[test]
fn duplicate_rule_ids_name_both_files() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yaml", WHOAMI)]);
    ttp()
        .args(["check", "--rules"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("b.yaml:1:10: error[E007]"))
        .stdout(predicate::str::contains("a.yaml"));
}

#[test]
fn strict_turns_unknown_keys_into_errors() {
    let dir = rules_dir(&[("a.yaml", &format!("{WHOAMI}colour: blue\n"))]);
    ttp()
        .args(["check", "--rules"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "warning[W101]: unknown key `colour`",
        ));
    ttp()
        .args(["check", "--strict", "--rules"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("error[E015]"));
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn tag_loads_good_rules_rejects_bad_lines_and_is_idempotent() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yaml", WGET), ("c.yaml", BROKEN)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("tags.db");
    let events = [
        event("e1", "whoami"),
        "not json".to_string(),
        event("e2", "WGET http://x.example/a.sh"),
        r#"{"source_kind":"command","source_id":"e3","payload":{"command_text":"whoami"}}"#
            .to_string(),
        event("e4", "ls"),
    ]
    .join("\n");
    let first = ttp()
        .args(["tag", "--emit-tags", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin(events.clone())
        .assert()
        .success()
        .stderr(predicate::str::contains("c.yaml:6:12: error[E008]"))
        .stderr(predicate::str::contains(
            "events: 5 read, 2 rejected (invalid_json: 1, no_anchor: 1)",
        ))
        .stderr(predicate::str::contains("line 2: invalid_json"))
        .stderr(predicate::str::contains("line 4: no_anchor"))
        .stderr(predicate::str::contains(
            "tags: 3 emitted, 2 new, 0 already present, 1 below the floor 0.3",
        ))
        .stderr(predicate::str::contains("rules: 2 loaded, 1 broken"));
    let stdout = String::from_utf8(first.get_output().stdout.clone()).unwrap();
    let tags: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0]["rule_id"], "T0001");
    assert_eq!(tags[0]["evidence"]["command_text"], "whoami");
    assert_eq!(tags[1]["technique_id"], "T1105");
    assert_eq!(count(&db, "SELECT count(*) FROM ttp_tag"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE length(rule_sha256) = 64"
        ),
        2
    );
    assert_eq!(
        count(&db, "PRAGMA user_version"),
        ttp_engine::store::SCHEMA_VERSION
    );

    // A second run inserts nothing and prints nothing.
    ttp()
        .args(["tag", "--emit-tags", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin(events)
        .assert()
        .success()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "3 emitted, 0 new, 2 already present",
        ));
}

#[test]
fn tag_reads_defaults_from_the_environment_and_honours_the_floor() {
    let dir = rules_dir(&[("b.yaml", WGET)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("env.db");
    let events_file = work.path().join("events.jsonl");
    fs::write(&events_file, event("e1", "curl https://x.example/a")).unwrap();
    ttp()
        .env("TTP_RULES", dir.path())
        .env("TTP_DB", &db)
        .args(["tag", "--floor", "0.1", "--events"])
        .arg(&events_file)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 emitted, 2 new"));
    assert_eq!(
        count(&db, "SELECT count(*) FROM ttp_tag WHERE confidence = 0.2"),
        1
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_a_clear_error() {
    let dir = rules_dir(&[("a.yaml", WHOAMI)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("junk.db");
    fs::write(&db, vec![b'x'; 4096]).unwrap();
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin(event("e1", "whoami"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not an SQLite database"))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let dir = rules_dir(&[("a.yaml", WHOAMI)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("locked.db");
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin("")
        .assert()
        .success();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .execute_batch("PRAGMA journal_mode=DELETE; BEGIN EXCLUSIVE;")
        .unwrap();
    ttp()
        .args(["tag", "--lock-timeout-ms", "200", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin(event("e1", "whoami"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("locked by another process"));
    holder.execute_batch("COMMIT").unwrap();
}

#[test]
fn a_read_only_database_is_a_clear_error() {
    let dir = rules_dir(&[("a.yaml", WHOAMI)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("ro.db");
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin("")
        .assert()
        .success();
    // Open it read-only through SQLite's URI so the test also holds as root.
    let uri = format!("file:{}?mode=ro", db.display());
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&uri)
        .write_stdin(event("e1", "whoami"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("read-only"));
}

#[test]
fn help_explains_every_flag() {
    ttp()
        .args(["tag", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--floor"))
        .stdout(predicate::str::contains("--emit-tags"))
        .stdout(predicate::str::contains("TTP_DB"))
        .stdout(predicate::str::contains("TTP_RULES"));
    ttp()
        .args(["check", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--strict"));
}

#[test]
fn tags_lists_what_tag_stored() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yaml", WGET)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("q.db");
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin([event("e1", "whoami"), event("e2", "curl http://x/a")].join("\n"))
        .assert()
        .success();
    ttp()
        .args(["tags", "--db"])
        .arg(&db)
        .assert()
        .success()
        .stdout(predicate::str::contains("T1033"))
        .stdout(predicate::str::contains("T1105"));
    let out = ttp()
        .args(["tags", "--format", "ndjson", "--technique", "T1033", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["source_id"], "e1");
    assert_eq!(lines[0]["evidence"]["command_text"], "whoami");
    ttp()
        .args(["tags", "--db"])
        .arg(work.path().join("missing.db"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such database"));
}

#[test]
fn test_command_reports_failing_examples_by_rule_and_line() {
    let good = format!(
        "{WHOAMI}examples:\n  match:\n    - {{command_text: whoami}}\n  no_match:\n    - {{command_text: ls}}\n"
    );
    let dir = rules_dir(&[("a.yaml", &good)]);
    ttp()
        .args(["test", "--strict", "--rules"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1 rules, 2 examples, 0 benign events: 0 failures",
        ));
    let bad = good.replace("{command_text: ls}", "{command_text: 'sudo whoami'}");
    let dir = rules_dir(&[("a.yaml", &bad)]);
    ttp()
        .args(["test", "--rules"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "a.yaml:16: T0001: the `no_match` example fired the rule",
        ));
    let bare = rules_dir(&[("a.yaml", WHOAMI)]);
    ttp()
        .args(["test", "--rules"])
        .arg(bare.path())
        .assert()
        .success();
    ttp()
        .args(["test", "--strict", "--rules"])
        .arg(bare.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("T0001: the rule has no examples"));
}

#[test]
fn every_rule_version_is_kept_and_a_text_change_without_a_version_bump_warns() {
    let dir = rules_dir(&[("a.yaml", WHOAMI)]);
    let work = TempDir::new().unwrap();
    let db = work.path().join("v.db");
    let run = || {
        let mut c = ttp();
        c.env("TTP_LOG", "warn")
            .args(["tag", "--rules"])
            .arg(dir.path())
            .arg("--db")
            .arg(&db)
            .write_stdin(event("e1", "whoami"));
        c
    };
    run()
        .assert()
        .success()
        .stderr(predicate::str::contains("rule_version is still").not());
    fs::write(
        dir.path().join("a.yaml"),
        WHOAMI.replace("confidence: 0.6", "confidence: 0.7"),
    )
    .unwrap();
    run().assert().success().stderr(predicate::str::contains(
        "the text of rule T0001 changed but rule_version is still 1",
    ));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_rule_version WHERE rule_id = 'T0001'"
        ),
        2
    );
    // Every tag's rule_sha256 resolves to the exact text that produced it.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag t JOIN ttp_rule_version v ON v.sha256 = t.rule_sha256"
        ),
        count(&db, "SELECT count(*) FROM ttp_tag")
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_rule_event WHERE action = 'updated'"
        ),
        1
    );
}

#[test]
fn bench_reports_throughput_latency_costs_and_scaling() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yaml", WGET)]);
    let work = TempDir::new().unwrap();
    let events = work.path().join("e.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| {
            event(
                &format!("b{i}"),
                if i % 2 == 0 { "whoami" } else { "ls -la" },
            )
        })
        .collect();
    fs::write(&events, lines.join("\n")).unwrap();
    let out = ttp()
        .args([
            "bench",
            "--repeat",
            "2",
            "--threads",
            "2",
            "--format",
            "json",
            "--rules",
        ])
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["events"], 200);
    assert_eq!(r["rules"], 2);
    assert!(r["matching"]["events_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["matching"]["tags_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["with_sqlite"]["events_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["scaling"].as_array().unwrap().len(), 2);
    let costs = r["rule_costs"].as_array().unwrap();
    assert!(costs.iter().any(|c| c["rule_id"] == "T0001"), "{costs:?}");
    // The prefilter skips the curl/wget rule for events without those words.
    assert!(r["rules_evaluated_per_event"].as_f64().unwrap() < 2.0);
}

/// `ttp bench --grow N`: N batches of the same events into one file, each
/// as new tags; the rate and size of each batch.
#[test]
fn bench_grow_stores_each_batch_as_new_tags() {
    let dir = rules_dir(&[("a.yaml", WHOAMI), ("b.yaml", WGET)]);
    let work = TempDir::new().unwrap();
    let events = work.path().join("e.jsonl");
    let lines: Vec<String> = (0..100)
        .map(|i| event(&format!("g{i}"), "whoami"))
        .collect();
    fs::write(&events, lines.join("\n")).unwrap();
    let db = work.path().join("grow.db");
    let out = ttp()
        .args(["bench", "--grow", "3", "--format", "json", "--rules"])
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = r.as_array().unwrap();
    assert_eq!(batches.len(), 3);
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b["batch"], i + 1);
        assert_eq!(b["new_tags"], 100, "{b}");
        assert_eq!(b["tags_before"], 100 * i, "{b}");
        assert!(b["tags_per_s"].as_f64().unwrap() > 0.0);
        assert!(b["file_bytes"].as_u64().unwrap() > 0);
    }
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 300);
    // The table form ends with the ratio of the last batch to the first.
    let out = ttp()
        .args(["bench", "--grow", "2", "--rules"])
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("last batch / first batch:"), "{text}");
    // --grow does not mix with the usual measurements.
    let out = ttp()
        .args(["bench", "--grow", "2", "--repeat", "2", "--rules"])
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `\w{1000}` is small over ASCII and too large to build over Unicode. The
/// full-Unicode program is usually built on first need, but one that may be
/// large is built at load, so the pattern is reported by `ttp check` and
/// refused by `ttp tag` with its location.
const HUGE_UNICODE: &str = "rule_id: T0009\nrule_version: 1\nname: huge\napplies_to: [command]\n\
match:\n  pattern: '\\w{1000}|xyz'\nemits:\n  - {tactic: TA0002, technique_id: T1059, confidence: 0.5}\n";

#[test]
fn a_pattern_too_large_for_unicode_text_is_reported_at_load() {
    let dir = rules_dir(&[("huge.yaml", HUGE_UNICODE), ("a.yaml", WHOAMI)]);
    let located = "huge.yaml:6:12: error[E008]: invalid regex: the pattern is too large";
    ttp()
        .args(["check", "--rules"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(located));
    let work = TempDir::new().unwrap();
    let db = work.path().join("tags.db");
    ttp()
        .args(["tag", "--rules"])
        .arg(dir.path())
        .arg("--db")
        .arg(&db)
        .write_stdin([event("e1", "xyz"), event("e2", "whoami")].join("\n"))
        .assert()
        .success()
        .stderr(predicate::str::contains(located))
        .stderr(predicate::str::contains("rules: 1 loaded, 1 broken"))
        .stderr(predicate::str::contains("tags: 1 emitted, 1 new"));
}

#[test]
fn tag_applies_the_operators_rule_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = TempDir::new().unwrap();
    let db = work.path().join("tags.db");
    let tag = || {
        ttp()
            .args(["tag", "--rules"])
            .arg(root.join("rules"))
            .arg("--db")
            .arg(&db)
            .arg("--events")
            .arg(root.join("examples/events.jsonl"))
            .assert()
            .success()
    };
    // Creates the file, then the operators turn one rule off and clip another.
    let first = tag();
    first.stderr(predicate::str::contains("0 disabled, 0 clipped"));
    let confidence = |rule: &str| -> Vec<f64> {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT confidence FROM ttp_tag WHERE rule_id = ?1")
            .unwrap();
        stmt.query_map([rule], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!confidence("TTP-1002").is_empty());
    assert!(confidence("TTP-1001").iter().any(|c| *c > 0.35));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM ttp_tag")
        .unwrap();
    for args in [
        &["rule", "disable", "TTP-1002"][..],
        &["rule", "clip", "TTP-1001", "--max", "0.35"][..],
    ] {
        ttp().args(args).arg("--db").arg(&db).assert().success();
    }
    tag().stderr(predicate::str::contains(
        "1 disabled, 1 clipped (operator state)",
    ));
    assert!(confidence("TTP-1002").is_empty(), "a disabled rule tagged");
    let clipped = confidence("TTP-1001");
    assert!(!clipped.is_empty());
    assert!(clipped.iter().all(|c| *c == 0.35), "{clipped:?}");
}

#[test]
fn regex_step_limit_and_max_line_bytes_are_settable() {
    // A look-ahead needs the backtracking engine (deviation 3: a step limit).
    const LOOKAHEAD: &str = "rule_id: T0009\nrule_version: 1\nname: la\napplies_to: [command]\n\
match:\n  pattern: '(?=.*q)(?:x|xx)+y|q'\nemits:\n  - tactic: TA0007\n    technique_id: T1033\n    confidence: 0.6\n";
    let dir = rules_dir(&[("a.yaml", LOOKAHEAD)]);
    let work = TempDir::new().unwrap();
    let events = format!("{}\n", event("e1", &format!("{}q", "x".repeat(20))));
    let run = |extra: &[&str], db: &str| {
        ttp()
            .args(["tag", "--rules"])
            .arg(dir.path())
            .arg("--db")
            .arg(work.path().join(db))
            .args(extra)
            .write_stdin(events.clone())
            .assert()
            .success()
    };
    run(&[], "a.db")
        .stderr(predicate::str::contains("tags: 1 emitted"))
        .stderr(predicate::str::contains("searches abandoned").not());
    run(&["--regex-step-limit", "3"], "b.db")
        .stderr(predicate::str::contains("tags: 0 emitted"))
        .stderr(predicate::str::contains("regex: 1 searches abandoned"));
    run(&["--max-line-bytes", "50"], "c.db")
        .stderr(predicate::str::contains("line_too_long: 1"))
        .stderr(predicate::str::contains("line longer than 50 bytes"));
}
