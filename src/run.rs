//! One-shot tagging: events in → engine → tags → SQLite, with a summary.
//! The `ttp tag` command is a thin layer over [`tag_stream`].

use crate::engine::{Engine, EvalStats};
use crate::event::{EventReader, Item, Reject, Rejection};
use crate::rule::load::LoadedRules;
use crate::store::{NewTagSink, StoreError, StoreOptions, TagWriter, WriteStats};
use crate::tag::{Tag, TagConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;
use thiserror::Error;

/// Default confidence floor: tags below it are counted, not written.
pub const DEFAULT_FLOOR: f64 = 0.3;

/// How many rejected lines are reported individually.
pub const REPORTED_REJECTIONS: usize = 5;

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading events: {0}")]
    Input(#[from] std::io::Error),
}

/// Options of a tagging run.
#[derive(Debug, Clone)]
pub struct TagOptions {
    pub floor: f64,
    pub tag_config: TagConfig,
    pub store: StoreOptions,
}

impl Default for TagOptions {
    fn default() -> Self {
        TagOptions {
            floor: DEFAULT_FLOOR,
            tag_config: TagConfig::default(),
            store: StoreOptions::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct TagSummary {
    pub events_read: u64,
    pub rejected: BTreeMap<Reject, u64>,
    /// The first few rejected lines.
    pub first_rejections: Vec<Rejection>,
    pub tags_emitted: u64,
    pub below_floor: u64,
    pub floor: f64,
    pub write: WriteStats,
    pub eval: EvalStats,
    pub rules_loaded: usize,
    pub rules_broken: usize,
}

impl TagSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The multi-line human summary printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "events: {} read, {} rejected",
            self.events_read,
            self.rejected_total()
        );
        if !self.rejected.is_empty() {
            let parts: Vec<String> = self
                .rejected
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            let _ = write!(s, " ({})", parts.join(", "));
        }
        s.push('\n');
        for r in &self.first_rejections {
            let _ = writeln!(s, "  line {}: {}: {}", r.line, r.reason, r.message);
        }
        let _ = writeln!(
            s,
            "tags: {} emitted, {} new, {} already present, {} below the floor {}",
            self.tags_emitted,
            self.write.new,
            self.write.already_present,
            self.below_floor,
            self.floor
        );
        if self.eval.step_limit_hits > 0 {
            let _ = writeln!(
                s,
                "regex: {} matches abandoned at the step limit (counted as no match)",
                self.eval.step_limit_hits
            );
        }
        let _ = write!(
            s,
            "rules: {} loaded, {} broken",
            self.rules_loaded, self.rules_broken
        );
        s
    }
}

/// Events between two hand-offs to the writer.
const BATCH_EVENTS: usize = 4096;

/// Tags every event of `input` with `engine` and writes new tags to `db`.
/// `progress` is called now and then with (events read, bytes read).
pub fn tag_stream<R: BufRead>(
    engine: &Engine,
    rules: &LoadedRules,
    input: R,
    db: &Path,
    options: &TagOptions,
    sink: Option<NewTagSink>,
    mut progress: impl FnMut(u64, u64),
) -> Result<TagSummary, RunError> {
    let writer = TagWriter::start(db, &options.store, sink)?;
    let mut summary = TagSummary {
        floor: options.floor,
        rules_loaded: rules.rules.len(),
        rules_broken: rules.broken_files.len(),
        ..TagSummary::default()
    };
    let mut reader = EventReader::new(input);
    let mut batch: Vec<Tag> = Vec::new();
    let mut scratch: Vec<Tag> = Vec::new();
    let mut since_send = 0usize;
    let result = (|| -> Result<(), RunError> {
        while let Some(item) = reader.next_item()? {
            match item {
                Item::Event(_, ev) => {
                    summary.events_read += 1;
                    scratch.clear();
                    summary.eval.add(engine.tag_event(&ev, &mut scratch));
                    for t in scratch.drain(..) {
                        summary.tags_emitted += 1;
                        if t.confidence < options.floor {
                            summary.below_floor += 1;
                        } else {
                            batch.push(t);
                        }
                    }
                }
                Item::Rejected(r) => {
                    summary.events_read += 1;
                    *summary.rejected.entry(r.reason).or_default() += 1;
                    if summary.first_rejections.len() < REPORTED_REJECTIONS {
                        summary.first_rejections.push(r);
                    }
                }
            }
            since_send += 1;
            if since_send >= BATCH_EVENTS {
                since_send = 0;
                writer.send(std::mem::take(&mut batch))?;
                progress(summary.events_read, reader.bytes_read);
            }
        }
        writer.send(std::mem::take(&mut batch))?;
        Ok(())
    })();
    // A writer failure is the root cause of any send error: report it first.
    summary.write = match (result, writer.finish()) {
        (_, Err(e)) => return Err(e.into()),
        (Err(e), Ok(_)) => return Err(e),
        (Ok(()), Ok(w)) => w,
    };
    progress(summary.events_read, reader.bytes_read);
    Ok(summary)
}
