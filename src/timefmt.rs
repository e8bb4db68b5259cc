//! Timestamps as DECNET's SQLite columns hold them (SQLAlchemy `DATETIME`:
//! `YYYY-MM-DD HH:MM:SS.ffffff`, UTC).

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const FULL: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]");
const SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const ISO_T: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// Formats a UTC time.
pub fn format(t: OffsetDateTime) -> String {
    t.format(&FULL).unwrap_or_default()
}

/// The current UTC time, formatted.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Formats Unix seconds.
pub fn format_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(format)
        .unwrap_or_default()
}

/// Parses a stored timestamp (naive values are UTC) into Unix seconds.
pub fn parse_unix(s: &str) -> Option<i64> {
    let s = s.trim();
    let head = s.split('.').next().unwrap_or(s);
    let head = head.trim_end_matches('Z');
    PrimitiveDateTime::parse(head, &SECONDS)
        .or_else(|_| PrimitiveDateTime::parse(head, &ISO_T))
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = format_unix(1_700_000_000);
        assert_eq!(s, "2023-11-14 22:13:20.000000");
        assert_eq!(parse_unix(&s), Some(1_700_000_000));
        assert_eq!(parse_unix("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_unix("2023-11-14 22:13:20"), Some(1_700_000_000));
        assert_eq!(parse_unix("yesterday"), None);
        assert_eq!(now().len(), 26);
    }
}
