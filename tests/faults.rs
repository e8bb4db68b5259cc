//! Fault tests: the real `ttp` binary under the failures a fault-injection
//! run found (issue #10). Each test drives the binary as an operator's
//! supervisor would and checks an observable outcome; none asserts on speed
//! except the idle-CPU bound, which is far above noise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ttp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttp"));
    c.env_remove("TTP_RULES").env_remove("TTP_DB");
    c
}

/// A child that is killed if the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn log_contains(path: &Path, needle: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_sec: u64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    Duration::from_secs_f64(ticks as f64 / per_sec as f64)
}

#[test]
fn an_idle_daemon_uses_no_cpu() {
    let work = TempDir::new().unwrap();
    let events = work.path().join("events.jsonl");
    fs::write(&events, "").unwrap();
    // The shipped pack, copied so that nothing else touches the tree.
    let rules = work.path().join("rules");
    copy_tree(&root().join("rules"), &rules);
    let log = work.path().join("stderr.log");
    let child = ttp()
        .args(["run", "--events"])
        .arg(&events)
        .arg("--rules")
        .arg(&rules)
        .arg("--db")
        .arg(work.path().join("t.db"))
        .env("TTP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Guard(child);
    wait_until("the daemon to start", || {
        log_contains(&log, "watching for changes")
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(d.0.id());
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let used = cpu_time(d.0.id()) - before;
    let share = used.as_secs_f64() / window.as_secs_f64();
    assert!(
        share < 0.05,
        "an idle `ttp run` used {:.0} % of a core ({used:?} in {window:?})",
        share * 100.0
    );
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A rule that fires on every `command` event whose text contains `probe`.
const PROBE_RULE: &str = "rule_id: PROBE\nrule_version: 1\nname: probe\napplies_to: [command]\n\
    match: {field: command_text, contains: probe}\n\
    emits: [{tactic: TA0007, technique_id: T1033, confidence: 0.5}]\n";

fn probe_line(id: usize) -> String {
    format!(
        "{{\"source_kind\":\"command\",\"source_id\":\"e{id}\",\"attacker_uuid\":\"a\",\"payload\":{{\"command_text\":\"probe {id}\"}}}}\n"
    )
}

fn tag_count(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn a_long_lock_is_waited_out_and_nothing_is_lost() {
    use std::io::Write;
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("probe.yaml"), PROBE_RULE).unwrap();
    let db = work.path().join("t.db");
    let log = work.path().join("stderr.log");
    let child = ttp()
        .args(["run", "--lock-timeout-ms", "200", "--rules"])
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Guard(child);
    let mut stdin = d.0.stdin.take().unwrap();
    stdin.write_all(probe_line(0).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until("the first tag", || tag_count(&db) == 1);

    // Another process (a backup, an analyst) holds the write lock for many
    // times the lock timeout while events keep arriving.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 1..=2000 {
            stdin.write_all(probe_line(i).as_bytes()).unwrap();
        }
        stdin.flush().unwrap();
        stdin
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        d.0.try_wait().unwrap().is_none(),
        "the daemon exited while the database was locked:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(tag_count(&db), 1, "nothing can be written under the lock");
    assert!(
        log_contains(&log, "the database is locked by another process"),
        "the wait is not logged:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let stdin = feeder.join().unwrap();
    drop(stdin);
    let status = d.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(tag_count(&db), 2001, "tags were lost");
    assert!(log_contains(&log, "nothing was lost"));
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn probe_daemon(work: &Path, extra: &[&str]) -> (Guard, PathBuf, PathBuf) {
    let rules = work.join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("probe.yaml"), PROBE_RULE).unwrap();
    let db = work.join("t.db");
    let log = work.join("stderr.log");
    let child = ttp()
        .arg("run")
        .args(extra)
        .arg("--rules")
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Guard(child), db, log)
}

/// Writes events to the daemon's stdin as fast as it takes them, until the
/// pipe closes.
fn endless_producer(mut stdin: std::process::ChildStdin) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut block = String::new();
        let mut i = 0;
        loop {
            block.clear();
            for _ in 0..256 {
                i += 1;
                block.push_str(&probe_line(i));
            }
            if stdin.write_all(block.as_bytes()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn sigterm_ends_a_busy_stdin_at_once() {
    let work = TempDir::new().unwrap();
    let (mut d, db, log) = probe_daemon(work.path(), &[]);
    let producer = endless_producer(d.0.stdin.take().unwrap());
    wait_until("tags to be written", || tag_count(&db) > 1000);
    signal(d.0.id(), "TERM");
    let status = wait_exit(&mut d.0, Duration::from_secs(5));
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{log_text}"));
    assert!(status.success(), "{status}: {log_text}");
    producer.join().unwrap();
    // What was read was committed: the summary's count is in the file.
    let summary = log_text;
    let new: i64 = summary
        .split("tags: ")
        .nth(1)
        .and_then(|s| s.split(" new").next())
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary:\n{summary}"));
    assert_eq!(tag_count(&db), new);
}

#[test]
fn a_second_signal_exits_at_once() {
    use std::io::Write;
    let work = TempDir::new().unwrap();
    let (mut d, db, _log) = probe_daemon(work.path(), &["--lock-timeout-ms", "100"]);
    let mut stdin = d.0.stdin.take().unwrap();
    stdin.write_all(probe_line(0).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until("the first tag", || tag_count(&db) == 1);
    // The writer is stuck behind another process's lock: the first SIGTERM
    // waits for it to commit; the second does not.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    stdin.write_all(probe_line(1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(d.0.id(), "TERM");
    assert!(
        wait_exit(&mut d.0, Duration::from_millis(1500)).is_none(),
        "exited with a batch still to commit"
    );
    signal(d.0.id(), "TERM");
    let status =
        wait_exit(&mut d.0, Duration::from_secs(2)).expect("still running after a second SIGTERM");
    assert_eq!(status.code(), Some(130));
    drop(holder);
    drop(stdin);
}

fn run_on_events(work: &Path, events: &Path) -> (Guard, PathBuf, PathBuf) {
    probe_daemon(work, &["--events", events.to_str().unwrap()])
}

#[test]
fn an_events_path_that_cannot_be_read_is_an_error() {
    let work = TempDir::new().unwrap();
    // A directory.
    let dir = work.path().join("events-dir");
    fs::create_dir(&dir).unwrap();
    let (mut d, _, log) = run_on_events(work.path(), &dir);
    let status = wait_exit(&mut d.0, PATIENCE).expect("still running");
    assert!(!status.success());
    assert!(
        log_contains(&log, "is a directory"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    // A path that exists but cannot be opened, even by root: a symlink loop.
    let looped = work.path().join("loop-a");
    std::os::unix::fs::symlink(work.path().join("loop-b"), &looped).unwrap();
    std::os::unix::fs::symlink(&looped, work.path().join("loop-b")).unwrap();
    let work2 = TempDir::new().unwrap();
    let (mut d, _, log) = run_on_events(work2.path(), &looped);
    let status = wait_exit(&mut d.0, PATIENCE).expect("still running");
    assert!(!status.success());
    assert!(
        log_contains(&log, "symbolic links"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn a_followed_file_replaced_by_a_directory_ends_the_run_with_an_error() {
    let work = TempDir::new().unwrap();
    let events = work.path().join("events.jsonl");
    fs::write(&events, probe_line(1)).unwrap();
    let (mut d, db, log) = run_on_events(work.path(), &events);
    wait_until("the first tag", || tag_count(&db) == 1);
    fs::remove_file(&events).unwrap();
    fs::create_dir(&events).unwrap();
    let status = wait_exit(&mut d.0, PATIENCE).expect("still running");
    assert!(!status.success(), "{status}");
    assert!(
        log_contains(&log, "events.jsonl"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    assert_eq!(tag_count(&db), 1);
}

#[test]
fn a_fifo_is_read_as_a_stream_to_its_end() {
    use std::io::Write;
    let work = TempDir::new().unwrap();
    let fifo = work.path().join("events.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (mut d, db, log) = run_on_events(work.path(), &fifo);
    {
        // Opening blocks until the daemon opens its end.
        let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        for i in 0..3 {
            w.write_all(probe_line(i).as_bytes()).unwrap();
        }
    }
    let status = wait_exit(&mut d.0, PATIENCE).expect("still running after the writer closed");
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(!text.contains("ERROR"), "{text}");
    assert_eq!(tag_count(&db), 3);
}

#[test]
fn two_processes_creating_one_database_both_succeed() {
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("probe.yaml"), PROBE_RULE).unwrap();
    for pair in 0..10 {
        let db = work.path().join(format!("fresh-{pair}.db"));
        let children: Vec<Child> = (0..2)
            .map(|i| {
                let events = work.path().join(format!("ev-{pair}-{i}.jsonl"));
                fs::write(&events, probe_line(i)).unwrap();
                ttp()
                    .args(["tag", "--rules"])
                    .arg(&rules)
                    .arg("--db")
                    .arg(&db)
                    .arg("--events")
                    .arg(&events)
                    .env("TTP_LOG", "error")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "pair {pair}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(tag_count(&db), 2, "pair {pair}");
    }
}

/// Runs a command whose stdout is closed before it writes (`… | head` that
/// has already exited).
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = ttp()
        .args(args)
        .env("TTP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let work = TempDir::new().unwrap();
    let db = work.path().join("t.db");
    let out = ttp()
        .args(["tag", "--events"])
        .arg(root().join("examples/events.jsonl"))
        .arg("--rules")
        .arg(root().join("rules"))
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success());
    let db = db.to_str().unwrap();
    for args in [
        &["rule", "list", "--db", db][..],
        &["rule", "list", "--db", db, "--format", "json"][..],
        &["tags", "--db", db][..],
        &["tags", "--db", db, "--format", "json"][..],
        &["check", "--rules", root().join("rules").to_str().unwrap()][..],
    ] {
        let out = with_closed_stdout(args);
        assert!(
            out.status.success(),
            "{args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let work = TempDir::new().unwrap();
    let run = |extra: &[&str], env: Option<(&str, &str)>| {
        let mut c = ttp();
        c.args(["run", "--events", "-", "--rules"])
            .arg(root().join("rules"))
            .arg("--db")
            .arg(work.path().join("t.db"))
            .args(extra)
            .env("TTP_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(!run(&[], None).contains('\x1b'));
    assert!(!run(&["--color", "never"], None).contains('\x1b'));
    let forced = run(&["--color", "always"], None);
    assert!(forced.contains("\x1b["), "{forced}");
    assert!(!run(&["--color", "auto"], Some(("NO_COLOR", "1"))).contains('\x1b'));
}

#[test]
fn control_characters_never_reach_the_terminal_raw() {
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    // A file name and a rule file holding an ESC sequence; an event whose
    // source_id would retitle the terminal and forge a line.
    fs::write(rules.join("evil\x1b]0;owned\x07.yaml"), PROBE_RULE).unwrap();
    fs::write(
        rules.join("broken.yaml"),
        "rule_id: B\nrule_version: 1\nname: \"x\x1b[2J\"\nbad_key\x1b[31m: 1\n",
    )
    .unwrap();
    let db = work.path().join("t.db");
    let sid = "a\x1b]0;owned\x07\nFAKE: injected";
    let event = serde_json::json!({"source_kind":"command","source_id":sid,"attacker_uuid":"a","payload":{"command_text":"probe"}});
    let tag = ttp()
        .args(["tag", "--rules"])
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut tag = tag;
        writeln!(tag.stdin.take().unwrap(), "{event}").unwrap();
        let out = tag.wait_with_output().unwrap();
        assert!(out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.contains('\x1b'), "{err:?}");
        assert!(err.contains("\\x1b"), "{err:?}");
    }
    let db = db.to_str().unwrap();
    let human = |args: &[&str]| {
        let out = ttp().args(args).env("TTP_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap()
    };
    for args in [
        &["tags", "--db", db][..],
        &["rule", "list", "--db", db][..],
        &["rule", "show", "PROBE", "--db", db][..],
    ] {
        let shown = human(args);
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{args:?}: {shown:?}"
        );
        assert!(!shown.contains("\nFAKE"), "{args:?}: {shown:?}");
    }
    let check = ttp()
        .args(["check", "--rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let shown = String::from_utf8(check.stdout).unwrap();
    assert!(shown.contains("x\\x1b[2J"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
    // JSON stays exact.
    let json = human(&["tags", "--db", db, "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["source_id"], sid);
}

fn catalogue(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule_id FROM ttp_rule ORDER BY rule_id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn another_rules_directory_does_not_wipe_the_catalogue() {
    let work = TempDir::new().unwrap();
    let (mut d, db, _log) = probe_daemon(work.path(), &[]);
    {
        use std::io::Write;
        let mut stdin = d.0.stdin.take().unwrap();
        stdin.write_all(probe_line(0).as_bytes()).unwrap();
        stdin.flush().unwrap();
        d.0.stdin = Some(stdin);
    }
    wait_until("the daemon to tag", || tag_count(&db) == 1);
    assert_eq!(catalogue(&db), vec!["PROBE"]);
    // An analyst tags a file with other rules into the daemon's database.
    let other = work.path().join("other-rules");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("o.yaml"), PROBE_RULE.replace("PROBE", "OTHER")).unwrap();
    let out = ttp()
        .args(["tag", "--events", "-", "--rules"])
        .arg(&other)
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        catalogue(&db),
        vec!["OTHER", "PROBE"],
        "the daemon's rules were wiped"
    );
    // Within one directory, a rule that is gone is still retired.
    fs::remove_file(other.join("o.yaml")).unwrap();
    fs::write(other.join("p.yaml"), PROBE_RULE.replace("PROBE", "OTHER2")).unwrap();
    let out = ttp()
        .args(["tag", "--events", "-", "--rules"])
        .arg(&other)
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(catalogue(&db), vec!["OTHER2", "PROBE"]);
}

#[test]
fn no_loadable_rules_is_an_error_unless_allowed() {
    let work = TempDir::new().unwrap();
    let empty = work.path().join("empty-rules");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join("broken.yaml"), "rule_id: [\n").unwrap();
    let db = work.path().join("t.db");
    for cmd in ["tag", "run"] {
        let out = ttp()
            .args([cmd, "--events", "-", "--rules"])
            .arg(&empty)
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}: {err}");
        assert!(err.contains("no rule could be loaded"), "{cmd}: {err}");
        assert!(err.contains("--allow-empty"), "{cmd}: {err}");
        let out = ttp()
            .args([cmd, "--allow-empty", "--events", "-", "--rules"])
            .arg(&empty)
            .arg("--db")
            .arg(&db)
            .env("TTP_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd}: {err}");
        assert!(err.contains("no rules loaded"), "{cmd}: {err}");
    }
}

#[test]
fn readers_refuse_a_newer_schema() {
    let work = TempDir::new().unwrap();
    let db = work.path().join("t.db");
    let out = ttp()
        .args(["tag", "--events", "-", "--allow-empty", "--rules"])
        .arg(work.path())
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let out = ttp().args(["tags", "--db"]).arg(&db).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer than this ttp supports"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn new_databases_are_private_and_the_mode_is_settable() {
    use std::os::unix::fs::PermissionsExt;
    let work = TempDir::new().unwrap();
    let mode = |name: &str, extra: &[&str]| {
        let db = work.path().join(name);
        let out = ttp()
            .args(["tag", "--events", "-", "--allow-empty", "--rules"])
            .arg(work.path())
            .arg("--db")
            .arg(&db)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::metadata(&db).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("a.db", &[]), 0o600);
    assert_eq!(mode("b.db", &["--db-mode", "640"]), 0o640);
    let out = ttp().args(["tag", "--db-mode", "9z"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an octal file mode"));
}

#[test]
fn a_database_deleted_under_the_daemon_is_reported() {
    use std::io::Write;
    let work = TempDir::new().unwrap();
    let (mut d, db, log) = probe_daemon(work.path(), &[]);
    let mut stdin = d.0.stdin.take().unwrap();
    stdin.write_all(probe_line(0).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until("the first tag", || tag_count(&db) == 1);
    fs::remove_file(&db).unwrap();
    stdin.write_all(probe_line(1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let status = wait_exit(&mut d.0, PATIENCE).expect("still running with its database deleted");
    assert!(!status.success());
    assert!(
        log_contains(&log, "deleted or replaced while in use"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn rule_file_messages_speak_our_words() {
    let work = TempDir::new().unwrap();
    fs::write(work.path().join("dup.yaml"), "rule_id: A\nrule_id: B\n").unwrap();
    fs::write(
        work.path().join("big.yaml"),
        "rule_id: C\nrule_version: 1\nname: x\napplies_to: [command]\nmatch:\n  pattern: '\\w{2000}'\n\
         emits: [{tactic: TA0002, technique_id: T1059, confidence: 0.5}]\n",
    )
    .unwrap();
    let out = ttp()
        .args(["check", "--rules"])
        .arg(work.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("`rule_id` appears twice in this mapping"),
        "{text}"
    );
    assert!(!text.contains("DuplicateKeyPolicy"), "{text}");
    assert!(text.contains("the pattern is too large"), "{text}");
    assert!(!text.contains("error building NFA"), "{text}");
}

/// A rule firing on `probe` events with the given id and technique.
fn probe_rule(id: &str, technique: &str) -> String {
    PROBE_RULE.replace("PROBE", id).replace("T1033", technique)
}

/// `(rule_id, technique_id)` of every tag.
fn tags(db: &Path) -> Vec<(String, String)> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT rule_id, technique_id FROM ttp_tag") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

fn audit(db: &Path, action: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM ttp_rule_event WHERE action = ?1",
                [action],
                |r| r.get(0),
            )
        })
        .unwrap_or(0)
}

/// A daemon on `rules`, fed probes through stdin; `as_nobody` runs it as
/// user `nobody` (so that permissions apply even when the tests run as root).
struct Probed {
    guard: Guard,
    stdin: std::process::ChildStdin,
    db: PathBuf,
    log: PathBuf,
    next: usize,
}

impl Probed {
    fn start(work: &Path, rules: &Path, as_nobody: bool) -> Probed {
        let db = work.join("t.db");
        let log = work.join("stderr.log");
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_ttp"));
            c
        } else {
            ttp()
        };
        let mut child = cmd
            .args(["run", "--debounce-ms", "10", "--rules"])
            .arg(rules)
            .arg("--db")
            .arg(&db)
            .env("TTP_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        Probed {
            guard: Guard(child),
            stdin,
            db,
            log,
            next: 0,
        }
    }

    /// Sends probes until the tags of one satisfy `ok`.
    fn until(&mut self, what: &str, ok: impl Fn(&[(String, String)]) -> bool) {
        use std::io::Write;
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            assert!(
                self.guard.0.try_wait().unwrap().is_none(),
                "the daemon exited:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            self.next += 1;
            let id = format!("p{}", self.next);
            let line = format!(
                "{{\"source_kind\":\"command\",\"source_id\":\"{id}\",\"attacker_uuid\":\"a\",\"payload\":{{\"command_text\":\"probe\"}}}}\n"
            );
            self.stdin.write_all(line.as_bytes()).unwrap();
            self.stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let conn = rusqlite::Connection::open_with_flags(
                &self.db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            );
            let mine: Vec<(String, String)> = conn
                .and_then(|c| {
                    let mut s = c.prepare(
                        "SELECT rule_id, technique_id FROM ttp_tag WHERE source_id = ?1 ORDER BY 1",
                    )?;
                    let rows = s.query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                })
                .unwrap_or_default();
            if !mine.is_empty() && ok(&mine) {
                return;
            }
        }
        panic!(
            "timed out waiting for {what}; tags: {:?}\n{}",
            tags(&self.db),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn ids(t: &[(String, String)]) -> Vec<&str> {
    t.iter().map(|(r, _)| r.as_str()).collect()
}

#[test]
fn an_in_place_save_caught_empty_is_not_an_error() {
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("a.yaml"), probe_rule("A", "T1033")).unwrap();
    let mut d = Probed::start(work.path(), &rules, false);
    d.until("rule A", |t| ids(t) == ["A"]);
    // Truncate, let the reload thread see the empty file, then write.
    fs::File::create(rules.join("a.yaml")).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    fs::write(
        rules.join("a.yaml"),
        probe_rule("A", "T1082").replace("rule_version: 1", "rule_version: 2"),
    )
    .unwrap();
    d.until("A's new version", |t| t == [("A".into(), "T1082".into())]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!d.log().contains("the file is empty"), "{}", d.log());
    assert_eq!(audit(&d.db, "rejected"), 0);
    // A file left empty is reported, once its second look is due.
    fs::File::create(rules.join("a.yaml")).unwrap();
    wait_until("the empty file to be reported", || {
        d.log().contains("the file is empty")
    });
    wait_until("the rejection to be audited", || {
        audit(&d.db, "rejected") == 1
    });
    d.until("A's last good version to keep serving", |t| ids(t) == ["A"]);
}

#[test]
fn unreadable_subdirectories_keep_their_rules_and_are_reported_once() {
    use std::os::unix::fs::PermissionsExt;
    let work = TempDir::new().unwrap();
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    // Everything readable by `nobody`, the database directory writable.
    mode(work.path(), 0o777);
    let rules = work.path().join("rules");
    let sub = rules.join("sub");
    fs::create_dir_all(&sub).unwrap();
    mode(&rules, 0o755);
    mode(&sub, 0o755);
    fs::write(rules.join("top.yaml"), probe_rule("TOP", "T1033")).unwrap();
    fs::write(sub.join("s.yaml"), probe_rule("SUB", "T1082")).unwrap();
    for f in [rules.join("top.yaml"), sub.join("s.yaml")] {
        mode(&f, 0o644);
    }
    let as_nobody = running_as_root();
    // Unreadable at start-up: the rest loads, the directory is named.
    mode(&sub, 0o000);
    let mut d = Probed::start(work.path(), &rules, as_nobody);
    d.until("the top rule", |t| ids(t) == ["TOP"]);
    let log = d.log();
    assert!(log.contains("sub") && log.contains("E019"), "{log}");
    // Readable again: its rules load.
    mode(&sub, 0o755);
    d.until("the subdirectory's rule", |t| ids(t) == ["SUB", "TOP"]);
    // Unreadable while running: its rules keep serving; reported once.
    mode(&sub, 0o000);
    for i in 0..5 {
        // Other edits cause refreshes.
        fs::write(
            rules.join("top.yaml"),
            probe_rule("TOP", "T1033") + &format!("# {i}\n"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    d.until("SUB to keep serving", |t| ids(t) == ["SUB", "TOP"]);
    let log = d.log();
    assert_eq!(log.matches("E019").count(), 2, "{log}");
    assert!(
        !log.contains(&format!("{}: cannot read", rules.display())),
        "{log}"
    );
    mode(&sub, 0o755);
}

/// Whether the tests run as root (then permissions are tested as `nobody`).
fn running_as_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

#[test]
fn dangling_links_loops_and_non_utf8_names_are_reported_once() {
    use std::os::unix::ffi::OsStrExt;
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("top.yaml"), probe_rule("TOP", "T1033")).unwrap();
    std::os::unix::fs::symlink(rules.join("missing.yaml"), rules.join("dangling.yaml")).unwrap();
    std::os::unix::fs::symlink(rules.join("loop-b.yaml"), rules.join("loop-a.yaml")).unwrap();
    std::os::unix::fs::symlink(rules.join("loop-a.yaml"), rules.join("loop-b.yaml")).unwrap();
    let bad = rules.join(std::ffi::OsStr::from_bytes(b"caf\xe9.yaml"));
    fs::write(&bad, probe_rule("LATIN1", "T1082")).unwrap();
    let out = ttp()
        .args(["check", "--rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("dangling.yaml:0:0: error[E020]: a dangling symbolic link"),
        "{text}"
    );
    assert!(
        text.contains("loop-a.yaml:0:0: error[E020]: a symbolic link loop"),
        "{text}"
    );
    assert!(
        text.contains("error[E020]: the name is not UTF-8"),
        "{text}"
    );
    let mut d = Probed::start(work.path(), &rules, false);
    d.until("the top rule", |t| ids(t) == ["TOP"]);
    for i in 0..5 {
        fs::write(
            rules.join("top.yaml"),
            probe_rule("TOP", "T1033") + &format!("# {i}\n"),
        )
        .unwrap();
        // A directory event makes a full rescan.
        fs::create_dir_all(rules.join(format!("d{i}"))).unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    d.until("TOP", |t| ids(t) == ["TOP"]);
    let log = d.log();
    assert_eq!(log.matches("E020").count(), 4, "{log}");
}

fn append_probes(path: &Path, from: usize, n: usize) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for i in from..from + n {
        text.push_str(&probe_line(i));
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// Runs `ttp run --events FILE` until `want` tags are stored, then stops it
/// with SIGTERM; returns how many events that run read.
fn follow_until(work: &Path, events: &Path, want: i64) -> i64 {
    let (mut d, db, log) = run_on_events(work, events);
    wait_until(&format!("{want} tags"), || tag_count(&db) == want);
    signal(d.0.id(), "TERM");
    let status = wait_exit(&mut d.0, PATIENCE).expect("no exit after SIGTERM");
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    events_read(&text)
}

fn events_read(summary: &str) -> i64 {
    summary
        .rsplit("events: ")
        .next()
        .and_then(|s| s.split(" read").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in:\n{summary}"))
}

#[test]
fn a_restart_resumes_where_the_last_run_stopped() {
    let work = TempDir::new().unwrap();
    let events = work.path().join("events.jsonl");
    append_probes(&events, 0, 300);
    assert_eq!(follow_until(work.path(), &events, 300), 300);
    append_probes(&events, 300, 20);
    assert_eq!(
        follow_until(work.path(), &events, 320),
        20,
        "re-read from byte 0"
    );
}

#[test]
fn a_file_rotated_while_stopped_is_finished_first() {
    let work = TempDir::new().unwrap();
    let events = work.path().join("events.jsonl");
    append_probes(&events, 0, 100);
    assert_eq!(follow_until(work.path(), &events, 100), 100);
    // While the daemon is down: more events, then rotation, then new ones.
    append_probes(&events, 100, 50);
    fs::rename(&events, work.path().join("events.jsonl.1")).unwrap();
    append_probes(&events, 150, 30);
    assert_eq!(follow_until(work.path(), &events, 180), 80);
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_rereads_at_most_a_batch() {
    let work = TempDir::new().unwrap();
    let events = work.path().join("events.jsonl");
    let total = 30_000;
    append_probes(&events, 0, total);
    let db = work.path().join("t.db");
    // Pseudo-random but repeatable kill times.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (mut d, _, _) = run_on_events(work.path(), &events);
        std::thread::sleep(Duration::from_millis(100 + seed % 500));
        signal(d.0.id(), "KILL");
        d.0.wait().unwrap();
    }
    let before = tag_count(&db);
    eprintln!("tags committed before the last run: {before} of {total}");
    let read = follow_until(work.path(), &events, total as i64);
    assert_eq!(tag_count(&db), total as i64);
    let left = total as i64 - before;
    assert!(
        read >= left && read <= left + 4096,
        "the last run read {read} events; {left} were left to tag"
    );
}
