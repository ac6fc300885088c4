//! Executors: running integration logic — an API call, or custom code in a sandboxed child
//! process — with the SDK every language shares, and tracing each run.
//!
//! [`Runner::run`] takes one executor version and an input and returns the [`Run`] record,
//! already stored. Failure of user code is data: a syntax error, an exception, a timeout, a
//! memory blow-up or a killed child all end as a failed run with a reason, never as an error of
//! the hub. The [`Broker`] answers the SDK calls of one run: HTTP requests made by the hub (so
//! the egress guard applies), the organization's key-value storage, secrets, calls to other
//! executors (UDFs) and log lines.

mod api_call;
pub mod channel;
mod error;
mod js;
mod process;
pub mod sandbox;
pub mod sandbox_exec;

pub use error::ExecError;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::executor::{Executor, ExecutorSpec, Language, Run, RunStatus};
use switchyard_core::hooks::{HookResult, HookRunner};
use switchyard_core::ids::new_id;
use switchyard_core::template::{self, Segment};
use switchyard_core::time::now_ms;
use switchyard_egress::Clients;
use switchyard_store::{Store, StoreError};

/// Deepest chain of executors calling executors.
pub const MAX_CALL_DEPTH: usize = 5;
/// Most bytes of an HTTP response body (`sdk.http`, `api_call`); a larger one is an error.
pub const HTTP_BODY_CAP: usize = 1024 * 1024;
/// Longest key of the key-value storage.
const MAX_STORAGE_KEY_BYTES: usize = 512;
/// Most bytes of a run's output (as JSON), of its logs, and of its stdout and stderr; more fails
/// the run.
pub const OUTPUT_CAP: usize = 1024 * 1024;

/// What a run produced, before it becomes a [`Run`].
#[derive(Debug, Default)]
pub struct Outcome {
    pub output: Option<Value>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    pub stderr: String,
    pub exit: Option<i32>,
}

impl Outcome {
    pub fn failed(error: String) -> Outcome {
        Outcome {
            error: Some(error),
            ..Default::default()
        }
    }
    pub fn succeeded(output: Value) -> Outcome {
        Outcome {
            output: Some(output),
            ..Default::default()
        }
    }
}

/// Runs executors. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<RunnerInner>,
}

struct RunnerInner {
    store: Arc<dyn Store>,
    clients: Clients,
    isolation: sandbox::Isolation,
    /// JavaScript workers; `None` when no worker program was given.
    js: Option<js::JsPool>,
    /// The uids of concurrent child-process runs.
    slots: sandbox::UidSlots,
    /// The operator's largest private temporary directory per run (MiB).
    max_tmp_mb: u32,
}

impl Runner {
    /// `js_worker` is the switchyard binary, whose `js-worker` subcommand runs JavaScript.
    /// `max_tmp_mb` is the operator's bound on a run's private temporary directory.
    pub fn new(
        store: Arc<dyn Store>,
        clients: Clients,
        isolation: sandbox::Isolation,
        js_worker: Option<std::path::PathBuf>,
        max_tmp_mb: u32,
    ) -> Runner {
        let js = js_worker.map(|p| js::JsPool::new(p, isolation.clone()));
        Runner {
            inner: Arc::new(RunnerInner {
                store,
                clients,
                isolation,
                js,
                slots: sandbox::UidSlots::new(sandbox::DEFAULT_SLOTS),
                max_tmp_mb: max_tmp_mb.clamp(1, sandbox::MAX_TMP_MB),
            }),
        }
    }

    pub fn isolation(&self) -> &sandbox::Isolation {
        &self.inner.isolation
    }

    /// The operator's largest private temporary directory per run (MiB).
    pub fn max_tmp_mb(&self) -> u32 {
        self.inner.max_tmp_mb
    }

    /// Whether this instance can run `language`; `Err` says what is missing.
    pub fn language_available(&self, language: Language) -> Result<(), ExecError> {
        match language {
            Language::Javascript if self.inner.js.is_none() => Err(ExecError::Unavailable(
                "JavaScript is not available on this instance (no worker program)".into(),
            )),
            Language::Javascript => Ok(()),
            other => process::interpreter_available(other).map_err(ExecError::Unavailable),
        }
    }

