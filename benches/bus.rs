//! `ttp worker` throughput and latency through a real bus: a conforming bus
//! server (the tests' `bus_support`) on a UNIX socket, the release `ttp
//! worker` process, a publisher and an observer of `ttp.tagged`.
//!
//! `cargo bench --bench bus` prints:
//! - events/s from the first publish to the last tag committed, publishing
//!   as fast as the socket takes them (`session.ended` with one command:
//!   two TaggerEvents, one stored tag per event);
//! - publish → announcement latency (the announcement follows the commit)
//!   at a paced 5,000 events/s.
//!
//! `TTP_BENCH_BATCH=N` passes `--batch N` to the worker;
//! `TTP_BENCH_TRACE=FILE` writes each paced event's send time (ms from the
//! first) and its latency (ms), a line each, to tell stalls from queues.

#[path = "../tests/bus_support/mod.rs"]
mod bus_support;

use bus_support::{BusServer, Client};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tags stored: from our file's kept totals (a `count(*)` of the view
/// reads every tag, and the benches poll this every few milliseconds on
/// the same two cores as the worker).
fn count(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT COALESCE(sum(count), 0) FROM ttp_technique_totals",
                [],
                |r| r.get(0),
            )
            .or_else(|_| c.query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get(0)))
        })
        .unwrap_or(0)
}

/// `TTP_BENCH_BATCH=N` runs the worker with `--batch N` (bus events per
/// transaction; the worker's default otherwise).
fn batch_args() -> Vec<String> {
    match std::env::var("TTP_BENCH_BATCH") {
        Ok(n) => vec!["--batch".into(), n],
        Err(_) => Vec::new(),
    }
}

