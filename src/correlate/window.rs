//! The windows of one correlation rule: per group, the observations of the
//! last `window` milliseconds, and when the rule's condition first holds in
//! them, one firing.
//!
//! Semantics (the same for every kind, checked against a brute-force
//! recount by a property test):
//!
//! - A group's **episode** starts with its first observation. Observations
//!   whose time is within `window` of the newest one count; older ones
//!   drop out (a sliding window).
//! - The first time the condition holds, the rule **fires** once for the
//!   episode; the firing's window runs from the oldest counted observation
//!   to the one that made it hold. Later observations of the group are
//!   absorbed until one arrives `window` or more after that start: it
//!   begins a new episode from nothing.
//! - An observation older than the group's newest by more than `lateness`
//!   is too late and is not counted; within it, it is counted at its own
//!   time (the window is kept in time order).
//! - At most `max_groups` groups are kept; the group seen least recently is
//!   evicted (and counted) to make room.
//!
//! So the same observations in the same order always give the same
//! firings, with the same window starts: what makes a correlation tag's
//! UUID deterministic.

mod entry;
mod kept;
mod saved;

pub use saved::{Changes, GroupState, SavedEntry};

use super::keys::{GroupAt, KeyId, Keys};
use super::prefetch;
use super::sources::SourceId;
use super::texts::{TextMarks, Texts};
use super::values::ValueId;
use entry::Entry;
use kept::Kept;
use std::collections::VecDeque;
use std::sync::Arc;

/// What a correlation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Observations.
    EventCount,
    /// Distinct values of a field.
    ValueCount,
    /// The sum of a numeric field.
    ValueSum,
    /// Every listed rule fired (steps, any order).
    Temporal,
    /// Every listed rule fired, in the listed order.
    TemporalOrdered,
}

/// A lower bound the count (or sum) must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    AtLeast(f64),
    Above(f64),
}

impl Threshold {
    pub fn holds(self, x: f64) -> bool {
        match self {
            Threshold::AtLeast(v) => x >= v,
            Threshold::Above(v) => x > v,
        }
    }
}

/// The settings of one rule's windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub kind: Kind,
    pub window_ms: i64,
    /// Required for the counting kinds; the temporal kinds need every step.
    pub threshold: Option<Threshold>,
    /// For the temporal kinds: how many steps (listed rules) there are.
    pub steps: usize,
    /// `value_count`: how many fields make a value. With several, a value
    /// is their texts joined by [`FIELD_SEPARATOR`], and the count is the
    /// fewest distinct values any one field has (ten distinct usernames
    /// *and* ten distinct passwords: credential stuffing, not guessing one
    /// account or spraying one password).
    pub fields: usize,
    pub lateness_ms: i64,
    pub max_groups: usize,
}

/// One observation of a group: an event that passed the rule's selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub time_ms: i64,
    /// `value_count`: the value, in the stage's
    /// [`Values`](super::values::Values).
    pub value: Option<ValueId>,
    /// `value_sum`: the number.
    pub amount: f64,
    /// The temporal kinds: which listed rule fired.
    pub step: usize,
    /// The event's source id, in the stage's
    /// [`Sources`](super::sources::Sources) (entered once per event,
    /// shared by the entries made of it).
    pub source: SourceId,
}

/// A firing: the rule's condition held for a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub group: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Observations counted.
    pub count: u64,
    /// The distinct values (`value_count`), at most [`EVIDENCE_CAP`].
    pub values: Vec<String>,
    pub distinct: u64,
    pub sum: f64,
    /// The counted observations' source ids, oldest first, at most
    /// [`EVIDENCE_CAP`].
    pub source_ids: Vec<String>,
}

/// Joins the fields of a several-field `value_count` value.
pub const FIELD_SEPARATOR: char = '\u{1f}';

/// Field `k` of a several-field value (`""` past its last field).
fn field_part(value: &str, k: usize) -> &str {
    value.split(FIELD_SEPARATOR).nth(k).unwrap_or("")
}

/// The fewest distinct values any one of `fields` fields has among the
/// distinct joined `tuples`.
fn fewest_distinct(tuples: &[&str], fields: usize) -> usize {
    (0..fields)
        .map(|k| {
            let mut column: Vec<&str> = tuples.iter().map(|t| field_part(t, k)).collect();
            column.sort_unstable();
            column.dedup();
            column.len()
        })
        .min()
        .unwrap_or(0)
}

/// How many values and source ids a firing lists.
pub const EVIDENCE_CAP: usize = 20;

