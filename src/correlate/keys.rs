//! The group keys of the correlation rules that share a `group_by` (a key
//! class). Each key is held once, with an id, and the slots of its groups
//! in each of the class's rules sit side by side in one row: an event's
//! key is looked up once, and every rule of the class finds its group
//! from that row instead of hashing and comparing the key again (which,
//! with the groups spread over a large table, was a third of the stage's
//! time).
//!
//! A key lives while some rule of the class holds a group for it: when
//! its last group is evicted, or when no rule counted the event it was
//! made for, its id is freed for reuse. So the table holds at most as many
//! keys as the class's rules hold groups: bounded by their `max_groups`.

use std::collections::HashMap;
use std::sync::Arc;

/// A key's id in its class.
pub type KeyId = u32;

/// Where one rule's group of one key is: the key, its text, and the cell
/// holding the group's slot in the rule's windows (slot + 1; 0: none).
pub struct GroupAt<'a> {
    pub key: KeyId,
    pub name: &'a Arc<str>,
    pub cell: &'a mut u32,
}

/// The keys of one class.
#[derive(Debug, Default)]
pub struct Keys {
    ids: HashMap<Arc<str>, KeyId, foldhash::fast::RandomState>,
    /// Id → key (empty while the id is free).
    names: Vec<Arc<str>>,
    /// Rules in the class: the row's width.
    width: usize,
    /// `id * width + column` → the group's slot + 1 in that rule (0: none).
    cells: Vec<u32>,
    free: Vec<KeyId>,
}

impl Keys {
    /// The keys of a class of `width` rules.
    pub fn new(width: usize) -> Keys {
        Keys {
            width: width.max(1),
            ..Keys::default()
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of `key`, made (with no group in any rule) if it has none.
    pub fn id(&mut self, key: &str) -> KeyId {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let name: Arc<str> = Arc::from(key);
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = name.clone();
                id
            }
            None => {
                let id = self.names.len() as KeyId;
                self.names.push(name.clone());
                self.cells.resize(self.cells.len() + self.width, 0);
                id
            }
        };
        self.ids.insert(name, id);
        id
    }

    /// The keys held, in no order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.ids.keys().map(|k| k.to_string())
    }

    /// The group of `id` in the class's rule `column`.
    pub fn at(&mut self, id: KeyId, column: usize) -> GroupAt<'_> {
        let i = id as usize;
        GroupAt {
            key: id,
            name: &self.names[i],
            cell: &mut self.cells[i * self.width + column],
        }
    }

    /// The cell of `id` in rule `column` (the group's slot + 1; 0: none).
    pub fn cell(&self, id: KeyId, column: usize) -> u32 {
        self.cells
            .get(id as usize * self.width + column)
            .copied()
            .unwrap_or(0)
    }

    /// Starts loading the row of `id`'s group slots into the CPU's cache
    /// (see [`super::prefetch`]).
    pub fn prefetch_row(&self, id: KeyId) {
        let start = id as usize * self.width;
        if let Some(row) = self.cells.get(start..start + self.width) {
            super::prefetch::slice(row);
        }
    }

    /// Rule `column` no longer holds a group of `id` (evicted); the key
    /// goes when no rule does.
    pub fn released(&mut self, id: KeyId, column: usize) {
        let i = id as usize;
        if let Some(cell) = self.cells.get_mut(i * self.width + column) {
            *cell = 0;
        }
        self.forget_unheld(id);
    }

    /// Frees `id` if no rule of the class holds a group of it.
    pub fn forget_unheld(&mut self, id: KeyId) {
        let i = id as usize;
        let Some(row) = self.cells.get(i * self.width..(i + 1) * self.width) else {
            return;
        };
        if row.iter().any(|&c| c != 0) || self.names[i].is_empty() {
            return;
        }
        let name = std::mem::replace(&mut self.names[i], Arc::from(""));
        self.ids.remove(&name);
        self.free.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_while_a_rule_holds_them() {
        let mut keys = Keys::new(2);
        let a = keys.id("a");
        let b = keys.id("b");
        assert_ne!(a, b);
        assert_eq!(keys.id("a"), a, "one id per key");
        *keys.at(a, 0).cell = 1;
        *keys.at(a, 1).cell = 4;
        // "b" was made for an event no rule counted.
        keys.forget_unheld(b);
        assert_eq!(keys.len(), 1);
        // Its id is reused.
        let c = keys.id("c");
        assert_eq!(c, b);
        assert_eq!(*keys.at(c, 0).cell, 0, "a reused id starts empty");
        keys.released(a, 0);
        assert_eq!(keys.id("a"), a, "rule 1 still holds a group of a");
        assert_eq!(*keys.at(a, 1).cell, 4);
        keys.released(a, 1);
        keys.forget_unheld(c);
        assert!(keys.is_empty());
        assert_eq!(&**keys.at(a, 0).name, "", "a freed id has no key");
    }
}
