//! Load on `ttp serve` while `ttp run` writes: starts the release
//! `ttp run --serve` on a database, feeds it events at a steady rate, and
//! runs many keep-alive clients against the API for a fixed time.
//!
//! ```sh
//! cargo build --release --bin ttp --example serve_load --example gen_mix
//! target/release/examples/gen_mix 720000 > mix.jsonl
//! target/release/ttp tag --rules rules --db big.db < mix.jsonl     # ~1M tags
//! target/release/examples/gen_mix 100000 9 > live.jsonl
//! target/release/examples/serve_load --db big.db --events live.jsonl \
//!     --clients 200 --secs 10 --rate 2000
//! ```
//! `--fleet-only` asks only for the fleet rollup.
//! Prints requests, errors and p50/p90/p99 per route; exits 1 on any error.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ttp_engine::bench::http::{run, LoadPlan};

struct Args {
    db: PathBuf,
    events: PathBuf,
    rules: PathBuf,
    ttp: PathBuf,
    clients: usize,
    secs: u64,
    rate: u64,
    /// Only the fleet rollup, or a mix of routes.
    fleet_only: bool,
}

fn args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let release = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("ttp"))
        .unwrap_or_else(|| PathBuf::from("ttp"));
    let mut a = Args {
        db: PathBuf::from("big.db"),
        events: PathBuf::from("live.jsonl"),
        rules: PathBuf::from("rules"),
        ttp: release,
        clients: 200,
        secs: 10,
        rate: 2000,
        fleet_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => a.db = value()?.into(),
            "--events" => a.events = value()?.into(),
            "--rules" => a.rules = value()?.into(),
            "--ttp" => a.ttp = value()?.into(),
            "--clients" => a.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--secs" => a.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--fleet-only" => a.fleet_only = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve_load: {e}");
            std::process::exit(2);
        }
    };
    let attacker: String =
        rusqlite::Connection::open_with_flags(&a.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT attacker_uuid FROM ttp_tag WHERE attacker_uuid IS NOT NULL LIMIT 1",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or_else(|e| {
                eprintln!("serve_load: {}: {e}", a.db.display());
                std::process::exit(2);
            });
    let tags: i64 = rusqlite::Connection::open(&a.db)
        .and_then(|c| c.query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get(0)))
        .unwrap_or(0);

    let mut child = Command::new(&a.ttp)
        .args(["run", "--serve", "127.0.0.1:0", "--rules"])
        .arg(&a.rules)
        .arg("--db")
        .arg(&a.db)
        .env("TTP_LOG", "warn,ttp_engine::serve=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!("serve_load: cannot start {}: {e}", a.ttp.display());
            std::process::exit(2);
        });
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                let _ = tx.send(port.parse::<u16>().unwrap_or(0));
            } else {
                eprintln!("ttp run: {line}");
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            eprintln!("serve_load: ttp run --serve did not start");
            std::process::exit(2);
        });
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    // The writer: events at a steady rate until the load ends.
    let stop = Arc::new(AtomicBool::new(false));
    let fed = Arc::new(AtomicU64::new(0));
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = {
        let (stop, fed, events, rate) = (stop.clone(), fed.clone(), a.events.clone(), a.rate);
        std::thread::spawn(move || {
            let Ok(file) = std::fs::File::open(&events) else {
                eprintln!("serve_load: cannot read {}", events.display());
                return;
            };
            let start = Instant::now();
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if stop.load(Ordering::Relaxed) || writeln!(stdin, "{line}").is_err() {
                    break;
                }
                let n = fed.fetch_add(1, Ordering::Relaxed) + 1;
                let due = Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };

    let metrics = |addr| {
        std::net::TcpStream::connect(addr)
            .and_then(|mut s| {
                use std::io::Read;
                write!(
                    s,
                    "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            })
            .unwrap_or_default()
    };
    let new_before = metric(&metrics(addr), "ttp_tags_new_total");
    let fleet = "/api/v1/ttp/techniques".to_string();
    let plan = LoadPlan {
        addr,
        clients: a.clients,
        duration: Duration::from_secs(a.secs),
        paths: if a.fleet_only {
            vec![fleet.clone()]
        } else {
            vec![
                fleet.clone(),
                fleet.clone(),
                fleet.clone(),
                format!("/api/v1/ttp/by-attacker/{attacker}"),
                fleet.clone(),
                "/api/v1/ttp/export/navigator".into(),
                fleet.clone(),
                format!("/api/v1/ttp/tags/by-attacker/{attacker}/T1110?limit=50"),
            ]
        },
        token: None,
    };
    println!(
        "{} clients for {} s on {} ({tags} tags) while ttp run writes {} events/s",
        a.clients,
        a.secs,
        a.db.display(),
        a.rate
    );
    let report = run(&plan);
    let new_after = metric(&metrics(addr), "ttp_tags_new_total");
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let status = child.wait();
    print!("{}", report.render());
    println!(
        "ttp run meanwhile: {} events fed, {} new tags stored; exit {:?}",
        fed.load(Ordering::Relaxed),
        new_after.saturating_sub(new_before),
        status.ok().and_then(|s| s.code())
    );
    if report.error_count() > 0 {
        std::process::exit(1);
    }
}
