//! `ttp bench --grow N`: the same events stored N times into one file, each
//! batch as new tags (its events' `source_id`s carry the batch number, so
//! their tag UUIDs are new), to show how the store's rate changes as the
//! file grows, on the user's own rules and events.

use crate::engine::{Evaluation, Snapshot};
use crate::event::TaggerEvent;
use crate::rule::Rule;
use crate::run::DEFAULT_FLOOR;
use crate::store::{StoreError, StoreOptions, TagWriter};
use crate::tag::TagConfig;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One batch of the growth run.
#[derive(Debug, Clone, Serialize)]
pub struct GrowBatch {
    pub batch: usize,
    /// Tags in the file before this batch.
    pub tags_before: u64,
    pub new_tags: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub tags_per_s: f64,
    /// The database and its WAL after the batch, in bytes.
    pub file_bytes: u64,
}

/// Tags `events` `batches` times into `db` (created if missing; tags
/// already there count as the start; without one, a scratch file removed
/// afterwards), through the one writer, committing each batch before
/// timing the next. `each` sees every batch as it ends.
pub fn grow(
    rules: &[Arc<Rule>],
    events: &[TaggerEvent],
    batches: usize,
    db: Option<&Path>,
    each: impl FnMut(&GrowBatch),
) -> Result<Vec<GrowBatch>, StoreError> {
    match db {
        Some(db) => grow_into(rules, events, batches, db, each),
        None => {
            let path = super::scratch_db();
            let result = grow_into(rules, events, batches, &path, each);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            result
        }
    }
}

fn grow_into(
    rules: &[Arc<Rule>],
    events: &[TaggerEvent],
    batches: usize,
    db: &Path,
    mut each: impl FnMut(&GrowBatch),
) -> Result<Vec<GrowBatch>, StoreError> {
    let snap = Snapshot::build(rules);
    let config = TagConfig::default();
    let new = Arc::new(AtomicU64::new(0));
    let counter = new.clone();
    let writer = TagWriter::start(
        db,
        &StoreOptions::default(),
        Some(Box::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })),
    )?;
    let mut stored = existing(db);
    let mut out = Vec::with_capacity(batches);
    let mut shifted: Vec<TaggerEvent> = events.to_vec();
    for b in 0..batches {
        for (ev, orig) in shifted.iter_mut().zip(events) {
            ev.source_id = format!("{}#grow{b}", orig.source_id);
        }
        let before = new.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let mut pending = Vec::new();
        for (i, ev) in shifted.iter().enumerate() {
            snap.tag_event(ev, &config, Evaluation::Indexed, &mut pending);
            if i % 4096 == 4095 {
                pending.retain(|t| t.confidence >= DEFAULT_FLOOR);
                writer.send(std::mem::take(&mut pending))?;
            }
        }
        pending.retain(|t| t.confidence >= DEFAULT_FLOOR);
        writer.send(pending)?;
        writer.flush()?;
        let d = t0.elapsed().as_secs_f64().max(1e-9);
        let added = new.load(Ordering::Relaxed) - before;
        let batch = GrowBatch {
            batch: b + 1,
            tags_before: stored,
            new_tags: added,
            seconds: d,
            events_per_s: events.len() as f64 / d,
            tags_per_s: added as f64 / d,
            file_bytes: file_bytes(db),
        };
        stored += added;
        each(&batch);
        out.push(batch);
    }
    writer.finish()?;
    Ok(out)
}

fn existing(db: &Path) -> u64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM ttp_tag", [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| n.max(0) as u64)
}

fn file_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// The batches as a table.
pub fn render(batches: &[GrowBatch]) -> String {
    let mut s = String::from(
        "batch   tags before   new tags   seconds   events/s     tags/s   file MB   KB/tag\n",
    );
    for b in batches {
        let total = (b.tags_before + b.new_tags).max(1);
        s.push_str(&format!(
            "{:>5} {:>13} {:>10} {:>9.2} {:>10.0} {:>10.0} {:>9.1} {:>8.2}\n",
            b.batch,
            b.tags_before,
            b.new_tags,
            b.seconds,
            b.events_per_s,
            b.tags_per_s,
            b.file_bytes as f64 / 1e6,
            b.file_bytes as f64 / 1024.0 / total as f64
        ));
    }
    if let (Some(first), Some(last)) = (batches.first(), batches.last()) {
        if batches.len() > 1 && first.tags_per_s > 0.0 {
            s.push_str(&format!(
                "last batch / first batch: {:.2}\n",
                last.tags_per_s / first.tags_per_s
            ));
        }
    }
    s
}
