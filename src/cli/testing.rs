//! `ttp test` (embedded examples, precision gate) and `ttp bench`.

use super::{load_rules, out, outln, Format};
use anyhow::{Context, Result};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use ttp_engine::event::{EventReader, Item, TaggerEvent};
use ttp_engine::rule::parse::LoadOptions;

pub(crate) fn read_benign(path: &std::path::Path) -> Result<Vec<(u64, TaggerEvent)>> {
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

pub(crate) fn test_rules(
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
                outln!("{f}");
            }
            outln!(
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
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The rules (errors printed) and the events of `ttp bench`.
fn bench_inputs(
    rules: &std::path::Path,
    events: &std::path::Path,
) -> Result<(
    ttp_engine::rule::load::LoadedRules,
    Vec<ttp_engine::event::TaggerEvent>,
)> {
    let loaded = load_rules(rules, LoadOptions::default())?;
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let file = std::fs::File::open(events)
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
    Ok((loaded, evs))
}

pub(crate) fn bench(
    rules: PathBuf,
    events: PathBuf,
    repeat: usize,
    threads: Option<usize>,
    no_db: bool,
    format: Format,
) -> Result<ExitCode> {
    let (loaded, evs) = bench_inputs(&rules, &events)?;
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
        Format::Text => out!("{}", report.render()),
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ttp bench --grow N`.
pub(crate) fn grow(
    rules: PathBuf,
    events: PathBuf,
    batches: usize,
    db: Option<PathBuf>,
    format: Format,
) -> Result<ExitCode> {
    anyhow::ensure!(batches > 0, "--grow needs at least one batch");
    let (loaded, evs) = bench_inputs(&rules, &events)?;
    if let Format::Text = format {
        eprintln!(
            "storing {} events {batches} times into {}",
            evs.len(),
            db.as_ref()
                .map_or("a scratch file".to_string(), |p| p.display().to_string())
        );
    }
    let report = ttp_engine::bench::grow::grow(&loaded.rules, &evs, batches, db.as_deref(), |b| {
        if let Format::Text = format {
            eprintln!(
                "batch {}: {:.0} tags/s, {} tags in the file",
                b.batch,
                b.tags_per_s,
                b.tags_before + b.new_tags
            );
        }
    })?;
    match format {
        Format::Text => out!("{}", ttp_engine::bench::grow::render(&report)),
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
