//! DECNET's service bus, the protocol side (worker-and-api spec §1): frames
//! and their limits, verbs, topic patterns, the delivered envelope, and
//! where the socket lives. No I/O here: a client or a server reads and
//! writes frames with [`read_frame`] / [`Frame::encode`] over any stream.

pub mod client;

use serde_json::{Map, Value};
use std::io::{self, Read};
use std::path::PathBuf;
use thiserror::Error;

/// Longest header line, newline included.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Largest body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The six verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Hello,
    Pub,
    Sub,
    Unsub,
    Evt,
    Bye,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Hello => "HELLO",
            Verb::Pub => "PUB",
            Verb::Sub => "SUB",
            Verb::Unsub => "UNSUB",
            Verb::Evt => "EVT",
            Verb::Bye => "BYE",
        }
    }

    fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "HELLO" => Verb::Hello,
            "PUB" => Verb::Pub,
            "SUB" => Verb::Sub,
            "UNSUB" => Verb::Unsub,
            "EVT" => Verb::Evt,
            "BYE" => Verb::Bye,
            _ => return None,
        })
    }
}

/// One frame: `VERB[ arg]\n`, a 4-byte big-endian body length, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub verb: Verb,
    /// The argument (topic, pattern, client name); empty when absent.
    pub arg: String,
    pub body: Vec<u8>,
}

/// Why a frame was refused (the peer closes the connection on any of them).
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("empty header line")]
    EmptyHeader,
    #[error("unknown verb '{0}'")]
    UnknownVerb(String),
    #[error("header {0} bytes exceeds max")]
    HeaderTooLong(usize),
    #[error("header exceeded buffer limit")]
    HeaderUnterminated,
    #[error("header is not ASCII")]
    NotAscii,
    #[error("body length {0} exceeds max")]
    BodyTooLong(usize),
    #[error("disconnected: {read} bytes read on a total of {expected} expected bytes")]
    Truncated { read: usize, expected: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Frame {
    pub fn new(verb: Verb, arg: &str, body: Vec<u8>) -> Frame {
        Frame {
            verb,
            arg: arg.to_string(),
            body,
        }
    }

    /// A frame whose body is a JSON object, written compactly.
    pub fn json(verb: Verb, arg: &str, body: &Value) -> Frame {
        Frame::new(verb, arg, serde_json::to_vec(body).unwrap_or_default())
    }

    /// The bytes on the wire: `VERB arg` (trailing whitespace removed), a
    /// newline, the length, the body.
    pub fn encode(&self) -> Vec<u8> {
        let header = format!("{} {}", self.verb.as_str(), self.arg);
        let header = header.trim_end();
        let mut out = Vec::with_capacity(header.len() + 5 + self.body.len());
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The body as a JSON object (`None` for an empty body).
    pub fn body_object(&self) -> Result<Option<Map<String, Value>>, String> {
        if self.body.is_empty() {
            return Ok(None);
        }
        match crate::pyjson::parse(&self.body) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(other) => Err(format!(
                "body must be a JSON object, got {}",
                match other {
                    Value::Array(_) => "list",
                    Value::String(_) => "str",
                    Value::Number(_) => "number",
                    Value::Bool(_) => "bool",
                    _ => "null",
                }
            )),
            Err(e) => Err(format!("body is not valid JSON: {e}")),
        }
    }
}

/// Parses a header line (without its newline, trailing `\r`/`\n` allowed).
pub fn parse_header(line: &[u8]) -> Result<(Verb, String), FrameError> {
    let text = std::str::from_utf8(line)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or(FrameError::NotAscii)?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(FrameError::EmptyHeader);
    }
    let (verb, arg) = match text.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (text, ""),
    };
    let verb = Verb::parse(verb).ok_or_else(|| FrameError::UnknownVerb(verb.to_string()))?;
    Ok((verb, arg.to_string()))
}

