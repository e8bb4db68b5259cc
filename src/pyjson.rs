//! JSON as Python's `json` module reads and writes it.
//!
//! DECNET parses events with `json.loads` and stores evidence with
//! `json.dumps`. Both accept more than strict JSON:
//!
//! - integers of any size, kept exactly (`serde_json`'s
//!   `arbitrary_precision` keeps every number as its source text);
//! - `NaN`, `Infinity` and `-Infinity`, and numbers such as `1e999` that
//!   overflow to infinity;
//! - lone UTF-16 surrogate escapes (`"\ud800"`), which a Rust `String`
//!   cannot hold: each is mapped to a code point of the last private-use
//!   block, [`SURROGATE_BASE`]`..`, and mapped back when written. Both are
//!   neither word characters nor whitespace nor cased, so patterns see them
//!   as Python does.
//!
//! [`parse`] tries `serde_json` first (the fast path, for strict JSON) and
//! falls back to a parser of Python's grammar only when that fails.
//! [`dumps`] writes what `json.dumps(value)` writes with its defaults:
//! `", "` and `": "` separators, every non-ASCII character escaped, floats
//! as Python's `repr`.

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// Where lone surrogates U+D800..=U+DFFF are kept: U+10F800..=U+10FFFF
/// (the top 2,048 code points of Supplementary Private Use Area-B).
pub const SURROGATE_BASE: u32 = 0x10_F800;

/// How deep arrays and objects may nest (Python's default recursion limit
/// is about 1,000 frames).
const MAX_DEPTH: usize = 900;

/// The lone surrogate a character stands for, if it stands for one.
pub fn surrogate_of(c: char) -> Option<u32> {
    let c = c as u32;
    (c >= SURROGATE_BASE).then(|| 0xD800 + (c - SURROGATE_BASE))
}

/// Whether a string holds a lone surrogate (see the module notes).
pub fn has_surrogate(s: &str) -> bool {
    // Every mapped character is encoded as F4 8F Bx xx in UTF-8; F4 is
    // rare in text, so a vectorised search for it finds the candidates.
    let b = s.as_bytes();
    memchr::memchr_iter(0xF4, b)
        .any(|i| b.get(i + 1) == Some(&0x8F) && b.get(i + 2).is_some_and(|&c| c >= 0xA0))
}

/// `s.encode("utf-8", errors="replace")`: lone surrogates become `?`.
pub fn utf8_replacing_surrogates(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if !has_surrogate(s) {
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    let mapped: String = s
        .chars()
        .map(|c| if surrogate_of(c).is_some() { '?' } else { c })
        .collect();
    std::borrow::Cow::Owned(mapped.into_bytes())
}

/// Why a line is not JSON, even to Python.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}

/// Parses one JSON document with `json.loads`'s grammar.
pub fn parse(bytes: &[u8]) -> Result<Value, ParseError> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(strict) => {
            let text = std::str::from_utf8(bytes).map_err(|e| ParseError {
                message: "not UTF-8".into(),
                offset: e.valid_up_to(),
            })?;
            let mut p = Parser {
                s: text.as_bytes(),
                pos: 0,
                depth: 0,
            };
            p.document().map_err(|mut e| {
                if e.message.is_empty() {
                    e.message = strict.to_string();
                }
                e
            })
        }
    }
}

