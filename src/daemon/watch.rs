//! The reload thread: watches the rules tree (`notify` with the full
//! debouncer), refreshes the [`RuleSet`], rebuilds the affected lifters'
//! indexes off the event path and installs the new snapshot with one store.
//!
//! It watches the directory tree recursively and the directory's parent
//! non-recursively (to notice the directory itself being replaced). After a
//! rescan notice, an overflow or a watcher error it rescans everything, and
//! it rescans everything periodically as a safety net.

use crate::engine::{Engine, Snapshot};
use crate::lifter::Lifter;
use crate::rule::load::is_rule_file_name;
use crate::ruleset::{Change, Refresh, RuleSet};
use crate::store::WriterHandle;
use crate::text;
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of the reload thread.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub debounce: Duration,
    pub rescan_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(20),
            rescan_every: Duration::from_secs(60),
        }
    }
}

/// The least wait before an empty file is looked at again.
const SECOND_LOOK: Duration = Duration::from_millis(100);

/// Counters the reload thread shares.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub reloads: AtomicU64,
    pub rejected: AtomicU64,
}

#[cfg(unix)]
fn dir_identity(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

#[cfg(not(unix))]
fn dir_identity(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir).ok().map(|_| 0)
}

/// Whether a name is an editor's temporary, swap or backup file.
fn is_editor_noise(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name == "4913"
        || name.ends_with(".swp")
        || name.ends_with(".swx")
}

