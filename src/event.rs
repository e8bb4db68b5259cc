//! Events in: the `TaggerEvent` shape (spec §1), read from JSON lines.
//!
//! A bad line never stops a run: it is rejected with a [`Reject`] reason and
//! the reader moves on. Lines longer than [`MAX_LINE_BYTES`] are skipped
//! without being held in memory whole.

use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, BufRead};

/// Longest accepted line (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// An event's payload: its fields in document order. Every rule and lifter
/// looks fields up here, so it uses a fast hasher (`foldhash`, seeded per
/// process) instead of the SipHash of `serde_json::Map`; nested objects stay
/// `serde_json` values.
pub type Payload = indexmap::IndexMap<String, Value, foldhash::fast::RandomState>;

/// The payload of a JSON object (`None` for any other value).
pub fn payload(value: Value) -> Option<Payload> {
    match value {
        Value::Object(map) => Some(map.into_iter().collect()),
        _ => None,
    }
}

/// One event to tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggerEvent {
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub identity_uuid: Option<String>,
    pub session_id: Option<String>,
    pub decky_id: Option<String>,
    pub payload: Payload,
}

/// Why a line was rejected. The names are stable (they appear in summaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    InvalidJson,
    NotAnObject,
    SourceKind,
    SourceId,
    Payload,
    NoAnchor,
    FieldType,
    TooLong,
}

impl Reject {
    pub fn name(self) -> &'static str {
        match self {
            Reject::InvalidJson => "invalid_json",
            Reject::NotAnObject => "not_an_object",
            Reject::SourceKind => "bad_source_kind",
            Reject::SourceId => "bad_source_id",
            Reject::Payload => "bad_payload",
            Reject::NoAnchor => "no_anchor",
            Reject::FieldType => "bad_field_type",
            Reject::TooLong => "line_too_long",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rejected line: its number, the reason and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub reason: Reject,
    pub message: String,
}

/// An anchor, `session_id` or `decky_id` as DECNET stores it: the column
/// has TEXT affinity, so SQLite turns a number into its text (`5` → `"5"`,
/// `true` → `"1"`, `2.5` → `"2.5"`, NaN → NULL). What DECNET's insert cannot
/// bind (arrays, objects, integers beyond 64 bits, lone surrogates) is
/// refused.
fn stored_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if crate::pyjson::has_surrogate(s) {
                return Err(format!(
                    "`{key}` holds a lone UTF-16 surrogate, which cannot be stored as UTF-8"
                ));
            }
            Ok(Some(s.clone()))
        }
        Some(Value::Bool(b)) => Ok(Some(u8::from(*b).to_string())),
        Some(Value::Number(n)) => match crate::pyjson::py_number(n) {
            crate::pyjson::PyNumber::Int(t) => match t.parse::<i64>() {
                Ok(i) => Ok(Some(i.to_string())),
                Err(_) => Err(format!(
                    "`{key}` is an integer outside SQLite's 64-bit range"
                )),
            },
            crate::pyjson::PyNumber::Float(f) => Ok(sqlite_real_text(f)),
        },
        Some(other) => Err(format!(
            "`{key}` must be a string, a number, a boolean or null, found {}",
            kind(other)
        )),
    }
}

/// The text SQLite makes of a REAL stored in a TEXT column (`NULL` for NaN),
/// asked of SQLite itself so that it is exactly what the insert would store.
fn sqlite_real_text(f: f64) -> Option<String> {
    thread_local! {
        static CONN: Option<rusqlite::Connection> = rusqlite::Connection::open_in_memory().ok();
    }
    CONN.with(|conn| {
        conn.as_ref()?
            .query_row("SELECT CAST(?1 AS TEXT)", [f], |r| {
                r.get::<_, Option<String>>(0)
            })
            .ok()
            .flatten()
    })
}

