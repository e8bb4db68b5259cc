//! DECNET compatibility, round 2: minimal events for each divergence a
//! differential run against DECNET's own tagger found, run through the real
//! `ttp tag` with DECNET's pack, and compared to the bit with the rows
//! DECNET writes (`tests/data/decnet_round2.expected.tsv`: UUIDs computed
//! with the spec's key, evidence as `json.dumps` writes it).
//!
//! The cases: R0048 base64 chunks as CPython 3.11 decodes them, integers
//! beyond 64 bits (R0004, an email's `rcpt_count`), an AbuseIPDB score of
//! 2⁶³, `rcpt_domains` as a string and as an object, a GreyNoise tag spelled
//! like the scanner verdict, U+0345 next to `\b` in `(?i)` rules, numeric
//! `session_id`/`decky_id`, and `NaN`, `Infinity`, `1e999`, a 400-digit
//! integer and a lone surrogate in a payload.

mod common;

use std::path::Path;

fn rows(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT source_id, rule_id, technique_id, coalesce(sub_technique_id, ''), confidence, \
             uuid, coalesce(session_id, '\\N'), coalesce(decky_id, '\\N'), evidence \
             FROM ttp_tag ORDER BY source_id, rule_id, technique_id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let conf: f64 = r.get(4)?;
        Ok([
            r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            format!("{conf:?}"),
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ]
        .join("\t"))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn round_two_divergences_give_decnets_rows() {
    let sh = common::shared();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::TempDir::new().unwrap();
    let db = work.path().join("tags.db");
    let out = assert_cmd::Command::cargo_bin("ttp")
        .unwrap()
        .env("TTP_LOG", "error")
        .args(["tag", "--rules"])
        .arg(sh.join("reference/decnet-rules"))
        .arg("--db")
        .arg(&db)
        .arg("--events")
        .arg(root.join("tests/data/decnet_round2.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("events: 14 read, 0 rejected"), "{stderr}");
    let expected =
        std::fs::read_to_string(root.join("tests/data/decnet_round2.expected.tsv")).unwrap();
    let expected: Vec<&str> = expected.lines().filter(|l| !l.starts_with('#')).collect();
    let got = rows(&db);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    // What fires nothing in DECNET fires nothing here.
    for silent in ["r2-b64-skip", "r2-gn-tag"] {
        assert!(
            !got.iter().any(|r| r.starts_with(&format!("{silent}\t"))),
            "{silent}"
        );
    }
}
