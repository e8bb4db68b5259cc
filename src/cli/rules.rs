//! `ttp rule`: listing rules and setting their operator state.

use super::{out, outln, Format};
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use ttp_engine::catalog;
use ttp_engine::state::{now_unix, RuleState, StateKind};
use ttp_engine::store::StoreOptions;
use ttp_engine::text::{line, text};

#[derive(Subcommand)]
pub(crate) enum RuleCommand {
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
pub(crate) struct StateArgs {
    /// The rule id.
    pub(crate) id: String,
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    pub(crate) db: PathBuf,
    /// Only for this long (e.g. 30m, 2h, 7d); then the rule is enabled again.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Why (kept in the state and the audit log).
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

pub(crate) fn rule_command(cmd: RuleCommand) -> Result<ExitCode> {
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
                        outln!("{}", serde_json::to_string(r)?);
                    }
                }
                Format::Text => {
                    outln!(
                        "{:<12} {:>7}  {:<10} {:<40} last error",
                        "rule",
                        "version",
                        "state",
                        "file"
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
                        // Rule ids, paths and errors quote files: escaped.
                        outln!(
                            "{:<12} {:>7}  {:<10} {:<40} {}",
                            if r.rule_id.is_empty() {
                                "-".into()
                            } else {
                                line(&r.rule_id)
                            },
                            r.rule_version,
                            state,
                            line(&r.source_path),
                            line(r.last_error.as_deref().unwrap_or(""))
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
                Format::Json => outln!("{}", serde_json::to_string_pretty(&detail)?),
                Format::Text => {
                    let r = &detail.rule;
                    outln!(
                        "# {} version {} ({}) state: {}",
                        line(&r.rule_id),
                        r.rule_version,
                        line(&r.source_path),
                        r.state
                    );
                    if let Some(e) = &r.last_error {
                        outln!("# last error: {}", line(e));
                    }
                    out!("{}", text(&detail.yaml_content));
                    if !detail.yaml_content.ends_with('\n') {
                        outln!();
                    }
                    outln!("\n# versions (newest first)");
                    for v in &detail.versions {
                        outln!(
                            "#   version {:<4} sha256 {}  loaded {} .. {}  {}",
                            v.rule_version,
                            &v.sha256[..16],
                            v.first_loaded_at,
                            v.last_loaded_at,
                            line(&v.source_path)
                        );
                    }
                    outln!("# events (newest first)");
                    for e in &detail.events {
                        outln!(
                            "#   {} {:<8} {}",
                            e.at,
                            e.action,
                            line(e.detail.as_deref().unwrap_or(""))
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

pub(crate) fn set_state(args: StateArgs, kind: StateKind, max: Option<f64>) -> Result<()> {
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
