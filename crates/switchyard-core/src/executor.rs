//! Executors: reusable integration logic (custom code or an API call) and the record of a run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Languages a `code` executor may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One version of an executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    pub org_id: String,
    pub name: String,
    pub version: u32,
    pub description: String,
    pub spec: ExecutorSpec,
    /// The parameter definition: input property → dot path into the event envelope
    /// (`{"ticketId": "data.ticketId", "event": "type"}`). Without it the whole event is the input.
    pub parameters: Option<BTreeMap<String, String>>,
    /// Retries when run as an event hook (`None`: the delivery retry policy; `Some(0)`: none).
    pub retries: Option<u32>,
    pub created_at: i64,
}

impl Executor {
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
                    let mut cur = Some(envelope);
                    for seg in path.split('.') {
                        cur = cur.and_then(|v| match v {
                            Value::Object(m) => m.get(seg),
                            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                            _ => None,
                        });
                    }
                    out.insert(name.clone(), cur.cloned().unwrap_or(Value::Null));
                }
                Value::Object(out)
            }
        }
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
    pub id: String,
    pub org_id: String,
    pub executor: String,
    pub version: u32,
    /// The event that caused the run (event hooks), if any.
    pub event_id: Option<String>,
    pub status: RunStatus,
    pub input: Value,
    pub output: Option<Value>,
    /// Why the run failed, in words (syntax error, timeout, memory limit, …).
    pub error: Option<String>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
    pub duration_ms: f64,
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_definition_picks_event_properties() {
        let ex = Executor {
            org_id: "o".into(),
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
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["type"], "code");
        assert_eq!(v["language"], "python");
        assert_eq!(serde_json::from_value::<ExecutorSpec>(v).expect("back"), s);
    }
}
