//! Helpers of the fault tests (`tests/faults.rs`, `tests/faults_cli.rs`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn ttp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttp"));
    c.env_remove("TTP_RULES").env_remove("TTP_DB");
    c
}

/// A child that is killed if the test fails.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn log_contains(path: &Path, needle: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
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

pub fn copy_tree(from: &Path, to: &Path) {
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
pub const PROBE_RULE: &str =
    "rule_id: PROBE\nrule_version: 1\nname: probe\napplies_to: [command]\n\
    match: {field: command_text, contains: probe}\n\
    emits: [{tactic: TA0007, technique_id: T1033, confidence: 0.5}]\n";

pub fn probe_line(id: usize) -> String {
    format!(
        "{{\"source_kind\":\"command\",\"source_id\":\"e{id}\",\"attacker_uuid\":\"a\",\"payload\":{{\"command_text\":\"probe {id}\"}}}}\n"
    )
}

pub fn tag_count(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get(0)))
        .unwrap_or(0)
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn probe_daemon(work: &Path, extra: &[&str]) -> (Guard, PathBuf, PathBuf) {
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
pub fn endless_producer(mut stdin: std::process::ChildStdin) -> std::thread::JoinHandle<()> {
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

pub fn run_on_events(work: &Path, events: &Path) -> (Guard, PathBuf, PathBuf) {
    probe_daemon(work, &["--events", events.to_str().unwrap()])
}

/// Runs a command whose stdout is closed before it writes (`… | head` that
/// has already exited).
pub fn with_closed_stdout(args: &[&str]) -> std::process::Output {
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

pub fn catalogue(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule_id FROM ttp_rule ORDER BY rule_id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A rule firing on `probe` events with the given id and technique.
pub fn probe_rule(id: &str, technique: &str) -> String {
    PROBE_RULE.replace("PROBE", id).replace("T1033", technique)
}

/// `(rule_id, technique_id)` of every tag.
pub fn tags(db: &Path) -> Vec<(String, String)> {
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

pub fn audit(db: &Path, action: &str) -> i64 {
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
pub struct Probed {
    pub guard: Guard,
    pub stdin: std::process::ChildStdin,
    pub db: PathBuf,
    pub log: PathBuf,
    pub next: usize,
}

impl Probed {
    pub fn start(work: &Path, rules: &Path, as_nobody: bool) -> Probed {
        let db = work.join("t.db");
        let log = work.join("stderr.log");
        let mut cmd = if as_nobody {
            // A copy of the binary in the work directory: the build tree
            // may sit below a directory `nobody` cannot enter.
            use std::os::unix::fs::PermissionsExt;
            let bin = work.join("ttp-as-nobody");
            fs::copy(env!("CARGO_BIN_EXE_ttp"), &bin).unwrap();
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
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
    pub fn until(&mut self, what: &str, ok: impl Fn(&[(String, String)]) -> bool) {
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

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn ids(t: &[(String, String)]) -> Vec<&str> {
    t.iter().map(|(r, _)| r.as_str()).collect()
}

/// Whether the tests run as root (then permissions are tested as `nobody`).
pub fn running_as_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

pub fn append_probes(path: &Path, from: usize, n: usize) {
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
pub fn follow_until(work: &Path, events: &Path, want: i64) -> i64 {
    let (mut d, db, log) = run_on_events(work, events);
    wait_until(&format!("{want} tags"), || tag_count(&db) == want);
    signal(d.0.id(), "TERM");
    let status = wait_exit(&mut d.0, PATIENCE).expect("no exit after SIGTERM");
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    events_read(&text)
}

pub fn events_read(summary: &str) -> i64 {
    summary
        .rsplit("events: ")
        .next()
        .and_then(|s| s.split(" read").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in:\n{summary}"))
}
