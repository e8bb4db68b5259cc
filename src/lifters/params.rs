//! Typed lifter parameters, read from a rule's `match` mapping at load time.
//! A parameter of the wrong type is a located error (`E017`), never a silent
//! no-match at run time.

use crate::diag::Code;
use crate::pyregex::PyRegex;
use crate::rule::parse::Ctx;
use crate::yaml::{Node, Value};

fn bad(ctx: &mut Ctx, n: &Node, key: &str, want: &str) {
    ctx.error(
        Code::BadLifterParam,
        n.pos,
        format!("`match.{key}` must be {want}, found {}", n.type_name()),
    );
}

/// A number, read like Python's `float()` (integers, floats, numeric strings).
pub fn float(m: &Node, key: &str, default: f64, ctx: &mut Ctx) -> Option<f64> {
    let Some(n) = m.get(key) else {
        return Some(default);
    };
    let v = match &n.value {
        Value::Int(i) => Some(*i as f64),
        Value::BigInt(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if v.is_none() {
        bad(ctx, n, key, "a number");
    }
    v
}

/// An integer, read like Python's `int()` (integral values and strings).
pub fn int(m: &Node, key: &str, default: i64, ctx: &mut Ctx) -> Option<i64> {
    let Some(n) = m.get(key) else {
        return Some(default);
    };
    let v = match &n.value {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        Value::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if v.is_none() {
        bad(ctx, n, key, "an integer");
    }
    v
}

/// `true` or `false`.
pub fn boolean(m: &Node, key: &str, default: bool, ctx: &mut Ctx) -> Option<bool> {
    let Some(n) = m.get(key) else {
        return Some(default);
    };
    match n.value {
        Value::Bool(b) => Some(b),
        Value::Null => Some(false),
        _ => {
            bad(ctx, n, key, "true or false");
            None
        }
    }
}

/// A list of strings (absent: empty).
pub fn strings(m: &Node, key: &str, ctx: &mut Ctx) -> Option<Vec<String>> {
    let Some(n) = m.get(key) else {
        return Some(Vec::new());
    };
    let Value::Seq(items) = &n.value else {
        if n.value == Value::Null {
            return Some(Vec::new());
        }
        bad(ctx, n, key, "a list of strings");
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                bad(ctx, item, key, "a list of strings");
                return None;
            }
        }
    }
    Some(out)
}

/// A list of Python regexes, each compiled (a bad one is an error at its item).
pub fn regexes(m: &Node, key: &str, ctx: &mut Ctx) -> Option<Vec<PyRegex>> {
    let Some(n) = m.get(key) else {
        return Some(Vec::new());
    };
    let Value::Seq(items) = &n.value else {
        bad(ctx, n, key, "a list of regexes");
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let Some(s) = item.as_str() else {
            bad(ctx, item, key, "a list of regexes");
            return None;
        };
        out.push(ctx.regex(s, item.pos)?);
    }
    Some(out)
}

/// A list of `[user, password]` pairs of strings.
pub fn pairs(m: &Node, key: &str, ctx: &mut Ctx) -> Option<Vec<(String, String)>> {
    let Some(n) = m.get(key) else {
        return Some(Vec::new());
    };
    let Value::Seq(items) = &n.value else {
        bad(ctx, n, key, "a list of [user, password] pairs");
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Seq(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(u), Some(pw)) => out.push((u.to_string(), pw.to_string())),
                _ => {
                    bad(ctx, item, key, "a list of [user, password] string pairs");
                    return None;
                }
            },
            _ => {
                bad(ctx, item, key, "a list of [user, password] pairs");
                return None;
            }
        }
    }
    Some(out)
}
