//! `ttp test`: every rule's embedded examples, and the precision gate.
//!
//! * Each `examples.match` payload must make its rule fire; each
//!   `examples.no_match` payload must not. A correlation rule's examples
//!   are event sequences: a `match` sequence fires the rule once, on its
//!   last event; a `no_match` one never does.
//! * Precision gate: a rule that emits a confidence of at least
//!   [`PRECISION_CONFIDENCE`] must fire on none of the benign corpus events and
//!   on none of the other rules' `no_match` examples.
//!
//! Examples are evaluated through the whole engine (every tagger, then the
//! correlation stage, fresh for each sequence), exactly as live events are.

use crate::correlate::stage::{Context, Correlator};
use crate::engine::{Evaluation, Snapshot};
use crate::event::TaggerEvent;
use crate::rule::Rule;
use crate::tag::{Tag, TagConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Rules at or above this confidence are held to the precision gate.
pub const PRECISION_CONFIDENCE: f64 = 0.85;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// A `match` example did not fire the rule.
    Missed { line: u32 },
    /// A `match` sequence fired the rule elsewhere than once on its last
    /// event: the (1-based) events it fired on.
    FiredOff { line: u32, events: Vec<usize> },
    /// A `no_match` example fired the rule.
    FalsePositive { line: u32 },
    /// A high-confidence rule fired on a benign corpus event.
    FiredOnBenign { event_line: u64, source_id: String },
    /// A high-confidence rule fired on another rule's `no_match` example.
    FiredOnOtherNoMatch { other_rule: String, line: u32 },
    /// The rule has no examples (a failure only under `--strict`).
    NoExamples,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFailure {
    pub rule_id: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub failure: Failure,
}

impl std::fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.path.display();
        match &self.failure {
            Failure::Missed { line } => write!(
                f,
                "{p}:{line}: {}: the `match` example did not fire the rule",
                self.rule_id
            ),
            Failure::FiredOff { line, events } => write!(
                f,
                "{p}:{line}: {}: the `match` sequence must fire the rule once, on its last event; it fired on event(s) {}",
                self.rule_id,
                events.iter().map(|e| format!("#{e}")).collect::<Vec<_>>().join(", ")
            ),
            Failure::FalsePositive { line } => write!(
                f,
                "{p}:{line}: {}: the `no_match` example fired the rule",
                self.rule_id
            ),
            Failure::FiredOnBenign { event_line, source_id } => write!(
                f,
                "{p}: {}: confidence >= {PRECISION_CONFIDENCE} but it fired on benign event {source_id} (line {event_line})",
                self.rule_id
            ),
            Failure::FiredOnOtherNoMatch { other_rule, line } => write!(
                f,
                "{p}: {}: confidence >= {PRECISION_CONFIDENCE} but it fired on {other_rule}'s `no_match` example (line {line})",
                self.rule_id
            ),
            Failure::NoExamples => write!(f, "{p}: {}: the rule has no examples", self.rule_id),
        }
    }
}

/// What `ttp test` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TestReport {
    pub rules: usize,
    pub examples: usize,
    pub benign_events: usize,
    pub failures: Vec<RuleFailure>,
}

impl TestReport {
    /// Failures that fail the run (`NoExamples` only when `strict`).
    pub fn failing(&self, strict: bool) -> usize {
        self.failures
            .iter()
            .filter(|f| strict || f.failure != Failure::NoExamples)
            .count()
    }
}

fn fired(snap: &Snapshot, kind: &str, payload: &crate::event::Payload) -> Vec<Tag> {
    let event = TaggerEvent {
        source_kind: kind.to_string(),
        source_id: "example".into(),
        attacker_uuid: Some("example-attacker".into()),
        identity_uuid: Some("example-identity".into()),
        session_id: None,
        decky_id: None,
        payload: payload.clone(),
    };
    let mut tags = Vec::new();
    snap.tag_event(
        &event,
        &TagConfig::default(),
        Evaluation::Indexed,
        &mut tags,
    );
    tags
}

fn fires(tags: &[Tag], rule_id: &str) -> bool {
    tags.iter().any(|t| t.rule_id == rule_id)
}

/// A sequence through the taggers and a fresh correlation stage: each
/// event's tags.
fn run_sequence(snap: &Snapshot, events: &[TaggerEvent]) -> Vec<Vec<Tag>> {
    let mut correlator = Correlator::default();
    correlator.sync(snap.correlations());
    let (states, config) = (crate::state::RuleStates::default(), TagConfig::default());
    let created_at = crate::tag::now_timestamp();
    let cx = Context {
        states: &states,
        // Events without a time of their own all happen at this moment.
        now: 1_800_000_000,
        config: &config,
        created_at: &created_at,
    };
    events
        .iter()
        .map(|event| {
            let mut tags = Vec::new();
            snap.tag_event(event, &config, Evaluation::Indexed, &mut tags);
            let mut completed = Vec::new();
            correlator.observe(event, &tags, &cx, &mut completed);
            tags.append(&mut completed);
            tags
        })
        .collect()
}

