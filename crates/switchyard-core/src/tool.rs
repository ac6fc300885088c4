//! The rules of tools: how an executor or a synchronous hook presents itself to AI agents
//! (over MCP) — a name the agent calls it by, what it is for, and the JSON Schema of its
//! arguments, which every call is checked against before anything runs.

use crate::error::CoreError;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest tool name (the MCP specification's bound).
pub const MAX_TOOL_NAME: usize = 128;
/// Longest tool description.
pub const MAX_TOOL_DESCRIPTION: usize = 4000;
/// Largest input schema, as JSON text.
pub const MAX_TOOL_SCHEMA_BYTES: usize = 64 * 1024;

/// A tool as its owner declares it; what is left out comes from the owner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolDraft {
    pub name: Option<String>,
    pub description: Option<String>,
    pub input_schema: Option<Value>,
}

/// A checked tool: a valid name, a description, and an input schema that compiles and
/// describes an object (tool arguments are always an object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    name: String,
    description: String,
    input_schema: Value,
}

/// What a tool is filled in from when its draft leaves something out.
pub struct ToolDefaults<'a> {
    /// The owner's name (used when it is a valid tool name).
    pub name: &'a str,
    pub description: &'a str,
    /// The owner's own input schema, if it has one.
    pub input_schema: Option<&'a Value>,
}

/// Whether `s` may name a tool: 1–128 characters of ASCII letters, digits, `_`, `-` and `.`.
pub fn is_valid_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOOL_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Tool {
    /// Checks a declared tool, filling what it leaves out from its owner.
    pub fn define(draft: ToolDraft, defaults: ToolDefaults) -> Result<Tool, CoreError> {
        let name = match draft.name {
            Some(n) => n,
            None if is_valid_tool_name(defaults.name) => defaults.name.to_string(),
            None => {
                return Err(CoreError::invalid(format!(
                    "`tool.name` is required: `{}` is not a valid tool name (1–{MAX_TOOL_NAME} characters of letters, digits, _ - .)",
                    defaults.name
                )));
            }
        };
        if !is_valid_tool_name(&name) {
            return Err(CoreError::invalid(format!(
                "`tool.name` must be 1–{MAX_TOOL_NAME} characters of letters, digits, _ - . (not `{name}`)"
            )));
        }
        let description = draft
            .description
            .unwrap_or_else(|| defaults.description.to_string());
        if description.trim().is_empty() {
            return Err(CoreError::invalid(
                "`tool.description` is required: an agent chooses a tool by what it says it does",
            ));
        }
        if description.chars().count() > MAX_TOOL_DESCRIPTION {
            return Err(CoreError::invalid(format!(
                "`tool.description` must be at most {MAX_TOOL_DESCRIPTION} characters"
            )));
        }
        let input_schema = draft
            .input_schema
            .or_else(|| defaults.input_schema.cloned())
            .unwrap_or_else(|| serde_json::json!({"type": "object"}));
        if input_schema.to_string().len() > MAX_TOOL_SCHEMA_BYTES {
            return Err(CoreError::invalid(format!(
                "`tool.input_schema` must be at most {} KiB of JSON",
                MAX_TOOL_SCHEMA_BYTES / 1024
            )));
        }
        if input_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(CoreError::invalid(
                "`tool.input_schema` must describe an object (`\"type\": \"object\"`): a tool's arguments are an object",
            ));
        }
        Schema::compile(&input_schema)
            .map_err(|e| CoreError::invalid(format!("`tool.input_schema`: {e}")))?;
        Ok(Tool {
            name,
            description,
            input_schema,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults<'a>(name: &'a str, description: &'a str) -> ToolDefaults<'a> {
        ToolDefaults {
            name,
            description,
            input_schema: None,
        }
    }

    #[test]
    fn a_tool_takes_what_it_leaves_out_from_its_owner() {
        let t = Tool::define(ToolDraft::default(), defaults("lookup", "Finds a contract"))
            .expect("valid");
        assert_eq!(t.name(), "lookup");
        assert_eq!(t.description(), "Finds a contract");
        assert_eq!(t.input_schema(), &json!({"type": "object"}));
        let owned = json!({"type": "object", "required": ["id"]});
        let from_hook = Tool::define(
            ToolDraft::default(),
            ToolDefaults {
                input_schema: Some(&owned),
                ..defaults("hook", "d")
            },
        )
        .expect("valid");
        assert_eq!(from_hook.input_schema(), &owned);
    }

    #[test]
    fn bad_tools_are_refused_with_the_reason() {
        let cases = [
            (
                ToolDraft::default(),
                defaults("erp:lookup", "d"),
                "tool.name",
            ),
            (
                ToolDraft {
                    name: Some("has space".into()),
                    ..Default::default()
                },
                defaults("x", "d"),
                "tool.name",
            ),
            (
                ToolDraft {
                    name: Some("a".repeat(129)),
                    ..Default::default()
                },
                defaults("x", "d"),
                "tool.name",
            ),
            (ToolDraft::default(), defaults("x", "  "), "description"),
            (
                ToolDraft {
                    input_schema: Some(json!({"type": "string"})),
                    ..Default::default()
                },
                defaults("x", "d"),
                "object",
            ),
            (
                ToolDraft {
                    input_schema: Some(json!({"type": "object", "properties": {"a": {"type": 5}}})),
                    ..Default::default()
                },
                defaults("x", "d"),
                "input_schema",
            ),
        ];
        for (draft, defaults, needle) in cases {
            let e = Tool::define(draft.clone(), defaults).expect_err(&format!("{draft:?}"));
            assert!(e.to_string().contains(needle), "{draft:?}: {e}");
        }
    }
}
