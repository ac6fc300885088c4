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
use switchyard_js::protocol::SdkAnswer;
use switchyard_store::StoreError;

/// What a remote server answered to an HTTP request made for a run.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: serde_json::Map<String, Value>,
    /// The body as text (at most [`HTTP_BODY_CAP`] bytes).
    pub body: String,
}

impl HttpResponse {
    /// The answer of `sdk.http`: `{status, headers, body, json}`, `json` the body parsed (or
    /// `null`).
    fn to_sdk(&self) -> Value {
        let parsed = serde_json::from_str::<Value>(&self.body).unwrap_or(Value::Null);
        json!({"status": self.status, "headers": self.headers, "body": self.body, "json": parsed})
    }
}

/// Answers the SDK calls of one run.
pub struct Broker<'a> {
    pub(crate) runner: &'a Runner,
    pub(crate) org: &'a OrgId,
    /// The role the code has when it calls the hub's own API (`sdk.api`).
    pub(crate) api_role: switchyard_core::auth::Role,
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
    ) -> Result<HttpResponse, ExecError> {
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
            if e.is_timeout() {
                ExecError::Timeout("timeout: the request did not complete in time".into())
            } else {
                ExecError::Upstream(switchyard_egress::error_chain(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let headers: serde_json::Map<String, Value> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.to_string(), Value::String(v.to_string())))
            })
            .collect();
        let bytes = read_body_capped(resp, HTTP_BODY_CAP).await?;
        Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// One SDK request as the code sent it (`{"op": …, …}`) → the value to answer, or the
    /// error the code sees. `logs` and `result` collect what `log` and `result` give.
    pub(crate) async fn handle(
        &self,
        req: &Value,
        logs: &mut Vec<String>,
        result: &mut Option<Value>,
    ) -> Result<Value, ExecError> {
        match SdkRequest::parse(req)? {
            SdkRequest::Log { message } => {
                if logs.len() < 1000 {
                    logs.push(message.chars().take(8192).collect());
                }
                Ok(Value::Null)
            }
            SdkRequest::Result { value } => {
                *result = Some(value);
                Ok(Value::Null)
            }
            SdkRequest::Secret { name } => self.secret(&name).await.map(Value::String),
            SdkRequest::StorageGet { key } => self.storage_get(&key).await,
            SdkRequest::StorageSet { key, value } => self.storage_set(&key, &value).await,
            SdkRequest::StorageDelete { key } => self.storage_delete(&key).await,
            SdkRequest::Http(r) => self.sdk_http(r).await,
            SdkRequest::Call { executor, input } => self.call(&executor, input).await,
            SdkRequest::Api { method, path, body } => self.api(&method, &path, body).await,
        }
    }

    /// `sdk.api`: one request to this hub's API as the run's organization with its executor's
    /// role, within what is left of the run's time (30 s at most); answers `{status, body}`
    /// (the body as JSON when it is JSON), whatever the status.
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ExecError> {
        let inner = &self.runner.inner;
        let api = inner.self_api.get();
        let Some((api, addr)) = api.and_then(|a| a.address().map(|addr| (a, addr))) else {
            return Err(ExecError::Invalid(
                "this node serves no API for code to call (`sdk.api` needs a node of role `all` or `api`)".into(),
            ));
        };
        let method = method.to_ascii_uppercase();
        let method = match method.as_str() {
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
                reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|_| format!("`{method}` is not an HTTP method"))?
            }
            _ => {
                return Err(ExecError::Invalid(
                    "`method` must be GET, POST, PUT, PATCH or DELETE".into(),
                ));
            }
        };
        crate::self_api::check_path(path)?;
        let url = crate::self_api::url_for(addr, self.org, path);
        // One credential per call, revoked when it answers (or when this future is dropped).
        struct Revoke<'a>(&'a dyn crate::SelfApi, String);
        impl Drop for Revoke<'_> {
            fn drop(&mut self) {
                self.0.revoke(&self.1);
            }
        }
        let credential = Revoke(api.as_ref(), api.mint(self.org, self.api_role));
        let timeout = self.remaining().min(Duration::from_secs(30));
        let mut req = inner
            .self_client
            .request(method, url)
            .bearer_auth(&credential.1)
            .timeout(timeout);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ExecError::Timeout("timeout: the hub's API did not answer in time".into())
            } else {
                ExecError::Upstream(format!("calling the hub's API failed: {e}"))
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = read_body_capped(resp, HTTP_BODY_CAP).await?;
        drop(credential);
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(serde_json::json!({"status": status, "body": body}))
    }

    async fn storage_get(&self, key: &str) -> Result<Value, ExecError> {
        let store = &self.runner.inner.store;
        Ok(store.kv_get(self.org, key).await?.unwrap_or(Value::Null))
    }

    async fn storage_set(&self, key: &str, value: &Value) -> Result<Value, ExecError> {
        switchyard_core::storage::check_value(value)
            .map_err(|e| ExecError::Invalid(e.to_string()))?;
        let quota = self.runner.inner.shares.limits(self.org.as_str()).kv_bytes;
        let store = &self.runner.inner.store;
        store.kv_set(self.org, key, value, quota).await?;
        Ok(Value::Null)
    }

    async fn storage_delete(&self, key: &str) -> Result<Value, ExecError> {
        let store = &self.runner.inner.store;
        Ok(Value::Bool(store.kv_delete(self.org, key).await?))
    }

    /// `sdk.http`: the request with its headers' `{{secret.NAME}}` filled, within what is left
    /// of the run's time (30 s at most).
    async fn sdk_http(&self, r: HttpRequest) -> Result<Value, ExecError> {
        let mut headers = BTreeMap::new();
        for (k, v) in r.headers {
            headers.insert(k, self.fill_secrets(&v).await?);
        }
        let timeout = self.remaining().min(Duration::from_secs(30));
        let resp = self
            .http(
                &r.method,
                &r.url,
                &headers,
                &r.query,
                r.json.as_ref(),
                r.body.as_deref(),
                timeout,
            )
            .await?;
        Ok(resp.to_sdk())
    }

    /// `sdk.call`: runs executor `name` with `input` in this run's chain (its deadline and
    /// cancellation), within the depth limit and without cycles.
    async fn call(&self, name: &str, input: Value) -> Result<Value, ExecError> {
        if self.chain.len() >= MAX_CALL_DEPTH {
            return Err(ExecError::Invalid(format!(
                "call depth limit ({MAX_CALL_DEPTH}) reached: {} → {name}",
                self.chain.join(" → ")
            )));
        }
        if self.chain.iter().any(|c| c == name) {
            return Err(ExecError::Invalid(format!(
                "call cycle: {} → {name}",
                self.chain.join(" → ")
            )));
        }
        let ex = self
            .runner
            .inner
            .store
            .get_executor(self.org, name)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => format!("executor `{name}` does not exist"),
                other => other.to_string(),
            })?;
        let mut chain = self.chain.clone();
        chain.push(name.to_string());
        let call = crate::runner::Call {
            id: switchyard_core::ids::RunId::generate(),
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
}