/// Whether a file-system event can change what a rule file holds. Reads
/// (opening, reading, closing without writing, access-time updates) cannot,
/// and our own rescans cause them: acting on them would rescan for ever.
fn changes_content(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Decides what to refresh for a batch of changed paths.
fn plan(dir: &Path, paths: &BTreeSet<PathBuf>) -> Option<Refresh> {
    let mut files = Vec::new();
    for p in paths {
        if !p.starts_with(dir) || p == dir {
            // The directory itself (or its parent's other entries): only the
            // directory matters, and if it changed everything may have.
            if p == dir || dir.starts_with(p) {
                return Some(Refresh::Full);
            }
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            return Some(Refresh::Full);
        }
        if is_rule_file_name(name) {
            files.push(p.clone());
        } else if !is_editor_noise(name) {
            // A name we cannot classify (a directory that is gone, a file
            // renamed to or from a rule name): look at everything.
            return Some(Refresh::Full);
        }
    }
    (!files.is_empty()).then_some(Refresh::Paths(files))
}

/// Rebuilds the indexes of the lifters that `changes` touch and installs
/// the new snapshot; returns how many rules changed.
pub fn apply(engine: &Engine, set: &RuleSet, changes: &[Change]) -> usize {
    let affected: BTreeSet<Lifter> = changes
        .iter()
        .flat_map(Change::touched)
        .filter_map(|r| r.owner())
        .collect();
    let touched = changes
        .iter()
        .filter(|c| !matches!(c, Change::Rejected { .. }))
        .count();
    if touched == 0 {
        return 0;
    }
    let affected: Vec<Lifter> = affected.into_iter().collect();
    let current = engine.snapshot();
    let next = Snapshot::rebuild(Some(&current), &set.rules(), &affected);
    engine.install(next);
    touched
}

fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| match c {
            Change::Loaded(r) => format!("+{}", text::line(&r.rule_id)),
            Change::Updated { new, .. } => format!("~{}", text::line(&new.rule_id)),
            Change::Removed { rule, .. } => format!("-{}", text::line(&rule.rule_id)),
            Change::Rejected { path, .. } => {
                format!("!{}", text::line(&path.display().to_string()))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the reload loop until `shutdown`.
pub fn run(
    mut set: RuleSet,
    engine: Arc<Engine>,
    writer: WriterHandle,
    options: WatchOptions,
    shutdown: Arc<AtomicBool>,
    stats: Arc<ReloadStats>,
) {
    let dir = set.dir().to_path_buf();
    // notify reports absolute paths; the rule set speaks in `dir`'s terms.
    let abs_dir = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
    let to_set_path = |p: &Path| -> PathBuf {
        match p.strip_prefix(&abs_dir) {
            Ok(rel) => dir.join(rel),
            Err(_) => p.to_path_buf(),
        }
    };
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    // Without a working watcher the loop below still rescans periodically
    // (`tx` is kept so the channel stays open).
    let mut debouncer = match new_debouncer(options.debounce, None, tx.clone()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!("cannot start the rules watcher: {e}; relying on periodic rescans");
            None
        }
    };
    let watch_dir = |d: &mut notify_debouncer_full::Debouncer<_, _>| {
        if let Err(e) = d.watch(&dir, RecursiveMode::Recursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch the rules directory: {e}");
        }
    };
    if let Some(d) = debouncer.as_mut() {
        watch_dir(d);
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = d.watch(parent, RecursiveMode::NonRecursive) {
                tracing::debug!("cannot watch {}: {e}", parent.display());
            }
        }
    }
    let mut identity = dir_identity(&dir);
    let mut top_error: Option<String> = None;
    // Files found empty just after an event, with when to look again.
    let mut deferred: std::collections::BTreeMap<PathBuf, Instant> = Default::default();
    let second_look = (options.debounce * 4).max(SECOND_LOOK);
    let mut next_rescan = Instant::now() + options.rescan_every;
    while !shutdown.load(Ordering::Relaxed) {
        let wake = deferred
            .values()
            .min()
            .copied()
            .unwrap_or(next_rescan)
            .min(next_rescan);
        let wait = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        let (refresh, detected) = match rx.recv_timeout(wait) {
            Ok(Ok(mut events)) => {
                events.retain(|e| changes_content(&e.kind));
                if events.is_empty() {
                    continue;
                }
                let detected = events
                    .iter()
                    .map(|e| e.time)
                    .min()
                    .unwrap_or_else(Instant::now);
                if events.iter().any(|e| e.need_rescan()) {
                    (Some(Refresh::Full), detected)
                } else {
                    let paths: BTreeSet<PathBuf> = events
                        .iter()
                        .flat_map(|e| e.paths.iter().map(|p| to_set_path(p)))
                        .collect();
                    (plan(&dir, &paths), detected)
                }
            }
            Ok(Err(errors)) => {
                for e in errors {
                    tracing::warn!("rules watcher error: {e}; rescanning");
                }
                (Some(Refresh::Full), Instant::now())
            }
            Err(RecvTimeoutError::Timeout) => {
                if Instant::now() >= next_rescan {
                    (Some(Refresh::Full), Instant::now())
                } else {
                    (None, Instant::now())
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // The directory replaced (or gone and back): watch the new one.
        let now_identity = dir_identity(&dir);
        let refresh = if now_identity != identity {
            identity = now_identity;
            if identity.is_some() {
                if let Some(d) = debouncer.as_mut() {
                    let _ = d.unwatch(&dir);
                    watch_dir(d);
                }
            }
            Some(Refresh::Full)
        } else {
            refresh
        };
        // Files whose second look is due: read them now, whatever they hold.
        let now = Instant::now();
        let due: Vec<PathBuf> = deferred
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &due {
            deferred.remove(p);
        }
        if !due.is_empty() {
            reload(
                &mut top_error,
                &mut set,
                &engine,
                &writer,
                Refresh::Paths(due),
                now,
                &stats,
            );
        }
        let refresh = match refresh {
            Some(Refresh::Paths(files)) => {
                // An in-place save truncates, then writes: a file found empty
                // right after an event is looked at again a little later
                // instead of being reported (and audited) as broken.
                let (empty, rest): (Vec<PathBuf>, Vec<PathBuf>) = files
                    .into_iter()
                    .partition(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0));
                for p in empty {
                    deferred.entry(p).or_insert(now + second_look);
                }
                (!rest.is_empty()).then_some(Refresh::Paths(rest))
            }
            other => other,
        };
        let Some(refresh) = refresh else { continue };
        if matches!(refresh, Refresh::Full) {
            next_rescan = Instant::now() + options.rescan_every;
        }
        reload(
            &mut top_error,
            &mut set,
            &engine,
            &writer,
            refresh,
            detected,
            &stats,
        );
    }
    drop(tx);
}

fn reload(
    top_error: &mut Option<String>,
    set: &mut RuleSet,
    engine: &Engine,
    writer: &WriterHandle,
    refresh: Refresh,
    detected: Instant,
    stats: &ReloadStats,
) {
    let changes = match set.refresh(refresh) {
        Ok(c) => {
            *top_error = None;
            c
        }
        Err(e) => {
            // The directory is unreadable (e.g. being replaced): keep
            // serving, and say so once while it lasts.
            let text = e.to_string();
            if top_error.as_deref() != Some(text.as_str()) {
                tracing::warn!(
                    dir = %text::line(&set.dir().display().to_string()),
                    "cannot read the rules directory: {text}; the loaded rules keep serving"
                );
                *top_error = Some(text);
            }
            return;
        }
    };
    for d in set.unreported_problems() {
        tracing::error!("{d}");
    }
    if changes.is_empty() {
        return;
    }
    let touched = apply(engine, set, &changes);
    let elapsed = detected.elapsed();
    for c in &changes {
        if let Change::Rejected {
            diagnostics, kept, ..
        } = c
        {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            for d in diagnostics.iter().filter(|d| d.is_error()) {
                match kept {
                    Some(k) => tracing::error!(
                        "{d} (version {} of {} keeps serving)",
                        k.rule_version,
                        text::line(&k.rule_id)
                    ),
                    None => tracing::error!("{d}"),
                }
            }
        }
    }
    if touched > 0 {
        stats.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "reloaded {touched} rule(s) [{}] in {:.1} ms from change to swap",
            describe(&changes),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    if let Err(e) = writer.send_changes(changes) {
        tracing::error!("cannot record rule changes: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind};
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Read)));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
    }

    #[test]
    fn plans_follow_the_paths() {
        let dir = Path::new("/r");
        let set = |v: &[&str]| v.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        assert!(
            matches!(plan(dir, &set(&["/r/a.yaml"])), Some(Refresh::Paths(p)) if p == vec![PathBuf::from("/r/a.yaml")])
        );
        assert!(plan(dir, &set(&["/r/.a.yaml.swp", "/r/a.yaml~", "/r/4913"])).is_none());
        assert!(matches!(
            plan(dir, &set(&["/r/gone-subdir"])),
            Some(Refresh::Full)
        ));
        assert!(matches!(plan(dir, &set(&["/r"])), Some(Refresh::Full)));
        assert!(plan(dir, &set(&["/other-sibling"])).is_none());
    }
}
