//! `ttp worker` end to end: a real bus server on a real UNIX socket
//! (`bus_support`), the real binary, a copy of DECNET's `fixture.sqlite`,
//! publishers writing `PUB` frames and an observer on `ttp.>` and the health
//! topics. Waits are bounded polls on observable outcomes.

mod bus_support;
mod common;

use bus_support::{BusServer, Client};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the worker did not exit:\n{}", self.log());
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn fixture_copy(dir: &Path) -> PathBuf {
    let db = dir.join("decnet.db");
    std::fs::copy(
        common::shared().join("reference/decnet-api-golden/fixture.sqlite"),
        &db,
    )
    .unwrap();
    db
}

fn start_worker(work: &Path, socket: &Path, db: &Path) -> Worker {
    let log = work.join("worker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args([
            "worker",
            "--heartbeat-secs",
            "0.2",
            "--reconnect-max-ms",
            "100",
            "--bus",
        ])
        .arg(socket)
        .arg("--rules")
        .arg(common::shared().join("reference/decnet-rules"))
        .arg("--db")
        .arg(db)
        .env("TTP_LOG", "info")
        .env_remove("TTP_RULES")
        .env_remove("TTP_DB")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Worker { child, log }
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

fn golden(name: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(
            common::shared()
                .join("reference/decnet-api-golden")
                .join(name),
        )
        .unwrap(),
    )
    .unwrap()
}