/// The key of a restored group until the stage's key table gives it one.
const NO_KEY: KeyId = KeyId::MAX;

#[derive(Debug, Default)]
struct Group {
    /// Whether the slot holds a group (a freed slot does not).
    live: bool,
    key: KeyId,
    name: Arc<str>,
    /// Changed since the last [`Windows::take_changes`].
    dirty: bool,
    /// Counted observations, oldest first.
    entries: VecDeque<Entry>,
    /// A large window's counts (distinct values, steps), kept.
    kept: Option<Box<Kept>>,
    /// The newest time seen in the group (counted or absorbed).
    newest_ms: Option<i64>,
    /// Set once the episode fired: its window start.
    fired_at: Option<i64>,
}

/// Counters of one rule's windows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    pub observed: u64,
    pub too_late: u64,
    pub evicted: u64,
    pub fired: u64,
}

/// Every group's window of one rule. Groups are found through the
/// caller's key table ([`super::keys::Keys`]), which holds each group's
/// slot; the cells of evicted groups are cleared in it as they go.
#[derive(Debug)]
pub struct Windows {
    settings: Settings,
    slots: Vec<Group>,
    /// Each slot's eviction clock at its group's last touch (0: a free
    /// slot), apart from the groups: the upkeep of `touches` reads these
    /// 8 bytes a slot, not a group's cache lines.
    touched: Vec<u64>,
    /// Groups held.
    held: usize,
    /// Slots freed by eviction, reused first.
    free: Vec<usize>,
    /// Touches in order (slot, clock): the front is the least recent
    /// unless a later touch of the same slot superseded it.
    touches: VecDeque<(usize, u64)>,
    clock: u64,
    pub stats: WindowStats,
    /// Keys of the groups evicted and not yet released in the key table.
    evicted: Vec<KeyId>,
    /// Whether changes are kept for [`Windows::take_changes`] (durable
    /// windows); off, nothing accumulates.
    track: bool,
    /// Slots changed since the last take.
    dirty: Vec<usize>,
    /// Groups evicted since the last take.
    gone: Vec<Arc<str>>,
}

