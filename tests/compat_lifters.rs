//! DECNET compatibility, lifters: the spec §12 examples E5–E18 with DECNET's
//! pack, asserting identical tags (uuid, rule, technique, sub-technique,
//! tactic, confidence to the last bit, evidence with key order), and each
//! deliberate deviation. When `../shared` is absent these tests are skipped.

mod common;

use common::{assert_tags, decnet_snapshot, shared, tag};
use serde_json::{json, Value};
use ttp_engine::engine::Snapshot;
use ttp_engine::tag::Tag;

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e5_auth_attempt_credential_lifter() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"auth_attempt","source_id":"auth-1","attacker_uuid":"att-3",
               "payload":{"fail_count":7,"service":"ssh","username":"root","password":"root","password_count":5,"result":"success","prior_brute":true}}),
    );
    assert_tags(
        &tags,
        &[
            (
                "R0001",
                "T1110",
                None,
                "TA0006",
                0.85,
                "4b4bffdb-ccd6-5dd9-b00c-41e2002aa4a5",
            ),
            (
                "R0002",
                "T1110",
                Some("T1110.001"),
                "TA0006",
                0.85,
                "2823fca3-d69e-501e-982e-13c662c9eaa7",
            ),
            (
                "R0005",
                "T1078",
                None,
                "TA0001",
                0.7,
                "0c29e041-a14a-517f-9c5d-b4ba404c068c",
            ),
            (
                "R0006",
                "T1078",
                Some("T1078.001"),
                "TA0001",
                0.9,
                "1176d789-68f5-51c5-b311-f8eb202ebc2e",
            ),
        ],
        &[
            json!({"fail_count":7,"service":"ssh"}),
            json!({"username":"root","password_count":5}),
            json!({"username":"root","service":"ssh"}),
            json!({"username":"root","service":"ssh"}),
        ],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e6_identity_nulls_the_attacker() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let event = json!({"source_kind":"identity","source_id":"idr-1","attacker_uuid":"att-9","identity_uuid":"id-1",
                       "payload":{"shared_password_hash":"sha256:abc","account_count":4,"members":3}});
    let tags = tag(&snap, event.clone());
    assert_tags(
        &tags,
        &[(
            "R0003",
            "T1110",
            Some("T1110.003"),
            "TA0006",
            0.9,
            "5b458f40-9006-5d18-86c7-6e48f8eddd6d",
        )],
        &[json!({"shared_password_hash":"sha256:abc","account_count":4})],
    );
    assert_eq!(tags[0].attacker_uuid, None);
    assert_eq!(tags[0].identity_uuid.as_deref(), Some("id-1"));
    let mut no_identity = event;
    no_identity["identity_uuid"] = Value::Null;
    assert!(tag(&snap, no_identity).is_empty());
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e7_credential_reuse() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"credential","source_id":"cr-1","attacker_uuid":"att-4","payload":{"credential_hash":"h1","reuse_count":2}}),
    );
    assert_tags(
        &tags,
        &[(
            "R0004",
            "T1110",
            Some("T1110.004"),
            "TA0006",
            0.9,
            "b8bd1c18-7e8d-550f-a0f3-bcd7c868ae7b",
        )],
        &[json!({"credential_hash":"h1","reuse_count":2})],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e8_session_behavioral() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"session","source_id":"sess-1","attacker_uuid":"att-5",
               "payload":{"beacon_interval_s":60,"beacon_jitter_pct":0.05,"tftp_filename":"R1-confg","op_text":"","command_text":"redis-cli FLUSHALL","target":"redis"}}),
    );
    let beacon = json!({"beacon_interval_s":60,"beacon_jitter_pct":0.05});
    assert_tags(
        &tags,
        &[
            (
                "R0031",
                "T1071",
                None,
                "TA0011",
                0.8,
                "7a52efd2-e38c-5b09-a8ff-775bda98c78c",
            ),
            (
                "R0031",
                "T1029",
                None,
                "TA0011",
                0.85,
                "becc9c76-6de0-5123-98ba-75f83736de22",
            ),
            (
                "R0032",
                "T1485",
                None,
                "TA0040",
                0.95,
                "cd96ca73-70d8-551d-98cc-d3049ffaee9f",
            ),
            (
                "R0040",
                "T1602",
                Some("T1602.002"),
                "TA0009",
                0.9,
                "62b88c0d-0ee2-579f-8b0d-043a87358b27",
            ),
        ],
        &[
            beacon.clone(),
            beacon,
            json!({"target":"redis","matched_op":"FLUSHALL"}),
            json!({"tftp_filename":"R1-confg"}),
        ],
    );
    let rules = |p: Value| -> Vec<String> {
        tag(
            &snap,
            json!({"source_kind":"session","source_id":"s","attacker_uuid":"a","payload":p}),
        )
        .into_iter()
        .map(|t| t.rule_id)
        .collect()
    };
    assert_eq!(
        rules(json!({"beacon_interval_s":10,"beacon_jitter_pct":0.15})),
        vec!["R0031", "R0031"]
    );
    assert_eq!(rules(json!({"tftp_filename":"x.cfg\n"})), vec!["R0040"]);
}

