//! Correlation rules (issue #14): rules over many events of one group (an
//! attacker, a session, any payload field) within a time window.
//!
//! A rule file holds `correlate:` instead of `match:`:
//!
//! ```yaml
//! correlate:
//!   type: event_count     # event_count | value_count | temporal | temporal_ordered | value_sum
//!   match: {all: [{field: success, equals: false}]}   # or `rules: [TTP-2001, …]`
//!   group_by: [attacker_uuid]
//!   window: 5m
//!   condition: {gte: 10}
//! ```
//!
//! [`Correlation::parse`] checks such a block with located diagnostics;
//! [`window`] holds the windows' semantics (sliding window, one firing per
//! episode, lateness, bounded groups); [`stage`] runs every correlation
//! rule after an event's single-event tags (`Engine::tag_event`);
//! [`durable`] checkpoints the windows into SQLite with each commit of the
//! daemons, so that they survive a restart.

pub mod durable;
pub mod examples;
pub mod keys;
pub mod prefetch;
pub mod sources;
pub mod stage;
pub mod texts;
pub mod time;
pub mod values;
pub mod window;

use crate::diag::Code;
use crate::event::TaggerEvent;
use crate::rule::conditions::{Condition, FieldPath};
use crate::rule::parse::Ctx;
use crate::yaml::{Node, Value};
use std::borrow::Cow;
use window::{Kind, Settings, Threshold};

/// Groups kept per rule unless `--max-groups` says otherwise.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;

/// Which events a correlation counts.
#[derive(Debug)]
pub enum Select {
    /// Every event of the rule's `applies_to` kinds (no `match`).
    All,
    /// Events the condition accepts.
    Match(Condition),
    /// Firings of these rules, in this order (the temporal kinds' steps).
    Rules(Vec<String>),
}

/// A checked `correlate:` block.
#[derive(Debug)]
pub struct Correlation {
    pub settings: Settings,
    pub select: Select,
    /// Anchors (`attacker_uuid`, `identity_uuid`, `session_id`, `decky_id`,
    /// `source_kind`) or dotted payload paths.
    pub group_by: Vec<FieldPath>,
    /// `value_count`: the field (or fields, counted as one tuple: e.g.
    /// username and password for credential stuffing) whose distinct
    /// values count; `value_sum`: the one numeric field summed. Empty for
    /// the other kinds.
    pub fields: Vec<FieldPath>,
    /// The block as written, as JSON: a reload keeps a rule's windows only
    /// when it is unchanged.
    pub block: String,
    /// The rule's own `max_groups`, if it sets one (it wins over
    /// `--max-groups`).
    pub max_groups: Option<usize>,
}

impl Correlation {
    /// Checks a `correlate:` mapping; every problem is reported at its
    /// place, and `None` comes back when any is an error.
    pub fn parse(n: &Node, ctx: &mut Ctx) -> Option<Correlation> {
        let Value::Map(entries) = &n.value else {
            ctx.error(
                Code::BadValue,
                n.pos,
                format!("`correlate` must be a mapping, found {}", n.type_name()),
            );
            return None;
        };
        const KEYS: [&str; 9] = [
            "type",
            "match",
            "rules",
            "group_by",
            "window",
            "condition",
            "field",
            "lateness",
            "max_groups",
        ];
        for (k, _) in entries {
            match k.as_str() {
                Some(key) if KEYS.contains(&key) => {}
                Some(key) => ctx.unknown_key(k.pos, key, "`correlate`"),
                None => ctx.error(
                    Code::BadValue,
                    k.pos,
                    "a key of `correlate` must be a string",
                ),
            }
        }
        let kind = kind(n, ctx);
        let select = select(n, kind, ctx);
        let group_by = group_by(n, ctx);
        let window_ms = match n.get("window") {
            Some(w) => duration(w, "window", ctx),
            None => {
                ctx.error(
                    Code::MissingKey,
                    n.pos,
                    "`correlate` needs `window` (e.g. `5m`)",
                );
                None
            }
        };
        let lateness_ms = match n.get("lateness") {
            Some(l) => duration(l, "lateness", ctx),
            None => Some(0),
        };
        let threshold = threshold(n, kind, ctx);
        let field = field(n, kind, ctx);
        let max_groups = match n.get("max_groups") {
            None => Some(None),
            Some(m) => match &m.value {
                Value::Int(v) if *v > 0 => usize::try_from(*v).ok().map(Some),
                _ => {
                    ctx.error(
                        Code::BadValue,
                        m.pos,
                        "`max_groups` must be a positive integer",
                    );
                    None
                }
            },
        };
        let kind = kind?;
        let select = select?;
        let steps = match &select {
            Select::Rules(r) => r.len(),
            Select::Match(_) | Select::All => 0,
        };
        Some(Correlation {
            settings: Settings {
                kind,
                window_ms: window_ms?,
                threshold: threshold?,
                steps,
                fields: field.as_ref().map_or(1, |f| f.len().max(1)),
                lateness_ms: lateness_ms?,
                max_groups: max_groups?.unwrap_or(DEFAULT_MAX_GROUPS),
            },
            max_groups: max_groups?,
            select,
            group_by: group_by?,
            fields: field?,
            block: n.to_json().to_string(),
        })
    }

