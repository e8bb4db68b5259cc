//! `RuleIndex`: one tagger's rules, compiled for fast evaluation.
//!
//! Rules are bucketed by source kind. Within a bucket, each payload field
//! that rules search gets an Aho-Corasick automaton over the literals those
//! rules require (see [`crate::literals`]); an event only evaluates the rules
//! whose literals occur, plus the rules that have no usable literal. The
//! brute-force evaluator beside it checks every rule and must always agree.

use crate::event::Payload;
use crate::lifter::Lifter;
use crate::rule::conditions::FieldPath;
use crate::rule::{Matcher, Rule};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug)]
struct FieldFilter {
    field: FieldPath,
    automaton: AhoCorasick,
    /// For each automaton pattern: the bucket positions of rules needing it.
    owners: Vec<Vec<u32>>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Rules of this source kind, as indexes into `RuleIndex::rules`, in
    /// evaluation order.
    order: Vec<u32>,
    /// Bucket positions of rules that are always candidates.
    always: Vec<u32>,
    filters: Vec<FieldFilter>,
}

/// An immutable, compiled view of one tagger's rules.
#[derive(Debug)]
pub struct RuleIndex {
    lifter: Lifter,
    rules: Vec<Arc<Rule>>,
    /// Per source kind; a handful, so a linear scan beats hashing.
    buckets: Vec<(String, Bucket)>,
}

/// Whether `rule` (owned by `lifter`) can see events of `kind`.
fn reaches(lifter: Lifter, rule: &Rule, kind: &str) -> bool {
    if !rule.applies_to(kind) {
        return false;
    }
    match rule.matcher {
        // Our declarative rules see every kind they name.
        Matcher::Conditions(_) => true,
        Matcher::Correlation(_) => false,
        _ => lifter.handles().contains(&kind),
    }
}

impl RuleIndex {
    /// Builds the index of `lifter` over `rules` (which it must own), keeping
    /// their order.
    pub fn build(lifter: Lifter, rules: Vec<Arc<Rule>>) -> RuleIndex {
        let mut buckets: HashMap<String, Bucket> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for kind in &rule.applies_to {
                if reaches(lifter, rule, kind) {
                    buckets
                        .entry(kind.clone())
                        .or_default()
                        .order
                        .push(i as u32);
                }
            }
        }
        let mut buckets: Vec<(String, Bucket)> = buckets.into_iter().collect();
        buckets.sort_by(|a, b| a.0.cmp(&b.0));
        for (kind, bucket) in &mut buckets {
            let mut per_field: BTreeMap<FieldPath, BTreeMap<Vec<u8>, Vec<u32>>> = BTreeMap::new();
            for (pos, &ri) in bucket.order.iter().enumerate() {
                let rule = &rules[ri as usize];
                match rule.required_literals(kind) {
                    Some(lits) if !lits.is_empty() => {
                        for (field, lit) in lits {
                            let owners =
                                per_field.entry(field).or_default().entry(lit).or_default();
                            if owners.last() != Some(&(pos as u32)) {
                                owners.push(pos as u32);
                            }
                        }
                    }
                    _ => bucket.always.push(pos as u32),
                }
            }
            for (field, lits) in per_field {
                let (patterns, owners): (Vec<Vec<u8>>, Vec<Vec<u32>>) = lits.into_iter().unzip();
                match AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                {
                    Ok(automaton) => bucket.filters.push(FieldFilter {
                        field,
                        automaton,
                        owners,
                    }),
                    Err(_) => {
                        // Too large for the automaton: fall back to always
                        // evaluating these rules.
                        for o in owners.into_iter().flatten() {
                            bucket.always.push(o);
                        }
                    }
                }
            }
            bucket.always.sort_unstable();
            bucket.always.dedup();
        }
        RuleIndex {
            lifter,
            rules,
            buckets,
        }
    }

    pub fn lifter(&self) -> Lifter {
        self.lifter
    }

    /// The rules of this index, in load order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    fn bucket(&self, kind: &str) -> Option<&Bucket> {
        self.bucket_id(kind).map(|i| &self.buckets[i].1)
    }

    /// The position of `kind`'s bucket (resolve once, then use the `_in`
    /// methods, to avoid comparing the kind again and again).
    pub fn bucket_id(&self, kind: &str) -> Option<usize> {
        self.buckets.iter().position(|(k, _)| k == kind)
    }

    /// The source kinds this index has rules for.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.buckets.iter().map(|(k, _)| k.as_str())
    }

    /// Whether any rule of this index can see `kind`.
    pub fn handles_kind(&self, kind: &str) -> bool {
        self.bucket(kind).is_some()
    }

    /// Rules that can match an event of `kind` with this payload, in
    /// evaluation order, after prefiltering.
    pub fn candidates(&self, kind: &str, payload: &Payload) -> Vec<&Arc<Rule>> {
        match self.bucket_id(kind) {
            Some(b) => self.candidates_in(b, payload),
            None => Vec::new(),
        }
    }

    /// [`RuleIndex::candidates`] for a bucket found with [`RuleIndex::bucket_id`].
    pub fn candidates_in(&self, bucket_id: usize, payload: &Payload) -> Vec<&Arc<Rule>> {
        let Some((_, bucket)) = self.buckets.get(bucket_id) else {
            return Vec::new();
        };
        let mut hit = Hits::new(bucket.order.len());
        for &p in &bucket.always {
            hit.set(p);
        }
        let mut lowered = String::new();
        let mut values = Vec::new();
        for filter in &bucket.filters {
            values.clear();
            filter.field.lookup_all(payload, &mut values);
            let Some(text) = haystack(&values, &mut lowered) else {
                continue;
            };
            for m in filter.automaton.find_overlapping_iter(text) {
                for &p in &filter.owners[m.pattern().as_usize()] {
                    hit.set(p);
                }
            }
        }
        bucket
            .order
            .iter()
            .enumerate()
            .filter(|(pos, _)| hit.get(*pos as u32))
            .map(|(_, &ri)| &self.rules[ri as usize])
            .collect()
    }

    /// Every rule that can see `kind`, in evaluation order (no prefilter).
    pub fn all_for_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        self.all_in(self.bucket_id(kind).unwrap_or(usize::MAX))
    }

    /// [`RuleIndex::all_for_kind`] for a bucket found with [`RuleIndex::bucket_id`].
    pub fn all_in(&self, bucket_id: usize) -> impl Iterator<Item = &Arc<Rule>> + '_ {
        self.buckets
            .get(bucket_id)
            .map(|(_, b)| b.order.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(move |&ri| &self.rules[ri as usize])
    }
}

