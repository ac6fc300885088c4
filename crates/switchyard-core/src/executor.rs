//! Executors: reusable integration logic (custom code or an API call) and the record of a run.

use crate::CoreError;
use crate::path::DotPath;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Languages a `code` executor may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Javascript,
    Python,
    Php,
    Node,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Javascript => "javascript",
            Language::Python => "python",
            Language::Php => "php",
            Language::Node => "node",
        }
    }
}

/// Default and largest wall-clock limit of a code run.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Default and largest memory limit of a code run.
pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const MAX_MEMORY_MB: u32 = 2048;
/// Default and largest size of a code run's private temporary directory (its working
/// directory, a tmpfs of its own); the operator may set a lower maximum.
pub const DEFAULT_TMP_MB: u32 = 64;
pub const MAX_TMP_MB: u32 = 1024;

fn default_tmp_mb() -> u32 {
    DEFAULT_TMP_MB
}

/// What an executor does: the part of its definition that is versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutorSpec {
    Code {
        language: Language,
        source: String,
        timeout_ms: u32,
        memory_mb: u32,
        /// Size of the private temporary directory (versions stored before it existed: 64).
        #[serde(default = "default_tmp_mb")]
        tmp_mb: u32,
        /// The role its code has when it calls the hub's own API (`sdk.api`).
        #[serde(default)]
        api_role: ApiRole,
    },
    ApiCall {
        method: String,
        /// May contain `{{input.NAME}}` (URL-encoded on substitution).
        url: String,
        /// Values may contain `{{secret.NAME}}`.
        headers: BTreeMap<String, String>,
        timeout_ms: u32,
    },
}

/// One version of an executor. Its name, spec and parameters are checked when it is made
/// ([`Executor::define`]) and read through methods; the store rebuilds one it saved with
/// [`Executor::stored`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    pub org_id: crate::ids::OrgId,
    pub(crate) name: String,
    pub version: u32,
    pub description: String,
    pub(crate) spec: ExecutorSpec,
    /// The parameter definition: input property → dot path into the event envelope
    /// (`{"ticketId": "data.ticketId", "event": "type"}`). Without it the whole event is the input.
    pub(crate) parameters: Option<BTreeMap<String, String>>,
    /// Retries when run as an event hook (`None`: the delivery retry policy; `Some(0)`: none).
    pub retries: Option<u32>,
    pub created_at: i64,
    /// How AI agents see it over MCP, if it is offered to them as a tool.
    #[serde(default)]
    pub(crate) tool: Option<crate::tool::Tool>,
    /// The packages its code declares (its language's ecosystem), if any.
    #[serde(default)]
    pub(crate) packages: Option<crate::packages::PackageSet>,
    /// Where the install of those packages stands (`None` without packages).
    #[serde(default)]
    pub packages_state: Option<crate::packages::PackageState>,
}

/// An executor version as the store keeps it, already checked when it was saved.
#[derive(Debug, Clone)]
pub struct StoredExecutor {
    pub org_id: crate::ids::OrgId,
    pub name: String,
    pub version: u32,
    pub description: String,
    pub spec: ExecutorSpec,
    pub parameters: Option<BTreeMap<String, String>>,
    pub retries: Option<u32>,
    pub created_at: i64,
    pub tool: Option<crate::tool::Tool>,
    pub packages: Option<crate::packages::PackageSet>,
    pub packages_state: Option<crate::packages::PackageState>,
}

