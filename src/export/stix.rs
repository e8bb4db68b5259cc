//! STIX 2.1 bundles of attackers and the techniques they used.
//!
//! Every id is deterministic, so two exports of the same data are
//! byte-identical (DECNET's random ids and export-time timestamps are its
//! Q30): the org identity and each threat actor keep DECNET's UUIDv5 ids,
//! observables use STIX's own deterministic ids, attack-patterns are MITRE's
//! objects (id, name, `created`, `modified` as MITRE publishes them), and
//! every other object's UUIDv5 is derived from what it describes. Object
//! times come from the data (first and last seen), never from the clock.

use super::{actor_urls, stix_time, Producer, DECNET_NAMESPACE, TTP_NAMESPACE};
use crate::attack::Attack;
use crate::query::{Actor, RollupRow};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use uuid::Uuid;

/// STIX 2.1's namespace for deterministic observable ids (§2.9).
const SCO_NAMESPACE: Uuid = uuid::uuid!("00abedb4-aa42-466c-9c01-fed23315a9b7");
/// MITRE's identity, the `created_by_ref` of its attack-patterns.
const MITRE_IDENTITY: &str = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5";

/// A bundle of `actors` (one attacker, or the fleet), as `producer` saw them.
pub fn bundle(producer: &Producer, actors: &[Actor]) -> Value {
    let mut b = Builder::default();
    b.push(producer.identity());
    for actor in actors {
        b.actor(producer, actor);
    }
    let ids: Vec<&str> = b
        .objects
        .iter()
        .filter_map(|o| o.get("id").and_then(Value::as_str))
        .collect();
    let bundle_id = derived("bundle", &ids);
    json!({"type": "bundle", "id": bundle_id, "objects": b.objects})
}

/// The id of the attacker's threat-actor object (DECNET's UUIDv5).
pub fn threat_actor_id(attacker_uuid: &str) -> String {
    format!("threat-actor--{}", v5(DECNET_NAMESPACE, attacker_uuid))
}

#[derive(Default)]
struct Builder {
    objects: Vec<Value>,
    seen: HashSet<String>,
}

impl Builder {
    /// Adds `object` unless an object with its id is already there.
    fn push(&mut self, object: Value) -> String {
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self.seen.insert(id.clone()) {
            self.objects.push(object);
        }
        id
    }

    fn actor(&mut self, producer: &Producer, a: &Actor) {
        let org = producer.id();
        let first = stix_time(&a.first_seen);
        let last = stix_time(&a.last_seen);
        let sdo = |kind: &str, id: String| -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("type".into(), json!(kind));
            m.insert("spec_version".into(), json!("2.1"));
            m.insert("id".into(), json!(id));
            m.insert("created_by_ref".into(), json!(org));
            m.insert("created".into(), json!(first));
            m.insert("modified".into(), json!(last));
            m
        };

        // The address and when it was seen.
        let ip_seen = a.ip.as_deref().and_then(address).map(|(kind, value)| {
            let ip = self.push(sco(kind, json!({"value": value})));
            let mut od = sdo(
                "observed-data",
                derived("observed-data", &[&a.attacker_uuid, "address", &ip]),
            );
            od.insert("first_observed".into(), json!(first));
            od.insert("last_observed".into(), json!(last));
            od.insert("number_observed".into(), json!(a.event_count.max(1)));
            od.insert("object_refs".into(), json!([ip]));
            self.push(Value::Object(od))
        });