/// One SDK call, parsed once from what the code sent (`{"op": "storage.get", "key": …}`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SdkRequest {
    Log {
        message: String,
    },
    Result {
        value: Value,
    },
    Secret {
        name: String,
    },
    StorageGet {
        key: String,
    },
    StorageSet {
        key: String,
        value: Value,
    },
    StorageDelete {
        key: String,
    },
    Http(HttpRequest),
    Call {
        executor: String,
        input: Value,
    },
    /// `sdk.api`: the hub's own API, `path` under `/v1/orgs/{org}`.
    Api {
        method: String,
        path: String,
        body: Option<Value>,
    },
}

/// `sdk.http`'s request: headers may hold `{{secret.NAME}}`, filled when it is made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    json: Option<Value>,
    body: Option<String>,
}

impl SdkRequest {
    /// Reads an SDK call. A member the operation needs and lacks, a storage key longer than
    /// [`switchyard_core::storage::MAX_KEY_BYTES`] or an unknown operation is the error the code sees.
    pub(crate) fn parse(req: &Value) -> Result<SdkRequest, ExecError> {
        let text = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
        let need =
            |k: &str| text(k).ok_or_else(|| ExecError::Invalid(format!("`{k}` is required")));
        // Storage keys are names, not payloads.
        if let Some(key) = req.get("key").and_then(Value::as_str) {
            switchyard_core::storage::check_key(key)
                .map_err(|e| ExecError::Invalid(e.to_string()))?;
        }
        let value = |k: &str| req.get(k).cloned().unwrap_or(Value::Null);
        // Header and query values as text: a string as it is, anything else as its JSON.
        let pairs = |k: &str| -> Vec<(String, String)> {
            match req.get(k) {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        (k.clone(), text)
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        Ok(match req.get("op").and_then(Value::as_str).unwrap_or("") {
            "log" => SdkRequest::Log {
                message: text("message").unwrap_or_default(),
            },
            "result" => SdkRequest::Result {
                value: value("value"),
            },
            "secret" => SdkRequest::Secret {
                name: need("name")?,
            },
            "storage.get" => SdkRequest::StorageGet { key: need("key")? },
            "storage.set" => SdkRequest::StorageSet {
                key: need("key")?,
                value: value("value"),
            },
            "storage.delete" => SdkRequest::StorageDelete { key: need("key")? },
            "http" => SdkRequest::Http(HttpRequest {
                method: need("method")?,
                url: need("url")?,
                headers: pairs("headers"),
                query: pairs("query"),
                json: req.get("json").filter(|v| !v.is_null()).cloned(),
                body: text("body"),
            }),
            "call" => SdkRequest::Call {
                executor: need("executor")?,
                input: value("input"),
            },
            "api" => SdkRequest::Api {
                method: need("method")?,
                path: need("path")?,
                body: req.get("body").filter(|v| !v.is_null()).cloned(),
            },
            other => {
                return Err(ExecError::Invalid(format!(
                    "unknown SDK operation `{other}`"
                )));
            }
        })
    }
}

/// One SDK answer as the wire carries it: `{"ok": true, "value"}` or `{"ok": false, "error"}`
/// and a newline (the same for a child's socket and a JavaScript worker's stdin).
pub(crate) fn sdk_answer(answer: Result<Value, ExecError>) -> Vec<u8> {
    match answer {
        Ok(v) => SdkAnswer::value(v),
        Err(e) => SdkAnswer::error(e.to_string()),
    }
    .line()
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
                return Err(ExecError::Timeout(
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
