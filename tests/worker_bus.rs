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
    start_worker_with(work, socket, db, &["--heartbeat-secs", "0.2"])
}

fn start_worker_with(work: &Path, socket: &Path, db: &Path, extra: &[&str]) -> Worker {
    let rules = common::shared().join("reference/decnet-rules");
    start_worker_on(work, socket, db, &rules, extra)
}

fn start_worker_on(work: &Path, socket: &Path, db: &Path, rules: &Path, extra: &[&str]) -> Worker {
    let log = work.join("worker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["worker", "--reconnect-max-ms", "100"])
        .args(extra)
        .arg("--bus")
        .arg(socket)
        .arg("--rules")
        .arg(rules)
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

fn uuids(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn.prepare("SELECT uuid FROM ttp_tag").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
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

    // The same session with one more command: of the event's tags only
    // the new one is announced (Q11), the others being stored already.
    let n = observer.received().len();
    let mut longer = g["bus_in"]["pub_frame_body"].clone();
    longer["payload"]["commands"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "sess-7f3a#9", "command_text": "cat /etc/shadow"}));
    publisher.publish(g["bus_in"]["topic"].as_str().unwrap(), &longer);
    wait_until("the new command's announcement", || {
        observer.received()[n..]
            .iter()
            .any(|(t, _)| t == "ttp.tagged")
    });
    std::thread::sleep(Duration::from_millis(300));
    let new_uuid: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT uuid FROM ttp_tag WHERE source_id = 'sess-7f3a#9'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM ttp_tag"), after + 1);
    let messages: Vec<(String, Value)> = observer.received()[n..]
        .iter()
        .filter(|(t, _)| t.starts_with("ttp."))
        .cloned()
        .collect();
    let topics: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, ["ttp.tagged", "ttp.rule.fired.T1003"]);
    for (_, body) in &messages {
        assert_eq!(body["payload"]["tag_uuids"], json!([new_uuid]));
    }
    assert_eq!(
        messages[0].1["payload"]["techniques_added"],
        json!(["T1003"])
    );
    assert_eq!(messages[0].1["payload"]["session_id"], "sess-7f3a");

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
    let mut w = start_worker_with(
        work.path(),
        &socket,
        &db,
        &[
            "--heartbeat-secs",
            "0.1",
            "--queue",
            "8",
            "--batch",
            "4",
            "--lock-timeout-ms",
            "100",
        ],
    );
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

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn every_bus_example_replayed_over_the_bus_gives_decnets_rows_and_messages() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    {
        // The attackers the examples were executed with.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             UPDATE attacker_intel SET attacker_uuid = '4b1e0c2a-0000-4000-8000-000000000a01'
               WHERE attacker_uuid = 'a0000000-0000-4000-8000-000000000001';
             UPDATE attackers SET uuid = '4b1e0c2a-0000-4000-8000-000000000a01' WHERE ip = '203.0.113.7';
             UPDATE attackers SET uuid = '4b1e0c2a-0000-4000-8000-000000000a02' WHERE ip = '198.51.100.23';",
        )
        .unwrap();
    }
    let _server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["ttp.>", "system.ttp.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let mut w = start_worker(work.path(), &socket, &db);
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    let dir = common::shared().join("reference/decnet-api-golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("bus-") && n.as_bytes()[4].is_ascii_digit()
        })
        .collect();
    files.sort();
    let announcements = || -> Vec<(String, Value)> {
        observer
            .received()
            .into_iter()
            .filter(|(t, _)| t.starts_with("ttp."))
            .collect()
    };
    let ipv6 = || {
        count(
            &db,
            "SELECT ipv6_leak_count FROM attackers WHERE uuid = '4b1e0c2a-0000-4000-8000-000000000a02'",
        )
    };
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let g: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let seen = announcements().len();
        let ipv6_before = ipv6();
        let uuids_before = uuids(&db);
        publisher.publish(
            g["bus_in"]["topic"].as_str().unwrap(),
            &g["bus_in"]["pub_frame_body"],
        );
        let rows: Vec<Value> = g["tags_inserted"].as_array().cloned().unwrap_or_default();
        let stored = |u: &str| {
            count(
                &db,
                &format!("SELECT count(*) FROM ttp_tag WHERE uuid = '{u}'"),
            ) == 1
        };
        if name.starts_with("bus-12") {
            // Deviation (Q14, compat #10): clamped to 1 and stored.
            wait_until("bus-12's clamped tags", || {
                count(
                    &db,
                    "SELECT count(*) FROM ttp_tag WHERE source_kind = 'intel' AND confidence = 1.0",
                ) > 0
            });
            // Its announcements must be in before the next example counts its own.
            let new_rows: Vec<String> = uuids(&db)
                .into_iter()
                .filter(|u| !uuids_before.contains(u))
                .collect();
            wait_until("bus-12's announcements", || {
                let announced: Vec<Value> = announcements()[seen..]
                    .iter()
                    .flat_map(|(_, b)| {
                        b["payload"]["tag_uuids"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                new_rows
                    .iter()
                    .all(|u| announced.iter().any(|a| a.as_str() == Some(u.as_str())))
            });
            continue;
        }
        // DECNET's messages, less what it announced without storing (Q11).
        let expected: Vec<(String, Value)> = g["bus_out"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let mut p = m["evt_body"]["payload"].clone();
                let kept: Vec<Value> = p["tag_uuids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|u| rows.iter().any(|r| r["uuid"] == **u))
                    .cloned()
                    .collect();
                (!kept.is_empty()).then(|| {
                    p["tag_uuids"] = Value::Array(kept);
                    (m["topic"].as_str().unwrap().to_string(), p)
                })
            })
            .collect();
        wait_until(&format!("{name}: rows and messages"), || {
            rows.iter().all(|r| stored(r["uuid"].as_str().unwrap()))
                && announcements().len() >= seen + expected.len()
        });
        std::thread::sleep(Duration::from_millis(150));
        let got: Vec<(String, Value)> = announcements()[seen..]
            .iter()
            .map(|(t, b)| (t.clone(), b["payload"].clone()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}: {got:#?}");
        for ((t, p), (et, ep)) in got.iter().zip(&expected) {
            assert_eq!(t, et, "{name}");
            assert_eq!(p["tag_uuids"], ep["tag_uuids"], "{name}: {t}");
            assert_eq!(p["attacker_uuid"], ep["attacker_uuid"], "{name}: {t}");
            assert_eq!(p["session_id"], ep["session_id"], "{name}: {t}");
        }
        for r in &rows {
            let u = r["uuid"].as_str().unwrap();
            assert_eq!(
                count(&db, &format!(
                    "SELECT count(*) FROM ttp_tag WHERE uuid = '{u}' AND rule_id = '{}' AND confidence = {}",
                    r["rule_id"].as_str().unwrap(), r["confidence"]
                )),
                1,
                "{name}: {u}"
            );
        }
        if name.starts_with("bus-05") {
            assert_eq!(ipv6(), ipv6_before + 1, "bus-05 updates the IPv6 columns");
        }
        if name.starts_with("bus-06") {
            assert_eq!(
                ipv6(),
                ipv6_before,
                "bus-06 (a duplicate) leaves them alone"
            );
        }
    }
    w.signal("TERM");
    assert!(w.wait_exit().success(), "{}", w.log());
}

/// The worker's correlation windows survive a restart: six command events
/// counted before a SIGTERM and four after make the one tag of ten.
#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn correlation_windows_survive_a_worker_restart() {
    let work = tempfile::TempDir::new().unwrap();
    let socket = work.path().join("bus.sock");
    let db = fixture_copy(work.path());
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in std::fs::read_dir(common::shared().join("reference/decnet-rules")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        rules.join("ten_commands.yaml"),
        "rule_id: TTP-C900\nrule_version: 1\nname: ten commands in an hour\napplies_to: [command]\n\
         correlate: {type: event_count, group_by: [attacker_uuid], window: 1h, condition: {gte: 10}}\n\
         emits: [{tactic: TA0002, technique_id: T1059, confidence: 0.6}]\n",
    )
    .unwrap();
    let _server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["system.ttp.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let commands = |publisher: &mut Client, from: usize, to: usize| {
        for i in from..to {
            publisher.publish(
                "attacker.session.ended",
                &json!({"type": "session.ended", "payload": {
                    "session_id": format!("corr-{i}"), "attacker_uuid": "a0000000-0000-4000-8000-000000000004",
                    "commands": ["cat /etc/passwd"]}}),
            );
        }
    };
    let commands_tagged =
        "SELECT count(*) FROM ttp_tag WHERE rule_id = 'R0013' AND session_id LIKE 'corr-%'";
    let tagged = |n: i64| {
        let db = db.clone();
        move || count(&db, commands_tagged) == n
    };
    let correlation = "SELECT count(*) FROM ttp_tag WHERE rule_id = 'TTP-C900'";
    let mut w = start_worker_on(
        work.path(),
        &socket,
        &db,
        &rules,
        &["--heartbeat-secs", "0.2"],
    );
    wait_until("a heartbeat", || !heartbeats(&observer).is_empty());
    commands(&mut publisher, 0, 6);
    wait_until("six commands tagged", tagged(6));
    w.signal("TERM");
    assert!(w.wait_exit().success(), "{}", w.log());
    assert_eq!(count(&db, correlation), 0);
    drop(w);
    let mut w = start_worker_on(
        work.path(),
        &socket,
        &db,
        &rules,
        &["--heartbeat-secs", "0.2"],
    );
    let beats = heartbeats(&observer).len();
    wait_until("a heartbeat of the new worker", || {
        heartbeats(&observer).len() > beats
    });
    commands(&mut publisher, 6, 10);
    wait_until("ten commands tagged", tagged(10));
    wait_until("the correlation tag", || count(&db, correlation) == 1);
    w.signal("TERM");
    let status = w.wait_exit();
    let log = w.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("correlation windows restored"), "{log}");
    assert_eq!(count(&db, correlation), 1, "{log}");
}
