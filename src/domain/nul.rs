//! NUL bytes: valid in JSON (`\u0000`), in URLs (`%00`) and in AMQP
//! strings, refused by PostgreSQL's `text` and `jsonb`. Input carrying one
//! is refused where it enters, with the field named, instead of failing as
//! a database error deep inside a use case.

use serde_json::Value;

/// The first top-level field of `value` (`""` for the value itself) whose
/// key or any string inside holds a NUL: the parameter an error names.
pub fn nul_field(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            map.iter().find(|(k, v)| k.contains('\0') || has_nul(v)).map(|(k, _)| k.replace('\0', "\\u0000"))
        }
        other => has_nul(other).then(String::new),
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_field_with_a_nul() {
        assert_eq!(nul_field(&json!({"a": "ok", "b": [1, "x"]})), None);
        assert_eq!(nul_field(&json!({"metadata": {"k\u{0}": "b"}})), Some("metadata".into()));
        assert_eq!(nul_field(&json!({"tags": ["x", "\u{0}"]})), Some("tags".into()));
        assert_eq!(nul_field(&json!({"a\u{0}": 1})), Some("a\\u0000".into()));
        assert_eq!(nul_field(&json!("\u{0}")), Some(String::new()));
    }
}
