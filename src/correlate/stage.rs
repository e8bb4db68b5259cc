//! The correlation stage: after an event's single-event tags are built,
//! each correlation rule that applies to its kind counts it (or the rules
//! that fired on it) in its group's window, and a firing becomes tags.
//!
//! The stage is sequential (one per engine, behind a lock taken only when
//! the snapshot holds correlation rules). Its windows live in memory; made
//! durable ([`Correlator::make_durable`]), their changes are taken at each
//! commit ([`Correlator::take_delta`]) and saved by the writer
//! ([`super::durable`]).

mod emit;

use super::durable::{self, Reset, RuleDelta, Saved, SavedRule, WindowDelta};
use super::keys::{KeyId, Keys};
use super::texts::Texts;
use super::time::{event_time_ms, time_ms};
use super::values::ValueId;
use super::window::{Kind, Observation, WindowStats, Windows};
use super::{Select, DEFAULT_MAX_GROUPS};
use crate::event::TaggerEvent;
use crate::rule::Rule;
use crate::state::{Gate, RuleStates};
use crate::tag::{Tag, TagConfig};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Log rows beyond twice the groups held before a checkpoint compacts the
/// log.
pub const COMPACT_SLACK: u64 = 100_000;

/// The `source_kind` of correlation tags; with the rule, its version, the
/// group and the window start (as `source_id`) it makes the tag's UUID.
pub const SOURCE_KIND: &str = "correlation";

struct Active {
    rule: Arc<Rule>,
    windows: Windows,
    block_sha256: String,
    /// Rules with the same `group_by` share a class: an event's key is
    /// made and looked up once per class.
    key_class: usize,
    /// The rule's column in its class's key table.
    column: usize,
}

/// The correlation stage's totals, for summaries and `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationStats {
    /// Correlation rules counting.
    pub rules: u64,
    /// Groups held now, over every rule.
    pub groups: u64,
    /// Groups restored from the database at start.
    pub restored: u64,
    pub observed: u64,
    pub fired: u64,
    /// Groups evicted to stay within the rule's group bound.
    pub evicted: u64,
    /// Observations older than the lateness allows (not counted).
    pub too_late: u64,
}

/// What a firing's tags are built with, besides the event.
pub struct Context<'a> {
    /// The operators' rule states (a disabled rule counts nothing; a
    /// ceiling caps its tags' confidence).
    pub states: &'a RuleStates,
    /// Unix seconds: the rule states' clock, and the time of an event that
    /// carries none.
    pub now: i64,
    pub config: &'a TagConfig,
    pub created_at: &'a str,
}

/// Every correlation rule's windows.
#[derive(Default)]
pub struct Correlator {
    active: Vec<Active>,
    /// The rule list last synchronised with (by address).
    synced: Option<Arc<Vec<Arc<Rule>>>>,
    /// Windows are checkpointed: changes are kept for [`Self::take_delta`].
    durable: bool,
    /// Windows read back from the database, until their rule is synced.
    saved: Option<HashMap<String, SavedRule>>,
    /// Rules whose saved windows are to be dropped.
    resets: Vec<(String, Reset)>,
    /// Rows in the checkpoint log: past twice the groups (and some slack),
    /// the next checkpoint is a full one that compacts it.
    log_rows: u64,
    /// `--max-groups`: the bound of rules that set none.
    max_groups: Option<usize>,
    /// Totals of windows no longer held (rules changed or removed).
    retired: WindowStats,
    /// `--event-time-field`: where an event's time is (by default the
    /// first of `ts`, `timestamp`, `@timestamp` that parses).
    time_field: Option<crate::rule::conditions::FieldPath>,
    /// Source kind → the active rules that apply to it (by index).
    by_kind: HashMap<String, Vec<usize>, foldhash::fast::RandomState>,
    /// Each distinct `group_by`'s keys, with the slots of their groups in
    /// the class's rules.
    keys: Vec<Keys>,
    /// Per event: each class's key id, once made (`Some(None)`: the event
    /// has no key for that class).
    event_keys: Vec<Option<Option<KeyId>>>,
    /// Per event: the steps the event counts as, each rule's a range of
    /// it (kept to reuse its allocation).
    steps: Vec<usize>,
    /// Per event: what each rule counts (kept to reuse its allocation).
    pending: Vec<Pending>,
    /// The source ids and values the windows' entries hold.
    texts: Texts,
    restored: u64,
}

