//! An event's own time for the correlation windows, and times in a
//! firing's evidence.

use crate::event::Payload;
use serde_json::Value as Json;

/// The event's own time, in milliseconds: the first of `ts`, `timestamp`,
/// `@timestamp` that is RFC 3339 text or epoch seconds (or milliseconds,
/// for numbers past 10^11).
pub fn event_time_ms(payload: &Payload) -> Option<i64> {
    ["ts", "timestamp", "@timestamp"]
        .iter()
        .find_map(|key| payload.get(*key).and_then(time_ms))
}

/// A time value in milliseconds: RFC 3339 text, or epoch seconds (or
/// milliseconds past 10^11) as a number or as text.
pub fn time_ms(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => {
            time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .or_else(|| s.trim().parse::<f64>().ok().and_then(epoch_ms))
        }
        Json::Number(n) => n.as_f64().and_then(epoch_ms),
        _ => None,
    }
}

/// Epoch seconds (or milliseconds past 10^11) as milliseconds; `None`
/// outside 1970 to 9999, so that window arithmetic never nears `i64`'s
/// ends whatever an event claims.
fn epoch_ms(n: f64) -> Option<i64> {
    const MAX_MS: f64 = 253_402_300_799_999.0;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = if n >= 1e11 { n } else { n * 1000.0 };
    (ms <= MAX_MS).then_some(ms as i64)
}

/// Milliseconds as RFC 3339 text (the number itself if out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times() {
        let mut p = Payload::default();
        p.insert("ts".into(), Json::from("2026-11-20T08:00:01.5Z"));
        assert_eq!(event_time_ms(&p), Some(1_795_161_601_500));
        p.insert("ts".into(), Json::from("not a time"));
        p.insert("@timestamp".into(), Json::from(1_795_161_601_500_i64));
        assert_eq!(event_time_ms(&p), Some(1_795_161_601_500));
        let mut p = Payload::default();
        p.insert("timestamp".into(), Json::from(1_795_161_601.25));
        assert_eq!(event_time_ms(&p), Some(1_795_161_601_250));
        p.insert("timestamp".into(), Json::from(-5));
        assert_eq!(event_time_ms(&p), None);
        p.insert("timestamp".into(), Json::from(1e300));
        assert_eq!(event_time_ms(&p), None);
        p.insert("timestamp".into(), Json::from("99999999999999999999"));
        assert_eq!(event_time_ms(&p), None);
    }
}
