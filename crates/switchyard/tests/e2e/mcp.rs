//! Executors and hooks as AI tools: an MCP client we did not write (the official Python `mcp`
//! package) lists an organization's tools over Streamable HTTP and calls them; each call is a
//! run in the trace, a failure a tool error, and another organization's tools are invisible.

use crate::executors::put_executor;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Lists the tools at `argv[1]` with the key `argv[2]`, then makes the calls `argv[3]` (a JSON
/// list of `[name, arguments]`), and prints all of it as one JSON line.
const CLIENT: &str = r#"
import asyncio, json, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, key, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def dump(r):
    return {"is_error": bool(r.is_error), "structured": r.structured_content,
            "text": [c.text for c in r.content if getattr(c, "type", "") == "text"],
            "meta": r.meta}

async def main():
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
    out = {"calls": []}
    async with Client(streamable_http_client(url, http_client=http)) as client:
        listed = await client.list_tools()
        out["tools"] = [{"name": t.name, "description": t.description,
                         "input_schema": t.input_schema, "output_schema": t.output_schema}
                        for t in listed.tools]
        for name, args in calls:
            try:
                out["calls"].append(dump(await client.call_tool(name, args)))
            except Exception as e:
                out["calls"].append({"raised": f"{type(e).__name__}: {e}"})
    print(json.dumps(out, default=str))

asyncio.run(main())
"#;

async fn mcp_client(app: &TestApp, org: &Org, key: &str, calls: Value) -> Value {
    let url = app.url(&format!("/v1/orgs/{}/mcp", org.id));
    let run = tokio::process::Command::new("python3")
        .args(["-c", CLIENT, &url, key, &calls.to_string()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the MCP client finished within five minutes")
        .expect("python3 with the `mcp` package (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the MCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the client's answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const DOUBLE: &str = "def main(input, sdk):\n    return {\"doubled\": input[\"n\"] * 2}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_agent_lists_and_calls_its_organizations_tools_over_mcp() {
    let app = spawn_app().await;
    let org = app.org("agents").await;
    let other = app.org("agents-other").await;
    let n_schema = json!({"type": "object", "properties": {"n": {"type": "integer"}},
                          "required": ["n"]});
    put_executor(
        &app,
        &org,
        "double",
        json!({"type": "code", "language": "python", "source": DOUBLE,
               "description": "Doubles n", "tool": {"input_schema": n_schema}}),
    )
    .await;
    put_executor(
        &app,
        &org,
        "breaks",
        json!({"type": "code", "language": "javascript",
               "source": "function main(input) { throw new Error('the ERP is down'); }",
               "tool": {"name": "erp_lookup", "description": "Looks a contract up"}}),
    )
    .await;
    // Not offered as a tool: never listed, never callable.
    put_executor(
        &app,
        &org,
        "internal",
        json!({"type": "code", "language": "javascript",
               "source": "function main(input) { return {secret: 1}; }"}),
    )
    .await;
    // A hook offered as a tool: its schemas, timeout and cache apply.
    put_executor(
        &app,
        &org,
        "contract",
        json!({"type": "code", "language": "javascript",
               "source": "function main(input) { return {contractId: input.contractId, status: 'active'}; }"}),
    )
    .await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/hooks/contract-by-id", org.id),
            &org.admin,
            Some(
                json!({"executor": "contract", "description": "A contract by its id",
                "input_schema": {"type": "object", "properties": {"contractId": {"type": "string"}},
                                 "required": ["contractId"]},
                "output_schema": {"type": "object", "required": ["status"]},
                "tool": {}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tool"]["name"], "contract-by-id", "{v}");
    // Another organization's tool, under a name the first one never offers.
    put_executor(
        &app,
        &other,
        "theirs",
        json!({"type": "code", "language": "javascript",
               "source": "function main(input) { return {leaked: true}; }",
               "description": "Not yours", "tool": {}}),
    )
    .await;

    let calls = json!([
        ["double", {"n": 21}],
        ["double", {"n": "twenty-one"}],
        ["erp_lookup", {}],
        ["contract-by-id", {"contractId": "C-7"}],
        ["contract-by-id", {}],
        ["theirs", {}],
        ["internal", {}],
    ]);
    let out = mcp_client(&app, &org, &org.publisher, calls).await;
    let names: Vec<&str> = out["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["contract-by-id", "double", "erp_lookup"], "{out:#}");
    assert_eq!(out["tools"][1]["description"], "Doubles n");
    assert_eq!(out["tools"][1]["input_schema"], n_schema);
    assert_eq!(
        out["tools"][0]["output_schema"]["required"],
        json!(["status"])
    );

    let call = |i: usize| &out["calls"][i];
    // A valid call: the output as structured content, the run in the trace.
    assert_eq!(call(0)["is_error"], false, "{out:#}");
    assert_eq!(call(0)["structured"], json!({"doubled": 42}));
    let run_id = call(0)["meta"]["switchyard/run_id"]
        .as_str()
        .expect("the run's id");
    let (s, run) = app
        .get(&format!("/v1/orgs/{}/runs/{run_id}", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(
        (&run["executor"], &run["status"], &run["input"]),
        (&json!("double"), &json!("succeeded"), &json!({"n": 21}))
    );
    // Invalid arguments: a tool error naming the schema's complaint; nothing ran.
    assert_eq!(call(1)["is_error"], true, "{out:#}");
    let why = call(1)["text"][0].as_str().expect("text");
    assert!(why.contains("input schema") && why.contains("/n"), "{why}");
    assert!(call(1)["meta"].is_null(), "no run: {out:#}");
    // The code's failure is the tool's error, and a run in the trace too.
    assert_eq!(call(2)["is_error"], true, "{out:#}");
    assert!(
        call(2)["text"][0]
            .as_str()
            .is_some_and(|t| t.contains("the ERP is down")),
        "{out:#}"
    );
    let failed = call(2)["meta"]["switchyard/run_id"].as_str().expect("run");
    let (_, run) = app
        .get(&format!("/v1/orgs/{}/runs/{failed}", org.id), &org.viewer)
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    // Through the hook.
    assert_eq!(
        call(3)["structured"],
        json!({"contractId": "C-7", "status": "active"}),
        "{out:#}"
    );
    assert_eq!(call(4)["is_error"], true, "{out:#}");
    // Another organization's tool and an executor that is no tool: not found.
    for i in [5, 6] {
        assert!(
            call(i)["raised"]
                .as_str()
                .is_some_and(|r| r.contains("no such tool")),
            "{i}: {out:#}"
        );
    }

    // The other organization sees only its own.
    let theirs = mcp_client(&app, &other, &other.publisher, json!([["theirs", {}]])).await;
    assert_eq!(
        theirs["tools"].as_array().map(Vec::len),
        Some(1),
        "{theirs:#}"
    );
    assert_eq!(theirs["calls"][0]["structured"], json!({"leaked": true}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_server_needs_a_key_of_the_organization_that_may_call_tools() {
    let app = spawn_app().await;
    let org = app.org("mcp-keys").await;
    let other = app.org("mcp-keys-other").await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let path = format!("/v1/orgs/{}/mcp", org.id);
    let post = |key: Option<&str>| {
        let mut req = app
            .client
            .post(app.url(&path))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    assert_eq!(post(None).await.expect("sent").status(), 401);
    assert_eq!(post(Some("sy_nope")).await.expect("sent").status(), 401);
    // A viewer may read, not run.
    assert_eq!(post(Some(&org.viewer)).await.expect("sent").status(), 403);
    // Another organization's key: as if the organization did not exist.
    assert_eq!(post(Some(&other.admin)).await.expect("sent").status(), 404);

    // A tool's name calls one thing: a second owner of a name is refused.
    put_executor(
        &app,
        &org,
        "one",
        json!({"type": "code", "language": "javascript", "description": "d",
               "source": "function main(i) { return i; }", "tool": {"name": "same"}}),
    )
    .await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/executors/two", org.id),
            &org.admin,
            Some(
                json!({"type": "code", "language": "javascript", "description": "d",
                "source": "function main(i) { return i; }", "tool": {"name": "same"}}),
            ),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("already offers a tool"), "{v}");
    // A bad tool is refused with the reason.
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/executors/three", org.id),
            &org.admin,
            Some(
                json!({"type": "code", "language": "javascript", "description": "d",
                "source": "function main(i) { return i; }",
                "tool": {"input_schema": {"type": "array"}}}),
            ),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("must describe an object"), "{v}");
    app.stop().await;
}