/// A bit per bucket position; no allocation for buckets of up to 256 rules.
enum Hits {
    Inline([u64; 4]),
    Heap(Vec<u64>),
}

impl Hits {
    fn new(n: usize) -> Hits {
        if n <= 256 {
            Hits::Inline([0; 4])
        } else {
            Hits::Heap(vec![0; n.div_ceil(64)])
        }
    }

    fn words(&mut self) -> &mut [u64] {
        match self {
            Hits::Inline(a) => a,
            Hits::Heap(v) => v,
        }
    }

    fn set(&mut self, p: u32) {
        let w = self.words();
        w[(p / 64) as usize] |= 1 << (p % 64);
    }

    fn get(&self, p: u32) -> bool {
        let w: &[u64] = match self {
            Hits::Inline(a) => a,
            Hits::Heap(v) => v,
        };
        w[(p / 64) as usize] & (1 << (p % 64)) != 0
    }
}

/// The ASCII-lowercased text the prefilter searches for a field: every
/// string found there (directly or in a list), joined by newlines. Joining
/// only adds text, so a literal in any one string is still found. A lone
/// string without ASCII capitals (the usual case) is searched in place.
fn haystack<'a>(values: &[&'a Value], buf: &'a mut String) -> Option<&'a str> {
    if let [Value::String(s)] = values {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some(s.as_str());
        }
    }
    buf.clear();
    let mut any = false;
    for value in values {
        match value {
            Value::String(s) => {
                buf.push_str(s);
                buf.push('\n');
                any = true;
            }
            Value::Array(items) => {
                for s in items.iter().filter_map(Value::as_str) {
                    buf.push_str(s);
                    buf.push('\n');
                    any = true;
                }
            }
            _ => {}
        }
    }
    if !any {
        return None;
    }
    buf.make_ascii_lowercase();
    Some(buf.as_str())
}
