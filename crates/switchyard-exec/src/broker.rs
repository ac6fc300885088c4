//! The broker: answers the SDK calls of one run (HTTP through the egress guard, storage,
//! secrets, calls of other executors, logs) and how an answer goes on the wire.

use crate::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_core::executor::RunStatus;
use switchyard_core::ids::OrgId;
use switchyard_core::template::{self, Segment};
use switchyard_store::StoreError;

/// Answers the SDK calls of one run.
pub struct Broker<'a> {
    pub(crate) runner: &'a Runner,
    pub(crate) org: &'a OrgId,
    /// Executor names from the outermost caller to this run (for the depth limit and cycles).
    pub(crate) chain: Vec<String>,
    /// The caller's deadline: time spent in called executors counts against it.
    pub(crate) deadline: Instant,
    /// Fires when the outermost caller no longer waits: every run of the chain stops.
    pub(crate) cancel: tokio_util::sync::CancellationToken,
    /// Secret values this run used, to be redacted from its trace.
    pub(crate) seen_secrets: Mutex<Vec<String>>,
}

impl Broker<'_> {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    async fn secret(&self, name: &str) -> Result<String, ExecError> {
        match self.runner.inner.store.get_secret(self.org, name).await {
            Ok(Some(v)) => {
                if let Ok(mut s) = self.seen_secrets.lock() {
                    s.push(v.clone());
                }
                Ok(v)
            }
            Ok(None) => Err(ExecError::Invalid(format!("secret `{name}` is not set"))),
            Err(e) => Err(ExecError::Store(e)),
        }
    }

    /// Replaces every `{{secret.NAME}}` in `text`; a missing secret is an error.
    pub async fn fill_secrets(&self, text: &str) -> Result<String, ExecError> {
        let mut out = String::new();
        for seg in template::parse(text).map_err(|e| format!("{e} in a header value"))? {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Placeholder(name) => {
                    let secret = name.strip_prefix("secret.").ok_or_else(|| {
                        format!("`{{{{{name}}}}}` in a header: only {{{{secret.NAME}}}} may be used there")
                    })?;
                    out.push_str(&self.secret(secret).await?);
                }
            }
        }
        Ok(out)
    }

    /// Makes an HTTP request on behalf of the code, through the egress guard.
    #[allow(clippy::too_many_arguments)]
    pub async fn http(
        &self,
        method: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        query: &[(String, String)],
        json_body: Option<&Value>,
        text_body: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, ExecError> {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("`{method}` is not an HTTP method"))?;
        let mut parsed =
            reqwest::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
        if !query.is_empty() {
            parsed.query_pairs_mut().extend_pairs(query);
        }
        self.runner.inner.clients.check_url(&parsed)?;
        let mut req = self
            .runner
            .inner
            .clients
            .client(false)
            .request(method, parsed)
            .timeout(timeout);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(j) = json_body {
            req = req.json(j);
        } else if let Some(t) = text_body {
            req = req.body(t.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            ExecError::Upstream(if e.is_timeout() {
                "timeout: the request did not complete in time".to_string()
            } else {
                switchyard_egress::error_chain(&e)
            })
        })?;
        let status = resp.status().as_u16();
        let resp_headers: serde_json::Map<String, Value> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.to_string(), Value::String(v.to_string())))
            })
            .collect();
        let bytes = read_body_capped(resp, HTTP_BODY_CAP).await?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let parsed_json = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
        Ok(json!({"status": status, "headers": resp_headers, "body": body, "json": parsed_json}))
    }

    /// One SDK request: `{"op": …, …}` → the value to answer, or an error message.
    pub(crate) async fn handle(
        &self,
        req: &Value,
        logs: &mut Vec<String>,
        result: &mut Option<Value>,
    ) -> Result<Value, ExecError> {
        let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
        let need = |k: &str| s(k).ok_or_else(|| format!("`{k}` is required"));
        // Storage keys are names, not payloads.
        if let Some(key) = req.get("key").and_then(Value::as_str)
            && key.len() > MAX_STORAGE_KEY_BYTES
        {
            return Err(ExecError::Invalid(format!(
                "a storage key is at most {MAX_STORAGE_KEY_BYTES} bytes"
            )));
        }
        match req.get("op").and_then(Value::as_str).unwrap_or("") {
            "log" => {
                if logs.len() < 1000 {
                    logs.push(
                        s("message")
                            .unwrap_or_default()
                            .chars()
                            .take(8192)
                            .collect(),
                    );
                }
                Ok(Value::Null)
            }
            "result" => {
                *result = Some(req.get("value").cloned().unwrap_or(Value::Null));
                Ok(Value::Null)
            }
            "secret" => self.secret(&need("name")?).await.map(Value::String),
            "storage.get" => self
                .runner
                .inner
                .store
                .kv_get(self.org, &need("key")?)
                .await
                .map(|v| v.unwrap_or(Value::Null))
                .map_err(ExecError::from),
            "storage.set" => {
                let key = need("key")?;
                let value = req.get("value").cloned().unwrap_or(Value::Null);
                if value.to_string().len() > 256 * 1024 {
                    return Err(ExecError::Invalid(
                        "a stored value is at most 256 KiB".into(),
                    ));
                }
                let quota = self.runner.inner.shares.limits(self.org.as_str()).kv_bytes;
                self.runner
                    .inner
                    .store
                    .kv_set(self.org, &key, &value, quota)
                    .await
                    .map(|_| Value::Null)
                    .map_err(ExecError::from)
            }
            "storage.delete" => self
                .runner
                .inner
                .store
                .kv_delete(self.org, &need("key")?)
                .await
                .map(Value::Bool)
                .map_err(ExecError::from),
            "http" => {
                let mut headers = BTreeMap::new();
                if let Some(Value::Object(h)) = req.get("headers") {
                    for (k, v) in h {
                        let text = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        headers.insert(k.clone(), self.fill_secrets(&text).await?);
                    }
                }
                let query: Vec<(String, String)> = match req.get("query") {
                    Some(Value::Object(q)) => q
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let json_body = req.get("json").filter(|v| !v.is_null());
                let text_body = req.get("body").and_then(Value::as_str);
                let timeout = self.remaining().min(Duration::from_secs(30));
                self.http(
                    &need("method")?,
                    &need("url")?,
                    &headers,
                    &query,
                    json_body,
                    text_body,
                    timeout,
                )
                .await
            }
            "call" => {
                let name = need("executor")?;
                if self.chain.len() >= MAX_CALL_DEPTH {
                    return Err(ExecError::Invalid(format!(
                        "call depth limit ({MAX_CALL_DEPTH}) reached: {} → {name}",
                        self.chain.join(" → ")
                    )));
                }
                if self.chain.contains(&name) {
                    return Err(ExecError::Invalid(format!(
                        "call cycle: {} → {name}",
                        self.chain.join(" → ")
                    )));
                }
                let ex = self
                    .runner
                    .inner
                    .store
                    .get_executor(self.org, &name)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => format!("executor `{name}` does not exist"),
                        other => other.to_string(),
                    })?;
                let mut chain = self.chain.clone();
                chain.push(name.clone());
                let input = req.get("input").cloned().unwrap_or(Value::Null);
                let call = crate::runner::Call {
                    event_id: None,
                    hook: None,
                    chain,
                    deadline: self.deadline,
                    cancel: self.cancel.clone(),
                };
                let run = Box::pin(self.runner.run_in_chain(&ex, input, call))
                    .await
                    .map_err(|e| e.to_string())?;
                match run.status {
                    RunStatus::Succeeded => Ok(run.output.unwrap_or(Value::Null)),
                    RunStatus::Failed => Err(ExecError::Upstream(format!(
                        "`{name}` failed ({}): {}",
                        run.id,
                        run.error.unwrap_or_default()
                    ))),
                }
            }
            other => Err(ExecError::Invalid(format!(
                "unknown SDK operation `{other}`"
            ))),
        }
    }
}

/// One SDK answer as the wire carries it: `{"ok": true, "value"}` or `{"ok": false, "error"}`
/// and a newline (the same for a child's socket and a JavaScript worker's stdin).
pub(crate) fn sdk_answer(answer: Result<Value, ExecError>) -> Vec<u8> {
    let msg = match answer {
        Ok(v) => json!({"ok": true, "value": v}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let mut bytes = msg.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Reads a response body up to `cap` bytes, chunk by chunk; a longer body is an error (the rest
/// is never read, the connection is dropped).
async fn read_body_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ExecError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ExecError::Upstream(format!(
            "response too large: more than {} MiB",
            cap >> 20
        )));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > cap {
                    return Err(ExecError::Upstream(format!(
                        "response too large: more than {} MiB",
                        cap >> 20
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => {
                return Err(ExecError::Upstream(
                    "timeout: the response did not complete in time".into(),
                ));
            }
            Err(e) => {
                return Err(ExecError::Upstream(format!(
                    "reading the response failed: {e}"
                )));
            }
        }
    }
}
