//! The declarative match form: conditions on payload fields, combined with
//! `all` / `any` / `not`. See `docs/rules.md` for the language.

use super::parse::Ctx;
use crate::diag::Code;
use crate::event::Payload;
use crate::literals;
use crate::pyjson::{number_eq, number_f64};
use crate::pyregex::{PyRegex, SearchAbandoned};
use crate::yaml::{Node, Value};
use ipnet::IpNet;
use serde_json::Value as Json;
use std::net::IpAddr;

/// A payload field addressed by a path of object keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// A single key, taken literally (DECNET's `match.field`).
    pub fn key(k: &str) -> FieldPath {
        FieldPath(vec![k.to_string()])
    }

    /// A dotted path: `headers.user-agent`.
    pub fn dotted(p: &str) -> FieldPath {
        FieldPath(p.split('.').map(String::from).collect())
    }

    /// The value at this path (a `*` segment is not special here).
    pub fn lookup<'a>(&self, payload: &'a Payload) -> Option<&'a Json> {
        let (first, rest) = self.0.split_first()?;
        let mut cur = payload.get(first)?;
        for seg in rest {
            cur = cur.as_object()?.get(seg)?;
        }
        Some(cur)
    }

    /// Every value at this path, where a `*` segment stands for every value
    /// of an object (or element of a list): `headers.*` is every header.
    pub fn lookup_all<'a>(&self, payload: &'a Payload, out: &mut Vec<&'a Json>) {
        fn walk<'a>(cur: &'a Json, rest: &[String], out: &mut Vec<&'a Json>) {
            let Some((seg, rest)) = rest.split_first() else {
                out.push(cur);
                return;
            };
            match (seg.as_str(), cur) {
                ("*", Json::Object(m)) => m.values().for_each(|v| walk(v, rest, out)),
                ("*", Json::Array(a)) => a.iter().for_each(|v| walk(v, rest, out)),
                (_, Json::Object(m)) => {
                    if let Some(v) = m.get(seg) {
                        walk(v, rest, out)
                    }
                }
                _ => {}
            }
        }
        let Some((first, rest)) = self.0.split_first() else {
            return;
        };
        if first == "*" {
            payload.values().for_each(|v| walk(v, rest, out));
        } else if let Some(v) = payload.get(first) {
            walk(v, rest, out);
        }
    }

    /// Whether the path has a `*` segment.
    pub fn has_wildcard(&self) -> bool {
        self.0.iter().any(|s| s == "*")
    }

    pub fn display(&self) -> String {
        self.0.join(".")
    }
}

#[derive(Debug)]
pub enum Op {
    Regex(Vec<PyRegex>),
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    /// `equals` (one value or any of a list) and `in` (a list).
    Equals(Vec<Json>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
    Cidr(Vec<IpNet>),
}

#[derive(Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Test {
        field: FieldPath,
        op: Op,
        nocase: bool,
    },
}

const OPERATORS: [&str; 13] = [
    "regex",
    "contains",
    "startswith",
    "endswith",
    "equals",
    "in",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "cidr",
    "nocase",
];

/// Keys that make a mapping a declarative condition.
pub fn looks_declarative(node: &Node) -> bool {
    ["all", "any", "not"]
        .iter()
        .chain(OPERATORS.iter())
        .any(|k| node.get(k).is_some())
}

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// `fold(s)`, without allocating when `s` is already folded ASCII.
fn folded(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(fold(s))
    }
}