        // The actor.
        let actor_id = threat_actor_id(&a.attacker_uuid);
        let mut ta = sdo("threat-actor", actor_id.clone());
        ta.insert(
            "name".into(),
            json!(format!("{}-attacker-{}", producer.name, a.attacker_uuid)),
        );
        ta.insert(
            "description".into(),
            json!(match &a.ip {
                Some(ip) => format!(
                    "Attacker {} seen from {ip} by {}.",
                    a.attacker_uuid, producer.name
                ),
                None => format!("Attacker {} seen by {}.", a.attacker_uuid, producer.name),
            }),
        );
        ta.insert("threat_actor_types".into(), json!(["unknown"]));
        if let Some(identity) = &a.identity_uuid {
            ta.insert(
                "aliases".into(),
                json!([format!("{}-identity-{identity}", producer.name)]),
            );
        }
        ta.insert("first_seen".into(), json!(first));
        ta.insert("last_seen".into(), json!(last));
        if let Some(cc) = &a.country_code {
            ta.insert("x_decnet_country_code".into(), json!(cc));
        }
        if let Some(asn) = a.asn {
            ta.insert("x_decnet_asn".into(), json!(asn));
        }
        if let Some(name) = &a.as_name {
            ta.insert("x_decnet_as_name".into(), json!(name));
        }
        self.push(Value::Object(ta));

        // Techniques: MITRE's attack-pattern and a `uses` relationship.
        let attack = Attack::embedded();
        let mut used = HashSet::new();
        for row in &a.rollup {
            let id = row.id();
            let Some(pattern) = attack_pattern(attack, id) else {
                continue;
            };
            if !used.insert(id.to_string()) {
                continue;
            }
            let pattern_id = self.push(pattern);
            let mut rel = sdo(
                "relationship",
                derived("relationship", &["uses", &actor_id, &pattern_id]),
            );
            rel.insert("created".into(), json!(stix_time(&row.first_seen)));
            rel.insert("modified".into(), json!(stix_time(&row.last_seen)));
            rel.insert("relationship_type".into(), json!("uses"));
            rel.insert("description".into(), json!(uses_description(row)));
            rel.insert("source_ref".into(), json!(actor_id));
            rel.insert("target_ref".into(), json!(pattern_id));
            rel.insert("start_time".into(), json!(stix_time(&row.first_seen)));
            rel.insert("stop_time".into(), json!(stop_time(&row.last_seen)));
            self.push(Value::Object(rel));
        }

        // One sighting per stored tag.
        for tag in &a.tags {
            let id = tag.sub_technique_id.as_deref().unwrap_or(&tag.technique_id);
            let Some(stix) = attack.stix(id) else {
                continue;
            };
            let at = stix_time(&tag.created_at);
            let mut s = sdo("sighting", derived("sighting", &[&tag.uuid]));
            s.insert("created".into(), json!(at));
            s.insert("modified".into(), json!(at));
            s.insert(
                "description".into(),
                json!(format!(
                    "{} {} v{} on {} event {}",
                    id, tag.rule_id, tag.rule_version, tag.source_kind, tag.source_id
                )),
            );
            s.insert(
                "confidence".into(),
                json!((tag.confidence.clamp(0.0, 1.0) * 100.0).round() as i64),
            );
            s.insert("first_seen".into(), json!(at));
            s.insert("last_seen".into(), json!(at));
            s.insert("count".into(), json!(1));
            s.insert("sighting_of_ref".into(), json!(stix.id));
            if let Some(od) = &ip_seen {
                s.insert("observed_data_refs".into(), json!([od]));
            }
            s.insert("where_sighted_refs".into(), json!([org]));
            self.push(Value::Object(s));
        }

        // Command lines: a process each, observed and sighted.
        for line in &a.commands {
            let process = self.push(sco_with_id(
                "process",
                derived("process", &[line]),
                json!({"is_hidden": false, "command_line": line}),
            ));
            let mut od = sdo(
                "observed-data",
                derived("observed-data", &[&a.attacker_uuid, "process", &process]),
            );
            od.insert("first_observed".into(), json!(first));
            od.insert("last_observed".into(), json!(last));
            od.insert("number_observed".into(), json!(1));
            od.insert("object_refs".into(), json!([process]));
            let od = self.push(Value::Object(od));
            let mut s = sdo("sighting", derived("sighting", &[&actor_id, &od]));
            s.insert("first_seen".into(), json!(first));
            s.insert("last_seen".into(), json!(last));
            s.insert("count".into(), json!(1));
            s.insert("sighting_of_ref".into(), json!(actor_id));
            s.insert("observed_data_refs".into(), json!([od]));
            s.insert("where_sighted_refs".into(), json!([org]));
            self.push(Value::Object(s));
        }

