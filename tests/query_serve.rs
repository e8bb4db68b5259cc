//! `ttp query` and `ttp export` answer what `ttp serve` answers, on DECNET's
//! database and on ours; `ttp serve`'s authentication on our own database.

mod common;
mod serve_support;

use serde_json::Value;
use serve_support::{fixture_copy, Server};
use std::path::Path;
use std::process::Command;

const SECRET: &str = "spec2-test-secret-0123456789abcdef0123456789";

fn ttp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args(args)
        .env("TTP_LOG", "warn")
        .output()
        .unwrap()
}

fn json_out(args: &[&str]) -> Value {
    let out = ttp(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn query_and_export_equal_the_api_on_decnets_database() {
    let work = tempfile::TempDir::new().unwrap();
    let db = fixture_copy(&common::shared(), work.path());
    let dbs = db.to_str().unwrap();
    let server = Server::start(&["--db", dbs], &[("DECNET_JWT_SECRET", SECRET)]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = ttp_engine::serve::auth::mint_decnet_token(
        SECRET.as_bytes(),
        "u0000000-0000-4000-8000-000000000002",
        "j",
        now - 5,
        now + 600,
    );
    let auth = format!("Bearer {token}");
    let api = |path: &str| {
        let r = server.request("GET", path, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{path}");
        r.json()
    };
    for (cli, path) in [
        (vec!["techniques"], "/api/v1/ttp/techniques".to_string()),
        (
            vec!["by-attacker", "A0000000-0000-4000-8000-000000000001"],
            "/api/v1/ttp/by-attacker/a0000000-0000-4000-8000-000000000001".into(),
        ),
        (
            vec!["by-identity", "1d000000-0000-4000-8000-00000000000a"],
            "/api/v1/ttp/by-identity/1d000000-0000-4000-8000-00000000000a".into(),
        ),
        (
            vec!["by-session", "sess-A"],
            "/api/v1/ttp/by-session/sess-A".into(),
        ),
        (
            vec!["by-campaign", "ca000000-0000-4000-8000-000000000001"],
            "/api/v1/ttp/by-campaign/ca000000-0000-4000-8000-000000000001".into(),
        ),
    ] {
        let mut args = vec!["query"];
        args.extend(&cli);
        args.extend(["--db", dbs, "--format", "json"]);
        let got = json_out(&args);
        assert!(!got.as_array().unwrap().is_empty(), "{cli:?}");
        assert_eq!(got, api(&path), "{cli:?}");
    }
    // Tag details: the same rows, whatever the shape.
    let tags = json_out(&[
        "query",
        "tags",
        "--db",
        dbs,
        "--attacker",
        "a0000000-0000-4000-8000-000000000001",
        "--technique",
        "t1548",
        "--format",
        "json",
    ]);
    let detail = api("/api/v1/ttp/tags/by-attacker/a0000000-0000-4000-8000-000000000001/T1548");
    let uuids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(uuids(&tags), uuids(&detail));
    assert_eq!(uuids(&tags).len(), 2);
    // A sub-technique given to --technique filters on it.
    let sub = json_out(&[
        "query",
        "tags",
        "--db",
        dbs,
        "--technique",
        "T1548.003",
        "--format",
        "json",
    ]);
    assert!(sub
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["sub_technique_id"] == "T1548.003"));
    assert_eq!(sub.as_array().unwrap().len(), 2);
    // The Navigator layer file equals the API's layer.
    let out = work.path().join("layer.json");
    let o = ttp(&[
        "export",
        "navigator",
        "--db",
        dbs,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let file: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(file, api("/api/v1/ttp/export/navigator"));
    // Windows and floors.
    let late = json_out(&[
        "query",
        "techniques",
        "--db",
        dbs,
        "--since",
        "2026-11-21T12:00:00Z",
        "--format",
        "json",
    ]);
    let all = json_out(&["query", "techniques", "--db", dbs, "--format", "json"]);
    assert!(late.as_array().unwrap().len() < all.as_array().unwrap().len());
    assert!(late
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["last_seen"].as_str().unwrap() >= "2026-11-21T12:00:00"));
    let strong = json_out(&[
        "query",
        "by-attacker",
        "a0000000-0000-4000-8000-000000000001",
        "--db",
        dbs,
        "--min-confidence",
        "0.9",
        "--format",
        "json",
    ]);
    assert!(strong
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["confidence_max"].as_f64().unwrap() >= 0.9));
    assert!(!strong.as_array().unwrap().is_empty());
}

fn own_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("own.db");
    common::ttp_tag(
        &db,
        &[
            r#"{"source_kind":"command","source_id":"s1#0","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"cat /etc/shadow"}}"#,
            r#"{"source_kind":"command","source_id":"s1#1","attacker_uuid":"a1","session_id":"s1","payload":{"command_text":"whoami"}}"#,
        ],
    );
    db
}

#[test]
fn our_own_database_is_served_with_tokens_or_on_loopback_only() {
    let work = tempfile::TempDir::new().unwrap();
    let db = own_db(work.path());
    let dbs = db.to_str().unwrap();
    // No tokens, not loopback: refused, and said why.
    let o = ttp(&["serve", "--db", dbs, "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("without authentication"));
    // No tokens on loopback: open, and the log says so.
    let open = Server::start(&["--db", dbs], &[]);
    let r = open.request("GET", "/api/v1/ttp/by-attacker/a1", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = r.json();
    assert!(!rows.as_array().unwrap().is_empty());
    assert!(open.log().contains("WITHOUT authentication"));
    let cli = json_out(&[
        "query",
        "by-attacker",
        "a1",
        "--db",
        dbs,
        "--format",
        "json",
    ]);
    assert_eq!(cli, rows);
    // Tokens: a viewer reads, a missing or wrong token is refused.
    let tokens = work.path().join("tokens");
    std::fs::write(
        &tokens,
        "viewer-token-0123456789 viewer analyst\nadmin-token-0123456789ab admin ops\n",
    )
    .unwrap();
    let s = Server::start(&["--db", dbs, "--tokens", tokens.to_str().unwrap()], &[]);
    let get = |auth: Option<&str>| {
        let h: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        s.request("GET", "/api/v1/ttp/techniques", &h, None)
    };
    assert_eq!(get(Some("Bearer viewer-token-0123456789")).status, 200);
    assert_eq!(get(Some("Bearer admin-token-0123456789ab")).status, 200);
    let denied = get(Some("Bearer nope-nope-nope-nope"));
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(get(None).status, 401);
    // A viewer cannot change rule state.
    let r = s.request(
        "POST",
        "/api/v1/ttp/rules/R0014/state",
        &[
            ("Authorization", "Bearer viewer-token-0123456789"),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"state":"disabled"}"#),
    );
    assert_eq!(r.status, 403);
    // Health, metrics, OpenAPI need no token.
    assert_eq!(
        s.request("GET", "/healthz", &[], None).json()["status"],
        "ok"
    );
    let m = s.request("GET", "/metrics", &[], None).text();
    assert!(m.contains("ttp_tags_stored 2"), "{m}");
    assert!(
        m.contains("ttp_http_requests_total{route=\"GET /api/v1/ttp/techniques\",status=\"401\"}"),
        "{m}"
    );
    let doc = s.request("GET", "/api/v1/openapi.json", &[], None).json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/ttp/techniques"].is_object());
    // A bad tokens file names its line.
    std::fs::write(&tokens, "viewer-token-0123456789 superuser\n").unwrap();
    let o = ttp(&[
        "serve",
        "--db",
        dbs,
        "--tokens",
        tokens.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(":1: role \"superuser\""));
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn decnets_database_needs_its_jwt_secret() {
    let work = tempfile::TempDir::new().unwrap();
    let db = fixture_copy(&common::shared(), work.path());
    let o = Command::new(env!("CARGO_BIN_EXE_ttp"))
        .args([
            "serve",
            "--db",
            db.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("DECNET_JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("DECNET_JWT_SECRET"));
}

/// The page and its data routes: the page is public (it holds no data)
/// and sent with a CSP that allows nothing from elsewhere; the data routes
/// take the API's tokens, answer from the database, and name a bad
/// parameter.
#[test]
fn the_page_and_its_data_routes() {
    let work = tempfile::TempDir::new().unwrap();
    let db = own_db(work.path());
    let tokens = work.path().join("tokens");
    std::fs::write(&tokens, "viewer-token-0123456789 viewer analyst\n").unwrap();
    let s = Server::start(
        &[
            "--db",
            db.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
        ],
        &[],
    );
    let page = s.request("GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page
        .text()
        .contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = s.request("GET", path, &[], None);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    assert!(s.log().contains("/ (page) and /api/v1"), "{}", s.log());
    let auth = [("Authorization", "Bearer viewer-token-0123456789")];
    let get = |path: &str| s.request("GET", path, &auth, None);
    assert_eq!(s.request("GET", "/api/v1/ui/matrix", &[], None).status, 401);
    let m = get("/api/v1/ui/matrix").json();
    assert_eq!(
        (m["tags"].as_u64(), m["attackers"].as_u64()),
        (Some(2), Some(1)),
        "{m}"
    );
    let cell = &m["techniques"][0];
    let technique = cell["technique_id"].as_str().unwrap();
    let tags = get(&format!(
        "/api/v1/ui/tags?technique={technique}&tactic={}&limit=1",
        cell["tactic"].as_str().unwrap()
    ))
    .json();
    assert_eq!(tags["total"], cell["tags"], "{tags}");
    let tag = &tags["tags"][0];
    assert_eq!(tag["attacker_uuid"], "a1");
    let sha = tag["rule_sha256"].as_str().unwrap();
    let text = get(&format!("/api/v1/ui/rule-text/{sha}")).json();
    assert!(text["yaml_content"]
        .as_str()
        .unwrap()
        .contains(tag["rule_id"].as_str().unwrap()));
    assert_eq!(
        get(&format!("/api/v1/ui/rule-text/{}", "0".repeat(64))).status,
        404
    );
    let line = get("/api/v1/ui/attacker/a1").json();
    assert!(!line["techniques"].as_array().unwrap().is_empty(), "{line}");
    // The attacker view's Navigator layer: the attacker's techniques.
    let layer = get("/api/v1/ttp/export/navigator/attacker/a1").json();
    let listed: Vec<&str> = layer["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["techniqueID"].as_str().unwrap())
        .collect();
    for t in line["techniques"].as_array().unwrap() {
        let id = t["sub_technique_id"]
            .as_str()
            .or(t["technique_id"].as_str())
            .unwrap();
        assert!(listed.contains(&id), "{id} not in {listed:?}");
    }
    let empty = get("/api/v1/ttp/export/navigator/attacker/nobody").json();
    assert!(
        empty["techniques"].as_array().unwrap().is_empty(),
        "{empty}"
    );
    let rules = get("/api/v1/ui/rules").json();
    let fired: u64 = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tags"].as_u64().unwrap())
        .sum();
    assert_eq!(fired, 2, "{rules}");
    assert!(!rules["audit"].as_array().unwrap().is_empty());
    let attack = get("/api/v1/ui/attack").json();
    assert_eq!(attack["tactics"].as_array().unwrap().len(), 14);
    assert_eq!(attack["tactics"][0]["id"], "TA0043");
    // A bad parameter is a 400 that names it.
    for (path, says) in [
        (
            "/api/v1/ui/matrix?min_confidence=2",
            "min_confidence must be",
        ),
        ("/api/v1/ui/tags?limit=500", "limit must be"),
        ("/api/v1/ui/tags?offset=-1", "offset must be"),
        (
            "/api/v1/ui/matrix?since=yesterdayish",
            r#"since \"yesterdayish\" is not a time"#,
        ),
    ] {
        let r = get(path);
        assert_eq!(r.status, 400, "{path}");
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }
    // Time filters apply: nothing before the epoch's first second.
    let none = get("/api/v1/ui/matrix?until=1970-01-02").json();
    assert_eq!(none["tags"], 0);
}
