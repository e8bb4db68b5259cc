//! A firing's tags: one per emit of the rule, anchored as the event that
//! completed it, with the firing's evidence.

use super::{Context, SOURCE_KIND};
use crate::correlate::window::{Firing, Kind, FIELD_SEPARATOR};
use crate::event::{Payload, TaggerEvent};
use crate::rule::Rule;
use crate::state::Gate;
use crate::tag::{build_tag, Tag, TagSource};
use serde_json::Value as Json;
use std::sync::Arc;

/// The tags of one firing: one per emit, anchored as the event that
/// completed it, keyed by (rule, version, group, window start). The
/// firing's texts move into the evidence.
pub(super) fn emit(
    rule: &Rule,
    firing: Firing,
    event: &TaggerEvent,
    gate: Gate,
    cx: &Context,
    out: &mut Vec<Tag>,
) {
    let Some(spec) = rule.correlation() else {
        return;
    };
    let source = TaggerEvent {
        source_kind: SOURCE_KIND.to_string(),
        source_id: format!("{}|{}", firing.group, firing.window_start_ms),
        attacker_uuid: event.attacker_uuid.clone(),
        identity_uuid: event.identity_uuid.clone(),
        session_id: event.session_id.clone(),
        decky_id: event.decky_id.clone(),
        payload: Payload::default(),
    };
    let kind = match spec.settings.kind {
        Kind::EventCount => "event_count",
        Kind::ValueCount => "value_count",
        Kind::ValueSum => "value_sum",
        Kind::Temporal => "temporal",
        Kind::TemporalOrdered => "temporal_ordered",
    };
    let mut ev = crate::tag::Evidence::default();
    ev.insert("correlation".into(), Json::from(kind));
    ev.insert("group".into(), Json::from(firing.group));
    ev.insert(
        "group_by".into(),
        Json::Array(
            spec.group_by
                .iter()
                .map(|p| Json::from(p.display()))
                .collect(),
        ),
    );
    ev.insert("count".into(), Json::from(firing.count));
    ev.insert(
        "window_start".into(),
        Json::from(crate::correlate::time::rfc3339_ms(firing.window_start_ms)),
    );
    ev.insert(
        "window_end".into(),
        Json::from(crate::correlate::time::rfc3339_ms(firing.window_end_ms)),
    );
    match spec.settings.kind {
        Kind::ValueCount => {
            ev.insert("distinct".into(), Json::from(firing.distinct));
            // Several fields: each value as the list of its fields' texts.
            let value = |v: String| match spec.fields.len() {
                1 => Json::from(v),
                _ => Json::Array(v.split(FIELD_SEPARATOR).map(Json::from).collect()),
            };
            ev.insert(
                "field".into(),
                Json::Array(
                    spec.fields
                        .iter()
                        .map(|f| Json::from(f.display()))
                        .collect(),
                ),
            );
            ev.insert(
                "values".into(),
                Json::Array(firing.values.into_iter().map(value).collect()),
            );
        }
        Kind::ValueSum => {
            ev.insert("sum".into(), Json::from(firing.sum));
        }
        _ => {}
    }
    ev.insert(
        "source_ids".into(),
        Json::Array(firing.source_ids.into_iter().map(Json::from).collect()),
    );
    let evidence = Arc::new(ev);
    for e in &rule.emits {
        out.push(build_tag(
            TagSource::of(&source),
            rule,
            e,
            evidence.clone(),
            gate.apply(e.confidence),
            cx.config,
            cx.created_at,
        ));
    }
}
