//! Property: the prefiltered index never drops a rule. For random rule sets
//! (DECNET pattern rules and declarative rules) and random events, indexed
//! evaluation and brute-force evaluation give identical tags.

use proptest::prelude::*;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use ttp_engine::engine::{Evaluation, Snapshot};
use ttp_engine::event::TaggerEvent;
use ttp_engine::rule::parse::{parse_rule, LoadOptions};
use ttp_engine::tag::TagConfig;

const WORDS: [&str; 10] = [
    "wget",
    "curl",
    "cat",
    "/etc/passwd",
    "sh",
    "-c",
    "id",
    "Nikto",
    "İd",
    "kelvin",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS.to_vec()).prop_map(String::from)
}

fn regex_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        word().prop_map(|w| regex_escape(&w)),
        Just(r"\s+".to_string()),
        Just(r"\w*".to_string()),
        Just(".".to_string()),
        Just("[a-c]".to_string()),
        Just(r"\d".to_string()),
        Just(r"\b".to_string()),
        (word(), word()).prop_map(|(a, b)| format!(
            "(?:{}|{})",
            regex_escape(&a),
            regex_escape(&b)
        )),
        word().prop_map(|w| format!("(?:{})?", regex_escape(&w))),
        word().prop_map(|w| format!("(?={})", regex_escape(&w))),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn pattern() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(regex_piece(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(ci, start, pieces, end)| {
            format!(
                "{}{}{}{}",
                if ci { "(?i)" } else { "" },
                if start { "^" } else { "" },
                pieces.concat(),
                if end { "$" } else { "" }
            )
        })
}

fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn condition(depth: u32) -> BoxedStrategy<String> {
    let leaf = (
        prop::sample::select(vec!["command_text", "user", "headers.ua", "headers.*"]),
        prop::sample::select(vec![
            "contains",
            "startswith",
            "endswith",
            "equals",
            "regex",
        ]),
        prop::collection::vec(word(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(field, op, vals, nocase)| {
            let vals: Vec<String> = vals.iter().map(|v| yaml_str(v)).collect();
            format!(
                "{{field: {field}, {op}: [{}], nocase: {nocase}}}",
                vals.join(", ")
            )
        })
        .boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(condition(depth - 1), 1..3)
            .prop_map(|c| format!("{{all: [{}]}}", c.join(", "))),
        1 => prop::collection::vec(condition(depth - 1), 1..3)
            .prop_map(|c| format!("{{any: [{}]}}", c.join(", "))),
        1 => condition(depth - 1).prop_map(|c| format!("{{not: {c}}}")),
    ]
    .boxed()
}

fn rule_yaml(i: usize, declarative: bool, pattern: &str, cond: &str) -> String {
    let m = if declarative {
        format!("match: {cond}\n")
    } else {
        format!(
            "match:\n  field: command_text\n  pattern: {}\n",
            yaml_str(pattern)
        )
    };
    format!(
        "rule_id: P{i}\nrule_version: 1\nname: p{i}\napplies_to: [command]\n{m}\
         emits:\n  - {{tactic: TA0002, technique_id: T1059, confidence: 0.5}}\nevidence_fields: [command_text]\n"
    )
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            word(),
            word().prop_map(|w| w.to_uppercase()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("7".to_string()),
            Just("b".to_string()),
            Just("\u{212A}".to_string()),
            Just("\u{131}".to_string()),
            Just("\u{b2}".to_string()),
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn indexed_equals_brute_force(
        rules in prop::collection::vec((any::<bool>(), pattern(), condition(2)), 1..12),
        events in prop::collection::vec((text(), text(), text(), any::<bool>()), 1..8),
    ) {
        let mut compiled = Vec::new();
        for (i, (decl, pat, cond)) in rules.iter().enumerate() {
            let yaml = rule_yaml(i, *decl, pat, cond);
            let (rule, diags) = parse_rule(Path::new("p.yaml"), &yaml, LoadOptions::default());
            match rule {
                Some(r) => compiled.push(Arc::new(r)),
                None => prop_assert!(false, "generated rule did not load: {yaml}\n{diags:#?}"),
            }
        }
        let snap = Snapshot::build(&compiled);
        for (i, (cmd, user, ua, list)) in events.iter().enumerate() {
            let command = if *list { json!([cmd, user]) } else { json!(cmd) };
            let ev = TaggerEvent::from_json(json!({
                "source_kind": "command", "source_id": format!("e{i}"), "attacker_uuid": "a",
                "payload": {"command_text": command, "user": user, "headers": {"ua": ua, "x": user}}
            })).unwrap();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            snap.tag_event(&ev, &TagConfig::default(), Evaluation::Indexed, &mut a);
            snap.tag_event(&ev, &TagConfig::default(), Evaluation::BruteForce, &mut b);
            let ids = |v: &Vec<ttp_engine::tag::Tag>| v.iter().map(|t| t.uuid).collect::<Vec<_>>();
            prop_assert_eq!(ids(&a), ids(&b), "event {:?}", ev.payload);
        }
    }
}
