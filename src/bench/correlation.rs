//! `ttp bench`'s correlation figures: the correlation stage alone over the
//! event set (each event's single-event tags computed beforehand, as the
//! stage receives them), its memory, and what checkpointing its windows
//! costs per commit (the durable windows of `ttp run` / `ttp worker`).

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
    // What the taggers emit for each event, computed before the clock runs.
    let fired: Vec<Vec<Tag>> = events
        .iter()
        .map(|ev| {
            let mut tags = Vec::new();
            snap.tag_event(ev, &config, Evaluation::Indexed, &mut tags);
            tags
        })
        .collect();
    let mut out = Vec::new();
    let mut stage = Correlator::default();
    stage.sync(snap.correlations());
    let t0 = Instant::now();
    for (ev, tags) in events.iter().zip(&fired) {
        out.clear();
        stage.observe(ev, tags, &cx, &mut out);
    }
    let d = t0.elapsed();
    let stats = stage.stats();
    let peak = peak_rss_kb();
    drop(stage);

    // Again, durable: the changes of each batch saved in one transaction.
    let path = super::scratch_db();
    let result = checkpointed(snap, events, &fired, &cx, &path);
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

/// The stage with durable windows, the changes of each batch of events
/// saved in one transaction into `path`: each commit's time, the rows
/// written, the whole time.
fn checkpointed(
    snap: &Snapshot,
    events: &[TaggerEvent],
    fired: &[Vec<Tag>],
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
    let t0 = Instant::now();
    let mut last = t0;
    for (i, (ev, tags)) in events.iter().zip(fired).enumerate() {
        out.clear();
        stage.observe(ev, tags, cx, &mut out);
        let due = (i + 1) % crate::run::BATCH_EVENTS == 0
            && last.elapsed() >= crate::run::CHECKPOINT_EVERY;
        if due || i + 1 == events.len() {
            last = Instant::now();
            let c0 = Instant::now();
            let delta = stage.take_delta();
            rows += delta.rows();
            let tx = crate::store::write_transaction(&conn).map_err(sqlite)?;
            durable::save(&tx, &delta).map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
            commits.push(c0.elapsed());
        }
    }
    Ok((commits, rows, t0.elapsed()))
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
