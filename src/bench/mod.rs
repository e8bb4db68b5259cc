//! `ttp bench`: how fast a rule set matches an event set, with and without
//! SQLite writes, per-event latency, prefilter effectiveness, the costliest
//! rules, and scaling across threads.

pub mod correlation;
pub mod fixtures;
pub mod grow;
pub mod http;

use crate::engine::{EvalStats, Evaluation, Snapshot};
use crate::event::TaggerEvent;
use crate::lifter::Lifter;
use crate::rule::{Matcher, Rule};
use crate::store::{StoreError, StoreOptions, TagWriter};
use crate::tag::{Tag, TagConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Passes over the event set.
    pub repeat: usize,
    /// Measure scaling up to this many threads.
    pub threads: usize,
    /// Also measure matching plus SQLite writes (into a scratch file).
    pub with_db: bool,
    /// Rows in the cost table.
    pub top: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            repeat: 3,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            with_db: true,
            top: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub events_per_s: f64,
    pub tags_per_s: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleCost {
    pub rule_id: String,
    pub evaluations: u64,
    pub total_ms: f64,
    pub mean_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub rules: usize,
    pub events: usize,
    pub repeat: usize,
    pub matching: Throughput,
    pub with_sqlite: Option<Throughput>,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub rules_evaluated_per_event: f64,
    pub rule_costs: Vec<RuleCost>,
    /// (threads, events/s) for 1..=threads.
    pub scaling: Vec<(usize, f64)>,
    /// The correlation stage, when the rules hold correlations.
    pub correlation: Option<correlation::CorrelationReport>,
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Times the evaluation of each rule's predicate over the events that reach
/// it after prefiltering.
fn rule_costs(snap: &Snapshot, events: &[TaggerEvent], top: usize) -> Vec<RuleCost> {
    let mut costs: HashMap<&str, (u64, Duration)> = HashMap::new();
    for ev in events {
        for lifter in Lifter::ALL {
            let index = snap.rule_index(lifter);
            if !index.handles_kind(&ev.source_kind) {
                continue;
            }
            let rules: Vec<&Arc<Rule>> = if lifter == Lifter::RuleEngine {
                index.candidates(&ev.source_kind, &ev.payload)
            } else {
                index.all_for_kind(&ev.source_kind).collect()
            };
            for rule in rules {
                let t0 = Instant::now();
                let _ = match &rule.matcher {
                    Matcher::Lifter(l) => l.fires(&ev.payload),
                    _ => rule
                        .engine_matches(&ev.source_kind, &ev.payload)
                        .unwrap_or(false),
                };
                let e = costs.entry(rule.rule_id.as_str()).or_default();
                e.0 += 1;
                e.1 += t0.elapsed();
            }
        }
    }
    let mut out: Vec<RuleCost> = costs
        .into_iter()
        .map(|(id, (n, d))| RuleCost {
            rule_id: id.to_string(),
            evaluations: n,
            total_ms: d.as_secs_f64() * 1000.0,
            mean_ns: d.as_nanos() as f64 / n.max(1) as f64,
        })
        .collect();
    out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    out.truncate(top);
    out
}

fn matching_pass(snap: &Snapshot, config: &TagConfig, events: &[TaggerEvent]) -> (u64, EvalStats) {
    let mut tags: Vec<Tag> = Vec::with_capacity(64);
    let mut emitted = 0u64;
    let mut stats = EvalStats::default();
    for ev in events {
        tags.clear();
        stats.add(snap.tag_event(ev, config, Evaluation::Indexed, &mut tags));
        emitted += tags.len() as u64;
    }
    (emitted, stats)
}

pub(crate) fn scratch_db() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("ttp-bench-{}-{nanos}-{n}.db", std::process::id()))
}

fn sqlite_pass(
    snap: &Snapshot,
    config: &TagConfig,
    events: &[TaggerEvent],
) -> Result<Throughput, StoreError> {
    let path = scratch_db();
    let result = (|| {
        let writer = TagWriter::start(&path, &StoreOptions::default(), None)?;
        let t0 = Instant::now();
        let mut batch = Vec::new();
        let mut emitted = 0u64;
        for (i, ev) in events.iter().enumerate() {
            snap.tag_event(ev, config, Evaluation::Indexed, &mut batch);
            if i % 4096 == 4095 {
                emitted += batch.len() as u64;
                writer.send(std::mem::take(&mut batch))?;
            }
        }
        emitted += batch.len() as u64;
        writer.send(batch)?;
        writer.finish()?;
        let d = t0.elapsed();
        Ok(Throughput {
            events_per_s: rate(events.len() as u64, d),
            tags_per_s: rate(emitted, d),
            seconds: d.as_secs_f64(),
        })
    })();
    remove_db_files(&path);
    result
}

