//! `ttp query …` and its alias `ttp tags`: rollups per technique and stored
//! tags, as a table on a terminal, JSON lines when piped, or JSON / CSV.

use super::Color;
use anyhow::Result;
use clap::ValueEnum;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use ttp_engine::query::{api_time, json, Reader, RollupRow, Scope, TagFilter, TagRow, Window};

#[derive(clap::Subcommand)]
pub(crate) enum QueryCommand {
    /// Techniques across the fleet: tags per technique and sub-technique,
    /// tactic, last seen.
    Techniques(RollupArgs),
    /// Techniques of one attacker (its uuid): count, first and last seen,
    /// highest confidence.
    ByAttacker {
        /// The attacker's uuid (any case).
        id: String,
        #[command(flatten)]
        args: RollupArgs,
    },
    /// Techniques of one identity: its own tags plus those of every attacker
    /// DECNET's `attackers` table links to it.
    ByIdentity {
        /// The identity's uuid (any case).
        id: String,
        #[command(flatten)]
        args: RollupArgs,
    },
    /// Techniques of one session.
    BySession {
        /// The session id (exact).
        id: String,
        #[command(flatten)]
        args: RollupArgs,
    },
    /// Techniques of one campaign (DECNET's database: tags carrying an
    /// identity of the campaign), with the number of identities.
    ByCampaign {
        /// The campaign's uuid (any case).
        id: String,
        #[command(flatten)]
        args: RollupArgs,
    },
    /// Stored tags, newest first, every column and the evidence.
    Tags(TagsArgs),
}

#[derive(clap::Args)]
pub(crate) struct Output {
    /// The SQLite file to read: ttp's own or DECNET's database.
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// `table` on a terminal, else `ndjson` (one JSON object per line).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// Times as UTC with a trailing `Z` (DECNET writes them without one).
    #[arg(long)]
    utc: bool,
}

#[derive(clap::Args)]
pub(crate) struct WindowArgs {
    /// Only tags created at or after this: RFC 3339, a date, or an age
    /// such as `7d`, `24h`, `30m`.
    #[arg(long)]
    since: Option<String>,
    /// Only tags created before this (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only tags with at least this confidence.
    #[arg(long, value_parser = confidence)]
    min_confidence: Option<f64>,
}

#[derive(clap::Args)]
pub(crate) struct RollupArgs {
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    window: WindowArgs,
}

#[derive(clap::Args)]
pub(crate) struct TagsArgs {
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    window: WindowArgs,
    /// Only tags of this attacker (uuid, any case).
    #[arg(long)]
    attacker: Option<String>,
    /// Only tags of this identity, and of the attackers linked to it.
    #[arg(long)]
    identity: Option<String>,
    /// Only tags of this session.
    #[arg(long)]
    session: Option<String>,
    /// Only tags from this decky.
    #[arg(long)]
    decky: Option<String>,
    /// Only this technique (T1548: with every sub-technique) or
    /// sub-technique (T1548.003). Any case.
    #[arg(long)]
    technique: Option<String>,
    /// Only this tactic (TA0006). Any case.
    #[arg(long)]
    tactic: Option<String>,
    /// Only tags of this rule (R0014). Any case.
    #[arg(long)]
    rule: Option<String>,
    /// At most this many tags; 0 lists them all.
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutFormat {
    /// Aligned columns, with a total.
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header row.
    Csv,
}

fn confidence(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if (0.0..=1.0).contains(&c) => Ok(c),
        _ => Err(format!("{s:?} is not a confidence between 0 and 1")),
    }
}

impl Output {
    fn format(&self) -> OutFormat {
        self.format.unwrap_or(if std::io::stdout().is_terminal() {
            OutFormat::Table
        } else {
            OutFormat::Ndjson
        })
    }
}

impl WindowArgs {
    fn window(&self) -> Result<Window> {
        Ok(Window::parse(
            self.since.as_deref(),
            self.until.as_deref(),
            self.min_confidence,
            time::OffsetDateTime::now_utc(),
        )?)
    }
}

/// Uuids are stored lower-case, ATT&CK and rule ids upper-case.
fn lower(s: Option<String>) -> Option<String> {
    s.map(|s| s.to_ascii_lowercase())
}
fn upper(s: Option<String>) -> Option<String> {
    s.map(|s| s.to_ascii_uppercase())
}

