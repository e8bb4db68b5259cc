//! An ATT&CK Navigator layer (format 4.5) of a rollup.
//!
//! Unlike DECNET's layer (its Q28), each technique or sub-technique appears
//! once under its own id with the tags counted for it, the tactic column is
//! named, parents of highlighted sub-techniques are expanded,
//! `versions.attack` is the vendored table's release, and the layer carries
//! a score gradient, a legend and metadata saying what was counted. Ids the
//! ATT&CK table does not know are listed in the metadata, not in the matrix.

use crate::attack::{Attack, RELEASE_NUMBER};
use crate::query::{RollupRow, Scope, Window};
use serde_json::{json, Value};

/// The layer for `rows`, the rollup of `scope` within `window`.
pub fn layer(scope: &Scope, window: &Window, rows: &[RollupRow]) -> Value {
    let attack = Attack::embedded();
    let what = match scope.id() {
        None => "fleet".to_string(),
        Some(id) => format!("{} {}", scope.kind(), id),
    };
    let mut techniques: Vec<Value> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut max = 0i64;
    let mut shown: Vec<String> = Vec::new();
    for r in rows {
        let id = r.id();
        let Some(t) = attack.technique(id) else {
            unknown.push(id.to_string());
            continue;
        };
        max = max.max(r.count);
        let tactic = attack.tactic(&r.tactic).map(|t| t.shortname.clone());
        let mut entry = json!({
            "techniqueID": id,
            "score": r.count,
            "color": "",
            "comment": format!(
                "{} tag{}, highest confidence {:.2}, last seen {}",
                r.count,
                if r.count == 1 { "" } else { "s" },
                r.confidence_max,
                crate::query::api_time(&r.last_seen, true)
            ),
            "enabled": true,
            "metadata": [
                {"name": "first_seen", "value": crate::query::api_time(&r.first_seen, true)},
                {"name": "last_seen", "value": crate::query::api_time(&r.last_seen, true)},
            ],
            "showSubtechniques": false,
        });
        // Name the matrix column only when the technique sits in it.
        if let Some(short) = tactic.filter(|s| t.tactics.contains(s)) {
            entry["tactic"] = Value::String(short);
        }
        techniques.push(entry);
        shown.push(id.to_string());
    }
    // Expand the parents of highlighted sub-techniques.
    let parents: Vec<String> = shown
        .iter()
        .filter_map(|id| id.split_once('.').map(|(p, _)| p.to_string()))
        .collect();
    for p in parents {
        if let Some(e) = techniques
            .iter_mut()
            .find(|e| e["techniqueID"] == p.as_str())
        {
            e["showSubtechniques"] = Value::Bool(true);
        } else if attack.technique(&p).is_some() {
            techniques.push(json!({"techniqueID": p, "enabled": true, "showSubtechniques": true}));
            shown.push(p);
        }
    }
    let mut counted = String::from("tag rows per technique or sub-technique");
    if let Some(s) = &window.since {
        counted.push_str(&format!(
            ", created at or after {}",
            crate::query::api_time(s, true)
        ));
    }
    if let Some(u) = &window.until {
        counted.push_str(&format!(
            ", created before {}",
            crate::query::api_time(u, true)
        ));
    }
    if let Some(c) = window.min_confidence {
        counted.push_str(&format!(", confidence at least {c}"));
    }
    let mut metadata = vec![
        json!({"name": "generated_by", "value": concat!("ttp-engine ", env!("CARGO_PKG_VERSION"))}),
        json!({"name": "scope", "value": what}),
        json!({"name": "score", "value": counted}),
        json!({"name": "attack_table", "value": crate::attack::TABLE_RELEASE}),
    ];
    if !unknown.is_empty() {
        metadata.push(json!({"name": "not_in_attack_table", "value": unknown.join(", ")}));
    }
    let max = max.max(1);
    json!({
        "name": format!("ttp-engine TTP coverage — {what}"),
        "versions": {"attack": RELEASE_NUMBER.split('.').next().unwrap_or(RELEASE_NUMBER), "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": format!("Techniques seen in honeypot telemetry ({what}); score = {counted}."),
        "sorting": 3,
        "layout": {"layout": "side", "showID": true, "showName": true},
        "hideDisabled": false,
        "techniques": techniques,
        "gradient": {"colors": ["#fff7bc", "#fe9929", "#cc4c02"], "minValue": 0, "maxValue": max},
        "legendItems": [
            {"label": "seen once", "color": "#fff7bc"},
            {"label": format!("seen {max} times (most)"), "color": "#cc4c02"},
        ],
        "metadata": metadata,
        "showTacticRowBackground": false,
        "selectTechniquesAcrossTactics": true,
        "selectSubtechniquesWithParent": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, sub: Option<&str>, count: i64) -> RollupRow {
        RollupRow {
            technique_id: t.into(),
            technique_name: None,
            sub_technique_id: sub.map(String::from),
            sub_technique_name: None,
            tactic: "TA0006".into(),
            count,
            identity_count: None,
            first_seen: "2026-11-20 08:00:00.000000".into(),
            last_seen: "2026-11-21 08:00:00.000000".into(),
            confidence_max: 0.9,
            mitre_url: None,
        }
    }

    #[test]
    fn sub_techniques_under_their_own_ids_once_each() {
        let rows = [
            row("T1110", None, 1),
            row("T1110", Some("T1110.003"), 2),
            row("T1003", Some("T1003.008"), 4),
            row("T9999", None, 1),
        ];
        let l = layer(&Scope::Fleet, &Window::default(), &rows);
        let ids: Vec<&str> = l["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["techniqueID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["T1110", "T1110.003", "T1003.008", "T1003"]);
        assert_eq!(l["techniques"][0]["showSubtechniques"], true);
        assert_eq!(l["techniques"][1]["score"], 2);
        assert_eq!(l["techniques"][1]["tactic"], "credential-access");
        assert_eq!(l["gradient"]["maxValue"], 4);
        assert_eq!(l["versions"]["attack"], "18");
        let meta = l["metadata"].to_string();
        assert!(meta.contains("T9999"), "{meta}");
    }
}