impl Windows {
    pub fn new(settings: Settings) -> Windows {
        Windows {
            settings,
            slots: Vec::new(),
            touched: Vec::new(),
            held: 0,
            free: Vec::new(),
            touches: VecDeque::new(),
            clock: 0,
            stats: WindowStats::default(),
            evicted: Vec::new(),
            track: false,
            dirty: Vec::new(),
            gone: Vec::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changes the group bound (evicting the least recent groups when it
    /// shrank).
    pub fn set_max_groups(&mut self, max_groups: usize) {
        self.settings.max_groups = max_groups;
        self.evict_to(max_groups.max(1));
    }

    /// Marks the source ids and values the entries hold (before a sweep
    /// of the stage's [`Texts`]).
    pub fn mark_texts(&self, marks: &mut TextMarks) {
        let values = self.settings.kind == Kind::ValueCount;
        for g in self.slots.iter().filter(|g| g.live) {
            for e in &g.entries {
                marks.sources.mark(e.source);
                if let Some(v) = e.value().filter(|_| values) {
                    marks.values.mark(v);
                }
            }
        }
    }

    /// Evicts the least recent groups until fewer than `room` are held.
    fn evict_to(&mut self, room: usize) {
        while self.held >= room {
            let Some((slot, at)) = self.touches.pop_front() else {
                break;
            };
            if self.touched[slot] == at {
                let gone = std::mem::take(&mut self.slots[slot]);
                self.touched[slot] = 0;
                self.held -= 1;
                self.free.push(slot);
                self.stats.evicted += 1;
                self.evicted.push(gone.key);
                if self.track {
                    self.gone.push(gone.name);
                }
            }
        }
    }

    /// Groups held now.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Enters every group held into `keys`, as the rule in `column`: a
    /// key table made anew (the rules changed) or groups restored from a
    /// checkpoint.
    pub fn register(&mut self, keys: &mut Keys, column: usize) {
        for (slot, g) in self.slots.iter_mut().enumerate() {
            if g.live {
                let id = keys.id(&g.name);
                *keys.at(id, column).cell = slot as u32 + 1;
                g.key = id;
            }
        }
        self.evicted.clear();
    }

    /// A new group's slot (evicting the least recent group when the table
    /// is full).
    fn make(&mut self, key: KeyId, name: &Arc<str>) -> usize {
        self.evict_to(self.settings.max_groups.max(1));
        let group = Group {
            live: true,
            key,
            name: name.clone(),
            ..Group::default()
        };
        self.held += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = group;
                slot
            }
            None => {
                self.slots.push(group);
                self.touched.push(0);
                self.slots.len() - 1
            }
        }
    }

    /// The slot of the group at `at`, made if it has none.
    fn slot(&mut self, at: &mut GroupAt) -> usize {
        if let Some(slot) = (*at.cell as usize).checked_sub(1) {
            if self
                .slots
                .get(slot)
                .is_some_and(|g| g.live && g.key == at.key)
            {
                return slot;
            }
        }
        let slot = self.make(at.key, at.name);
        *at.cell = slot as u32 + 1;
        slot
    }

    /// The slot of key `id`'s group (this rule being `column` of `keys`),
    /// if it has one.
    fn slot_of(&self, keys: &Keys, id: KeyId, column: usize) -> Option<usize> {
        (keys.cell(id, column) as usize)
            .checked_sub(1)
            .filter(|&slot| slot < self.slots.len())
    }

    /// Starts loading the group of key `id` (this rule being `column` of
    /// `keys`) into the CPU's cache, if it has one: the stage asks for
    /// every group an event is counted in before counting it in any, so
    /// that their loads overlap.
    pub fn prefetch(&self, keys: &Keys, id: KeyId, column: usize) {
        if let Some(slot) = self.slot_of(keys, id, column) {
            prefetch::value(&self.slots[slot]);
            prefetch::value(&self.touched[slot]);
        }
    }

    /// Then (once [`Windows::prefetch`] has had time to bring the group
    /// in) the newest and oldest of its counted entries, which an
    /// observation reads next.
    pub fn prefetch_entries(&self, keys: &Keys, id: KeyId, column: usize) {
        if let Some(slot) = self.slot_of(keys, id, column) {
            let group = &self.slots[slot];
            if let Some(entry) = group.entries.back() {
                prefetch::value(entry);
            }
            if let Some(entry) = group.entries.front() {
                prefetch::value(entry);
            }
        }
    }

    /// Counts one observation of the group of key `id`, this rule being
    /// `column` of the key table `keys`; returns the firing it completes,
    /// if any. The groups it evicts are released in `keys` (the caller
    /// frees `id` itself once no rule of the table may count it: see
    /// [`Keys::forget_unheld`]).
    pub fn observe(
        &mut self,
        obs: &Observation,
        keys: &mut Keys,
        id: KeyId,
        column: usize,
        texts: &Texts,
    ) -> Option<Firing> {
        let firing = self.observe_at(obs, keys.at(id, column), texts);
        for gone in self.evicted.drain(..) {
            keys.released(gone, column);
        }
        firing
    }

    /// [`Windows::observe`] at the group's cell in the key table.
    fn observe_at(&mut self, obs: &Observation, mut at: GroupAt, texts: &Texts) -> Option<Firing> {
        self.stats.observed += 1;
        let slot = self.slot(&mut at);
        self.clock += 1;
        let clock = self.clock;
        self.touches.push_back((slot, clock));
        // Superseded touches are dropped once they outnumber the groups.
        if self.touches.len() > 2 * self.held + 64 {
            let touched = &self.touched;
            self.touches.retain(|&(s, t)| touched[s] == t);
        }
        let settings = self.settings;
        self.touched[slot] = clock;
        let group = &mut self.slots[slot];
        if let Some(newest) = group.newest_ms {
            if obs.time_ms < newest.saturating_sub(settings.lateness_ms) {
                self.stats.too_late += 1;
                return None;
            }
        }
        if self.track && !group.dirty {
            group.dirty = true;
            self.dirty.push(slot);
        }
        let newest = group.newest_ms.map_or(obs.time_ms, |n| n.max(obs.time_ms));
        group.newest_ms = Some(newest);
        // A fired episode absorbs what follows until its window has passed.
        if let Some(start) = group.fired_at {
            if obs.time_ms < start.saturating_add(settings.window_ms) {
                return None;
            }
            group.fired_at = None;
            group.entries.clear();
            group.kept = None;
        }
        let entry = Entry::of(obs, settings.kind);
        if let Some(k) = group.kept.as_mut() {
            k.add(&entry, &texts.values);
        }
        // In time order (a late observation goes where its time puts it).
        if group
            .entries
            .back()
            .is_none_or(|e| e.time_ms <= obs.time_ms)
        {
            group.entries.push_back(entry);
        } else {
            let at = group.entries.partition_point(|e| e.time_ms <= obs.time_ms);
            group.entries.insert(at, entry);
        }
        // Only the last `window` before the newest counts.
        let oldest = newest.saturating_sub(settings.window_ms);
        while group.entries.front().is_some_and(|e| e.time_ms <= oldest) {
            if let (Some(e), Some(k)) = (group.entries.pop_front(), group.kept.as_mut()) {
                k.remove(&e, &texts.values);
            }
        }
        if group.kept.is_none()
            && group.entries.len() > kept::KEEP_FROM
            && kept::kept_for(settings.kind)
        {
            let k = Kept::of(group.entries.iter(), &settings, &texts.values);
            group.kept = Some(Box::new(k));
        }
        let firing = evaluate(
            &settings,
            &group.name,
            &group.entries,
            group.kept.as_deref(),
            texts,
        )?;
        group.fired_at = Some(firing.window_start_ms);
        self.stats.fired += 1;
        Some(firing)
    }
}

/// Whether the counted entries (and, for a large window, their kept
/// counts) satisfy the rule: the firing if so (built only then: this runs
/// on every observation).
fn evaluate(
    settings: &Settings,
    group: &str,
    entries: &VecDeque<Entry>,
    kept: Option<&Kept>,
    texts: &Texts,
) -> Option<Firing> {
    let first = entries.front()?;
    let last = entries.back()?;
    let mut distinct: Vec<&str> = Vec::new();
    let mut distinct_n = 0;
    let mut sum = 0.0;
    let holds = match settings.kind {
        Kind::EventCount => settings
            .threshold
            .is_some_and(|t| t.holds(entries.len() as f64)),
        // Distinct values never outnumber the entries: too few entries
        // cannot hold.
        Kind::ValueCount
            if !settings
                .threshold
                .is_some_and(|t| t.holds(entries.len() as f64)) =>
        {
            false
        }
        Kind::ValueCount => {
            // A text has one id: distinct ids are distinct values.
            let mut ids: Vec<ValueId> = Vec::new();
            match kept {
                Some(k) => distinct_n = k.distinct(),
                None => {
                    ids.extend(entries.iter().filter_map(Entry::value));
                    ids.sort_unstable();
                    ids.dedup();
                    distinct_n = if settings.fields > 1 {
                        let tuples: Vec<&str> = ids.iter().map(|&v| texts.values.text(v)).collect();
                        fewest_distinct(&tuples, settings.fields)
                    } else {
                        ids.len()
                    };
                }
            }
            let holds = settings
                .threshold
                .is_some_and(|t| t.holds(distinct_n as f64));
            if holds {
                distinct = match kept {
                    Some(k) => k.values(&texts.values),
                    None => ids.iter().map(|&v| texts.values.text(v)).collect(),
                };
                distinct.sort_unstable();
            }
            holds
        }
        Kind::ValueSum => {
            sum = entries.iter().map(|e| e.amount).sum();
            settings.threshold.is_some_and(|t| t.holds(sum))
        }
        Kind::Temporal if settings.steps > 128 => false,
        Kind::Temporal if kept.is_some() => kept.is_some_and(Kept::every_step),
        // A step not counted at all: the order need not be looked at.
        Kind::TemporalOrdered if kept.is_some_and(|k| !k.every_step()) => false,
        Kind::Temporal => {
            // Steps are few (the rules listed): a bit set.
            let mut seen = 0u128;
            for e in entries
                .iter()
                .filter(|e| e.step() < settings.steps.min(128))
            {
                seen |= 1 << e.step();
            }
            settings.steps > 0
                && settings.steps <= 128
                && seen.count_ones() as usize == settings.steps
        }
        Kind::TemporalOrdered => {
            // The steps in order, as a subsequence of the entries.
            let mut next = 0;
            for e in entries {
                if e.step() == next {
                    next += 1;
                    if next == settings.steps {
                        break;
                    }
                }
            }
            settings.steps > 0 && next == settings.steps
        }
    };
    if !holds {
        return None;
    }
    Some(Firing {
        group: group.to_string(),
        window_start_ms: first.time_ms,
        window_end_ms: last.time_ms,
        count: entries.len() as u64,
        values: distinct
            .iter()
            .take(EVIDENCE_CAP)
            .map(|v| v.to_string())
            .collect(),
        distinct: distinct_n as u64,
        sum,
        source_ids: entries
            .iter()
            .take(EVIDENCE_CAP)
            .map(|e| texts.sources.text(e.source).to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests;
