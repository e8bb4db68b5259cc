use super::*;
use crate::event::Payload;
use crate::rule::parse::{parse_rule, LoadOptions};
use std::path::Path;

fn rule(name: &str, window: &str) -> Arc<Rule> {
    rule_counting(name, "type: event_count", window)
}

/// Rule C1 counting `what` (its `type:` and fields) of failed attempts.
fn rule_counting(name: &str, what: &str, window: &str) -> Arc<Rule> {
    let text = format!(
        "rule_id: C1\nrule_version: 1\nname: {name}\napplies_to: [auth_attempt]\n\
         correlate:\n  {what}\n  match: {{all: [{{field: success, equals: false}}]}}\n  \
         group_by: [attacker_uuid]\n  window: {window}\n  condition: {{gte: 3}}\n\
         emits: [{{tactic: TA0006, technique_id: T1110, confidence: 0.8}}]\n"
    );
    let (rule, diags) = parse_rule(Path::new("c1.yaml"), &text, LoadOptions::default());
    assert!(diags.is_empty(), "{diags:?}");
    Arc::new(rule.unwrap())
}

fn failure(i: i64) -> TaggerEvent {
    let mut payload = Payload::default();
    payload.insert("success".into(), Json::Bool(false));
    payload.insert("username".into(), Json::from(format!("u{}", i % 2)));
    payload.insert("ts".into(), Json::from(1_795_161_600 + i));
    TaggerEvent {
        source_kind: "auth_attempt".into(),
        source_id: format!("e{i}"),
        attacker_uuid: Some("a1".into()),
        identity_uuid: None,
        session_id: None,
        decky_id: None,
        payload,
    }
}

fn feed(c: &mut Correlator, from: i64, to: i64) -> usize {
    let states = RuleStates::default();
    let config = TagConfig::default();
    let cx = Context {
        states: &states,
        now: 0,
        config: &config,
        created_at: "2026-11-20 08:00:00.000000",
    };
    let mut out = Vec::new();
    for i in from..to {
        c.observe(&failure(i), &[], &cx, &mut out);
    }
    out.len()
}

#[test]
fn a_reload_keeps_windows_unless_the_correlation_changed() {
    let mut c = Correlator::default();
    c.sync(&Arc::new(vec![rule("guessing", "5m")]));
    assert_eq!(feed(&mut c, 0, 2), 0);
    assert_eq!(c.texts.sources.len(), 2, "a source id per counted event");
    c.sweep_texts();
    assert_eq!(c.texts.sources.len(), 2, "both held");
    // A new name only: the two counted failures stay.
    c.sync(&Arc::new(vec![rule("password guessing", "5m")]));
    assert_eq!(feed(&mut c, 2, 3), 1);
    // Another window: counting starts over, and the source ids of the
    // entries dropped with the old windows go at the sync's sweep.
    c.sync(&Arc::new(vec![rule("password guessing", "10m")]));
    assert!(c.texts.sources.is_empty());
    assert_eq!(feed(&mut c, 400, 402), 0);
    assert_eq!(feed(&mut c, 402, 403), 1);
    // Gone: nothing is counted, nothing is held.
    c.sync(&Arc::new(Vec::new()));
    assert!(c.texts.sources.is_empty());
    assert_eq!(feed(&mut c, 1000, 1010), 0);
    assert!(
        c.texts.sources.is_empty(),
        "events no rule counts add nothing"
    );
}

#[test]
fn values_are_held_once_and_dropped_with_their_rule() {
    let mut c = Correlator::default();
    c.sync(&Arc::new(vec![rule_counting(
        "spraying",
        "type: value_count\n  field: username",
        "5m",
    )]));
    // Two usernames, taking turns: two distinct values, short of three.
    assert_eq!(feed(&mut c, 0, 6), 0);
    assert_eq!(c.texts.values.len(), 2, "one id per distinct value");
    c.sweep_texts();
    assert_eq!(c.texts.values.len(), 2, "both held");
    // Gone: the values only its windows held go at the sync's sweep.
    c.sync(&Arc::new(Vec::new()));
    assert!(c.texts.values.is_empty());
}

#[test]
fn durable_windows_are_restored_only_under_the_same_block() {
    let mut c = Correlator::default();
    c.make_durable(Saved::default());
    let rules = Arc::new(vec![rule("guessing", "5m")]);
    c.sync(&rules);
    assert_eq!(feed(&mut c, 0, 2), 0);
    let delta = c.take_delta();
    assert_eq!(delta.rules.len(), 1);
    let saved_rule = durable::SavedRule {
        block_sha256: delta.rules[0].block_sha256.clone(),
        groups: delta.rules[0].changes.upserts.clone(),
        ..Default::default()
    };
    let saved = |r: &durable::SavedRule| {
        let mut s = Saved::default();
        s.rules.insert("C1".to_string(), r.clone());
        s.rules
            .insert("GONE".to_string(), durable::SavedRule::default());
        s
    };
    // Same block: the two failures are back, the third fires.
    let mut again = Correlator::default();
    again.make_durable(saved(&saved_rule));
    again.sync(&rules);
    assert_eq!(again.stats().restored, 1);
    assert_eq!(feed(&mut again, 2, 3), 1);
    let resets: Vec<_> = again
        .take_delta()
        .rules
        .into_iter()
        .filter_map(|d| d.reset.map(|r| (d.rule_id, r.why)))
        .collect();
    assert_eq!(
        resets,
        vec![(
            "GONE".to_string(),
            "no loaded correlation rule has this id".to_string()
        )]
    );
    // Another window: nothing restored, and the saved rows are reset.
    let mut other = Correlator::default();
    other.make_durable(saved(&saved_rule));
    other.sync(&Arc::new(vec![rule("guessing", "10m")]));
    assert_eq!(other.stats().restored, 0);
    assert_eq!(feed(&mut other, 2, 3), 0);
    let resets: Vec<String> = other
        .take_delta()
        .rules
        .into_iter()
        .filter(|d| d.reset.is_some())
        .map(|d| d.rule_id)
        .collect();
    assert_eq!(resets, ["C1", "GONE"]);
}