pub(crate) fn query(cmd: QueryCommand, color: Color) -> Result<ExitCode> {
    let (scope, args) = match cmd {
        QueryCommand::Tags(args) => return tags(args, color),
        QueryCommand::Techniques(a) => (Scope::Fleet, a),
        QueryCommand::ByAttacker { id, args } => (Scope::Attacker(id.to_ascii_lowercase()), args),
        QueryCommand::ByIdentity { id, args } => (Scope::Identity(id.to_ascii_lowercase()), args),
        QueryCommand::BySession { id, args } => (Scope::Session(id), args),
        QueryCommand::ByCampaign { id, args } => (Scope::Campaign(id.to_ascii_lowercase()), args),
    };
    let window = args.window.window()?;
    let reader = Reader::open(&args.out.db)?;
    let rows = reader.rollup(&scope, &window)?;
    let utc = args.out.utc;
    match args.out.format() {
        OutFormat::Json => json_array(rows.iter().map(|r| json::rollup_row(&scope, r, utc)))?,
        OutFormat::Ndjson => ndjson(rows.iter().map(|r| json::rollup_row(&scope, r, utc)))?,
        OutFormat::Csv => csv_rows(rows.iter().map(|r| json::rollup_row(&scope, r, utc)))?,
        OutFormat::Table => rollup_table(&scope, &rows, utc, color)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn tags(args: TagsArgs, color: Color) -> Result<ExitCode> {
    let mut filter = TagFilter {
        attacker: lower(args.attacker),
        identity: lower(args.identity),
        session: args.session,
        decky: args.decky,
        tactic: upper(args.tactic),
        rule_id: upper(args.rule),
        window: args.window.window()?,
        limit: (args.limit > 0).then_some(args.limit),
        ..TagFilter::default()
    };
    match upper(args.technique) {
        Some(t) if t.contains('.') => filter.sub_technique = Some(t),
        t => filter.technique = t,
    }
    let reader = Reader::open(&args.out.db)?;
    let rows = reader.tags(&filter)?;
    let total = if filter
        .limit
        .is_some_and(|n| rows.len() as u64 >= u64::from(n))
    {
        reader.count_tags(&filter)?
    } else {
        rows.len() as u64
    };
    let utc = args.out.utc;
    let values = || {
        rows.iter().map(move |r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if utc {
                v["created_at"] = Value::String(api_time(&r.created_at, true));
            }
            v
        })
    };
    let format = args.out.format();
    match format {
        OutFormat::Json => json_array(values())?,
        OutFormat::Ndjson => ndjson(values())?,
        OutFormat::Csv => csv_rows(values())?,
        OutFormat::Table => tag_table(&rows, total, utc, color)?,
    }
    if format != OutFormat::Table && (rows.len() as u64) < total {
        eprintln!(
            "ttp: {} of {} tags (--limit 0 lists them all)",
            group(rows.len() as u64),
            group(total)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn json_array(values: impl Iterator<Item = Value>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"[")?;
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &v)?;
    }
    out.write_all(b"]\n")?;
    Ok(out.flush()?)
}

fn ndjson(values: impl Iterator<Item = Value>) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for v in values {
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    Ok(out.flush()?)
}

/// Objects as CSV: the first object's keys are the header; nested values
/// (the evidence) are written as compact JSON.
fn csv_rows(values: impl Iterator<Item = Value>) -> Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    let mut header: Option<Vec<String>> = None;
    for v in values {
        let Value::Object(m) = v else { continue };
        if header.is_none() {
            let keys: Vec<String> = m.keys().cloned().collect();
            w.write_record(&keys)?;
            header = Some(keys);
        }
        let keys = header.as_deref().unwrap_or_default();
        let cells: Vec<String> = keys
            .iter()
            .map(|k| match m.get(k) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        w.write_record(&cells)?;
    }
    Ok(w.flush()?)
}

/// `4312` → `4,312`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Aligned columns; every cell has its control characters escaped, long
/// cells are cut with `…`. The header is bold when colour is on.
fn table(header: &[&str], rows: &[Vec<String>], right: &[bool], color: Color) -> Result<()> {
    const MAX: usize = 48;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| cut(&ttp_engine::text::line(c), MAX))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w.saturating_sub(c.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < r.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let head = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    if color.for_stdout() {
        writeln!(out, "\x1b[1m{head}\x1b[0m")?;
    } else {
        writeln!(out, "{head}")?;
    }
    for r in &cells {
        writeln!(out, "{}", line(r))?;
    }
    Ok(out.flush()?)
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn rollup_table(scope: &Scope, rows: &[RollupRow], utc: bool, color: Color) -> Result<()> {
    let campaign = matches!(scope, Scope::Campaign(_));
    let mut header = vec!["technique", "name", "tactic", "count"];
    if campaign {
        header.push("identities");
    }
    header.extend(["first seen", "last seen", "max conf"]);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let name = r
                .sub_technique_name
                .clone()
                .or_else(|| r.technique_name.clone())
                .unwrap_or_else(|| "(not in ATT&CK)".into());
            let mut row = vec![
                r.id().to_string(),
                name,
                r.tactic.clone(),
                r.count.to_string(),
            ];
            if campaign {
                row.push(r.identity_count.unwrap_or(0).to_string());
            }
            row.extend([
                api_time(&r.first_seen, utc),
                api_time(&r.last_seen, utc),
                format!("{:.2}", r.confidence_max),
            ]);
            row
        })
        .collect();
    let mut right = vec![false, false, false, true];
    if campaign {
        right.push(true);
    }
    right.extend([false, false, true]);
    table(&header, &body, &right, color)?;
    let tags: i64 = rows.iter().map(|r| r.count).sum();
    super::outln!(
        "{} techniques, {} tags ({}{})",
        group(rows.len() as u64),
        group(tags.max(0) as u64),
        scope.kind(),
        scope
            .id()
            .map(|i| format!(" {}", ttp_engine::text::line(i)))
            .unwrap_or_default()
    );
    Ok(())
}

fn tag_table(rows: &[TagRow], total: u64, utc: bool, color: Color) -> Result<()> {
    let header = [
        "created_at",
        "kind",
        "source_id",
        "attacker",
        "rule",
        "technique",
        "tactic",
        "conf",
        "evidence",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                api_time(&r.created_at, utc),
                r.source_kind.clone(),
                r.source_id.clone(),
                r.attacker_uuid
                    .clone()
                    .or_else(|| r.identity_uuid.clone())
                    .unwrap_or_default(),
                r.rule_id.clone(),
                r.sub_technique_id
                    .clone()
                    .unwrap_or_else(|| r.technique_id.clone()),
                r.tactic.clone(),
                format!("{:.2}", r.confidence),
                r.evidence.to_string(),
            ]
        })
        .collect();
    let right = [false, false, false, false, false, false, false, true, false];
    table(&header, &body, &right, color)?;
    if (rows.len() as u64) < total {
        super::outln!(
            "{} of {} tags (--limit 0 lists them all)",
            group(rows.len() as u64),
            group(total)
        );
    } else {
        super::outln!("{} tags", group(total));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(4312), "4,312");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
