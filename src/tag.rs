//! Tags out (spec §9): the deterministic UUIDv5 key, evidence, `mitre_url`.

use crate::event::{Payload, TaggerEvent};
use crate::rule::{Emit, Rule};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// A tag's evidence: the same map as a [`Payload`] (keys in insertion
/// order, which DECNET's compatibility depends on; a fast hasher).
pub type Evidence = Payload;

/// Evidence as a JSON object (keys in the same order).
pub fn evidence_json(evidence: Evidence) -> Value {
    Value::Object(evidence.into_iter().collect())
}

/// DECNET's default `attack_release` value.
pub const DEFAULT_ATTACK_RELEASE: &str = "v15.1";

/// `uuid5(NAMESPACE_URL, "decnet:ttp_tag:v1")`.
pub fn tag_namespace() -> Uuid {
    static NS: OnceLock<Uuid> = OnceLock::new();
    *NS.get_or_init(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, b"decnet:ttp_tag:v1"))
}

/// The tag UUID: `uuid5(NS, "kind|id|rule|version|technique|sub")`, fields
/// joined with an unescaped `|` exactly as DECNET does.
pub fn tag_uuid(
    source_kind: &str,
    source_id: &str,
    rule_id: &str,
    rule_version: i64,
    technique_id: &str,
    sub_technique_id: Option<&str>,
) -> Uuid {
    let mut version = itoa::Buffer::new();
    v5_joined(&[
        source_kind,
        source_id,
        rule_id,
        version.format(rule_version),
        technique_id,
        sub_technique_id.unwrap_or(""),
    ])
}

/// `Uuid::new_v5(tag_namespace(), parts.join("|"))`, without building the
/// joined key, hashed with the `sha1` crate, which uses the CPU's SHA
/// extensions where present (a tag's UUID is most of the cost of building
/// it).
fn v5_joined(parts: &[&str]) -> Uuid {
    use sha1::{Digest, Sha1};
    let mut hasher = Sha1::new();
    hasher.update(tag_namespace().as_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b"|");
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// Lowercase hex digits of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// One emitted tag: DECNET's `TTPTag` columns plus `rule_sha256`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// Serialised and stored in its hyphenated lowercase form.
    pub uuid: Uuid,
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub identity_uuid: Option<String>,
    pub session_id: Option<String>,
    pub decky_id: Option<String>,
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub confidence: f64,
    pub rule_id: String,
    pub rule_version: i64,
    /// Shared by the tags of one rule firing on one event.
    pub evidence: Arc<Evidence>,
    pub attack_release: String,
    pub mitre_url: Option<String>,
    pub created_at: String,
    pub rule_sha256: String,
}

#[cfg(test)]
impl Tag {
    /// A tag for tests: `uuid` and `technique_id` given, every other field
    /// fixed (`Tag { field: …, ..Tag::sample(…) }` for those a test varies).
    pub(crate) fn sample(uuid: Uuid, technique_id: &str) -> Tag {
        Tag {
            uuid,
            source_kind: "command".into(),
            source_id: "s".into(),
            attacker_uuid: None,
            identity_uuid: None,
            session_id: None,
            decky_id: None,
            tactic: "TA0002".into(),
            technique_id: technique_id.into(),
            sub_technique_id: None,
            confidence: 0.5,
            rule_id: "R1".into(),
            rule_version: 1,
            evidence: Default::default(),
            attack_release: "v1".into(),
            mitre_url: None,
            created_at: "2026-01-01 00:00:00.000000".into(),
            rule_sha256: "sha".into(),
        }
    }
}

/// DECNET's base evidence: the `evidence_fields` present in the payload (even
/// holding `null`), in list order, each once.
pub fn field_evidence(rule: &Rule, payload: &Payload) -> Evidence {
    let mut ev = Evidence::default();
    for name in &rule.evidence_fields {
        if !ev.contains_key(name) {
            if let Some(v) = payload.get(name) {
                ev.insert(name.clone(), v.clone());
            }
        }
    }
    ev
}

/// The engine's evidence (spec §4 step 3): the base evidence, then for
/// `command` events the auxiliary `uid`, `user`, `src`, `pwd` when present
/// and not already there.
pub fn engine_evidence(rule: &Rule, event: &TaggerEvent) -> Evidence {
    let mut ev = field_evidence(rule, &event.payload);
    if event.source_kind == "command" {
        for name in ["uid", "user", "src", "pwd"] {
            if !ev.contains_key(name) {
                if let Some(v) = event.payload.get(name) {
                    ev.insert(name.to_string(), v.clone());
                }
            }
        }
    }
    ev
}

/// The current UTC time in SQLAlchemy's SQLite `DATETIME` format.
pub fn now_timestamp() -> String {
    crate::timefmt::now()
}

/// Settings that shape every tag.
#[derive(Debug, Clone)]
pub struct TagConfig {
    pub attack_release: String,
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig {
            attack_release: DEFAULT_ATTACK_RELEASE.to_string(),
        }
    }
}

