//! What a large window's entries add up to, kept as entries come and go:
//! a `value_count` group's distinct values, a temporal group's steps.
//! Recounting them on every observation went over every counted entry
//! (and for `value_count` sorted their values): with a burst of 30,000
//! attempts in one window, 746 events/s where a kept count takes 750,000.
//! A small window is still recounted (cheaper than a table of its own).

use super::{field_part, Entry, Kind, Settings};
use crate::correlate::values::{ValueId, Values};
use std::collections::HashMap;

/// Entries past which a group keeps its counts.
pub(super) const KEEP_FROM: usize = 32;

type Tally = HashMap<Box<str>, u32, foldhash::fast::RandomState>;

/// Occurrences of each value (a text has one id: see [`Values`]).
type IdTally = HashMap<ValueId, u32, foldhash::fast::RandomState>;

/// Whether groups of this kind keep counts once large.
pub(super) fn kept_for(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ValueCount | Kind::Temporal | Kind::TemporalOrdered
    )
}

/// Each counted value's occurrences and each field's (several fields);
/// each step's.
#[derive(Debug, Default)]
pub(super) struct Kept {
    values_on: bool,
    values: IdTally,
    fields: Vec<Tally>,
    steps: Vec<u32>,
}

fn up(tally: &mut Tally, key: &str) {
    match tally.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            tally.insert(key.into(), 1);
        }
    }
}

fn up_id(tally: &mut IdTally, id: ValueId) {
    *tally.entry(id).or_insert(0) += 1;
}

fn down_id(tally: &mut IdTally, id: ValueId) {
    if let Some(n) = tally.get_mut(&id) {
        *n -= 1;
        if *n == 0 {
            tally.remove(&id);
        }
    }
}

fn down(tally: &mut Tally, key: &str) {
    if let Some(n) = tally.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            tally.remove(key);
        }
    }
}

impl Kept {
    /// The counts of `entries` for a rule with `settings`.
    pub(super) fn of<'a>(
        entries: impl Iterator<Item = &'a Entry>,
        settings: &Settings,
        texts: &Values,
    ) -> Kept {
        let values_on = settings.kind == Kind::ValueCount;
        let several = values_on && settings.fields > 1;
        let temporal = matches!(settings.kind, Kind::Temporal | Kind::TemporalOrdered);
        let mut k = Kept {
            values_on,
            values: IdTally::default(),
            fields: vec![Tally::default(); if several { settings.fields } else { 0 }],
            steps: vec![0; if temporal { settings.steps } else { 0 }],
        };
        for e in entries {
            k.add(e, texts);
        }
        k
    }

    /// Counts `e` (its value's text in `texts`).
    pub(super) fn add(&mut self, e: &Entry, texts: &Values) {
        if let Some(n) = self.steps.get_mut(e.step()) {
            *n += 1;
        }
        let Some(v) = e.value().filter(|_| self.values_on) else {
            return;
        };
        up_id(&mut self.values, v);
        for (k, tally) in self.fields.iter_mut().enumerate() {
            up(tally, field_part(texts.text(v), k));
        }
    }

    /// Counts `e` no more.
    pub(super) fn remove(&mut self, e: &Entry, texts: &Values) {
        if let Some(n) = self.steps.get_mut(e.step()) {
            *n = n.saturating_sub(1);
        }
        let Some(v) = e.value().filter(|_| self.values_on) else {
            return;
        };
        down_id(&mut self.values, v);
        for (k, tally) in self.fields.iter_mut().enumerate() {
            down(tally, field_part(texts.text(v), k));
        }
    }

    /// The count a `value_count` condition is held against: distinct
    /// values, or with several fields the fewest distinct texts of any one
    /// field.
    pub(super) fn distinct(&self) -> usize {
        if self.fields.is_empty() {
            self.values.len()
        } else {
            self.fields.iter().map(HashMap::len).min().unwrap_or(0)
        }
    }

    /// The distinct values' texts (in no order).
    pub(super) fn values<'t>(&self, texts: &'t Values) -> Vec<&'t str> {
        self.values.keys().map(|&v| texts.text(v)).collect()
    }

    /// Whether every step is counted at least once.
    pub(super) fn every_step(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|&n| n > 0)
    }
}
