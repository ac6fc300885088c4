//! Synchronous hooks on a running hub: a caller waits for the executor's answer, every failure
//! reaches it with the right status, answers are cached and shared, and a caller that goes
//! away stops the code it started.

use crate::executors::{code, put_executor};
use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A look-up in the shape of the seeds' "search contract by ID": counts its runs in storage.
const CONTRACT_JS: &str = r#"
async function main(input, sdk) {
  if (input.contractId === "boom") throw new Error("the ERP answered 500");
  if (input.contractId === "slow") { while (true) {} }
  const runs = ((await sdk.storage.get("runs")) || 0) + 1;
  await sdk.storage.set("runs", runs);
  const until = Date.now() + (input.waitMs || 0);
  while (Date.now() < until) {}
  if (input.contractId === "partial") return { id: "partial" };
  return { id: input.contractId, customerId: "cust-7", business: false, lastname: "Doe", runs };
}
"#;

fn contract_hook(executor: &str, extra: Value) -> Value {
    let mut h = json!({
        "executor": executor,
        "description": "search contract by ID",
        "input_schema": {
            "type": "object", "required": ["contractId"],
            "properties": {"contractId": {"type": "string"}}
        },
        "output_schema": {
            "type": "object", "required": ["id", "customerId", "business"],
            "anyOf": [{"required": ["lastname"]}, {"required": ["company"]}]
        }
    });
    for (k, v) in extra.as_object().expect("object") {
        h[k] = v.clone();
    }
    h
}

async fn put_hook(app: &TestApp, org: &Org, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/v1/orgs/{}/hooks/{name}", org.id),
        &org.admin,
        Some(body),
    )
    .await
}

