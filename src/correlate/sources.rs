//! The source ids of the events the windows count: each event's text once,
//! in one buffer, shared by the entries of every rule that counted it.
//!
//! Entries hold a [`SourceId`] (4 bytes) and nothing counts them: now and
//! then the stage marks the ids its windows' entries still hold and
//! [`Sources::sweep`] drops the rest, packing the texts kept. So dropping
//! an entry costs nothing, and no path that drops entries (the window
//! sliding, a new episode, an eviction, a rule's windows retired) can
//! forget to release one. Before, an `Arc<str>` per event paid a locked add
//! for every entry made and a locked subtract, on a cache line long gone
//! cold, for every entry dropped (`docs/performance.md`).
//!
//! A sweep costs a pass over the entries held; it runs once as many ids
//! were added since the last as were kept by it (and at least
//! [`SWEEP_FROM`]), so its cost per event stays bounded and at most about
//! twice the ids held are kept.

/// A source id's place in [`Sources`].
pub type SourceId = u32;

/// Ids added before the first sweep, and the least between two.
pub const SWEEP_FROM: usize = 1 << 16;

/// The texts of the source ids entries may hold.
#[derive(Debug)]
pub struct Sources {
    /// Every text, one after another.
    bytes: String,
    /// Each id's text in `bytes` (`None`: free).
    spans: Vec<Option<(usize, usize)>>,
    /// Ids freed by the last sweep, reused first.
    free: Vec<SourceId>,
    /// Ids added since the last sweep.
    added: usize,
    /// Added ids that make the next sweep due.
    sweep_after: usize,
}

impl Default for Sources {
    fn default() -> Sources {
        Sources {
            bytes: String::new(),
            spans: Vec::new(),
            free: Vec::new(),
            added: 0,
            sweep_after: SWEEP_FROM,
        }
    }
}

/// The ids still held, marked by the stage for [`Sources::sweep`] (or
/// [`super::values::Values::sweep`]).
pub struct Marks(Vec<bool>);

impl Marks {
    /// No id of the `ids` a table has marked yet.
    pub(super) fn new(ids: usize) -> Marks {
        Marks(vec![false; ids])
    }

    /// `id` is held by an entry.
    pub fn mark(&mut self, id: u32) {
        if let Some(m) = self.0.get_mut(id as usize) {
            *m = true;
        }
    }

    pub(super) fn is_marked(&self, id: u32) -> bool {
        self.0.get(id as usize).copied().unwrap_or(false)
    }
}

impl Sources {
    /// Enters an event's source id (kept until a sweep finds no entry
    /// holding it).
    pub fn add(&mut self, text: &str) -> SourceId {
        let span = Some((self.bytes.len(), text.len()));
        self.bytes.push_str(text);
        self.added += 1;
        match self.free.pop() {
            Some(id) => {
                self.spans[id as usize] = span;
                id
            }
            None => {
                self.spans.push(span);
                (self.spans.len() - 1) as SourceId
            }
        }
    }

    /// The text of `id` (empty if it is not held).
    pub fn text(&self, id: SourceId) -> &str {
        self.spans
            .get(id as usize)
            .copied()
            .flatten()
            .and_then(|(at, len)| self.bytes.get(at..at + len))
            .unwrap_or("")
    }

    /// Ids kept now (held, or added since the last sweep).
    pub fn len(&self) -> usize {
        self.spans.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether enough ids were added since the last sweep for the next.
    pub fn sweep_due(&self) -> bool {
        self.added >= self.sweep_after
    }

    /// Marks to fill with the ids entries hold, for [`Sources::sweep`].
    pub fn marks(&self) -> Marks {
        Marks::new(self.spans.len())
    }

    /// Drops every id not marked, and packs the texts of the others (their
    /// ids do not change).
    pub fn sweep(&mut self, marks: Marks) {
        let mut bytes = String::with_capacity(self.bytes.len() / 2);
        for (id, span) in self.spans.iter_mut().enumerate() {
            let Some((at, len)) = *span else {
                continue;
            };
            if marks.is_marked(id as SourceId) {
                let text = self.bytes.get(at..at + len).unwrap_or("");
                *span = Some((bytes.len(), text.len()));
                bytes.push_str(text);
            } else {
                *span = None;
                self.free.push(id as SourceId);
            }
        }
        self.bytes = bytes;
        self.added = 0;
        self.sweep_after = self.len().max(SWEEP_FROM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_keeps_the_marked_texts_and_reuses_the_rest() {
        let mut s = Sources::default();
        let ids: Vec<SourceId> = (0..10).map(|i| s.add(&format!("src-{i}"))).collect();
        let empty = s.add("");
        let mut marks = s.marks();
        for &id in ids.iter().step_by(3) {
            marks.mark(id);
        }
        marks.mark(empty);
        s.sweep(marks);
        for (i, &id) in ids.iter().enumerate() {
            let want = if i % 3 == 0 {
                format!("src-{i}")
            } else {
                String::new()
            };
            assert_eq!(s.text(id), want);
        }
        assert_eq!(s.text(empty), "");
        assert_eq!(s.len(), 5);
        assert_eq!(s.bytes, "src-0src-3src-6src-9", "packed");
        // Freed ids are handed out again, each once; kept ones are not.
        let again: std::collections::BTreeSet<SourceId> = (0..6).map(|_| s.add("x")).collect();
        assert_eq!(again.len(), 6);
        assert!(again
            .iter()
            .all(|id| !ids.iter().step_by(3).any(|k| k == id)));
        assert_eq!(s.text(ids[0]), "src-0");
    }

    #[test]
    fn sweeps_come_after_as_many_adds_as_were_kept() {
        let mut s = Sources::default();
        for _ in 0..SWEEP_FROM - 1 {
            s.add("a");
        }
        assert!(!s.sweep_due());
        s.add("a");
        assert!(s.sweep_due());
        let mut marks = s.marks();
        for id in 0..(2 * SWEEP_FROM) as SourceId {
            marks.mark(id);
        }
        s.sweep(marks);
        assert!(!s.sweep_due());
        assert_eq!(s.sweep_after, SWEEP_FROM);
    }
}