/// A number token kept as text (`arbitrary_precision`). The tokens this
/// module creates (`NaN`, `Infinity`, `-Infinity`, and number tokens that
/// passed the grammar) are exactly what `serde_json` would keep for them.
fn number(token: &str) -> Number {
    Number::from_string_unchecked(token.to_string())
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn fail<T>(&self, message: &str) -> Result<T, ParseError> {
        Err(ParseError {
            message: message.to_string(),
            offset: self.pos,
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn document(&mut self) -> Result<Value, ParseError> {
        self.ws();
        let v = self.value()?;
        self.ws();
        if self.pos != self.s.len() {
            return self.fail("extra data after the JSON value");
        }
        Ok(v)
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.s.get(self.pos) {
            None => self.fail("expecting a value"),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b'N') if self.eat("NaN") => Ok(Value::Number(number("NaN"))),
            Some(b'I') if self.eat("Infinity") => Ok(Value::Number(number("Infinity"))),
            Some(b'-') if self.s[self.pos..].starts_with(b"-Infinity") => {
                self.pos += "-Infinity".len();
                Ok(Value::Number(number("-Infinity")))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail("expecting a value"),
        }
    }

    fn nested(
        &mut self,
        f: fn(&mut Self) -> Result<Value, ParseError>,
    ) -> Result<Value, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut map = Map::new();
        self.ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return self.fail("expecting a property name in double quotes");
            }
            let key = self.string()?;
            self.ws();
            if self.s.get(self.pos) != Some(&b':') {
                return self.fail("expecting ':' delimiter");
            }
            self.pos += 1;
            self.ws();
            let v = self.value()?;
            // A repeated key keeps its first position and takes the last
            // value, as a Python dict does.
            map.insert(key, v);
            self.ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return self.fail("expecting ',' delimiter"),
            }
        }
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return self.fail("expecting ',' delimiter"),
            }
        }
    }

    /// Python's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`.
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.s.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - from
        };
        if self.s.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => {
                self.pos = start;
                return self.fail("expecting a value");
            }
        }
        if self.s.get(self.pos) == Some(&b'.')
            && self.s.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            digits(self);
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            let mark = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.s.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = mark;
            }
        }
        let token = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("0");
        Ok(Value::Number(number(token)))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let Some(h) = self.s.get(self.pos..self.pos + 4) else {
            return self.fail("invalid \\uXXXX escape");
        };
        let text = std::str::from_utf8(h).unwrap_or("");
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.fail("invalid \\uXXXX escape");
        }
        let v = u32::from_str_radix(text, 16).unwrap_or(0);
        self.pos += 4;
        Ok(v)
    }

    /// A string, with Python's escapes; control characters must be escaped.
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is valid UTF-8 and the run stops at ASCII bytes.
            out.push_str(std::str::from_utf8(&self.s[run..self.pos]).unwrap_or(""));
            match self.s.get(self.pos) {
                None => return self.fail("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.fail("unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                let mark = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    self.pos = mark;
                                    hi
                                }
                            } else {
                                hi
                            };
                            out.push(char_or_mapped(c));
                        }
                        _ => {
                            self.pos -= 1;
                            return self.fail("invalid escape");
                        }
                    }
                }
                Some(_) => return self.fail("invalid control character in string"),
            }
        }
    }
}

/// A code point as a `char`, lone surrogates mapped (module notes).
fn char_or_mapped(c: u32) -> char {
    let c = if (0xD800..0xE000).contains(&c) {
        SURROGATE_BASE + (c - 0xD800)
    } else {
        c
    };
    char::from_u32(c).unwrap_or('\u{FFFD}')
}

/// How Python reads a number token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PyNumber<'a> {
    /// An `int`: the token, exact whatever its size.
    Int(&'a str),
    /// A `float` (`1.0`, `1e5`, `NaN`, `1e999` = infinity).
    Float(f64),
}

/// Classifies a number token as Python's `json` does: a token with a
/// fraction or an exponent (or a named constant) is a float.
pub fn py_number(n: &Number) -> PyNumber<'_> {
    let t = n.as_str();
    if t.bytes()
        .any(|b| matches!(b, b'.' | b'e' | b'E' | b'N' | b'I'))
    {
        PyNumber::Float(float_token(t))
    } else {
        PyNumber::Int(t)
    }
}

/// The float value of a token (infinite when it overflows, as in Python).
fn float_token(t: &str) -> f64 {
    match t {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => t.parse().unwrap_or(f64::NAN),
    }
}

/// A number as a float for comparisons: exact up to rounding, an integer
/// beyond the float range is ±infinity (so it still compares correctly with
/// any finite value), NaN compares false with everything.
pub fn number_f64(n: &Number) -> f64 {
    match py_number(n) {
        PyNumber::Int(t) => t.parse().unwrap_or(f64::NAN),
        PyNumber::Float(f) => f,
    }
}

/// Numeric equality as Python's `==`: integers exactly, otherwise as floats.
pub fn number_eq(a: &Number, b: &Number) -> bool {
    match (py_number(a), py_number(b)) {
        (PyNumber::Int(x), PyNumber::Int(y)) => int_text(x) == int_text(y),
        _ => number_f64(a) == number_f64(b),
    }
}

/// An integer token's value, saturated to `i128` (exact for every integer
/// a comparison with a rule's threshold can tell apart).
pub fn int_saturating(token: &str) -> i128 {
    token.parse::<i128>().unwrap_or(if token.starts_with('-') {
        i128::MIN
    } else {
        i128::MAX
    })
}

/// Python's `str(int)` of an integer token (`-0` is `0`).
pub fn int_text(token: &str) -> &str {
    if token.starts_with('-') && token[1..].bytes().all(|b| b == b'0') {
        "0"
    } else {
        token
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in [-4, 16), else scientific with
/// a signed two-digit exponent; `nan`/`inf` as `json.dumps` spells them.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len() as i32;
    let decpt = exp + 1;
    let mut out = String::from(sign);
    if (-4 < decpt) && (decpt <= 16) {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    out
}

/// `json.dumps(value)` with Python's defaults.
pub fn dumps(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value);
    out
}

/// `json.dumps` of an object given as its entries (evidence maps).
pub fn dumps_object<'a>(entries: impl IntoIterator<Item = (&'a String, &'a Value)>) -> String {
    let mut out = String::with_capacity(64);
    write_object(&mut out, entries);
    out
}

