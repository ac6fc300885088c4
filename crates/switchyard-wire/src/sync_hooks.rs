//! Synchronous hooks: the definition in and out, and a call's answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::SyncHook;
use switchyard_core::sync_hook::SyncHookDefinition;
use switchyard_core::time::to_rfc3339;
use utoipa::ToSchema;

/// A hook's whole definition (a PUT replaces it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncHookIn {
    /// A ready-made definition (`GET /v1/hook-presets`) that fills the description and schemas
    /// left out, e.g. `erp-contract-by-id`.
    pub preset: Option<String>,
    pub description: Option<String>,
    /// The executor a call runs (its latest version).
    pub executor: String,
    /// How long a caller waits at most, 1–60000 ms (default 10000); the run is stopped past it
    /// and the caller gets 504.
    pub timeout_ms: Option<u32>,
    /// Reuse a successful answer for equal input (canonical JSON) this many seconds, 1–86400;
    /// absent, every call runs the executor. Failures are never cached.
    pub cache_ttl_s: Option<u32>,
    /// JSON Schema the input must pass (else 422, nothing runs).
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    /// JSON Schema the executor's output must pass (else 502 naming the violation).
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
    /// Offer this hook to AI agents as a tool of the organization's MCP server; the name,
    /// description and input schema default to the hook's.
    pub tool: Option<crate::tools::ToolIn>,
}

impl From<SyncHookIn> for SyncHookDefinition {
    fn from(h: SyncHookIn) -> Self {
        SyncHookDefinition {
            preset: h.preset,
            description: h.description,
            executor: h.executor,
            timeout_ms: h.timeout_ms,
            cache_ttl_s: h.cache_ttl_s,
            input_schema: h.input_schema,
            output_schema: h.output_schema,
            tool: h.tool.map(Into::into),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SyncHookOut {
    pub name: String,
    pub description: String,
    pub executor: String,
    pub timeout_ms: u32,
    pub cache_ttl_s: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    /// How AI agents see it, if it is offered to them as a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::tools::ToolOut>,
}

impl From<SyncHook> for SyncHookOut {
    fn from(h: SyncHook) -> Self {
        SyncHookOut {
            name: h.name,
            description: h.description,
            executor: h.executor,
            timeout_ms: h.timeout_ms,
            cache_ttl_s: h.cache_ttl_s,
            input_schema: h.input_schema,
            output_schema: h.output_schema,
            created_at: to_rfc3339(h.created_at),
            updated_at: to_rfc3339(h.updated_at),
            tool: h.tool.as_ref().map(crate::tools::ToolOut::from),
        }
    }
}

/// A ready-made hook definition.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HookPresetOut {
    pub name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[schema(value_type = Object)]
    pub output_schema: Value,
}

impl From<switchyard_core::hook_presets::HookPreset> for HookPresetOut {
    fn from(p: switchyard_core::hook_presets::HookPreset) -> Self {
        HookPresetOut {
            name: p.name.into(),
            description: p.description.into(),
            input_schema: p.input_schema,
            output_schema: p.output_schema,
        }
    }
}

/// A call's answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HookCallOut {
    /// What the executor returned.
    #[schema(value_type = Object)]
    pub output: Value,
    /// The run that produced it (`GET /v1/orgs/{org}/runs/{id}`); for a cache hit, the earlier
    /// run.
    pub run_id: String,
    /// `hit` (from the cache: nothing ran), `miss` (ran, now cached) or `off` (the hook does
    /// not cache).
    pub cache: String,
    /// Time spent answering, in milliseconds.
    pub duration_ms: f64,
}
