//! `ttp worker`: in place of DECNET's `decnet ttp`, on its bus and database.

use super::tagging::parse_mode;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use ttp_engine::daemon::watch::WatchOptions;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::run::DEFAULT_FLOOR;
use ttp_engine::tag::{TagConfig, DEFAULT_ATTACK_RELEASE};
use ttp_engine::worker::process::{self, WorkerOptions};

#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// The bus socket. Default: as DECNET resolves it ($DECNET_BUS_SOCKET,
    /// else /run/decnet/bus.sock when /run/decnet is writable, else
    /// ~/.decnet/bus.sock). Set it explicitly beside DECNET.
    #[arg(long)]
    bus: Option<PathBuf>,
    /// The rules directory (read recursively: *.yaml, *.yml), hot-reloaded.
    #[arg(long, env = "TTP_RULES", default_value = "rules")]
    rules: PathBuf,
    /// The database: DECNET's own (its tables are used as they are; attacker
    /// IPs are resolved and intel caught up from them) or a ttp file.
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Tags with a confidence below this are not stored (DECNET: 0.3).
    #[arg(long, default_value_t = DEFAULT_FLOOR)]
    floor: f64,
    /// The `attack_release` value written on every tag.
    #[arg(long, default_value = DEFAULT_ATTACK_RELEASE)]
    attack_release: String,
    /// Treat unknown keys in rule files as errors.
    #[arg(long)]
    strict: bool,
    /// Run even when no rule loads.
    #[arg(long)]
    allow_empty: bool,
    /// Received events waiting to be tagged; reading from the bus pauses
    /// while this many wait (bounded memory).
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// Most bus events tagged as one batch (a backlog is taken in batches
    /// this large; a steady trickle in small ones). Batches waiting for the
    /// writer are stored in one transaction.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Seconds between `system.ttp.health` heartbeats (DECNET: 30).
    #[arg(long, default_value_t = 30.0)]
    heartbeat_secs: f64,
    /// The longest wait between two attempts to reach the bus, in ms.
    #[arg(long, default_value_t = 5000)]
    reconnect_max_ms: u64,
    /// How long to wait for another process's lock on the database before
    /// logging and retrying, in ms.
    #[arg(long, default_value_t = 5000)]
    lock_timeout_ms: u64,
    /// Permissions (octal) of a database file this command creates.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    db_mode: u32,
    /// Most steps a backtracking-engine pattern may take per search.
    #[arg(long, default_value_t = ttp_engine::pyregex::STEP_LIMIT)]
    regex_step_limit: usize,
    /// Quiet time before a burst of rule file events is applied, in ms.
    #[arg(long, default_value_t = 20)]
    debounce_ms: u64,
    #[command(flatten)]
    correlation: super::tagging::CorrelationArgs,
    #[command(flatten)]
    serve: super::serve::EmbeddedServeArgs,
}

pub(crate) fn worker(args: WorkerArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.floor),
        "--floor must be between 0 and 1 (got {})",
        args.floor
    );
    anyhow::ensure!(
        args.heartbeat_secs > 0.0 && args.heartbeat_secs.is_finite(),
        "--heartbeat-secs must be positive"
    );
    anyhow::ensure!(
        !ttp_engine::bus::disabled_by_env(),
        "the bus is disabled (DECNET_BUS_ENABLED=false): a worker would receive nothing"
    );
    let bus = args.bus.unwrap_or_else(ttp_engine::bus::socket_path);
    let mut options = WorkerOptions::new(args.rules, args.db, bus);
    options.tag.floor = args.floor;
    options.tag.allow_empty = args.allow_empty;
    options.tag.tag_config = TagConfig {
        attack_release: args.attack_release,
    };
    options.tag.store.busy_timeout = Duration::from_millis(args.lock_timeout_ms);
    options.tag.store.file_mode = args.db_mode;
    args.correlation.apply(&mut options.tag)?;
    options.load = LoadOptions {
        strict: args.strict,
        regex_step_limit: args.regex_step_limit,
        ..Default::default()
    };
    options.watch = WatchOptions {
        debounce: Duration::from_millis(args.debounce_ms.max(1)),
        ..Default::default()
    };
    options.queue = args.queue.max(1);
    options.batch = args.batch.max(1);
    options.heartbeat = Duration::from_secs_f64(args.heartbeat_secs);
    options.max_backoff = Duration::from_millis(args.reconnect_max_ms.max(10));
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, shutdown.clone())
            .context("cannot install signal handlers")?;
        signal_hook::flag::register(sig, shutdown.clone())
            .context("cannot install signal handlers")?;
    }
    let live = Arc::new(ttp_engine::live::Live::default());
    let server = args.serve.start(
        &options.db,
        &options.rules,
        &options.tag.store,
        live.clone(),
    )?;
    if server.is_some() {
        options.live = Some(live);
    }
    let summary = process::run(&options, shutdown);
    let stopped = server.map(super::serve::Embedded::stop).transpose();
    let summary = summary?;
    stopped?;
    eprintln!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub(crate) struct BackfillArgs {
    /// Replay history from this many days back (1 to 3650).
    #[arg(long, short = 's', default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    since_days: u32,
    /// What to replay: `command` (commands stored on attackers rows),
    /// `canary` (stored canary triggers) or `all`.
    #[arg(long, default_value = "all")]
    source: String,
    /// Tags stored per transaction (1 to 100000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Tag, but store nothing (reports inserted=0).
    #[arg(long)]
    dry_run: bool,
    /// The rules directory.
    #[arg(long, env = "TTP_RULES", default_value = "rules")]
    rules: PathBuf,
    /// DECNET's database (its attackers and canary_triggers tables).
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Tags with a confidence below this are not stored.
    #[arg(long, default_value_t = DEFAULT_FLOOR)]
    floor: f64,
}

pub(crate) fn backfill(args: BackfillArgs) -> Result<ExitCode> {
    use ttp_engine::worker::backfill::{self, BackfillOptions, Source};
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.floor),
        "--floor must be between 0 and 1 (got {})",
        args.floor
    );
    let Some(source) = Source::parse(&args.source) else {
        eprintln!(
            "invalid --source '{}'; expected one of ('command', 'canary', 'all')",
            ttp_engine::text::line(&args.source)
        );
        return Ok(ExitCode::from(2));
    };
    anyhow::ensure!(
        args.db.exists(),
        "{}: no such database (the backfill replays DECNET's stored history)",
        args.db.display()
    );
    let loaded = ttp_engine::rule::load::load_dir(&args.rules, LoadOptions::default())
        .with_context(|| format!("cannot read the rules directory {}", args.rules.display()))?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let tag_options = ttp_engine::run::TagOptions {
        floor: args.floor,
        ..Default::default()
    };
    ttp_engine::run::ensure_rules(&loaded, &tag_options)?;
    let engine = ttp_engine::engine::Engine::new(&loaded.rules, TagConfig::default());
    let writer = ttp_engine::store::TagWriter::start(&args.db, &tag_options.store, None)?;
    writer.sync_rules(loaded.rules.clone(), &loaded.dir)?;
    ttp_engine::run::apply_rule_states(&engine, &args.db, &tag_options.store)?;
    let reader = ttp_engine::store::read_connection(&args.db, &tag_options.store)?;
    let options = BackfillOptions {
        since_days: args.since_days,
        source,
        dry_run: args.dry_run,
        batch_size: args.batch_size as usize,
        floor: args.floor,
    };
    let lines = backfill::run(&reader, &engine, &writer.handle(), &options)?;
    writer.finish()?;
    for line in lines {
        super::outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
