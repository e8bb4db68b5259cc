//! A rule's windows as checkpoints see them: the groups changed since the
//! last checkpoint, every group (a full one), and a checkpointed group put
//! back (`super::super::durable` stores them).

use super::{Entry, Group, Kind, Observation, Windows, NO_KEY};
use crate::correlate::texts::Texts;
use std::sync::Arc;

/// One group's window as checkpointed: enough to go on counting exactly
/// where it stood.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    /// The newest time seen (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<i64>,
    /// The fired episode's window start (ms), while it absorbs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired: Option<i64>,
    #[serde(default)]
    pub entries: Vec<SavedEntry>,
}

/// A counted observation as checkpointed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedEntry {
    /// Time (ms).
    pub t: i64,
    /// `value_count`: the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<String>,
    /// `value_sum`: the amount.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n: f64,
    /// The temporal kinds: the step.
    #[serde(default, skip_serializing_if = "is_zero_step")]
    pub s: usize,
    /// The source id.
    pub id: String,
}

fn is_zero(n: &f64) -> bool {
    *n == 0.0
}

fn is_zero_step(s: &usize) -> bool {
    *s == 0
}

/// What changed in one rule's windows since the last take: the groups to
/// write (name, state) and the groups evicted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub upserts: Vec<(String, GroupState)>,
    pub deletes: Vec<String>,
}

impl Windows {
    /// Keeps changes from now on, for [`Windows::take_changes`].
    pub fn track_changes(&mut self) {
        self.track = true;
    }

    /// The groups changed and evicted since the last call (evictions
    /// first: a group evicted and made again is written after its delete).
    pub fn take_changes(&mut self, texts: &Texts) -> Changes {
        let kind = self.settings.kind;
        let mut changes = Changes {
            deletes: self.gone.drain(..).map(|g| g.to_string()).collect(),
            upserts: Vec::with_capacity(self.dirty.len()),
        };
        for slot in std::mem::take(&mut self.dirty) {
            let Some(group) = self.slots.get_mut(slot) else {
                continue;
            };
            // A slot freed by an eviction (and not reused) holds no group.
            if !group.dirty || !group.live {
                continue;
            }
            group.dirty = false;
            changes
                .upserts
                .push((group.name.to_string(), group.state(kind, texts)));
        }
        changes
    }

    /// Every group's window, least recently touched first (a full
    /// checkpoint); pending changes are included, so they are cleared.
    pub fn snapshot(&mut self, texts: &Texts) -> Vec<(String, GroupState)> {
        let kind = self.settings.kind;
        self.dirty.clear();
        self.gone.clear();
        let mut held: Vec<usize> = (0..self.slots.len())
            .filter(|&slot| self.slots[slot].live)
            .collect();
        held.sort_unstable_by_key(|&slot| self.touched[slot]);
        held.into_iter()
            .map(|slot| {
                let g = &mut self.slots[slot];
                g.dirty = false;
                (g.name.to_string(), g.state(kind, texts))
            })
            .collect()
    }

    /// Puts back a checkpointed group (as the most recent one; restore the
    /// least recent first). It is found by its key once entered into the
    /// key table ([`Windows::register`]).
    pub fn restore(&mut self, name: &str, state: GroupState, texts: &mut Texts) {
        let kind = self.settings.kind;
        let slot = self.make(NO_KEY, &Arc::from(name));
        self.clock += 1;
        self.touches.push_back((slot, self.clock));
        let mut entries: Vec<Entry> = state
            .entries
            .into_iter()
            .map(|e| {
                // One source per entry restored: the sharing between rules
                // is not saved.
                let obs = Observation {
                    time_ms: e.t,
                    value: e.v.map(|v| texts.values.id(&v)),
                    amount: e.n,
                    step: e.s,
                    source: texts.sources.add(&e.id),
                };
                Entry::of(&obs, kind)
            })
            .collect();
        entries.sort_by_key(|e| e.time_ms);
        self.touched[slot] = self.clock;
        let group = &mut self.slots[slot];
        group.newest_ms = state.newest;
        group.fired_at = state.fired;
        group.entries = entries.into();
    }
}

impl Group {
    /// The group's state, its rule being of `kind`.
    fn state(&self, kind: Kind, texts: &Texts) -> GroupState {
        let values = kind == Kind::ValueCount;
        let steps = matches!(kind, Kind::Temporal | Kind::TemporalOrdered);
        GroupState {
            newest: self.newest_ms,
            fired: self.fired_at,
            entries: self
                .entries
                .iter()
                .map(|e| SavedEntry {
                    t: e.time_ms,
                    v: e.value()
                        .filter(|_| values)
                        .map(|v| texts.values.text(v).to_string()),
                    n: e.amount,
                    s: if steps { e.step() } else { 0 },
                    id: texts.sources.text(e.source).to_string(),
                })
                .collect(),
        }
    }
}
