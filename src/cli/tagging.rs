//! `ttp tag` and `ttp run`: the arguments they share and the two commands.

use super::load_rules;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use ttp_engine::daemon::input::Source;
use ttp_engine::daemon::watch::WatchOptions;
use ttp_engine::daemon::RunOptions;
use ttp_engine::engine::Engine;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::run::{tag_stream, TagOptions, DEFAULT_FLOOR};
use ttp_engine::store::StoreOptions;
use ttp_engine::tag::{TagConfig, DEFAULT_ATTACK_RELEASE};

/// What `ttp tag` and `ttp run` share.
#[derive(clap::Args)]
pub(crate) struct TaggingArgs {
    /// The rules directory (read recursively: *.yaml, *.yml).
    #[arg(long, env = "TTP_RULES", default_value = "rules")]
    rules: PathBuf,
    /// The SQLite file tags are written to (created if missing).
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Tags with a confidence below this are counted but not written.
    #[arg(long, default_value_t = DEFAULT_FLOOR)]
    floor: f64,
    /// Print the tags newly inserted, as JSON lines on stdout.
    #[arg(long)]
    emit_tags: bool,
    /// The `attack_release` value written on every tag.
    #[arg(long, default_value = DEFAULT_ATTACK_RELEASE)]
    attack_release: String,
    /// Treat unknown keys in rule files as errors (those rules do not load).
    #[arg(long)]
    strict: bool,
    /// How long to wait for another process's lock on the database, in ms.
    /// `ttp tag` then fails with a clear error; `ttp run` logs the wait and
    /// keeps retrying (also through a full disk), holding input back, so
    /// that nothing is lost.
    #[arg(long, default_value_t = 5000)]
    lock_timeout_ms: u64,
    /// Most steps a pattern on the backtracking engine may take per search
    /// (a ReDoS guard DECNET lacks); a search that hits it counts as no
    /// match and is reported in the summary.
    #[arg(long, default_value_t = ttp_engine::pyregex::STEP_LIMIT)]
    regex_step_limit: usize,
    /// Longest accepted event line, in bytes; longer lines are skipped
    /// without being held in memory and counted as `line_too_long`.
    #[arg(long, default_value_t = ttp_engine::event::MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Run even when no rule loads (by default that is an error: every
    /// event would go untagged). `ttp run` then picks rules up as they are
    /// added.
    #[arg(long)]
    allow_empty: bool,
    /// Permissions (octal) of a database file this command creates; tags
    /// hold attacker data, so only the owner may read them by default.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    db_mode: u32,
    #[command(flatten)]
    correlation: CorrelationArgs,
}

/// What `ttp tag`, `ttp run` and `ttp worker` take for correlation rules.
#[derive(clap::Args)]
pub(crate) struct CorrelationArgs {
    /// Groups (e.g. attackers) each correlation rule keeps windows for, at
    /// most; past it the least recently seen group is evicted and counted
    /// (summary, /metrics). A rule's own `max_groups:` wins.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_groups: Option<u64>,
    /// The payload field (a dotted path) holding each event's time for
    /// correlation windows: RFC 3339 text or epoch seconds/milliseconds.
    /// By default the first of `ts`, `timestamp`, `@timestamp` that
    /// parses; an event without one counts at the time it is read.
    #[arg(long, value_name = "PATH")]
    event_time_field: Option<String>,
    /// `ttp run` and `ttp worker`, with correlation rules: how often their
    /// windows are saved to the database, with the tags (and `ttp run`'s
    /// read position) they go with; at most this much input is read and
    /// counted again after a crash. Also at exit.
    #[arg(long, default_value_t = 2.0)]
    checkpoint_secs: f64,
}

impl CorrelationArgs {
    /// Checks the values and sets them in `tag`.
    pub(crate) fn apply(&self, tag: &mut TagOptions) -> Result<()> {
        anyhow::ensure!(
            self.checkpoint_secs.is_finite() && (0.0..=86_400.0).contains(&self.checkpoint_secs),
            "--checkpoint-secs must be from 0 to 86400"
        );
        anyhow::ensure!(
            self.event_time_field.as_deref() != Some(""),
            "--event-time-field must name a payload field (e.g. `ts` or `meta.time`)"
        );
        tag.max_groups = self.max_groups.map(|n| n as usize);
        tag.event_time_field = self.event_time_field.clone();
        tag.checkpoint_every = Duration::from_secs_f64(self.checkpoint_secs);
        Ok(())
    }
}

