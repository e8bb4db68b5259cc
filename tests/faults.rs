//! Fault tests: the real `ttp` binary under the failures a fault-injection
//! run found (issue #10). Each test drives the binary as an operator's
//! supervisor would and checks an observable outcome; none asserts on speed
//! except the idle-CPU bound, which is several times the idle figure.

mod fault_support;

use fault_support::*;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

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
    // Idle, the daemon wakes ~300 times a second (the rule watcher's
    // debouncer ticks every 5 ms for the 20 ms debounce reloads need; the
    // event follower and the rule-state poll every 25 ms): 1.5-2 % of a
    // core alone, measured, and 5.3 % once under CI with every other test
    // on the two cores. A busy loop or a tight poll would be tens of per
    // cent: the bound is there.
    assert!(
        share < 0.10,
        "an idle `ttp run` used {:.0} % of a core ({used:?} in {window:?})",
        share * 100.0
    );
}

#[test]
fn a_long_lock_is_waited_out_and_nothing_is_lost() {
    use std::io::Write;
    let work = TempDir::new().unwrap();
    let (mut d, db, log) = probe_daemon(work.path(), &["--lock-timeout-ms", "200"]);
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
