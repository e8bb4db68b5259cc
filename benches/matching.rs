//! Matching throughput: the engine tagging a fixed, realistic event mix
//! (`examples/events.jsonl`) with the shipped pack, and with DECNET's pack
//! when `../shared` is present. Run with `cargo bench`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use ttp_engine::engine::{Engine, EvalStats};
use ttp_engine::event::{EventReader, Item, TaggerEvent};
use ttp_engine::rule::load::load_dir;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::tag::TagConfig;

fn events(root: &Path) -> Vec<TaggerEvent> {
    let file =
        std::fs::File::open(root.join("examples/events.jsonl")).expect("examples/events.jsonl");
    let mut reader = EventReader::new(std::io::BufReader::new(file));
    let mut out = Vec::new();
    while let Ok(Some(item)) = reader.next_item() {
        if let Item::Event(_, ev) = item {
            out.push(ev);
        }
    }
    out
}

fn bench_pack(c: &mut Criterion, name: &str, rules_dir: &Path, events: &[TaggerEvent]) {
    let loaded = load_dir(rules_dir, LoadOptions::default()).expect("rules directory");
    let engine = Engine::new(&loaded.rules, TagConfig::default());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("tag_events", |b| {
        let mut tags = Vec::with_capacity(64);
        b.iter(|| {
            let mut stats = EvalStats::default();
            for ev in events {
                tags.clear();
                stats.add(engine.tag_event(black_box(ev), &mut tags));
            }
            black_box(stats)
        })
    });
    group.finish();
}

fn matching(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let events = events(root);
    bench_pack(c, "shipped_pack", &root.join("rules"), &events);
    let decnet = root.join("../shared/reference/decnet-rules");
    if decnet.is_dir() {
        bench_pack(c, "decnet_pack", &decnet, &events);
    } else {
        eprintln!("skipped the DECNET pack: ../shared is absent");
    }
}

criterion_group!(benches, matching);
criterion_main!(benches);
