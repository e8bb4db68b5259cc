//! One-shot tagging: events in → engine → tags → SQLite, with a summary.
//! The `ttp tag` command is a thin layer over [`tag_stream`].

use crate::correlate::stage::CorrelationStats;
use crate::engine::{Engine, EvalStats};
use crate::event::{EventReader, Item, Reject, Rejection};
use crate::rule::load::LoadedRules;
use crate::state::{now_unix, Gate, RuleStates};
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
    #[error("cannot read the rules directory {0}: {1}")]
    RulesDir(std::path::PathBuf, std::io::Error),
    #[error(
        "no rule could be loaded from {} ({files} rule files, {broken} broken): nothing would be \
         tagged; fix the rules, point --rules at the right directory, or pass --allow-empty",
        dir.display()
    )]
    NoRules {
        dir: std::path::PathBuf,
        files: usize,
        broken: usize,
    },
}

/// Options of a tagging run.
#[derive(Debug, Clone)]
pub struct TagOptions {
    pub floor: f64,
    /// Longest accepted event line (`--max-line-bytes`).
    pub max_line_bytes: usize,
    /// Run even when no rule loads (`--allow-empty`); otherwise that is an
    /// error, since every event would go untagged.
    pub allow_empty: bool,
    pub tag_config: TagConfig,
    pub store: StoreOptions,
    /// `--max-groups`: groups kept per correlation rule that sets no
    /// `max_groups` of its own (`None`: the default, 100,000).
    pub max_groups: Option<usize>,
    /// `--event-time-field`: the payload path of events' time for the
    /// correlation windows.
    pub event_time_field: Option<String>,
    /// `--checkpoint-secs`: how often `ttp run` / `ttp worker` save the
    /// correlation windows (with the read position they go with).
    pub checkpoint_every: std::time::Duration,
}

/// How often the daemons checkpoint correlation windows by default.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Default for TagOptions {
    fn default() -> Self {
        TagOptions {
            floor: DEFAULT_FLOOR,
            max_line_bytes: crate::event::MAX_LINE_BYTES,
            allow_empty: false,
            tag_config: TagConfig::default(),
            store: StoreOptions::default(),
            max_groups: None,
            event_time_field: None,
            checkpoint_every: CHECKPOINT_EVERY,
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
    /// Loaded rules that the operators' state turns off (`ttp rule disable`).
    pub rules_off: usize,
    /// Loaded rules whose confidence the operators' state caps.
    pub rules_clipped: usize,
    /// A last line cut short by a shutdown (not tagged, not counted as read).
    pub incomplete_at_shutdown: u64,
    /// The correlation stage's totals.
    pub correlation: CorrelationStats,
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
            let _ = writeln!(
                s,
                "  line {}: {}: {}",
                r.line,
                r.reason,
                crate::text::line(&r.message)
            );
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
                "regex: {} searches abandoned (step limit, or a pattern too large for non-ASCII text; counted as no match)",
                self.eval.step_limit_hits
            );
        }
        if let Some(line) = correlation_line(&self.correlation) {
            let _ = writeln!(s, "{line}");
        }
        let _ = write!(
            s,
            "rules: {} loaded, {} broken, {} disabled, {} clipped (operator state)",
            self.rules_loaded, self.rules_broken, self.rules_off, self.rules_clipped
        );
        s
    }
}

/// The summary's line on the correlation stage (none without correlation
/// rules).
pub fn correlation_line(c: &CorrelationStats) -> Option<String> {
    if c.rules == 0 && c.observed == 0 {
        return None;
    }
    let mut line = format!(
        "correlation: {} rules, {} events counted, {} fired, {} groups held",
        c.rules, c.observed, c.fired, c.groups
    );
    if c.restored > 0 {
        let _ = write!(line, " ({} restored from the database)", c.restored);
    }
    let _ = write!(
        line,
        ", {} evicted (--max-groups), {} too late (lateness)",
        c.evicted, c.too_late
    );
    Some(line)
}

/// Events between two hand-offs to the writer.
pub const BATCH_EVENTS: usize = 4096;

/// The tagging step shared by `ttp tag` and `ttp run`: items in, tags that
/// clear the floor batched for the writer, everything counted.
pub struct Pipeline<'a> {
    engine: &'a Engine,
    floor: f64,
    pub summary: TagSummary,
    batch: Vec<Tag>,
    scratch: Vec<Tag>,
    since_send: usize,
}

