//! Helpers shared by the DECNET compatibility tests.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use ttp_engine::engine::{Evaluation, Snapshot};
use ttp_engine::event::TaggerEvent;
use ttp_engine::rule::load::load_dir;
use ttp_engine::rule::parse::LoadOptions;
use ttp_engine::tag::{Tag, TagConfig};

/// `../shared`, DECNET's reference material. Tests that read it carry
/// `#[cfg_attr(shared_missing, ignore = ...)]`: `build.rs` sets that flag
/// when `../shared` is absent, so the tests are listed as ignored; under
/// `CI=true` the flag is never set and a missing `../shared` fails here.
pub fn shared() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        p.join("reference/decnet-rules").is_dir(),
        "../shared/reference/decnet-rules is missing: the DECNET compatibility tests need it \
         (under CI=true a missing fixture is a failure)"
    );
    p
}

pub fn decnet_snapshot(shared: &Path) -> Snapshot {
    let loaded = load_dir(
        &shared.join("reference/decnet-rules"),
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.rules.len(), 59);
    Snapshot::build(&loaded.rules)
}

pub fn tag(snap: &Snapshot, event: Value) -> Vec<Tag> {
    let ev = TaggerEvent::from_json(event).unwrap();
    let mut out = Vec::new();
    snap.tag_event(&ev, &TagConfig::default(), Evaluation::Indexed, &mut out);
    let mut brute = Vec::new();
    snap.tag_event(
        &ev,
        &TagConfig::default(),
        Evaluation::BruteForce,
        &mut brute,
    );
    let key = |t: &Vec<Tag>| t.iter().map(|t| t.uuid).collect::<Vec<_>>();
    assert_eq!(key(&out), key(&brute), "index and brute force disagree");
    out
}

/// (rule, technique, sub, tactic, confidence, uuid)
pub type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    f64,
    &'static str,
);

pub fn assert_tags(tags: &[Tag], rows: &[Row], evidence: &[Value]) {
    assert_eq!(tags.len(), rows.len(), "{tags:#?}");
    for (i, (t, r)) in tags.iter().zip(rows).enumerate() {
        assert_eq!(t.rule_id, r.0, "tag {i}");
        assert_eq!(t.technique_id, r.1, "tag {i}");
        assert_eq!(t.sub_technique_id.as_deref(), r.2, "tag {i}");
        assert_eq!(t.tactic, r.3, "tag {i}");
        assert_eq!(t.confidence.to_bits(), r.4.to_bits(), "tag {i}");
        assert_eq!(t.uuid.to_string(), r.5, "tag {i}");
        assert_eq!(t.attack_release, "v15.1");
        let want = &evidence[i.min(evidence.len() - 1)];
        if want.is_null() {
            continue;
        }
        // Key order matters: compare the serialised text.
        assert_eq!(
            serde_json::to_string(&t.evidence).unwrap(),
            serde_json::to_string(want).unwrap(),
            "evidence of tag {i}"
        );
    }
}

/// `ttp tag` of JSON-lines `events` into `db` with the shipped pack
/// (`rules/`): a database of our own, written by the real binary.
pub fn ttp_tag(db: &Path, events: &[&str]) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    ttp_tag_with(&rules, db, events);
}

/// `ttp tag` of JSON-lines `events` into `db` with the rules of `rules`.
pub fn ttp_tag_with(rules: &Path, db: &Path, events: &[&str]) {
    use std::io::Write;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ttp"))
        .arg("tag")
        .arg("--rules")
        .arg(rules)
        .arg("--db")
        .arg(db)
        .env("TTP_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(events.join("\n").as_bytes())
        .unwrap();
    assert!(
        c.wait().unwrap().success(),
        "ttp tag into {} failed",
        db.display()
    );
}