    /// The event's group key (the `group_by` values joined by `|`), or
    /// `None` when one of them is missing (the event is not counted).
    /// Borrowed from the event when there is one `group_by`.
    pub fn group_key<'e>(&self, event: &'e TaggerEvent) -> Option<Cow<'e, str>> {
        if let [one] = self.group_by.as_slice() {
            return field_text(one, event);
        }
        let mut key = String::new();
        for (i, path) in self.group_by.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            key.push_str(&field_text(path, event)?);
        }
        Some(Cow::Owned(key))
    }
}

/// The text of a field of an event: an anchor (`attacker_uuid`,
/// `identity_uuid`, `session_id`, `decky_id`, `source_kind`) or a payload
/// path (a string as it is, anything else as JSON); `None` when missing or
/// null.
pub fn field_text<'e>(path: &FieldPath, event: &'e TaggerEvent) -> Option<Cow<'e, str>> {
    if let [one] = path.0.as_slice() {
        let anchor = match one.as_str() {
            "attacker_uuid" => Some(event.attacker_uuid.as_deref()),
            "identity_uuid" => Some(event.identity_uuid.as_deref()),
            "session_id" => Some(event.session_id.as_deref()),
            "decky_id" => Some(event.decky_id.as_deref()),
            "source_kind" => Some(Some(event.source_kind.as_str())),
            _ => None,
        };
        if let Some(value) = anchor {
            return value.map(Cow::Borrowed);
        }
    }
    match path.lookup(&event.payload)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn kind(n: &Node, ctx: &mut Ctx) -> Option<Kind> {
    let Some(t) = n.get("type") else {
        ctx.error(
            Code::MissingKey,
            n.pos,
            "`correlate` needs `type`: event_count, value_count, temporal, temporal_ordered or value_sum",
        );
        return None;
    };
    let kind = match t.as_str() {
        Some("event_count") => Some(Kind::EventCount),
        Some("value_count") => Some(Kind::ValueCount),
        Some("value_sum") => Some(Kind::ValueSum),
        Some("temporal") => Some(Kind::Temporal),
        Some("temporal_ordered") => Some(Kind::TemporalOrdered),
        _ => None,
    };
    if kind.is_none() {
        ctx.error(
            Code::BadValue,
            t.pos,
            "`type` must be event_count, value_count, temporal, temporal_ordered or value_sum",
        );
    }
    kind
}

fn select(n: &Node, kind: Option<Kind>, ctx: &mut Ctx) -> Option<Select> {
    let temporal = matches!(kind, Some(Kind::Temporal | Kind::TemporalOrdered));
    match (n.get("match"), n.get("rules")) {
        (Some(m), None) => {
            if temporal {
                ctx.error(
                    Code::BadValue,
                    m.pos,
                    "a temporal correlation lists the rules that must fire: `rules: [...]`, not `match`",
                );
                return None;
            }
            Condition::parse(m, ctx, &[]).map(Select::Match)
        }
        (None, Some(r)) => {
            let Value::Seq(items) = &r.value else {
                ctx.error(Code::BadValue, r.pos, "`rules` must be a list of rule ids");
                return None;
            };
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(id) if !id.trim().is_empty() => ids.push(id.to_string()),
                    _ => ctx.error(
                        Code::BadValue,
                        item.pos,
                        "a rule id must be a non-empty string",
                    ),
                }
            }
            if ids.is_empty() {
                ctx.error(Code::BadValue, r.pos, "`rules` lists no rule");
                return None;
            }
            (ids.len() == items.len()).then_some(Select::Rules(ids))
        }
        (Some(_), Some(r)) => {
            ctx.error(
                Code::BadValue,
                r.pos,
                "`correlate` takes `match` or `rules`, not both",
            );
            None
        }
        (None, None) if temporal => {
            ctx.error(
                Code::MissingKey,
                n.pos,
                "a temporal correlation needs `rules`: the rules that must fire",
            );
            None
        }
        // Without `match`, every event of the `applies_to` kinds counts.
        (None, None) => Some(Select::All),
    }
}

