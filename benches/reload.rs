//! Reload latency: from a rule file saved to the new rule tagging events,
//! through the real watcher (notify + debouncer), `RuleSet`, index rebuild and
//! snapshot swap. Prints p50/p90/p99/max. `cargo bench --bench reload`
//! measures 300 saves; under `cargo test` it runs 5 as a smoke test.

use serde_json::json;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ttp_engine::daemon::watch::{self, ReloadStats, WatchOptions};
use ttp_engine::engine::Engine;
use ttp_engine::event::TaggerEvent;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::ruleset::{Refresh, RuleSet};
use ttp_engine::store::{StoreOptions, TagWriter};
use ttp_engine::tag::TagConfig;

fn rule(version: usize) -> String {
    let tech = if version.is_multiple_of(2) {
        "T1059"
    } else {
        "T1105"
    };
    format!(
        "rule_id: BENCH\nrule_version: {version}\nname: bench\napplies_to: [command]\n\
         match: {{field: command_text, contains: probe}}\n\
         emits: [{{tactic: TA0002, technique_id: {tech}, confidence: 0.5}}]\n"
    )
}

fn main() {
    let iterations = if std::env::args().any(|a| a == "--bench") {
        300
    } else {
        5
    };
    let work = tempfile::TempDir::new().expect("temp dir");
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    // A realistic neighbourhood: the shipped pack beside the edited file.
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    copy_tree(&pack, &rules.join("pack"));
    let file = rules.join("bench.yaml");
    std::fs::write(&file, rule(0)).expect("write");
    let mut set = RuleSet::new(&rules, LoadOptions::default());
    set.refresh(Refresh::Full).expect("load");
    let engine = Arc::new(Engine::new(&set.rules(), TagConfig::default()));
    let writer =
        TagWriter::start(&work.path().join("b.db"), &StoreOptions::default(), None).expect("db");
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (engine, handle, stop) = (engine.clone(), writer.handle(), stop.clone());
        std::thread::spawn(move || {
            watch::run(
                set,
                engine,
                handle,
                WatchOptions::default(),
                stop,
                Arc::new(ReloadStats::default()),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let event = TaggerEvent::from_json(json!({"source_kind":"command","source_id":"p","attacker_uuid":"a","payload":{"command_text":"probe"}}))
        .expect("event");
    let mut samples = Vec::with_capacity(iterations);
    for v in 1..=iterations {
        let want = if v.is_multiple_of(2) {
            "T1059"
        } else {
            "T1105"
        };
        let tmp = rules.join(".bench.yaml.tmp");
        std::fs::write(&tmp, rule(v)).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        let saved = Instant::now();
        loop {
            let mut tags = Vec::new();
            engine.tag_event(&event, &mut tags);
            if tags
                .iter()
                .any(|t| t.rule_id == "BENCH" && t.technique_id == want)
            {
                break;
            }
            assert!(
                saved.elapsed() < Duration::from_secs(10),
                "reload never happened"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(saved.elapsed());
        std::thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = thread.join();
    let _ = writer.finish();
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "reload latency over {} saves (debounce {} ms): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        WatchOptions::default().debounce.as_millis(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&p, to.join(entry.file_name())).expect("copy");
        }
    }
}