fn heartbeats(observer: &Client) -> Vec<Value> {
    observer
        .received()
        .into_iter()
        .filter(|(t, _)| t == "system.ttp.health")
        .map(|(_, b)| b)
        .collect()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn the_worker_tags_bus_events_into_decnets_database_and_announces_them() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    let schema_before = schema(&db);
    let server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["ttp.>", "system.*.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let mut w = start_worker(work.path(), &socket, &db);
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    let beat = &heartbeats(&observer)[0];
    assert_eq!(beat["type"], "health");
    assert_eq!(beat["payload"]["worker"], "ttp");
    assert_eq!(beat["payload"]["bus"], "connected");
    assert!(beat["payload"]["ts"].as_f64().unwrap() > 1.7e9);
    assert!(beat["payload"].get("queue_depth").is_some());

    // bus-01: a session with commands, resolved through DECNET's attackers
    // table (203.0.113.7 is an attacker of the fixture).
    let g = golden("bus-01-session-ended-fanout.json");
    let before = count(&db, "SELECT count(*) FROM ttp_tag");
    publisher.publish(
        g["bus_in"]["topic"].as_str().unwrap(),
        &g["bus_in"]["pub_frame_body"],
    );
    let expected: Vec<&str> = g["tags_inserted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source_kind"] != "intel")
        .map(|t| t["uuid"].as_str().unwrap())
        .collect();
    let announced = || -> Vec<String> {
        observer
            .received()
            .into_iter()
            .filter(|(t, _)| t == "ttp.tagged")
            .flat_map(|(_, b)| {
                b["payload"]["tag_uuids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("ttp.tagged", || !announced().is_empty());
    let got = announced();
    for u in &expected {
        assert!(got.iter().any(|g| g == u), "{u} not announced: {got:?}");
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM ttp_tag WHERE uuid = '{u}' AND attacker_uuid = 'a0000000-0000-4000-8000-000000000001'")),
            1,
            "{u} not stored"
        );
    }
    let after = count(&db, "SELECT count(*) FROM ttp_tag");
    assert_eq!(
        after - before,
        got.len() as i64,
        "announced and stored differ"
    );
    // The intel catch-up from attacker_intel ran too.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE source_id = 'intel-catchup:sess-7f3a'"
        ) > 0
    );
    // One ttp.rule.fired.<T> per technique, under ttp.>.
    assert!(observer
        .received()
        .iter()
        .any(|(t, _)| t == "ttp.rule.fired.T1003"));

    // The same event again: nothing new, nothing announced.
    let n = observer.received().len();
    publisher.publish(
        g["bus_in"]["topic"].as_str().unwrap(),
        &g["bus_in"]["pub_frame_body"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(observer.received()[n..]
        .iter()
        .all(|(t, _)| !t.starts_with("ttp.")));
    assert_eq!(count(&db, "SELECT count(*) FROM ttp_tag"), after);

    // A stop on the control topic: graceful, exit 0.
    publisher.publish(
        "system.ttp.control",
        &json!({"type": "control", "payload": {"action": "pause"}}),
    );
    publisher.publish(
        "system.ttp.control",
        &json!({"type": "control", "payload": {"action": "stop", "requested_by": "admin"}}),
    );
    let status = w.wait_exit();
    assert!(status.success(), "{status}\n{}", w.log());
    assert!(w.log().contains("stop requested"), "{}", w.log());
    // DECNET's schema is intact.
    let after = schema(&db);
    for object in &schema_before {
        assert!(after.contains(object), "{object:?} changed");
    }
    drop(server);
}

fn schema(db: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn the_worker_reconnects_after_a_bus_restart_and_a_bad_frame() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    let server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["system.ttp.health"]);
    let mut w = start_worker(work.path(), &socket, &db);
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    // The bus goes away and comes back.
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    let server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["system.ttp.health", "ttp.>"]);
    wait_until("a heartbeat after the restart", || {
        !heartbeats(&observer).is_empty()
    });
    let mut publisher = Client::connect(&socket, &[]);
    let g = golden("bus-03-intel-enriched.json");
    let mut body = g["bus_in"]["pub_frame_body"].clone();
    // Anchored directly: no attacker row needed.
    body["payload"]["attacker_uuid"] = json!("a0000000-0000-4000-8000-000000000004");
    publisher.publish(g["bus_in"]["topic"].as_str().unwrap(), &body);
    wait_until("tags after the restart", || {
        count(&db, "SELECT count(*) FROM ttp_tag WHERE attacker_uuid = 'a0000000-0000-4000-8000-000000000004' AND source_kind = 'intel'") > 0
    });
    // A malformed frame from the server: the worker drops the connection
    // and comes back.
    server.send_raw_to("ttp", b"NOPE\n\0\0\0\0");
    wait_until("a reconnection after a bad frame", || {
        w.log().contains("protocol error")
    });
    let beats = heartbeats(&observer).len();
    wait_until("heartbeats again", || {
        heartbeats(&observer).len() > beats + 1
    });
    assert!(w.log().matches("bus connected").count() >= 3, "{}", w.log());
    w.signal("TERM");
    assert!(w.wait_exit().success(), "{}", w.log());
    drop(server);
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn sigterm_commits_every_event_taken_off_the_socket() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    let _server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["system.ttp.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let mut w = start_worker(work.path(), &socket, &db);
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    let n = 3000;
    for i in 0..n {
        publisher.publish(
            "attacker.session.ended",
            &json!({"type": "session.ended", "payload": {
                "session_id": format!("burst-{i}"), "attacker_uuid": "a0000000-0000-4000-8000-000000000004",
                "commands": ["cat /etc/passwd"]}}),
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    w.signal("TERM");
    let status = w.wait_exit();
    let log = w.log();
    assert!(status.success(), "{log}");
    let received: i64 = log
        .split("bus events: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    assert!(received > 0, "{log}");
    // Every event received was tagged and committed: one R0013 tag each.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE rule_id = 'R0013' AND session_id LIKE 'burst-%'"
        ),
        received,
        "{log}"
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn a_full_queue_pauses_reading_and_loses_nothing() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    let _server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["system.ttp.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let log = work.path().join("worker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args([
            "worker",
            "--heartbeat-secs",
            "0.1",
            "--queue",
            "8",
            "--batch",
            "4",
            "--lock-timeout-ms",
            "100",
            "--bus",
        ])
        .arg(&socket)
        .arg("--rules")
        .arg(common::shared().join("reference/decnet-rules"))
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut w = Worker { child, log };
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    // The database is locked by someone else: the worker cannot store, its
    // queue fills up to its bound and stays there.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..40 {
        publisher.publish(
            "attacker.session.ended",
            &json!({"type": "session.ended", "payload": {
                "session_id": format!("q-{i}"), "attacker_uuid": "a0000000-0000-4000-8000-000000000004",
                "commands": ["cat /etc/passwd"]}}),
        );
    }
    let depth = || -> Vec<u64> {
        heartbeats(&observer)
            .iter()
            .filter_map(|b| b["payload"]["queue_depth"].as_u64())
            .collect()
    };
    wait_until("a full queue in the heartbeat", || {
        depth().iter().any(|d| *d >= 8)
    });
    // Several lock timeouts go by: the wait is logged, nothing is dropped.
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        depth().iter().all(|d| *d <= 9),
        "the queue outgrew its bound: {:?}",
        depth()
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE session_id LIKE 'q-%'"
        ),
        0
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    wait_until("every event stored", || {
        count(
            &db,
            "SELECT count(*) FROM ttp_tag WHERE rule_id = 'R0013' AND session_id LIKE 'q-%'",
        ) == 40
    });
    w.signal("TERM");
    assert!(w.wait_exit().success(), "{}", w.log());
    assert!(w.log().contains("the database is locked"), "{}", w.log());
}
