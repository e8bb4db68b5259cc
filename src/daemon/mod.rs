//! `ttp run`: tag a live event stream while the rules hot-reload.
//!
//! Threads, each with one job:
//! * input ([`input`]): reads stdin or follows a file, hands raw chunks over;
//! * tagging (the caller's thread): events → engine → batches for the writer;
//! * reload ([`watch`]): rule files → `RuleSet` → new snapshot → one store;
//! * state: polls `PRAGMA data_version` on its own read connection and
//!   installs operator state changes without re-reading rule files;
//! * writer ([`crate::store::TagWriter`]): the one SQLite writer.
//!
//! SIGINT/SIGTERM stop reading; everything already read is tagged and
//! committed, then the process exits 0.

pub mod follow;
pub mod input;
pub mod watch;

use crate::catalog;
use crate::engine::Engine;
use crate::event::EventReader;
use crate::live::Live;
use crate::position::InputPosition;
use crate::rule::load::LoadedRules;
use crate::rule::parse::LoadOptions;
use crate::ruleset::{Refresh, RuleSet};
use crate::run::{Pipeline, RunError, TagOptions, TagSummary};
use crate::state::{now_unix, RuleStates};
use crate::store::{self, NewTagSink, StoreOptions, TagWriter, WriterHandle};
use input::{ChunkReader, Source};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watch::{ReloadStats, WatchOptions};

/// Settings of `ttp run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub rules: PathBuf,
    pub db: PathBuf,
    pub source: Source,
    pub tag: TagOptions,
    pub load: LoadOptions,
    pub watch: WatchOptions,
    /// How often operator state changes are looked for.
    pub state_poll: Duration,
    /// Idle time after which pending tags are committed.
    pub idle_flush: Duration,
    /// Counters shared with an HTTP server (`--serve`).
    pub live: Option<Arc<Live>>,
}

impl RunOptions {
    pub fn new(rules: PathBuf, db: PathBuf, source: Source) -> RunOptions {
        RunOptions {
            rules,
            db,
            source,
            tag: TagOptions {
                store: crate::store::StoreOptions {
                    wait_when_unwritable: true,
                    ..Default::default()
                },
                ..TagOptions::default()
            },
            load: LoadOptions::default(),
            watch: WatchOptions::default(),
            state_poll: Duration::from_millis(25),
            idle_flush: Duration::from_millis(50),
            live: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub tags: TagSummary,
    pub reloads: u64,
    pub rejected_edits: u64,
}

impl RunSummary {
    pub fn render(&self) -> String {
        format!(
            "{}\nreloads: {} applied, {} rejected edits",
            self.tags.render(),
            self.reloads,
            self.rejected_edits
        )
    }
}

/// What a long-running command starts with: the rules loaded, the engine,
/// the writer, and the reload and state threads.
pub(crate) struct Started {
    pub loaded: LoadedRules,
    pub engine: Arc<Engine>,
    pub writer: TagWriter,
    pub background: Background,
}

/// The reload and state threads.
pub(crate) struct Background {
    stop: Arc<AtomicBool>,
    stats: Arc<ReloadStats>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    /// The reload counters, shared with the reload thread.
    pub(crate) fn stats(&self) -> Arc<ReloadStats> {
        self.stats.clone()
    }

    /// Stops the threads and returns the reload counters.
    pub(crate) fn stop(self) -> Arc<ReloadStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.stats
    }
}

/// Loads the rules (refusing none unless allowed), starts the writer,
/// records the catalogue, applies the operators' rule state and starts the
/// reload and state threads: the start of `ttp run` and `ttp worker`.
pub(crate) fn start(
    rules: &Path,
    db: &Path,
    tag: &crate::run::TagOptions,
    load: crate::rule::parse::LoadOptions,
    watch_options: &WatchOptions,
    state_poll: Duration,
    sink: Option<NewTagSink>,
) -> Result<Started, RunError> {
    let mut set = RuleSet::new(rules, load);
    set.refresh(Refresh::Full)
        .map_err(|e| RunError::RulesDir(rules.to_path_buf(), e))?;
    let loaded = LoadedRules::from_set(&set);
    // Reported below with the other diagnostics: the reload thread reports
    // only what is new from now on.
    set.unreported_problems();
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        tracing::error!("{d}");
    }
    crate::run::ensure_rules(&loaded, tag)?;
    let engine = Arc::new(Engine::new(&loaded.rules, tag.tag_config.clone()));
    engine.set_max_groups(tag.max_groups);
    engine.set_event_time_field(tag.event_time_field.as_deref());
    let writer = TagWriter::start(db, &tag.store, sink)?;
    // The correlation windows as last committed: counting goes on from
    // there, and from now on each commit checkpoints them.
    let saved = writer.run(|conn, _| crate::correlate::durable::load(conn))?;
    engine.make_windows_durable(saved);
    for w in writer
        .sync_rules(loaded.rules.clone(), &loaded.dir)?
        .warnings
    {
        tracing::warn!("{}", crate::text::line(&w));
    }
    writer.send_changes(loaded.rejections())?;
    crate::run::apply_rule_states(&engine, db, &tag.store)?;
    tracing::info!(
        rules = loaded.rules.len(),
        broken = loaded.broken_files.len(),
        dir = %rules.display(),
        "rules loaded; watching for changes"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ReloadStats::default());
    let reload_thread = {
        let (engine, writer, opts, stop, stats) = (
            engine.clone(),
            writer.handle(),
            watch_options.clone(),
            stop.clone(),
            stats.clone(),
        );
        std::thread::Builder::new()
            .name("ttp-reload".into())
            .spawn(move || watch::run(set, engine, writer, opts, stop, stats))?
    };
    let state_thread = {
        let (db, opts, engine, writer, stop) = (
            db.to_path_buf(),
            tag.store.clone(),
            engine.clone(),
            writer.handle(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("ttp-state".into())
            .spawn(move || state_loop(db, opts, engine, writer, state_poll, stop))?
    };
    Ok(Started {
        loaded,
        engine,
        writer,
        background: Background {
            stop,
            stats,
            threads: vec![reload_thread, state_thread],
        },
    })
}

/// The read position stored for a followed file, if the database has one.
fn stored_position(db: &Path, store: &store::StoreOptions, events: &Path) -> Option<InputPosition> {
    if !db.exists() {
        return None;
    }
    let key = follow::source_key(events);
    match store::read_connection(db, store).and_then(|c| crate::position::load(&c, &key)) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                "cannot read the stored read position: {e}; reading {key} from its start"
            );
            None
        }
    }
}

