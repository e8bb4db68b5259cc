//! `RuleSet`: the live state of a rules directory, updated file by file.
//!
//! Each rule file keeps its last good version: an edit that fails to parse or
//! validate is recorded as an error while the previous version keeps serving;
//! fixing the file clears the error. Deleting a file, renaming its `rule_id`
//! or moving it out of the tree removes its rule. When two files claim one
//! `rule_id`, the one already loaded keeps it and the newcomer is an error
//! (retried when the owner goes away).
//!
//! Only files whose size, modification time or inode changed are re-read
//! during a full rescan; files named by watcher events are always re-read
//! (and re-parsed only when their text changed).

use crate::diag::{Code, Diagnostic};
use crate::rule::load::{load_file_text, rule_files};
use crate::rule::parse::{parse_rule, LoadOptions};
use crate::rule::Rule;
use crate::yaml::Pos;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What identifies a file's content cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

#[derive(Debug, Default)]
struct FileEntry {
    fingerprint: Option<Fingerprint>,
    /// SHA-256 of the text last parsed (good or bad).
    sha256: Option<String>,
    /// The version serving now (the last good one).
    serving: Option<Arc<Rule>>,
    /// Diagnostics of the last parse (errors mean the text was rejected).
    diagnostics: Vec<Diagnostic>,
    /// The rule id another file holds, when this file lost a duplicate.
    blocked_by: Option<String>,
}