        // URLs in the command lines and evidence: observed, and indicators.
        for u in &actor_urls(a) {
            let url = self.push(sco("url", json!({"value": u})));
            let mut od = sdo(
                "observed-data",
                derived("observed-data", &[&a.attacker_uuid, "url", &url]),
            );
            od.insert("first_observed".into(), json!(first));
            od.insert("last_observed".into(), json!(last));
            od.insert("number_observed".into(), json!(1));
            od.insert("object_refs".into(), json!([url]));
            self.push(Value::Object(od));
            let indicator_id = derived("indicator", &[&a.attacker_uuid, u]);
            let mut ind = sdo("indicator", indicator_id.clone());
            ind.insert(
                "name".into(),
                json!(format!("URL used by attacker {}", a.attacker_uuid)),
            );
            ind.insert("indicator_types".into(), json!(["malicious-activity"]));
            ind.insert("pattern".into(), json!(url_pattern(u)));
            ind.insert("pattern_type".into(), json!("stix"));
            ind.insert("valid_from".into(), json!(first));
            self.push(Value::Object(ind));
            let mut rel = sdo(
                "relationship",
                derived("relationship", &["indicates", &indicator_id, &actor_id]),
            );
            rel.insert("relationship_type".into(), json!("indicates"));
            rel.insert("source_ref".into(), json!(indicator_id));
            rel.insert("target_ref".into(), json!(actor_id));
            self.push(Value::Object(rel));
        }

        // DECNET's threat-intel verdict.
        if let Some(intel) = &a.intel {
            let mut lines = vec![format!(
                "aggregate_verdict: {}",
                intel.verdict.as_deref().unwrap_or("unknown")
            )];
            if let Some(score) = intel.abuseipdb_score {
                lines.push(format!("abuseipdb_score: {score}"));
            }
            if let Some(class) = &intel.greynoise_classification {
                lines.push(format!(
                    "greynoise: {class} ({})",
                    intel.greynoise_tags.join(", ")
                ));
            }
            if intel.feodo_listed {
                lines.push(format!(
                    "feodo: {}",
                    intel.feodo_family.as_deref().unwrap_or("listed")
                ));
            }
            if intel.threatfox_listed {
                let types = intel.threatfox_threat_types.join(", ");
                lines.push(format!(
                    "threatfox: {}",
                    if types.is_empty() { "listed" } else { &types }
                ));
            }
            let mut note = sdo("note", derived("note", &[&actor_id, "intel"]));
            note.insert("abstract".into(), json!("Threat-intel verdict"));
            note.insert("content".into(), json!(lines.join("\n")));
            note.insert("object_refs".into(), json!([actor_id]));
            self.push(Value::Object(note));
        }
    }
}

/// MITRE's attack-pattern for `id`, as MITRE publishes it (without its
/// descriptions and markings); `None` for ids outside the vendored release.
fn attack_pattern(attack: &Attack, id: &str) -> Option<Value> {
    let stix = attack.stix(id)?;
    let t = attack.technique(id)?;
    let url = attack.mitre_url(id)?;
    let phases: Vec<Value> = t
        .tactics
        .iter()
        .map(|p| json!({"kill_chain_name": "mitre-attack", "phase_name": p}))
        .collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("attack-pattern"));
    m.insert("spec_version".into(), json!("2.1"));
    m.insert("id".into(), json!(stix.id));
    m.insert("created_by_ref".into(), json!(MITRE_IDENTITY));
    m.insert("created".into(), json!(stix.created));
    m.insert("modified".into(), json!(stix.modified));
    m.insert("name".into(), json!(t.name));
    if !phases.is_empty() {
        m.insert("kill_chain_phases".into(), json!(phases));
    }
    m.insert(
        "external_references".into(),
        json!([{"source_name": "mitre-attack", "url": url, "external_id": id}]),
    );
    m.insert("x_mitre_is_subtechnique".into(), json!(t.is_subtechnique));
    Some(Value::Object(m))
}