/// Watches `ttp_rule_state` through `PRAGMA data_version` and installs
/// state changes; asks the writer to retire expired states.
pub(crate) fn state_loop(
    db: PathBuf,
    opts: StoreOptions,
    engine: Arc<Engine>,
    writer: WriterHandle,
    poll: Duration,
    shutdown: Arc<AtomicBool>,
) {
    let conn = match store::read_connection(&db, &opts) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot watch rule states: {e}");
            return;
        }
    };
    let mut version: Option<i64> = None;
    let mut asked_expiry: Vec<String> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        let v: Option<i64> = conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok();
        if v != version {
            version = v;
            match catalog::load_states(&conn) {
                Ok(states) => {
                    let states = RuleStates::new(states);
                    let snap = engine.snapshot();
                    if *snap.states() != states {
                        tracing::info!("rule states changed; applied");
                        engine.install(snap.with_states(states));
                    }
                }
                Err(e) => tracing::warn!("cannot read rule states: {e}"),
            }
        }
        let expired = engine.snapshot().states().expired(now_unix());
        if !expired.is_empty() && expired != asked_expiry {
            asked_expiry = expired;
            if writer.expire_states(now_unix()).is_err() {
                return;
            }
        }
        std::thread::sleep(poll);
    }
}

/// Runs the daemon until the input ends or `shutdown` is set.
pub fn run(
    options: &RunOptions,
    sink: Option<NewTagSink>,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary, RunError> {
    // The events source first: one that cannot be read is an error before
    // anything else starts.
    let resume = match &options.source {
        Source::Follow(path) => stored_position(&options.db, &options.tag.store, path),
        Source::Stdin => None,
    };
    let input =
        input::start(options.source.clone(), shutdown.clone(), resume).map_err(RunError::Input)?;
    let input_failure = input.failure.clone();
    let sink = match &options.live {
        Some(live) => Some(counting_sink(live.clone(), sink)),
        None => sink,
    };
    let Started {
        loaded,
        engine,
        writer,
        background,
    } = start(
        &options.rules,
        &options.db,
        &options.tag,
        options.load,
        &options.watch,
        options.state_poll,
        sink,
    )?;

    let mut reader = EventReader::with_max_line(
        ChunkReader::new(input.chunks, options.idle_flush, shutdown.clone()),
        options.tag.max_line_bytes,
    );
    let mut pipeline = Pipeline::new(&engine, &loaded, options.tag.floor);
    let mut last_flush = Instant::now();
    let reload_stats = background.stats();
    let publish = |pipeline: &Pipeline| {
        if let Some(live) = &options.live {
            let s = &pipeline.summary;
            Live::set(&live.events_read, s.events_read);
            Live::set(&live.events_rejected, s.rejected_total());
            Live::set(&live.tags_emitted, s.tags_emitted);
            Live::set(&live.reloads, reload_stats.reloads.load(Ordering::Relaxed));
            Live::set(
                &live.reload_rejections,
                reload_stats.rejected.load(Ordering::Relaxed),
            );
            live.set_correlation(&engine.correlation_stats());
        }
    };
    // The read position after the last event handled, and the last one
    // sent to the writer (which commits it with the tags before it).
    let mut done: Option<InputPosition> = None;
    let mut sent: Option<InputPosition> = None;
    // With correlation rules, the read position is saved only with the
    // windows as they stand after the events up to it (every
    // `--checkpoint-secs`, and at the end): a restart reads again from
    // there and counts those events once. Without, after every batch.
    let mut last_checkpoint = Instant::now();
    let every = options.tag.checkpoint_every;
    let mut flush = |pipeline: &mut Pipeline, done: &Option<InputPosition>, end: bool| {
        writer.send(pipeline.take_batch())?;
        let correlating = !engine.snapshot().correlations().is_empty();
        if correlating && !end && last_checkpoint.elapsed() < every {
            return Ok(());
        }
        last_checkpoint = Instant::now();
        let windows = engine.take_window_delta();
        let position = if *done != sent { done.clone() } else { None };
        writer.send_checkpoint(position, windows)?;
        sent.clone_from(done);
        Ok::<(), store::StoreError>(())
    };
    let result = (|| -> Result<(), RunError> {
        loop {
            match reader.next_item() {
                Ok(Some(_))
                    if shutdown.load(Ordering::Relaxed) && !reader.last_line_terminated() =>
                {
                    // Cut by the shutdown: not an event, not a bad line, and
                    // not past the read position (the next run reads it).
                    pipeline.summary.incomplete_at_shutdown += 1;
                }
                Ok(Some(item)) => {
                    pipeline.handle(item);
                    done = reader.get_ref().position();
                    if pipeline.batch_full() || last_flush.elapsed() >= options.idle_flush {
                        flush(&mut pipeline, &done, false)?;
                        publish(&pipeline);
                        last_flush = Instant::now();
                    }
                }
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    flush(&mut pipeline, &done, false)?;
                    publish(&pipeline);
                    last_flush = Instant::now();
                    if writer.is_finished() {
                        // The writer stopped on an error: `finish` reports it.
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        flush(&mut pipeline, &done, true)?;
        publish(&pipeline);
        Ok(())
    })();
    let stats = background.stop();
    pipeline.summary.correlation = engine.correlation_stats();
    let mut summary = RunSummary {
        tags: pipeline.summary,
        reloads: stats.reloads.load(Ordering::Relaxed),
        rejected_edits: stats.rejected.load(Ordering::Relaxed),
    };
    summary.tags.write = match (result, writer.finish()) {
        (_, Err(e)) => return Err(e.into()),
        (Err(e), Ok(_)) => return Err(e),
        (Ok(()), Ok(w)) => w,
    };
    // What was read is committed; a source that failed is still a failure
    // (a supervisor must see it and restart us).
    if let Some(e) = input_failure.take() {
        return Err(RunError::Input(e));
    }
    Ok(summary)
}

/// A sink that counts each newly stored tag into `live`, then hands it on.
pub(crate) fn counting_sink(live: Arc<Live>, mut inner: Option<NewTagSink>) -> NewTagSink {
    Box::new(move |tag: &crate::tag::Tag| {
        live.tags_new.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = inner.as_mut() {
            f(tag);
        }
    })
}