/// An octal file mode such as `600` or `0640`.
pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal file mode such as 600 or 640"))
}

impl TaggingArgs {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            strict: self.strict,
            regex_step_limit: self.regex_step_limit,
            ..Default::default()
        }
    }

    fn tag_options(&self) -> Result<TagOptions> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.floor),
            "--floor must be between 0 and 1 (got {})",
            self.floor
        );
        anyhow::ensure!(
            self.max_line_bytes > 0,
            "--max-line-bytes must be at least 1"
        );
        let mut options = TagOptions {
            floor: self.floor,
            max_line_bytes: self.max_line_bytes,
            allow_empty: self.allow_empty,
            tag_config: TagConfig {
                attack_release: self.attack_release.clone(),
            },
            store: StoreOptions {
                busy_timeout: Duration::from_millis(self.lock_timeout_ms),
                file_mode: self.db_mode,
                ..Default::default()
            },
            ..TagOptions::default()
        };
        self.correlation.apply(&mut options)?;
        Ok(options)
    }
}

pub(crate) fn tag(common: TaggingArgs, events: String) -> Result<ExitCode> {
    let options = common.tag_options()?;
    let loaded = load_rules(&common.rules, common.load_options())?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let engine = Engine::new(&loaded.rules, options.tag_config.clone());
    engine.set_max_groups(options.max_groups);
    engine.set_event_time_field(options.event_time_field.as_deref());
    let input: Box<dyn BufRead> = if events == "-" {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let f = std::fs::File::open(&events)
            .with_context(|| format!("cannot open the events file {events}"))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let sink = emit_sink(common.emit_tags);
    let interactive = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    let summary = tag_stream(
        &engine,
        &loaded,
        input,
        &common.db,
        &options,
        sink,
        |events, bytes| {
            if interactive && last.elapsed() >= Duration::from_millis(500) {
                last = std::time::Instant::now();
                eprint!("\r{events} events, {} MiB read", bytes >> 20);
            }
        },
    )?;
    if interactive {
        eprint!("\r\x1b[K");
    }
    eprintln!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_daemon(
    common: TaggingArgs,
    events: String,
    debounce_ms: u64,
    rescan_secs: u64,
    serve: super::serve::EmbeddedServeArgs,
) -> Result<ExitCode> {
    let source = if events == "-" {
        Source::Stdin
    } else {
        Source::Follow(PathBuf::from(events))
    };
    let mut options = RunOptions::new(common.rules.clone(), common.db.clone(), source);
    options.tag = common.tag_options()?;
    // A daemon outlives a lock or a full disk: its writer waits and retries.
    options.tag.store.wait_when_unwritable = true;
    options.load = common.load_options();
    options.watch = WatchOptions {
        debounce: Duration::from_millis(debounce_ms.max(1)),
        rescan_every: Duration::from_secs(rescan_secs.max(1)),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal stops reading and commits what was read; a
        // second one (the flag already set) exits at once, with status 130.
        signal_hook::flag::register_conditional_shutdown(sig, 130, shutdown.clone())
            .context("cannot install signal handlers")?;
        signal_hook::flag::register(sig, shutdown.clone())
            .context("cannot install signal handlers")?;
    }
    let live = Arc::new(ttp_engine::live::Live::default());
    let server = serve.start(&common.db, &common.rules, &options.tag.store, live.clone())?;
    if server.is_some() {
        options.live = Some(live);
    }
    let summary = ttp_engine::daemon::run(&options, emit_sink(common.emit_tags), shutdown);
    let stopped = server.map(super::serve::Embedded::stop).transpose();
    let summary = summary?;
    stopped?;
    eprintln!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn emit_sink(emit: bool) -> Option<ttp_engine::store::NewTagSink> {
    emit.then(|| -> ttp_engine::store::NewTagSink {
        Box::new(|t| {
            let mut out = std::io::stdout().lock();
            if let Ok(line) = serde_json::to_string(t) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        })
    })
}
