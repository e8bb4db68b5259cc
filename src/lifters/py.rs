//! Python's view of JSON values, as DECNET's lifters test them (spec, Python
//! semantics table): booleans are integers, `7.0` is not, truthiness, `or`.

use crate::event::Payload;
use crate::pyjson::{int_saturating, int_text, number_f64, py_number, PyNumber};
use serde_json::Value;

/// `isinstance(v, int)`: integers of any size and booleans.
pub fn is_int(v: &Value) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::Number(n) => matches!(py_number(n), PyNumber::Int(_)),
        _ => false,
    }
}

/// The integer value of an `is_int` value, saturated to `i128`: exact for
/// every comparison with a rule's (64-bit) threshold.
pub fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => match py_number(n) {
            PyNumber::Int(t) => Some(int_saturating(t)),
            PyNumber::Float(_) => None,
        },
        _ => None,
    }
}

/// Python's `str()` of an `is_int` value (`True`, `7`, or all 400 digits).
pub fn int_str(v: &Value) -> Option<String> {
    match v {
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => match py_number(n) {
            PyNumber::Int(t) => Some(int_text(t).to_string()),
            PyNumber::Float(_) => None,
        },
        _ => None,
    }
}

/// `isinstance(v, (int, float))`: numbers and booleans.
pub fn is_num(v: &Value) -> bool {
    v.is_number() || v.is_boolean()
}

/// The value of an `is_num` value as a float, for comparisons: an integer
/// too large for a float is ±infinity, which compares with any finite
/// threshold as the exact integer would; NaN compares false with anything.
pub fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Some(number_f64(n)),
        _ => None,
    }
}

/// Python's `float(v)` of an `is_num` value: `None` where Python raises
/// `OverflowError` (an integer beyond the float range).
pub fn float(v: &Value) -> Option<f64> {
    let f = as_num(v)?;
    let int_overflow = matches!(v, Value::Number(n) if matches!(py_number(n), PyNumber::Int(_)))
        && f.is_infinite();
    (!int_overflow).then_some(f)
}

/// Python's `int(v)` of an `is_num` value, as a JSON integer: exact for
/// integers of any size (booleans become 0 or 1), floats truncated toward
/// zero exactly (`int(1e300)` has 301 digits); `None` for NaN and the
/// infinities, where Python raises.
pub fn py_int(v: &Value) -> Option<Value> {
    let text = match v {
        Value::Bool(b) => u8::from(*b).to_string(),
        Value::Number(n) => match py_number(n) {
            PyNumber::Int(t) => int_text(t).to_string(),
            PyNumber::Float(f) if f.is_finite() => float_to_int_text(f.trunc()),
            PyNumber::Float(_) => return None,
        },
        _ => return None,
    };
    serde_json::from_str(&text).ok()
}

/// The exact decimal digits of an integral float.
fn float_to_int_text(f: f64) -> String {
    if f.abs() < 1e38 {
        return (f as i128).to_string();
    }
    // f = mantissa * 2^exp exactly; multiply out in base 10^9.
    let bits = f.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
    let mut limbs: Vec<u64> = vec![
        mantissa % 1_000_000_000,
        mantissa / 1_000_000_000 % 1_000_000_000,
        mantissa / 1_000_000_000_000_000_000,
    ];
    for _ in 0..exp {
        let mut carry = 0;
        for l in limbs.iter_mut() {
            let x = *l * 2 + carry;
            *l = x % 1_000_000_000;
            carry = x / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut out = if f < 0.0 {
        String::from("-")
    } else {
        String::new()
    };
    let mut iter = limbs.iter().rev();
    if let Some(first) = iter.next() {
        out.push_str(&first.to_string());
    }
    for l in iter {
        out.push_str(&format!("{l:09}"));
    }
    out
}

/// Python truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match py_number(n) {
            PyNumber::Int(t) => int_text(t) != "0",
            // NaN is truthy.
            PyNumber::Float(f) => f != 0.0,
        },
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

    #[test]
    fn numbers_of_any_size() {
        let parse = |t: &str| crate::pyjson::parse(t.as_bytes()).unwrap();
        let big = parse("18446744073709551617");
        assert!(is_int(&big));
        assert_eq!(as_int(&big), Some(18446744073709551617));
        assert_eq!(int_str(&big).as_deref(), Some("18446744073709551617"));
        let huge = parse(&"9".repeat(400));
        assert_eq!(as_int(&huge), Some(i128::MAX));
        assert_eq!(
            as_int(&parse(&format!("-{}", "9".repeat(400)))),
            Some(i128::MIN)
        );
        assert_eq!(as_num(&huge), Some(f64::INFINITY));
        assert_eq!(float(&huge), None, "float() of a 400-digit int overflows");
        assert_eq!(float(&parse("1e999")), Some(f64::INFINITY));
        assert!(!is_int(&parse("1e5")) && !is_int(&parse("NaN")) && !is_int(&parse("2.0")));
        assert!(truthy(&parse("NaN")) && !truthy(&parse("-0")) && !truthy(&parse("-0.0")));
        assert!(truthy(&huge));
    }

    #[test]
    fn int_of_numbers_is_exact() {
        let parse = |t: &str| crate::pyjson::parse(t.as_bytes()).unwrap();
        let int = |t: &str| py_int(&parse(t)).map(|v| v.to_string());
        assert_eq!(int("79.9").as_deref(), Some("79"));
        assert_eq!(int("-79.9").as_deref(), Some("-79"));
        assert_eq!(
            int("9223372036854775808").as_deref(),
            Some("9223372036854775808")
        );
        assert_eq!(int("true").as_deref(), Some("1"));
        assert_eq!(int("1e20").as_deref(), Some("100000000000000000000"));
        // Python: int(1e300)
        assert_eq!(
            int("1e300").as_deref(),
            Some("1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160")
        );
        assert_eq!(int("NaN"), None);
        assert_eq!(int("1e999"), None);
    }
}