impl Executor {
    /// An executor version read back from the store (checked when it was saved).
    pub fn stored(s: StoredExecutor) -> Executor {
        Executor {
            org_id: s.org_id,
            name: s.name,
            version: s.version,
            description: s.description,
            spec: s.spec,
            parameters: s.parameters,
            retries: s.retries,
            created_at: s.created_at,
            tool: s.tool,
            packages: s.packages,
            packages_state: s.packages_state,
        }
    }
    /// This definition as version `version`, saved at `at`.
    pub fn numbered(self, version: u32, at: i64) -> Executor {
        Executor {
            version,
            created_at: at,
            ..self
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn spec(&self) -> &ExecutorSpec {
        &self.spec
    }
    /// How AI agents see it, if it is offered to them as a tool.
    pub fn tool(&self) -> Option<&crate::tool::Tool> {
        self.tool.as_ref()
    }
    /// The packages its code declares.
    pub fn packages(&self) -> Option<&crate::packages::PackageSet> {
        self.packages.as_ref()
    }
    /// This executor with `packages` declared, checked against its language; a version with
    /// packages starts `installing`.
    pub fn with_packages(
        self,
        packages: Option<crate::packages::PackageSet>,
    ) -> Result<Executor, CoreError> {
        let Some(set) = packages else {
            return Ok(Executor {
                packages: None,
                packages_state: None,
                ..self
            });
        };
        let ExecutorSpec::Code { language, .. } = &self.spec else {
            return Err(CoreError::invalid("`packages` belong to `code` executors"));
        };
        set.check(*language)?;
        Ok(Executor {
            packages: Some(set),
            packages_state: Some(crate::packages::PackageState::Installing),
            ..self
        })
    }
    /// This executor offered to AI agents as `tool`, checked against the executor: its name
    /// and description are the defaults.
    pub fn with_tool(self, tool: Option<crate::tool::ToolDraft>) -> Result<Executor, CoreError> {
        let tool = tool
            .map(|draft| {
                crate::tool::Tool::define(
                    draft,
                    crate::tool::ToolDefaults {
                        name: &self.name,
                        description: &self.description,
                        input_schema: None,
                    },
                )
            })
            .transpose()?;
        Ok(Executor { tool, ..self })
    }
    /// Input property → dot path into the event; `None`: the whole event is the input.
    pub fn parameters(&self) -> Option<&BTreeMap<String, String>> {
        self.parameters.as_ref()
    }

    /// Checks a definition and makes the executor `name` of `org` it defines, before the store
    /// numbers its version. Its spec is checked already ([`ExecutorSpec::parse`]); whether its
    /// code compiles is the runner's to say.
    pub fn define(
        org: &crate::ids::OrgId,
        name: &str,
        description: String,
        spec: ExecutorSpec,
        parameters: Option<BTreeMap<String, String>>,
        retries: Option<u32>,
    ) -> Result<Executor, CoreError> {
        if !crate::ids::is_valid_name(name, 100) {
            return Err(CoreError::invalid(
                "executor names are 1–100 characters of letters, digits and -_.:@",
            ));
        }
        if let Some(params) = &parameters
            && params.values().any(|p| DotPath::parse(p).is_none())
        {
            return Err(CoreError::invalid(
                "each parameter is a dot path into the event, e.g. `data.ticketId`",
            ));
        }
        Ok(Executor {
            org_id: org.clone(),
            name: name.to_string(),
            version: 0,
            description,
            spec,
            parameters,
            retries,
            created_at: 0,
            tool: None,
            packages: None,
            packages_state: None,
        })
    }

    /// The role its code has when it calls the hub's own API (`api_call` executors run no
    /// code: viewer).
    pub fn api_role(&self) -> ApiRole {
        match &self.spec {
            ExecutorSpec::Code { api_role, .. } => *api_role,
            ExecutorSpec::ApiCall { .. } => ApiRole::Viewer,
        }
    }

    pub fn timeout_ms(&self) -> u32 {
        match &self.spec {
            ExecutorSpec::Code { timeout_ms, .. } | ExecutorSpec::ApiCall { timeout_ms, .. } => {
                *timeout_ms
            }
        }
    }

    /// The input of a run caused by an event: the parameter definition applied to its envelope.
    pub fn input_for_event(&self, envelope: &Value) -> Value {
        match &self.parameters {
            None => envelope.clone(),
            Some(params) => {
                let mut out = serde_json::Map::new();
                for (name, path) in params {
                    let value = DotPath::parse(path).and_then(|p| p.lookup(envelope).cloned());
                    out.insert(name.clone(), value.unwrap_or(Value::Null));
                }
                Value::Object(out)
            }
        }
    }
}

/// Why a run failed, as a kind its caller can act on (a timeout is answered 504, no room 429);
/// the run's `error` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunFailure {
    /// The code failed: it threw, exited non-zero, did not compile, or answered what is not
    /// JSON; for an API call, the API answered an error or what is not JSON.
    Code,
    /// It ran past its timeout (or its caller's deadline) and was stopped; for an API call,
    /// the API did not answer in time.
    Timeout,
    /// It needed more memory than its limit.
    Memory,
    /// Its output or its logs were larger than a run may give.
    OutputLimit,
    /// Its caller went away, and it was stopped.
    Cancelled,
    /// The organization's share, or the hub, had no room to start it in time.
    NoRoom,
    /// It could not run, or its process died: the language is not available here, the
    /// sandbox could not be set up, a worker broke, a remote API could not be reached.
    Crashed,
}

impl RunFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RunFailure::Code => "code",
            RunFailure::Timeout => "timeout",
            RunFailure::Memory => "memory",
            RunFailure::OutputLimit => "output_limit",
            RunFailure::Cancelled => "cancelled",
            RunFailure::NoRoom => "no_room",
            RunFailure::Crashed => "crashed",
        }
    }
    pub fn parse(s: &str) -> Option<RunFailure> {
        [
            RunFailure::Code,
            RunFailure::Timeout,
            RunFailure::Memory,
            RunFailure::OutputLimit,
            RunFailure::Cancelled,
            RunFailure::NoRoom,
            RunFailure::Crashed,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

/// The trace of one executor run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: crate::ids::RunId,
    pub org_id: crate::ids::OrgId,
    pub executor: String,
    pub version: u32,
    /// The event that caused the run (event hooks), if any.
    pub event_id: Option<crate::ids::EventId>,
    pub status: RunStatus,
    pub input: Value,
    pub output: Option<Value>,
    /// Why the run failed, in words (syntax error, timeout, memory limit, …).
    pub error: Option<String>,
    /// What kind of failure that was (`None` for a run that succeeded, and for runs stored
    /// before kinds were).
    #[serde(default)]
    pub failure: Option<RunFailure>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
    pub duration_ms: f64,
    pub at: i64,
    /// The synchronous hook whose call made the run, if a call did.
    #[serde(default)]
    pub hook: Option<String>,
}

/// The role an executor's code has when it calls the hub's own API (`sdk.api`), as its
/// organization: at most `publisher`, so code never administers its organization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Reads: events, their traces, the catalog.
    #[default]
    Viewer,
    /// Reads, and publishes events.
    Publisher,
}

