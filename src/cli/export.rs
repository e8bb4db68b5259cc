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
}

#[derive(clap::Args)]
pub(crate) struct NavigatorArgs {
    /// The SQLite file to read: ttp's own or DECNET's database.
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Only this attacker's tags.
    #[arg(long, conflicts_with_all = ["identity", "session"])]
    attacker: Option<String>,
    /// Only this identity's tags (and its attackers').
    #[arg(long, conflicts_with = "session")]
    identity: Option<String>,
    /// Only this session's tags.
    #[arg(long)]
    session: Option<String>,
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

pub(crate) fn export(cmd: ExportCommand) -> Result<ExitCode> {
    let ExportCommand::Navigator(a) = cmd;
    let scope = match (a.attacker, a.identity, a.session) {
        (Some(x), _, _) => Scope::Attacker(x.to_ascii_lowercase()),
        (_, Some(x), _) => Scope::Identity(x.to_ascii_lowercase()),
        (_, _, Some(x)) => Scope::Session(x),
        _ => Scope::Fleet,
    };
    let window = Window::parse(
        a.since.as_deref(),
        a.until.as_deref(),
        None,
        time::OffsetDateTime::now_utc(),
    )?;
    let rows = Reader::open(&a.db)?.rollup(&scope, &window)?;
    let layer = ttp_engine::export::navigator::layer(&scope, &window, &rows);
    let mut text = serde_json::to_string_pretty(&layer)?;
    text.push('\n');
    match a.output {
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
