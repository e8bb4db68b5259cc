//! `ttp`: the command-line face of ttp-engine. A thin layer over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use ttp_engine::catalog;

/// Tag building allocates a few small strings per tag; mimalloc serves them
/// markedly faster than glibc's allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ttp_engine::daemon::input::Source;
use ttp_engine::daemon::watch::WatchOptions;
use ttp_engine::daemon::RunOptions;
use ttp_engine::diag::Severity;
use ttp_engine::engine::Engine;
use ttp_engine::event::{EventReader, Item, TaggerEvent};
use ttp_engine::query::{list_tags, render_table, TagFilter};
use ttp_engine::rule::load::{load_dir, LoadedRules};
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::run::{tag_stream, TagOptions, DEFAULT_FLOOR};
use ttp_engine::state::{now_unix, RuleState, StateKind};
use ttp_engine::store::StoreOptions;
use ttp_engine::tag::{TagConfig, DEFAULT_ATTACK_RELEASE};

/// Label honeypot and deception telemetry with MITRE ATT&CK tactics and
/// techniques, using YAML rules (DECNET-compatible) and one SQLite file.
#[derive(Parser)]
#[command(name = "ttp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every rule file and report each problem with file:line:col.
    ///
    /// Exits 1 when any file has an error (warnings and notes do not fail).
    Check {
        /// The rules directory (read recursively: *.yaml, *.yml).
        #[arg(long, env = "TTP_RULES", default_value = "rules")]
        rules: PathBuf,
        /// Treat unknown keys as errors instead of warnings.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Tag a file of JSON-lines events once and store the tags in SQLite.
    ///
    /// Good rules load even when others are broken (the broken ones are
    /// reported). Bad event lines are counted by reason and skipped. A summary
    /// goes to stderr.
    Tag {
        #[command(flatten)]
        common: TaggingArgs,
        /// JSON-lines events, one TaggerEvent per line; `-` reads stdin.
        #[arg(long, default_value = "-")]
        events: String,
    },
    /// Run every rule's embedded examples and the precision gate.
    ///
    /// Each `examples.match` payload must fire its rule and each
    /// `examples.no_match` payload must not. Rules emitting a confidence of
    /// 0.85 or more must fire on no benign event (`--benign`) and on no other
    /// rule's `no_match` example. Exits 1 on any failure.
    Test {
        /// The rules directory (read recursively: *.yaml, *.yml).
        #[arg(long, env = "TTP_RULES", default_value = "rules")]
        rules: PathBuf,
        /// A JSON-lines corpus of benign events for the precision gate.
        #[arg(long)]
        benign: Option<PathBuf>,
        /// Also fail on rules that carry no examples.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Tag a live event stream while hot-reloading the rules.
    ///
    /// Reads stdin until EOF (then flushes and exits), or follows a file like
    /// `tail -F` (surviving truncation and rotation). Rule files are watched:
    /// an edit is live in milliseconds; a broken edit is reported with
    /// file:line:col while the last good version keeps serving. Operator state
    /// changes (`ttp rule disable|enable|clip`) apply within 100 ms.
    /// SIGINT/SIGTERM: stop reading, commit what was read, exit 0.
    Run {
        #[command(flatten)]
        common: TaggingArgs,
        /// `-` for stdin, or a JSON-lines file to follow.
        #[arg(long, default_value = "-")]
        events: String,
        /// Quiet time before a burst of file events is applied, in ms.
        #[arg(long, default_value_t = 20)]
        debounce_ms: u64,
        /// A full rescan of the rules directory every this many seconds.
        #[arg(long, default_value_t = 60)]
        rescan_secs: u64,
    },
    /// Inspect rules and set their operator state (stored in the database).
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Benchmark rule matching on your own rules and events.
    ///
    /// Loads the rules once and the events into memory, then reports events/s
    /// and tags/s for matching alone and with SQLite writes (to a scratch
    /// file), p50/p99 latency per event, how many rules each event evaluates
    /// after prefiltering, the 20 costliest rules, and scaling across threads.
    Bench {
        /// The rules directory (read recursively: *.yaml, *.yml).
        #[arg(long, env = "TTP_RULES", default_value = "rules")]
        rules: PathBuf,
        /// JSON-lines events (bad lines are skipped and counted).
        #[arg(long)]
        events: PathBuf,
        /// Passes over the events.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Measure scaling from 1 up to this many threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Skip the SQLite measurement.
        #[arg(long)]
        no_db: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List stored tags, newest first.
    Tags {
        /// The SQLite file to read.
        #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
        db: PathBuf,
        /// Only tags of this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only tags of this technique or sub-technique (e.g. T1059 or T1059.004).
        #[arg(long)]
        technique: Option<String>,
        /// Only tags of this attacker.
        #[arg(long)]
        attacker: Option<String>,
        /// At most this many tags.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Output format: a table, or JSON lines.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// What `ttp tag` and `ttp run` share.
#[derive(clap::Args)]
struct TaggingArgs {
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
        Ok(TagOptions {
            floor: self.floor,
            max_line_bytes: self.max_line_bytes,
            tag_config: TagConfig {
                attack_release: self.attack_release.clone(),
            },
            store: StoreOptions {
                busy_timeout: Duration::from_millis(self.lock_timeout_ms),
                ..Default::default()
            },
        })
    }
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Each rule's file, version, state and last error.
    List {
        #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A rule's current YAML, its version history and recent audit events.
    Show {
        id: String,
        #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Enable a rule (clears a disable or a clip).
    Enable(StateArgs),
    /// Stop a rule from firing, without touching its file.
    Disable(StateArgs),
    /// Cap a rule's confidence at --max (it still fires).
    Clip {
        #[command(flatten)]
        args: StateArgs,
        /// The ceiling, in [0, 1].
        #[arg(long)]
        max: f64,
    },
}

#[derive(clap::Args)]
struct StateArgs {
    /// The rule id.
    id: String,
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Only for this long (e.g. 30m, 2h, 7d); then the rule is enabled again.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Why (kept in the state and the audit log).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn load_rules(dir: &std::path::Path, load: LoadOptions) -> Result<LoadedRules> {
    load_dir(dir, load)
        .with_context(|| format!("cannot read the rules directory {}", dir.display()))
}

fn check(rules: PathBuf, strict: bool, format: Format) -> Result<ExitCode> {
    let loaded = load_rules(
        &rules,
        LoadOptions {
            strict,
            compile_unicode: true,
            ..Default::default()
        },
    )?;
    let count = |s: Severity| {
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
    );
    match format {
        Format::Text => {
            let mut out = std::io::stdout().lock();
            for d in &loaded.diagnostics {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "{} files, {} rules loaded, {} broken files: {errors} errors, {warnings} warnings, {notes} notes",
                loaded.files,
                loaded.rules.len(),
                loaded.broken_files.len()
            )?;
        }
        Format::Json => {
            let report = serde_json::json!({
                "files": loaded.files,
                "rules_loaded": loaded.rules.len(),
                "broken_files": loaded.broken_files,
                "errors": errors,
                "warnings": warnings,
                "notes": notes,
                "diagnostics": loaded.diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn tag(common: TaggingArgs, events: String) -> Result<ExitCode> {
    let options = common.tag_options()?;
    let loaded = load_rules(&common.rules, common.load_options())?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let engine = Engine::new(&loaded.rules, options.tag_config.clone());
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

fn tags(db: PathBuf, filter: TagFilter, format: Format) -> Result<ExitCode> {
    let rows = list_tags(&db, &filter)?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => write!(out, "{}", render_table(&rows))?,
        Format::Json => {
            for r in &rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_benign(path: &std::path::Path) -> Result<Vec<(u64, TaggerEvent)>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the benign corpus {}", path.display()))?;
    let mut reader = EventReader::new(BufReader::new(file));
    let mut out = Vec::new();
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Event(line, ev) => out.push((line, ev)),
            Item::Rejected(r) => anyhow::bail!(
                "{}:{}: bad benign event: {}: {}",
                path.display(),
                r.line,
                r.reason,
                r.message
            ),
        }
    }
    Ok(out)
}

fn test_rules(
    rules: PathBuf,
    benign: Option<PathBuf>,
    strict: bool,
    format: Format,
) -> Result<ExitCode> {
    let loaded = load_rules(&rules, LoadOptions::default())?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let benign = match benign {
        Some(p) => read_benign(&p)?,
        None => Vec::new(),
    };
    let report = ttp_engine::ruletest::run(&loaded.rules, &benign);
    let failing = report.failing(strict) + loaded.broken_files.len();
    match format {
        Format::Text => {
            for f in &report.failures {
                println!("{f}");
            }
            println!(
                "{} rules, {} examples, {} benign events: {} failures{}",
                report.rules,
                report.examples,
                report.benign_events,
                failing,
                if loaded.broken_files.is_empty() {
                    String::new()
                } else {
                    format!(" ({} broken rule files)", loaded.broken_files.len())
                }
            );
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_daemon(
    common: TaggingArgs,
    events: String,
    debounce_ms: u64,
    rescan_secs: u64,
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
    let summary = ttp_engine::daemon::run(&options, emit_sink(common.emit_tags), shutdown)?;
    eprintln!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

fn emit_sink(emit: bool) -> Option<ttp_engine::store::NewTagSink> {
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

fn rule_command(cmd: RuleCommand) -> Result<ExitCode> {
    let open = |db: &std::path::Path| -> Result<rusqlite::Connection> {
        anyhow::ensure!(
            db.exists(),
            "{}: no such database (`ttp tag` or `ttp run` creates it)",
            db.display()
        );
        Ok(ttp_engine::store::open(db, &StoreOptions::default())?)
    };
    match cmd {
        RuleCommand::List { db, format } => {
            let rows = catalog::list_rules(&open(&db)?)?;
            match format {
                Format::Json => {
                    for r in &rows {
                        println!("{}", serde_json::to_string(r)?);
                    }
                }
                Format::Text => {
                    println!(
                        "{:<12} {:>7}  {:<10} {:<40} last error",
                        "rule", "version", "state", "file"
                    );
                    for r in &rows {
                        let state = match (r.state.as_str(), r.confidence_max) {
                            ("clipped", Some(m)) => format!("clipped<={m}"),
                            (s, _) => s.to_string(),
                        };
                        let state = match &r.expires_at {
                            Some(e) => format!("{state} until {e}"),
                            None => state,
                        };
                        println!(
                            "{:<12} {:>7}  {:<10} {:<40} {}",
                            if r.rule_id.is_empty() {
                                "-"
                            } else {
                                &r.rule_id
                            },
                            r.rule_version,
                            state,
                            r.source_path,
                            r.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        RuleCommand::Show { id, db, format } => {
            let Some(detail) = catalog::show_rule(&open(&db)?, &id)? else {
                anyhow::bail!("no rule `{id}` in {} (see `ttp rule list`)", db.display());
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&detail)?),
                Format::Text => {
                    let r = &detail.rule;
                    println!(
                        "# {} version {} ({}) state: {}",
                        r.rule_id, r.rule_version, r.source_path, r.state
                    );
                    if let Some(e) = &r.last_error {
                        println!("# last error: {e}");
                    }
                    print!("{}", detail.yaml_content);
                    if !detail.yaml_content.ends_with('\n') {
                        println!();
                    }
                    println!("\n# versions (newest first)");
                    for v in &detail.versions {
                        println!(
                            "#   version {:<4} sha256 {}  loaded {} .. {}  {}",
                            v.rule_version,
                            &v.sha256[..16],
                            v.first_loaded_at,
                            v.last_loaded_at,
                            v.source_path
                        );
                    }
                    println!("# events (newest first)");
                    for e in &detail.events {
                        println!(
                            "#   {} {:<8} {}",
                            e.at,
                            e.action,
                            e.detail.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        RuleCommand::Enable(args) => set_state(args, StateKind::Enabled, None)?,
        RuleCommand::Disable(args) => set_state(args, StateKind::Disabled, None)?,
        RuleCommand::Clip { args, max } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&max),
                "--max must be between 0 and 1 (got {max})"
            );
            set_state(args, StateKind::Clipped, Some(max))?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_state(args: StateArgs, kind: StateKind, max: Option<f64>) -> Result<()> {
    anyhow::ensure!(
        args.db.exists(),
        "{}: no such database (`ttp tag` or `ttp run` creates it)",
        args.db.display()
    );
    let conn = ttp_engine::store::open(&args.db, &StoreOptions::default())?;
    anyhow::ensure!(
        catalog::rule_exists(&conn, &args.id)?,
        "no rule `{}` in {} (see `ttp rule list`)",
        args.id,
        args.db.display()
    );
    let expires_at = args
        .duration
        .map(|d| now_unix() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    let state = RuleState {
        rule_id: args.id.clone(),
        state: kind,
        confidence_max: max,
        expires_at,
        reason: args.reason,
        set_by: std::env::var("USER").ok().or_else(|| Some("ttp".into())),
        set_at: ttp_engine::timefmt::now(),
    };
    catalog::set_state(&conn, &state)?;
    eprintln!(
        "{}: {}{}",
        args.id,
        kind.as_str(),
        expires_at
            .map(|e| format!(" until {}", ttp_engine::timefmt::format_unix(e)))
            .unwrap_or_default()
    );
    Ok(())
}

fn bench(
    rules: PathBuf,
    events: PathBuf,
    repeat: usize,
    threads: Option<usize>,
    no_db: bool,
    format: Format,
) -> Result<ExitCode> {
    let loaded = load_rules(&rules, LoadOptions::default())?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let file = std::fs::File::open(&events)
        .with_context(|| format!("cannot open the events file {}", events.display()))?;
    let mut reader = EventReader::new(BufReader::with_capacity(1 << 20, file));
    let (mut evs, mut bad) = (Vec::new(), 0u64);
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Event(_, ev) => evs.push(ev),
            Item::Rejected(_) => bad += 1,
        }
    }
    anyhow::ensure!(
        !evs.is_empty(),
        "{}: no valid events to benchmark",
        events.display()
    );
    if bad > 0 {
        eprintln!("{bad} bad lines skipped");
    }
    let mut options = ttp_engine::bench::BenchOptions {
        repeat,
        with_db: !no_db,
        ..Default::default()
    };
    if let Some(t) = threads {
        options.threads = t.max(1);
    }
    let report = ttp_engine::bench::run(&loaded.rules, &evs, &options)?;
    match format {
        Format::Text => print!("{}", report.render()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TTP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check {
            rules,
            strict,
            format,
        } => check(rules, strict, format),
        Command::Tag { common, events } => tag(common, events),
        Command::Run {
            common,
            events,
            debounce_ms,
            rescan_secs,
        } => run_daemon(common, events, debounce_ms, rescan_secs),
        Command::Rule(cmd) => rule_command(cmd),
        Command::Bench {
            rules,
            events,
            repeat,
            threads,
            no_db,
            format,
        } => bench(rules, events, repeat, threads, no_db, format),
        Command::Test {
            rules,
            benign,
            strict,
            format,
        } => test_rules(rules, benign, strict, format),
        Command::Tags {
            db,
            rule,
            technique,
            attacker,
            limit,
            format,
        } => tags(
            db,
            TagFilter {
                rule_id: rule,
                technique,
                attacker_uuid: attacker,
                limit,
            },
            format,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ttp: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
