//! Python's view of JSON values, as DECNET's lifters test them (spec, Python
//! semantics table): booleans are integers, `7.0` is not, truthiness, `or`.

use crate::event::Payload;
use serde_json::Value;

/// `isinstance(v, int)`: integers and booleans.
pub fn is_int(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.is_boolean()
}

/// The integer value of an `is_int` value.
pub fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

/// `isinstance(v, (int, float))`: numbers and booleans.
pub fn is_num(v: &Value) -> bool {
    v.is_number() || v.is_boolean()
}

/// The float value of an `is_num` value.
pub fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Python truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `payload.get(k)`: an absent key and `null` are both `None`.
pub fn get<'a>(p: &'a Payload, k: &str) -> &'a Value {
    const NULL: Value = Value::Null;
    p.get(k).unwrap_or(&NULL)
}

/// `payload.get(a) or payload.get(b)`: the first truthy operand, else the last.
pub fn or<'a>(a: &'a Value, b: &'a Value) -> &'a Value {
    if truthy(a) {
        a
    } else {
        b
    }
}

/// `v is True`.
pub fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// `v is False`.
pub fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false))
}

/// A non-empty string.
pub fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_semantics() {
        assert!(is_int(&json!(true)));
        assert!(is_int(&json!(7)));
        assert!(!is_int(&json!(7.0)));
        assert_eq!(as_int(&json!(true)), Some(1));
        assert!(is_num(&json!(false)));
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        assert!(truthy(&json!("0")));
        let p = json!({"a": "", "b": "x", "n": null});
        let p = &crate::event::payload(p).unwrap();
        assert_eq!(or(get(p, "a"), get(p, "b")), &json!("x"));
        assert_eq!(or(get(p, "a"), get(p, "zz")), &Value::Null);
        assert_eq!(get(p, "n"), &Value::Null);
        assert!(is_true(&json!(true)) && !is_true(&json!(1)));
    }
}
