//! Event data schemas: JSON Schema documents compiled once and checked on every publish.
//!
//! `pattern` and `patternProperties` run on the linear-time `regex` engine, never a
//! backtracking one: a tenant's schema cannot make a publish take time exponential in the size of
//! the data. Patterns that need backtracking (look-around, back-references) are refused when the
//! schema is registered, with the pattern named.

use serde_json::Value;

/// A compiled JSON Schema.
pub struct Schema(jsonschema::Validator);

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema(…)")
    }
}

impl Schema {
    /// Compiles a schema document; the error says what is wrong with it.
    pub fn compile(doc: &Value) -> Result<Schema, crate::CoreError> {
        jsonschema::options()
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20),
            )
            .build(doc)
            .map(Schema)
            .map_err(|e| {
                crate::CoreError::Invalid(format!("invalid JSON Schema: {e} (patterns run on a linear-time engine: look-around and back-references are not supported)"))
            })
    }

    /// `Err` names the first failing location as a JSON pointer into the event's `data`
    /// and what failed there.
    pub fn validate(&self, data: &Value) -> Result<(), SchemaViolation> {
        self.validate_at(data, "/data")
    }

    /// Like [`Schema::validate`], for a document found at `root` (a JSON pointer such as
    /// `/input`), which the violation's path starts with.
    pub fn validate_at(&self, doc: &Value, root: &str) -> Result<(), SchemaViolation> {
        match self.0.iter_errors(doc).next() {
            None => Ok(()),
            Some(e) => Err(SchemaViolation {
                path: format!("{root}{}", e.instance_path()),
                message: e.to_string(),
            }),
        }
    }
}

/// Where and how event data broke its type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer from the event root, e.g. `/data/ticketId`.
    pub path: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_name_their_path() {
        let s = Schema::compile(&json!({
            "type": "object", "required": ["ticketId"],
            "properties": {"ticketId": {"type": "integer"}}
        }))
        .expect("compiles");
        assert!(s.validate(&json!({"ticketId": 4})).is_ok());
        let v = s.validate(&json!({"ticketId": "x"})).unwrap_err();
        assert_eq!(v.path, "/data/ticketId");
        let v = s.validate(&json!({})).unwrap_err();
        assert_eq!(v.path, "/data");
        assert!(v.message.contains("ticketId"), "{}", v.message);
        assert!(Schema::compile(&json!({"type": 7})).is_err());
    }

    #[test]
    fn backtracking_patterns_are_refused_and_linear_ones_are_fast() {
        let err = Schema::compile(
            &json!({"properties": {"a": {"type": "string", "pattern": "^(?=.*x)(a+)+$"}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("(?=.*x)"), "{err}");
        let s = Schema::compile(
            &json!({"properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}),
        )
        .expect("a nested quantifier is fine on a linear engine");
        let evil = format!("{}!", "a".repeat(50_000));
        assert!(s.validate(&json!({"a": evil})).is_err());
    }
}