fn uses_description(row: &RollupRow) -> String {
    format!(
        "{} {}, highest confidence {}",
        row.count,
        if row.count == 1 { "tag" } else { "tags" },
        row.confidence_max
    )
}

/// A relationship's `stop_time` must come after its `start_time`: one
/// millisecond past the last tag.
fn stop_time(stored: &str) -> String {
    let t = stix_time(stored);
    match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
        Ok(at) => super::format_stix(at + time::Duration::milliseconds(1)),
        Err(_) => t,
    }
}

/// `ipv4-addr` or `ipv6-addr` for a parseable address.
fn address(ip: &str) -> Option<(&'static str, String)> {
    match ip.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(("ipv4-addr", v4.to_string())),
        std::net::IpAddr::V6(v6) => Some(("ipv6-addr", v6.to_string())),
    }
}

/// An observable whose id STIX derives from `properties` (its
/// id-contributing properties, canonicalised: keys sorted, no spaces).
fn sco(kind: &str, properties: Value) -> Value {
    let canonical = canonical_json(&properties);
    sco_with_id(
        kind,
        format!(
            "{kind}--{}",
            Uuid::new_v5(&SCO_NAMESPACE, canonical.as_bytes())
        ),
        properties,
    )
}

fn sco_with_id(kind: &str, id: String, properties: Value) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("spec_version".into(), json!("2.1"));
    m.insert("id".into(), json!(id));
    if let Value::Object(p) = properties {
        m.extend(p);
    }
    Value::Object(m)
}

/// JSON with keys sorted and no whitespace (RFC 8785 for the string and
/// object values observables' ids are made of).
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// `kind--<uuid>` derived from the parts that identify the object: the bits
/// of a UUIDv5 (SHA-1 of the parts) laid out as a UUIDv4, since STIX wants
/// version 4 for these objects (and requires it of `process`) while we want
/// the same data to give the same id.
fn derived(kind: &str, parts: &[&str]) -> String {
    let mut name = kind.to_string();
    for p in parts {
        name.push('\n');
        name.push_str(p);
    }
    let bits = *v5(TTP_NAMESPACE, &name).as_bytes();
    format!(
        "{kind}--{}",
        uuid::Builder::from_random_bytes(bits).into_uuid()
    )
}

fn v5(namespace: Uuid, name: &str) -> Uuid {
    Uuid::new_v5(&namespace, name.as_bytes())
}

/// A STIX pattern matching one URL, quotes and backslashes escaped.
fn url_pattern(url: &str) -> String {
    let escaped = url.replace('\\', "\\\\").replace('\'', "\\'");
    format!("[url:value = '{escaped}']")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observable_ids_are_stix_deterministic_ids() {
        // The id DECNET's export (the stix2 library) gives 203.0.113.7.
        let ip = sco("ipv4-addr", json!({"value": "203.0.113.7"}));
        assert_eq!(ip["id"], "ipv4-addr--9ddd739e-87b1-587d-83f2-62ef1130af2f");
    }

    #[test]
    fn threat_actor_ids_are_decnets() {
        assert_eq!(
            threat_actor_id("a0000000-0000-4000-8000-000000000001"),
            "threat-actor--e422b42d-5b3d-5a9a-9cab-714fb480cea7"
        );
    }

    #[test]
    fn url_patterns_escape_quotes_and_backslashes() {
        assert_eq!(
            url_pattern(r"http://x/a'b\c"),
            r"[url:value = 'http://x/a\'b\\c']"
        );
    }

    #[test]
    fn sub_techniques_are_mitres_objects() {
        let p = attack_pattern(Attack::embedded(), "T1003.008").unwrap();
        assert_eq!(p["name"], "/etc/passwd and /etc/shadow");
        assert_eq!(p["external_references"][0]["external_id"], "T1003.008");
        assert_eq!(
            p["external_references"][0]["url"],
            "https://attack.mitre.org/techniques/T1003/008"
        );
        assert_eq!(p["x_mitre_is_subtechnique"], true);
        assert!(attack_pattern(Attack::embedded(), "T9999").is_none());
    }
}
