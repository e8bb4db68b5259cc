//! `ttp tags`: stored tags, newest first.

use super::Format;
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use ttp_engine::query::{list_tags, render_table, TagFilter};

pub(crate) fn tags(db: PathBuf, filter: TagFilter, format: Format) -> Result<ExitCode> {
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
