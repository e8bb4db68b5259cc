//! Rules: what a rule file says, once checked and compiled.
//!
//! * [`parse`] turns one file's text into a [`Rule`] or diagnostics.
//! * [`conditions`] is the declarative match language.
//! * [`load`] reads a rules directory.

pub mod conditions;
pub mod load;
pub mod parse;

use crate::event::Payload;
use crate::lifter::Lifter;
use crate::lifters::LifterRule;
use crate::pyregex::{PyRegex, SearchAbandoned};
use conditions::{Condition, FieldPath};
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;

/// One entry of `emits`: each becomes one tag when the rule fires.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub confidence: f64,
    /// DECNET's `mitre_url` for this emit, resolved once at load time.
    pub mitre_url: Option<String>,
}

/// Where a rule came from: the exact file text and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    pub path: PathBuf,
    pub text: Arc<str>,
    pub sha256: String,
}

/// DECNET's form: one regex over one field (spec §4).
#[derive(Debug)]
pub struct PatternMatch {
    /// The field named by `match.field`; `None` means the source kind's
    /// default field.
    pub field: Option<String>,
    pub regex: PyRegex,
}

impl PatternMatch {
    pub fn field_for(&self, source_kind: &str) -> Option<FieldPath> {
        match &self.field {
            Some(f) => Some(FieldPath::key(f)),
            None => Lifter::default_field(source_kind).map(FieldPath::key),
        }
    }
}

#[derive(Debug)]
pub enum Matcher {
    Pattern(PatternMatch),
    Conditions(Condition),
    /// A `lifter:*` kind, with its compiled parameters.
    Lifter(LifterRule),
    /// A `correlate:` block: fires over many events (the correlation stage
    /// evaluates it, never a tagger).
    Correlation(Box<crate::correlate::Correlation>),
}

/// An event embedded in a rule file that the rule must (or must not) fire on.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `true` under `examples.match`, `false` under `examples.no_match`.
    pub should_match: bool,
    pub source_kind: String,
    pub payload: Payload,
    /// The line of the example in the rule file.
    pub line: u32,
    /// A correlation rule's example: the events, in order (`source_kind`
    /// and `payload` above are then unused). A `match` sequence fires the
    /// rule once, on its last event; a `no_match` one never does.
    pub sequence: Vec<crate::event::TaggerEvent>,
}

/// A checked, compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub rule_id: String,
    pub rule_version: i64,
    pub name: String,
    pub description: String,
    /// Source kinds, duplicates removed, in file order.
    pub applies_to: Vec<String>,
    pub matcher: Matcher,
    pub emits: Vec<Emit>,
    pub evidence_fields: Vec<String>,
    /// `match.kind` as written (`None` when absent).
    pub kind: Option<String>,
    /// Embedded examples (`examples.match` / `examples.no_match`).
    pub examples: Vec<Example>,
    pub source: RuleSource,
}

impl Rule {
    /// The tagger that owns this rule, if any.
    pub fn owner(&self) -> Option<Lifter> {
        match &self.matcher {
            Matcher::Pattern(_) | Matcher::Conditions(_) => Some(Lifter::RuleEngine),
            Matcher::Lifter(_) => Lifter::owner_of(self.match_kind()),
            Matcher::Correlation(_) => None,
        }
    }

    /// The rule's `match.kind` as written, if any.
    pub fn match_kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The `correlate:` block of a correlation rule.
    pub fn correlation(&self) -> Option<&crate::correlate::Correlation> {
        match &self.matcher {
            Matcher::Correlation(c) => Some(c),
            _ => None,
        }
    }

    pub fn applies_to(&self, source_kind: &str) -> bool {
        self.applies_to.iter().any(|k| k == source_kind)
    }

    /// Whether the engine-owned rule's predicate accepts the payload.
    /// Lifter rules never match here (their lifters evaluate them).
    pub fn engine_matches(
        &self,
        source_kind: &str,
        payload: &Payload,
    ) -> Result<bool, SearchAbandoned> {
        match &self.matcher {
            Matcher::Pattern(p) => {
                let Some(field) = p.field_for(source_kind) else {
                    return Ok(false);
                };
                match field.lookup(payload) {
                    Some(Json::String(s)) => p.regex.is_match(s),
                    _ => Ok(false),
                }
            }
            Matcher::Conditions(c) => c.eval(payload),
            Matcher::Lifter(_) | Matcher::Correlation(_) => Ok(false),
        }
    }

    /// Prefilter literals for this rule and source kind (see
    /// [`Condition::required`]).
    pub fn required_literals(&self, source_kind: &str) -> Option<Vec<(FieldPath, Vec<u8>)>> {
        match &self.matcher {
            Matcher::Pattern(p) => {
                let field = p.field_for(source_kind)?;
                let lits = crate::literals::required_literals(p.regex.superset_pattern())?;
                Some(lits.into_iter().map(|l| (field.clone(), l)).collect())
            }
            Matcher::Conditions(c) => c.required(),
            Matcher::Lifter(_) | Matcher::Correlation(_) => None,
        }
    }

    /// The highest confidence any of its emits carries.
    pub fn max_confidence(&self) -> f64 {
        self.emits.iter().map(|e| e.confidence).fold(0.0, f64::max)
    }

    /// Every regex of the rule.
    pub fn regexes(&self) -> Vec<&PyRegex> {
        match &self.matcher {
            Matcher::Pattern(p) => vec![&p.regex],
            Matcher::Conditions(c) => c.regexes(),
            Matcher::Lifter(_) => Vec::new(),
            Matcher::Correlation(c) => match &c.select {
                crate::correlate::Select::Match(m) => m.regexes(),
                crate::correlate::Select::Rules(_) | crate::correlate::Select::All => Vec::new(),
            },
        }
    }
}
