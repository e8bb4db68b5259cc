//! The texts the windows' entries name by id (4 bytes each): the source
//! ids of the events counted ([`Sources`]) and the values `value_count`
//! counts ([`Values`]). The stage keeps one of each, marks the ids its
//! windows hold and sweeps both together.

use super::sources::{Marks, Sources};
use super::values::Values;

/// The stage's two tables of texts.
#[derive(Debug, Default)]
pub struct Texts {
    pub sources: Sources,
    pub values: Values,
}

/// The ids the windows hold, in each table.
pub struct TextMarks {
    pub sources: Marks,
    pub values: Marks,
}

impl Texts {
    /// Whether either table made enough ids since its last sweep.
    pub fn sweep_due(&self) -> bool {
        self.sources.sweep_due() || self.values.sweep_due()
    }

    /// Marks to fill with the ids entries hold, for [`Texts::sweep`].
    pub fn marks(&self) -> TextMarks {
        TextMarks {
            sources: self.sources.marks(),
            values: self.values.marks(),
        }
    }

    /// Frees every id not marked, in both tables.
    pub fn sweep(&mut self, marks: TextMarks) {
        self.sources.sweep(marks.sources);
        self.values.sweep(marks.values);
    }
}
