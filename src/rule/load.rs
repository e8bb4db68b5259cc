//! Reading a rules directory: every `*.yaml` / `*.yml` below it, one rule per
//! file. A broken file never stops the others from loading.

use super::parse::LoadOptions;
use super::Rule;
use crate::diag::{Code, Diagnostic};
use crate::ruleset::{Refresh, RuleSet};
use crate::yaml::{Pos, MAX_RULE_FILE_BYTES};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The outcome of loading a directory.
#[derive(Debug, Default)]
pub struct LoadedRules {
    /// Good rules, in path order.
    pub rules: Vec<Arc<Rule>>,
    /// Every diagnostic, in path order.
    pub diagnostics: Vec<Diagnostic>,
    /// Files that had at least one error and were not loaded.
    pub broken_files: Vec<PathBuf>,
    /// How many rule files were read.
    pub files: usize,
    /// The rules directory they were read from.
    pub dir: PathBuf,
}

impl LoadedRules {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// The broken files, as rejections for the audit log.
    pub fn rejections(&self) -> Vec<crate::ruleset::Change> {
        self.broken_files
            .iter()
            .map(|p| crate::ruleset::Change::Rejected {
                path: p.clone(),
                diagnostics: self
                    .diagnostics
                    .iter()
                    .filter(|d| &d.path == p)
                    .cloned()
                    .collect(),
                kept: None,
            })
            .collect()
    }
}

/// Whether a file name is a rule file: `.yaml`/`.yml`, not hidden, not an
/// editor's swap, backup or lock file.
pub fn is_rule_file_name(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with('~') || name == "4913" {
        return false;
    }
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Most directory levels followed below the rules directory.
const MAX_DEPTH: usize = 32;

/// What a walk of the rules tree found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Rule files, sorted by path.
    pub files: Vec<PathBuf>,
    /// Directories below the top that could not be read: rules known to
    /// come from them are kept, not removed.
    pub unreadable_dirs: Vec<PathBuf>,
    /// One diagnostic per unreadable directory or unusable entry.
    pub problems: Vec<Diagnostic>,
}

/// Lists rule files below `dir`, sorted by path. Hidden directories are
/// skipped; symbolic links to directories are not followed (no cycles).
/// Only the top directory being unreadable is an error; anything below it
/// that cannot be read is a located [`Listing::problems`] entry.
pub fn rule_files(dir: &Path) -> std::io::Result<Listing> {
    let mut out = Listing::default();
    let top = std::fs::read_dir(dir)?;
    walk(top, dir, 0, &mut out);
    out.files.sort();
    Ok(out)
}

fn problem(out: &mut Listing, code: Code, path: &Path, message: String) {
    out.problems
        .push(Diagnostic::new(code, path, Pos::UNKNOWN, message));
}

fn looks_like_rules(name: &[u8]) -> bool {
    name.ends_with(b".yaml") || name.ends_with(b".yml")
}

fn walk(entries: std::fs::ReadDir, dir: &Path, depth: usize, out: &mut Listing) {
    if depth > MAX_DEPTH {
        return;
    }
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problem(
                    out,
                    Code::UnreadableDir,
                    dir,
                    format!("cannot list this directory: {e}"),
                );
                out.unreadable_dirs.push(dir.to_path_buf());
                return;
            }
        };
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            if ft.is_dir() || looks_like_rules(raw.as_encoded_bytes()) {
                problem(
                    out,
                    Code::UnusableEntry,
                    &path,
                    "the name is not UTF-8; skipped (rename it)".into(),
                );
            }
            continue;
        };
        if ft.is_dir() {
            if name.starts_with('.') {
                continue;
            }
            match std::fs::read_dir(&path) {
                Ok(sub) => walk(sub, &path, depth + 1, out),
                Err(e) => {
                    problem(
                        out,
                        Code::UnreadableDir,
                        &path,
                        format!(
                            "cannot read this directory: {e}; the rules already loaded from it keep serving"
                        ),
                    );
                    out.unreadable_dirs.push(path);
                }
            }
        } else if is_rule_file_name(name) {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => out.files.push(path),
                Ok(_) => {}
                Err(e) if ft.is_symlink() => {
                    let what = if e.raw_os_error() == Some(40) {
                        "a symbolic link loop"
                    } else {
                        "a dangling symbolic link"
                    };
                    problem(
                        out,
                        Code::UnusableEntry,
                        &path,
                        format!("{what} ({e}); skipped"),
                    );
                }
                Err(e) => problem(out, Code::UnusableEntry, &path, format!("{e}; skipped")),
            }
        }
    }
}

/// Reads a rule file's text: at most [`MAX_RULE_FILE_BYTES`], UTF-8.
pub fn load_file_text(path: &Path) -> Result<String, Box<Diagnostic>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Box::new(Diagnostic::new(
            Code::Unreadable,
            path,
            Pos::UNKNOWN,
            format!("cannot read the file: {e}"),
        ))
    })?;
    if bytes.len() > MAX_RULE_FILE_BYTES {
        return Err(Box::new(Diagnostic::new(
            Code::TooLarge,
            path,
            Pos::UNKNOWN,
            format!(
                "the file is {} bytes; rule files may hold at most {MAX_RULE_FILE_BYTES}",
                bytes.len()
            ),
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let valid = &e.as_bytes()[..offset];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let col = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        Box::new(Diagnostic::new(
            Code::Unreadable,
            path,
            Pos {
                line: line as u32,
                col: col as u32,
            },
            "the file is not valid UTF-8",
        ))
    })
}

/// Loads every rule file below `dir`. Two files with one `rule_id`: the first
/// in path order keeps it, the second is an error naming both.
pub fn load_dir(dir: &Path, options: LoadOptions) -> Result<LoadedRules, std::io::Error> {
    let mut set = RuleSet::new(dir, options);
    set.refresh(Refresh::Full)?;
    Ok(LoadedRules::from_set(&set))
}

impl LoadedRules {
    /// A summary of a rule set's current state.
    pub fn from_set(set: &RuleSet) -> LoadedRules {
        LoadedRules {
            rules: set.rules(),
            diagnostics: set.diagnostics(),
            broken_files: set.broken_files(),
            files: set.file_count(),
            dir: set.dir().to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files_are_not_rules() {
        for name in [
            ".r.yaml.swp",
            "r.yaml~",
            "4913",
            ".#r.yaml",
            ".hidden.yaml",
            "r.txt",
        ] {
            assert!(!is_rule_file_name(name), "{name}");
        }
        for name in ["R0001.yaml", "r-1.yml", "web_sqli.yaml"] {
            assert!(is_rule_file_name(name), "{name}");
        }
    }
}
