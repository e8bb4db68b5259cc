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

/// The current UTC time, formatted. Tags are stamped with it, once per
/// event that fires, so it is kept cheap: each thread formats the date and
/// time of day once per second and only the microseconds on each call.
pub fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_parts(since.as_secs() as i64, since.subsec_micros())
}

/// `format` of Unix seconds plus microseconds, through the per-thread cache.
fn format_parts(secs: i64, micros: u32) -> String {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1 = OffsetDateTime::from_unix_timestamp(secs)
                .ok()
                .and_then(|t| t.format(&SECONDS).ok())
                .unwrap_or_default();
            cached.0 = secs;
        }
        let mut out = String::with_capacity(cached.1.len() + 7);
        out.push_str(&cached.1);
        out.push('.');
        let mut digits = [b'0'; 6];
        let mut rest = micros.min(999_999);
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
        out
    })
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

    proptest::proptest! {
        #[test]
        fn the_cached_formatter_agrees_with_the_time_crate(
            secs in 0i64..4_102_444_800,
            micros in 0u32..1_000_000,
            again in proptest::bool::ANY,
        ) {
            if again {
                // A cached second, then a different one.
                format_parts(secs, 0);
            }
            let t = OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(secs) * 1_000_000_000 + i128::from(micros) * 1000,
            )
            .unwrap();
            proptest::prop_assert_eq!(format_parts(secs, micros), format(t));
        }
    }
}
