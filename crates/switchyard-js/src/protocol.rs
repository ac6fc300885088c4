//! The hub ↔ JavaScript worker protocol, one JSON object per line.
//!
//! Hub → worker: a [`Job`] to start a run (or, with `check`, only to compile its source: a
//! syntax error is the answer's `error`), then an [`SdkAnswer`] for each SDK request. Worker →
//! hub: [`FromWorker::Sdk`] for each SDK call the code makes, and at the end
//! [`FromWorker::Done`]. The SDK answer is the same line a child process reads on its SDK
//! channel.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run for the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub source: String,
    #[serde(default)]
    pub input: Value,
    /// The engine's heap limit, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// The engine's interrupt deadline, ms (the hub kills the worker a little after it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Only compile the source.
    #[serde(default)]
    pub check: bool,
}

fn default_memory_mb() -> u64 {
    128
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// What the worker says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromWorker {
    /// An SDK call of the code (`{"op": …, …}`, as the SDK wrote it); the hub answers with an
    /// [`SdkAnswer`] line.
    Sdk { req: Value },
    /// The run ended: its output, or its error and what kind of failure that was.
    Done {
        output: Option<Value>,
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<Failure>,
    },
}

/// How a run failed in the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The code threw, did not compile, never finished or gave what is not JSON.
    Code,
    /// The engine's interrupt deadline passed.
    Timeout,
    /// The engine ran out of its heap: the worker is not reused after it.
    Memory,
    /// The output was larger than a run may give.
    OutputLimit,
    /// The worker could not set up an engine for the run.
    Crashed,
}

/// The hub's answer to one SDK call: `{"ok": true, "value"}` or `{"ok": false, "error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdkAnswer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SdkAnswer {
    pub fn value(value: Value) -> SdkAnswer {
        SdkAnswer {
            ok: true,
            value: Some(value),
            error: None,
        }
    }
    pub fn error(error: impl Into<String>) -> SdkAnswer {
        SdkAnswer {
            ok: false,
            value: None,
            error: Some(error.into()),
        }
    }
    /// The answer as its line on the wire (JSON and a newline).
    pub fn line(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// One message as its line on the wire.
pub fn line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_lines_are_the_protocols() {
        let answer = |a: SdkAnswer| String::from_utf8(a.line()).expect("utf-8");
        assert_eq!(
            answer(SdkAnswer::value(json!(null))),
            "{\"ok\":true,\"value\":null}\n"
        );
        assert_eq!(
            answer(SdkAnswer::value(json!({"a": 1}))),
            "{\"ok\":true,\"value\":{\"a\":1}}\n"
        );
        assert_eq!(
            answer(SdkAnswer::error("no")),
            "{\"ok\":false,\"error\":\"no\"}\n"
        );
        let sdk: FromWorker =
            serde_json::from_str(r#"{"type":"sdk","req":{"op":"log","message":"hi"}}"#)
                .expect("sdk");
        assert_eq!(
            sdk,
            FromWorker::Sdk {
                req: json!({"op": "log", "message": "hi"})
            }
        );
        let done = FromWorker::Done {
            output: None,
            error: Some("RangeError: out of memory".into()),
            failure: Some(Failure::Memory),
        };
        let text = serde_json::to_string(&done).expect("done");
        assert_eq!(
            text,
            r#"{"type":"done","output":null,"error":"RangeError: out of memory","failure":"memory"}"#
        );
        assert_eq!(
            serde_json::from_str::<FromWorker>(&text).expect("back"),
            done
        );
        let job: Job = serde_json::from_str(r#"{"source":"x","check":true}"#).expect("job");
        assert_eq!(
            (job.memory_mb, job.timeout_ms, job.check),
            (128, 10_000, true)
        );
    }
}
