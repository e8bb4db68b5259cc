//! Fault tests of the commands' output and of the database files they make
//! (issue #10): closed stdout, colours, control characters, catalogue
//! ownership, empty rule sets, schema versions, file modes, messages.

mod fault_support;

use fault_support::*;
use std::fs;
use std::process::Stdio;
use tempfile::TempDir;

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let work = TempDir::new().unwrap();
    let db = work.path().join("t.db");
    let out = ttp()
        .args(["tag", "--events"])
        .arg(root().join("examples/events.jsonl"))
        .arg("--rules")
        .arg(root().join("rules"))
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success());
    let db = db.to_str().unwrap();
    for args in [
        &["rule", "list", "--db", db][..],
        &["rule", "list", "--db", db, "--format", "json"][..],
        &["tags", "--db", db, "--format", "table"][..],
        &["tags", "--db", db, "--format", "ndjson"][..],
        &[
            "query", "tags", "--db", db, "--format", "csv", "--limit", "0",
        ][..],
        &["query", "tags", "--db", db, "--format", "json"][..],
        &["query", "techniques", "--db", db, "--format", "table"][..],
        &["query", "techniques", "--db", db, "--format", "json"][..],
        &["query", "techniques", "--db", db, "--format", "csv"][..],
        &["query", "techniques", "--db", db][..],
        &["export", "navigator", "--db", db][..],
        &["export", "stix", "--db", db][..],
        &["export", "misp", "--db", db][..],
        &["check", "--rules", root().join("rules").to_str().unwrap()][..],
    ] {
        let out = with_closed_stdout(args);
        assert!(
            out.status.success(),
            "{args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let work = TempDir::new().unwrap();
    let run = |extra: &[&str], env: Option<(&str, &str)>| {
        let mut c = ttp();
        c.args(["run", "--events", "-", "--rules"])
            .arg(root().join("rules"))
            .arg("--db")
            .arg(work.path().join("t.db"))
            .args(extra)
            .env("TTP_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(!run(&[], None).contains('\x1b'));
    assert!(!run(&["--color", "never"], None).contains('\x1b'));
    let forced = run(&["--color", "always"], None);
    assert!(forced.contains("\x1b["), "{forced}");
    assert!(!run(&["--color", "auto"], Some(("NO_COLOR", "1"))).contains('\x1b'));
}

#[test]
fn control_characters_never_reach_the_terminal_raw() {
    let work = TempDir::new().unwrap();
    let rules = work.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    // A file name and a rule file holding an ESC sequence; an event whose
    // source_id would retitle the terminal and forge a line.
    fs::write(rules.join("evil\x1b]0;owned\x07.yaml"), PROBE_RULE).unwrap();
    fs::write(
        rules.join("broken.yaml"),
        "rule_id: B\nrule_version: 1\nname: \"x\x1b[2J\"\nbad_key\x1b[31m: 1\n",
    )
    .unwrap();
    let db = work.path().join("t.db");
    let sid = "a\x1b]0;owned\x07\nFAKE: injected";
    let event = serde_json::json!({"source_kind":"command","source_id":sid,"attacker_uuid":"a","payload":{"command_text":"probe"}});
    let tag = ttp()
        .args(["tag", "--rules"])
        .arg(&rules)
        .arg("--db")
        .arg(&db)
        .env("TTP_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut tag = tag;
        writeln!(tag.stdin.take().unwrap(), "{event}").unwrap();
        let out = tag.wait_with_output().unwrap();
        assert!(out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.contains('\x1b'), "{err:?}");
        assert!(err.contains("\\x1b"), "{err:?}");
    }
    let db = db.to_str().unwrap();
    let human = |args: &[&str]| {
        let out = ttp().args(args).env("TTP_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap()
    };
    for args in [
        &["tags", "--db", db, "--format", "table"][..],
        &["rule", "list", "--db", db][..],
        &["rule", "show", "PROBE", "--db", db][..],
    ] {
        let shown = human(args);
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{args:?}: {shown:?}"
        );
        assert!(!shown.contains("\nFAKE"), "{args:?}: {shown:?}");
    }
    let check = ttp()
        .args(["check", "--rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let shown = String::from_utf8(check.stdout).unwrap();
    assert!(shown.contains("x\\x1b[2J"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
    // JSON stays exact.
    let json = human(&["tags", "--db", db, "--format", "ndjson"]);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["source_id"], sid);
}

#[test]
fn another_rules_directory_does_not_wipe_the_catalogue() {
    let work = TempDir::new().unwrap();
    let (mut d, db, _log) = probe_daemon(work.path(), &[]);
    {
        use std::io::Write;
        let mut stdin = d.0.stdin.take().unwrap();
        stdin.write_all(probe_line(0).as_bytes()).unwrap();
        stdin.flush().unwrap();
        d.0.stdin = Some(stdin);
    }
    wait_until("the daemon to tag", || tag_count(&db) == 1);
    assert_eq!(catalogue(&db), vec!["PROBE"]);
    // An analyst tags a file with other rules into the daemon's database.
    let other = work.path().join("other-rules");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("o.yaml"), PROBE_RULE.replace("PROBE", "OTHER")).unwrap();
    let out = ttp()
        .args(["tag", "--events", "-", "--rules"])
        .arg(&other)
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        catalogue(&db),
        vec!["OTHER", "PROBE"],
        "the daemon's rules were wiped"
    );
    // Within one directory, a rule that is gone is still retired.
    fs::remove_file(other.join("o.yaml")).unwrap();
    fs::write(other.join("p.yaml"), PROBE_RULE.replace("PROBE", "OTHER2")).unwrap();
    let out = ttp()
        .args(["tag", "--events", "-", "--rules"])
        .arg(&other)
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(catalogue(&db), vec!["OTHER2", "PROBE"]);
}

#[test]
fn no_loadable_rules_is_an_error_unless_allowed() {
    let work = TempDir::new().unwrap();
    let empty = work.path().join("empty-rules");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join("broken.yaml"), "rule_id: [\n").unwrap();
    let db = work.path().join("t.db");
    for cmd in ["tag", "run"] {
        let out = ttp()
            .args([cmd, "--events", "-", "--rules"])
            .arg(&empty)
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}: {err}");
        assert!(err.contains("no rule could be loaded"), "{cmd}: {err}");
        assert!(err.contains("--allow-empty"), "{cmd}: {err}");
        let out = ttp()
            .args([cmd, "--allow-empty", "--events", "-", "--rules"])
            .arg(&empty)
            .arg("--db")
            .arg(&db)
            .env("TTP_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd}: {err}");
        assert!(err.contains("no rules loaded"), "{cmd}: {err}");
    }
}

#[test]
fn readers_refuse_a_newer_schema() {
    let work = TempDir::new().unwrap();
    let db = work.path().join("t.db");
    let out = ttp()
        .args(["tag", "--events", "-", "--allow-empty", "--rules"])
        .arg(work.path())
        .arg("--db")
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let out = ttp().args(["tags", "--db"]).arg(&db).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer than this ttp supports"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn new_databases_are_private_and_the_mode_is_settable() {
    use std::os::unix::fs::PermissionsExt;
    let work = TempDir::new().unwrap();
    let mode = |name: &str, extra: &[&str]| {
        let db = work.path().join(name);
        let out = ttp()
            .args(["tag", "--events", "-", "--allow-empty", "--rules"])
            .arg(work.path())
            .arg("--db")
            .arg(&db)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::metadata(&db).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("a.db", &[]), 0o600);
    assert_eq!(mode("b.db", &["--db-mode", "640"]), 0o640);
    let out = ttp().args(["tag", "--db-mode", "9z"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an octal file mode"));
}

#[test]
fn rule_file_messages_speak_our_words() {
    let work = TempDir::new().unwrap();
    fs::write(work.path().join("dup.yaml"), "rule_id: A\nrule_id: B\n").unwrap();
    fs::write(
        work.path().join("big.yaml"),
        "rule_id: C\nrule_version: 1\nname: x\napplies_to: [command]\nmatch:\n  pattern: '\\w{2000}'\n\
         emits: [{tactic: TA0002, technique_id: T1059, confidence: 0.5}]\n",
    )
    .unwrap();
    let out = ttp()
        .args(["check", "--rules"])
        .arg(work.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("`rule_id` appears twice in this mapping"),
        "{text}"
    );
    assert!(!text.contains("DuplicateKeyPolicy"), "{text}");
    assert!(text.contains("the pattern is too large"), "{text}");
    assert!(!text.contains("error building NFA"), "{text}");
}