/// Reads one frame. `Ok(None)` is a clean end of stream before a frame.
/// The length is checked before any body byte is read.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut header = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    loop {
        let n = match r.read(&mut byte) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if header.is_empty() {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                read: header.len(),
                expected: header.len() + 1,
            });
        }
        header.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
        if header.len() > 64 * 1024 {
            return Err(FrameError::HeaderUnterminated);
        }
    }
    if header.len() > MAX_HEADER_BYTES {
        return Err(FrameError::HeaderTooLong(header.len()));
    }
    let (verb, arg) = parse_header(&header)?;
    let mut len = [0u8; 4];
    read_full(r, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY_BYTES {
        return Err(FrameError::BodyTooLong(len));
    }
    let mut body = vec![0u8; len];
    read_full(r, &mut body)?;
    Ok(Some(Frame { verb, arg, body }))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    read: got,
                    expected: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a subscription pattern matches a topic (§1.7): `*` is one
/// non-empty token, `>` one or more remaining tokens (and ends the
/// comparison), anything else an exact token.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut topic_tokens = topic.split('.');
    for p in pattern.split('.') {
        match p {
            ">" => return topic_tokens.next().is_some(),
            "*" => match topic_tokens.next() {
                Some(t) if !t.is_empty() => {}
                _ => return false,
            },
            literal => {
                if topic_tokens.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_tokens.next().is_none()
}

/// An event as delivered (`EVT` body), read as DECNET's client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub topic: String,
    pub id: String,
    /// The envelope's `type` (not type-checked: any JSON value; `""` when
    /// falsy).
    pub kind: Value,
    pub ts: f64,
    /// The publisher's `payload` (falsy → `{}`; not type-checked).
    pub payload: Value,
}

impl Envelope {
    /// From an `EVT` frame: the topic from the header, the rest from the
    /// body with DECNET's client's defaults.
    pub fn from_frame(frame: &Frame, now: f64) -> Result<Envelope, String> {
        let mut body = frame.body_object()?.unwrap_or_default();
        let truthy = |v: &Value| crate::lifters::py::truthy(v);
        // Taken out of the body, not copied: the payload is most of it.
        let payload = body
            .remove("payload")
            .filter(truthy)
            .unwrap_or_else(|| Value::Object(Map::new()));
        let kind = body
            .remove("type")
            .filter(truthy)
            .unwrap_or_else(|| Value::String(String::new()));
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .unwrap_or_else(new_id);
        let ts = body.get("ts").and_then(Value::as_f64).unwrap_or(now);
        Ok(Envelope {
            topic: frame.arg.clone(),
            id,
            kind,
            ts,
            payload,
        })
    }

    /// What a publisher sends: `{"type": …, "payload": …}` (the server
    /// builds the envelope).
    pub fn publish_frame(topic: &str, kind: &str, payload: Value) -> Frame {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(kind.into()));
        body.insert("payload".into(), payload);
        Frame::json(Verb::Pub, topic, &Value::Object(body))
    }
}

/// A new envelope id: a random UUID4 as 32 lowercase hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Where the bus socket is (§1.1): `DECNET_BUS_SOCKET` when set and not
/// empty, else `/run/decnet/bus.sock` when `/run/decnet` is a directory this
/// process may write to, else `~/.decnet/bus.sock`.
pub fn socket_path() -> PathBuf {
    socket_path_from(
        std::env::var_os("DECNET_BUS_SOCKET"),
        std::path::Path::new("/run/decnet"),
        std::env::var_os("HOME"),
    )
}

fn socket_path_from(
    explicit: Option<std::ffi::OsString>,
    run_dir: &std::path::Path,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if run_dir.is_dir() && writable(run_dir) {
        return run_dir.join("bus.sock");
    }
    PathBuf::from(home.unwrap_or_default())
        .join(".decnet")
        .join("bus.sock")
}

#[cfg(unix)]
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // access(2) answers for this process's real ids, as DECNET's os.access.
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(_: &std::path::Path) -> bool {
    false
}

/// Whether DECNET's settings turn the bus off (`DECNET_BUS_ENABLED=false`).
pub fn disabled_by_env() -> bool {
    std::env::var("DECNET_BUS_ENABLED").is_ok_and(|v| v.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let f = Frame::json(
            Verb::Pub,
            "attacker.observed",
            &serde_json::json!({"payload": {"a": 1}}),
        );
        let bytes = f.encode();
        assert!(bytes.starts_with(b"PUB attacker.observed\n\0\0\0"));
        assert_eq!(read_frame(&mut &bytes[..]).unwrap().unwrap(), f);
        assert_eq!(Frame::new(Verb::Bye, "", vec![]).encode(), b"BYE\n\0\0\0\0");
        // CRLF and extra spaces.
        let got = read_frame(&mut &b"PUB   attacker.observed  \r\n\0\0\0\0"[..])
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.verb, got.arg.as_str()),
            (Verb::Pub, "attacker.observed")
        );
        let mut over = b"PUB x\n".to_vec();
        over.extend_from_slice(&(MAX_BODY_BYTES as u32 + 1).to_be_bytes());
        assert!(matches!(
            read_frame(&mut &over[..]),
            Err(FrameError::BodyTooLong(1048577))
        ));
        let long = format!("PUB {}\n", "a".repeat(4092));
        assert!(matches!(
            read_frame(&mut long.as_bytes()),
            Err(FrameError::HeaderTooLong(4097))
        ));
        assert!(
            matches!(read_frame(&mut &b"pub x\n\0\0\0\0"[..]), Err(FrameError::UnknownVerb(v)) if v == "pub")
        );
        assert!(matches!(
            read_frame(&mut &b"\n"[..]),
            Err(FrameError::EmptyHeader)
        ));
        assert!(matches!(
            read_frame(&mut &b"PUB x\n\0\0"[..]),
            Err(FrameError::Truncated {
                read: 2,
                expected: 4
            })
        ));
        assert!(matches!(
            read_frame(&mut &b"PUB \xc3\xa9\n\0\0\0\0"[..]),
            Err(FrameError::NotAscii)
        ));
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
    }

    #[test]
    fn envelopes_take_decnets_defaults() {
        let f = Frame::new(
            Verb::Evt,
            "t.x",
            br#"{"payload": null, "type": null}"#.to_vec(),
        );
        let e = Envelope::from_frame(&f, 5.0).unwrap();
        assert_eq!(e.payload, serde_json::json!({}));
        assert_eq!(e.kind, serde_json::json!(""));
        assert_eq!(e.ts, 5.0);
        assert_eq!(e.id.len(), 32);
        let f = Frame::new(
            Verb::Evt,
            "t.x",
            br#"{"payload": [1,2], "type": 5, "ts": 1.5, "id": "ab"}"#.to_vec(),
        );
        let e = Envelope::from_frame(&f, 5.0).unwrap();
        assert_eq!(
            (e.payload, e.kind, e.ts, e.id.as_str()),
            (serde_json::json!([1, 2]), serde_json::json!(5), 1.5, "ab")
        );
    }

    #[test]
    fn the_socket_path_resolves_as_decnet_resolves_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let explicit = socket_path_from(
            Some("/x/bus.sock".into()),
            dir.path(),
            Some("/home/u".into()),
        );
        assert_eq!(explicit, PathBuf::from("/x/bus.sock"));
        let run = socket_path_from(Some("".into()), dir.path(), Some("/home/u".into()));
        assert_eq!(run, dir.path().join("bus.sock"));
        let home = socket_path_from(None, &dir.path().join("missing"), Some("/home/u".into()));
        assert_eq!(home, PathBuf::from("/home/u/.decnet/bus.sock"));
    }
}