impl FileEntry {
    fn has_error(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// A file read and parsed, not yet applied.
struct Prepared {
    fingerprint: Option<Fingerprint>,
    outcome: Outcome,
}

enum Outcome {
    /// Same text as last time: nothing to do.
    Unchanged,
    Unreadable(Box<Diagnostic>),
    Parsed {
        sha256: String,
        rule: Option<Box<Rule>>,
        diagnostics: Vec<Diagnostic>,
    },
}

fn prepare(path: &Path, known_sha: Option<&str>, force: bool, options: LoadOptions) -> Prepared {
    let fingerprint = fingerprint(path);
    let outcome = match load_file_text(path) {
        Err(d) => Outcome::Unreadable(d),
        Ok(text) => {
            let sha256 = crate::rule::parse::sha256_hex(&text);
            if !force && known_sha == Some(sha256.as_str()) {
                Outcome::Unchanged
            } else {
                let (rule, diagnostics) = parse_rule(path, &text, options);
                Outcome::Parsed {
                    sha256,
                    rule: rule.map(Box::new),
                    diagnostics,
                }
            }
        }
    };
    Prepared {
        fingerprint,
        outcome,
    }
}

/// Whether a path's directory exists but cannot be read (permissions):
/// the file may well still be there.
fn in_unreadable_dir(path: &Path) -> bool {
    path.parent().is_some_and(|dir| {
        std::fs::read_dir(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// One change a refresh made.
#[derive(Debug, Clone)]
pub enum Change {
    /// A rule id that was not served before now is.
    Loaded(Arc<Rule>),
    /// A served rule id got a new version.
    Updated { old: Arc<Rule>, new: Arc<Rule> },
    /// A served rule is gone (file deleted or moved out, or its id renamed).
    Removed { rule: Arc<Rule>, path: PathBuf },
    /// A file's new text was rejected; `kept` is the version still serving.
    Rejected {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
        kept: Option<Arc<Rule>>,
    },
}

impl Change {
    /// The rules whose owner's index must be rebuilt.
    pub fn touched(&self) -> Vec<&Arc<Rule>> {
        match self {
            Change::Loaded(r) => vec![r],
            Change::Updated { old, new } => vec![old, new],
            Change::Removed { rule, .. } => vec![rule],
            Change::Rejected { .. } => Vec::new(),
        }
    }
}

/// Which files to look at.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// Everything below the directory (start-up, rescans, directory events).
    Full,
    /// Only these paths (file events).
    Paths(Vec<PathBuf>),
}

#[derive(Debug)]
pub struct RuleSet {
    dir: PathBuf,
    options: LoadOptions,
    files: BTreeMap<PathBuf, FileEntry>,
    owners: HashMap<String, PathBuf>,
    /// What the last full walk could not read (unreadable directories,
    /// dangling links, link loops, non-UTF-8 names).
    problems: Vec<Diagnostic>,
    /// The problems already reported, so that each is reported once.
    reported: BTreeSet<String>,
}

impl RuleSet {
    pub fn new(dir: &Path, options: LoadOptions) -> RuleSet {
        RuleSet {
            dir: dir.to_path_buf(),
            options,
            files: BTreeMap::new(),
            owners: HashMap::new(),
            problems: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The serving rules, in path order.
    pub fn rules(&self) -> Vec<Arc<Rule>> {
        self.files
            .values()
            .filter_map(|f| f.serving.clone())
            .collect()
    }

    /// Every file's diagnostics from its last parse, in path order (with
    /// the correlations naming rules not loaded now), then what the last
    /// full walk could not read.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for f in self.files.values() {
            out.extend(f.diagnostics.iter().cloned());
            if let Some(rule) = &f.serving {
                out.extend(self.unknown_correlated_rules(rule));
            }
        }
        out.extend(self.problems.iter().cloned());
        out
    }

    /// W110 for each id of a correlation's `rules:` that no serving rule
    /// has: the correlation counts it once such a rule is loaded.
    fn unknown_correlated_rules(&self, rule: &Rule) -> Vec<Diagnostic> {
        let Some(crate::correlate::Correlation {
            select: crate::correlate::Select::Rules(ids),
            ..
        }) = rule.correlation()
        else {
            return Vec::new();
        };
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !self.owners.contains_key(id.as_str()))
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        // Each id where the file names it.
        let doc = crate::yaml::parse(&rule.source.text).ok();
        let items = doc
            .as_ref()
            .and_then(|d| d.get("correlate"))
            .and_then(|c| c.get("rules"));
        missing
            .into_iter()
            .map(|id| {
                let pos = match items.map(|n| &n.value) {
                    Some(crate::yaml::Value::Seq(items)) => items
                        .iter()
                        .find(|n| n.as_str() == Some(id.as_str()))
                        .map(|n| n.pos)
                        .unwrap_or_default(),
                    _ => items.map(|n| n.pos).unwrap_or_default(),
                };
                Diagnostic::new(
                    Code::UnknownCorrelatedRule,
                    &rule.source.path,
                    pos,
                    format!(
                        "no loaded rule has rule_id `{id}`: this correlation counts its firings once one does"
                    ),
                )
                .with_source(&rule.source.text)
            })
            .collect()
    }

    /// The walk's problems not reported yet; each is reported once while it
    /// lasts (and again if it comes back after being fixed).
    pub fn unreported_problems(&mut self) -> Vec<Diagnostic> {
        let key = |d: &Diagnostic| format!("{}\0{}", d.path.display(), d.message);
        let current: BTreeSet<String> = self.problems.iter().map(key).collect();
        let new = self
            .problems
            .iter()
            .filter(|d| !self.reported.contains(&key(d)))
            .cloned()
            .collect();
        self.reported = current;
        new
    }

    /// Files whose current text has an error.
    pub fn broken_files(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, f)| f.has_error())
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Brings the set up to date with the disk. An unreadable rules directory
    /// during a full refresh is an error (nothing changes).
    pub fn refresh(&mut self, what: Refresh) -> std::io::Result<Vec<Change>> {
        let mut changes = Vec::new();
        let paths: BTreeSet<PathBuf> = match what {
            Refresh::Full => {
                let listing = rule_files(&self.dir)?;
                let present: BTreeSet<PathBuf> = listing.files.into_iter().collect();
                // A file under a directory that cannot be read now is not
                // gone: its last good rules keep serving.
                let unreadable = listing.unreadable_dirs;
                let mut todo: BTreeSet<PathBuf> = self
                    .files
                    .keys()
                    .filter(|p| !present.contains(*p))
                    .filter(|p| !unreadable.iter().any(|d| p.starts_with(d)))
                    .cloned()
                    .collect();
                self.problems = listing.problems;
                for p in present {
                    let known = self.files.get(&p).and_then(|f| f.fingerprint);
                    if known.is_none() || known != fingerprint(&p) {
                        todo.insert(p);
                    }
                }
                todo
            }
            Refresh::Paths(paths) => paths.into_iter().collect(),
        };
        // Removals first, so a file taking over a freed rule id succeeds.
        let (gone, present): (Vec<PathBuf>, Vec<PathBuf>) =
            paths.into_iter().partition(|p| !self.is_live_rule_file(p));
        for p in gone {
            if in_unreadable_dir(&p) {
                // Not gone, only out of sight: keep serving it.
                continue;
            }
            self.remove(&p, &mut changes);
        }
        self.update_many(&present, &mut changes);
        self.retry_blocked(&mut changes);
        Ok(changes)
    }

    /// Whether `path` is a rule file that exists inside the directory now.
    fn is_live_rule_file(&self, path: &Path) -> bool {
        path.starts_with(&self.dir)
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(crate::rule::load::is_rule_file_name)
            && !path
                .strip_prefix(&self.dir)
                .map(|rel| {
                    rel.components()
                        .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
                })
                .unwrap_or(true)
            && std::fs::metadata(path).is_ok_and(|m| m.is_file())
    }

    fn release(&mut self, rule: &Arc<Rule>, path: &Path) {
        if self.owners.get(&rule.rule_id).map(PathBuf::as_path) == Some(path) {
            self.owners.remove(&rule.rule_id);
        }
    }

    fn remove(&mut self, path: &Path, changes: &mut Vec<Change>) {
        let Some(entry) = self.files.remove(path) else {
            return;
        };
        if let Some(rule) = entry.serving {
            self.release(&rule, path);
            changes.push(Change::Removed {
                rule,
                path: path.to_path_buf(),
            });
        }
    }

    fn update(&mut self, path: &Path, force: bool, changes: &mut Vec<Change>) {
        let known = self.files.get(path).and_then(|e| e.sha256.clone());
        let prepared = prepare(path, known.as_deref(), force, self.options);
        self.apply(path, prepared, changes);
    }

    /// Reads and parses several files on all cores, then applies them in
    /// path order (parsing is independent per file; applying is not).
    fn update_many(&mut self, paths: &[PathBuf], changes: &mut Vec<Change>) {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if threads < 2 || paths.len() < 16 {
            for p in paths {
                self.update(p, false, changes);
            }
            return;
        }
        let known: Vec<Option<String>> = paths
            .iter()
            .map(|p| self.files.get(p).and_then(|e| e.sha256.clone()))
            .collect();
        let options = self.options;
        let chunk = paths.len().div_ceil(threads);
        let prepared: Vec<Prepared> = std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .chunks(chunk)
                .zip(known.chunks(chunk))
                .map(|(ps, ks)| {
                    scope.spawn(move || {
                        ps.iter()
                            .zip(ks)
                            .map(|(p, k)| prepare(p, k.as_deref(), false, options))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if prepared.len() != paths.len() {
            // A parsing thread panicked: fall back to doing it here.
            for p in paths {
                self.update(p, false, changes);
            }
            return;
        }
        for (p, prep) in paths.iter().zip(prepared) {
            self.apply(p, prep, changes);
        }
    }

    fn apply(&mut self, path: &Path, prepared: Prepared, changes: &mut Vec<Change>) {
        let entry = self.files.entry(path.to_path_buf()).or_default();
        entry.fingerprint = prepared.fingerprint;
        let (parsed, mut diagnostics) = match prepared.outcome {
            Outcome::Unchanged => return,
            Outcome::Unreadable(d) => {
                entry.sha256 = None;
                (None, vec![*d])
            }
            Outcome::Parsed {
                sha256,
                rule,
                diagnostics,
            } => {
                entry.sha256 = Some(sha256);
                (rule, diagnostics)
            }
        };
        entry.blocked_by = None;
        let Some(rule) = parsed else {
            entry.diagnostics = diagnostics.clone();
            changes.push(Change::Rejected {
                path: path.to_path_buf(),
                diagnostics,
                kept: entry.serving.clone(),
            });
            return;
        };
        let rule: Arc<Rule> = Arc::from(rule);
        if let Some(owner) = self
            .owners
            .get(&rule.rule_id)
            .filter(|o| o.as_path() != path)
        {
            let d = Diagnostic::new(
                Code::DuplicateRuleId,
                path,
                rule_id_pos(&rule.source.text),
                format!(
                    "rule_id `{}` is already defined in {}; this file is not loaded",
                    rule.rule_id,
                    owner.display()
                ),
            )
            .with_source(&rule.source.text);
            diagnostics.push(d);
            let entry = self.files.entry(path.to_path_buf()).or_default();
            entry.diagnostics = diagnostics.clone();
            entry.blocked_by = Some(rule.rule_id.clone());
            changes.push(Change::Rejected {
                path: path.to_path_buf(),
                diagnostics,
                kept: entry.serving.clone(),
            });
            return;
        }
        let entry = self.files.entry(path.to_path_buf()).or_default();
        entry.diagnostics = diagnostics;
        let old = entry.serving.replace(rule.clone());
        self.owners.insert(rule.rule_id.clone(), path.to_path_buf());
        match old {
            Some(old) if old.rule_id == rule.rule_id => {
                changes.push(Change::Updated { old, new: rule })
            }
            Some(old) => {
                self.release(&old, path);
                changes.push(Change::Removed {
                    rule: old,
                    path: path.to_path_buf(),
                });
                changes.push(Change::Loaded(rule));
            }
            None => changes.push(Change::Loaded(rule)),
        }
    }

    /// Files that lost a duplicate whose owner has since gone get another go.
    fn retry_blocked(&mut self, changes: &mut Vec<Change>) {
        loop {
            let retry: Vec<PathBuf> = self
                .files
                .iter()
                .filter(|(_, f)| {
                    f.blocked_by
                        .as_ref()
                        .is_some_and(|id| !self.owners.contains_key(id))
                })
                .map(|(p, _)| p.clone())
                .collect();
            if retry.is_empty() {
                return;
            }
            for p in retry {
                self.update(&p, true, changes);
            }
        }
    }
}

fn rule_id_pos(text: &str) -> Pos {
    crate::yaml::parse(text)
        .ok()
        .and_then(|doc| doc.get("rule_id").map(|n| n.pos))
        .unwrap_or(Pos::UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rule(id: &str, tech: &str) -> String {
        format!(
            "rule_id: {id}\nrule_version: 1\nname: n\napplies_to: [command]\nmatch: {{field: command_text, contains: x}}\n\
             emits: [{{tactic: TA0002, technique_id: {tech}, confidence: 0.5}}]\n"
        )
    }

    fn ids(set: &RuleSet) -> Vec<String> {
        set.rules().iter().map(|r| r.rule_id.clone()).collect()
    }

    fn kinds(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Loaded(r) => format!("loaded {}", r.rule_id),
                Change::Updated { new, .. } => format!("updated {}", new.rule_id),
                Change::Removed { rule, .. } => format!("removed {}", rule.rule_id),
                Change::Rejected { kept, .. } => {
                    format!(
                        "rejected (kept {})",
                        kept.as_ref().map_or("none", |r| r.rule_id.as_str())
                    )
                }
            })
            .collect()
    }

    #[test]
    fn last_good_version_serves_until_fixed() {
        let dir = tempfile::TempDir::new().unwrap();
        let a = dir.path().join("a.yaml");
        fs::write(&a, rule("A", "T1059")).unwrap();
        let mut set = RuleSet::new(dir.path(), LoadOptions::default());
        assert_eq!(
            kinds(&set.refresh(Refresh::Full).unwrap()),
            vec!["loaded A"]
        );
        fs::write(&a, "rule_id: A\nrule_version: [\n").unwrap();
        assert_eq!(
            kinds(&set.refresh(Refresh::Paths(vec![a.clone()])).unwrap()),
            vec!["rejected (kept A)"]
        );
        assert_eq!(ids(&set), vec!["A"]);
        assert_eq!(set.broken_files(), vec![a.clone()]);
        fs::write(&a, rule("A", "T1105")).unwrap();
        assert_eq!(
            kinds(&set.refresh(Refresh::Paths(vec![a.clone()])).unwrap()),
            vec!["updated A"]
        );
        assert!(set.broken_files().is_empty());
        assert_eq!(set.rules()[0].emits[0].technique_id, "T1105");
        // The same text again: nothing to do.
        assert!(set.refresh(Refresh::Paths(vec![a])).unwrap().is_empty());
    }

    #[test]
    fn deleting_renaming_and_moving_out_evict() {
        let dir = tempfile::TempDir::new().unwrap();
        let out = tempfile::TempDir::new().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("sub/b.yaml");
        fs::create_dir_all(b.parent().unwrap()).unwrap();
        fs::write(&a, rule("A", "T1059")).unwrap();
        fs::write(&b, rule("B", "T1059")).unwrap();
        let mut set = RuleSet::new(dir.path(), LoadOptions::default());
        set.refresh(Refresh::Full).unwrap();
        assert_eq!(ids(&set), vec!["A", "B"]);
        // DECNET #22: a renamed rule_id evicts the old id.
        fs::write(&a, rule("A2", "T1059")).unwrap();
        assert_eq!(
            kinds(&set.refresh(Refresh::Full).unwrap()),
            vec!["removed A", "loaded A2"]
        );
        // DECNET #22: moving a file out of the tree evicts it.
        fs::rename(&b, out.path().join("b.yaml")).unwrap();
        assert_eq!(
            kinds(&set.refresh(Refresh::Paths(vec![b.clone()])).unwrap()),
            vec!["removed B"]
        );
        // DECNET #1: deleting a file evicts its rule.
        fs::remove_file(&a).unwrap();
        assert_eq!(
            kinds(&set.refresh(Refresh::Full).unwrap()),
            vec!["removed A2"]
        );
        assert!(set.rules().is_empty());
    }

    #[test]
    fn duplicate_ids_keep_the_loaded_rule_and_retry_later() {
        let dir = tempfile::TempDir::new().unwrap();
        let b = dir.path().join("b.yaml");
        fs::write(&b, rule("X", "T1059")).unwrap();
        let mut set = RuleSet::new(dir.path(), LoadOptions::default());
        set.refresh(Refresh::Full).unwrap();
        let a = dir.path().join("a.yaml");
        fs::write(&a, rule("X", "T1105")).unwrap();
        let ch = set.refresh(Refresh::Paths(vec![a.clone()])).unwrap();
        assert_eq!(kinds(&ch), vec!["rejected (kept none)"]);
        assert_eq!(
            set.rules()[0].emits[0].technique_id,
            "T1059",
            "the loaded rule keeps serving"
        );
        fs::remove_file(&b).unwrap();
        let ch = set.refresh(Refresh::Paths(vec![b])).unwrap();
        assert_eq!(kinds(&ch), vec!["removed X", "loaded X"]);
        assert_eq!(set.rules()[0].emits[0].technique_id, "T1105");
    }

    #[test]
    fn a_large_directory_loads_in_path_order_and_the_first_duplicate_wins() {
        let dir = tempfile::TempDir::new().unwrap();
        for i in 0..40 {
            fs::write(
                dir.path().join(format!("r{i:02}.yaml")),
                rule(&format!("R{i:02}"), "T1059"),
            )
            .unwrap();
        }
        // r40 repeats r07's id: the earlier path keeps it.
        fs::write(dir.path().join("r40.yaml"), rule("R07", "T1105")).unwrap();
        let mut set = RuleSet::new(dir.path(), LoadOptions::default());
        set.refresh(Refresh::Full).unwrap();
        let got = ids(&set);
        let want: Vec<String> = (0..40).map(|i| format!("R{i:02}")).collect();
        assert_eq!(got, want);
        assert_eq!(set.rules()[7].emits[0].technique_id, "T1059");
        assert_eq!(set.broken_files(), vec![dir.path().join("r40.yaml")]);
    }

    #[test]
    fn editor_files_are_ignored() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut set = RuleSet::new(dir.path(), LoadOptions::default());
        for name in [".a.yaml.swp", "a.yaml~", "4913", ".#a.yaml"] {
            let p = dir.path().join(name);
            fs::write(&p, "garbage: [").unwrap();
            assert!(
                set.refresh(Refresh::Paths(vec![p])).unwrap().is_empty(),
                "{name}"
            );
        }
        assert!(set.refresh(Refresh::Full).unwrap().is_empty());
    }
}
