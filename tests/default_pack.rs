//! The shipped pack (`rules/`): loads cleanly, is large and well covered,
//! every rule carries examples that pass, high-confidence rules stay quiet on
//! the benign corpus, and `examples/events.jsonl` fires the expected rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use ttp_engine::engine::Engine;
use ttp_engine::event::{EventReader, Item, TaggerEvent};
use ttp_engine::rule::load::{load_dir, LoadedRules};
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::tag::TagConfig;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pack() -> LoadedRules {
    let options = LoadOptions {
        strict: true,
        compile_unicode: true,
        ..LoadOptions::default()
    };
    load_dir(&root().join("rules"), options).unwrap()
}

fn read_events(path: &Path) -> Vec<(u64, TaggerEvent)> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = EventReader::new(std::io::BufReader::new(file));
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        match item {
            Item::Event(line, ev) => out.push((line, ev)),
            Item::Rejected(r) => panic!("{}: bad line {r:?}", path.display()),
        }
    }
    out
}

#[test]
fn shipped_rules_load_without_any_diagnostic() {
    let loaded = pack();
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert!(
        loaded.rules.len() >= 80,
        "only {} rules",
        loaded.rules.len()
    );
}

#[test]
fn every_rule_has_passing_examples_and_the_precision_gate_holds() {
    let loaded = pack();
    // Correlation rules' examples are event sequences (run by `ttp test`
    // through a fresh correlation stage each).
    for rule in &loaded.rules {
        let matches = rule.examples.iter().filter(|e| e.should_match).count();
        let misses = rule.examples.len() - matches;
        assert!(
            matches >= 1 && misses >= 1,
            "{} needs match and no_match examples",
            rule.rule_id
        );
    }
    let benign = read_events(&root().join("tests/data/benign.jsonl"));
    assert!(
        benign.len() >= 300,
        "the benign corpus has {} events",
        benign.len()
    );
    let report = ttp_engine::ruletest::run(&loaded.rules, &benign);
    assert_eq!(report.failing(true), 0, "{:#?}", report.failures);
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn the_pack_covers_every_technique_of_decnets_pack() {
    let decnet = root().join("../shared/reference/decnet-rules");
    assert!(decnet.is_dir(), "{} is missing", decnet.display());
    let techniques = |l: &LoadedRules| -> BTreeSet<String> {
        l.rules
            .iter()
            .flat_map(|r| r.emits.iter())
            .flat_map(|e| std::iter::once(e.technique_id.clone()).chain(e.sub_technique_id.clone()))
            .collect()
    };
    let theirs = techniques(&load_dir(&decnet, LoadOptions::default()).unwrap());
    let ours = techniques(&pack());
    let theirs_parents: BTreeSet<String> = theirs
        .iter()
        .filter(|t| !t.contains('.'))
        .cloned()
        .collect();
    let missing: Vec<&String> = theirs_parents.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "techniques DECNET covers and we do not: {missing:?}"
    );
}

#[test]
fn example_events_fire_their_rules() {
    let loaded = pack();
    let engine = Engine::new(&loaded.rules, TagConfig::default());
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, ev) in read_events(&root().join("examples/events.jsonl")) {
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
        ("ssh-7f3a-0002", vec!["TTP-1010"]),
        ("ssh-7f3a-0003", vec!["TTP-1002", "TTP-1019"]),
        ("ssh-7f3a-0004", vec!["TTP-1005"]),
        ("ssh-7f3a-0005", vec!["TTP-1004"]),
        ("ssh-7f3a-0006", vec!["TTP-1006"]),
        ("ssh-7f3a-0007", vec!["TTP-1003"]),
        ("ssh-91c0-0001", vec![]),
        ("ssh-91c0-0002", vec![]),
        ("http-a001", vec!["TTP-2001"]),
        ("http-a002", vec!["TTP-2001"]),
        ("http-a003", vec!["TTP-2002", "TTP-2004"]),
        ("http-a004", vec!["TTP-2003"]),
        ("http-a005", vec![]),
        ("auth-1001", vec!["TTP-3001"]),
        ("auth-1002", vec!["TTP-3001"]),
        ("auth-1003", vec!["TTP-3005"]),
        ("smtp-c1d2-0001", vec!["TTP-4007", "TTP-4003"]),
        (
            "smtp-c1d2-0002",
            vec!["TTP-4004", "TTP-4006", "TTP-4002", "TTP-4001", "TTP-4003"],
        ),
        ("intel-0001", vec!["TTP-6005", "TTP-6001"]),
        ("canary-0001", vec!["TTP-5002", "TTP-5004", "TTP-5001"]),
        ("sess-0001", vec!["TTP-7001", "TTP-7002"]),
        ("idr-0001", vec!["TTP-3006"]),
        ("v6-0001", vec!["TTP-8001"]),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, Vec<&str>> = fired
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, want);
}

/// The README's coverage table, rebuilt from the pack.
fn coverage_table(loaded: &LoadedRules) -> String {
    let attack = ttp_engine::attack::Attack::embedded();
    let mut by_tactic: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in &loaded.rules {
        for e in &rule.emits {
            let id = e
                .sub_technique_id
                .clone()
                .unwrap_or_else(|| e.technique_id.clone());
            by_tactic.entry(e.tactic.clone()).or_default().insert(id);
        }
    }
    let mut out = String::from("| tactic | techniques covered |\n|---|---|\n");
    for (tactic, techs) in by_tactic {
        let name = attack
            .tactic(&tactic)
            .map(|t| t.name.as_str())
            .unwrap_or("?");
        let list: Vec<String> = techs.into_iter().collect();
        out.push_str(&format!("| {tactic} {name} | {} |\n", list.join(", ")));
    }
    out
}

#[test]
fn the_readme_coverage_table_matches_the_pack() {
    let table = coverage_table(&pack());
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("<!-- coverage:start -->\n").map(|i| i + 24);
    let end = readme.find("<!-- coverage:end -->");
    let (Some(start), Some(end)) = (start, end) else {
        panic!("README.md lacks the coverage markers; the table is:\n{table}");
    };
    assert_eq!(
        &readme[start..end],
        table,
        "update README.md's coverage table to:\n{table}"
    );
}