/// `source_kind` and `source_id`: strings DECNET can hash and store.
fn required_string(
    obj: &Map<String, Value>,
    key: &str,
    reason: Reject,
) -> Result<String, (Reject, String)> {
    match obj.get(key) {
        Some(Value::String(s)) if crate::pyjson::has_surrogate(s) => Err((
            reason,
            format!("`{key}` holds a lone UTF-16 surrogate, which cannot be encoded as UTF-8"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        None => Err((reason, format!("missing `{key}`"))),
        Some(v) => Err((
            reason,
            format!("`{key}` must be a string, found {}", kind(v)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl TaggerEvent {
    /// Checks a parsed JSON value and builds an event from it.
    pub fn from_json(value: Value) -> Result<TaggerEvent, (Reject, String)> {
        let Value::Object(mut obj) = value else {
            return Err((
                Reject::NotAnObject,
                format!("expected a JSON object, found {}", kind(&value)),
            ));
        };
        let source_kind = required_string(&obj, "source_kind", Reject::SourceKind)?;
        let source_id = required_string(&obj, "source_id", Reject::SourceId)?;
        let field = |k: &str| stored_text(&obj, k).map_err(|m| (Reject::FieldType, m));
        let attacker_uuid = field("attacker_uuid")?;
        let identity_uuid = field("identity_uuid")?;
        let session_id = field("session_id")?;
        let decky_id = field("decky_id")?;
        if attacker_uuid.is_none() && identity_uuid.is_none() {
            return Err((
                Reject::NoAnchor,
                "neither `attacker_uuid` nor `identity_uuid` is set".into(),
            ));
        }
        let payload = match obj.remove("payload") {
            Some(Value::Object(p)) => p.into_iter().collect(),
            None => return Err((Reject::Payload, "missing `payload`".into())),
            Some(v) => {
                return Err((
                    Reject::Payload,
                    format!("`payload` must be an object, found {}", kind(&v)),
                ))
            }
        };
        Ok(TaggerEvent {
            source_kind,
            source_id,
            attacker_uuid,
            identity_uuid,
            session_id,
            decky_id,
            payload,
        })
    }

    /// Parses one line of JSON.
    pub fn from_line(line: &[u8]) -> Result<TaggerEvent, (Reject, String)> {
        let value = crate::pyjson::parse(line)
            .map_err(|e| (Reject::InvalidJson, format!("invalid JSON: {e}")))?;
        TaggerEvent::from_json(value)
    }
}

/// Reads JSON lines, yielding events and rejections with line numbers.
pub struct EventReader<R> {
    input: R,
    line_no: u64,
    buf: Vec<u8>,
    max_line: usize,
    /// A line is half read: the input reported `WouldBlock` mid-line.
    resume: Option<LineState>,
    /// Whether the last line read ended with a newline (not cut by EOF).
    terminated: bool,
    /// Bytes consumed so far (for progress reports).
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Copy)]
struct LineState {
    too_long: bool,
    any: bool,
}

/// One item of input.
#[derive(Debug)]
pub enum Item {
    Event(u64, TaggerEvent),
    Rejected(Rejection),
}

impl<R: BufRead> EventReader<R> {
    pub fn new(input: R) -> Self {
        Self::with_max_line(input, MAX_LINE_BYTES)
    }

    pub fn with_max_line(input: R, max_line: usize) -> Self {
        EventReader {
            input,
            line_no: 0,
            buf: Vec::new(),
            max_line,
            resume: None,
            terminated: true,
            bytes_read: 0,
        }
    }

    /// Reads the next raw line into `self.buf`. Returns `Ok(None)` at EOF,
    /// `Ok(Some(false))` for a line that was too long (and was discarded).
    /// An input error (such as `WouldBlock` from a live source) returns the
    /// error and the next call resumes the same line.
    fn next_line(&mut self) -> io::Result<Option<bool>> {
        let LineState {
            mut too_long,
            mut any,
        } = match self.resume.take() {
            Some(state) => state,
            None => {
                self.buf.clear();
                LineState {
                    too_long: false,
                    any: false,
                }
            }
        };
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.resume = Some(LineState { too_long, any });
                    return Err(e);
                }
            };
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                // End of input in the middle of a line.
                self.terminated = false;
                break;
            }
            any = true;
            let (part, done) = match memchr_newline(chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !too_long {
                if self.buf.len() + part.len() > self.max_line {
                    too_long = true;
                    self.buf.clear();
                    self.buf.shrink_to(64 * 1024);
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let used = done.unwrap_or(chunk.len());
            self.input.consume(used);
            self.bytes_read += used as u64;
            if done.is_some() {
                self.terminated = true;
                break;
            }
        }
        self.line_no += 1;
        Ok(Some(!too_long))
    }

    /// The input being read.
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// Whether the line behind the last item ended with a newline (false when
    /// the input ended in the middle of it).
    pub fn last_line_terminated(&self) -> bool {
        self.terminated
    }

    /// The next event or rejection; `None` at end of input. Blank lines are
    /// skipped.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            let Some(ok) = self.next_line()? else {
                return Ok(None);
            };
            let line = self.line_no;
            if !ok {
                return Ok(Some(Item::Rejected(Rejection {
                    line,
                    reason: Reject::TooLong,
                    message: format!("line longer than {} bytes", self.max_line),
                })));
            }
            let text = trim_ascii(&self.buf);
            if text.is_empty() {
                continue;
            }
            return Ok(Some(match TaggerEvent::from_line(text) {
                Ok(ev) => Item::Event(line, ev),
                Err((reason, message)) => Item::Rejected(Rejection {
                    line,
                    reason,
                    message,
                }),
            }));
        }
    }
}

fn memchr_newline(s: &[u8]) -> Option<usize> {
    s.iter().position(|b| *b == b'\n')
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str, max: usize) -> Vec<Item> {
        let mut r = EventReader::with_max_line(input.as_bytes(), max);
        let mut out = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            out.push(i);
        }
        out
    }

    fn reasons(items: &[Item]) -> Vec<(u64, &'static str)> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(l, _) => (*l, "ok"),
                Item::Rejected(r) => (r.line, r.reason.name()),
            })
            .collect()
    }

    #[test]
    fn every_bad_line_kind_is_rejected_with_its_line() {
        let input = concat!(
            "{\"source_kind\":\"command\",\"source_id\":\"a\",\"attacker_uuid\":\"x\",\"payload\":{}}\n",
            "not json\n",
            "[1,2]\n",
            "{\"source_id\":\"a\",\"attacker_uuid\":\"x\",\"payload\":{}}\n",
            "{\"source_kind\":\"command\",\"source_id\":5,\"attacker_uuid\":\"x\",\"payload\":{}}\n",
            "{\"source_kind\":\"command\",\"source_id\":\"a\",\"attacker_uuid\":\"x\",\"payload\":[]}\n",
            "{\"source_kind\":\"command\",\"source_id\":\"a\",\"payload\":{}}\n",
            "\n",
            "{\"source_kind\":\"command\",\"source_id\":\"a\",\"identity_uuid\":\"i\",\"session_id\":[3],\"payload\":{}}\n",
            "{\"source_kind\":\"command\",\"source_id\":\"a\",\"identity_uuid\":\"\",\"payload\":{}}",
        );
        let items = read_all(input, 1 << 20);
        assert_eq!(
            reasons(&items),
            vec![
                (1, "ok"),
                (2, "invalid_json"),
                (3, "not_an_object"),
                (4, "bad_source_kind"),
                (5, "bad_source_id"),
                (6, "bad_payload"),
                (7, "no_anchor"),
                (9, "bad_field_type"),
                (10, "ok"),
            ]
        );
    }

    #[test]
    fn non_string_anchors_are_stored_as_sqlite_stores_them() {
        let ev = |fields: &str| {
            TaggerEvent::from_line(
                format!(r#"{{"source_kind":"command","source_id":"a","payload":{{}},{fields}}}"#)
                    .as_bytes(),
            )
        };
        let e =
            ev(r#""attacker_uuid":7,"identity_uuid":true,"session_id":5,"decky_id":2.5"#).unwrap();
        assert_eq!(e.attacker_uuid.as_deref(), Some("7"));
        assert_eq!(e.identity_uuid.as_deref(), Some("1"));
        assert_eq!(e.session_id.as_deref(), Some("5"));
        assert_eq!(e.decky_id.as_deref(), Some("2.5"));
        let e = ev(r#""attacker_uuid":"a","session_id":1e20,"decky_id":NaN"#).unwrap();
        assert_eq!(e.session_id.as_deref(), Some("1.0e+20"));
        assert_eq!(e.decky_id, None);
        for bad in [
            r#""attacker_uuid":"a","session_id":{}"#,
            r#""attacker_uuid":18446744073709551617"#,
            r#""attacker_uuid":"\ud800""#,
        ] {
            assert_eq!(ev(bad).unwrap_err().0, Reject::FieldType, "{bad}");
        }
        let bad_id = TaggerEvent::from_line(
            br#"{"source_kind":"command","source_id":"\udc00","attacker_uuid":"a","payload":{}}"#,
        );
        assert_eq!(bad_id.unwrap_err().0, Reject::SourceId);
    }

    #[test]
    fn an_unterminated_last_line_is_reported() {
        let mut r = EventReader::new("{}\n{\"a\"".as_bytes());
        r.next_item().unwrap();
        assert!(r.last_line_terminated());
        r.next_item().unwrap();
        assert!(!r.last_line_terminated());
        assert!(r.next_item().unwrap().is_none());
    }

    #[test]
    fn lines_just_under_16_mib_are_accepted() {
        let pad = "a".repeat(MAX_LINE_BYTES - 200);
        let line = format!(
            "{{\"source_kind\":\"command\",\"source_id\":\"big\",\"attacker_uuid\":\"x\",\"payload\":{{\"command_text\":\"{pad}\"}}}}\n"
        );
        assert!(line.len() <= MAX_LINE_BYTES);
        let items = read_all(&line, MAX_LINE_BYTES);
        assert_eq!(reasons(&items), vec![(1, "ok")]);
    }

    /// Yields its chunks with a `WouldBlock` between each.
    struct Stuttering {
        chunks: Vec<&'static [u8]>,
        pos: usize,
        blocked: bool,
    }

    impl std::io::Read for Stuttering {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            unreachable!("used through BufRead")
        }
    }

    impl BufRead for Stuttering {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            if self.pos >= self.chunks.len() {
                return Ok(&[]);
            }
            if !self.blocked {
                self.blocked = true;
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(self.chunks[self.pos])
        }
        fn consume(&mut self, n: usize) {
            self.chunks[self.pos] = &self.chunks[self.pos][n..];
            if self.chunks[self.pos].is_empty() {
                self.pos += 1;
                self.blocked = false;
            }
        }
    }

    #[test]
    fn a_line_split_by_would_block_is_resumed() {
        let input = Stuttering {
            chunks: vec![
                b"{\"source_kind\":\"c\",\"source_",
                b"id\":\"a\",\"attacker_uuid\":\"x\",\"payload\":{}}\n",
            ],
            pos: 0,
            blocked: false,
        };
        let mut r = EventReader::new(input);
        let mut blocks = 0;
        let item = loop {
            match r.next_item() {
                Ok(item) => break item,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => blocks += 1,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(blocks, 2);
        assert!(matches!(item, Some(Item::Event(1, _))), "{item:?}");
    }

    #[test]
    fn long_lines_are_rejected_and_reading_goes_on() {
        let long = format!("{{\"x\":\"{}\"}}", "a".repeat(5000));
        let good =
            "{\"source_kind\":\"c\",\"source_id\":\"a\",\"attacker_uuid\":\"x\",\"payload\":{}}";
        let input = format!("{long}\n{good}\n{long}");
        let mut r = EventReader::with_max_line(
            std::io::BufReader::with_capacity(64, input.as_bytes()),
            1000,
        );
        let mut items = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            items.push(i);
        }
        assert_eq!(
            reasons(&items),
            vec![(1, "line_too_long"), (2, "ok"), (3, "line_too_long")]
        );
        assert!(r.buf.capacity() < 5000, "the long line was buffered whole");
    }
}
