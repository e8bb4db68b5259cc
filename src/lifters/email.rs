//! Email lifter (spec §5.4, §7): SMTP messages caught by the honeypot.
//!
//! Evidence is PII-safe: a fixed base built once per event, plus the rule's
//! discriminator, filtered through an allowlist. The body is only ever read
//! from `payload.body_text`; message files are never read from disk.

use super::params;
use super::py::{as_int, get, is_false, is_int, is_true, non_empty_str, or, truthy};
use crate::event::Payload;
use crate::rule::parse::Ctx;
use crate::tag::Evidence;
use crate::yaml::Node;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// Evidence keys an email tag may carry (spec §7).
pub const ALLOWED_KEYS: [&str; 12] = [
    "body_sha256",
    "matched_headers",
    "rcpt_domain_set",
    "attachment_sha256s",
    "rcpt_count",
    "matched_kit",
    "matched_trigger",
    "matched_url_host",
    "matched_signals",
    "matched_subject_kw",
    "matched_body_kw",
    "encoded_byte_count",
];

#[derive(Debug)]
pub enum Email {
    OpenRelay {
        threshold: i64,
        require_foreign_from: bool,
    },
    MassPhish {
        threshold: i64,
    },
    XmailerKit,
    IdnUrl {
        prefix: String,
    },
    SenderMasquerade {
        signals: Vec<String>,
    },
    MaliciousAttachment {
        triggers: Vec<String>,
    },
    /// Keywords as written (for the evidence) and lowercased once.
    Bec {
        subject_keywords: Vec<(String, String)>,
        body_keywords: Vec<(String, String)>,
    },
    EncodedPayload {
        min_bytes: i64,
    },
}

impl Email {
    pub fn compile(kind: &str, m: &Node, ctx: &mut Ctx) -> Option<Email> {
        Some(match kind {
            "email_open_relay" => Email::OpenRelay {
                threshold: params::int(m, "rcpt_threshold", 10, ctx)?,
                require_foreign_from: params::boolean(m, "require_foreign_from", false, ctx)?,
            },
            "email_mass_phish" => Email::MassPhish {
                threshold: params::int(m, "rcpt_threshold", 25, ctx)?,
            },
            "email_xmailer_kit" => Email::XmailerKit,
            "email_idn_url" => {
                let prefix = match m.get("punycode_prefix") {
                    None => "xn--".to_string(),
                    Some(n) => match n.as_str() {
                        Some(s) if !s.is_empty() => s.to_string(),
                        _ => {
                            ctx.error(
                                crate::diag::Code::BadLifterParam,
                                n.pos,
                                "`match.punycode_prefix` must be a non-empty string",
                            );
                            return None;
                        }
                    },
                };
                Email::IdnUrl { prefix }
            }
            "email_sender_masquerade" => Email::SenderMasquerade {
                signals: params::strings(m, "signals", ctx)?,
            },
            "email_malicious_attachment" => Email::MaliciousAttachment {
                triggers: params::strings(m, "triggers", ctx)?,
            },
            "email_bec" => {
                let lowered = |v: Vec<String>| -> Vec<(String, String)> {
                    v.into_iter()
                        .map(|k| {
                            let l = k.to_lowercase();
                            (k, l)
                        })
                        .collect()
                };
                Email::Bec {
                    subject_keywords: lowered(params::strings(m, "subject_keywords", ctx)?),
                    body_keywords: lowered(params::strings(m, "body_action_keywords", ctx)?),
                }
            }
            "email_encoded_payload" => Email::EncodedPayload {
                min_bytes: params::int(m, "min_bytes", 4096, ctx)?,
            },
            _ => return None,
        })
    }

