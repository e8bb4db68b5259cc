//! `ttp run` end to end: the real binary, real rule files edited the way
//! editors and git do it, a real SQLite file.
//!
//! Nothing here asserts on timing. Each test waits (with a generous bound)
//! for an observable outcome: a probe event tagged (or not) by a rule.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(20);

/// A rule matching every `command` event whose text contains `probe`.
fn rule(id: &str, technique: &str, version: u32) -> String {
    format!(
        "rule_id: {id}\nrule_version: {version}\nname: {id}\napplies_to: [command]\n\
         match: {{field: command_text, contains: probe}}\n\
         emits: [{{tactic: TA0002, technique_id: {technique}, confidence: 0.5}}]\n"
    )
}

/// The marker rule stays put in every test: it proves a probe was processed.
const MARKER: &str = "rule_id: MARK\nrule_version: 1\nname: marker\napplies_to: [command]\n\
    match: {field: command_text, contains: probe}\n\
    emits: [{tactic: TA0007, technique_id: T1033, confidence: 0.5}]\n";

struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
    db: PathBuf,
    next_probe: u64,
    stderr: PathBuf,
}

fn start(rules: &Path, db: &Path, work: &Path) -> Daemon {
    let stderr = work.join(format!("stderr-{}.log", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args([
            "run",
            "--debounce-ms",
            "10",
            "--rescan-secs",
            "3600",
            "--rules",
        ])
        .arg(rules)
        .arg("--db")
        .arg(db)
        .env("TTP_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        stdin: None,
        child,
        db: db.to_path_buf(),
        next_probe: 0,
        stderr,
    };
    d.stdin = d.child.stdin.take();
    // Ready once a probe is tagged by the marker rule.
    d.wait_for(
        |tags| tags.iter().any(|t| t.0 == "MARK"),
        "the daemon to start",
    );
    d
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave a daemon behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn send(&mut self, source_id: &str, text: &str) {
        let line = serde_json::json!({"source_kind":"command","source_id":source_id,"attacker_uuid":"att","payload":{"command_text":text}});
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Tags of one event: (rule_id, technique_id).
    fn tags_of(&self, source_id: &str) -> Vec<(String, String)> {
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return Vec::new();
        };
        let Ok(mut stmt) = conn.prepare(
            "SELECT rule_id, technique_id FROM ttp_tag WHERE source_id = ?1 ORDER BY rule_id",
        ) else {
            return Vec::new();
        };
        stmt.query_map([source_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    /// Sends probes until one, once processed (the marker fired), satisfies
    /// `ok`. Panics after [`PATIENCE`].
    fn wait_for(
        &mut self,
        ok: impl Fn(&[(String, String)]) -> bool,
        what: &str,
    ) -> Vec<(String, String)> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            self.next_probe += 1;
            let id = format!("probe-{}", self.next_probe);
            self.send(&id, "probe");
            let processed_by = Instant::now() + Duration::from_secs(5);
            loop {
                let tags = self.tags_of(&id);
                if tags.iter().any(|t| t.0 == "MARK") {
                    if ok(&tags) {
                        return tags;
                    }
                    break;
                }
                if Instant::now() > processed_by {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!(
            "timed out waiting for {what}; daemon log:\n{}",
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }

    fn fires(&mut self, rule: &str, technique: &str) {
        let (r, t) = (rule.to_string(), technique.to_string());
        self.wait_for(
            move |tags| tags.iter().any(|x| x.0 == r && x.1 == t),
            &format!("{rule} to emit {technique}"),
        );
    }

    fn silent(&mut self, rule: &str) {
        let r = rule.to_string();
        self.wait_for(
            move |tags| !tags.iter().any(|x| x.0 == r),
            &format!("{rule} to stop firing"),
        );
    }

    fn stop(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        (
            status.code().unwrap_or(-1),
            fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    fn ttp(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ttp"))
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .output()
            .unwrap()
    }
}

fn setup() -> (TempDir, PathBuf, PathBuf) {
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("marker.yaml"), MARKER).unwrap();
    let db = work.path().join("tags.db");
    (work, rules, db)
}

/// Writes a file the way `sed -i`, vim (writebackup) and most editors save:
/// a temporary file in the same directory renamed over the original.
fn atomic_save(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_str().unwrap()
    ));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn every_save_pattern_is_picked_up() {
    let (work, rules, db) = setup();
    let a = rules.join("a.yaml");
    fs::write(&a, rule("A", "T1059", 1)).unwrap();
    let mut d = start(&rules, &db, work.path());
    d.fires("A", "T1059");

    // In-place write.
    fs::write(&a, rule("A", "T1105", 2)).unwrap();
    d.fires("A", "T1105");

    // Write to a temporary file, then rename over (sed -i, most editors).
    atomic_save(&a, &rule("A", "T1027", 3));
    d.fires("A", "T1027");

    // Vim's default: probe file 4913, move the original to a backup, write
    // a new file, delete the backup.
    fs::write(rules.join("4913"), "").unwrap();
    fs::remove_file(rules.join("4913")).unwrap();
    fs::rename(&a, rules.join("a.yaml~")).unwrap();
    fs::write(&a, rule("A", "T1082", 4)).unwrap();
    fs::remove_file(rules.join("a.yaml~")).unwrap();
    d.fires("A", "T1082");

    // Create and delete.
    let b = rules.join("b.yml");
    fs::write(&b, rule("B", "T1046", 1)).unwrap();
    d.fires("B", "T1046");
    fs::remove_file(&b).unwrap();
    d.silent("B");

    // Rename within the tree (same rule id, new path).
    fs::rename(&a, rules.join("renamed.yaml")).unwrap();
    d.fires("A", "T1082");

    // Moved in from outside, and out again.
    let outside = work.path().join("c.yaml");
    fs::write(&outside, rule("C", "T1016", 1)).unwrap();
    fs::rename(&outside, rules.join("c.yaml")).unwrap();
    d.fires("C", "T1016");
    fs::rename(rules.join("c.yaml"), &outside).unwrap();
    d.silent("C");

    // A subdirectory created with a rule in it, then removed.
    let sub = rules.join("sub/deeper");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("d.yaml"), rule("D", "T1049", 1)).unwrap();
    d.fires("D", "T1049");
    fs::remove_dir_all(rules.join("sub")).unwrap();
    d.silent("D");

    // A git checkout: many files change at once.
    for i in 0..25 {
        fs::write(
            rules.join(format!("g{i:02}.yaml")),
            rule(&format!("G{i:02}"), "T1057", 1),
        )
        .unwrap();
    }
    d.fires("G24", "T1057");
    d.fires("G00", "T1057");
    for i in 0..25 {
        atomic_save(
            &rules.join(format!("g{i:02}.yaml")),
            &rule(&format!("G{i:02}"), "T1083", 2),
        );
    }
    d.wait_for(
        |tags| {
            tags.iter()
                .filter(|t| t.0.starts_with('G') && t.1 == "T1083")
                .count()
                == 25
        },
        "all 25 checked-out rules to be new",
    );

    // Editor leftovers never load.
    fs::write(rules.join(".a.yaml.swp"), "garbage: [").unwrap();
    fs::write(rules.join("x.yaml~"), rule("BACKUP", "T1057", 1)).unwrap();
    d.silent("BACKUP");

    // The watched directory itself replaced.
    let fresh = work.path().join("rules.new");
    fs::create_dir_all(&fresh).unwrap();
    fs::write(fresh.join("marker.yaml"), MARKER).unwrap();
    fs::write(fresh.join("e.yaml"), rule("E", "T1135", 1)).unwrap();
    fs::rename(&rules, work.path().join("rules.old")).unwrap();
    fs::rename(&fresh, &rules).unwrap();
    d.fires("E", "T1135");
    d.silent("A");
    // ... and still watched after the swap.
    fs::write(rules.join("e.yaml"), rule("E", "T1482", 2)).unwrap();
    d.fires("E", "T1482");

    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("from change to swap"),
        "reloads are logged with their latency:\n{log}"
    );
}

#[test]
fn a_bad_edit_keeps_the_old_version_and_the_fix_clears_the_error() {
    let (work, rules, db) = setup();
    let a = rules.join("a.yaml");
    fs::write(&a, rule("A", "T1059", 1)).unwrap();
    let mut d = start(&rules, &db, work.path());
    d.fires("A", "T1059");
    fs::write(&a, "rule_id: A\nrule_version: 2\nname: broken\napplies_to: [command]\nmatch: {pattern: '(unclosed'}\nemits: []\n").unwrap();
    // The error reaches the audit log; the old version keeps serving.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = d.ttp(&["rule", "list"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("a.yaml:5:18: error[E008]") {
            assert!(text.contains("version 1 keeps serving"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rejection never showed up:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.fires("A", "T1059");
    fs::write(&a, rule("A", "T1105", 2)).unwrap();
    d.fires("A", "T1105");
    let out = d.ttp(&["rule", "list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let a_row = rows.iter().find(|r| r["rule_id"] == "A").unwrap();
    assert_eq!(a_row["last_error"], serde_json::Value::Null, "{rows:?}");
    assert_eq!(a_row["rule_version"], 2);
    let show = d.ttp(&["rule", "show", "A"]);
    let text = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(text.contains("technique_id: T1105"), "{text}");
    assert_eq!(
        text.matches("#   version ").count(),
        2,
        "both versions are kept:\n{text}"
    );
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("error[E008]"), "{log}");
}

#[test]
fn duplicate_rule_ids_keep_the_loaded_rule() {
    let (work, rules, db) = setup();
    fs::write(rules.join("b.yaml"), rule("X", "T1059", 1)).unwrap();
    let mut d = start(&rules, &db, work.path());
    d.fires("X", "T1059");
    fs::write(rules.join("a.yaml"), rule("X", "T1105", 1)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&d.ttp(&["rule", "list"]).stdout).to_string();
        if text.contains("error[E007]") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.fires("X", "T1059");
    fs::remove_file(rules.join("b.yaml")).unwrap();
    d.fires("X", "T1105");
    assert_eq!(d.stop().0, 0);
}

#[test]
fn operator_state_applies_live_and_survives_a_restart() {
    let (work, rules, db) = setup();
    fs::write(rules.join("a.yaml"), rule("A", "T1059", 1)).unwrap();
    let mut d = start(&rules, &db, work.path());
    d.fires("A", "T1059");
    let out = d.ttp(&["rule", "disable", "A", "--reason", "noisy"]);
    assert!(out.status.success(), "{out:?}");
    d.silent("A");
    let (code, _) = d.stop();
    assert_eq!(code, 0);

    let mut d = start(&rules, &db, work.path());
    d.silent("A");
    let text = String::from_utf8_lossy(&d.ttp(&["rule", "list"]).stdout).to_string();
    assert!(text.contains("disabled"), "{text}");
    assert!(d
        .ttp(&["rule", "clip", "A", "--max", "0.35"])
        .status
        .success());
    let db2 = db.clone();
    d.wait_for(
        move |tags| {
            tags.iter().any(|t| t.0 == "A") && {
                let conn = rusqlite::Connection::open(&db2).unwrap();
                conn.query_row("SELECT max(confidence) FROM ttp_tag WHERE rule_id = 'A' AND source_id = (SELECT max(source_id) FROM ttp_tag WHERE rule_id = 'A')", [], |r| r.get::<_, f64>(0)).unwrap() == 0.35
            }
        },
        "the clip to apply",
    );
    // A state for a while: once it expires, the rule is enabled again and
    // the expiry is in the audit log.
    assert!(d
        .ttp(&["rule", "disable", "A", "--for", "1s"])
        .status
        .success());
    d.silent("A");
    d.fires("A", "T1059");
    let show = String::from_utf8_lossy(&d.ttp(&["rule", "show", "A"]).stdout).to_string();
    assert!(show.contains("expired; enabled again"), "{show}");
    assert!(d.ttp(&["rule", "enable", "A"]).status.success());
    assert!(
        !d.ttp(&["rule", "disable", "NOPE"]).status.success(),
        "unknown rules are refused"
    );
    assert_eq!(d.stop().0, 0);
}

#[test]
fn reload_under_a_steady_stream_loses_nothing_and_never_mixes() {
    let (work, rules, db) = setup();
    fs::write(rules.join("p1.yaml"), rule("P1", "T1001", 1)).unwrap();
    fs::write(rules.join("p2.yaml"), rule("P2", "T1001", 1)).unwrap();
    let mut d = start(&rules, &db, work.path());
    d.fires("P1", "T1001");
    let total = 6000;
    let mut stdin = d.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..total {
            let line = serde_json::json!({"source_kind":"command","source_id":format!("s-{i:05}"),"attacker_uuid":"att","payload":{"command_text":"probe"}});
            writeln!(stdin, "{line}").unwrap();
            if i % 200 == 0 {
                stdin.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        stdin
    });
    // Swap both rules at once (the whole directory), several times, while
    // events flow: old pair emits T1001, new pair T1002.
    for round in 0..6 {
        let tech = if round % 2 == 0 { "T1002" } else { "T1001" };
        let next = work.path().join(format!("rules-{round}"));
        fs::create_dir_all(&next).unwrap();
        fs::write(next.join("marker.yaml"), MARKER).unwrap();
        fs::write(next.join("p1.yaml"), rule("P1", tech, 2 + round)).unwrap();
        fs::write(next.join("p2.yaml"), rule("P2", tech, 2 + round)).unwrap();
        let old = work.path().join(format!("old-{round}"));
        fs::rename(&rules, &old).unwrap();
        fs::rename(&next, &rules).unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    d.stdin = Some(feeder.join().unwrap());
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let events: i64 = conn
        .query_row(
            "SELECT count(DISTINCT source_id) FROM ttp_tag WHERE source_id LIKE 's-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, total as i64, "every event was tagged");
    let mixed: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT source_id FROM ttp_tag WHERE rule_id IN ('P1','P2') AND source_id LIKE 's-%' \
             GROUP BY source_id HAVING count(DISTINCT technique_id) > 1 OR count(*) != 2)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mixed, 0, "no event saw a mix of old and new rules");
    let versions: i64 = conn
        .query_row(
            "SELECT count(DISTINCT technique_id) FROM ttp_tag WHERE rule_id = 'P1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(versions, 2, "both versions served during the run");
}

#[cfg(unix)]
#[test]
fn sigterm_mid_stream_loses_nothing_that_was_read() {
    let (work, rules, db) = setup();
    let mut d = start(&rules, &db, work.path());
    let mut stdin = d.stdin.take().unwrap();
    for i in 0..20_000 {
        let line = serde_json::json!({"source_kind":"command","source_id":format!("t-{i:05}"),"attacker_uuid":"att","payload":{"command_text":"probe"}});
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(d.child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let status = d.wait_exit();
    drop(stdin);
    let log = fs::read_to_string(&d.stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    // The summary says how many events were read; each has its tag.
    let read: i64 = log
        .lines()
        .find_map(|l| l.strip_prefix("events: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary in:\n{log}"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let tagged: i64 = conn
        .query_row(
            "SELECT count(*) FROM ttp_tag WHERE rule_id = 'MARK'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        tagged, read,
        "every event read was tagged and committed:\n{log}"
    );
}

#[test]
fn follows_a_file_through_rotation() {
    let (work, rules, db) = setup();
    let events = work.path().join("events.jsonl");
    let line = |id: &str| {
        format!(
            "{}\n",
            serde_json::json!({"source_kind":"command","source_id":id,"attacker_uuid":"att","payload":{"command_text":"probe"}})
        )
    };
    fs::write(&events, line("f-1")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["run", "--rules"])
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .arg("--events")
        .arg(&events)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        stdin: None,
        db: db.clone(),
        next_probe: 0,
        stderr: work.path().join("none"),
    };
    let count = |id: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM ttp_tag WHERE source_id = ?1",
                    [id],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let wait = |id: &str| {
        let deadline = Instant::now() + PATIENCE;
        while count(id) == 0 {
            assert!(Instant::now() < deadline, "{id} never tagged");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("f-1");
    fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap()
        .write_all(line("f-2").as_bytes())
        .unwrap();
    wait("f-2");
    fs::rename(&events, work.path().join("events.jsonl.1")).unwrap();
    fs::write(&events, line("f-3")).unwrap();
    wait("f-3");
    fs::write(&events, "").unwrap();
    fs::write(&events, line("f-4")).unwrap();
    wait("f-4");
    Command::new("kill")
        .arg("-INT")
        .arg(d.child.id().to_string())
        .status()
        .unwrap();
    assert_eq!(d.wait_exit().code(), Some(0));
}