    /// The languages this instance can run, for `/readyz`.
    pub fn languages(&self) -> Vec<&'static str> {
        [
            Language::Javascript,
            Language::Python,
            Language::Php,
            Language::Node,
        ]
        .into_iter()
        .filter(|l| self.language_available(*l).is_ok())
        .map(Language::as_str)
        .collect()
    }

    /// Runs `ex` with `input` within its timeout, stores the run and returns it.
    pub async fn run(
        &self,
        ex: &Executor,
        input: Value,
        event_id: Option<&str>,
    ) -> Result<Run, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(ex.timeout_ms()));
        self.run_in_chain(ex, input, event_id, vec![ex.name.clone()], deadline)
            .await
    }

    async fn run_in_chain(
        &self,
        ex: &Executor,
        input: Value,
        event_id: Option<&str>,
        chain: Vec<String>,
        deadline: Instant,
    ) -> Result<Run, StoreError> {
        let started = Instant::now();
        let at = now_ms();
        let broker = Broker {
            runner: self,
            org: &ex.org_id,
            chain,
            deadline,
            seen_secrets: Mutex::new(Vec::new()),
        };
        let own = Duration::from_millis(u64::from(ex.timeout_ms()));
        let timeout = own.min(deadline.saturating_duration_since(Instant::now()));
        let outcome = match &ex.spec {
            ExecutorSpec::ApiCall {
                method,
                url,
                headers,
                ..
            } => api_call::run(&broker, method, url, headers, &input, timeout).await,
            ExecutorSpec::Code {
                language: Language::Javascript,
                source,
                memory_mb,
                ..
            } => match &self.inner.js {
                Some(pool) => pool.run(source, *memory_mb, &input, timeout, &broker).await,
                None => Outcome::failed(
                    "JavaScript is not available on this instance (no worker program)".into(),
                ),
            },
            ExecutorSpec::Code {
                language,
                source,
                memory_mb,
                tmp_mb,
                ..
            } => {
                let spec = process::RunSpec {
                    language: *language,
                    source,
                    memory_mb: *memory_mb,
                    tmp_mb: (*tmp_mb).min(self.inner.max_tmp_mb),
                    input: &input,
                    timeout,
                };
                process::run(&self.inner.isolation, &self.inner.slots, spec, &broker).await
            }
        };
        let outcome = cap_outcome(outcome);
        let mut run = Run {
            id: new_id("run"),
            org_id: ex.org_id.clone(),
            executor: ex.name.clone(),
            version: ex.version,
            event_id: event_id.map(str::to_string),
            status: if outcome.error.is_none() {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            input,
            output: if outcome.error.is_none() {
                outcome.output
            } else {
                None
            },
            error: outcome.error,
            logs: outcome.logs,
            stderr: outcome.stderr,
            exit: outcome.exit,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            at,
        };
        broker.redact(&mut run);
        self.inner.store.record_run(&run).await?;
        Ok(run)
    }
}

/// Answers the SDK calls of one run.
pub struct Broker<'a> {
    runner: &'a Runner,
    org: &'a str,
    /// Executor names from the outermost caller to this run (for the depth limit and cycles).
    chain: Vec<String>,
    /// The caller's deadline: time spent in called executors counts against it.
    deadline: Instant,
    /// Secret values this run used, to be redacted from its trace.
    seen_secrets: Mutex<Vec<String>>,
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
    async fn handle(
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
                self.runner
                    .inner
                    .store
                    .kv_set(self.org, &key, &value)
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
                        StoreError::NotFound => format!("executor `{name}` does not exist"),
                        other => other.to_string(),
                    })?;
                let mut chain = self.chain.clone();
                chain.push(name.clone());
                let input = req.get("input").cloned().unwrap_or(Value::Null);
                let run =
                    Box::pin(
                        self.runner
                            .run_in_chain(&ex, input, None, chain, self.deadline),
                    )
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

    /// Replaces every secret value this run used by `[redacted]` in its trace.
    fn redact(&self, run: &mut Run) {
        let secrets = self
            .seen_secrets
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        for secret in secrets.iter().filter(|s| s.len() >= 3) {
            let hide = |t: &str| t.replace(secret.as_str(), "[redacted]");
            run.stderr = hide(&run.stderr);
            run.error = run.error.as_deref().map(hide);
            for l in &mut run.logs {
                *l = hide(l);
            }
            if let Some(out) = &run.output {
                let text = out.to_string();
                if text.contains(secret.as_str()) {
                    run.output = serde_json::from_str(&hide(&text))
                        .ok()
                        .or(Some(Value::String("[redacted]".into())));
                }
            }
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

/// Fails a run whose output or logs are larger than [`OUTPUT_CAP`], keeping the logs that fit.
fn cap_outcome(mut outcome: Outcome) -> Outcome {
    let mut used = 0;
    let fit = outcome
        .logs
        .iter()
        .take_while(|l| {
            used += l.len() + 1;
            used <= OUTPUT_CAP
        })
        .count();
    if fit < outcome.logs.len() {
        outcome.logs.truncate(fit);
        outcome.error.get_or_insert_with(|| {
            format!(
                "output too large: the logs are longer than {} MiB",
                OUTPUT_CAP >> 20
            )
        });
    }
    let out_len = outcome.output.as_ref().map_or(0, |v| v.to_string().len());
    if out_len > OUTPUT_CAP {
        outcome.output = None;
        outcome.error.get_or_insert_with(|| {
            format!(
                "output too large: the output is {out_len} bytes as JSON, more than {} MiB",
                OUTPUT_CAP >> 20
            )
        });
    }
    outcome
}

/// Event hooks: the delivery engine runs a subscription's executor through this.
impl HookRunner for Runner {
    fn run_hook<'a>(
        &'a self,
        org: &'a str,
        executor: &'a str,
        event: &'a switchyard_core::Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HookResult> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let fail = |error: String, permanent: bool, retries: Option<u32>| HookResult {
                run_id: None,
                error: Some(error),
                permanent,
                retries,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            };
            let ex = match self.inner.store.get_executor(org, executor).await {
                Ok(ex) => ex,
                Err(StoreError::NotFound) => {
                    return fail(format!("executor `{executor}` does not exist"), true, None);
                }
                Err(e) => {
                    return fail(
                        format!("cannot load executor `{executor}`: {e}"),
                        false,
                        None,
                    );
                }
            };
            let input = ex.input_for_event(&event.envelope());
            match self.run(&ex, input, Some(&event.id)).await {
                Ok(run) => HookResult {
                    error: match run.status {
                        RunStatus::Succeeded => None,
                        RunStatus::Failed => {
                            Some(run.error.unwrap_or_else(|| "the run failed".into()))
                        }
                    },
                    run_id: Some(run.id),
                    permanent: false,
                    retries: ex.retries,
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                },
                Err(e) => fail(format!("cannot record the run: {e}"), false, ex.retries),
            }
        })
    }
}