impl ApiRole {
    pub fn parse(s: &str) -> Result<ApiRole, CoreError> {
        match s {
            "viewer" => Ok(ApiRole::Viewer),
            "publisher" => Ok(ApiRole::Publisher),
            other => Err(CoreError::invalid(format!(
                "`api_role` must be `viewer` or `publisher`, not `{other}`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Viewer => "viewer",
            ApiRole::Publisher => "publisher",
        }
    }

    /// The caller's role it gives.
    pub fn role(self) -> crate::auth::Role {
        match self {
            ApiRole::Viewer => crate::auth::Role::Viewer,
            ApiRole::Publisher => crate::auth::Role::Publisher,
        }
    }
}

/// An executor definition as submitted, before [`ExecutorSpec::parse`] checks it.
#[derive(Debug, Clone, Default)]
pub struct SpecDraft {
    /// `code` or `api_call`.
    pub kind: String,
    pub language: Option<String>,
    pub source: Option<String>,
    pub timeout_ms: Option<u32>,
    pub memory_mb: Option<u32>,
    pub tmp_mb: Option<u32>,
    pub method: Option<String>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    /// `viewer` (the default) or `publisher` (code only).
    pub api_role: Option<String>,
}

/// What this instance allows an executor.
pub struct SpecLimits<'a> {
    /// Where `api_call` URLs may point.
    pub policy: &'a crate::egress::EgressPolicy,
    /// The operator's largest private `/tmp` per run (MiB).
    pub max_tmp_mb: u32,
    /// Whether a language can run here; `Err` says what is missing.
    pub language_available: &'a dyn Fn(Language) -> Result<(), CoreError>,
}

impl ExecutorSpec {
    /// Checks a submitted definition against the rules and this instance's limits.
    pub fn parse(d: SpecDraft, limits: &SpecLimits) -> Result<ExecutorSpec, CoreError> {
        let timeout_ms = d.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(CoreError::invalid(format!(
                "`timeout_ms` must be 1–{MAX_TIMEOUT_MS}"
            )));
        }
        match d.kind.as_str() {
            "code" => {
                if d.method.is_some() || d.url.is_some() || d.headers.is_some() {
                    return Err(CoreError::invalid(
                        "`method`, `url` and `headers` belong to `api_call` executors",
                    ));
                }
                let language = match d.language.as_deref() {
                    Some("python") => Language::Python,
                    Some("php") => Language::Php,
                    Some("javascript") => Language::Javascript,
                    Some("node") => Language::Node,
                    Some(other) => {
                        return Err(CoreError::invalid(format!(
                            "`language` must be `javascript`, `node`, `python` or `php`, not `{other}`"
                        )));
                    }
                    None => {
                        return Err(CoreError::invalid(
                            "`language` is required for `code` executors",
                        ));
                    }
                };
                (limits.language_available)(language)?;
                let source = d.source.unwrap_or_default();
                if source.trim().is_empty() || source.len() > 256 * 1024 {
                    return Err(CoreError::invalid("`source` must be 1 byte to 256 KiB"));
                }
                let memory_mb = d.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
                if !(16..=MAX_MEMORY_MB).contains(&memory_mb) {
                    return Err(CoreError::invalid(format!(
                        "`memory_mb` must be 16–{MAX_MEMORY_MB}"
                    )));
                }
                let tmp_mb = d.tmp_mb.unwrap_or(DEFAULT_TMP_MB);
                let max_tmp_mb = limits.max_tmp_mb;
                if !(1..=max_tmp_mb).contains(&tmp_mb) {
                    return Err(CoreError::invalid(format!(
                        "`tmp_mb` must be 1–{max_tmp_mb} on this instance"
                    )));
                }
                let api_role = d
                    .api_role
                    .as_deref()
                    .map(ApiRole::parse)
                    .transpose()?
                    .unwrap_or_default();
                Ok(ExecutorSpec::Code {
                    language,
                    source,
                    timeout_ms,
                    memory_mb,
                    tmp_mb,
                    api_role,
                })
            }
            "api_call" => {
                if d.language.is_some()
                    || d.source.is_some()
                    || d.memory_mb.is_some()
                    || d.tmp_mb.is_some()
                    || d.api_role.is_some()
                {
                    return Err(CoreError::invalid(
                        "`language`, `source`, `memory_mb`, `tmp_mb` and `api_role` belong to `code` executors",
                    ));
                }
                let method = d.method.unwrap_or_default().to_ascii_uppercase();
                if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                    return Err(CoreError::invalid(
                        "`method` must be GET, POST, PUT, PATCH or DELETE",
                    ));
                }
                let url = d.url.ok_or_else(|| {
                    CoreError::invalid("`url` is required for `api_call` executors")
                })?;
                // Check the URL's shape with its placeholders filled by a harmless value.
                let probe = fill_placeholders(&url)?;
                crate::endpoint::check_destination(&probe, limits.policy)?;
                let headers = d.headers.unwrap_or_default();
                for k in headers.keys() {
                    if k.is_empty()
                        || !k
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err(CoreError::invalid(format!(
                            "header name `{k}` is not valid"
                        )));
                    }
                }
                Ok(ExecutorSpec::ApiCall {
                    method,
                    url,
                    headers,
                    timeout_ms,
                })
            }
            other => Err(CoreError::invalid(format!(
                "`type` must be `code` or `api_call`, not `{other}`"
            ))),
        }
    }
}

