//! `ttp`: the command-line face of ttp-engine. A thin layer over the library.

mod cli;

use clap::{Parser, Subcommand};
use cli::{rules::RuleCommand, tagging::TaggingArgs, Color, Format};
use std::path::PathBuf;
use std::process::ExitCode;

/// Tag building allocates a few small strings per tag; mimalloc serves them
/// markedly faster than glibc's allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Label honeypot and deception telemetry with MITRE ATT&CK tactics and
/// techniques, using YAML rules (DECNET-compatible) and one SQLite file.
#[derive(Parser)]
#[command(name = "ttp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour in logs: `auto` colours a terminal unless `NO_COLOR` is set;
    /// logs to a file or a pipe never carry ANSI codes.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
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
    /// `examples.no_match` payload must not. A correlation rule's examples
    /// are event sequences: a `match` sequence must fire it once, on its
    /// last event; a `no_match` one never. Rules emitting a confidence of
    /// 0.85 or more must fire on no benign event (`--benign`, read in order
    /// as one stream) and on no other rule's `no_match` example. Exits 1 on
    /// any failure.
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
        #[command(flatten)]
        serve: cli::serve::EmbeddedServeArgs,
    },
    /// Tag DECNET's service-bus events in place of DECNET's TTP worker.
    ///
    /// Subscribes to the topics DECNET's worker does (sessions, commands,
    /// intel, fingerprints, identities, credential reuse, mail, canaries)
    /// and to system.ttp.control; resolves attacker IPs and catches up intel
    /// from DECNET's tables; stores tags in DECNET's ttp_tag; announces newly
    /// stored tags on ttp.tagged and ttp.rule.fired.<T>; sends
    /// system.ttp.health heartbeats. Reconnects when the bus restarts. SIGTERM
    /// or a stop control message: stop reading, tag and commit what was
    /// received, exit 0. Rules hot-reload and rule state applies as in
    /// `ttp run`.
    Worker(cli::worker::WorkerArgs),
    /// Replay DECNET's stored history (commands on attackers rows, canary
    /// triggers) through the rules into DECNET's ttp_tag, as DECNET's
    /// ttp-backfill does; never publishes. Prints DECNET's report lines.
    Backfill(cli::worker::BackfillArgs),
    /// Inspect rules and set their operator state (stored in the database).
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Benchmark rule matching on your own rules and events.
    ///
    /// Loads the rules once and the events into memory, then reports events/s
    /// and tags/s for matching alone and with SQLite writes (to a scratch
    /// file), p50/p99 latency per event, how many rules each event evaluates
    /// after prefiltering, the 20 costliest rules, and scaling across threads.
    /// With correlation rules: the correlation stage alone (events/s,
    /// observations, firings, groups, peak memory) and the cost of
    /// checkpointing its windows as `ttp run` does.
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
        /// Instead of the usual figures: store the events N times into one
        /// file (each time as new tags) and print each batch's rate and the
        /// file's size, to show how storing slows as the file grows.
        #[arg(long, value_name = "N", conflicts_with_all = ["repeat", "threads", "no_db"])]
        grow: Option<usize>,
        /// With --grow: the file to grow (kept afterwards; default a scratch
        /// file, removed).
        #[arg(long, requires = "grow")]
        db: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Rollups per technique and stored tags (see `ttp query --help`).
    ///
    /// Tables on a terminal, JSON lines when piped; `--format json|csv`.
    #[command(subcommand)]
    Query(cli::query::QueryCommand),
    /// Export the tags for other tools (ATT&CK Navigator).
    #[command(subcommand)]
    Export(cli::export::ExportCommand),
    /// Serve DECNET's TTP REST API (/api/v1/ttp/…), /healthz and /metrics.
    ///
    /// On DECNET's database it checks DECNET's dashboard tokens
    /// (DECNET_JWT_SECRET); on ttp's own, bearer tokens from --tokens, or
    /// none at all on a loopback address.
    Serve(cli::serve::ServeArgs),
    /// Stored tags, newest first: the same as `ttp query tags`.
    Tags(cli::query::TagsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(
        cli.command,
        Command::Run { .. } | Command::Worker(_) | Command::Serve(_)
    ) {
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
        .with_ansi(cli.color.for_stderr())
        .init();
    let result = match cli.command {
        Command::Check {
            rules,
            strict,
            format,
        } => cli::check::check(rules, strict, format),
        Command::Tag { common, events } => cli::tagging::tag(common, events),
        Command::Run {
            common,
            events,
            debounce_ms,
            rescan_secs,
            serve,
        } => cli::tagging::run_daemon(common, events, debounce_ms, rescan_secs, serve),
        Command::Rule(cmd) => cli::rules::rule_command(cmd),
        Command::Worker(args) => cli::worker::worker(args),
        Command::Backfill(args) => cli::worker::backfill(args),
        Command::Bench {
            rules,
            events,
            grow: Some(batches),
            db,
            format,
            ..
        } => cli::testing::grow(rules, events, batches, db, format),
        Command::Bench {
            rules,
            events,
            repeat,
            threads,
            no_db,
            grow: None,
            format,
            ..
        } => cli::testing::bench(rules, events, repeat, threads, no_db, format),
        Command::Test {
            rules,
            benign,
            strict,
            format,
        } => cli::testing::test_rules(rules, benign, strict, format),
        Command::Query(cmd) => cli::query::query(cmd, cli.color),
        Command::Export(cmd) => cli::export::export(cmd),
        Command::Serve(args) => cli::serve::serve(args),
        Command::Tags(args) => cli::query::tags(args, cli.color),
    };
    match result {
        Ok(code) => code,
        // `ttp … | head`: the reader has all it wants.
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ttp: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
