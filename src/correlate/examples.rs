//! A correlation rule's `examples`: short event sequences for `ttp test`.
//!
//! ```yaml
//! examples:
//!   match:          # fires once, on the sequence's last event
//!     - sequence:
//!         - {times: 9, payload: {result: fail, service: ssh}}
//!         - {result: fail, service: ssh}
//!   no_match:       # never fires
//!     - sequence:
//!         - {times: 9, payload: {result: fail, service: ssh}}
//! ```
//!
//! A step is an event: its payload as the mapping itself (with an optional
//! `source_kind` and `times`), or, with a `payload` key, the payload there
//! beside the event's anchors (`attacker_uuid`, `identity_uuid`,
//! `session_id`, `decky_id`), `source_kind` and `times` (the step
//! repeated, 1 to 1000 times). Anchors default to one example attacker,
//! identity, session and decky, so that a sequence is one group unless it
//! says otherwise.

use crate::diag::Code;
use crate::event::TaggerEvent;
use crate::rule::parse::Ctx;
use crate::rule::Example;
use crate::yaml::{Node, Value};
use serde_json::Value as Json;

/// Most events a sequence may expand to.
pub const MAX_SEQUENCE: usize = 10_000;

const ANCHORS: [&str; 4] = ["attacker_uuid", "identity_uuid", "session_id", "decky_id"];

