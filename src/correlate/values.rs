//! The values `value_count` windows count: each distinct text once, with
//! an id of 4 bytes that the entries hold.
//!
//! Before, every entry held its own copy of its value (`Box<str>`: an
//! allocation and a free per observation, 16 bytes in an entry that was
//! then 48) and a window's distinct values were counted by sorting texts.
//! A text has one id at a time, so distinct ids are distinct values and
//! counting them sorts integers. Like [`super::sources::Sources`], nothing
//! counts the ids: the stage marks those its windows hold and
//! [`Values::sweep`] frees the rest.

use super::sources::{Marks, SWEEP_FROM};
use std::collections::HashMap;
use std::sync::Arc;

/// A value's id in [`Values`].
pub type ValueId = u32;

/// The distinct values entries may hold.
#[derive(Debug)]
pub struct Values {
    /// Each held text's id.
    ids: HashMap<Arc<str>, ValueId, foldhash::fast::RandomState>,
    /// Each id's text (`None`: free), the same allocation as its key in
    /// `ids`.
    texts: Vec<Option<Arc<str>>>,
    /// Ids freed by the last sweep, reused first.
    free: Vec<ValueId>,
    /// Ids made since the last sweep.
    added: usize,
    /// Made ids that make the next sweep due.
    sweep_after: usize,
}

impl Default for Values {
    fn default() -> Values {
        Values {
            ids: HashMap::default(),
            texts: Vec::new(),
            free: Vec::new(),
            added: 0,
            sweep_after: SWEEP_FROM,
        }
    }
}

impl Values {
    /// The id of `text`: the one it has, or a new one (kept until a sweep
    /// finds no entry holding it).
    pub fn id(&mut self, text: &str) -> ValueId {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let owned: Arc<str> = text.into();
        self.added += 1;
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.texts.get_mut(id as usize) {
                    *slot = Some(owned.clone());
                }
                id
            }
            None => {
                self.texts.push(Some(owned.clone()));
                (self.texts.len() - 1) as ValueId
            }
        };
        self.ids.insert(owned, id);
        id
    }

    /// The text of `id` (empty if it is not held).
    pub fn text(&self, id: ValueId) -> &str {
        self.texts
            .get(id as usize)
            .and_then(Option::as_deref)
            .unwrap_or("")
    }

    /// Ids kept now (held, or made since the last sweep).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether enough ids were made since the last sweep for the next.
    pub fn sweep_due(&self) -> bool {
        self.added >= self.sweep_after
    }

    /// Marks to fill with the ids entries hold, for [`Values::sweep`].
    pub fn marks(&self) -> Marks {
        Marks::new(self.texts.len())
    }

    /// Frees every id not marked (the others keep theirs).
    pub fn sweep(&mut self, marks: Marks) {
        for (id, text) in self.texts.iter_mut().enumerate() {
            if text.is_some() && !marks.is_marked(id as ValueId) {
                if let Some(gone) = text.take() {
                    self.ids.remove(&gone);
                }
                self.free.push(id as ValueId);
            }
        }
        self.added = 0;
        self.sweep_after = self.len().max(SWEEP_FROM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_has_one_id_until_a_sweep_frees_it() {
        let mut v = Values::default();
        let a = v.id("alice");
        let b = v.id("bob");
        assert_ne!(a, b);
        assert_eq!(v.id("alice"), a, "the same text, the same id");
        assert_eq!((v.text(a), v.text(b), v.len()), ("alice", "bob", 2));
        let mut marks = v.marks();
        marks.mark(b);
        v.sweep(marks);
        assert_eq!((v.text(a), v.text(b), v.len()), ("", "bob", 1));
        // The freed id is reused, once; the text freed gets a new id.
        let c = v.id("carol");
        assert_eq!(c, a);
        let a2 = v.id("alice");
        assert!(a2 != a && a2 != b);
        assert_eq!(v.id("bob"), b);
        assert_eq!((v.text(c), v.text(a2)), ("carol", "alice"));
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn sweeps_come_after_as_many_new_texts_as_were_kept() {
        let mut v = Values::default();
        for i in 0..SWEEP_FROM - 1 {
            v.id(&i.to_string());
        }
        v.id("0");
        assert!(!v.sweep_due(), "a text seen again is not new");
        v.id("last");
        assert!(v.sweep_due());
        let mut marks = v.marks();
        for id in 0..SWEEP_FROM as ValueId {
            marks.mark(id);
        }
        v.sweep(marks);
        assert!(!v.sweep_due());
        assert_eq!(v.sweep_after, SWEEP_FROM);
    }
}
