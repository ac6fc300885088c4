//! `api_call` executors: one HTTP request made by the hub, its JSON answer being the output.
//!
//! A 2xx answer with an empty body is a `null` output.
//! GET and DELETE carry the input as a query string, POST, PUT and PATCH as a JSON body.
//! `{{input.NAME}}` in the URL is replaced by the URL-encoded input property; `{{secret.NAME}}`
//! in a header value by the secret. A missing secret fails the run: it is never sent as text.

use crate::{Broker, ExecError, Outcome, RunFailure};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_core::template::{self, Segment};

/// Replaces `{{input.x}}` in a URL template.
fn fill_url(template: &str, input: &Value) -> Result<String, ExecError> {
    let mut out = String::new();
    for seg in template::parse(template).map_err(|e| format!("{e} in the URL"))? {
        match seg {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder(name) => {
                let key = name.strip_prefix("input.").ok_or_else(|| {
                    format!(
                        "`{{{{{name}}}}}` in the URL: only {{{{input.NAME}}}} may be used there"
                    )
                })?;
                let value = match input.get(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => {
                        return Err(ExecError::Invalid(format!(
                            "the input has no `{key}` for the URL"
                        )));
                    }
                    Some(other) => other.to_string(),
                };
                out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
            }
        }
    }
    Ok(out)
}

/// Query pairs from an input object: scalars as text, anything else as JSON.
fn query_pairs(input: &Value) -> Vec<(String, String)> {
    match input {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What kind of failure an API call's error is: the API not answering in time is a timeout,
/// not reaching it a crash, a refused destination or a missing secret the definition's fault.
fn kind_of(e: &ExecError) -> RunFailure {
    match e {
        ExecError::Timeout(_) => RunFailure::Timeout,
        ExecError::Upstream(_) | ExecError::Store(_) | ExecError::Unavailable(_) => {
            RunFailure::Crashed
        }
        ExecError::Invalid(_) | ExecError::Refused(_) => RunFailure::Code,
    }
}

pub async fn run(
    broker: &Broker<'_>,
    method: &str,
    url_template: &str,
    headers: &BTreeMap<String, String>,
    input: &Value,
    timeout: Duration,
) -> Outcome {
    let url = match fill_url(url_template, input) {
        Ok(u) => u,
        Err(e) => return Outcome::failed(RunFailure::Code, e.to_string()),
    };
    let mut resolved = BTreeMap::new();
    for (k, v) in headers {
        match broker.fill_secrets(v).await {
            Ok(v) => {
                resolved.insert(k.clone(), v);
            }
            Err(e) => return Outcome::failed(kind_of(&e), e.to_string()),
        }
    }
    let (query, body) = match method {
        "GET" | "DELETE" => (query_pairs(input), None),
        _ => (Vec::new(), Some(input.clone())),
    };
    match broker
        .http(
            method,
            &url,
            &resolved,
            &query,
            body.as_ref(),
            None,
            timeout,
        )
        .await
    {
        Err(e) => Outcome::failed(kind_of(&e), e.to_string()),
        Ok(resp) => {
            let (status, text) = (resp.status, resp.body);
            if !(200..300).contains(&status) {
                let shown: String = text.chars().take(1024).collect();
                return Outcome::failed(
                    RunFailure::Code,
                    format!("the API answered {status}: {shown}"),
                );
            }
            // A 2xx without a body (204, or an API that answers nothing): no output.
            if text.trim().is_empty() {
                return Outcome::succeeded(Value::Null);
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => Outcome::succeeded(v),
                Err(e) => {
                    let shown: String = text.chars().take(1024).collect();
                    Outcome::failed(
                        RunFailure::Code,
                        format!(
                            "the API answered {status} with a body that is not JSON ({e}): {shown}"
                        ),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_templates() {
        let input = json!({"id": "VN 1/2", "n": 3});
        assert_eq!(
            fill_url("https://x/c/{{input.id}}?n={{ input.n }}", &input).expect("ok"),
            "https://x/c/VN+1%2F2?n=3"
        );
        assert!(fill_url("https://x/{{secret.K}}", &input).is_err());
        assert!(fill_url("https://x/{{input.missing}}", &input).is_err());
        assert!(fill_url("https://x/{{input.id", &input).is_err());
    }

    #[test]
    fn query_from_input() {
        let q = query_pairs(&json!({"a": "x", "b": 2, "c": null, "d": {"e": 1}}));
        assert_eq!(
            q,
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "2".into()),
                ("d".into(), "{\"e\":1}".into())
            ]
        );
    }
}