fn write_object<'a>(out: &mut String, entries: impl IntoIterator<Item = (&'a String, &'a Value)>) {
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, k);
        out.push_str(": ");
        write_value(out, v);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match py_number(n) {
            PyNumber::Int(t) => out.push_str(int_text(t)),
            PyNumber::Float(f) => out.push_str(&float_repr(f)),
        },
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, v);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// A string with `ensure_ascii`: everything outside printable ASCII is a
/// `\uXXXX` escape (astral characters as surrogate pairs).
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                if let Some(s) = surrogate_of(c) {
                    let _ = write!(out, "\\u{s:04x}");
                    continue;
                }
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The vectorised search finds a mapped surrogate exactly where a
        /// scan of every 3-byte window does, at any position.
        #[test]
        fn surrogate_search_equals_a_window_scan(
            text in "[a-z\u{10FFF0}\u{10F800}\u{100000}\u{F4}]{0,40}",
        ) {
            let windows = text
                .as_bytes()
                .windows(3)
                .any(|w| w[0] == 0xF4 && w[1] == 0x8F && w[2] >= 0xA0);
            prop_assert_eq!(has_surrogate(&text), windows);
        }
    }

    fn round(text: &str) -> String {
        dumps(&parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn python_extensions_are_read() {
        assert_eq!(round("NaN"), "NaN");
        assert_eq!(
            round("[Infinity, -Infinity, 1e999, -1e999]"),
            "[Infinity, -Infinity, Infinity, -Infinity]"
        );
        let big = "1".repeat(400);
        assert_eq!(
            round(&format!("{{\"n\": {big}}}")),
            format!("{{\"n\": {big}}}")
        );
        assert_eq!(round("18446744073709551617"), "18446744073709551617");
        assert_eq!(round("-0"), "0");
        assert_eq!(round("\"\\ud800x\\udc00\""), "\"\\ud800x\\udc00\"");
        assert_eq!(round("\"\\ud83d\\ude00\""), "\"\\ud83d\\ude00\"");
        assert_eq!(round("\"\\ud83dA\""), "\"\\ud83dA\"");
        assert!(has_surrogate(
            parse(b"\"\\udfff\"").unwrap().as_str().unwrap()
        ));
        assert!(!has_surrogate("\u{10F7FF} plain"));
    }

    #[test]
    fn what_python_refuses_is_refused() {
        for bad in [
            "nan",
            "inf",
            "+1",
            "01",
            "1.",
            ".5",
            "[1,]",
            "{\"a\" 1}",
            "\"a\u{1}\"",
            "\"\\x\"",
            "[",
            "1 2",
            "\"\\u12\"",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn dumps_is_python_json_dumps() {
        let v =
            parse(br#"{"a": [1, 2.5, "x\u00e9\u0001\"\\/", true, null, {}], "b": []}"#).unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"a": [1, 2.5, "x\u00e9\u0001\"\\/", true, null, {}], "b": []}"#
        );
        assert_eq!(round("\"\u{7f}\u{1F600}\""), "\"\\u007f\\ud83d\\ude00\"");
    }

    #[test]
    fn float_repr_is_python_repr() {
        for (f, s) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (100000.0, "100000.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.8446744073709552e19, "1.8446744073709552e+19"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789.125, "123456789.125"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(float_repr(f), s, "{f:e}");
        }
    }

    proptest! {
        #[test]
        fn float_repr_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = float_repr(f);
            prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits());
        }

        #[test]
        fn strict_and_fallback_parsers_agree(v in proptest::collection::vec(("[a-z\u{e9}\u{1F600}\"\\\\]{0,6}", -1e6f64..1e6, any::<i64>()), 0..4)) {
            let mut text = String::from("[");
            for (i, (s, f, n)) in v.iter().enumerate() {
                if i > 0 { text.push(','); }
                text.push_str(&format!("{},{},{}", serde_json::to_string(s).unwrap(), f, n));
            }
            text.push(']');
            let strict: Value = serde_json::from_str(&text).unwrap();
            let mut p = Parser { s: text.as_bytes(), pos: 0, depth: 0 };
            let ours = p.document().unwrap();
            prop_assert_eq!(dumps(&strict), dumps(&ours));
        }
    }
}