/// Runs every example of `rules` and the precision gate over `benign`
/// (events with their line numbers).
pub fn run(rules: &[Arc<Rule>], benign: &[(u64, TaggerEvent)]) -> TestReport {
    let snap = Snapshot::build(rules);
    let mut report = TestReport {
        rules: rules.len(),
        benign_events: benign.len(),
        ..TestReport::default()
    };
    let fail = |rule: &Rule, failure: Failure| RuleFailure {
        rule_id: rule.rule_id.clone(),
        path: rule.source.path.clone(),
        failure,
    };
    let strict_rules: Vec<&Arc<Rule>> = rules
        .iter()
        .filter(|r| r.max_confidence() >= PRECISION_CONFIDENCE)
        .collect();
    for rule in rules {
        if rule.examples.is_empty() {
            report.failures.push(fail(rule, Failure::NoExamples));
        }
        for ex in &rule.examples {
            report.examples += 1;
            let tags = if ex.sequence.is_empty() {
                fired(&snap, &ex.source_kind, &ex.payload)
            } else {
                let per_event = run_sequence(&snap, &ex.sequence);
                let on: Vec<usize> = per_event
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| fires(t, &rule.rule_id))
                    .map(|(i, _)| i + 1)
                    .collect();
                if ex.should_match && !on.is_empty() && on != [per_event.len()] {
                    report.failures.push(fail(
                        rule,
                        Failure::FiredOff {
                            line: ex.line,
                            events: on,
                        },
                    ));
                }
                per_event.into_iter().flatten().collect()
            };
            let hit = fires(&tags, &rule.rule_id);
            if ex.should_match && !hit {
                report
                    .failures
                    .push(fail(rule, Failure::Missed { line: ex.line }));
            }
            if !ex.should_match && hit {
                report
                    .failures
                    .push(fail(rule, Failure::FalsePositive { line: ex.line }));
            }
            if !ex.should_match {
                for other in &strict_rules {
                    if other.rule_id != rule.rule_id && fires(&tags, &other.rule_id) {
                        report.failures.push(fail(
                            other,
                            Failure::FiredOnOtherNoMatch {
                                other_rule: rule.rule_id.clone(),
                                line: ex.line,
                            },
                        ));
                    }
                }
            }
        }
    }
    // The benign corpus in order, as one stream: correlation rules count
    // over it too.
    let benign_events: Vec<TaggerEvent> = benign.iter().map(|(_, e)| e.clone()).collect();
    for ((line, event), tags) in benign.iter().zip(run_sequence(&snap, &benign_events)) {
        for other in &strict_rules {
            if fires(&tags, &other.rule_id) {
                report.failures.push(fail(
                    other,
                    Failure::FiredOnBenign {
                        event_line: *line,
                        source_id: event.source_id.clone(),
                    },
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse::{parse_rule, LoadOptions};
    use std::path::Path;

    fn rule(text: &str) -> Arc<Rule> {
        let (r, d) = parse_rule(Path::new("t.yaml"), text, LoadOptions::default());
        Arc::new(r.unwrap_or_else(|| panic!("{d:#?}")))
    }

    const BASE: &str = "rule_id: X\nrule_version: 1\nname: x\napplies_to: [command]\n\
        match: {field: command_text, contains: wget}\n";

    #[test]
    fn examples_pass_and_fail() {
        let good = rule(&format!(
            "{BASE}emits: [{{tactic: TA0011, technique_id: T1105, confidence: 0.5}}]\n\
             examples:\n  match:\n    - {{command_text: 'wget http://x'}}\n  no_match:\n    - {{command_text: ls}}\n"
        ));
        let r = run(&[good], &[]);
        assert_eq!(r.examples, 2);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        let bad = rule(&format!(
            "{BASE}emits: [{{tactic: TA0011, technique_id: T1105, confidence: 0.5}}]\n\
             examples:\n  match:\n    - {{command_text: ls}}\n  no_match:\n    - {{command_text: wget}}\n"
        ));
        let r = run(&[bad], &[]);
        assert_eq!(
            r.failures
                .iter()
                .map(|f| f.failure.clone())
                .collect::<Vec<_>>(),
            vec![
                Failure::Missed { line: 9 },
                Failure::FalsePositive { line: 11 }
            ]
        );
    }

    #[test]
    fn precision_gate_checks_benign_events_and_other_rules_no_match() {
        let strict = rule(&format!(
            "{BASE}emits: [{{tactic: TA0011, technique_id: T1105, confidence: 0.9}}]\n\
             examples:\n  match:\n    - {{command_text: wget}}\n"
        ));
        let other = rule(
            "rule_id: Y\nrule_version: 1\nname: y\napplies_to: [command]\n\
             match: {field: command_text, contains: curl}\n\
             emits: [{tactic: TA0011, technique_id: T1105, confidence: 0.5}]\n\
             examples:\n  no_match:\n    - {command_text: 'wget -q x'}\n",
        );
        let benign = TaggerEvent::from_json(serde_json::json!({
            "source_kind": "command", "source_id": "b1", "attacker_uuid": "a",
            "payload": {"command_text": "wget https://deb.debian.org/x.deb"}
        }))
        .unwrap();
        let r = run(&[strict, other], &[(7, benign)]);
        let kinds: Vec<(String, Failure)> = r
            .failures
            .iter()
            .map(|f| (f.rule_id.clone(), f.failure.clone()))
            .collect();
        assert!(kinds.contains(&(
            "X".into(),
            Failure::FiredOnOtherNoMatch {
                other_rule: "Y".into(),
                line: 9
            }
        )));
        assert!(kinds.contains(&(
            "X".into(),
            Failure::FiredOnBenign {
                event_line: 7,
                source_id: "b1".into()
            }
        )));
        assert!(!kinds.contains(&("Y".into(), Failure::NoExamples)));
    }
}
