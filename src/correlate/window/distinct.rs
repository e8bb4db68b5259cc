//! The distinct values of a `value_count` group, kept as entries come and
//! go once the window is large. Recounting them on every observation
//! sorted every counted value: with a burst of 100,000 attempts in one
//! window, each attempt sorted 100,000 strings. A small window is still
//! recounted (cheaper than a table of its own).

use super::{Entry, FIELD_SEPARATOR};
use std::collections::HashMap;

/// Entries past which a group keeps its distinct values.
pub(super) const KEEP_FROM: usize = 32;

type Tally = HashMap<Box<str>, u32, foldhash::fast::RandomState>;

/// Each counted value's occurrences, and each field's (several fields).
#[derive(Debug, Default)]
pub(super) struct Distinct {
    values: Tally,
    fields: Vec<Tally>,
}

fn up(tally: &mut Tally, key: &str) {
    match tally.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            tally.insert(key.into(), 1);
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

/// The `k`th field's text of a joined value.
fn part(value: &str, k: usize) -> &str {
    value.split(FIELD_SEPARATOR).nth(k).unwrap_or("")
}

impl Distinct {
    /// The distinct values of `entries`, for a rule over `fields` fields.
    pub(super) fn of<'a>(entries: impl Iterator<Item = &'a Entry>, fields: usize) -> Distinct {
        let mut d = Distinct {
            values: Tally::default(),
            fields: vec![Tally::default(); if fields > 1 { fields } else { 0 }],
        };
        for e in entries {
            d.add(e);
        }
        d
    }

    pub(super) fn add(&mut self, e: &Entry) {
        let Some(v) = e.value.as_deref() else {
            return;
        };
        up(&mut self.values, v);
        for (k, tally) in self.fields.iter_mut().enumerate() {
            up(tally, part(v, k));
        }
    }

    pub(super) fn remove(&mut self, e: &Entry) {
        let Some(v) = e.value.as_deref() else {
            return;
        };
        down(&mut self.values, v);
        for (k, tally) in self.fields.iter_mut().enumerate() {
            down(tally, part(v, k));
        }
    }

    /// The count the condition is held against: distinct values, or with
    /// several fields the fewest distinct texts of any one field.
    pub(super) fn count(&self) -> usize {
        if self.fields.is_empty() {
            self.values.len()
        } else {
            self.fields.iter().map(HashMap::len).min().unwrap_or(0)
        }
    }

    /// The distinct values, sorted.
    pub(super) fn sorted(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.values.keys().map(|k| &**k).collect();
        v.sort_unstable();
        v
    }
}
