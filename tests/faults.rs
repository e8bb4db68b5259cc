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
