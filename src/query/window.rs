//! Time windows and confidence floors shared by every query.

use super::QueryError;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// Which tags a query counts: `created_at` in `[since, until)` and
/// `confidence >= min_confidence`. Times are held in the stored format, so
/// the comparisons are plain text comparisons on an indexed column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub since: Option<String>,
    pub until: Option<String>,
    pub min_confidence: Option<f64>,
}

impl Window {
    /// Parses `--since` / `--until` relative to `now`.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        min_confidence: Option<f64>,
        now: OffsetDateTime,
    ) -> Result<Window, QueryError> {
        Window::parse_as(["--since", "--until"], since, until, min_confidence, now)
    }

    /// Like [`Window::parse`], an error naming the two times as `names`
    /// (e.g. the HTTP query parameters `since` and `until`).
    pub fn parse_as(
        names: [&'static str; 2],
        since: Option<&str>,
        until: Option<&str>,
        min_confidence: Option<f64>,
        now: OffsetDateTime,
    ) -> Result<Window, QueryError> {
        let since = since.map(|s| parse_instant(names[0], s, now)).transpose()?;
        let until = until.map(|s| parse_instant(names[1], s, now)).transpose()?;
        Ok(Window {
            since: since.map(crate::timefmt::format),
            until: until.map(crate::timefmt::format),
            min_confidence,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.min_confidence.is_none()
    }

    /// ` AND …` clauses on the `ttp_tag` columns (qualified by `table`), with
    /// their arguments appended to `args`.
    pub(crate) fn push_sql(
        &self,
        table: &str,
        sql: &mut String,
        args: &mut Vec<rusqlite::types::Value>,
    ) {
        use rusqlite::types::Value;
        if let Some(s) = &self.since {
            sql.push_str(&format!(" AND {table}created_at >= ?"));
            args.push(Value::Text(s.clone()));
        }
        if let Some(u) = &self.until {
            sql.push_str(&format!(" AND {table}created_at < ?"));
            args.push(Value::Text(u.clone()));
        }
        if let Some(c) = self.min_confidence {
            sql.push_str(&format!(" AND {table}confidence >= ?"));
            args.push(Value::Real(c));
        }
    }
}

/// An instant given as RFC 3339 (`2026-11-20T08:00:00Z`, `…+02:00`), a
/// naive time taken as UTC (`2026-11-20T08:00:00`, `2026-11-20 08:00:00`),
/// a date (`2026-11-20`, midnight UTC) or an age before `now` (`7d`,
/// `24h`, `90m`, `1w 2d`).
pub fn parse_instant(
    what: &'static str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, QueryError> {
    let bad = || QueryError::BadTime {
        what,
        value: value.to_string(),
    };
    let v = value.trim();
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(t);
    }
    let naive_t = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let naive_sp = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    for f in [naive_t, naive_sp] {
        if let Ok(t) = PrimitiveDateTime::parse(v, &f) {
            return Ok(t.assume_utc());
        }
    }
    if let Ok(d) = Date::parse(v, &format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        let age = humantime::parse_duration(v).map_err(|_| bad())?;
        let age = time::Duration::try_from(age).map_err(|_| bad())?;
        return now.checked_sub(age).ok_or_else(bad);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn instants_in_every_accepted_form() {
        let now = datetime!(2026-11-29 12:00:00 UTC);
        let p = |s| parse_instant("--since", s, now).unwrap();
        assert_eq!(
            p("2026-11-20T08:00:00Z"),
            datetime!(2026-11-20 08:00:00 UTC)
        );
        assert_eq!(
            p("2026-11-20T10:00:00+02:00"),
            datetime!(2026-11-20 08:00:00 UTC)
        );
        assert_eq!(p("2026-11-20T08:00:00"), datetime!(2026-11-20 08:00:00 UTC));
        assert_eq!(p("2026-11-20 08:00:00"), datetime!(2026-11-20 08:00:00 UTC));
        assert_eq!(p("2026-11-20"), datetime!(2026-11-20 00:00:00 UTC));
        assert_eq!(p("7d"), datetime!(2026-11-22 12:00:00 UTC));
        assert_eq!(p("24h"), datetime!(2026-11-28 12:00:00 UTC));
        assert_eq!(p("90m"), datetime!(2026-11-29 10:30:00 UTC));
        for bad in ["", "yesterday", "7 parsecs", "2026-13-01", "-7d"] {
            let e = parse_instant("--since", bad, now).unwrap_err().to_string();
            assert!(
                e.contains("--since") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn windows_are_stored_format_bounds() {
        let now = datetime!(2026-11-29 12:00:00 UTC);
        let w = Window::parse(Some("1d"), Some("2026-11-29"), Some(0.5), now).unwrap();
        assert_eq!(w.since.as_deref(), Some("2026-11-28 12:00:00.000000"));
        assert_eq!(w.until.as_deref(), Some("2026-11-29 00:00:00.000000"));
        let mut sql = String::new();
        let mut args = Vec::new();
        w.push_sql("t.", &mut sql, &mut args);
        assert_eq!(
            sql,
            " AND t.created_at >= ? AND t.created_at < ? AND t.confidence >= ?"
        );
        assert_eq!(args.len(), 3);
    }
}
