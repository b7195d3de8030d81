//! Parsing request input into checked values, field by field, so every error
//! names its field. Shared by HTTP bodies, query strings and AMQP commands.

use std::collections::HashMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::error::{ApiError, ErrorCode};
use crate::db::paging::Cursor;
use crate::domain::{Amount, money::AmountError};
use crate::timefmt;

/// Largest `limit` of a list.
pub const MAX_LIMIT: i64 = 100;
/// Limits of metadata (contract §4).
pub const METADATA_MAX_KEYS: usize = 50;
/// Longest metadata key, in characters.
pub const METADATA_KEY_MAX: usize = 40;
/// Longest metadata value, in characters.
pub const METADATA_VALUE_MAX: usize = 500;

/// A JSON object's fields, taken one by one.
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Accepts only a JSON object whose keys are all in `allowed`; a missing
    /// body counts as `{}`.
    pub fn new(body: Value, allowed: &[&str]) -> Result<Self, ApiError> {
        let map = match body {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(ApiError::new(400, ErrorCode::ParameterInvalid, "the request body must be a JSON object")),
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::unknown_field(unknown));
        }
        // Postgres text cannot hold NUL; refuse it here rather than fail there.
        if let Some((name, _)) = map.iter().find(|(_, v)| holds_nul(v)) {
            return Err(ApiError::invalid(name.as_str(), format!("{name} must not contain NUL characters")));
        }
        Ok(Self { map })
    }

    /// True when the field is given as JSON `null` (a request to clear it).
    pub fn is_null(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(Value::is_null)
    }

    /// Takes a field; JSON `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// A required positive amount in minor units.
    pub fn amount(&mut self, name: &str) -> Result<Amount, ApiError> {
        self.optional_amount(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An optional positive amount in minor units.
    pub fn optional_amount(&mut self, name: &str) -> Result<Option<Amount>, ApiError> {
        let Some(v) = self.take(name) else { return Ok(None) };
        let n = match &v {
            Value::Number(n) => n,
            _ => return Err(ApiError::invalid(name, format!("{name} must be a positive integer"))),
        };
        let minor = match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i,
            (None, Some(_)) => i64::MAX,
            _ => return Err(ApiError::invalid(name, format!("{name} must be a positive integer"))),
        };
        Amount::new(minor).map(Some).map_err(|e| match e {
            AmountError::NotPositive => ApiError::invalid(name, format!("{name} must be a positive integer")),
            AmountError::TooLarge => ApiError::invalid(name, format!("{name} {e}")),
        })
    }

    /// A required non-empty string of at most `max` characters.
    pub fn string(&mut self, name: &str, max: usize) -> Result<String, ApiError> {
        match self.optional_string(name, max)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(ApiError::invalid(name, format!("{name} must not be empty"))),
            None => Err(ApiError::missing(name)),
        }
    }

    /// An optional string of at most `max` characters.
    pub fn optional_string(&mut self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
            Some(Value::String(_)) => Err(ApiError::invalid(name, format!("{name} must be at most {max} characters"))),
            Some(_) => Err(ApiError::invalid(name, format!("{name} must be a string"))),
        }
    }

    /// A required JSON object whose keys are all in `allowed`, taken field
    /// by field in turn.
    pub fn object(&mut self, name: &str, allowed: &[&str]) -> Result<Fields, ApiError> {
        match self.take(name) {
            None => Err(ApiError::missing(name)),
            Some(v @ Value::Object(_)) => {
                Fields::new(v, allowed).map_err(|e| ApiError::invalid(name, format!("{name}: {}", e.message)))
            }
            Some(_) => Err(ApiError::invalid(name, format!("{name} must be an object"))),
        }
    }

    /// An optional boolean.
    pub fn optional_bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ApiError::invalid(name, format!("{name} must be a boolean"))),
        }
    }

    /// An optional integer within `min..=max`.
    pub fn optional_integer(&mut self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some_and(|v| (min..=max).contains(&v)) => Ok(n.as_i64()),
            Some(_) => Err(ApiError::invalid(name, format!("{name} must be an integer from {min} to {max}"))),
        }
    }

    /// A required array of strings.
    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        self.optional_strings(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An optional array of strings.
    pub fn optional_strings(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::invalid(name, format!("{name} must be an array of strings"))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::invalid(name, format!("{name} must be an array of strings"))),
        }
    }

    /// Metadata: at most 50 keys of at most 40 characters, string values of
    /// at most 500 characters. Absent = `{}`.
    pub fn metadata(&mut self, name: &str) -> Result<Value, ApiError> {
        self.metadata_map(name, false).map(Value::Object)
    }

    /// A metadata update: as [`Fields::metadata`], and a `null` value means
    /// "remove this key". Absent = no change.
    pub fn metadata_patch(&mut self, name: &str) -> Result<Map<String, Value>, ApiError> {
        self.metadata_map(name, true)
    }

    fn metadata_map(&mut self, name: &str, nulls: bool) -> Result<Map<String, Value>, ApiError> {
        let map = match self.take(name) {
            None => return Ok(Map::new()),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(ApiError::invalid(name, format!("{name} must be an object"))),
        };
        if map.len() > METADATA_MAX_KEYS {
            return Err(ApiError::invalid(name, format!("{name} may have at most {METADATA_MAX_KEYS} keys")));
        }
        for (k, v) in &map {
            if k.is_empty() || k.chars().count() > METADATA_KEY_MAX {
                return Err(ApiError::invalid(name, format!("{name} keys must be 1 to {METADATA_KEY_MAX} characters")));
            }
            match v {
                Value::String(s) if s.chars().count() <= METADATA_VALUE_MAX => {}
                Value::Null if nulls => {}
                Value::String(_) => {
                    return Err(ApiError::invalid(
                        name,
                        format!("{name} values must be at most {METADATA_VALUE_MAX} characters ({k})"),
                    ));
                }
                _ => return Err(ApiError::invalid(name, format!("{name} values must be strings ({k})"))),
            }
        }
        Ok(map)
    }
}

fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The paging parameters of every list.
const PAGING: [&str; 4] = ["limit", "offset", "starting_after", "ending_before"];

/// The answer to a page whose cursor is not one of the list's (`what`, e.g.
/// "payment"), named by the cursor's parameter.
pub fn unknown_cursor<Id>(cursor: &Cursor<Id>, what: &str) -> ApiError {
    let name = match cursor {
        Cursor::EndingBefore(_) => "ending_before",
        _ => "starting_after",
    };
    ApiError::invalid(name, format!("{name} is not a {what} of this list (merchant and mode)"))
}

/// Query-string parameters, checked against the route's allowed names.
pub struct Query {
    map: HashMap<String, String>,
}

impl Query {
    /// Accepts only parameters in `allowed`.
    pub fn new(map: HashMap<String, String>, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::unknown_field(unknown));
        }
        if let Some((name, _)) = map.iter().find(|(_, v)| v.contains('\0')) {
            return Err(ApiError::invalid(name.as_str(), format!("{name} must not contain NUL characters")));
        }
        Ok(Self { map })
    }

    /// A list's parameters: the paging ones and `filters`.
    pub fn list(map: HashMap<String, String>, filters: &[&str]) -> Result<Self, ApiError> {
        Self::new(map, &PAGING.iter().chain(filters).copied().collect::<Vec<_>>())
    }

    /// True when the parameter was given (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A parameter's value; empty counts as absent.
    pub fn string(&mut self, name: &str) -> Option<String> {
        self.map.remove(name).filter(|v| !v.is_empty())
    }

    /// A parameter whose value must be one of a typed set (`parse`), e.g. a
    /// status filter; `names` lists the values for the error message.
    pub fn parsed<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        names: impl Fn() -> String,
    ) -> Result<Option<T>, ApiError> {
        match self.string(name) {
            None => Ok(None),
            Some(v) => {
                parse(&v).map(Some).ok_or_else(|| ApiError::invalid(name, format!("{name} must be one of {}", names())))
            }
        }
    }

    /// `limit`: 1 to 100, default 10.
    pub fn limit(&mut self) -> Result<i64, ApiError> {
        match self.string("limit") {
            None => Ok(10),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid("limit", format!("limit must be an integer from 1 to {MAX_LIMIT}"))),
            },
        }
    }

    /// `offset`: 0 or more, default 0.
    pub fn offset(&mut self) -> Result<i64, ApiError> {
        match self.string("offset") {
            None => Ok(0),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n),
                _ => Err(ApiError::invalid("offset", "offset must be a non-negative integer")),
            },
        }
    }

    /// Where a page starts: `offset`, or one cursor, `starting_after` or
    /// `ending_before`, an id `parse` accepts (`kind` names it for errors,
    /// e.g. "a payment id (pay_…)"). The routes of lists allow all three.
    pub fn cursor<Id>(&mut self, parse: impl Fn(&str) -> Option<Id>, kind: &str) -> Result<Cursor<Id>, ApiError> {
        let offset_given = self.has("offset");
        let offset = self.offset()?;
        let id =
            |name: &str, v: String| parse(&v).ok_or_else(|| ApiError::invalid(name, format!("{name} must be {kind}")));
        match (self.string("starting_after"), self.string("ending_before")) {
            (Some(a), None) if !offset_given => Ok(Cursor::StartingAfter(id("starting_after", a)?)),
            (None, Some(b)) if !offset_given => Ok(Cursor::EndingBefore(id("ending_before", b)?)),
            (None, None) => Ok(Cursor::Offset(offset)),
            _ => Err(ApiError::invalid("starting_after", "use one of starting_after, ending_before and offset")),
        }
    }

    /// An RFC 3339 timestamp.
    pub fn timestamp(&mut self, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
        match self.string(name) {
            None => Ok(None),
            Some(v) => timefmt::parse(&v)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name, format!("{name} must be an RFC 3339 timestamp"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::new(v, &["amount", "name", "metadata", "flag"]).unwrap()
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = Fields::new(json!({"amount": 1, "amout": 2}), &["amount"]).err().unwrap();
        assert_eq!((err.status, err.param.as_deref()), (400, Some("amout")));
        assert!(Fields::new(json!([1]), &[]).is_err());
        assert!(Fields::new(json!("x"), &[]).is_err());
        let err = Fields::new(json!({"amount": {"k": "a\u{0}b"}}), &["amount"]).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("amount"));
    }

    #[test]
    fn amounts_are_positive_integers() {
        for bad in [json!(0), json!(-1), json!(10.5), json!("100"), json!(true), json!(1e300), json!(u64::MAX)] {
            let err = fields(json!({"amount": bad})).amount("amount").unwrap_err();
            assert_eq!((err.status, err.param.as_deref()), (400, Some("amount")), "{bad}");
        }
        assert_eq!(fields(json!({"amount": 1000})).amount("amount").unwrap().get(), 1000);
        assert_eq!(fields(json!({})).amount("amount").unwrap_err().code, ErrorCode::ParameterMissing);
    }

    #[test]
    fn strings_count_characters() {
        let s = "é".repeat(5);
        assert_eq!(fields(json!({"name": s})).optional_string("name", 5).unwrap().unwrap().chars().count(), 5);
        assert!(fields(json!({"name": "é".repeat(6)})).optional_string("name", 5).is_err());
        assert!(fields(json!({"name": 5})).optional_string("name", 5).is_err());
        assert!(fields(json!({"name": ""})).string("name", 5).is_err());
    }

    #[test]
    fn metadata_limits() {
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(fields(json!({"metadata": many})).metadata("metadata").is_err());
        assert!(fields(json!({"metadata": {"k".repeat(41): "v"}})).metadata("metadata").is_err());
        assert!(fields(json!({"metadata": {"k": "v".repeat(501)}})).metadata("metadata").is_err());
        assert!(fields(json!({"metadata": {"k": 1}})).metadata("metadata").is_err());
        assert!(fields(json!({"metadata": {"k": "v".repeat(500)}})).metadata("metadata").is_ok());
        assert_eq!(fields(json!({})).metadata("metadata").unwrap(), json!({}));
    }

    #[test]
    fn list_paging_is_bounded() {
        let q =
            |k: &str, v: &str| Query::new(HashMap::from([(k.to_owned(), v.to_owned())]), &["limit", "offset"]).unwrap();
        assert!(q("limit", "0").limit().is_err());
        assert!(q("limit", "101").limit().is_err());
        assert!(q("limit", "x").limit().is_err());
        assert_eq!(q("limit", "100").limit().unwrap(), 100);
        assert!(q("offset", "-1").offset().is_err());
        assert!(Query::new(HashMap::from([("sort".into(), "x".into())]), &["limit"]).is_err());
    }
}
