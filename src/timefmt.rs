//! Timestamps on the wire: RFC 3339 in UTC, whole seconds (`2026-11-21T19:54:00Z`).

use serde::Serializer;
use time::OffsetDateTime;
use time::macros::format_description;

/// Formats a timestamp the way every payd answer shows it.
pub fn format(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

/// Parses RFC 3339 input (any offset).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// `#[serde(serialize_with = "timefmt::ser")]`
pub fn ser<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*t))
}

/// `#[serde(serialize_with = "timefmt::ser_opt")]`
pub fn ser_opt<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_in_utc() {
        let t = parse("2026-11-21T20:54:00.987+01:00").unwrap();
        assert_eq!(format(t), "2026-11-21T19:54:00Z");
        assert!(parse("yesterday").is_none());
    }
}