    pub fn fire(&self, p: &Payload) -> Option<Evidence> {
        let mut extra = Evidence::default();
        let headers =
            |h: &[&str]| Value::Array(h.iter().map(|s| Value::String((*s).into())).collect());
        match self {
            Email::OpenRelay {
                threshold,
                require_foreign_from,
            } => {
                if !at_least(get(p, "rcpt_count"), *threshold) {
                    return None;
                }
                if *require_foreign_from {
                    let f = domain(or(get(p, "from_domain"), get(p, "from")));
                    let m = domain(or(get(p, "mail_from_domain"), get(p, "mail_from")));
                    match (f, m) {
                        (Some(f), Some(m)) if !f.is_empty() && !m.is_empty() && f != m => {}
                        _ => return None,
                    }
                }
                extra.insert("matched_headers".into(), headers(&["From", "Mail-From"]));
            }
            Email::MassPhish { threshold } => {
                let simhash = get(p, "body_simhash");
                if !at_least(get(p, "rcpt_count"), *threshold)
                    || !(simhash.is_string() || is_int(simhash))
                {
                    return None;
                }
            }
            Email::XmailerKit => {
                non_empty_str(get(p, "x_mailer"))?;
                if let Some(kit) = non_empty_str(get(p, "matched_kit")) {
                    extra.insert("matched_kit".into(), Value::String(kit.into()));
                } else if !is_true(get(p, "xmailer_kit_match")) {
                    return None;
                }
                extra.insert("matched_headers".into(), headers(&["X-Mailer"]));
            }
            Email::IdnUrl { prefix } => {
                let urls = or(get(p, "urls"), &Value::Null);
                let urls: &[Value] = match urls {
                    Value::Array(a) => a,
                    Value::Null => &[],
                    _ => return None,
                };
                let url = urls
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|u| u.contains(prefix.as_str()))?;
                let host = url_host()
                    .captures(url)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str().to_lowercase());
                extra.insert(
                    "matched_url_host".into(),
                    Value::String(host.unwrap_or_default()),
                );
                extra.insert("matched_headers".into(), headers(&["body"]));
            }
            Email::SenderMasquerade { signals } => {
                let wants = |s: &str| signals.iter().any(|x| x == s);
                let from = domain(get(p, "from_domain"));
                let mut matched = Vec::new();
                let mut hdrs = Vec::new();
                let mut from_hit = false;
                if wants("from_returnpath_mismatch") {
                    let rp = domain(get(p, "return_path_domain"));
                    if from.is_some() && rp.is_some() && from != rp {
                        matched.push("from_returnpath_mismatch");
                        from_hit = true;
                    }
                }
                if wants("from_mailfrom_mismatch") {
                    let mf = domain(get(p, "mail_from_domain"));
                    if from.is_some() && mf.is_some() && from != mf {
                        matched.push("from_mailfrom_mismatch");
                        from_hit = true;
                    }
                }
                if from_hit {
                    hdrs.extend(["From", "Return-Path"]);
                }
                if wants("dkim_fail") && is_false(get(p, "dkim_signed")) {
                    matched.push("dkim_fail");
                    hdrs.push("DKIM-Signature");
                }
                if wants("spf_fail") && is_false(get(p, "spf_pass")) {
                    matched.push("spf_fail");
                    hdrs.push("Authentication-Results");
                }
                if matched.is_empty() {
                    return None;
                }
                extra.insert("matched_headers".into(), headers(&hdrs));
                extra.insert("matched_signals".into(), headers(&matched));
            }
            Email::MaliciousAttachment { triggers } => {
                let wants = |s: &str| triggers.iter().any(|x| x == s);
                let flags = [
                    ("office_macro", "attachment_macros"),
                    ("protected_archive", "attachment_password_protected"),
                    ("html_smuggling", "html_smuggling"),
                    ("mal_hash_match", "mal_hash_match"),
                ];
                let mut hit = flags
                    .iter()
                    .find(|(t, key)| wants(t) && is_true(get(p, key)))
                    .map(|(t, _)| *t);
                if hit.is_none() {
                    let exts: Vec<String> = match or(get(p, "attachment_extensions"), &Value::Null)
                    {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|e| e.to_lowercase().trim_start_matches('.').to_string())
                            .collect(),
                        _ => Vec::new(),
                    };
                    hit = ["lnk", "iso", "img"]
                        .into_iter()
                        .find(|t| wants(t) && exts.iter().any(|e| e == t));
                }
                extra.insert("matched_trigger".into(), Value::String(hit?.into()));
            }
            Email::Bec {
                subject_keywords,
                body_keywords,
            } => {
                // Both fields must be strings; the (long) body is lowered
                // only once a subject keyword matched.
                let subject = get(p, "subject").as_str()?;
                let body = get(p, "body_text").as_str()?;
                let subject = subject.to_lowercase();
                let (s, _) = subject_keywords
                    .iter()
                    .find(|(_, k)| subject.contains(k.as_str()))?;
                let body = body.to_lowercase();
                let (b, _) = body_keywords
                    .iter()
                    .find(|(_, k)| body.contains(k.as_str()))?;
                extra.insert("matched_subject_kw".into(), Value::String(s.clone()));
                extra.insert("matched_body_kw".into(), Value::String(b.clone()));
                extra.insert("matched_headers".into(), headers(&["Subject"]));
            }
            Email::EncodedPayload { min_bytes } => {
                let body = get(p, "body_text").as_str().filter(|s| !s.is_empty())?;
                let declared = get(p, "body_base64_bytes");
                if at_least(declared, *min_bytes) {
                    extra.insert("encoded_byte_count".into(), declared.clone());
                } else {
                    let n = largest_decodable(body, *min_bytes)?;
                    extra.insert("encoded_byte_count".into(), Value::from(n));
                }
            }
        }
        Some(extra)
    }
}