fn group_by(n: &Node, ctx: &mut Ctx) -> Option<Vec<FieldPath>> {
    let Some(g) = n.get("group_by") else {
        ctx.error(
            Code::MissingKey,
            n.pos,
            "`correlate` needs `group_by` (e.g. `[attacker_uuid]`)",
        );
        return None;
    };
    let items: Vec<&Node> = match &g.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Str(_) => vec![g],
        _ => {
            ctx.error(Code::BadValue, g.pos, "`group_by` must be a list of fields");
            return None;
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(f) if !f.is_empty() && f.split('.').all(|s| !s.is_empty()) => {
                out.push(FieldPath::dotted(f));
            }
            _ => {
                ctx.error(
                    Code::BadValue,
                    item.pos,
                    "a `group_by` field must be an anchor or a dotted payload path",
                );
                return None;
            }
        }
    }
    if out.is_empty() {
        ctx.error(Code::BadValue, g.pos, "`group_by` lists no field");
        return None;
    }
    Some(out)
}

fn threshold(n: &Node, kind: Option<Kind>, ctx: &mut Ctx) -> Option<Option<Threshold>> {
    let counting = matches!(
        kind,
        Some(Kind::EventCount | Kind::ValueCount | Kind::ValueSum)
    );
    let Some(c) = n.get("condition") else {
        if counting {
            ctx.error(
                Code::MissingKey,
                n.pos,
                "a counting correlation needs `condition` with a threshold (e.g. `{gte: 10}`)",
            );
            return None;
        }
        return Some(None);
    };
    let Value::Map(entries) = &c.value else {
        ctx.error(
            Code::BadValue,
            c.pos,
            "`condition` must be a mapping like `{gte: 10}`",
        );
        return None;
    };
    let [(k, v)] = entries.as_slice() else {
        ctx.error(
            Code::BadValue,
            c.pos,
            "`condition` takes one threshold: `gte` or `gt` with a number",
        );
        return None;
    };
    let number = match &v.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    };
    let Some(number) = number else {
        ctx.error(Code::BadValue, v.pos, "the threshold must be a number");
        return None;
    };
    let t = match k.as_str() {
        Some("gte") => Threshold::AtLeast(number),
        Some("gt") => Threshold::Above(number),
        _ => {
            ctx.error(
                Code::BadValue,
                k.pos,
                "a threshold is `gte` or `gt` (a correlation fires when its count reaches it)",
            );
            return None;
        }
    };
    if !counting {
        ctx.error(
            Code::BadValue,
            c.pos,
            "a temporal correlation fires when every listed rule has fired: it takes no `condition`",
        );
        return None;
    }
    Some(Some(t))
}

fn field(n: &Node, kind: Option<Kind>, ctx: &mut Ctx) -> Option<Vec<FieldPath>> {
    let needs = matches!(kind, Some(Kind::ValueCount | Kind::ValueSum));
    match (n.get("field"), needs) {
        (Some(f), true) => {
            let names: Vec<&Node> = match &f.value {
                Value::Seq(items) if kind == Some(Kind::ValueCount) && !items.is_empty() => {
                    items.iter().collect()
                }
                Value::Seq(_) if kind == Some(Kind::ValueCount) => {
                    ctx.error(Code::BadValue, f.pos, "`field` lists no field");
                    return None;
                }
                Value::Seq(_) => {
                    ctx.error(
                        Code::BadValue,
                        f.pos,
                        "value_sum sums one field: `field` must be one payload field name",
                    );
                    return None;
                }
                _ => vec![f],
            };
            let mut paths = Vec::with_capacity(names.len());
            for name in names {
                match name.as_str() {
                    Some(s) if !s.is_empty() => paths.push(FieldPath::dotted(s)),
                    _ => {
                        ctx.error(
                            Code::BadValue,
                            name.pos,
                            "`field` must be a payload field name (or, for value_count, a list of them)",
                        );
                        return None;
                    }
                }
            }
            Some(paths)
        }
        (None, true) => {
            ctx.error(
                Code::MissingKey,
                n.pos,
                "value_count and value_sum need `field`: the payload field counted or summed",
            );
            None
        }
        (Some(f), false) => {
            ctx.error(
                Code::BadValue,
                f.pos,
                "only value_count and value_sum take `field`",
            );
            None
        }
        (None, false) => Some(Vec::new()),
    }
}

/// The counted value of an event for `value_count`: the field's text, or
/// for several fields their texts joined by [`window::FIELD_SEPARATOR`]
/// (a separator inside a text is replaced, so that fields never run into
/// each other); `None` when one is missing.
pub fn value_text(fields: &[FieldPath], event: &TaggerEvent) -> Option<String> {
    match fields {
        [one] => field_text(one, event).map(Cow::into_owned),
        many => {
            let mut joined = String::new();
            for (i, f) in many.iter().enumerate() {
                if i > 0 {
                    joined.push(window::FIELD_SEPARATOR);
                }
                let text = field_text(f, event)?;
                if text.contains(window::FIELD_SEPARATOR) {
                    joined.push_str(&text.replace(window::FIELD_SEPARATOR, "\u{fffd}"));
                } else {
                    joined.push_str(&text);
                }
            }
            Some(joined)
        }
    }
}

