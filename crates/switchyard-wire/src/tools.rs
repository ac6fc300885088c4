//! Tools: how an executor or a synchronous hook is offered to AI agents over MCP, in and out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::tool::{Tool, ToolDraft};
use utoipa::ToSchema;

/// Offers the executor or hook to AI agents as a tool of the organization's MCP server
/// (`/v1/orgs/{org}/mcp`). What is left out comes from its owner: the name (when it is a valid
/// tool name), the description, and for a hook its input schema.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ToolIn {
    /// 1–128 characters of letters, digits, `_`, `-` and `.`, unique in the organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the tool does, for the agent choosing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object); every call is checked against it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
}

impl From<ToolIn> for ToolDraft {
    fn from(t: ToolIn) -> Self {
        ToolDraft {
            name: t.name,
            description: t.description,
            input_schema: t.input_schema,
        }
    }
}

/// A tool as AI agents see it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ToolOut {
    pub name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

impl From<&Tool> for ToolOut {
    fn from(t: &Tool) -> Self {
        ToolOut {
            name: t.name().to_string(),
            description: t.description().to_string(),
            input_schema: t.input_schema().clone(),
        }
    }
}
