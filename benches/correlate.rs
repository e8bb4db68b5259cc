//! The correlation stage's windows alone (issue #14's speed figure, before
//! the stage is wired into the engine): 1,000,000 events of 10,000
//! attackers through 50 correlation rules (10 per source kind over 5 kinds,
//! every kind of correlation), each event observed by the rules of its kind
//! whose selection it passes (half of them here). Prints events/s and
//! observations/s, firings, groups held and evictions.
//! `cargo bench --bench correlate`; under `cargo test` it runs 20,000 events.

use std::time::Instant;

// The `ttp` binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ttp_engine::correlate::keys::Keys;
use ttp_engine::correlate::texts::Texts;
use ttp_engine::correlate::window::{Kind, Observation, Settings, Threshold, Windows};

fn main() {
    let events: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        20_000
    };
    let kinds = [
        (Kind::EventCount, Some(Threshold::AtLeast(10.0)), 0),
        (Kind::ValueCount, Some(Threshold::AtLeast(5.0)), 0),
        (Kind::ValueSum, Some(Threshold::Above(1_000.0)), 0),
        (Kind::Temporal, None, 3),
        (Kind::TemporalOrdered, None, 3),
    ];
    let mut rules: Vec<Windows> = (0..50)
        .map(|i| {
            let (kind, threshold, steps) = kinds[i % kinds.len()];
            Windows::new(Settings {
                kind,
                window_ms: 300_000,
                threshold,
                steps,
                fields: 1,
                lateness_ms: 5_000,
                max_groups: 100_000,
            })
        })
        .collect();
    // Every rule groups by attacker: one key class, a column per rule.
    let mut keys = Keys::new(rules.len());
    let attackers: Vec<String> = (0..10_000).map(|i| format!("attacker-{i:05}")).collect();
    let users: Vec<String> = (0..64).map(|i| format!("user{i}")).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut texts = Texts::default();
    let started = Instant::now();
    let (mut observed, mut fired) = (0u64, 0u64);
    for n in 0..events {
        let r = next();
        let attacker = &attackers[(r % 10_000) as usize];
        let kind = (r >> 20) as usize % 5;
        let time_ms = (n as i64) * 2 + ((r >> 40) % 3) as i64;
        // One source id per event, shared by its entries, as the stage
        // makes it.
        let source = texts.sources.add(&n.to_string());
        // The key looked up once per event, as the stage does.
        let id = keys.id(attacker);
        for (i, w) in rules.iter_mut().enumerate().skip(kind * 10).take(10) {
            // Half of a kind's rules select the event.
            if (r >> (i % 10)) & 1 == 0 {
                continue;
            }
            observed += 1;
            // The value entered per rule, as the stage does.
            let value = texts.values.id(&users[(r >> 32) as usize % 64]);
            let obs = Observation {
                time_ms,
                value: Some(value),
                amount: ((r >> 48) % 100) as f64,
                step: (r >> 56) as usize % 3,
                source,
            };
            if w.observe(&obs, &mut keys, id, i, &texts).is_some() {
                fired += 1;
            }
        }
        keys.forget_unheld(id);
        // The stage's sweep of the ids no entry holds any more.
        if texts.sweep_due() {
            let mut marks = texts.marks();
            for w in &rules {
                w.mark_texts(&mut marks);
            }
            texts.sweep(marks);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let groups: usize = rules.iter().map(Windows::len).sum();
    let evicted: u64 = rules.iter().map(|w| w.stats.evicted).sum();
    println!(
        "{events} events, {observed} observations in {secs:.2} s: {:.0} events/s, {:.0} observations/s; \
         {fired} firings; {groups} groups held; {evicted} evicted",
        events as f64 / secs,
        observed as f64 / secs
    );
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => {
            for line in status.lines().filter(|l| l.starts_with("VmHWM")) {
                println!("peak RSS: {}", line.trim_start_matches("VmHWM:").trim());
            }
        }
        Err(e) => println!("peak RSS: not available ({e})"),
    }
}