/// A duration: `30s`, `5m`, `2h`, `1d`, `500ms`, or a number of seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

fn duration(n: &Node, key: &str, ctx: &mut Ctx) -> Option<i64> {
    let ms = match &n.value {
        Value::Int(i) if *i >= 0 => i.checked_mul(1000),
        Value::Str(s) => parse_duration(s),
        _ => None,
    };
    match ms {
        Some(ms) if ms > 0 || key == "lateness" => Some(ms),
        _ => {
            ctx.error(
                Code::BadValue,
                n.pos,
                format!(
                    "`{key}` must be a duration: `30s`, `5m`, `2h`, `1d` or a number of seconds"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse::LoadOptions;
    use std::path::Path;

    fn parse(text: &str) -> (Option<Correlation>, Vec<String>) {
        let doc = crate::yaml::parse(text).unwrap();
        let mut ctx = Ctx {
            path: Path::new("c.yaml"),
            source: text,
            diags: Vec::new(),
            options: LoadOptions::default(),
        };
        let c = Correlation::parse(doc.get("correlate").unwrap(), &mut ctx);
        let diags = ctx
            .diags
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
            .collect();
        (c, diags)
    }

    #[test]
    fn the_issue_rule_parses() {
        let (c, diags) = parse(
            "correlate:\n  type: event_count\n  match: {all: [{field: success, equals: false}]}\n  \
             group_by: [attacker_uuid]\n  window: 5m\n  condition: {gte: 10}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let c = c.unwrap();
        assert_eq!(c.settings.kind, Kind::EventCount);
        assert_eq!(c.settings.window_ms, 300_000);
        assert_eq!(c.settings.threshold, Some(Threshold::AtLeast(10.0)));
        assert_eq!(c.settings.max_groups, DEFAULT_MAX_GROUPS);
        assert!(matches!(c.select, Select::Match(_)));
    }

    #[test]
    fn mistakes_are_located() {
        let (c, diags) = parse(
            "correlate:\n  type: event_count\n  match: {all: [{field: success, equals: false}]}\n  \
             group_by: [attacker_uuid]\n  window: five minutes\n  condition: {gte: 10}\n",
        );
        assert!(c.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].starts_with("5:11 `window` must be a duration"),
            "{diags:?}"
        );

        let (c, diags) = parse(
            "correlate:\n  type: event_count\n  match: {all: [{field: success, equals: false}]}\n  \
             group_by: [attacker_uuid]\n  window: 5m\n",
        );
        assert!(c.is_none());
        assert!(
            diags[0].contains("needs `condition` with a threshold"),
            "{diags:?}"
        );

        let (c, diags) = parse(
            "correlate:\n  type: sliding\n  rules: [R1]\n  group_by: [attacker_uuid]\n  window: 5m\n",
        );
        assert!(c.is_none());
        assert!(diags[0].starts_with("2:9 `type` must be"), "{diags:?}");

        let (c, diags) = parse(
            "correlate:\n  type: value_count\n  match: {all: [{field: success, equals: false}]}\n  \
             group_by: [attacker_uuid]\n  window: 10m\n  condition: {lt: 3}\n",
        );
        assert!(c.is_none());
        assert!(
            diags.iter().any(|d| d.contains("need `field`")),
            "{diags:?}"
        );
        assert!(
            diags.iter().any(|d| d.contains("`gte` or `gt`")),
            "{diags:?}"
        );
    }

    #[test]
    fn temporal_rules_and_group_keys() {
        let (c, diags) = parse(
            "correlate:\n  type: temporal_ordered\n  rules: [R-RECON, R-DOWNLOAD, R-EXEC]\n  \
             group_by: [session_id, headers.host]\n  window: 1h\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let c = c.unwrap();
        assert_eq!(c.settings.steps, 3);
        let mut ev = TaggerEvent {
            source_kind: "command".into(),
            source_id: "1".into(),
            attacker_uuid: None,
            identity_uuid: None,
            session_id: Some("s1".into()),
            decky_id: None,
            payload: Default::default(),
        };
        assert_eq!(c.group_key(&ev), None, "headers.host is missing");
        ev.payload
            .insert("headers".into(), serde_json::json!({"host": "decky-1"}));
        assert_eq!(c.group_key(&ev).as_deref(), Some("s1|decky-1"));
        ev.session_id = None;
        assert_eq!(c.group_key(&ev), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("30"), Some(30_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2d"), Some(172_800_000));
        assert_eq!(parse_duration("5 minutes"), None);
        assert_eq!(parse_duration("-5m"), None);
        assert_eq!(parse_duration("99999999999999999d"), None);
    }
}