fn event(i: usize) -> serde_json::Value {
    json!({"type": "session.ended", "payload": {
        "session_id": format!("b-{i}"), "attacker_uuid": format!("att-{}", i % 500),
        "decky_id": "decky-01", "commands": ["cat /etc/passwd"]}})
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("../shared/reference/decnet-rules");
    if !rules.is_dir() {
        // Visible when skipped; a failure under CI, where ../shared must be.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "../shared/reference/decnet-rules is missing (under CI=true a missing fixture is a failure)"
        );
        eprintln!("skipped: ../shared is absent (DECNET's rules)");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // as a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let work = tempfile::TempDir::new().unwrap();
    // The worker alone first: the bus server's threads of the parts below
    // go on draining their queues for a while after the server is
    // dropped, and took half of the two cores from it.
    worker_alone(&rules, work.path(), full);
    let socket = work.path().join("bus.sock");
    let db = work.path().join("bench.db");
    let _server = BusServer::start(&socket);
    let observer = Client::connect(&socket, &["ttp.tagged", "system.ttp.health"]);
    let mut publisher = Client::connect(&socket, &[]);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["worker", "--heartbeat-secs", "1"])
        .args(batch_args())
        .arg("--bus")
        .arg(&socket)
        .arg("--rules")
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .env(
            "TTP_LOG",
            std::env::var("TTP_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while observer.count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Throughput.
    let n = if full { 100_000 } else { 2_000 };
    let started = Instant::now();
    for i in 0..n {
        publisher.publish("attacker.session.ended", &event(i));
    }
    let published = started.elapsed();
    let mut last = (0, Instant::now());
    loop {
        let c = count(&db);
        if c != last.0 {
            last = (c, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = last.1.duration_since(started);
    println!(
        "throughput: {} of {n} events stored in {:.2} s = {:.0} events/s (published in {:.2} s; the bus drops the oldest frames of a connection whose queue of 1,024 is full)",
        last.0,
        elapsed.as_secs_f64(),
        last.0 as f64 / elapsed.as_secs_f64(),
        published.as_secs_f64()
    );

    // Latency at 5,000 events/s.
    let m = if full { 25_000 } else { 500 };
    let base = observer.count();
    // Ten events every 2 ms, sleeping in between: a spinning pacer would
    // take one of the two cores from the bus server and the worker.
    let mut sent = Vec::with_capacity(m);
    let start = Instant::now();
    for i in 0..m {
        if i % 10 == 0 {
            let at = start + Duration::from_millis(2) * (i / 10) as u32;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        sent.push(Instant::now());
        publisher.publish("attacker.session.ended", &event(n + i));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while observer.count() < base + m && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Each announced event of this run: its index and its latency (ms).
    let timed: Vec<(usize, f64)> = observer
        .received_at()
        .iter()
        .filter_map(|(t, body, at)| {
            if t != "ttp.tagged" {
                return None;
            }
            let sid = body["payload"]["session_id"].as_str()?;
            let i: usize = sid.strip_prefix("b-")?.parse().ok()?;
            let i = i.checked_sub(n)?;
            Some((i, at.duration_since(sent[i]).as_secs_f64() * 1000.0))
        })
        .collect();
    let mut latencies: Vec<f64> = timed.iter().map(|&(_, ms)| ms).collect();
    // The worst latency of each second of the run, to tell a steady queue
    // from a stall.
    let mut by_second = vec![0.0f64; m.div_ceil(5000)];
    for &(i, ms) in &timed {
        let slot = &mut by_second[i / 5000];
        *slot = slot.max(ms);
    }
    if let Ok(path) = std::env::var("TTP_BENCH_TRACE") {
        let trace: String = timed
            .iter()
            .map(|&(i, ms)| {
                let offset = sent[i].duration_since(start).as_secs_f64() * 1000.0;
                format!("{offset:.3} {ms:.3}\n")
            })
            .collect();
        std::fs::write(&path, trace).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    if latencies.is_empty() {
        println!("latency: no announcement received");
    } else {
        println!(
            "publish -> commit -> announcement at 5,000 events/s: {} events, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            pct(0.5),
            pct(0.99),
            latencies[latencies.len() - 1]
        );
        let worst: Vec<String> = by_second.iter().map(|ms| format!("{ms:.0}")).collect();
        println!("worst latency of each second (ms): {}", worst.join(", "));
    }
    let _ = worker.kill();
    let _ = worker.wait();
    drop(_server);
}

/// The worker's own capacity: a relay that is not a bus server but plays
/// one to a single client, writing pre-encoded `EVT` frames as fast as the
/// worker takes them (back-pressure from its bounded queue) and reading
/// its announcements; no other process competes for the cores.
fn worker_alone(rules: &Path, dir: &Path, full: bool) {
    use std::io::{Read, Write};
    let socket = dir.join("relay.sock");
    let db = dir.join("alone.db");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let n = if full { 100_000 } else { 2_000 };
    let mut frames = Vec::new();
    for i in 0..n {
        let env = json!({"v": 1, "id": format!("{i:032x}"), "topic": "attacker.session.ended",
            "type": "session.ended", "ts": 1.0, "payload": event(i)["payload"]});
        frames.extend(
            ttp_engine::bus::Frame::json(
                ttp_engine::bus::Verb::Evt,
                "attacker.session.ended",
                &env,
            )
            .encode(),
        );
    }
    let mut worker = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["worker", "--heartbeat-secs", "60"])
        .args(batch_args())
        .arg("--bus")
        .arg(&socket)
        .arg("--rules")
        .arg(rules)
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    // Its announcements are read and thrown away.
    let mut reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(reader.read(&mut buf), Ok(k) if k > 0) {}
    });
    let started = Instant::now();
    stream.write_all(&frames).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&db) < n as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    println!(
        "worker alone: {} events stored in {:.2} s = {:.0} events/s (one tag and two announcements per event)",
        count(&db),
        elapsed.as_secs_f64(),
        count(&db) as f64 / elapsed.as_secs_f64()
    );
    let _ = worker.kill();
    let _ = worker.wait();
}
