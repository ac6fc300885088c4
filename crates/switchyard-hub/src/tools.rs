//! Tools: the executors and synchronous hooks an organization offers to AI agents (its MCP
//! server lists and calls them through here). A call is checked against the tool's input
//! schema before anything runs, then runs like any other run of the organization: in its
//! share, in the trace.

use crate::{CallError, Hub, HubError};
use serde_json::Value;
use switchyard_core::CoreError;
use switchyard_core::executor::RunStatus;
use switchyard_core::ids::{OrgId, RunId};
use switchyard_core::schema::Schema;
use switchyard_core::tool::Tool;
use switchyard_store::{Missing, StoreError};

/// What a tool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolTarget {
    /// The executor's latest version, with the arguments as its input.
    Executor(String),
    /// The synchronous hook (its schemas, timeout and cache), with the arguments as its input.
    Hook(String),
}

/// A tool an organization offers.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    pub tool: Tool,
    pub target: ToolTarget,
    /// What its answers look like, when its owner says (a hook's output schema).
    pub output_schema: Option<Value>,
}

/// What a call of a tool came to: an answer, or a failure in words the agent can act on.
#[derive(Debug, Clone)]
pub struct ToolAnswer {
    /// The run that answered (none when the arguments were refused before anything ran).
    pub run_id: Option<RunId>,
    pub result: Result<Value, String>,
}

impl Hub {
    /// The tools `org` offers: its executors' (latest versions) and its hooks', by name.
    pub async fn tools(&self, org: &OrgId) -> Result<Vec<OfferedTool>, HubError> {
        let store = &self.inner.store;
        let mut out: Vec<OfferedTool> = Vec::new();
        for ex in store.list_executors(org).await? {
            if let Some(tool) = ex.tool() {
                out.push(OfferedTool {
                    tool: tool.clone(),
                    target: ToolTarget::Executor(ex.name().to_string()),
                    output_schema: None,
                });
            }
        }
        for hook in store.list_sync_hooks(org).await? {
            if let Some(tool) = hook.tool {
                out.push(OfferedTool {
                    tool,
                    target: ToolTarget::Hook(hook.name),
                    output_schema: hook.output_schema,
                });
            }
        }
        out.sort_by(|a, b| a.tool.name().cmp(b.tool.name()));
        Ok(out)
    }

    /// Refuses `tool` when another executor or hook of `org` than `owner` offers a tool of
    /// that name: a name calls one thing.
    pub(crate) async fn check_tool_name_free(
        &self,
        org: &OrgId,
        tool: Option<&Tool>,
        owner: &ToolTarget,
    ) -> Result<(), HubError> {
        let Some(tool) = tool else { return Ok(()) };
        let taken = self
            .tools(org)
            .await?
            .into_iter()
            .find(|t| t.tool.name() == tool.name() && &t.target != owner);
        match taken.map(|t| t.target) {
            None => Ok(()),
            Some(ToolTarget::Executor(name)) => Err(CoreError::invalid(format!(
                "`tool.name`: executor `{name}` already offers a tool `{}`",
                tool.name()
            ))
            .into()),
            Some(ToolTarget::Hook(name)) => Err(CoreError::invalid(format!(
                "`tool.name`: hook `{name}` already offers a tool `{}`",
                tool.name()
            ))
            .into()),
        }
    }

    /// Calls tool `name` of `org` with `arguments`. A tool that does not exist is an error;
    /// arguments its schema refuses, and a run that fails, are the answer's failure.
    pub async fn call_tool(
        &self,
        org: &OrgId,
        name: &str,
        arguments: Value,
    ) -> Result<ToolAnswer, HubError> {
        let offered = self
            .tools(org)
            .await?
            .into_iter()
            .find(|t| t.tool.name() == name)
            .ok_or(HubError::Store(StoreError::NotFound(Missing::Tool)))?;
        let schema = Schema::compile(offered.tool.input_schema())?;
        if let Err(v) = schema.validate_at(&arguments, "") {
            return Ok(ToolAnswer {
                run_id: None,
                result: Err(format!(
                    "the arguments fail the tool's input schema at {}: {}",
                    if v.path.is_empty() { "/" } else { &v.path },
                    v.message
                )),
            });
        }
        match offered.target {
            ToolTarget::Executor(executor) => {
                let run = self.run_executor(org, &executor, arguments).await?;
                let result = match run.status {
                    RunStatus::Succeeded => Ok(run.output.unwrap_or(Value::Null)),
                    RunStatus::Failed => {
                        Err(run.error.unwrap_or_else(|| "the run failed".to_string()))
                    }
                };
                Ok(ToolAnswer {
                    run_id: Some(run.id),
                    result,
                })
            }
            ToolTarget::Hook(hook) => match self.call_hook(org, &hook, arguments).await {
                Ok(answer) => Ok(ToolAnswer {
                    run_id: Some(answer.run_id),
                    result: Ok(answer.output),
                }),
                Err(CallError::Store(e)) => Err(e.into()),
                Err(e) => Ok(ToolAnswer {
                    run_id: match &e {
                        CallError::Failed { run_id, .. }
                        | CallError::Timeout { run_id, .. }
                        | CallError::Output { run_id, .. } => Some(run_id.clone()),
                        CallError::Busy { run_id, .. } => run_id.clone(),
                        _ => None,
                    },
                    result: Err(e.to_string()),
                }),
            },
        }
    }
}
