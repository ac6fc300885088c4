//! Executors: definitions in and out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::executor::*;
use switchyard_core::time::to_rfc3339;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorIn {
    /// `code` or `api_call`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// code: `javascript` (embedded QuickJS), `node` (Node.js as a child process), `python` or `php`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// code: the program; defines `main(input, sdk)` or reads JSON on stdin and prints JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Wall-clock limit, 1–60000 ms (default 10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// code: memory limit, 16–2048 MB (default 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// code: size of the run's private temporary directory (its working directory), 1 MiB up
    /// to the operator's maximum (default 64, `--max-run-tmp-mb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmp_mb: Option<u32>,
    /// code: the role the code has when it calls the hub's own API with `sdk.api`, as its
    /// organization: `viewer` (the default) or `publisher`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_role: Option<String>,
    /// api_call: GET, POST, PUT, PATCH or DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// api_call: URL, may contain `{{input.NAME}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// api_call: header values may contain `{{secret.NAME}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Which event properties become the input: `{"ticketId": "data.ticketId"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
    /// Retries when run as an event hook (`0`: none; absent: the delivery retry policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Offer this executor to AI agents as a tool of the organization's MCP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::tools::ToolIn>,
    /// code: packages its code uses, of its language's ecosystem: `{"pip": ["requests==2.32.3"]}`
    /// (Python), `{"npm": ["lodash@4.17.21"]}` (Node.js), `{"composer": {"vendor/pkg": "^1.2"}}`
    /// (PHP). Installed when the version is saved; runs wait for nothing and fail until it is
    /// `ready` (`packages_install`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub packages: Option<switchyard_core::packages::PackageSet>,
}

/// Where the install of a version's packages stands.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PackagesInstallOut {
    /// `installing`, `ready` or `failed`.
    pub state: String,
    /// ready: what was resolved, the version's lock (it is installed again from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// failed: what the installer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl From<&switchyard_core::packages::PackageState> for PackagesInstallOut {
    fn from(s: &switchyard_core::packages::PackageState) -> Self {
        use switchyard_core::packages::PackageState;
        match s {
            PackageState::Installing => PackagesInstallOut {
                state: "installing".into(),
                lock: None,
                output: None,
            },
            PackageState::Ready { lock, .. } => PackagesInstallOut {
                state: "ready".into(),
                lock: Some(lock.clone()),
                output: None,
            },
            PackageState::Failed { output } => PackagesInstallOut {
                state: "failed".into(),
                lock: None,
                output: Some(output.clone()),
            },
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExecutorOut {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// The definition: `type` and its fields.
    #[schema(value_type = Object)]
    pub spec: Value,
    pub parameters: Option<BTreeMap<String, String>>,
    pub retries: Option<u32>,
    pub created_at: String,
    /// How AI agents see it, if it is offered to them as a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::tools::ToolOut>,
    /// The packages it declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub packages: Option<switchyard_core::packages::PackageSet>,
    /// Where their install stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_install: Option<PackagesInstallOut>,
}

impl From<&Executor> for ExecutorOut {
    fn from(e: &Executor) -> Self {
        ExecutorOut {
            name: e.name().to_string(),
            version: e.version,
            description: e.description.clone(),
            spec: serde_json::to_value(e.spec()).unwrap_or(Value::Null),
            parameters: e.parameters().cloned(),
            retries: e.retries,
            created_at: to_rfc3339(e.created_at),
            tool: e.tool().map(crate::tools::ToolOut::from),
            packages: e.packages().cloned(),
            packages_install: e.packages_state.as_ref().map(PackagesInstallOut::from),
        }
    }
}

impl From<&ExecutorIn> for SpecDraft {
    fn from(b: &ExecutorIn) -> Self {
        SpecDraft {
            kind: b.kind.clone(),
            language: b.language.clone(),
            source: b.source.clone(),
            timeout_ms: b.timeout_ms,
            memory_mb: b.memory_mb,
            tmp_mb: b.tmp_mb,
            api_role: b.api_role.clone(),
            method: b.method.clone(),
            url: b.url.clone(),
            headers: b.headers.clone(),
        }
    }
}