impl<'a> Pipeline<'a> {
    pub fn new(engine: &'a Engine, rules: &LoadedRules, floor: f64) -> Pipeline<'a> {
        let snap = engine.snapshot();
        let now = now_unix();
        let gates: Vec<Gate> = rules
            .rules
            .iter()
            .map(|r| snap.states().gate(&r.rule_id, now))
            .collect();
        Pipeline {
            engine,
            floor,
            summary: TagSummary {
                floor,
                rules_loaded: rules.rules.len(),
                rules_broken: rules.broken_files.len(),
                rules_off: gates.iter().filter(|g| **g == Gate::Off).count(),
                rules_clipped: gates
                    .iter()
                    .filter(|g| matches!(g, Gate::On { ceiling: Some(_) }))
                    .count(),
                ..TagSummary::default()
            },
            batch: Vec::new(),
            scratch: Vec::new(),
            since_send: 0,
        }
    }

    /// Tags one event (or counts one rejected line).
    pub fn handle(&mut self, item: Item) {
        self.summary.events_read += 1;
        self.since_send += 1;
        match item {
            Item::Event(_, ev) => {
                self.scratch.clear();
                self.summary
                    .eval
                    .add(self.engine.tag_event(&ev, &mut self.scratch));
                for t in self.scratch.drain(..) {
                    self.summary.tags_emitted += 1;
                    if t.confidence < self.floor {
                        self.summary.below_floor += 1;
                    } else {
                        self.batch.push(t);
                    }
                }
            }
            Item::Rejected(r) => {
                *self.summary.rejected.entry(r.reason).or_default() += 1;
                if self.summary.first_rejections.len() < REPORTED_REJECTIONS {
                    self.summary.first_rejections.push(r);
                }
            }
        }
    }

    /// Whether enough events went by to hand the batch to the writer.
    pub fn batch_full(&self) -> bool {
        self.since_send >= BATCH_EVENTS
    }

    /// The tags waiting for the writer (the batch is emptied).
    pub fn take_batch(&mut self) -> Vec<Tag> {
        self.since_send = 0;
        std::mem::take(&mut self.batch)
    }
}

/// Refuses to tag with no rules at all, unless allowed.
pub fn ensure_rules(rules: &LoadedRules, options: &TagOptions) -> Result<(), RunError> {
    if rules.rules.is_empty() && !options.allow_empty {
        return Err(RunError::NoRules {
            dir: rules.dir.clone(),
            files: rules.files,
            broken: rules.broken_files.len(),
        });
    }
    if rules.rules.is_empty() {
        tracing::warn!(dir = %rules.dir.display(), "no rules loaded: no event will be tagged (--allow-empty)");
    }
    Ok(())
}

/// Installs the operators' rule states stored in `db` (`ttp rule
/// disable|enable|clip`) into `engine`, as DECNET's backfill applies them:
/// every command that tags honours them.
pub fn apply_rule_states(
    engine: &Engine,
    db: &Path,
    store: &StoreOptions,
) -> Result<(), StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: db.to_path_buf(),
        source,
    };
    let conn = crate::store::read_connection(db, store).map_err(sqlite)?;
    let states = crate::catalog::load_states(&conn).map_err(sqlite)?;
    engine.install(engine.snapshot().with_states(RuleStates::new(states)));
    Ok(())
}

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
    ensure_rules(rules, options)?;
    let writer = TagWriter::start(db, &options.store, sink)?;
    for w in writer.sync_rules(rules.rules.clone(), &rules.dir)?.warnings {
        tracing::warn!("{}", crate::text::line(&w));
    }
    writer.send_changes(rules.rejections())?;
    apply_rule_states(engine, db, &options.store)?;
    let mut pipeline = Pipeline::new(engine, rules, options.floor);
    let mut reader = EventReader::with_max_line(input, options.max_line_bytes);
    let result = (|| -> Result<(), RunError> {
        while let Some(item) = reader.next_item()? {
            pipeline.handle(item);
            if pipeline.batch_full() {
                writer.send(pipeline.take_batch())?;
                progress(pipeline.summary.events_read, reader.bytes_read);
            }
        }
        writer.send(pipeline.take_batch())?;
        Ok(())
    })();
    let mut summary = pipeline.summary;
    summary.correlation = engine.correlation_stats();
    // A writer failure is the root cause of any send error: report it first.
    summary.write = match (result, writer.finish()) {
        (_, Err(e)) => return Err(e.into()),
        (Err(e), Ok(_)) => return Err(e),
        (Ok(()), Ok(w)) => w,
    };
    progress(summary.events_read, reader.bytes_read);
    Ok(summary)
}
