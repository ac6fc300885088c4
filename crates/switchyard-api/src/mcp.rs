//! The organization's MCP server (`/v1/orgs/{org}/mcp`): AI agents list the executors and
//! hooks it offers as tools and call them, over the Streamable HTTP transport of the official
//! Rust SDK (`rmcp`), with the organization's API key as bearer. The protocol is the SDK's;
//! what a tool is and what a call runs are the hub's ([`Hub::tools`], [`Hub::call_tool`]).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Auth;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData as McpError;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, MetaObject, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::Role;
use switchyard_core::ids::OrgId;
use switchyard_hub::{HubError, Missing, OfferedTool, StoreError};
use tower::ServiceExt;

/// Largest JSON-RPC message accepted (a tool's arguments are at most this).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The organization a request was authenticated for, handed from the HTTP handler to the
/// MCP handler in the request's extensions.
#[derive(Clone)]
struct Caller(OrgId);

/// Serves one MCP request of `org`: the key must be the organization's (or the operator's)
/// with a role that may call tools (`publisher` or `admin`).
pub async fn serve(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let org = s.authorize(&p, org, Role::Publisher).await?;
    req.extensions_mut().insert(Caller(org));
    let state = s.clone();
    // Stateless: each request stands alone (the protocol revision of 2026-07-28 has no
    // sessions), so any node answers any request. The bearer key is the protection against
    // other sites, so the Host check for local servers is off.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_MESSAGE_BYTES)
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(Tools(state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let Ok(answer) = service.oneshot(req).await;
    Ok(answer.map(axum::body::Body::new).into_response())
}

/// The MCP handler of one request.
struct Tools(AppState);

fn caller(ctx: &RequestContext<RoleServer>) -> Result<OrgId, McpError> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .map(|c| c.0.clone())
        .ok_or_else(|| McpError::internal_error("the request was not authenticated", None))
}

fn hub_failure(e: HubError) -> McpError {
    match e {
        HubError::Store(StoreError::NotFound(Missing::Tool)) => {
            McpError::invalid_params("no such tool in this organization", None)
        }
        HubError::NoRoom(why) => McpError::internal_error(why, None),
        other => {
            tracing::error!(error = %other, "an MCP request failed");
            McpError::internal_error("the hub could not answer; try again", None)
        }
    }
}

fn object(v: &Value) -> Option<Arc<JsonObject>> {
    v.as_object().map(|o| Arc::new(o.clone()))
}

fn to_mcp(t: &OfferedTool) -> Tool {
    let mut tool = Tool::new(
        t.tool.name().to_string(),
        t.tool.description().to_string(),
        object(t.tool.input_schema()).unwrap_or_default(),
    );
    // An output schema must describe an object (structured content is one).
    tool.output_schema = t
        .output_schema
        .as_ref()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("object"))
        .and_then(object);
    tool
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("switchyard", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The organization's executors and hooks offered as tools. Each call runs once, \
                 in the organization's trace; its output is the structured content.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let org = caller(&ctx)?;
        let tools = self.0.hub.tools(&org).await.map_err(hub_failure)?;
        Ok(ListToolsResult::with_all_items(
            tools.iter().map(to_mcp).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let org = caller(&ctx)?;
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let answer = self
            .0
            .hub
            .call_tool(&org, &request.name, arguments)
            .await
            .map_err(hub_failure)?;
        let mut result = match answer.result {
            Ok(output) => {
                let text = output.to_string();
                // Structured content is an object: any other output is wrapped as `result`.
                let structured = match output {
                    Value::Object(_) => output,
                    other => serde_json::json!({ "result": other }),
                };
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = Some(structured);
                r
            }
            Err(why) => CallToolResult::error(vec![ContentBlock::text(why)]),
        };
        if let Some(run) = answer.run_id {
            let mut meta = JsonObject::new();
            meta.insert("switchyard/run_id".into(), run.as_str().into());
            result.meta = Some(MetaObject(meta));
        }
        Ok(result.into())
    }
}
