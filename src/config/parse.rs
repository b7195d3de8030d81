//! Reading settings' values: durations (`500ms`, `5s`, `5m`, `2h`, `5d`),
//! lists of them, and crash points.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::faults::CrashPoint;

/// Parses `500ms`, `5s`, `5m`, `2h`, `5d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 500ms, 5s, 5m, 2h or 5d ({e})"))
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(super) fn duration_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    let list: Result<Vec<_>, _> = s.split(',').map(parse_duration).collect();
    let list = list.map_err(serde::de::Error::custom)?;
    if list.iter().any(Duration::is_zero) {
        return Err(serde::de::Error::custom("every delay must be longer than 0"));
    }
    Ok(list)
}

pub(super) fn crash_points<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CrashPoint>, D::Error> {
    let s = String::deserialize(d)?;
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            CrashPoint::parse(p).ok_or_else(|| {
                let known: Vec<&str> = CrashPoint::ALL.iter().map(|c| c.as_str()).collect();
                serde::de::Error::custom(format!("unknown fault point {p:?}; known: {}", known.join(", ")))
            })
        })
        .collect()
}