/// What one rule counts of the event being observed.
struct Pending {
    /// The rule's index in `active`.
    rule: usize,
    gate: Gate,
    key: KeyId,
    /// The steps it counts as, in the stage's `steps`.
    steps: std::ops::Range<usize>,
    value: Option<ValueId>,
    amount: f64,
}

impl Correlator {
    /// Follows `rules` (the snapshot's correlation rules): a rule whose
    /// `correlate:` block is unchanged keeps its windows (a new version
    /// that only changed its name or emits included); any other starts
    /// empty, and a rule no longer there is dropped.
    pub fn sync(&mut self, rules: &Arc<Vec<Arc<Rule>>>) {
        if self.synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, rules)) {
            return;
        }
        let mut old = std::mem::take(&mut self.active);
        let mut saved = self.saved.take();
        for rule in rules.iter() {
            let Some(spec) = rule.correlation() else {
                continue;
            };
            let id = crate::text::line(&rule.rule_id);
            let max_groups = spec
                .max_groups
                .or(self.max_groups)
                .unwrap_or(DEFAULT_MAX_GROUPS);
            let kept = old
                .iter()
                .position(|a| {
                    a.rule.rule_id == rule.rule_id
                        && a.rule.correlation().map(|c| &c.block) == Some(&spec.block)
                })
                .map(|i| old.swap_remove(i));
            let (mut windows, block_sha256) = match kept {
                Some(a) => (a.windows, a.block_sha256),
                None => {
                    let mut windows = Windows::new(spec.settings);
                    let block_sha256 = durable::block_sha256(&spec.block);
                    if let Some(i) = old.iter().position(|a| a.rule.rule_id == rule.rule_id) {
                        let gone = old.swap_remove(i);
                        self.retire(&gone.windows);
                        tracing::info!(
                            rule_id = %id,
                            "correlation rule changed its window, grouping or selection: its windows start over"
                        );
                        self.reset(
                            &rule.rule_id,
                            "the rule's correlate block changed (window, grouping or selection)",
                            gone.windows.len(),
                        );
                    }
                    if let Some(back) = saved.as_mut().and_then(|s| s.remove(&rule.rule_id)) {
                        if back.unreadable > 0 {
                            tracing::warn!(rule_id = %id, rows = back.unreadable, "saved correlation windows that cannot be read are dropped");
                        }
                        if back.block_sha256 == block_sha256 && !back.mixed_blocks {
                            // Least recent first, so the most recent stay
                            // if the bound is now lower.
                            windows.set_max_groups(max_groups);
                            let n = back.groups.len();
                            for (group, state) in back.groups {
                                windows.restore(&group, state, &mut self.texts);
                            }
                            self.restored += n as u64;
                            tracing::info!(rule_id = %id, groups = n, "correlation windows restored");
                        } else {
                            tracing::info!(rule_id = %id, "saved correlation windows were counted under another correlate block: they start over");
                            self.reset(
                                &rule.rule_id,
                                "saved under another correlate block (the rule changed while stopped)",
                                back.groups.len(),
                            );
                        }
                    }
                    if self.durable {
                        windows.track_changes();
                    }
                    (windows, block_sha256)
                }
            };
            if windows.settings().max_groups != max_groups {
                windows.set_max_groups(max_groups);
            }
            self.active.push(Active {
                rule: rule.clone(),
                windows,
                block_sha256,
                key_class: 0,
                column: 0,
            });
        }
        // Routes and key classes for the rules now active.
        self.by_kind.clear();
        let mut classes: Vec<(&[crate::rule::conditions::FieldPath], usize)> = Vec::new();
        for (i, a) in self.active.iter_mut().enumerate() {
            for kind in &a.rule.applies_to {
                self.by_kind.entry(kind.clone()).or_default().push(i);
            }
            let Some(spec) = a.rule.correlation() else {
                continue;
            };
            match classes
                .iter_mut()
                .position(|c| c.0 == spec.group_by.as_slice())
            {
                Some(c) => {
                    a.key_class = c;
                    a.column = classes[c].1;
                    classes[c].1 += 1;
                }
                None => {
                    a.key_class = classes.len();
                    a.column = 0;
                    classes.push((&spec.group_by, 1));
                }
            }
        }
        // The key tables, rebuilt from the groups the windows hold.
        self.keys = classes.iter().map(|c| Keys::new(c.1)).collect();
        for a in &mut self.active {
            a.windows.register(&mut self.keys[a.key_class], a.column);
        }
        for gone in old {
            self.retire(&gone.windows);
            self.reset(
                &gone.rule.rule_id,
                "the rule was removed",
                gone.windows.len(),
            );
        }
        // Saved windows of rules that are not loaded: dropped.
        for (id, back) in saved.into_iter().flatten() {
            self.reset(
                &id,
                "no loaded correlation rule has this id",
                back.groups.len(),
            );
        }
        self.synced = Some(rules.clone());
        self.sweep_texts();
    }

    /// Keeps only the source ids and values the windows' entries hold.
    fn sweep_texts(&mut self) {
        let started = std::time::Instant::now();
        let before = (self.texts.sources.len(), self.texts.values.len());
        let mut marks = self.texts.marks();
        for a in &self.active {
            a.windows.mark_texts(&mut marks);
        }
        self.texts.sweep(marks);
        tracing::debug!(
            sources_before = before.0,
            sources_kept = self.texts.sources.len(),
            values_before = before.1,
            values_kept = self.texts.values.len(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "correlation source ids and values swept"
        );
    }

    /// Keeps the totals of a rule's windows being dropped (the source ids
    /// only they held go at the end of the sync).
    fn retire(&mut self, windows: &Windows) {
        let s = windows.stats;
        self.retired.observed += s.observed;
        self.retired.fired += s.fired;
        self.retired.evicted += s.evicted;
        self.retired.too_late += s.too_late;
    }

    fn reset(&mut self, rule_id: &str, why: &str, groups: usize) {
        if self.durable {
            self.resets.push((
                rule_id.to_string(),
                Reset {
                    why: why.to_string(),
                    groups,
                },
            ));
        }
    }

    /// Keeps window changes for checkpoints from now on, and restores
    /// `saved` (windows read back from the database) into the rules that
    /// have the same `correlate:` block at the next sync.
    pub fn make_durable(&mut self, saved: Saved) {
        self.durable = true;
        self.log_rows = saved.log_rows;
        self.saved = Some(saved.rules);
        self.synced = None;
        for a in &mut self.active {
            a.windows.track_changes();
        }
    }

    /// `--event-time-field`: the payload path (dotted) of events' time.
    pub fn set_time_field(&mut self, path: Option<&str>) {
        self.time_field = path.map(crate::rule::conditions::FieldPath::dotted);
    }

    /// `--max-groups`: the group bound of rules that set none.
    pub fn set_max_groups(&mut self, max_groups: Option<usize>) {
        self.max_groups = max_groups;
        self.synced = None;
    }

    /// The window changes since the last call (nothing unless durable):
    /// the groups changed, or, once the checkpoint log has grown past
    /// twice the groups held (plus [`COMPACT_SLACK`]), every group, to
    /// replace the log.
    pub fn take_delta(&mut self) -> WindowDelta {
        let mut delta = WindowDelta::default();
        if !self.durable {
            return delta;
        }
        for (rule_id, reset) in self.resets.drain(..) {
            delta.rules.push(RuleDelta {
                rule_id,
                block_sha256: String::new(),
                reset: Some(reset),
                changes: Default::default(),
            });
        }
        let groups: u64 = self.active.iter().map(|a| a.windows.len() as u64).sum();
        delta.compact = self.log_rows > 2 * groups + COMPACT_SLACK;
        for a in &mut self.active {
            let mut changes = a.windows.take_changes(&self.texts);
            if delta.compact {
                changes = super::window::Changes {
                    upserts: a.windows.snapshot(&self.texts),
                    deletes: Vec::new(),
                };
            }
            if changes.upserts.is_empty() && changes.deletes.is_empty() {
                continue;
            }
            delta.rules.push(RuleDelta {
                rule_id: a.rule.rule_id.clone(),
                block_sha256: a.block_sha256.clone(),
                reset: None,
                changes,
            });
        }
        let rows = delta.rows() as u64;
        self.log_rows = if delta.compact {
            rows
        } else {
            self.log_rows + rows
        };
        delta
    }

    pub fn stats(&self) -> CorrelationStats {
        let mut s = CorrelationStats {
            rules: self.active.len() as u64,
            restored: self.restored,
            observed: self.retired.observed,
            fired: self.retired.fired,
            evicted: self.retired.evicted,
            too_late: self.retired.too_late,
            ..CorrelationStats::default()
        };
        for a in &self.active {
            let w = a.windows.stats;
            s.groups += a.windows.len() as u64;
            s.observed += w.observed;
            s.fired += w.fired;
            s.evicted += w.evicted;
            s.too_late += w.too_late;
        }
        s
    }

    /// Counts `event` (whose single-event tags are `fired`) and appends the
    /// tags of the correlations it completes to `out`.
    pub fn observe(
        &mut self,
        event: &TaggerEvent,
        fired: &[Tag],
        cx: &Context,
        out: &mut Vec<Tag>,
    ) {
        let now = cx.now;
        let own = match &self.time_field {
            Some(path) => path.lookup(&event.payload).and_then(time_ms),
            None => event_time_ms(&event.payload),
        };
        let time_ms = own.unwrap_or_else(|| now.saturating_mul(1000));
        let Some(rules) = self.by_kind.get(event.source_kind.as_str()) else {
            return;
        };
        // Per event, made once whatever the number of rules: the shared
        // source id, and each distinct `group_by`'s key.
        self.event_keys.clear();
        self.event_keys.resize(self.keys.len(), None);
        self.steps.clear();
        self.pending.clear();
        // First what each rule counts and in which group (the key's row of
        // group slots is asked for as soon as the key is found); the
        // counting comes after, once every group has been asked for: the
        // groups are spread over memory, and their loads then overlap
        // instead of stalling one rule after the other.
        for &i in rules {
            let a = &self.active[i];
            let rule = &a.rule;
            let gate = cx.states.gate(&rule.rule_id, now);
            if gate == Gate::Off {
                continue;
            }
            let Some(spec) = rule.correlation() else {
                continue;
            };
            let first = self.steps.len();
            match &spec.select {
                Select::All => self.steps.push(0),
                Select::Match(c) => match c.eval(&event.payload) {
                    Ok(true) => self.steps.push(0),
                    _ => continue,
                },
                Select::Rules(ids) => self.steps.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|(_, id)| fired.iter().any(|t| &t.rule_id == *id))
                        .map(|(i, _)| i),
                ),
            }
            if self.steps.len() == first {
                continue;
            }
            let keys = &mut self.keys[a.key_class];
            let id = *self.event_keys[a.key_class].get_or_insert_with(|| {
                let id = spec.group_key(event).map(|k| keys.id(&k));
                // Its row of group slots is read for every rule below.
                if let Some(id) = id {
                    keys.prefetch_row(id);
                }
                id
            });
            let counted = match id {
                None => None,
                Some(id) => match (spec.settings.kind, spec.fields.as_slice()) {
                    (Kind::ValueCount, fields @ [_, ..]) => super::value_text(fields, event)
                        .map(|v| (id, Some(self.texts.values.id(&v)), 0.0)),
                    (Kind::ValueSum, [f]) => f
                        .lookup(&event.payload)
                        .and_then(number)
                        .map(|n| (id, None, n)),
                    _ => Some((id, None, 0.0)),
                },
            };
            let Some((id, value, amount)) = counted else {
                self.steps.truncate(first);
                continue;
            };
            self.pending.push(Pending {
                rule: i,
                gate,
                key: id,
                steps: first..self.steps.len(),
                value,
                amount,
            });
        }
        if !self.pending.is_empty() {
            self.count_pending(event, time_ms, cx, out);
        }
        // A key no rule counted the event under is not kept.
        for (class, id) in self.event_keys.iter().enumerate() {
            if let Some(Some(id)) = *id {
                self.keys[class].forget_unheld(id);
            }
        }
    }

    /// Counts the event in the groups [`Correlator::observe`] found for
    /// it. The CPU is asked for every group first, then for their newest
    /// and oldest entries; the counting reads them after.
    fn count_pending(
        &mut self,
        event: &TaggerEvent,
        time_ms: i64,
        cx: &Context,
        out: &mut Vec<Tag>,
    ) {
        for p in &self.pending {
            let a = &self.active[p.rule];
            a.windows.prefetch(&self.keys[a.key_class], p.key, a.column);
        }
        for p in &self.pending {
            let a = &self.active[p.rule];
            a.windows
                .prefetch_entries(&self.keys[a.key_class], p.key, a.column);
        }
        // One source id for every entry the event makes.
        let source = self.texts.sources.add(&event.source_id);
        for p in self.pending.drain(..) {
            let a = &mut self.active[p.rule];
            let keys = &mut self.keys[a.key_class];
            for &step in &self.steps[p.steps] {
                let obs = Observation {
                    time_ms,
                    value: p.value,
                    amount: p.amount,
                    step,
                    source,
                };
                let firing = a.windows.observe(&obs, keys, p.key, a.column, &self.texts);
                if let Some(firing) = firing {
                    emit::emit(&a.rule, firing, event, p.gate, cx, out);
                }
            }
        }
        if self.texts.sweep_due() {
            self.sweep_texts();
        }
    }
}

fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

#[cfg(test)]
mod tests;
