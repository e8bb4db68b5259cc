//! `ttp export …`: the tags for other tools.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use ttp_engine::query::{Reader, Scope, Window};

#[derive(clap::Subcommand)]
pub(crate) enum ExportCommand {
    /// An ATT&CK Navigator layer (format 4.5): each technique and
    /// sub-technique once, scored by its tags, with a gradient, a legend and
    /// metadata saying what was counted.
    Navigator(NavigatorArgs),
    /// A STIX 2.1 bundle: the producing organisation, each attacker as a
    /// threat-actor with its address, MITRE's attack-pattern for each
    /// technique it used (a `uses` relationship each), a sighting per tag,
    /// its command lines as processes, the URLs in them as indicators, and
    /// DECNET's threat-intel verdict as a note. Ids are derived from the
    /// content: exporting the same data twice gives the same bytes.
    Stix(ActorArgs),
    /// MISP events, one per attacker: its address and URLs as attributes,
    /// its command lines as process objects, its techniques as
    /// mitre-attack-pattern galaxy clusters and tags. One attacker gives the
    /// event; the fleet gives {"response": [event, …]}, as DECNET's API does.
    Misp(ActorArgs),
}

/// What every export takes: the database, the time window, where to write.
#[derive(clap::Args)]
pub(crate) struct Common {
    /// The SQLite file to read: ttp's own or DECNET's database.
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Only tags created at or after this (RFC 3339, a date, or 7d / 24h).
    #[arg(long)]
    since: Option<String>,
    /// Only tags created before this.
    #[arg(long)]
    until: Option<String>,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl Common {
    fn window(&self) -> Result<Window> {
        Ok(Window::parse(
            self.since.as_deref(),
            self.until.as_deref(),
            None,
            time::OffsetDateTime::now_utc(),
        )?)
    }
}

#[derive(clap::Args)]
pub(crate) struct ActorArgs {
    #[command(flatten)]
    common: Common,
    /// Only this attacker (an error if the database does not know it);
    /// without it, every attacker.
    #[arg(long)]
    attacker: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct NavigatorArgs {
    #[command(flatten)]
    common: Common,
    /// Only this attacker's tags.
    #[arg(long, conflicts_with_all = ["identity", "session"])]
    attacker: Option<String>,
    /// Only this identity's tags (and its attackers').
    #[arg(long, conflicts_with = "session")]
    identity: Option<String>,
    /// Only this session's tags.
    #[arg(long)]
    session: Option<String>,
}

pub(crate) fn export(cmd: ExportCommand) -> Result<ExitCode> {
    match cmd {
        ExportCommand::Navigator(a) => navigator(a),
        ExportCommand::Stix(a) => actors(a, Format::Stix),
        ExportCommand::Misp(a) => actors(a, Format::Misp),
    }
}

enum Format {
    Stix,
    Misp,
}

fn actors(a: ActorArgs, format: Format) -> Result<ExitCode> {
    use ttp_engine::export::{misp, stix, Producer};
    let window = a.common.window()?;
    let reader = Reader::open(&a.common.db)?;
    let producer = Producer::for_database(reader.is_decnet());
    let actors = match &a.attacker {
        Some(id) => {
            let id = id.to_ascii_lowercase();
            match reader.actor(&id, &window)? {
                Some(actor) => vec![actor],
                None => anyhow::bail!(
                    "{}: no attacker {id:?} ({})",
                    a.common.db.display(),
                    if reader.is_decnet() {
                        "not in DECNET's attackers table"
                    } else {
                        "no tag carries it"
                    }
                ),
            }
        }
        None => reader.actors(&window)?,
    };
    let body = match (format, &a.attacker) {
        (Format::Stix, _) => stix::bundle(&producer, &actors),
        (Format::Misp, Some(_)) => misp::event(&producer, &actors[0]),
        (Format::Misp, None) => misp::collection(&producer, &actors),
    };
    write(&body, a.common.output)
}

fn write(body: &serde_json::Value, output: Option<PathBuf>) -> Result<ExitCode> {
    let text = ttp_engine::export::to_text(body);
    match output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn navigator(a: NavigatorArgs) -> Result<ExitCode> {
    let scope = match (a.attacker, a.identity, a.session) {
        (Some(x), _, _) => Scope::Attacker(x.to_ascii_lowercase()),
        (_, Some(x), _) => Scope::Identity(x.to_ascii_lowercase()),
        (_, _, Some(x)) => Scope::Session(x),
        _ => Scope::Fleet,
    };
    let window = a.common.window()?;
    let rows = Reader::open(&a.common.db)?.rollup(&scope, &window)?;
    let layer = ttp_engine::export::navigator::layer(&scope, &window, &rows);
    write(&layer, a.common.output)
}
