//! Durable correlation windows through the real binary: `ttp run` following
//! a real events file into a real SQLite file, killed with SIGKILL mid-window
//! and restarted; a hot reload that keeps (or resets) a rule's windows;
//! `--max-groups` eviction counted in the summary.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

fn guessing(version: u32, name: &str, window: &str) -> String {
    format!(
        "rule_id: TTP-C001
rule_version: {version}
name: {name}
applies_to: [auth_attempt]
correlate:
  type: event_count
  match: {{all: [{{field: success, equals: false}}]}}
  group_by: [attacker_uuid]
  window: {window}
  condition: {{gte: 10}}
emits: [{{tactic: TA0006, technique_id: T1110, sub_technique_id: T1110.001, confidence: 0.8}}]
"
    )
}

/// A failed attempt of `attacker`, `seconds` after 08:00.
fn failure(attacker: &str, i: usize, seconds: usize) -> String {
    format!(
        "{}\n",
        serde_json::json!({
            "source_kind": "auth_attempt", "source_id": format!("{attacker}-{i}"),
            "attacker_uuid": attacker,
            "payload": {"success": false, "username": "root",
                        "ts": format!("2026-11-20T08:{:02}:{:02}Z", seconds / 60, seconds % 60)},
        })
    )
}

fn append(path: &Path, text: &str) {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

struct Run {
    child: Child,
    log: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn start(rules: &Path, db: &Path, events: &Path, log: PathBuf) -> Run {
        let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
            .args([
                "run",
                "--debounce-ms",
                "10",
                "--checkpoint-secs",
                "0.2",
                "--rules",
            ])
            .arg(rules)
            .arg("--db")
            .arg(db)
            .arg("--events")
            .arg(events)
            .env("TTP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Run { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `query` (one integer) on `db` gives `want`.
    fn wait(&self, db: &Path, query: &str, want: i64, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if scalar(db, query) == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last: {:?}); daemon log:\n{}",
                scalar(db, query),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{text}` in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then the exit status and the log.
    fn stop(mut self) -> (Option<i32>, String) {
        Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        (status.code(), self.log())
    }
}

fn scalar(db: &Path, query: &str) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(query, [], |r| r.get(0)).ok()
}

/// The newest saved window of att-1 (the table is a log: the last row of
/// the group after the rule's last reset).
const LATEST: &str =
    "FROM ttp_correlation_window WHERE rule_id = 'TTP-C001' AND group_key = 'att-1' \
     AND seq > COALESCE((SELECT max(seq) FROM ttp_correlation_window \
     WHERE rule_id = 'TTP-C001' AND group_key IS NULL), 0) ORDER BY seq DESC LIMIT 1";

fn latest(what: &str) -> String {
    format!("SELECT {what} {LATEST}")
}

const ENTRIES: &str = "json_array_length(state, '$.entries')";
const CORRELATION_TAGS: &str = "SELECT count(*) FROM ttp_tag WHERE source_kind = 'correlation'";

#[test]
fn a_kill_9_mid_window_resumes_the_window_and_fires_exactly_once() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("c001.yaml"), guessing(1, "guessing", "5m")).unwrap();
    let (db, events) = (work.path().join("t.db"), work.path().join("events.jsonl"));
    // Six failures, committed (with the window) before the kill.
    for i in 0..6 {
        append(&events, &failure("att-1", i, i * 20));
    }
    let mut run = Run::start(&rules, &db, &events, work.path().join("run1.log"));
    run.wait(&db, &latest(ENTRIES), 6, "six failures in the saved window");
    run.child.kill().unwrap(); // SIGKILL: no shutdown of any kind
    run.child.wait().unwrap();
    drop(run);
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(0));
    // Four more while it is down: with the six counted before, ten.
    for i in 6..10 {
        append(&events, &failure("att-1", i, i * 20));
    }
    let run = Run::start(&rules, &db, &events, work.path().join("run2.log"));
    run.wait(&db, CORRELATION_TAGS, 1, "the correlation tag");
    // The window restarted where it stood: its evidence lists all ten.
    let count = scalar(
        &db,
        "SELECT json_extract(evidence, '$.count') FROM ttp_tag WHERE source_kind = 'correlation'",
    );
    assert_eq!(count, Some(10));
    // Absorbed by the fired episode: more failures make no second tag.
    for i in 10..13 {
        append(&events, &failure("att-1", i, i * 20));
    }
    run.wait(
        &db,
        &latest("json_extract(state, '$.newest')"),
        1_795_161_840_000,
        "the absorbed failures counted into the saved window",
    );
    let (code, log) = run.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("correlation windows restored"), "{log}");
    assert!(log.contains("groups held (1 restored"), "{log}");
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(1));

    // A third start, with the whole file already read: nothing new.
    let run = Run::start(&rules, &db, &events, work.path().join("run3.log"));
    run.wait_log("correlation windows restored");
    let (code, log) = run.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(1), "{log}");
}

fn atomic_save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_reload_keeps_windows_unless_the_correlation_changed_and_says_so() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    let rule = rules.join("c001.yaml");
    fs::write(&rule, guessing(1, "guessing", "5m")).unwrap();
    let (db, events) = (work.path().join("t.db"), work.path().join("events.jsonl"));
    for i in 0..5 {
        append(&events, &failure("att-1", i, i * 20));
    }
    let run = Run::start(&rules, &db, &events, work.path().join("run.log"));
    run.wait(&db, &latest(ENTRIES), 5, "five failures counted");
    // A new name and version: the five stay counted.
    atomic_save(&rule, &guessing(2, "ssh password guessing", "5m"));
    run.wait(
        &db,
        "SELECT rule_version FROM ttp_rule WHERE rule_id = 'TTP-C001'",
        2,
        "version 2 loaded",
    );
    for i in 5..10 {
        append(&events, &failure("att-1", i, i * 20));
    }
    run.wait(&db, CORRELATION_TAGS, 1, "the tag of ten failures");
    assert_eq!(
        scalar(
            &db,
            "SELECT rule_version FROM ttp_tag WHERE source_kind = 'correlation'"
        ),
        Some(2)
    );
    // Another window: the saved windows are dropped, and the audit log
    // says so.
    atomic_save(&rule, &guessing(3, "ssh password guessing", "10m"));
    run.wait(
        &db,
        "SELECT count(*) FROM ttp_rule_event WHERE rule_id = 'TTP-C001' AND action = 'state' \
         AND detail LIKE 'correlation windows reset (1 groups dropped): the rule''s correlate block changed%'",
        1,
        "the reset in the audit log",
    );
    run.wait(
        &db,
        "SELECT count(*) FROM ttp_correlation_window WHERE rule_id = 'TTP-C001' AND group_key IS NULL",
        1,
        "the saved windows dropped",
    );
    // Counting starts over: nine more are not enough.
    for i in 10..19 {
        append(&events, &failure("att-1", i, 400 + i * 20));
    }
    run.wait(&db, &latest(ENTRIES), 9, "nine failures counted afresh");
    let (code, log) = run.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(1), "{log}");
}

/// `ttp tag` of `input` (JSON lines on stdin); its stderr (the summary).
fn ttp_tag(rules: &Path, db: &Path, input: &str, extra: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["tag", "--events", "-", "--rules"])
        .arg(rules)
        .arg("--db")
        .arg(db)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn max_groups_and_event_time_field_on_the_command_line() {
    let work = tempfile::TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("c001.yaml"), guessing(1, "guessing", "5m")).unwrap();
    let db = work.path().join("t.db");
    // Five attackers, ten failures each, interleaved: with room for two
    // groups, every group is evicted before it reaches ten.
    let mut input = String::new();
    for i in 0..10 {
        for a in 0..5 {
            input.push_str(&failure(&format!("att-{a}"), i, i * 20));
        }
    }
    let run = |extra: &[&str]| ttp_tag(&rules, &db, &input, extra);
    let bounded = run(&["--max-groups", "2"]);
    assert!(
        bounded.contains(
            "correlation: 1 rules, 50 events counted, 0 fired, 2 groups held, 48 evicted (--max-groups)"
        ),
        "{bounded}"
    );
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(0));
    let unbounded = run(&[]);
    assert!(
        unbounded.contains("50 events counted, 5 fired, 5 groups held, 0 evicted"),
        "{unbounded}"
    );
    assert_eq!(scalar(&db, CORRELATION_TAGS), Some(5));
    // The events' time from another field: `meta.when` spreads the same
    // fifty failures over fifty minutes, so no five minutes hold ten.
    let db2 = work.path().join("t2.db");
    let mut spread = String::new();
    for i in 0..50 {
        let mut line: serde_json::Value =
            serde_json::from_str(failure("att-9", i, 0).trim()).unwrap();
        line["payload"]["meta"] = serde_json::json!({"when": 1_795_161_600 + i * 60});
        spread.push_str(&format!("{line}\n"));
    }
    let tag_spread = |db: &Path, extra: &[&str]| ttp_tag(&rules, db, &spread, extra);
    tag_spread(&db2, &["--event-time-field", "meta.when"]);
    assert_eq!(scalar(&db2, CORRELATION_TAGS), Some(0));
    // By default `ts` (the same second for all fifty) is their time.
    tag_spread(&db2, &[]);
    assert_eq!(scalar(&db2, CORRELATION_TAGS), Some(1));
    let out = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["tag", "--event-time-field", ""])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--event-time-field must name a payload field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Zero is refused by the command line.
    let out = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["tag", "--max-groups", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