/// The URL template with each `{{input.NAME}}` replaced by a harmless value, to check its shape.
fn fill_placeholders(url: &str) -> Result<String, CoreError> {
    use crate::template::{Segment, parse};
    let mut out = String::new();
    for seg in parse(url).map_err(|e| CoreError::invalid(format!("`url`: {e}")))? {
        match seg {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder(name) if name.starts_with("input.") => out.push('x'),
            Segment::Placeholder(name) => {
                return Err(CoreError::invalid(format!(
                    "`url`: `{{{{{name}}}}}` is not allowed; only {{{{input.NAME}}}} may be used in a URL"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_definition_picks_event_properties() {
        let ex = Executor {
            org_id: crate::ids::OrgId::stored("o".into()),
            name: "n".into(),
            version: 1,
            description: String::new(),
            spec: ExecutorSpec::ApiCall {
                method: "GET".into(),
                url: "https://x".into(),
                headers: BTreeMap::new(),
                timeout_ms: 1000,
            },
            parameters: Some(BTreeMap::from([
                ("ticketId".to_string(), "data.ticketId".to_string()),
                ("event".to_string(), "type".to_string()),
                ("missing".to_string(), "data.nope".to_string()),
            ])),
            retries: None,
            created_at: 0,
            tool: None,
            packages: None,
            packages_state: None,
        };
        let env = json!({"type": "TicketCreated", "data": {"ticketId": 456}});
        assert_eq!(
            ex.input_for_event(&env),
            json!({"ticketId": 456, "event": "TicketCreated", "missing": null})
        );
        let whole = Executor {
            parameters: None,
            ..ex
        };
        assert_eq!(whole.input_for_event(&env), env);
    }

    #[test]
    fn spec_serializes_with_a_type_tag() {
        let s = ExecutorSpec::Code {
            language: Language::Python,
            source: "x".into(),
            timeout_ms: 1,
            memory_mb: 2,
            tmp_mb: 3,
            api_role: ApiRole::Publisher,
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["type"], "code");
        assert_eq!(v["language"], "python");
        assert_eq!(v["api_role"], "publisher");
        assert_eq!(serde_json::from_value::<ExecutorSpec>(v).expect("back"), s);
        // A version saved before `api_role` existed reads as a viewer.
        let old = json!({"type": "code", "language": "python", "source": "x",
            "timeout_ms": 1, "memory_mb": 2});
        match serde_json::from_value::<ExecutorSpec>(old).expect("old spec") {
            ExecutorSpec::Code { api_role, .. } => assert_eq!(api_role, ApiRole::Viewer),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_api_role_is_viewer_or_publisher_and_only_for_code() {
        assert_eq!(
            ApiRole::parse("publisher").expect("ok").role(),
            crate::auth::Role::Publisher
        );
        assert_eq!(ApiRole::default().role(), crate::auth::Role::Viewer);
        let refused = ApiRole::parse("admin").expect_err("never admin");
        assert!(refused.to_string().contains("viewer"), "{refused}");
    }
}
