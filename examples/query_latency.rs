//! Times the questions users ask most, through the library `ttp query` and
//! `ttp serve` use, on one pooled connection (as `ttp serve` holds them):
//! `cargo run --release --example query_latency -- DB ATTACKER SINCE [UUID]`
//! (SINCE as `ttp query --since` takes it). Each query runs once to warm
//! the connection, then five times; the median is printed with the row
//! count. The figures go to `docs/performance.md`.

use std::path::Path;
use std::time::Instant;
use ttp_engine::query::{Reader, Scope, TagFilter, Window};

// The `ttp` binary's allocator, so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_ms(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let rows = f();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[2], rows)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, attacker, since, ..] = args.as_slice() else {
        eprintln!("usage: query_latency DB ATTACKER SINCE [UUID]");
        std::process::exit(2);
    };
    let opened = Instant::now();
    let reader = match Reader::open(Path::new(db)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "open (schema read): {:.1} ms",
        opened.elapsed().as_secs_f64() * 1000.0
    );
    let window = match Window::parse(Some(since), None, None, time::OffsetDateTime::now_utc()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let report = |name: &str, (ms, rows): (f64, usize)| {
        println!("{name:<48} {ms:>9.2} ms  {rows:>8} rows");
    };
    let by_attacker = TagFilter {
        attacker: Some(attacker.clone()),
        ..Default::default()
    };
    report(
        "all tags of one attacker",
        median_ms(|| reader.tags(&by_attacker).map(|t| t.len()).unwrap_or(0)),
    );
    let newest = TagFilter {
        limit: Some(50),
        ..by_attacker.clone()
    };
    report(
        "one attacker's newest 50 tags",
        median_ms(|| reader.tags(&newest).map(|t| t.len()).unwrap_or(0)),
    );
    report(
        "one attacker's tag count",
        median_ms(|| reader.count_tags(&by_attacker).unwrap_or(0) as usize),
    );
    report(
        "technique rollup of one attacker",
        median_ms(|| {
            reader
                .rollup(&Scope::Attacker(attacker.clone()), &Window::default())
                .map(|r| r.len())
                .unwrap_or(0)
        }),
    );
    report(
        &format!("tags per technique since {since}"),
        median_ms(|| {
            reader
                .rollup(&Scope::Fleet, &window)
                .map(|r| r.len())
                .unwrap_or(0)
        }),
    );
    report(
        "fleet rollup (all time)",
        median_ms(|| {
            reader
                .rollup(&Scope::Fleet, &Window::default())
                .map(|r| r.len())
                .unwrap_or(0)
        }),
    );
    let fleet_newest = TagFilter {
        limit: Some(50),
        ..Default::default()
    };
    report(
        "newest 50 tags of the fleet",
        median_ms(|| reader.tags(&fleet_newest).map(|t| t.len()).unwrap_or(0)),
    );
    if let Some(uuid) = args.get(3) {
        let conn = ttp_engine::store::open_reader(Path::new(db), &Default::default())
            .unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
        report(
            "one tag by UUID",
            median_ms(|| {
                conn.prepare_cached("SELECT evidence FROM ttp_tag WHERE uuid = ?1")
                    .and_then(|mut s| s.query_map([uuid], |_| Ok(())).map(|r| r.count()))
                    .unwrap_or(0)
            }),
        );
    }
}
