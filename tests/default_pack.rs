//! The shipped pack (`rules/`) loads cleanly and `examples/events.jsonl`
//! fires exactly the rules it was written for.

use std::collections::BTreeMap;
use std::path::Path;
use ttp_engine::engine::Engine;
use ttp_engine::event::{EventReader, Item};
use ttp_engine::rule::load::load_dir;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::tag::TagConfig;

#[test]
fn shipped_rules_load_without_any_diagnostic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = load_dir(&root.join("rules"), LoadOptions { strict: true }).unwrap();
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert!(loaded.rules.len() >= 10);
}

#[test]
fn example_events_fire_their_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = load_dir(&root.join("rules"), LoadOptions::default()).unwrap();
    let engine = Engine::new(&loaded.rules, TagConfig::default());
    let file = std::fs::File::open(root.join("examples/events.jsonl")).unwrap();
    let mut reader = EventReader::new(std::io::BufReader::new(file));
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(item) = reader.next_item().unwrap() {
        let Item::Event(_, ev) = item else {
            panic!("examples/events.jsonl has a bad line: {item:?}");
        };
        let mut tags = Vec::new();
        engine.tag_event(&ev, &mut tags);
        let ids = fired.entry(ev.source_id.clone()).or_default();
        for t in tags {
            if !ids.contains(&t.rule_id) {
                ids.push(t.rule_id);
            }
        }
    }
    let want: BTreeMap<&str, Vec<&str>> = [
        ("ssh-7f3a-0001", vec!["TTP-1001"]),
        ("ssh-7f3a-0002", vec![]),
        ("ssh-7f3a-0003", vec!["TTP-1002"]),
        ("ssh-7f3a-0004", vec!["TTP-1005"]),
        ("ssh-7f3a-0005", vec!["TTP-1004"]),
        ("ssh-7f3a-0006", vec!["TTP-1006"]),
        ("ssh-7f3a-0007", vec!["TTP-1003"]),
        ("ssh-91c0-0001", vec![]),
        ("ssh-91c0-0002", vec![]),
        ("http-a001", vec!["TTP-2001"]),
        ("http-a002", vec!["TTP-2001"]),
        ("http-a003", vec!["TTP-2002"]),
        ("http-a004", vec!["TTP-2003"]),
        ("http-a005", vec![]),
        ("auth-1001", vec!["TTP-3001"]),
        ("auth-1002", vec!["TTP-3001"]),
        ("auth-1003", vec![]),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, Vec<&str>> = fired
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, want);
}
