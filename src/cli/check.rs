//! `ttp check`.

use super::{load_rules, outln, Format};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use ttp_engine::diag::Severity;
use ttp_engine::rule::parse::LoadOptions;

pub(crate) fn check(rules: PathBuf, strict: bool, format: Format) -> Result<ExitCode> {
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
            outln!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