fn at_least(v: &Value, n: i64) -> bool {
    is_int(v) && as_int(v).is_some_and(|x| x >= i128::from(n))
}

fn url_host() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\Ahttps?://([^/]+)").expect("static regex"))
}

/// The bytes of the base64 alphabet (without `=`).
const B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        c += 1;
    }
    t
};

/// Base64 chunks of `body` as (data characters, padding characters): the
/// matches of `[A-Za-z0-9+/]{32,}={0,2}`, leftmost first, found in one pass
/// over the bytes with a table instead of a regex (which walks each match
/// forward and back). A run of the alphabet shorter than 32 cannot hold a
/// match anywhere inside it, and a longer one is matched whole, greedily,
/// with at most two `=` after it: so each maximal run is one match.
fn base64_chunks(body: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = body.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            if !B64[b[i] as usize] {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && B64[b[i] as usize] {
                i += 1;
            }
            let data = i - start;
            if data >= 32 {
                let pad = b[i..].iter().take(2).take_while(|c| **c == b'=').count();
                i += pad;
                return Some((data, pad));
            }
        }
        None
    })
}

/// The decoded size of the first base64 chunk that decodes to at least
/// `min` bytes. A chunk decodes as CPython 3.11's
/// `base64.b64decode(chunk, validate=True)` does: with `d` data characters
/// and `p` padding characters it decodes when `d % 4 == 0` (padding after a
/// complete group is ignored), or `d % 4 == 2` with `p == 2`, or
/// `d % 4 == 3` with `p == 1` (non-canonical trailing bits accepted), to
/// `⌊3d/4⌋` bytes; any other chunk is skipped. A body too short to hold
/// such a chunk is not scanned.
fn largest_decodable(body: &str, min: i64) -> Option<i64> {
    if (3 * body.len() as i64) / 4 < min {
        return None;
    }
    base64_chunks(body).find_map(|(data, pad)| decodable(data, pad, min))
}

/// The decoded size of a chunk of `data` characters and `pad` `=`, when it
/// decodes (see [`largest_decodable`]) to at least `min` bytes.
fn decodable(data: usize, pad: usize, min: i64) -> Option<i64> {
    let data = data as i64;
    let decodes = match data % 4 {
        0 => true,
        2 => pad == 2,
        3 => pad == 1,
        _ => false,
    };
    let decoded = 3 * data / 4;
    (decodes && decoded >= min).then_some(decoded)
}