fn intel(snap: &Snapshot, id: &str, payload: Value) -> Vec<Tag> {
    let tags = tag(
        snap,
        json!({"source_kind":"intel","source_id":id,"attacker_uuid":"att-6","payload":payload}),
    );
    assert!(
        tags.iter().all(|t| t.mitre_url.is_none()),
        "intel tags never carry mitre_url"
    );
    tags
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e9_intel_abuseipdb() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = intel(
        &snap,
        "intel-1",
        json!({"abuseipdb_score":85,"abuseipdb_categories":[11,14,18,22,4]}),
    );
    let ev = |cats: Value| json!({"abuseipdb_categories":cats,"abuseipdb_score":85,"abuse_confidence_score":85});
    assert_tags(
        &tags,
        &[
            (
                "R0054",
                "T1110",
                None,
                "TA0006",
                0.595,
                "cdff6ed6-896b-53b7-90a6-cf6866bb2fd8",
            ),
            (
                "R0054",
                "T1566",
                None,
                "TA0001",
                0.595,
                "932b18e0-c411-5016-8fe6-87b793b8ee73",
            ),
            (
                "R0054",
                "T1046",
                None,
                "TA0007",
                0.595,
                "5266069c-3139-578b-a970-f402cbfc6721",
            ),
            (
                "R0054",
                "T1496",
                None,
                "TA0040",
                0.51,
                "1a601914-ff12-5d97-b762-aeb4d44f7aeb",
            ),
            (
                "R0054",
                "T1595",
                None,
                "TA0043",
                0.595,
                "bacf4bdf-791e-5d50-aa79-139359499e7b",
            ),
        ],
        &[
            ev(json!([18, 22])),
            ev(json!([11])),
            ev(json!([14])),
            ev(json!([11])),
            ev(json!([14])),
        ],
    );
    let low = intel(
        &snap,
        "intel-1",
        json!({"abuseipdb_score":79.9,"abuseipdb_categories":[11]}),
    );
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].technique_id, "T1496");
    assert_eq!(low[0].confidence.to_bits(), 0.4794f64.to_bits());
    assert_eq!(low[0].evidence["abuse_confidence_score"], json!(79));
    // Deliberate deviation (DECNET #10): 0.7 x 1.5 is clamped to 1.0.
    let high = intel(
        &snap,
        "intel-5",
        json!({"abuseipdb_score":150,"abuseipdb_categories":[18]}),
    );
    assert_eq!(high.len(), 1);
    assert_eq!(
        high[0].uuid.to_string(),
        "cbe28c3e-9b55-5499-a122-61907ddeb3d9"
    );
    assert_eq!(high[0].confidence, 1.0);
    let truthy = intel(
        &snap,
        "intel-6",
        json!({"abuseipdb_score":true,"abuseipdb_categories":[],"categories":[18,18,true]}),
    );
    assert_eq!(truthy.len(), 1);
    assert_eq!(
        truthy[0].confidence.to_bits(),
        0.006999999999999999f64.to_bits()
    );
    assert_eq!(
        serde_json::to_string(&truthy[0].evidence).unwrap(),
        r#"{"abuseipdb_categories":[18,18],"abuseipdb_score":true,"abuse_confidence_score":1}"#
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e10_intel_greynoise() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = intel(
        &snap,
        "intel-2",
        json!({"greynoise_classification":"malicious","greynoise_tags":["tor_exit_node","unknown_tag"],"greynoise_name":"unknown"}),
    );
    assert_tags(
        &tags,
        &[
            (
                "R0055",
                "T1071",
                None,
                "TA0011",
                0.35,
                "1373bd00-d495-5467-999e-cda8462fb77c",
            ),
            (
                "R0055",
                "T1090",
                None,
                "TA0011",
                0.7,
                "ed047968-71f5-5f77-b795-48b280e12a72",
            ),
        ],
        &[
            json!({"greynoise_classification":"malicious","greynoise_tags":["malicious"],"greynoise_name":"unknown"}),
            json!({"greynoise_classification":"malicious","greynoise_tags":["tor_exit_node"],"greynoise_name":"unknown"}),
        ],
    );
    let v = intel(
        &snap,
        "intel-2b",
        json!({"greynoise_classification":"scanner","greynoise_tags":["web_crawler","cobalt_strike"]}),
    );
    let got: Vec<(&str, Option<&str>, f64, Value)> = v
        .iter()
        .map(|t| {
            (
                t.technique_id.as_str(),
                t.sub_technique_id.as_deref(),
                t.confidence,
                t.evidence["greynoise_tags"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "T1595",
                Some("T1595.002"),
                0.7,
                json!(["scanner", "web_crawler"])
            ),
            ("T1071", None, 0.7, json!(["cobalt_strike"])),
            ("T1588", None, 0.7, json!(["cobalt_strike"])),
        ]
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e11_intel_feodo_and_threatfox() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = intel(
        &snap,
        "intel-3",
        json!({"feodo_listed":true,"feodo_malware_family":"Emotet","threatfox_threat_types":["botnet_cc","payload"],
               "threatfox_malware_families":["sliver"],"threatfox_ioc_types":["ip:port"]}),
    );
    let feodo =
        json!({"feodo_listed":true,"feodo_malware_family":"Emotet","malware_family":"Emotet"});
    let tf = |types: Value| {
        json!({"threatfox_threat_types":["botnet_cc","payload"],"threatfox_ioc_types":["ip:port"],"threatfox_malware_families":["sliver"],
               "threat_types":types,"malware_families":["sliver"],"ioc_types":["ip:port"]})
    };
    assert_tags(
        &tags,
        &[
            (
                "R0056",
                "T1071",
                Some("T1071.001"),
                "TA0011",
                0.85,
                "db547d75-96d8-5864-a5be-9535edaf2b9d",
            ),
            (
                "R0056",
                "T1588",
                Some("T1588.001"),
                "TA0042",
                0.85,
                "514284e5-970c-5dd4-92ff-32b38f1cee34",
            ),
            (
                "R0057",
                "T1071",
                None,
                "TA0011",
                0.8,
                "30593a40-f401-551b-9725-fb0f18b01a7a",
            ),
            (
                "R0057",
                "T1588",
                Some("T1588.001"),
                "TA0042",
                0.8,
                "179c86a2-191d-5a38-98c8-e97682e654c0",
            ),
        ],
        &[
            feodo.clone(),
            feodo,
            tf(json!(["botnet_cc"])),
            tf(json!(["botnet_cc", "payload"])),
        ],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e12_intel_threatfox_legacy_fields() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = intel(
        &snap,
        "intel-4",
        json!({"threat_type":"payload_delivery","malware_family":"AsyncRAT","ioc_type":"url"}),
    );
    let ev = json!({"threat_types":["payload_delivery"],"malware_families":["AsyncRAT"]});
    assert_tags(
        &tags,
        &[
            (
                "R0057",
                "T1588",
                Some("T1588.001"),
                "TA0042",
                0.8,
                "37ed8e27-1dc9-5064-864c-3fe0b85dd7d3",
            ),
            (
                "R0057",
                "T1105",
                None,
                "TA0011",
                0.75,
                "c283548c-3ed1-5e75-ba6e-14bbd9dc1de8",
            ),
        ],
        &[ev],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e13_canary_fingerprint() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = tag(
        &snap,
        json!({"source_kind":"canary_fingerprint","source_id":"cf-1","attacker_uuid":"att-7",
               "payload":{"tz_mismatch_zones":5,"lang_country_mismatch":true,"navigator_webdriver":true,"canvas_audio_hash_match":"puppeteer"}}),
    );
    let hash = json!({"metric":"canvas_audio_hash","matched_signature":"puppeteer"});
    assert_tags(
        &tags,
        &[
            (
                "R0049",
                "T1059",
                None,
                "TA0002",
                0.85,
                "26bfbf0f-246c-5b96-812f-86c2bcacc34a",
            ),
            (
                "R0050",
                "T1059",
                None,
                "TA0002",
                0.85,
                "4e615f00-4d1a-5acf-8efd-71eb17dee5b9",
            ),
            (
                "R0050",
                "T1588",
                Some("T1588.002"),
                "TA0042",
                0.85,
                "44fc7b8c-4fb8-5581-bdbd-d8cf3ef560c7",
            ),
            (
                "R0052",
                "T1090",
                None,
                "TA0011",
                0.7,
                "4d43f4e5-c9e2-512a-81df-7da1a6a034d4",
            ),
        ],
        &[
            json!({"metric":"navigator_webdriver","matched_signature":"navigator.webdriver_true"}),
            hash.clone(),
            hash,
            json!({"metric":"timezone_geo_mismatch","matched_signature":"tz_zones>=5"}),
        ],
    );
}

fn email(snap: &Snapshot, id: &str, extra: Value, payload: Value) -> Vec<Tag> {
    let mut event =
        json!({"source_kind":"email","source_id":id,"attacker_uuid":"att-8","payload":payload});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            event[k] = v;
        }
    }
    tag(snap, event)
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e14_email_relay_masquerade_attachment() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = email(
        &snap,
        "em-1",
        json!({"session_id":"smtp-1"}),
        json!({"rcpt_count":12,"rcpt_domains":["B.example","a.example","b.example"],"from_domain":"ceo@Corp.example",
               "mail_from_domain":"bulk.example","dkim_signed":false,"attachment_extensions":[".LNK"],"attachment_sha256s":["aa"],
               "body_sha256":"","body_text":"hello"}),
    );
    let b = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let relay = json!({"body_sha256":b,"matched_headers":["From","Mail-From"],"rcpt_domain_set":["a.example","b.example"],"attachment_sha256s":["aa"],"rcpt_count":12});
    let masq = json!({"body_sha256":b,"matched_headers":["DKIM-Signature","From","Return-Path"],"rcpt_domain_set":["a.example","b.example"],
                      "attachment_sha256s":["aa"],"rcpt_count":12,"matched_signals":["from_mailfrom_mismatch","dkim_fail"]});
    let attach = json!({"body_sha256":b,"matched_headers":[],"rcpt_domain_set":["a.example","b.example"],"attachment_sha256s":["aa"],"rcpt_count":12,"matched_trigger":"lnk"});
    assert_tags(
        &tags,
        &[
            (
                "R0041",
                "T1496",
                None,
                "TA0040",
                0.85,
                "7a253b6a-487c-5de3-bf9a-11b5e71bc567",
            ),
            (
                "R0041",
                "T1586",
                Some("T1586.002"),
                "TA0042",
                0.85,
                "9d713da4-1468-5c24-8295-5d3264451a8a",
            ),
            (
                "R0045",
                "T1036",
                None,
                "TA0005",
                0.85,
                "7d569fab-1269-539d-9ac1-6ff0e0eb9666",
            ),
            (
                "R0046",
                "T1204",
                Some("T1204.002"),
                "TA0002",
                0.9,
                "4aca65ca-9b73-554c-96d2-e540fd5f2c65",
            ),
            (
                "R0046",
                "T1566",
                Some("T1566.001"),
                "TA0001",
                0.9,
                "45cb5e2f-9f2f-50be-ac32-44a9d8032597",
            ),
        ],
        &[relay.clone(), relay, masq, attach.clone(), attach],
    );
    assert_eq!(tags[0].session_id.as_deref(), Some("smtp-1"));
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e15_email_idn_url_and_encoded_size() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = email(
        &snap,
        "em-2",
        json!({}),
        json!({"body_text":"see attached","body_base64_bytes":5000,"urls":["https://xn--pypal-4ve.com/login?u=a@b"]}),
    );
    let b0 = "dd4ab899cfe2c06dd591274b4dbbb253cec7d4799eba446892770419e2921c29";
    let idn = json!({"body_sha256":b0,"matched_headers":["body"],"rcpt_domain_set":[],"attachment_sha256s":[],"rcpt_count":0,"matched_url_host":"xn--pypal-4ve.com"});
    let enc = json!({"body_sha256":b0,"matched_headers":[],"rcpt_domain_set":[],"attachment_sha256s":[],"rcpt_count":0,"encoded_byte_count":5000});
    assert_tags(
        &tags,
        &[
            (
                "R0044",
                "T1036",
                Some("T1036.005"),
                "TA0005",
                0.9,
                "5db8a0f0-c084-50b9-a0cc-a8a52bdd477d",
            ),
            (
                "R0044",
                "T1566",
                Some("T1566.002"),
                "TA0001",
                0.9,
                "a33aea8e-0df0-5105-8c93-e0ddb6f655f5",
            ),
            (
                "R0048",
                "T1071",
                Some("T1071.003"),
                "TA0011",
                0.85,
                "be74ff9c-1140-5a2f-b35d-dfb202fe0f0d",
            ),
            (
                "R0048",
                "T1027",
                None,
                "TA0005",
                0.9,
                "36fd1ca3-d0b9-5ce1-831d-4c388dd57f4d",
            ),
        ],
        &[idn.clone(), idn, enc.clone(), enc],
    );
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e16_email_mass_phish_and_bec() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let tags = email(
        &snap,
        "em-4",
        json!({"identity_uuid":"id-8"}),
        json!({"subject":"URGENT: Wire request","body_text":"Please Transfer the funds today","rcpt_count":30,"body_simhash":"9f3a",
               "rcpt_domains":["corp.example"],"body_sha256":"abc123"}),
    );
    assert_tags(
        &tags,
        &[
            (
                "R0042",
                "T1566",
                None,
                "TA0001",
                0.85,
                "c60b54d2-8117-59a4-921e-421a011f1d7b",
            ),
            (
                "R0047",
                "T1566",
                Some("T1566.003"),
                "TA0001",
                0.85,
                "3adc440f-c740-50a8-b3c2-1f0b7776558d",
            ),
        ],
        &[
            json!({"body_sha256":"abc123","matched_headers":[],"rcpt_domain_set":["corp.example"],"attachment_sha256s":[],"rcpt_count":30}),
            json!({"body_sha256":"abc123","matched_headers":["Subject"],"rcpt_domain_set":["corp.example"],"attachment_sha256s":[],"rcpt_count":30,
                   "matched_subject_kw":"urgent","matched_body_kw":"transfer"}),
        ],
    );
    assert_eq!(tags[0].identity_uuid.as_deref(), Some("id-8"));
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e17_ipv6_link_local_leak() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let ev = |p: Value| json!({"source_kind":"ipv6_leak","source_id":"v6-1","attacker_uuid":"att-10","payload":p});
    let tags = tag(
        &snap,
        ev(
            json!({"addr":"FE80::1a2b:3cff:fe4d:5e6f","mac_oui":"18:2b:3c","iid_kind":"eui64","vector":"passive_ndp","attacker_ip":"203.0.113.7"}),
        ),
    );
    assert_tags(
        &tags,
        &[(
            "R0059",
            "T1090",
            None,
            "TA0011",
            0.85,
            "ea3c9cd5-e7af-51d3-88c1-5be861f46281",
        )],
        &[
            json!({"addr":"FE80::1a2b:3cff:fe4d:5e6f","mac_oui":"18:2b:3c","iid_kind":"eui64","vector":"passive_ndp","on_iface":"",
                 "attacker_v4":"203.0.113.7","observed_at":""}),
        ],
    );
    let v = tag(
        &snap,
        ev(json!({"addr":null,"src_ip":"fe80::1","mac_oui":null})),
    );
    assert_eq!(
        serde_json::to_string(&v[0].evidence).unwrap(),
        r#"{"addr":"fe80::1","mac_oui":null,"iid_kind":"unknown","vector":"","on_iface":"","attacker_v4":"","observed_at":""}"#
    );
    assert!(tag(&snap, ev(json!({"addr":5}))).is_empty());
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn e18_events_that_produce_nothing_or_deviate() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    // Deliberate deviation (DECNET #2): R0033 on an email event yields its
    // tag instead of voiding the event, so R0043's two tags survive too.
    let tags = email(
        &snap,
        "em-3",
        json!({}),
        json!({"body_text":"send 1 btc to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 or lose files","xmailer_kit_match":true,"x_mailer":"PHPMailer"}),
    );
    let ids: Vec<&str> = tags.iter().map(|t| t.rule_id.as_str()).collect();
    assert_eq!(ids, vec!["R0033", "R0043", "R0043"]);
    assert_eq!(
        tags[0].evidence["btc_address"],
        json!("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2")
    );
    // Deliberate deviation: a truthy number or boolean `rcpt_domains` makes
    // DECNET fail the event; it is treated as absent (no rule reads it here).
    assert!(email(&snap, "em-5", json!({}), json!({"rcpt_domains":5})).is_empty());
    let x = email(
        &snap,
        "em-6",
        json!({}),
        json!({"rcpt_domains":true,"rcpt_count":60,"body_simhash":"s"}),
    );
    assert!(!x.is_empty());
    assert_eq!(x[0].evidence["rcpt_domain_set"], json!([]));
    // #17, as DECNET: a string is iterated by character, an object by key.
    let x = email(
        &snap,
        "em-7",
        json!({}),
        json!({"rcpt_domains":"AB.c","rcpt_count":60,"body_simhash":"s"}),
    );
    assert_eq!(
        x[0].evidence["rcpt_domain_set"],
        json!([".", "a", "b", "c"])
    );
    let x = email(
        &snap,
        "em-8",
        json!({}),
        json!({"rcpt_domains":{"Corp.example":1},"rcpt_count":60,"body_simhash":"s"}),
    );
    assert_eq!(x[0].evidence["rcpt_domain_set"], json!(["corp.example"]));
    let ev = |kind: &str, p: Value| json!({"source_kind":kind,"source_id":"x","attacker_uuid":"a","payload":p});
    assert!(tag(
        &snap,
        ev("http_fingerprint", json!({"ja4h":"GE11nn0000_02_abc_000"}))
    )
    .is_empty());
    let canary = tag(
        &snap,
        ev(
            "canary_fingerprint",
            json!({"tz_mismatch_zones":true,"canvas_audio_hash_match":"unknown","matched_tool":"puppeteer","ua_webgl_mismatch":true}),
        ),
    );
    assert_eq!(
        canary
            .iter()
            .map(|t| t.rule_id.as_str())
            .collect::<Vec<_>>(),
        vec!["R0053"]
    );
    assert!(tag(
        &snap,
        ev("auth_attempt", json!({"fail_count":true,"username":"admin","password":"Admin","result":"success","prior_brute":1}))
    )
    .is_empty());
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn the_email_lifter_never_reads_message_files() {
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let dir = tempfile::TempDir::new().unwrap();
    let stored = "2026-01-01T00:00:00Z_0123456789ab_msg.eml";
    let smtp = dir.path().join("decky-1/smtp");
    std::fs::create_dir_all(&smtp).unwrap();
    std::fs::write(smtp.join(stored), "Subject: x\n\nPlease transfer now").unwrap();
    std::env::set_var("DECNET_ARTIFACTS_ROOT", dir.path());
    // DECNET would read this body from disk and fire R0047; we never do.
    let tags = email(
        &snap,
        "em-6",
        json!({}),
        json!({"subject":"urgent","decky_id":"decky-1","stored_as":stored}),
    );
    assert!(tags.is_empty(), "{tags:#?}");
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn rule_state_clip_and_disable() {
    use ttp_engine::state::{RuleState, RuleStates, StateKind};
    let sh = shared();
    let snap = decnet_snapshot(&sh);
    let state = |kind, max, expires_at| RuleState {
        rule_id: "R0054".into(),
        state: kind,
        confidence_max: max,
        expires_at,
        reason: None,
        set_by: None,
        set_at: String::new(),
    };
    let payload = json!({"abuseipdb_score":85,"abuseipdb_categories":[11,14,18,22,4]});
    let clipped = snap.with_states(RuleStates::new([state(
        StateKind::Clipped,
        Some(0.5),
        None,
    )]));
    let tags = intel(&clipped, "intel-1", payload.clone());
    assert_eq!(tags.len(), 5);
    assert!(
        tags.iter().all(|t| t.confidence == 0.5),
        "{:?}",
        tags.iter().map(|t| t.confidence).collect::<Vec<_>>()
    );
    assert_eq!(
        tags[0].uuid.to_string(),
        "cdff6ed6-896b-53b7-90a6-cf6866bb2fd8",
        "UUIDs do not change"
    );
    let disabled = snap.with_states(RuleStates::new([state(StateKind::Disabled, None, None)]));
    assert!(intel(&disabled, "intel-1", payload.clone()).is_empty());
    // Deliberate difference: an expired state is over, the rule is enabled again.
    let expired = snap.with_states(RuleStates::new([state(StateKind::Disabled, None, Some(0))]));
    assert_eq!(intel(&expired, "intel-1", payload).len(), 5);
}
