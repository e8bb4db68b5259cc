//! MISP events: one per attacker, with its address and the URLs it used as
//! attributes, its command lines as `process` objects, and its techniques as
//! clusters of MISP's `mitre-attack-pattern` galaxy (tagged the way MISP
//! tags ATT&CK, `misp-galaxy:mitre-attack-pattern="<name> - <id>"`).
//!
//! Built directly (DECNET converts its STIX bundle with misp-stix, whose
//! output changes with misp-stix's version); every uuid is a UUIDv5 of what
//! it describes and every time comes from the data, so the same data gives
//! the same event.

use super::{actor_urls, parse_stored, Producer, TTP_NAMESPACE};
use crate::attack::Attack;
use crate::query::Actor;
use serde_json::{json, Value};
use uuid::Uuid;

/// MISP's `mitre-attack-pattern` galaxy.
const ATTACK_GALAXY_UUID: &str = "c4e851fa-775f-11e7-8163-b774922098cd";
/// MISP's `process` object template.
const PROCESS_TEMPLATE_UUID: &str = "02aeef94-ac23-455c-addb-731757ceafb5";

/// The MISP event of one attacker (without MISP's `{"Event": …}` wrapper,
/// as DECNET's API returns it; MISP and PyMISP read both).
pub fn event(producer: &Producer, a: &Actor) -> Value {
    let attack = Attack::embedded();
    let first = parse_stored(&a.first_seen);
    let last = parse_stored(&a.last_seen).or(first);
    let iso = |t: Option<time::OffsetDateTime>| {
        t.map(|t| super::format_stix(t).replace(".000Z", "+00:00"))
    };
    let epoch = last
        .map(|t| t.unix_timestamp().to_string())
        .unwrap_or_else(|| "0".into());
    let id = |parts: &[&str]| uuid5(&[&["misp", &a.attacker_uuid], parts].concat());

    let mut attributes = Vec::new();
    if let Some(ip) = &a.ip {
        let mut attr = json!({
            "uuid": id(&["ip-src", ip]),
            "type": "ip-src",
            "category": "Network activity",
            "value": ip,
            "to_ids": false,
            "comment": format!("Attacker {} ({} events)", a.attacker_uuid, a.event_count),
            "timestamp": epoch,
        });
        if let (Some(f), Some(l)) = (iso(first), iso(last)) {
            attr["first_seen"] = json!(f);
            attr["last_seen"] = json!(l);
        }
        attributes.push(attr);
    }
    for u in &actor_urls(a) {
        attributes.push(json!({
            "uuid": id(&["url", u]),
            "type": "url",
            "category": "Network activity",
            "value": u,
            "to_ids": true,
            "comment": "Seen in the attacker's commands",
            "timestamp": epoch,
        }));
    }

    let objects: Vec<Value> = a
        .commands
        .iter()
        .map(|line| {
            json!({
                "name": "process",
                "meta-category": "misc",
                "template_uuid": PROCESS_TEMPLATE_UUID,
                "template_version": "10",
                "uuid": id(&["process", line]),
                "distribution": "5",
                "timestamp": epoch,
                "comment": "Command line the attacker ran",
                "Attribute": [{
                    "uuid": id(&["process", line, "command-line"]),
                    "object_relation": "command-line",
                    "type": "text",
                    "category": "Other",
                    "value": line,
                    "to_ids": false,
                    "timestamp": epoch,
                }],
            })
        })
        .collect();

    let mut clusters = Vec::new();
    let mut tags = Vec::new();
    let mut done = std::collections::HashSet::new();
    for row in &a.rollup {
        let tid = row.id();
        let (Some(t), Some(stix), Some(url)) = (
            attack.technique(tid),
            attack.stix(tid),
            attack.mitre_url(tid),
        ) else {
            continue;
        };
        if !done.insert(tid.to_string()) {
            continue;
        }
        let value = format!("{} - {tid}", t.name);
        let tag_name = format!("misp-galaxy:mitre-attack-pattern=\"{value}\"");
        let cluster_uuid = stix
            .id
            .strip_prefix("attack-pattern--")
            .unwrap_or(&stix.id)
            .to_string();
        let kill_chain: Vec<String> = t
            .tactics
            .iter()
            .map(|p| format!("mitre-attack:{p}"))
            .collect();
        clusters.push(json!({
            "uuid": cluster_uuid,
            "type": "mitre-attack-pattern",
            "value": value,
            "tag_name": tag_name,
            "description": format!(
                "{}: {} tags from {} to {}, highest confidence {}",
                tid, row.count, row.first_seen, row.last_seen, row.confidence_max
            ),
            "source": "https://github.com/mitre/cti",
            "authors": ["MITRE"],
            "meta": {
                "external_id": [tid],
                "refs": [url],
                "kill_chain": kill_chain,
            },
            "GalaxyElement": [
                {"key": "external_id", "value": tid},
                {"key": "refs", "value": url},
            ],
        }));
        tags.push(json!({"name": tag_name}));
    }
    tags.push(json!({"name": format!("misp-galaxy:producer=\"{}\"", producer.name)}));

    let mut event = json!({
        "uuid": id(&["event"]),
        "info": format!(
            "{}: attacker {}{} used {} ATT&CK technique{}",
            producer.name,
            a.attacker_uuid,
            a.ip.as_deref().map(|ip| format!(" ({ip})")).unwrap_or_default(),
            clusters.len(),
            if clusters.len() == 1 { "" } else { "s" }
        ),
        "threat_level_id": "4",
        "analysis": "2",
        "distribution": "0",
        "published": false,
        "timestamp": epoch,
        "Attribute": attributes,
        "Object": objects,
        "Galaxy": [],
        "Tag": tags,
    });
    if let Some(f) = first {
        event["date"] = json!(f.date().to_string());
    }
    if !clusters.is_empty() {
        event["Galaxy"] = json!([{
            "uuid": ATTACK_GALAXY_UUID,
            "name": "Attack Pattern",
            "type": "mitre-attack-pattern",
            "namespace": "mitre-attack",
            "description": "ATT&CK techniques",
            "GalaxyCluster": clusters,
        }]);
    }
    event
}

/// Every attacker's event, as DECNET's fleet route wraps them:
/// `{"response": [event, …]}`.
pub fn collection(producer: &Producer, actors: &[Actor]) -> Value {
    json!({"response": actors.iter().map(|a| event(producer, a)).collect::<Vec<_>>()})
}

fn uuid5(parts: &[&str]) -> String {
    Uuid::new_v5(&TTP_NAMESPACE, parts.join("\n").as_bytes()).to_string()
}
