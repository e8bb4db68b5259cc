//! The JSON shapes of DECNET's TTP API (§3.4–§3.5), keys in its order. The
//! API, `ttp query --format json` and the exports all build them here, so
//! the same data reads the same everywhere.

use super::{api_time, RollupRow, Scope, TagRow};
use crate::attack::Attack;
use serde_json::{Map, Value};

fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A rollup row: `TechniqueRollupRow` (fleet), `CampaignRollupRow`
/// (campaign) or `ScopedRollupRow` (attacker, identity, session). With
/// `utc`, times carry a `Z`.
pub fn rollup_row(scope: &Scope, row: &RollupRow, utc: bool) -> Value {
    let mut m = Map::new();
    m.insert(
        "technique_id".into(),
        Value::String(row.technique_id.clone()),
    );
    m.insert("technique_name".into(), opt(&row.technique_name));
    m.insert("sub_technique_id".into(), opt(&row.sub_technique_id));
    m.insert("sub_technique_name".into(), opt(&row.sub_technique_name));
    m.insert("tactic".into(), Value::String(row.tactic.clone()));
    m.insert("count".into(), Value::from(row.count));
    match scope {
        Scope::Fleet => {}
        Scope::Campaign(_) => {
            m.insert(
                "identity_count".into(),
                Value::from(row.identity_count.unwrap_or(0)),
            );
        }
        _ => {
            m.insert(
                "first_seen".into(),
                Value::String(api_time(&row.first_seen, utc)),
            );
        }
    }
    m.insert(
        "last_seen".into(),
        Value::String(api_time(&row.last_seen, utc)),
    );
    if matches!(
        scope,
        Scope::Attacker(_) | Scope::Identity(_) | Scope::Session(_)
    ) {
        m.insert("confidence_max".into(), float(row.confidence_max));
    }
    m.insert("mitre_url".into(), opt(&row.mitre_url));
    Value::Object(m)
}

/// A rollup as a JSON array.
pub fn rollup(scope: &Scope, rows: &[RollupRow], utc: bool) -> Value {
    Value::Array(rows.iter().map(|r| rollup_row(scope, r, utc)).collect())
}

/// DECNET's `TagDetailRow`: the stored columns plus technique names,
/// `mitre_url` as stored.
pub fn tag_detail(tag: &TagRow, utc: bool) -> Value {
    let attack = Attack::embedded();
    let mut m = Map::new();
    let s = |v: &str| Value::String(v.to_string());
    m.insert("uuid".into(), s(&tag.uuid));
    m.insert("source_kind".into(), s(&tag.source_kind));
    m.insert("source_id".into(), s(&tag.source_id));
    m.insert("attacker_uuid".into(), opt(&tag.attacker_uuid));
    m.insert("identity_uuid".into(), opt(&tag.identity_uuid));
    m.insert("session_id".into(), opt(&tag.session_id));
    m.insert("decky_id".into(), opt(&tag.decky_id));
    m.insert("tactic".into(), s(&tag.tactic));
    m.insert("technique_id".into(), s(&tag.technique_id));
    m.insert(
        "technique_name".into(),
        opt(&attack.technique_name(&tag.technique_id)),
    );
    m.insert("sub_technique_id".into(), opt(&tag.sub_technique_id));
    m.insert(
        "sub_technique_name".into(),
        opt(&tag
            .sub_technique_id
            .as_deref()
            .and_then(|x| attack.technique_name(x))),
    );
    m.insert("confidence".into(), float(tag.confidence));
    m.insert("rule_id".into(), s(&tag.rule_id));
    m.insert("rule_version".into(), Value::from(tag.rule_version));
    m.insert("evidence".into(), tag.evidence.clone());
    m.insert("attack_release".into(), s(&tag.attack_release));
    m.insert("created_at".into(), s(&api_time(&tag.created_at, utc)));
    m.insert("mitre_url".into(), opt(&tag.mitre_url));
    Value::Object(m)
}
