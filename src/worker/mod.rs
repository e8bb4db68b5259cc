//! DECNET's TTP worker, the part that decides (worker-and-api spec §2.5):
//! one bus event → the TaggerEvents to tag (anchor resolution, topic →
//! source kind, source id fallbacks, command fan-out, intel catch-up), and
//! tags → the messages announcing them. No I/O here: DECNET's tables are
//! reached through [`Lookup`] ([`decnet_db::DecnetDb`] reads them from
//! SQLite), the bus through whoever calls.

pub mod backfill;
pub mod decnet_db;
pub mod process;

use crate::bus::{Frame, Verb};
use crate::event::{Payload, TaggerEvent};
use crate::lifters::py::truthy;
use crate::tag::Tag;
use serde::Serialize;
use serde_json::{Map, Value};

/// What the worker reads from DECNET's database.
pub trait Lookup {
    /// `attackers.uuid` of the attacker with this IP.
    fn attacker_by_ip(&self, ip: &str) -> Result<Option<String>, String>;
    /// The `attacker_intel` row of an attacker, as the 14 catch-up keys
    /// in their order (§2.5 e).
    fn intel(&self, attacker_uuid: &str) -> Result<Option<Map<String, Value>>, String>;
}

/// Why a bus event gives nothing to tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// No anchor and no usable `attacker_ip`.
    NoAnchor,
    /// An `attacker_ip` no attacker row has yet.
    UnknownIp(String),
    /// The lookup failed.
    Lookup(String),
    /// Neither the topic nor the envelope type names a source kind.
    NoKind,
    /// The payload is not an object.
    NotAnObject,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::NoAnchor => f.write_str("no anchor and no usable attacker_ip"),
            Dropped::UnknownIp(ip) => write!(
                f,
                "no attacker row for ip={} yet; skipping until the profiler catches up",
                crate::text::line(ip)
            ),
            Dropped::Lookup(e) => write!(f, "anchor lookup failed: {}", crate::text::line(e)),
            Dropped::NoKind => f.write_str("the topic names no source kind and the type is empty"),
            Dropped::NotAnObject => f.write_str("the payload is not an object"),
        }
    }
}

/// Topic substrings and the source kind each gives, first match wins.
const KINDS: [(&str, &str); 8] = [
    ("session.ended", "session"),
    ("observed", "session"),
    ("intel.enriched", "intel"),
    ("identity.formed", "identity"),
    ("identity.merged", "identity"),
    ("reuse.detected", "credential"),
    ("email.received", "email"),
    ("canary.", "canary_fingerprint"),
];

/// The keys of the intel catch-up payload, in order.
pub const INTEL_KEYS: [&str; 14] = [
    "attacker_uuid",
    "attacker_ip",
    "aggregate_verdict",
    "abuseipdb_score",
    "abuseipdb_categories",
    "greynoise_classification",
    "greynoise_name",
    "greynoise_tags",
    "feodo_listed",
    "feodo_malware_family",
    "threatfox_listed",
    "threatfox_threat_types",
    "threatfox_ioc_types",
    "threatfox_malware_families",
];

/// Python's `repr` of a JSON value as a string would print inside a
/// container (strings quoted).
fn py_repr(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&Value::String(k.clone()), out);
                out.push_str(": ");
                py_repr(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&py_str(other)),
    }
}

/// Python's `str()` of a JSON value.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match crate::pyjson::py_number(n) {
            crate::pyjson::PyNumber::Int(t) => crate::pyjson::int_text(t).to_string(),
            crate::pyjson::PyNumber::Float(f) => {
                let r = crate::pyjson::float_repr(f);
                match r.as_str() {
                    "NaN" => "nan".into(),
                    "Infinity" => "inf".into(),
                    "-Infinity" => "-inf".into(),
                    _ => r,
                }
            }
        },
        Value::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            py_repr(other, &mut out);
            out
        }
    }
}

fn get<'a>(p: &'a Map<String, Value>, k: &str) -> &'a Value {
    const NULL: Value = Value::Null;
    p.get(k).unwrap_or(&NULL)
}

