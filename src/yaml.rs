//! A YAML document as a tree of located nodes.
//!
//! Rule files are parsed once into [`Node`]s that remember the line and column
//! they came from, so every later check (schema, regex, ATT&CK ids) can point
//! at the exact spot in the file. Parsing is done by `serde-saphyr`, which
//! rejects duplicate keys and enforces input budgets.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A 1-based line and column inside a source file. `0:0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// The value held by a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers outside `i64` (YAML allows them; they are kept exact).
    BigInt(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML value with the position it was defined at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    /// Looks up a string key in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::BigInt(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts the node into JSON (used to hand `match` parameters and
    /// examples to code that works on JSON payloads).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::BigInt(i) => serde_json::Number::from_i128(*i)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let key = match &k.value {
                        Value::Str(s) => s.clone(),
                        _ => k.to_json().to_string(),
                    };
                    map.insert(key, v.to_json());
                }
                J::Object(map)
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::BigInt(i128::from(v))))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::BigInt(v)))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(|v| self.visit_i128(v))
            .unwrap_or_else(|_| Err(E::custom("integer too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(Node {
            value: spanned.value,
            pos: Pos {
                line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
                col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            },
        })
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Most bytes a rule file may hold; larger files are rejected before parsing.
pub const MAX_RULE_FILE_BYTES: usize = 1 << 20;

/// Parses one YAML document into a located node tree.
///
/// Duplicate keys are an error (PyYAML silently keeps the last one, which
/// hides editing mistakes). More than one document is an error. An empty
/// document parses as a `Null` node.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
    };
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::Error;
    let docs: Result<Vec<Option<Node>>, _> =
        serde_saphyr::from_str_multiple_with_options(text, options);
    match docs {
        Ok(docs) => {
            let mut docs = docs.into_iter();
            let first = docs.next().flatten();
            if let Some(second) = docs.next() {
                let pos = second.map(|n| n.pos).unwrap_or(Pos::UNKNOWN);
                return Err(SyntaxError {
                    pos,
                    message: "a rule file must hold exactly one YAML document".into(),
                });
            }
            Ok(first.unwrap_or(Node {
                value: Value::Null,
                pos: Pos { line: 1, col: 1 },
            }))
        }
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                    col: u32::try_from(l.column()).unwrap_or(u32::MAX),
                })
                .unwrap_or(Pos::UNKNOWN);
            let message = e.to_string();
            // Keep the first line, without serde-saphyr's own "at line X,
            // column Y" (the position is reported separately).
            let mut message = message.lines().next().unwrap_or("invalid YAML").to_string();
            if let Some(i) = message.rfind(" at line ") {
                if message[i..].contains("column") {
                    message.truncate(i);
                }
            }
            Err(SyntaxError {
                pos,
                message: in_our_words(message),
            })
        }
    }
}

/// The YAML library's messages that name its own options, said as a rule
/// author needs to hear them.
fn in_our_words(message: String) -> String {
    match message.strip_prefix("duplicate mapping key: ") {
        Some(rest) => {
            let key = rest.split(',').next().unwrap_or(rest).trim();
            format!(
                "`{key}` appears twice in this mapping; keep one of them (DECNET's YAML \
                 reader would silently use the last)"
            )
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_positions() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(b.pos.line, 3);
        match &b.value {
            Value::Seq(items) => {
                assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
                assert_eq!(items[1].get("c").unwrap().value, Value::Bool(true));
                assert_eq!(items[1].get("c").unwrap().pos.line, 4);
            }
            other => panic!("expected a list, got {other:?}"),
        }
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 1, col: 4 });
    }

    #[test]
    fn duplicate_keys_are_rejected_with_a_position() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert!(e.message.contains("`a` appears twice"), "{e:?}");
        assert!(!e.message.contains("DuplicateKeyPolicy"), "{e:?}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
    }

    #[test]
    fn two_documents_are_rejected() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().value, Value::Null);
    }

    #[test]
    fn only_core_booleans_and_quoted_strings() {
        let n = parse("a: yes\nb: 'yes'\nc: 0.9\nd: \"0.9\"\ne: n\nf: true\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Str("n".into()));
        assert_eq!(n.get("f").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("b").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Float(0.9));
        assert_eq!(n.get("d").unwrap().value, Value::Str("0.9".into()));
    }
}