/// Parses `examples:` of a correlation rule.
pub fn parse(n: &Node, default_kind: &str, ctx: &mut Ctx) -> Option<Vec<Example>> {
    let items = crate::rule::parse::example_items(n, "`sequence:` entries", ctx)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (should_match, item) in items {
        match sequence(item, default_kind, ctx) {
            Some(events) => out.push(Example {
                should_match,
                source_kind: default_kind.to_string(),
                payload: Default::default(),
                line: item.pos.line,
                sequence: events,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn sequence(item: &Node, default_kind: &str, ctx: &mut Ctx) -> Option<Vec<TaggerEvent>> {
    let steps = match (&item.value, item.get("sequence")) {
        (Value::Map(m), Some(s)) if m.len() == 1 => s,
        _ => {
            ctx.error(
                Code::BadExamples,
                item.pos,
                "a correlation rule's example is `sequence: [event, …]`",
            );
            return None;
        }
    };
    let Value::Seq(list) = &steps.value else {
        ctx.error(
            Code::BadExamples,
            steps.pos,
            format!(
                "`sequence` must be a list of events, found {}",
                steps.type_name()
            ),
        );
        return None;
    };
    if list.is_empty() {
        ctx.error(Code::BadExamples, steps.pos, "`sequence` lists no event");
        return None;
    }
    let mut events = Vec::new();
    for (i, step) in list.iter().enumerate() {
        let (event, times) = self::step(step, default_kind, i, ctx)?;
        if events.len() + times > MAX_SEQUENCE {
            ctx.error(
                Code::BadExamples,
                step.pos,
                format!("a sequence may hold at most {MAX_SEQUENCE} events"),
            );
            return None;
        }
        for n in 0..times {
            let mut e = event.clone();
            if times > 1 {
                e.source_id = format!("{}.{}", event.source_id, n + 1);
            }
            events.push(e);
        }
    }
    Some(events)
}

/// One step: the event and how many times it repeats.
fn step(n: &Node, default_kind: &str, i: usize, ctx: &mut Ctx) -> Option<(TaggerEvent, usize)> {
    let Json::Object(mut map) = n.to_json() else {
        ctx.error(
            Code::BadExamples,
            n.pos,
            format!(
                "an event of a sequence must be a mapping, found {}",
                n.type_name()
            ),
        );
        return None;
    };
    let bad = |ctx: &mut Ctx, what: &str| {
        ctx.error(Code::BadExamples, n.pos, what.to_string());
        None
    };
    let times = match map.remove("times") {
        None => 1,
        Some(t) => match t.as_u64() {
            Some(t @ 1..=1000) => t as usize,
            _ => return bad(ctx, "`times` must be a whole number from 1 to 1000"),
        },
    };
    let source_kind = match map.remove("source_kind") {
        None => default_kind.to_string(),
        Some(Json::String(s)) => s,
        Some(_) => return bad(ctx, "an event's `source_kind` must be a string"),
    };
    let mut event = TaggerEvent {
        source_kind,
        source_id: format!("step-{}", i + 1),
        attacker_uuid: Some("example-attacker".into()),
        identity_uuid: Some("example-identity".into()),
        session_id: Some("example-session".into()),
        decky_id: Some("example-decky".into()),
        payload: Default::default(),
    };
    let payload = match map.remove("payload") {
        None => map,
        Some(Json::Object(p)) => {
            for (key, value) in map {
                let slot = match key.as_str() {
                    "attacker_uuid" => &mut event.attacker_uuid,
                    "identity_uuid" => &mut event.identity_uuid,
                    "session_id" => &mut event.session_id,
                    "decky_id" => &mut event.decky_id,
                    _ => {
                        let message = format!(
                            "unknown key `{}` beside `payload` (expected {}, source_kind, times)",
                            crate::text::line(&key),
                            ANCHORS.join(", ")
                        );
                        return bad(ctx, &message);
                    }
                };
                *slot = match value {
                    Json::Null => None,
                    Json::String(s) => Some(s),
                    _ => return bad(ctx, &format!("`{key}` must be a string or null")),
                };
            }
            p
        }
        Some(_) => return bad(ctx, "`payload` must be a mapping"),
    };
    event.payload = payload.into_iter().collect();
    Some((event, times))
}

#[cfg(test)]
mod tests {
    use crate::rule::parse::{parse_rule, LoadOptions};
    use std::path::Path;

    const HEAD: &str = "rule_id: C1\nrule_version: 1\nname: n\napplies_to: [auth_attempt]\n\
        correlate: {type: value_count, field: decky_id, group_by: [attacker_uuid], window: 5m, \
        condition: {gte: 2}}\nemits: [{tactic: TA0007, technique_id: T1046, confidence: 0.5}]\n";

    #[test]
    fn sequences_expand_and_anchors_default() {
        let text = format!(
            "{HEAD}examples:\n  match:\n    - sequence:\n        - {{times: 2, payload: {{result: fail}}, decky_id: d1}}\n        \
             - {{result: fail, source_kind: session}}\n"
        );
        let (rule, diags) = parse_rule(Path::new("c.yaml"), &text, LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        let rule = rule.unwrap();
        let seq = &rule.examples[0].sequence;
        assert_eq!(seq.len(), 3);
        assert_eq!(seq[0].source_id, "step-1.1");
        assert_eq!(seq[1].decky_id.as_deref(), Some("d1"));
        assert_eq!(seq[2].decky_id.as_deref(), Some("example-decky"));
        assert_eq!(seq[2].source_kind, "session");
        assert_eq!(
            seq[2].payload.get("result"),
            Some(&serde_json::json!("fail"))
        );
        assert_eq!(rule.examples[0].line, 9);
    }

    #[test]
    fn bad_sequences_are_located() {
        for (examples, message, line) in [
            (
                "  match:\n    - {result: fail}\n",
                "is `sequence: [event, …]`",
                9,
            ),
            ("  match:\n    - sequence: []\n", "lists no event", 9),
            (
                "  match:\n    - sequence:\n        - {times: 0, result: x}\n",
                "`times` must be",
                10,
            ),
            (
                "  match:\n    - sequence:\n        - {payload: {a: 1}, port: 22}\n",
                "unknown key `port` beside `payload`",
                10,
            ),
            ("  maybe: []\n", "takes only `match` and `no_match`", 8),
        ] {
            let text = format!("{HEAD}examples:\n{examples}");
            let (rule, diags) = parse_rule(Path::new("c.yaml"), &text, LoadOptions::default());
            assert!(rule.is_none(), "{examples}");
            let d = diags.iter().find(|d| d.is_error()).expect(examples);
            assert!(d.message.contains(message), "{examples}: {d}");
            assert_eq!(d.line, line, "{examples}: {d}");
        }
    }
}
