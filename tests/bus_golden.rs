//! DECNET's bus protocol against the executed examples of
//! `../shared/reference/decnet-api-golden/` (`bus-wildcards.json`,
//! `bus-protocol.json`).

mod common;

use serde_json::Value;
use ttp_engine::bus::{
    read_frame, topic_matches, Envelope, Verb, MAX_BODY_BYTES, MAX_HEADER_BYTES,
};

fn golden(name: &str) -> Value {
    let path = common::shared()
        .join("reference/decnet-api-golden")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn wildcards_match_as_decnet_matches() {
    let rows = golden("bus-wildcards.json")["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert!(rows.len() >= 20);
    for row in rows {
        let (p, t) = (
            row["pattern"].as_str().unwrap(),
            row["topic"].as_str().unwrap(),
        );
        assert_eq!(
            topic_matches(p, t),
            row["matches"].as_bool().unwrap(),
            "{p} vs {t}"
        );
    }
}

#[test]
#[cfg_attr(
    shared_missing,
    ignore = "../shared is absent: DECNET fixtures not available"
)]
fn recorded_frames_decode_and_envelopes_read_as_decnets_client_reads_them() {
    let cases = golden("bus-protocol.json")["cases"]
        .as_array()
        .unwrap()
        .clone();
    let mut frames = 0;
    for case in &cases {
        if let Some(h) = case["sent_by_publisher_hex"].as_str() {
            let f = read_frame(&mut &hex(h)[..]).unwrap().unwrap();
            assert_eq!(f.verb, Verb::Pub);
            assert_eq!(f.arg, "attacker.session.ended");
            let sent: Value = serde_json::from_slice(&f.body).unwrap();
            assert_eq!(sent, case["sent_body"]);
            frames += 1;
        }
        let received = case
            .get("observer_received")
            .or_else(|| case.get("received"))
            .and_then(Value::as_array);
        for r in received.into_iter().flatten() {
            let Some(header) = r["header"].as_str() else {
                continue;
            };
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend(hex(r["length_prefix_hex"].as_str().unwrap()));
            bytes.extend(r["body"].as_str().unwrap().as_bytes());
            let f = read_frame(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(f.verb, Verb::Evt);
            let env = Envelope::from_frame(&f, 0.0).unwrap();
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            assert_eq!(
                env.topic,
                body["topic"].as_str().unwrap(),
                "{}",
                case["case"]
            );
            assert_eq!(env.id, body["id"].as_str().unwrap());
            assert_eq!(env.payload, body["payload"], "{}", case["case"]);
            frames += 1;
        }
    }
    assert!(frames >= 8, "{frames} frames checked");
    let constants = cases.iter().find(|c| c["case"] == "constants").unwrap();
    assert_eq!(constants["MAX_HEADER_BYTES"], MAX_HEADER_BYTES);
    assert_eq!(constants["MAX_BODY_BYTES"], MAX_BODY_BYTES);
}