/// `payload.<name>`: null stays null, anything else through `str()`.
fn field(p: &Map<String, Value>, k: &str) -> Option<String> {
    match get(p, k) {
        Value::Null => None,
        v => Some(py_str(v)),
    }
}

fn as_payload(m: Map<String, Value>) -> Payload {
    m.into_iter().collect()
}

/// The TaggerEvents of one bus event, in tagging order: the base event,
/// its commands, the intel catch-up (§2.5 a–e). The payload is moved into
/// the base event.
pub fn events(
    topic: &str,
    kind: &Value,
    payload: Value,
    lookup: &dyn Lookup,
) -> Result<Vec<TaggerEvent>, Dropped> {
    let Value::Object(mut payload) = payload else {
        return Err(Dropped::NotAnObject);
    };
    // (a) anchor resolution
    if !truthy(get(&payload, "attacker_uuid")) && !truthy(get(&payload, "identity_uuid")) {
        let ip = match get(&payload, "attacker_ip") {
            Value::String(ip) if !ip.is_empty() && ip != "Unknown" => ip.clone(),
            _ => return Err(Dropped::NoAnchor),
        };
        match lookup.attacker_by_ip(&ip) {
            Ok(Some(uuid)) => {
                payload.insert("attacker_uuid".into(), Value::String(uuid));
            }
            Ok(None) => return Err(Dropped::UnknownIp(ip)),
            Err(e) => return Err(Dropped::Lookup(e)),
        }
    }
    // (b) source kind
    let source_kind = match KINDS.iter().find(|(s, _)| topic.contains(s)) {
        Some((_, k)) => (*k).to_string(),
        None if truthy(kind) => py_str(kind),
        None => return Err(Dropped::NoKind),
    };
    // (c) the base event
    let source_id = [
        "source_id",
        "session_id",
        "token_id",
        "identity_uuid",
        "credential_id",
        "attacker_uuid",
        "uuid",
    ]
    .iter()
    .map(|k| get(&payload, k))
    .find(|v| truthy(v))
    .map(py_str)
    .unwrap_or_else(|| topic.to_string());
    let base = TaggerEvent {
        source_kind,
        source_id,
        attacker_uuid: field(&payload, "attacker_uuid"),
        identity_uuid: field(&payload, "identity_uuid"),
        session_id: field(&payload, "session_id"),
        decky_id: field(&payload, "decky_id"),
        payload: as_payload(payload),
    };
    let mut out = Vec::new();
    // (d) command fan-out
    if base.source_kind == "session" {
        if let Some(Value::Array(commands)) = base.payload.get("commands") {
            for (i, c) in commands.iter().enumerate() {
                let fallback = || format!("{}#cmd{i}", base.source_id);
                let (source_id, payload) = match c {
                    Value::String(s) => {
                        let mut p = Map::new();
                        p.insert("command_text".into(), Value::String(s.clone()));
                        (fallback(), p)
                    }
                    Value::Object(o) => {
                        let text = [get(o, "command_text"), get(o, "text")]
                            .into_iter()
                            .find(|v| truthy(v))
                            .unwrap_or(&Value::Null);
                        let Value::String(text) = text else { continue };
                        let id = ["id", "uuid", "command_id"]
                            .iter()
                            .map(|k| get(o, k))
                            .find(|v| truthy(v))
                            .map(py_str)
                            .unwrap_or_else(fallback);
                        let mut p = o.clone();
                        p.insert("command_text".into(), Value::String(text.clone()));
                        (id, p)
                    }
                    _ => continue,
                };
                out.push(TaggerEvent {
                    source_kind: "command".into(),
                    source_id,
                    attacker_uuid: base.attacker_uuid.clone(),
                    identity_uuid: base.identity_uuid.clone(),
                    session_id: base.session_id.clone(),
                    decky_id: base.decky_id.clone(),
                    payload: as_payload(payload),
                });
            }
        }
    }
    // (e) intel catch-up
    let mut catch_up = None;
    if topic.contains("session.ended") {
        if let Some(attacker) = &base.attacker_uuid {
            match lookup.intel(attacker) {
                Ok(Some(row)) => {
                    let key = base
                        .session_id
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .unwrap_or(attacker);
                    catch_up = Some(TaggerEvent {
                        source_kind: "intel".into(),
                        source_id: format!("intel-catchup:{key}"),
                        attacker_uuid: base.attacker_uuid.clone(),
                        identity_uuid: base.identity_uuid.clone(),
                        session_id: base.session_id.clone(),
                        decky_id: base.decky_id.clone(),
                        payload: as_payload(row),
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::error!(
                    "intel catch-up for {}: {}",
                    crate::text::line(attacker),
                    crate::text::line(&e)
                ),
            }
        }
    }
    out.insert(0, base);
    out.extend(catch_up);
    Ok(out)
}

/// One message to publish: topic, envelope type, payload.
pub type Message = (String, &'static str, Value);

/// The payload of `ttp.tagged`, fields in DECNET's order.
#[derive(Serialize)]
struct Tagged<'a> {
    attacker_uuid: Option<&'a str>,
    identity_uuid: Option<&'a str>,
    session_id: Option<&'a str>,
    tag_uuids: Vec<&'a uuid::Uuid>,
    techniques_added: Vec<&'a str>,
}

/// The payload of `ttp.rule.fired.<T>`, fields in DECNET's order.
#[derive(Serialize)]
struct Fired<'a> {
    technique_id: &'a str,
    tag_uuids: Vec<&'a uuid::Uuid>,
    attacker_uuid: Option<&'a str>,
    identity_uuid: Option<&'a str>,
    session_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Announced<'a> {
    Tagged(Tagged<'a>),
    Fired(Fired<'a>),
}

/// A bus envelope's body as the bus client publishes it.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: &'a Announced<'a>,
}

/// The announcements of a bus event's tags (§2.5 j), given the tags to
/// announce in order. DECNET announces every tag of the batch; we are
/// given only the newly stored ones (README, deviations: Q11).
fn announced<'a>(tags: &[&'a Tag]) -> Vec<(String, &'static str, Announced<'a>)> {
    let Some(first) = tags.first() else {
        return Vec::new();
    };
    let mut techniques: Vec<&str> = tags.iter().map(|t| t.technique_id.as_str()).collect();
    techniques.sort_unstable();
    techniques.dedup();
    let mut out = Vec::with_capacity(techniques.len() + 1);
    out.push((
        "ttp.tagged".to_string(),
        "tagged",
        Announced::Tagged(Tagged {
            attacker_uuid: first.attacker_uuid.as_deref(),
            identity_uuid: first.identity_uuid.as_deref(),
            session_id: first.session_id.as_deref(),
            tag_uuids: tags.iter().map(|t| &t.uuid).collect(),
            techniques_added: techniques.clone(),
        }),
    ));
    for technique in techniques {
        // A technique id that is not one topic token would make the topic
        // invalid, and DECNET's worker dies there (Q13, README deviations):
        // a custom rule's sub-technique as `technique_id` (`T1110.001`) is
        // announced under its parent, as every other topic is; `*`, `>` and
        // whitespace become `_`. The payload keeps the id as it is.
        let parent = technique.split('.').next().unwrap_or(technique);
        let token: String = parent
            .chars()
            .map(|c| {
                if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        out.push((
            format!("ttp.rule.fired.{token}"),
            "rule.fired",
            Announced::Fired(Fired {
                technique_id: technique,
                tag_uuids: tags
                    .iter()
                    .filter(|t| t.technique_id == technique)
                    .map(|t| &t.uuid)
                    .collect(),
                attacker_uuid: first.attacker_uuid.as_deref(),
                identity_uuid: first.identity_uuid.as_deref(),
                session_id: first.session_id.as_deref(),
            }),
        ));
    }
    out
}

/// The announcements of a bus event's tags as messages (see
/// [`announcement_frames`] for what the worker sends).
pub fn announcements(tags: &[&Tag]) -> Vec<Message> {
    announced(tags)
        .into_iter()
        .map(|(topic, kind, payload)| {
            let payload = serde_json::to_value(&payload).unwrap_or(Value::Null);
            (topic, kind, payload)
        })
        .collect()
}

/// The `PUB` frames of [`announcements`], encoded straight from the tags:
/// the same bytes as [`crate::bus::Envelope::publish_frame`] of each
/// message, without building its JSON value first (the worker encodes two
/// frames per tag).
pub fn announcement_frames(tags: &[&Tag]) -> Vec<Frame> {
    announced(tags)
        .into_iter()
        .map(|(topic, kind, payload)| {
            let body = Body {
                kind,
                payload: &payload,
            };
            Frame::new(
                Verb::Pub,
                &topic,
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_str_of_values() {
        assert_eq!(py_str(&json!(123)), "123");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(2.0)), "2.0");
        assert_eq!(py_str(&json!(["a", 1, null])), "['a', 1, None]");
        assert_eq!(py_str(&json!({"k": "it's"})), "{'k': \"it's\"}");
    }

    fn tag_of(
        uuid: u128,
        technique: &str,
        anchors: &(Option<String>, Option<String>, Option<String>),
    ) -> Tag {
        Tag {
            attacker_uuid: anchors.0.clone(),
            identity_uuid: anchors.1.clone(),
            session_id: anchors.2.clone(),
            ..Tag::sample(uuid::Uuid::from_u128(uuid), technique)
        }
    }

    fn text() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            Just(Some("q\"uo\\te\n\u{1}é\u{2028}".to_string())),
            "\\PC{0,12}".prop_map(Some),
        ]
    }

    proptest::proptest! {
        /// The frames encoded straight from the tags are byte for byte the
        /// frames of the announcement messages.
        #[test]
        fn frames_encoded_from_tags_equal_the_messages_frames(
            tags in proptest::collection::vec(
                (
                    proptest::prelude::any::<u128>(),
                    proptest::sample::select(vec![
                        "T1110", "T1110.001", "T1059", "T1059.004", "T*1", "T>1", "T 1", "Té\"",
                    ]),
                ),
                0..6,
            ),
            anchors in (text(), text(), text()),
        ) {
            let tags: Vec<Tag> = tags
                .into_iter()
                .map(|(u, t)| tag_of(u, t, &anchors))
                .collect();
            let refs: Vec<&Tag> = tags.iter().collect();
            let want: Vec<Frame> = announcements(&refs)
                .into_iter()
                .map(|(topic, kind, payload)| {
                    crate::bus::Envelope::publish_frame(&topic, kind, payload)
                })
                .collect();
            proptest::prop_assert_eq!(announcement_frames(&refs), want);
        }
    }

    #[test]
    fn a_dotted_technique_is_announced_under_its_parent() {
        let ev = TaggerEvent::from_json(json!({
            "source_kind": "command", "source_id": "c1", "attacker_uuid": "a", "payload": {}
        }))
        .unwrap();
        let rule = crate::rule::parse::parse_rule(
            std::path::Path::new("x.yaml"),
            "rule_id: X1\nrule_version: 1\nname: x\napplies_to: [command]\nmatch: {field: command_text, contains: a}\n\
             emits: [{tactic: TA0006, technique_id: T1110, confidence: 0.5}]\n",
            Default::default(),
        )
        .0
        .unwrap();
        let mut tag = crate::tag::build_tag(
            crate::tag::TagSource::of(&ev),
            &rule,
            &rule.emits[0],
            std::sync::Arc::new(Default::default()),
            0.5,
            &Default::default(),
            "2026-01-01 00:00:00.000000",
        );
        tag.technique_id = "T1110.001".into();
        let out = announcements(&[&tag]);
        assert_eq!(out[1].0, "ttp.rule.fired.T1110");
        assert_eq!(out[1].2["technique_id"], "T1110.001");
        assert_eq!(out[0].2["techniques_added"], json!(["T1110.001"]));
    }
}
