//! `ttp bench`'s correlation figures: the correlation stage alone over the
//! event set, its memory, and what checkpointing its windows costs per
//! commit (the durable windows of `ttp run` / `ttp worker`).
//!
//! As in the engine, the stage takes each event right after its
//! single-event tags are computed: that part runs off the clock, and only
//! the stage (and the checkpoints) is timed. (Tagging every event first and
//! then timing the stage over all of them measured the misses of reading a
//! million events back from memory: 1.3–1.6× slower.)

use crate::correlate::durable;
use crate::correlate::stage::{Context, Correlator};
use crate::engine::{Evaluation, Snapshot};
use crate::event::TaggerEvent;
use crate::state::RuleStates;
use crate::store::{StoreError, StoreOptions};
use crate::tag::{Tag, TagConfig};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What the correlation stage did and cost.
#[derive(Debug, Clone, Serialize)]
pub struct CorrelationReport {
    pub rules: u64,
    pub events: usize,
    pub events_per_s: f64,
    pub observations: u64,
    pub fired: u64,
    pub groups: u64,
    pub evicted: u64,
    /// The process's peak resident memory after the stage ran (kB), where
    /// `/proc` tells.
    pub peak_rss_kb: Option<u64>,
    pub checkpoint: CheckpointCost,
}

/// Checkpointing into SQLite as the daemons do: every
/// [`crate::run::CHECKPOINT_EVERY`], and at the end.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCost {
    pub commits: usize,
    pub rows_per_commit: f64,
    pub ms_per_commit_mean: f64,
    pub ms_per_commit_p99: f64,
    /// Events per second of the stage with the checkpoints taken and saved.
    pub events_per_s: f64,
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The stage's figures, or `None` when the rules hold no correlation.
pub fn run(
    snap: &Snapshot,
    events: &[TaggerEvent],
) -> Result<Option<CorrelationReport>, StoreError> {
    if snap.correlations().is_empty() {
        return Ok(None);
    }
    let config = TagConfig::default();
    let states = RuleStates::default();
    let created_at = crate::tag::now_timestamp();
    let cx = Context {
        states: &states,
        now: crate::state::now_unix(),
        config: &config,
        created_at: &created_at,
    };
    let mut out = Vec::new();
    let mut stage = Correlator::default();
    stage.sync(snap.correlations());
    let mut d = Duration::ZERO;
    each_tagged(snap, events, &config, |_, ev, tags| {
        out.clear();
        let t0 = Instant::now();
        stage.observe(ev, tags, &cx, &mut out);
        d += t0.elapsed();
    });
    let stats = stage.stats();
    let peak = peak_rss_kb();
    drop(stage);

    // Again, durable: the changes of each batch saved in one transaction.
    let path = super::scratch_db();
    let result = checkpointed(snap, events, &config, &cx, &path);
    super::remove_db_files(&path);
    let (commits, rows, durable_d) = result?;
    let mut ms: Vec<f64> = commits.iter().map(|c| c.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len().max(1);
    Ok(Some(CorrelationReport {
        rules: stats.rules,
        events: events.len(),
        events_per_s: events.len() as f64 / d.as_secs_f64().max(1e-9),
        observations: stats.observed,
        fired: stats.fired,
        groups: stats.groups,
        evicted: stats.evicted,
        peak_rss_kb: peak,
        checkpoint: CheckpointCost {
            commits: commits.len(),
            rows_per_commit: rows as f64 / n as f64,
            ms_per_commit_mean: ms.iter().sum::<f64>() / n as f64,
            ms_per_commit_p99: ms
                .get(((ms.len() as f64 - 1.0) * 0.99).round() as usize)
                .copied()
                .unwrap_or(0.0),
            events_per_s: events.len() as f64 / durable_d.as_secs_f64().max(1e-9),
        },
    }))
}

/// Calls `step(i, event, its single-event tags)` for each event, right
/// after computing them. The event is a fresh copy, made just before: the
/// engine parses each event just before tagging and correlating it, while
/// the bench's events were all read first (a cold payload costs cache
/// misses the engine does not pay).
fn each_tagged(
    snap: &Snapshot,
    events: &[TaggerEvent],
    config: &TagConfig,
    mut step: impl FnMut(usize, &TaggerEvent, &[Tag]),
) {
    let mut tags = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let ev = ev.clone();
        tags.clear();
        snap.tag_event(&ev, config, Evaluation::Indexed, &mut tags);
        step(i, &ev, &tags);
    }
}

/// The stage with durable windows, the changes of the events of each
/// checkpoint interval saved in one transaction into `path` (the interval
/// runs on the wall clock, tagging included, as in the daemons): each
/// commit's time, the rows written, the time of the stage and commits.
fn checkpointed(
    snap: &Snapshot,
    events: &[TaggerEvent],
    config: &TagConfig,
    cx: &Context,
    path: &std::path::Path,
) -> Result<(Vec<Duration>, usize, Duration), StoreError> {
    let conn = crate::store::open(path, &StoreOptions::default())?;
    let sqlite = |e| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    let mut stage = Correlator::default();
    stage.make_durable(Default::default());
    stage.sync(snap.correlations());
    let (mut commits, mut rows, mut out) = (Vec::new(), 0usize, Vec::new());
    let mut spent = Duration::ZERO;
    let mut last = Instant::now();
    let mut failed = None;
    each_tagged(snap, events, config, |i, ev, tags| {
        if failed.is_some() {
            return;
        }
        out.clear();
        let t0 = Instant::now();
        stage.observe(ev, tags, cx, &mut out);
        spent += t0.elapsed();
        let due = (i + 1) % crate::run::BATCH_EVENTS == 0
            && last.elapsed() >= crate::run::CHECKPOINT_EVERY;
        if due || i + 1 == events.len() {
            last = Instant::now();
            let c0 = Instant::now();
            let delta = stage.take_delta();
            rows += delta.rows();
            let saved = crate::store::write_transaction(&conn).and_then(|tx| {
                durable::save(&tx, &delta)?;
                tx.commit()
            });
            if let Err(e) = saved {
                failed = Some(e);
                return;
            }
            let took = c0.elapsed();
            commits.push(took);
            spent += took;
        }
    });
    match failed {
        Some(e) => Err(sqlite(e)),
        None => Ok((commits, rows, spent)),
    }
}

impl CorrelationReport {
    pub fn render(&self) -> String {
        let c = &self.checkpoint;
        format!(
            "correlation stage:  {:>12.0} events/s ({} rules, {} observations, {} firings, {} groups held, {} evicted{})\n\
             with checkpoints:   {:>12.0} events/s; {} commits of {:.0} window rows, {:.2} ms mean, {:.2} ms p99\n",
            self.events_per_s,
            self.rules,
            self.observations,
            self.fired,
            self.groups,
            self.evicted,
            self.peak_rss_kb
                .map(|k| format!(", peak RSS {} MB", k / 1024))
                .unwrap_or_default(),
            c.events_per_s,
            c.commits,
            c.rows_per_commit,
            c.ms_per_commit_mean,
            c.ms_per_commit_p99
        )
    }
}