/// Removes a scratch database and its WAL files.
pub(crate) fn remove_db_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Matching throughput with `threads` threads sharing one snapshot.
fn threaded(
    snap: &Snapshot,
    config: &TagConfig,
    events: &[TaggerEvent],
    threads: usize,
    repeat: usize,
) -> f64 {
    let chunk = events.len().div_ceil(threads.max(1)).max(1);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for part in events.chunks(chunk) {
            s.spawn(move || {
                for _ in 0..repeat {
                    matching_pass(snap, config, part);
                }
            });
        }
    });
    rate((events.len() * repeat) as u64, t0.elapsed())
}

pub fn run(
    rules: &[Arc<Rule>],
    events: &[TaggerEvent],
    options: &BenchOptions,
) -> Result<BenchReport, StoreError> {
    let snap = Snapshot::build(rules);
    let config = TagConfig::default();
    let repeat = options.repeat.max(1);
    // Warm-up (lazy statics, caches), then the timed passes.
    matching_pass(&snap, &config, events);
    let t0 = Instant::now();
    let mut emitted = 0;
    let mut stats = EvalStats::default();
    for _ in 0..repeat {
        let (e, s) = matching_pass(&snap, &config, events);
        emitted += e;
        stats.add(s);
    }
    let d = t0.elapsed();
    let total = (events.len() * repeat) as u64;
    let matching = Throughput {
        events_per_s: rate(total, d),
        tags_per_s: rate(emitted, d),
        seconds: d.as_secs_f64(),
    };
    let mut latencies: Vec<u64> = Vec::with_capacity(events.len());
    let mut tags = Vec::new();
    for ev in events {
        tags.clear();
        let t = Instant::now();
        snap.tag_event(ev, &config, Evaluation::Indexed, &mut tags);
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let with_sqlite = if options.with_db {
        Some(sqlite_pass(&snap, &config, events)?)
    } else {
        None
    };
    let scaling = (1..=options.threads.max(1))
        .map(|n| (n, threaded(&snap, &config, events, n, repeat)))
        .collect();
    Ok(BenchReport {
        rules: rules.len(),
        events: events.len(),
        repeat,
        matching,
        with_sqlite,
        p50_ns: pct(0.5),
        p99_ns: pct(0.99),
        rules_evaluated_per_event: stats.rules_evaluated as f64 / total.max(1) as f64,
        rule_costs: rule_costs(&snap, events, options.top),
        scaling,
        correlation: correlation::run(&snap, events)?,
    })
}

impl BenchReport {
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} rules, {} events x {} passes\n\
             matching:           {:>12.0} events/s  {:>12.0} tags/s\n",
            self.rules,
            self.events,
            self.repeat,
            self.matching.events_per_s,
            self.matching.tags_per_s
        );
        if let Some(w) = &self.with_sqlite {
            s.push_str(&format!(
                "matching + SQLite:  {:>12.0} events/s  {:>12.0} tags/s\n",
                w.events_per_s, w.tags_per_s
            ));
        }
        s.push_str(&format!(
            "latency per event:  p50 {:.2} us, p99 {:.2} us\n\
             rules evaluated per event after prefiltering: {:.2}\n",
            self.p50_ns as f64 / 1000.0,
            self.p99_ns as f64 / 1000.0,
            self.rules_evaluated_per_event
        ));
        for (n, r) in &self.scaling {
            s.push_str(&format!("threads {n}: {r:>12.0} events/s\n"));
        }
        if let Some(c) = &self.correlation {
            s.push_str(&c.render());
        }
        s.push_str("costliest rules (predicate time over this event set):\n");
        s.push_str(&format!(
            "  {:<14} {:>12} {:>12} {:>10}\n",
            "rule", "evaluations", "total ms", "mean ns"
        ));
        for c in &self.rule_costs {
            s.push_str(&format!(
                "  {:<14} {:>12} {:>12.3} {:>10.0}\n",
                c.rule_id, c.evaluations, c.total_ms, c.mean_ns
            ));
        }
        s
    }
}