/// Python's `str.isspace()`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// DECNET's `_domain`: `None` for a non-string or `""`; the part after the
/// first `@` (or the whole), lowercased and stripped.
pub fn domain(v: &Value) -> Option<String> {
    let s = v.as_str().filter(|s| !s.is_empty())?;
    let part = match s.split_once('@') {
        Some((_, d)) => d,
        None => s,
    };
    Some(part.to_lowercase().trim_matches(py_space).to_string())
}

/// The per-event base evidence, in its fixed key order.
pub fn base_evidence(p: &Payload) -> Evidence {
    let mut ev = Evidence::default();
    let sha = or(get(p, "body_sha256"), &Value::Null);
    let sha = sha.as_str().unwrap_or("").to_string();
    ev.insert("body_sha256".into(), Value::String(sha));
    ev.insert("matched_headers".into(), Value::Array(Vec::new()));
    // Python iteration of `rcpt_domains or []`: a list gives its items, a
    // string its characters, an object its keys. A truthy number or `true`
    // makes DECNET fail the whole event; we treat it as absent (README,
    // deviations).
    let domains: BTreeSet<String> = match get(p, "rcpt_domains") {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect(),
        Value::String(s) => s.chars().map(|c| c.to_lowercase().collect()).collect(),
        Value::Object(o) => o.keys().map(|k| k.to_lowercase()).collect(),
        _ => BTreeSet::new(),
    };
    ev.insert(
        "rcpt_domain_set".into(),
        Value::Array(domains.into_iter().map(Value::String).collect()),
    );
    let shas = match or(get(p, "attachment_sha256s"), &Value::Null) {
        Value::Array(a) => a.iter().filter(|v| v.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    ev.insert("attachment_sha256s".into(), Value::Array(shas));
    let count = get(p, "rcpt_count");
    ev.insert(
        "rcpt_count".into(),
        if is_int(count) {
            count.clone()
        } else {
            Value::from(0)
        },
    );
    ev
}

/// The SHA-256 of an email's body (lowercase hex), for the evidence of
/// emails that carry no `body_sha256`: computed at most once per event,
/// however many email rules fire on it (on a 6 KB body it costs more than
/// all the rules' matching).
#[derive(Debug, Default)]
pub struct BodyHash(Option<Option<String>>);

impl BodyHash {
    fn get(&mut self, p: &Payload) -> Option<&str> {
        self.0
            .get_or_insert_with(|| {
                non_empty_str(get(p, "body_text")).map(|body| {
                    // Python encodes with errors="replace": lone surrogates are `?`.
                    let digest = Sha256::digest(crate::pyjson::utf8_replacing_surrogates(body));
                    crate::tag::hex_lower(&digest)
                })
            })
            .as_deref()
    }
}

/// Evidence for one firing rule: base, sorted headers, the extra, allowlist,
/// then the body hash fallback.
pub fn evidence(
    base: &Evidence,
    mut extra: Evidence,
    p: &Payload,
    body_hash: &mut BodyHash,
) -> Evidence {
    let mut ev = base.clone();
    if let Some(Value::Array(h)) = extra.swap_remove("matched_headers") {
        let set: BTreeSet<String> = h
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        ev.insert(
            "matched_headers".into(),
            Value::Array(set.into_iter().map(Value::String).collect()),
        );
    }
    for (k, v) in extra {
        ev.insert(k, v);
    }
    ev.retain(|k, _| ALLOWED_KEYS.contains(&k.as_str()));
    let has_sha = ev.get("body_sha256").is_some_and(truthy);
    if !has_sha {
        if let Some(hex) = body_hash.get(p) {
            ev.insert("body_sha256".into(), Value::String(hex.to_string()));
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The reference the scanner replaced: the regex DECNET's lifter uses.
    fn regex_chunks(body: &str) -> Vec<(usize, usize)> {
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        let re = RE.get_or_init(|| regex::Regex::new(r"[A-Za-z0-9+/]{32,}={0,2}").unwrap());
        re.find_iter(body)
            .map(|m| {
                let pad = m.as_str().bytes().rev().take_while(|b| *b == b'=').count();
                (m.len() - pad, pad)
            })
            .collect()
    }

    fn regex_largest(body: &str, min: i64) -> Option<i64> {
        regex_chunks(body)
            .into_iter()
            .find_map(|(data, pad)| decodable(data, pad, min))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// The byte scanner finds exactly the regex's chunks, and the
        /// decodable size the lifter reports is the same.
        #[test]
        fn base64_scanner_equals_the_regex(
            runs in proptest::collection::vec(
                (proptest::sample::select(vec!["A", "z", "9", "+", "/", "=", " ", "\n", "é", "-", "==", "QUJD"]),
                 0usize..48),
                0..12),
            min in 0i64..80,
        ) {
            let body: String = runs.iter().map(|(p, n)| p.repeat(*n)).collect();
            let got: Vec<(usize, usize)> = base64_chunks(&body).collect();
            proptest::prop_assert_eq!(&got, &regex_chunks(&body));
            proptest::prop_assert_eq!(largest_decodable(&body, min), regex_largest(&body, min));
        }
    }

    fn fire(e: &Email, p: Value) -> Option<Value> {
        e.fire(&crate::event::payload(p).unwrap())
            .map(crate::tag::evidence_json)
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain(&json!("ceo@Corp.example ")),
            Some("corp.example".into())
        );
        assert_eq!(domain(&json!("   ")), Some(String::new()));
        assert_eq!(domain(&json!("")), None);
        assert_eq!(domain(&json!(5)), None);
    }

    #[test]
    fn open_relay_threshold_and_foreign_from() {
        let e = Email::OpenRelay {
            threshold: 10,
            require_foreign_from: true,
        };
        let p = |n: Value| json!({"rcpt_count": n, "from_domain": "a@x.example", "mail_from_domain": "y.example"});
        assert!(fire(&e, p(json!(10))).is_some());
        assert!(fire(&e, p(json!(9))).is_none());
        assert!(fire(&e, p(json!(10.0))).is_none());
        assert!(fire(
            &e,
            json!({"rcpt_count": 50, "from_domain": " ", "mail_from_domain": "y"})
        )
        .is_none());
        assert!(fire(
            &e,
            json!({"rcpt_count": 50, "from_domain": "x", "mail_from_domain": "X"})
        )
        .is_none());
    }

    #[test]
    fn mass_phish_accepts_falsy_simhash_types() {
        let e = Email::MassPhish { threshold: 25 };
        for h in [json!(""), json!(0), json!(false), json!("9f3a")] {
            assert!(
                fire(&e, json!({"rcpt_count": 25, "body_simhash": h})).is_some(),
                "{h}"
            );
        }
        assert!(fire(&e, json!({"rcpt_count": 25, "body_simhash": null})).is_none());
        assert!(fire(&e, json!({"rcpt_count": 24, "body_simhash": "x"})).is_none());
    }

    #[test]
    fn masquerade_whitespace_domain_is_a_mismatch() {
        let e = Email::SenderMasquerade {
            signals: vec!["from_returnpath_mismatch".into(), "spf_fail".into()],
        };
        assert_eq!(
            fire(
                &e,
                json!({"from_domain": "a.example", "return_path_domain": " ", "spf_pass": false})
            ),
            Some(
                json!({"matched_headers": ["From", "Return-Path", "Authentication-Results"],
                        "matched_signals": ["from_returnpath_mismatch", "spf_fail"]})
            )
        );
        assert!(fire(&e, json!({"from_domain": "a", "spf_pass": 0})).is_none());
    }

    #[test]
    fn attachments_flags_then_extensions() {
        let e = Email::MaliciousAttachment {
            triggers: vec!["lnk".into(), "iso".into(), "office_macro".into()],
        };
        assert_eq!(
            fire(&e, json!({"attachment_extensions": ["..ISO", ".lnk"]})),
            Some(json!({"matched_trigger": "lnk"}))
        );
        assert_eq!(
            fire(
                &e,
                json!({"attachment_extensions": [".lnk"], "attachment_macros": true})
            ),
            Some(json!({"matched_trigger": "office_macro"}))
        );
        assert!(
            fire(&e, json!({"html_smuggling": true})).is_none(),
            "trigger not enabled"
        );
    }

    #[test]
    fn encoded_payload_declared_or_scanned() {
        let e = Email::EncodedPayload { min_bytes: 24 };
        assert_eq!(
            fire(&e, json!({"body_text": "x", "body_base64_bytes": 24})),
            Some(json!({"encoded_byte_count": 24}))
        );
        let chunk = "QUFB".repeat(8); // 32 chars -> 24 bytes
        assert_eq!(
            fire(&e, json!({"body_text": format!("see {chunk} ok")})),
            Some(json!({"encoded_byte_count": 24}))
        );
        // CPython 3.11's b64decode(validate=True): d data chars, p pads.
        let cases: [(&str, Option<i64>); 8] = [
            ("Q", None),  // d % 4 == 1: never
            ("QQ", None), // d % 4 == 2 needs p == 2
            ("QQ=", None),
            ("QQ==", Some(25)),
            ("QUF", None), // d % 4 == 3 needs p == 1
            ("QUF=", Some(26)),
            ("QUF==", None),
            ("=", Some(24)), // complete groups: padding ignored
        ];
        for (tail, bytes) in cases {
            let body = "QUFB".repeat(8) + tail;
            let got = fire(&e, json!({"body_text": body}));
            assert_eq!(
                got,
                bytes.map(|n| json!({"encoded_byte_count": n})),
                "{tail}"
            );
        }
        let big = Email::EncodedPayload { min_bytes: 4096 };
        let body = "QUJD".repeat(1400) + "==";
        assert_eq!(
            fire(&big, json!({"body_text": body})),
            Some(json!({"encoded_byte_count": 4200}))
        );
        let body = "A".repeat(5464) + "=";
        assert_eq!(
            fire(&big, json!({"body_text": body})),
            Some(json!({"encoded_byte_count": 4098}))
        );
        assert!(fire(&e, json!({"body_text": "", "body_base64_bytes": 5000})).is_none());
    }

    #[test]
    fn base_evidence_and_allowlist() {
        let p = json!({"rcpt_domains": "abc", "rcpt_count": true, "body_text": "hello", "subject": "s"});
        let p = &crate::event::payload(p).unwrap();
        let base = base_evidence(p);
        let mut extra = Evidence::default();
        extra.insert("matched_headers".into(), json!(["b", "a", "b"]));
        extra.insert("subject".into(), json!("leak"));
        let ev = evidence(&base, extra, p, &mut BodyHash::default());
        assert_eq!(
            crate::tag::evidence_json(ev),
            json!({"body_sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                   "matched_headers": ["a", "b"], "rcpt_domain_set": ["a", "b", "c"], "attachment_sha256s": [], "rcpt_count": true})
        );
    }

    #[test]
    fn rcpt_domains_iterated_as_python_iterates() {
        let set = |v: Value| {
            let p = crate::event::payload(json!({ "rcpt_domains": v })).unwrap();
            base_evidence(&p)["rcpt_domain_set"].clone()
        };
        assert_eq!(set(json!("AB.c")), json!([".", "a", "b", "c"]));
        assert_eq!(
            set(json!({"X.org": 1, "a.net": 2})),
            json!(["a.net", "x.org"])
        );
        assert_eq!(
            set(json!(["B.example", 3, "a.example"])),
            json!(["a.example", "b.example"])
        );
        // DECNET fails the event on these; we treat them as absent.
        assert_eq!(set(json!(5)), json!([]));
        assert_eq!(set(json!(true)), json!([]));
    }

    #[test]
    fn body_hash_replaces_lone_surrogates() {
        let p = crate::pyjson::parse(br#"{"body_text": "a\ud800b"}"#).unwrap();
        let p = crate::event::payload(p).unwrap();
        let ev = evidence(
            &base_evidence(&p),
            Evidence::default(),
            &p,
            &mut BodyHash::default(),
        );
        // sha256("a?b")
        assert_eq!(
            ev["body_sha256"],
            json!("c2a7b64a2d2520047bfc9248fdda834c9cc2c0c9e89826355c7a6ae16fe11179")
        );
    }
}