impl Condition {
    /// Parses a condition mapping. `ignore` lists keys the caller handles
    /// (e.g. `kind` at the top of `match`).
    pub fn parse(node: &Node, ctx: &mut Ctx, ignore: &[&str]) -> Option<Condition> {
        let Value::Map(entries) = &node.value else {
            ctx.error(
                Code::BadCondition,
                node.pos,
                format!("a condition must be a mapping, found {}", node.type_name()),
            );
            return None;
        };
        let keys: Vec<(&str, &Node, &Node)> = entries
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|s| (s, k, v)))
            .filter(|(k, _, _)| !ignore.contains(k))
            .collect();
        for (k, _) in entries {
            if k.as_str().is_none() {
                ctx.error(Code::BadCondition, k.pos, "condition keys must be strings");
                return None;
            }
        }
        let combinators: Vec<_> = keys
            .iter()
            .filter(|(k, _, _)| matches!(*k, "all" | "any" | "not"))
            .collect();
        if let Some((name, key, value)) = combinators.first() {
            if keys.len() != 1 {
                ctx.error(
                    Code::BadCondition,
                    key.pos,
                    format!("`{name}` must be the only key of its mapping"),
                );
                return None;
            }
            return match *name {
                "not" => Condition::parse(value, ctx, &[]).map(|c| Condition::Not(Box::new(c))),
                _ => {
                    let Value::Seq(items) = &value.value else {
                        ctx.error(
                            Code::BadCondition,
                            value.pos,
                            format!("`{name}` takes a list of conditions"),
                        );
                        return None;
                    };
                    if items.is_empty() {
                        ctx.error(
                            Code::BadCondition,
                            value.pos,
                            format!("`{name}` needs at least one condition"),
                        );
                        return None;
                    }
                    let mut subs = Vec::new();
                    for item in items {
                        subs.push(Condition::parse(item, ctx, &[])?);
                    }
                    Some(if *name == "all" {
                        Condition::All(subs)
                    } else {
                        Condition::Any(subs)
                    })
                }
            };
        }
        Self::parse_test(node, &keys, ctx)
    }

    fn parse_test(node: &Node, keys: &[(&str, &Node, &Node)], ctx: &mut Ctx) -> Option<Condition> {
        let mut field = None;
        let mut nocase = false;
        let mut op_entry = None;
        for (k, key, value) in keys {
            match *k {
                "field" => match value.as_str() {
                    Some(s) if !s.is_empty() => field = Some(FieldPath::dotted(s)),
                    _ => {
                        ctx.error(
                            Code::BadCondition,
                            value.pos,
                            "`field` must be a non-empty string",
                        );
                        return None;
                    }
                },
                "nocase" => match value.value {
                    Value::Bool(b) => nocase = b,
                    _ => {
                        ctx.error(
                            Code::BadCondition,
                            value.pos,
                            "`nocase` must be true or false",
                        );
                        return None;
                    }
                },
                op if OPERATORS.contains(&op) => {
                    if op_entry.is_some() {
                        ctx.error(
                            Code::BadCondition,
                            key.pos,
                            "a condition takes exactly one operator; combine several with `all`",
                        );
                        return None;
                    }
                    op_entry = Some((op, *value));
                }
                other => {
                    ctx.error(
                        Code::BadCondition,
                        key.pos,
                        format!(
                            "unknown key `{other}` in a condition (expected `field`, an operator \
                             ({}), `nocase`, or one of `all`/`any`/`not`)",
                            OPERATORS[..12].join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
        let Some(field) = field else {
            ctx.error(Code::BadCondition, node.pos, "a condition needs a `field`");
            return None;
        };
        let Some((op, value)) = op_entry else {
            ctx.error(
                Code::BadCondition,
                node.pos,
                format!("the condition on `{}` has no operator", field.display()),
            );
            return None;
        };
        let op = parse_op(op, value, nocase, ctx)?;
        Some(Condition::Test { field, op, nocase })
    }

    /// Evaluates the condition on a payload.
    pub fn eval(&self, payload: &Payload) -> Result<bool, SearchAbandoned> {
        match self {
            Condition::All(subs) => {
                for s in subs {
                    if !s.eval(payload)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Any(subs) => {
                for s in subs {
                    if s.eval(payload)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(sub) => Ok(!sub.eval(payload)?),
            Condition::Test { field, op, nocase } => {
                // Without a `*` the path has one value at most: no list of
                // them to gather (this runs per rule and event).
                if !field.has_wildcard() {
                    let value = field.lookup(payload);
                    return match op {
                        Op::Exists(want) => Ok(value.is_some() == *want),
                        _ => value.map_or(Ok(false), |v| test_found(op, *nocase, v)),
                    };
                }
                let mut values = Vec::new();
                field.lookup_all(payload, &mut values);
                if let Op::Exists(want) = op {
                    return Ok(values.is_empty() != *want);
                }
                for value in values {
                    if test_found(op, *nocase, value)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// `(field, literal)` pairs one of which must occur (in the field's
    /// ASCII-lowercased text) for the condition to hold; `None` when the
    /// condition can hold without any.
    pub fn required(&self) -> Option<Vec<(FieldPath, Vec<u8>)>> {
        match self {
            Condition::All(subs) => {
                let mut best: Option<Vec<(FieldPath, Vec<u8>)>> = None;
                for s in subs {
                    if let Some(r) = s.required() {
                        let min = |v: &Vec<(FieldPath, Vec<u8>)>| {
                            v.iter().map(|(_, l)| l.len()).min().unwrap_or(0)
                        };
                        if best.as_ref().is_none_or(|b| min(&r) > min(b)) {
                            best = Some(r);
                        }
                    }
                }
                best
            }
            Condition::Any(subs) => {
                let mut all = Vec::new();
                for s in subs {
                    all.extend(s.required()?);
                }
                Some(all)
            }
            Condition::Not(_) => None,
            Condition::Test { field, op, nocase } => {
                let lits: Vec<Vec<u8>> = match op {
                    Op::Regex(res) => {
                        let mut out = Vec::new();
                        for r in res {
                            out.extend(literals::required_literals(r.superset_pattern())?);
                        }
                        out
                    }
                    Op::Contains(v) | Op::StartsWith(v) | Op::EndsWith(v) => v
                        .iter()
                        .map(|s| literals::string_literal(s, *nocase))
                        .collect::<Option<_>>()?,
                    Op::Equals(vals) => vals
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .and_then(|s| literals::string_literal(s, *nocase))
                        })
                        .collect::<Option<_>>()?,
                    _ => return None,
                };
                Some(lits.into_iter().map(|l| (field.clone(), l)).collect())
            }
        }
    }

    /// Every regex in the condition (for `ttp check`'s engine report).
    pub fn regexes(&self) -> Vec<&PyRegex> {
        match self {
            Condition::All(s) | Condition::Any(s) => s.iter().flat_map(|c| c.regexes()).collect(),
            Condition::Not(c) => c.regexes(),
            Condition::Test {
                op: Op::Regex(r), ..
            } => r.iter().collect(),
            Condition::Test { .. } => Vec::new(),
        }
    }
}

/// Whether a payload value equals a rule's value, case-sensitively (see
/// `Op::Equals` in `test_value` for the folded comparison).
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x == y,
        (Json::Number(x), Json::Number(y)) => number_eq(x, y),
        _ => a == b,
    }
}

/// Whether a value found at a test's path passes it: the value itself or,
/// for a list, any of its items.
fn test_found(op: &Op, nocase: bool, value: &Json) -> Result<bool, SearchAbandoned> {
    match value {
        Json::Array(items) => {
            for item in items {
                if test_value(op, nocase, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        v => test_value(op, nocase, v),
    }
}

fn test_value(op: &Op, nocase: bool, v: &Json) -> Result<bool, SearchAbandoned> {
    let text = |f: &dyn Fn(&str, &str) -> bool, needles: &[String]| -> bool {
        let Some(s) = v.as_str() else {
            return false;
        };
        if nocase {
            let hay = folded(s);
            needles.iter().any(|n| f(&hay, n))
        } else {
            needles.iter().any(|n| f(s, n))
        }
    };
    let num = |f: &dyn Fn(f64) -> bool| matches!(v, Json::Number(n) if f(number_f64(n)));
    Ok(match op {
        Op::Regex(res) => {
            let Some(s) = v.as_str() else {
                return Ok(false);
            };
            for r in res {
                if r.is_match(s)? {
                    return Ok(true);
                }
            }
            false
        }
        Op::Contains(n) => text(&|h, n| h.contains(n), n),
        Op::StartsWith(n) => text(&|h, n| h.starts_with(n), n),
        Op::EndsWith(n) => text(&|h, n| h.ends_with(n), n),
        Op::Equals(vals) => match (v, nocase) {
            // Fold the value once, not once per candidate.
            (Json::String(s), true) => {
                let s = folded(s);
                vals.iter().any(|x| x.as_str() == Some(&*s))
            }
            _ => vals.iter().any(|x| json_eq(v, x)),
        },
        Op::Gt(x) => num(&|n| n > *x),
        Op::Gte(x) => num(&|n| n >= *x),
        Op::Lt(x) => num(&|n| n < *x),
        Op::Lte(x) => num(&|n| n <= *x),
        Op::Exists(_) => true,
        Op::Cidr(nets) => v
            .as_str()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
    })
}

fn strings(value: &Node, op: &str, ctx: &mut Ctx) -> Option<Vec<(String, crate::yaml::Pos)>> {
    match &value.value {
        Value::Str(s) => Some(vec![(s.clone(), value.pos)]),
        Value::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i.as_str() {
                Some(s) => Some((s.to_string(), i.pos)),
                None => {
                    ctx.error(
                        Code::BadCondition,
                        i.pos,
                        format!("`{op}` takes strings, found {}", i.type_name()),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            ctx.error(
                Code::BadCondition,
                value.pos,
                format!("`{op}` takes a string or a non-empty list of strings"),
            );
            None
        }
    }
}

/// A scalar to compare with; strings are folded when the comparison
/// ignores case (the value is folded at match time).
fn scalar(node: &Node, op: &str, nocase: bool, ctx: &mut Ctx) -> Option<Json> {
    match &node.value {
        Value::Seq(_) | Value::Map(_) => {
            ctx.error(
                Code::BadCondition,
                node.pos,
                format!("`{op}` compares with scalars (string, number, boolean, null)"),
            );
            None
        }
        Value::Str(s) if nocase => Some(Json::String(fold(s))),
        _ => Some(node.to_json()),
    }
}

fn parse_op(op: &str, value: &Node, nocase: bool, ctx: &mut Ctx) -> Option<Op> {
    let number = |ctx: &mut Ctx| match value.value {
        Value::Int(i) => Some(i as f64),
        Value::BigInt(i) => Some(i as f64),
        Value::Float(f) if f.is_finite() => Some(f),
        _ => {
            ctx.error(
                Code::BadCondition,
                value.pos,
                format!("`{op}` takes a number"),
            );
            None
        }
    };
    Some(match op {
        "regex" => {
            let mut res = Vec::new();
            for (p, pos) in strings(value, op, ctx)? {
                let src = if nocase { format!("(?i){p}") } else { p };
                res.push(ctx.regex(&src, pos)?);
            }
            Op::Regex(res)
        }
        "contains" | "startswith" | "endswith" => {
            let vals: Vec<String> = strings(value, op, ctx)?
                .into_iter()
                .map(|(s, _)| if nocase { fold(&s) } else { s })
                .collect();
            match op {
                "contains" => Op::Contains(vals),
                "startswith" => Op::StartsWith(vals),
                _ => Op::EndsWith(vals),
            }
        }
        "equals" => match &value.value {
            Value::Seq(items) if !items.is_empty() => Op::Equals(
                items
                    .iter()
                    .map(|i| scalar(i, op, nocase, ctx))
                    .collect::<Option<_>>()?,
            ),
            _ => Op::Equals(vec![scalar(value, op, nocase, ctx)?]),
        },
        "in" => match &value.value {
            Value::Seq(items) if !items.is_empty() => Op::Equals(
                items
                    .iter()
                    .map(|i| scalar(i, op, nocase, ctx))
                    .collect::<Option<_>>()?,
            ),
            _ => {
                ctx.error(
                    Code::BadCondition,
                    value.pos,
                    "`in` takes a non-empty list of values",
                );
                return None;
            }
        },
        "gt" => Op::Gt(number(ctx)?),
        "gte" => Op::Gte(number(ctx)?),
        "lt" => Op::Lt(number(ctx)?),
        "lte" => Op::Lte(number(ctx)?),
        "exists" => match value.value {
            Value::Bool(b) => Op::Exists(b),
            _ => {
                ctx.error(
                    Code::BadCondition,
                    value.pos,
                    "`exists` takes true or false",
                );
                return None;
            }
        },
        "cidr" => {
            let mut nets = Vec::new();
            for (s, pos) in strings(value, op, ctx)? {
                let parsed = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(n) => nets.push(n),
                    Err(_) => {
                        ctx.error(
                            Code::BadCondition,
                            pos,
                            format!("`{s}` is not a CIDR block (e.g. 10.0.0.0/8 or fe80::/10)"),
                        );
                        return None;
                    }
                }
            }
            Op::Cidr(nets)
        }
        _ => {
            ctx.error(
                Code::BadCondition,
                value.pos,
                format!("unknown operator `{op}`"),
            );
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse::{Ctx, LoadOptions};
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::Path;

    fn cond(yaml: &str) -> Condition {
        let node = crate::yaml::parse(yaml).unwrap();
        let mut ctx = Ctx {
            path: Path::new("t.yaml"),
            source: yaml,
            diags: Vec::new(),
            options: LoadOptions::default(),
        };
        let c = Condition::parse(&node, &mut ctx, &[]);
        assert!(ctx.diags.is_empty(), "{:?}", ctx.diags);
        c.unwrap()
    }

    fn eval(c: &Condition, p: Json) -> bool {
        c.eval(&crate::event::payload(p).unwrap()).unwrap()
    }

    #[test]
    fn wildcard_paths_search_every_value() {
        let c = cond("{field: 'headers.*', regex: '\\$\\{jndi:', nocase: true}");
        assert!(eval(
            &c,
            json!({"headers": {"X-Api": "${JNDI:ldap://x}", "Accept": "*/*"}})
        ));
        assert!(!eval(&c, json!({"headers": {"Accept": "*/*"}})));
        assert!(!eval(&c, json!({"headers": "${jndi:"})));
        let e = cond("{field: 'headers.*', exists: true}");
        assert!(!eval(&e, json!({"headers": {}})));
        assert!(eval(&e, json!({"headers": {"a": null}})));
    }

    #[test]
    fn lists_match_any_element_and_numbers_compare() {
        let c = cond("{field: urls, startswith: 'https://xn--'}");
        assert!(eval(
            &c,
            json!({"urls": ["http://a", "https://xn--pypal-4ve.com/"]})
        ));
        let n = cond("{all: [{field: n, gte: 10}, {field: n, lt: 20.5}]}");
        assert!(eval(&n, json!({"n": 10})));
        assert!(eval(&n, json!({"n": 20.4})));
        assert!(
            !eval(&n, json!({"n": true})),
            "booleans are not numbers here"
        );
        assert!(!eval(&n, json!({"n": "15"})));
        let cidr = cond("{field: ip, cidr: [10.0.0.0/8, 'fe80::/10']}");
        assert!(eval(&cidr, json!({"ip": "10.1.2.3"})));
        assert!(eval(&cidr, json!({"ip": "FE80::1"})));
        assert!(!eval(&cidr, json!({"ip": "11.0.0.1"})));
        let eq = cond("{field: user, in: [root, admin], nocase: true}");
        assert!(eval(&eq, json!({"user": "ROOT"})));
        assert!(eval(&eq, json!({"user": "admin"})));
        assert!(!eval(&eq, json!({"user": "rooT2"})));
        // Rule values are folded too, and non-ASCII text is folded fully.
        let eq = cond("{field: user, equals: [ÉTÉ, Admin, 7], nocase: true}");
        assert!(eval(&eq, json!({"user": "été"})));
        assert!(eval(&eq, json!({"user": "ÉtÉ"})));
        assert!(eval(&eq, json!({"user": "ADMIN"})));
        assert!(eval(&eq, json!({"user": 7})));
        assert!(!eval(&eq, json!({"user": "7"})));
        let exact = cond("{field: user, equals: Admin}");
        assert!(!eval(&exact, json!({"user": "admin"})));
        assert!(eval(&exact, json!({"user": "Admin"})));
        let ex = cond("{not: {field: x, exists: true}}");
        assert!(eval(&ex, json!({})));
        assert!(!eval(&ex, json!({"x": null})));
    }

    /// A test's result the way it was computed before paths without a `*`
    /// took their one value directly: every value gathered, then tested.
    fn gathered(c: &Condition, payload: &Payload) -> bool {
        let Condition::Test { field, op, nocase } = c else {
            unreachable!("the property below makes tests only");
        };
        let mut values = Vec::new();
        field.lookup_all(payload, &mut values);
        if let Op::Exists(want) = op {
            return values.is_empty() != *want;
        }
        values
            .into_iter()
            .any(|v| test_found(op, *nocase, v).unwrap())
    }

    fn value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            (-3i64..20).prop_map(Json::from),
            prop::sample::select(vec!["a", "A", "ab", "7", "x.y"]).prop_map(Json::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "n"]).prop_map(String::from),
                    inner,
                    0..4
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Cheap cases; enough of them that a list at the path is met.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// A path without a `*` tests its one value exactly as the
        /// gathering of every value did.
        #[test]
        fn one_value_paths_test_as_gathered(
            payload in prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "n"]).prop_map(String::from),
                value(),
                0..4,
            ),
            path in prop::sample::select(vec!["a", "n", "a.b", "b.n", "a.a.n", "x"]),
            test in prop::sample::select(vec![
                "equals: 7", "equals: a", "equals: [a, 3]", "contains: a",
                "gte: 5", "exists: true", "exists: false", "startswith: A",
            ]),
            nocase in any::<bool>(),
        ) {
            let c = cond(&format!("{{field: '{path}', {test}, nocase: {nocase}}}"));
            let payload = crate::event::payload(Json::Object(payload.into_iter().collect())).unwrap();
            prop_assert_eq!(c.eval(&payload).unwrap(), gathered(&c, &payload));
        }
    }
}