/// The event a tag is built for, as the tagger sees it: DECNET's identity
/// lifter tags events as if they had no `attacker_uuid`.
#[derive(Debug, Clone, Copy)]
pub struct TagSource<'a> {
    pub event: &'a TaggerEvent,
    pub attacker_uuid: Option<&'a str>,
}

impl<'a> TagSource<'a> {
    pub fn of(event: &'a TaggerEvent) -> TagSource<'a> {
        TagSource {
            event,
            attacker_uuid: event.attacker_uuid.as_deref(),
        }
    }

    pub fn without_attacker(event: &'a TaggerEvent) -> TagSource<'a> {
        TagSource {
            event,
            attacker_uuid: None,
        }
    }
}

/// Builds one tag for one emit of a rule that fired on an event.
pub fn build_tag(
    source: TagSource<'_>,
    rule: &Rule,
    emit: &Emit,
    evidence: Arc<Evidence>,
    confidence: f64,
    config: &TagConfig,
    created_at: &str,
) -> Tag {
    let event = source.event;
    let sub = emit.sub_technique_id.as_deref();
    let uuid = tag_uuid(
        &event.source_kind,
        &event.source_id,
        &rule.rule_id,
        rule.rule_version,
        &emit.technique_id,
        sub,
    );
    Tag {
        uuid,
        source_kind: event.source_kind.clone(),
        source_id: event.source_id.clone(),
        attacker_uuid: source.attacker_uuid.map(String::from),
        identity_uuid: event.identity_uuid.clone(),
        session_id: event.session_id.clone(),
        decky_id: event.decky_id.clone(),
        tactic: emit.tactic.clone(),
        technique_id: emit.technique_id.clone(),
        sub_technique_id: emit.sub_technique_id.clone(),
        confidence: confidence.clamp(0.0, 1.0),
        rule_id: rule.rule_id.clone(),
        rule_version: rule.rule_version,
        evidence,
        attack_release: config.attack_release.clone(),
        mitre_url: emit.mitre_url.clone(),
        created_at: created_at.to_string(),
        rule_sha256: rule.source.sha256.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_matches_decnet() {
        assert_eq!(
            tag_namespace().to_string(),
            "1ca31f08-5522-5aae-8371-fe81f0e39de3"
        );
    }

    #[test]
    fn golden_uuids_from_the_spec() {
        assert_eq!(
            tag_uuid("command", "cmd_42", "R0014", 2, "T1083", None).to_string(),
            "9aa491e5-f03b-5d8f-9eb5-161becedcdd6"
        );
        assert_eq!(
            tag_uuid("command", "cmd_42", "R0015", 1, "T1548", Some("T1548.001")).to_string(),
            "4fd57b14-c135-544c-97d9-4fabc1051584"
        );
        // A null sub-technique and "" give the same key.
        assert_eq!(
            tag_uuid("command", "cmd_42", "R0014", 2, "T1083", Some("")),
            tag_uuid("command", "cmd_42", "R0014", 2, "T1083", None)
        );
    }

    #[test]
    fn v5_matches_the_uuid_crate() {
        for name in ["", "a", "command|c|R1|1|T1059|", &"y".repeat(1000)] {
            assert_eq!(
                v5_joined(&[name]),
                Uuid::new_v5(&tag_namespace(), name.as_bytes())
            );
        }
        let key = format!("command|{}|R1|7|T1059|T1059.004", "x".repeat(300));
        assert_eq!(
            tag_uuid(
                "command",
                &"x".repeat(300),
                "R1",
                7,
                "T1059",
                Some("T1059.004")
            ),
            Uuid::new_v5(&tag_namespace(), key.as_bytes())
        );
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn confidence_is_clamped_into_the_unit_interval() {
        let (rule, _) = crate::rule::parse::parse_rule(
            std::path::Path::new("r.yaml"),
            "rule_id: X\nrule_version: 1\nname: x\napplies_to: [command]\nmatch: {pattern: x}\n\
             emits: [{tactic: TA0002, technique_id: T1059, confidence: 0.5}]\n",
            Default::default(),
        );
        let rule = rule.unwrap();
        let event = TaggerEvent::from_json(serde_json::json!({
            "source_kind": "command", "source_id": "c", "attacker_uuid": "a", "payload": {}
        }))
        .unwrap();
        let cfg = TagConfig::default();
        let build = |c| {
            build_tag(
                TagSource::of(&event),
                &rule,
                &rule.emits[0],
                Arc::default(),
                c,
                &cfg,
                "t",
            )
            .confidence
        };
        assert_eq!(build(1.0499999999999998), 1.0);
        assert_eq!(build(-0.5), 0.0);
        assert_eq!(build(0.595), 0.595);
    }

    #[test]
    fn timestamps_look_like_sqlalchemy_datetimes() {
        let t = now_timestamp();
        assert_eq!(t.len(), 26, "{t}");
        assert_eq!(&t[10..11], " ");
    }
}
