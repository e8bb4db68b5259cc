//! One counted observation of a group, as its window holds it.

use super::{Kind, Observation};
use crate::correlate::sources::SourceId;
use crate::correlate::values::ValueId;

/// One counted observation: 24 bytes, as a window holds many (it was 48
/// with the value's text and a `usize` step in it).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub time_ms: i64,
    /// `value_sum`: the number.
    pub amount: f64,
    pub source: SourceId,
    /// By the rule's kind: `value_count`, the value's id ([`NO_VALUE`]:
    /// none); the temporal kinds, the step; else 0.
    datum: u32,
}

/// An entry's `datum` when a `value_count` observation had no value.
const NO_VALUE: u32 = u32::MAX;

impl Entry {
    /// The entry of an observation counted by a rule of `kind`.
    pub fn of(obs: &Observation, kind: Kind) -> Entry {
        let datum = match kind {
            Kind::ValueCount => obs.value.unwrap_or(NO_VALUE),
            Kind::Temporal | Kind::TemporalOrdered => u32::try_from(obs.step).unwrap_or(u32::MAX),
            Kind::EventCount | Kind::ValueSum => 0,
        };
        Entry {
            time_ms: obs.time_ms,
            amount: obs.amount,
            source: obs.source,
            datum,
        }
    }

    /// A `value_count` entry's value.
    pub fn value(&self) -> Option<ValueId> {
        (self.datum != NO_VALUE).then_some(self.datum)
    }

    /// A temporal entry's step.
    pub fn step(&self) -> usize {
        self.datum as usize
    }
}
