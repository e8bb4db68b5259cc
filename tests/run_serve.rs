//! `ttp run --serve` and `ttp worker --serve`: one process tags and serves
//! the API over the same database; /metrics shows the process's live
//! counters; a rule disabled through the API stops firing in the running
//! daemon.

mod bus_support;
mod common;
mod serve_support;

use serve_support::Server;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SHADOW: &str = r#"{"source_kind":"command","source_id":"ID","attacker_uuid":"a1","payload":{"command_text":"cat /etc/shadow"}}"#;

#[test]
fn ttp_run_serves_its_database_and_its_live_counters() {
    let work = tempfile::TempDir::new().unwrap();
    let db = work.path().join("run.db");
    let tokens = work.path().join("tokens");
    std::fs::write(
        &tokens,
        "admintoken-0123456789 admin alice\nviewtoken-0123456789 viewer bob\n",
    )
    .unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttp"));
    cmd.args([
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ])
    .args([
        "--serve",
        "127.0.0.1:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ])
    .env("TTP_LOG", "info")
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    let mut server = Server::spawn(cmd);
    let mut stdin = server.child.stdin.take().unwrap();
    let viewer = [("Authorization", "Bearer viewtoken-0123456789")];
    let admin = [("Authorization", "Bearer admintoken-0123456789")];

    // Three events: three tags, counted live.
    for i in 0..3 {
        writeln!(stdin, "{}", SHADOW.replace("ID", &format!("e{i}"))).unwrap();
    }
    stdin.flush().unwrap();
    wait_for("three new tags in /metrics", || {
        let m = server.request("GET", "/metrics", &[], None).text();
        metric(&m, "ttp_tags_new_total") == Some(3)
    });
    let m = server.request("GET", "/metrics", &[], None).text();
    assert_eq!(metric(&m, "ttp_events_read_total"), Some(3), "{m}");
    assert_eq!(metric(&m, "ttp_tags_stored"), Some(3), "{m}");
    assert!(m.contains("ttp_reloads_total"), "{m}");
    // The API reads what the daemon wrote.
    let r = server.request("GET", "/api/v1/ttp/by-attacker/a1", &viewer, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = r.json();
    assert_eq!(rows[0]["count"], 3, "{rows}");
    let rule = rows[0]["technique_id"].as_str().unwrap().to_string();
    assert_eq!(rule, "T1003");
    // Which rule fired: disable it through the API...
    let tags = server
        .request(
            "GET",
            "/api/v1/ttp/tags/by-attacker/a1/T1003",
            &viewer,
            None,
        )
        .json();
    let rule_id = tags[0]["rule_id"].as_str().unwrap().to_string();
    let r = server.request(
        "POST",
        &format!("/api/v1/ttp/rules/{rule_id}/state"),
        &[admin[0], ("Content-Type", "application/json")],
        Some(br#"{"state": "disabled", "reason": "noisy"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // ... and the running daemon stops firing it (state poll: 25 ms).
    std::thread::sleep(Duration::from_millis(300));
    writeln!(stdin, "{}", SHADOW.replace("ID", "after")).unwrap();
    stdin.flush().unwrap();
    wait_for("the fourth event read", || {
        let m = server.request("GET", "/metrics", &[], None).text();
        metric(&m, "ttp_events_read_total") == Some(4)
    });
    let m = server.request("GET", "/metrics", &[], None).text();
    assert_eq!(metric(&m, "ttp_tags_new_total"), Some(3), "{m}");
    // End of input: the daemon commits, the server stops, exit 0.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ttp run did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{}", server.log());
}

#[test]
fn a_busy_port_stops_ttp_run_before_it_reads_anything() {
    let work = tempfile::TempDir::new().unwrap();
    let db = work.path().join("run.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let o = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .args(["--serve", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// `ttp worker --serve` on DECNET's database: DECNET's tokens, and the bus
/// connection, queue and tags in /metrics.
#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn ttp_worker_serves_with_its_bus_state_in_metrics() {
    let work = tempfile::TempDir::new().unwrap();
    let db = serve_support::fixture_copy(&common::shared(), work.path());
    let socket = work.path().join("bus.sock");
    let bus = bus_support::BusServer::start(&socket);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttp"));
    cmd.args(["worker", "--heartbeat-secs", "0.2", "--bus"])
        .arg(&socket)
        .arg("--rules")
        .arg(common::shared().join("reference/decnet-rules"))
        .arg("--db")
        .arg(&db)
        .args(["--serve", "127.0.0.1:0"])
        .env(
            "DECNET_JWT_SECRET",
            "spec2-test-secret-0123456789abcdef0123456789",
        )
        .env("TTP_LOG", "info")
        .stdout(Stdio::null());
    let server = Server::spawn(cmd);
    wait_for("the bus connection in /metrics", || {
        let m = server.request("GET", "/metrics", &[], None).text();
        metric(&m, "ttp_bus_connected") == Some(1)
    });
    let m = server.request("GET", "/metrics", &[], None).text();
    assert_eq!(metric(&m, "ttp_queue_depth"), Some(0), "{m}");
    let stored = metric(&m, "ttp_tags_stored").unwrap();
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            common::shared().join("reference/decnet-api-golden/bus-04-email-received.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let inp = &golden["bus_in"];
    bus.publish(
        inp["topic"].as_str().unwrap(),
        inp["pub_frame_body"]["type"].as_str().unwrap(),
        inp["pub_frame_body"]["payload"].clone(),
    );
    let want = golden["tags_inserted"].as_array().unwrap().len() as u64;
    assert!(want > 0);
    wait_for("the email's tags in /metrics", || {
        let m = server.request("GET", "/metrics", &[], None).text();
        metric(&m, "ttp_tags_new_total") == Some(want)
    });
    let m = server.request("GET", "/metrics", &[], None).text();
    assert_eq!(metric(&m, "ttp_events_read_total"), Some(1), "{m}");
    assert_eq!(metric(&m, "ttp_tags_stored"), Some(stored + want), "{m}");
    // The API wants DECNET's tokens on DECNET's database.
    let r = server.request("GET", "/api/v1/ttp/techniques", &[], None);
    assert_eq!(r.status, 401);
}

/// The load check at test scale (`examples/serve_load` is the full one,
/// figures in docs/performance.md): 32 keep-alive clients for two seconds
/// against `ttp run --serve` while it stores new tags; no request may fail.
/// No timing is asserted.
#[test]
fn many_clients_while_ttp_run_writes_get_no_error() {
    use ttp_engine::bench::http::{run, LoadPlan};
    let work = tempfile::TempDir::new().unwrap();
    let db = work.path().join("load.db");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttp"));
    cmd.args([
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ])
    .args(["--serve", "127.0.0.1:0"])
    .env("TTP_LOG", "info")
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    let mut server = Server::spawn(cmd);
    let mut stdin = server.child.stdin.take().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let line = SHADOW
                    .replace("ID", &format!("e{i}"))
                    .replace("\"a1\"", &format!("\"a{}\"", i % 7));
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
                i += 1;
                if i.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            i
        })
    };
    wait_for("the first tags", || {
        let m = server.request("GET", "/metrics", &[], None).text();
        metric(&m, "ttp_tags_new_total").unwrap_or(0) > 0
    });
    let report = run(&LoadPlan {
        addr: ([127, 0, 0, 1], server.port).into(),
        clients: 32,
        duration: Duration::from_secs(2),
        paths: vec![
            "/api/v1/ttp/techniques".into(),
            "/api/v1/ttp/by-attacker/a3".into(),
            "/api/v1/ttp/tags/by-attacker/a3/T1003".into(),
            "/api/v1/ttp/export/navigator".into(),
        ],
        token: None,
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fed = feeder.join().unwrap();
    assert_eq!(report.error_count(), 0, "{}", report.render());
    assert!(report.requests() >= 32, "{}", report.render());
    for path in report.latencies.keys() {
        assert!(report.percentile(path, 99.0).is_some());
    }
    assert_eq!(report.latencies.len(), 4, "{}", report.render());
    // ttp run stored tags throughout.
    let m = server.request("GET", "/metrics", &[], None).text();
    assert!(metric(&m, "ttp_tags_new_total").unwrap() > 0 && fed > 0);
    eprintln!("{}", report.render());
}