async fn call(app: &TestApp, org: &Org, name: &str, input: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/orgs/{}/hooks/{name}/call", org.id),
        &org.publisher,
        input,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_answers_and_every_failure_reaches_the_caller() {
    let app = spawn_app().await;
    let org = app.org("hooks").await;
    put_executor(&app, &org, "erp", code("javascript", CONTRACT_JS)).await;

    // Defining: the executor must exist, the settings must be sane.
    let (s, v) = put_hook(&app, &org, "contract", contract_hook("nope", json!({}))).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nope"),
        "{v}"
    );
    let (s, v) = put_hook(
        &app,
        &org,
        "contract",
        contract_hook("erp", json!({"timeout_ms": 0})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = put_hook(
        &app,
        &org,
        "contract",
        contract_hook("erp", json!({"timeout_ms": 1500})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["timeout_ms"].as_u64(), &v["cache_ttl_s"]),
        (Some(1500), &Value::Null)
    );
    let (s, _) = put_hook(
        &app,
        &org,
        "contract",
        contract_hook("erp", json!({"timeout_ms": 1500})),
    )
    .await;
    assert_eq!(s, 200, "a PUT of an existing hook replaces it");

    // An answer, with the run that made it in the trace.
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "C-1"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["output"]["id"], "C-1");
    assert_eq!(v["cache"], "off");
    let run_id = v["run_id"].as_str().expect("run id");
    let (s, run) = app
        .get(&format!("/v1/orgs/{}/runs/{run_id}", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["hook"], "contract", "{run}");
    // The same in headers, for callers that read only `output`.
    let r = app
        .client
        .post(app.url(&format!("/v1/orgs/{}/hooks/contract/call", org.id)))
        .bearer_auth(&org.publisher)
        .json(&json!({"contractId": "C-2"}))
        .send()
        .await
        .expect("call");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (run_header, cache_header) = (header("switchyard-run-id"), header("switchyard-cache"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(run_header.as_deref(), body["run_id"].as_str());
    assert_eq!(cache_header.as_deref(), Some("off"));

    // Input failing the schema: 422 naming where, and nothing runs.
    let (s, v) = call(&app, &org, "contract", json!({"contractId": 7})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("input_invalid")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/input/contractId"),
        "{v}"
    );
    assert!(v["error"].get("run_id").is_none(), "{v}");
    // The executor fails: 502 with its reason and the run.
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "boom"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("hook_failed")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("the ERP answered 500"),
        "{v}"
    );
    let failed = v["error"]["run_id"].as_str().expect("run id");
    let (_, run) = app
        .get(&format!("/v1/orgs/{}/runs/{failed}", org.id), &org.viewer)
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    // Output failing the output schema: 502 naming the violation.
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "partial"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("output_invalid")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("customerId"),
        "{v}"
    );
    // Past the hook's timeout: 504, soon after it, and the code is stopped.
    let t = Instant::now();
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "slow"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("hook_timeout")),
        "{v}"
    );
    // (The code loops forever: only the hub's deadline ends it; the margin is for busy machines.)
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    // The run says why it failed as a kind, which is what the 504 was decided by.
    let timed_out = v["error"]["run_id"]
        .as_str()
        .expect("the run behind the 504");
    let (_, run) = app
        .get(
            &format!("/v1/orgs/{}/runs/{timed_out}", org.id),
            &org.viewer,
        )
        .await;
    assert_eq!(
        (&run["status"], &run["failure"]),
        (&json!("failed"), &json!("timeout")),
        "{run}"
    );
    let (_, run) = app
        .get(&format!("/v1/orgs/{}/runs/{failed}", org.id), &org.viewer)
        .await;
    assert_eq!(run["failure"], "code", "{run}");
    // Unknown hooks, and keys that may not call.
    let (s, _) = call(&app, &org, "nope", json!({})).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{}/hooks/contract/call", org.id),
            &org.viewer,
            json!({"contractId": "C-1"}),
        )
        .await;
    assert_eq!(s, 403, "a viewer reads, it does not run code");
    let other = app.org("other").await;
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{}/hooks/contract/call", org.id),
            &other.admin,
            json!({"contractId": "C-1"}),
        )
        .await;
    assert_eq!(
        s, 404,
        "another organization's key sees no such organization"
    );
    let (s, list) = app
        .get(&format!("/v1/orgs/{}/hooks", org.id), &org.viewer)
        .await;
    assert_eq!(
        (s, list["data"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "{list}"
    );
    // A new version of the executor answers the very next call; a deleted hook is gone at once.
    put_executor(
        &app,
        &org,
        "erp",
        code("javascript", r#"function main(i) { return {id: "v2", customerId: "k", business: true, company: "New"}; }"#),
    )
    .await;
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "C-1"})).await;
    assert_eq!(
        (s, v["output"]["id"].as_str()),
        (StatusCode::OK, Some("v2")),
        "{v}"
    );
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{}/hooks/contract", org.id),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = call(&app, &org, "contract", json!({"contractId": "C-1"})).await;
    assert_eq!(s, 404, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_shared_and_emptied_and_failures_never_cached() {
    let app = spawn_app().await;
    let org = app.org("cache").await;
    put_executor(&app, &org, "erp", code("javascript", CONTRACT_JS)).await;
    let (s, v) = put_hook(
        &app,
        &org,
        "contract",
        contract_hook("erp", json!({"cache_ttl_s": 2})),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // 20 equal calls at once: one run, every caller gets its answer.
    let input = json!({"contractId": "C-9", "waitMs": 300});
    let calls = (0..20).map(|_| call(&app, &org, "contract", input.clone()));
    let answers = futures_util::future::join_all(calls).await;
    let mut misses = 0;
    for (s, v) in &answers {
        assert_eq!(*s, 200, "{v}");
        assert_eq!(v["output"]["runs"], 1, "one run for all: {v}");
        misses += usize::from(v["cache"] == "miss");
    }
    assert_eq!(misses, 1, "{answers:?}");
    // Equal JSON in another key order is the same input.
    let (_, v) = call(
        &app,
        &org,
        "contract",
        json!({"waitMs": 300, "contractId": "C-9"}),
    )
    .await;
    assert_eq!(
        (v["cache"].as_str(), v["output"]["runs"].as_u64()),
        (Some("hit"), Some(1)),
        "{v}"
    );
    // Other input runs.
    let (_, v) = call(&app, &org, "contract", json!({"contractId": "C-10"})).await;
    assert_eq!(
        (v["cache"].as_str(), v["output"]["runs"].as_u64()),
        (Some("miss"), Some(2)),
        "{v}"
    );
    // Emptied by hand: the next call runs.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{}/hooks/contract/cache", org.id),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (_, v) = call(&app, &org, "contract", json!({"contractId": "C-10"})).await;
    assert_eq!(
        (v["cache"].as_str(), v["output"]["runs"].as_u64()),
        (Some("miss"), Some(3)),
        "{v}"
    );
    // Past the TTL: runs again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, v) = call(&app, &org, "contract", json!({"contractId": "C-10"})).await;
    assert_eq!(
        (v["cache"].as_str(), v["output"]["runs"].as_u64()),
        (Some("miss"), Some(4)),
        "{v}"
    );
    // Failures are never cached: each call runs and fails anew.
    let (s1, f1) = call(&app, &org, "contract", json!({"contractId": "boom"})).await;
    let (s2, f2) = call(&app, &org, "contract", json!({"contractId": "boom"})).await;
    assert_eq!((s1, s2), (StatusCode::BAD_GATEWAY, StatusCode::BAD_GATEWAY));
    assert_ne!(f1["error"]["run_id"], f2["error"]["run_id"], "{f1} {f2}");
    // A new definition never answers from the old one's cache.
    let (s, _) = put_hook(
        &app,
        &org,
        "contract",
        contract_hook("erp", json!({"cache_ttl_s": 60})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = call(&app, &org, "contract", json!({"contractId": "C-10"})).await;
    assert_eq!(v["cache"], "miss", "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_stops_the_code_it_started() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(200));
    let org = app.org("gone").await;
    // A Python child process that beats against the receiver until it is stopped.
    put_executor(
        &app,
        &org,
        "beat",
        json!({"type": "code", "language": "python", "timeout_ms": 20000, "source":
            "import time\ndef main(input, sdk):\n    while True:\n        sdk.http('POST', input['url'], {'json': {}})\n        time.sleep(0.05)\n"}),
    )
    .await;
    let (s, v) = put_hook(
        &app,
        &org,
        "beat",
        json!({"executor": "beat", "timeout_ms": 20000}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("client");
    let sent = impatient
        .post(app.url(&format!("/v1/orgs/{}/hooks/beat/call", org.id)))
        .bearer_auth(&org.publisher)
        .json(&json!({"url": rx.url("/beat")}))
        .send()
        .await;
    assert!(sent.is_err(), "the caller gave up first: {sent:?}");
    assert!(!rx.received().is_empty(), "the code was running");
    // Soon after, the beats stop: the code was stopped, not left running for 20 s.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let settled = rx.received().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        rx.received().len(),
        settled,
        "the code still runs after its caller left"
    );
    app.stop().await;
}

/// A stand-in ERP: `GET /contracts?contractId=…` answers the contract, counting requests and
/// checking the bearer token.
async fn erp() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    async fn contract(
        State(hits): State<Arc<AtomicUsize>>,
        headers: HeaderMap,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        hits.fetch_add(1, Ordering::SeqCst);
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer erp-token") {
            return (axum::http::StatusCode::UNAUTHORIZED, "bad token").into_response();
        }
        match q.get("contractId").map(String::as_str) {
            Some("C-1") => axum::Json(json!({"id": "C-1", "customerId": "K-7", "business": false,
                "lastname": "Doe", "firstname": "Jane", "zip": "10115"}))
            .into_response(),
            Some("C-2") => axum::Json(json!({"id": "C-2", "customerId": "K-8", "business": true}))
                .into_response(),
            _ => (axum::http::StatusCode::NOT_FOUND, "no such contract").into_response(),
        }
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/contracts", axum::routing::get(contract))
        .with_state(hits.clone());
    let url = format!("http://{}/contracts", serve_on_loopback(app).await);
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_erp_contract_look_up_installs_from_its_preset() {
    use std::sync::atomic::Ordering;
    let app = spawn_app().await;
    let org = app.org("erp").await;
    let (s, presets) = app.get("/v1/hook-presets", &org.viewer).await;
    assert_eq!(s, 200, "{presets}");
    let names: Vec<&str> = presets
        .as_array()
        .expect("presets")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "erp-contract-by-id",
            "erp-customer-by-id",
            "erp-contract-search",
            "erp-customer-search"
        ]
    );
    let (url, hits) = erp().await;
    crate::executors::secret(&app, &org, "ERP_TOKEN", "erp-token").await;
    put_executor(
        &app,
        &org,
        "erp-contract",
        json!({"type": "api_call", "method": "GET", "url": url,
               "headers": {"Authorization": "Bearer {{secret.ERP_TOKEN}}"}}),
    )
    .await;
    let (s, h) = put_hook(
        &app,
        &org,
        "contract-by-id",
        json!({"preset": "erp-contract-by-id", "executor": "erp-contract", "cache_ttl_s": 300}),
    )
    .await;
    assert_eq!(s, 201, "{h}");
    assert_eq!(h["input_schema"]["required"], json!(["contractId"]), "{h}");
    let (s, v) = call(&app, &org, "contract-by-id", json!({"contractId": "C-1"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["output"]["lastname"].as_str(), v["cache"].as_str()),
        (Some("Doe"), Some("miss"))
    );
    let (_, v) = call(&app, &org, "contract-by-id", json!({"contractId": "C-1"})).await;
    assert_eq!(v["cache"], "hit", "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the ERP was asked once");
    // A contract without `lastname` or `company` breaks the preset's output schema.
    let (s, v) = call(&app, &org, "contract-by-id", json!({"contractId": "C-2"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("output_invalid")),
        "{v}"
    );
    // The ERP's 404 reaches the caller as a failed look-up.
    let (s, v) = call(&app, &org, "contract-by-id", json!({"contractId": "C-404"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("hook_failed")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap_or("").contains("404"),
        "{v}"
    );
    let (s, v) = put_hook(
        &app,
        &org,
        "x",
        json!({"preset": "nope", "executor": "erp-contract"}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    app.stop().await;
}
