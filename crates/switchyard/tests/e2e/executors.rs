//! Executors: Python and PHP code in the sandbox with the SDK, API calls, secrets, and every
//! way user code can misbehave ending as a clean failed run.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub(crate) async fn put_executor(app: &TestApp, org: &Org, name: &str, body: Value) {
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/executors/{name}", org.id),
            &org.admin,
            Some(body),
        )
        .await;
    // 201 for an executor's first version, 200 for a later one.
    assert!(s == 201 || s == 200, "{v}");
}

pub(crate) async fn run(app: &TestApp, org: &Org, name: &str, input: Value) -> Value {
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/executors/{name}/run", org.id),
            &org.admin,
            json!({"input": input}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Runs `name` of `org` in a task of its own: a run in flight while the test goes on.
pub(crate) fn run_in_background(
    app: &TestApp,
    org: &Org,
    name: &str,
    input: Value,
) -> tokio::task::JoinHandle<Value> {
    let (client, url, key) = (
        app.client.clone(),
        app.url(&format!("/v1/orgs/{}/executors/{name}/run", org.id)),
        org.admin.clone(),
    );
    tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(key)
            .json(&json!({"input": input}))
            .send()
            .await
            .expect("the run in the background")
            .json::<Value>()
            .await
            .expect("json")
    })
}

/// Puts `balance` = 100 into `org`'s storage through a run of its own: the data another tenant
/// must not reach.
pub(crate) async fn seed_balance(app: &TestApp, org: &Org) {
    put_executor(
        app,
        org,
        "seed",
        code(
            "python",
            "def main(input, sdk):\n    sdk.storage.set('balance', 100)\n    return 1\n",
        ),
    )
    .await;
    assert_eq!(
        run(app, org, "seed", json!({})).await["status"],
        "succeeded"
    );
}

pub(crate) async fn secret(app: &TestApp, org: &Org, name: &str, value: &str) {
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/secrets/{name}", org.id),
            &org.admin,
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

pub(crate) fn code(language: &str, source: &str) -> Value {
    json!({"type": "code", "language": language, "source": source, "timeout_ms": 3000})
}

const PY_FULL: &str = r#"
def main(input, sdk):
    r = sdk.http("POST", input["url"], {"headers": {"Authorization": "Bearer {{secret.ERP_TOKEN}}"}, "json": {"q": input["n"]}})
    count = (sdk.storage.get("count") or 0) + 1
    sdk.storage.set("count", count)
    doubled = sdk.call("double", {"n": input["n"]})
    sdk.log("token length", len(sdk.secret("ERP_TOKEN")))
    return {"status": r["status"], "echo": r["json"], "count": count, "doubled": doubled["n"]}
"#;

const PHP_FULL: &str = r#"<?php
function main($in, $sdk) {
    $r = $sdk->http('POST', $in['url'], ['headers' => ['Authorization' => 'Bearer {{secret.ERP_TOKEN}}'], 'json' => ['q' => $in['n']]]);
    $count = ($sdk->storage->get('count') ?? 0) + 1;
    $sdk->storage->set('count', $count);
    $doubled = $sdk->call('double', ['n' => $in['n']]);
    $sdk->log('token length', strlen($sdk->secret('ERP_TOKEN')));
    return ['status' => $r['status'], 'echo' => $r['json'], 'count' => $count, 'doubled' => $doubled['n']];
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_php_use_http_storage_secrets_and_udfs() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("code").await;
    secret(&app, &org, "ERP_TOKEN", "erp-s3cret-token").await;
    put_executor(
        &app,
        &org,
        "double",
        code(
            "python",
            "def main(input, sdk):\n    return {\"n\": input[\"n\"] * 2}\n",
        ),
    )
    .await;
    put_executor(&app, &org, "py", code("python", PY_FULL)).await;
    put_executor(&app, &org, "php", code("php", PHP_FULL)).await;

    let r = run(&app, &org, "py", json!({"n": 21, "url": rx.url("/erp")})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["output"]["doubled"], 42);
    assert_eq!(r["output"]["count"], 1);
    assert_eq!(r["output"]["status"], 200);
    assert_eq!(r["logs"], json!(["token length 16"]));
    let r = run(&app, &org, "php", json!({"n": 5, "url": rx.url("/erp")})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["output"]["doubled"], 10);
    assert_eq!(
        r["output"]["count"], 2,
        "storage is shared by the organization's executors"
    );
    assert_eq!(r["logs"], json!(["token length 16"]));

    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    for req in &got {
        assert_eq!(req.path, "/erp");
        assert_eq!(
            req.header("authorization").as_deref(),
            Some("Bearer erp-s3cret-token"),
            "the hub injected the secret"
        );
    }
    assert_eq!(got[0].json(), json!({"q": 21}));
    assert_eq!(got[1].json(), json!({"q": 5}));

    // The run is traced and can be read back; the secret never appears in it.
    let (s, stored) = app
        .get(
            &format!("/v1/orgs/{}/runs/{}", org.id, r["id"].as_str().expect("id")),
            &org.viewer,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(stored["output"], r["output"]);
    let (_, names) = app
        .get(&format!("/v1/orgs/{}/secrets", org.id), &org.viewer)
        .await;
    assert_eq!(names["data"][0]["name"], "ERP_TOKEN");
    assert_eq!(names["next_cursor"], Value::Null, "a whole list");
    assert!(
        !names.to_string().contains("erp-s3cret-token"),
        "secret values are never returned"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enneo_style_scripts_read_stdin_and_print_json() {
    let app = spawn_app().await;
    let org = app.org("enneo").await;
    put_executor(&app, &org, "py", code("python", "import json, sys, os\nx = json.load(sys.stdin)\nprint(json.dumps({'ticket': x['ticketId'], 'sdk': os.path.exists(os.environ['SDK'])}))\n")).await;
    put_executor(&app, &org, "php", code("php", "<?php\nrequire getenv('SDK');\n$x = json_decode(file_get_contents('php://stdin'), true);\necho json_encode(['ticket' => $x['ticketId'], 'in' => $in['ticketId']]);\n")).await;
    let r = run(&app, &org, "py", json!({"ticketId": 456})).await;
    assert_eq!(r["output"], json!({"ticket": 456, "sdk": true}), "{r:#}");
    let r = run(&app, &org, "php", json!({"ticketId": 457})).await;
    assert_eq!(r["output"], json!({"ticket": 457, "in": 457}), "{r:#}");
    app.stop().await;
}

/// Runs `source` and checks it fails for `reason` (one of several when they are separated by
/// `|`), stopped by the hub: code that never ends on its own ends within its deadline and a
/// generous margin for a busy machine.
async fn breaks(
    app: &TestApp,
    org: &Org,
    lang: &str,
    source: &str,
    timeout_ms: u32,
    reason: &str,
) -> Value {
    let name = format!("bad-{}", switchyard_core::ids::new_id("x"));
    put_executor(app, org, &name, json!({"type": "code", "language": lang, "source": source, "timeout_ms": timeout_ms, "memory_mb": 64})).await;
    let started = Instant::now();
    let r = run(app, org, &name, json!({})).await;
    let took = started.elapsed();
    assert_eq!(
        r["status"], "failed",
        "{lang} `{source}` should fail: {r:#}"
    );
    let err = r["error"].as_str().expect("error");
    assert!(
        reason.split('|').any(|r| err.contains(r)),
        "{lang} `{source}`: expected `{reason}` in `{err}`"
    );
    assert!(
        took < Duration::from_millis(u64::from(timeout_ms) + 10_000),
        "{lang} `{source}` took {took:?}"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_code_ends_as_a_clean_failed_run() {
    let app = spawn_app().await;
    let org = app.org("breakage").await;
    breaks(
        &app,
        &org,
        "python",
        "while True:\n    pass\n",
        1000,
        "timeout",
    )
    .await;
    breaks(
        &app,
        &org,
        "php",
        "<?php\nwhile (true) {}\n",
        1000,
        "timeout",
    )
    .await;
    breaks(
        &app,
        &org,
        "python",
        "x = []\nwhile True:\n    x.append(' ' * 10_000_000)\n",
        5000,
        "memory",
    )
    .await;
    breaks(
        &app,
        &org,
        "php",
        "<?php\n$x = [];\nwhile (true) { $x[] = str_repeat(' ', 10000000); }\n",
        5000,
        "memory",
    )
    .await;
    breaks(
        &app,
        &org,
        "python",
        "def f(n):\n    return f(n + 1)\nf(0)\n",
        3000,
        "RecursionError",
    )
    .await;
    breaks(
        &app,
        &org,
        "python",
        "import sys\nsys.stdout.write('x' * (50 * 1024 * 1024))\n",
        5000,
        "1 MiB",
    )
    .await;
    breaks(
        &app,
        &org,
        "python",
        "def main(input, sdk):\n    raise ValueError('bad ticket')\n",
        2000,
        "ValueError: bad ticket",
    )
    .await;
    breaks(
        &app,
        &org,
        "php",
        "<?php\nfunction main($in, $sdk) { throw new Exception('nope'); }\n",
        2000,
        "nope",
    )
    .await;
    breaks(
        &app,
        &org,
        "python",
        "print('this is not json')\n",
        2000,
        "not JSON",
    )
    .await;
    // A fork bomb: the process limit binds because the code runs as an unprivileged user.
    let r = breaks(
        &app,
        &org,
        "python",
        "import os\nwhile True:\n    os.fork()\n",
        2000,
        "",
    )
    .await;
    assert!(r["error"].as_str().expect("e").len() > 5);
    // The hub's own database and master key are out of reach.
    let data_dir = app_data_dir(&app).await;
    let db = data_dir.join("switchyard.db");
    let key = data_dir.join("master.key");
    for path in [&db, &key] {
        breaks(
            &app,
            &org,
            "python",
            &format!(
                "print(open({:?}, 'rb').read(10))\n",
                path.display().to_string()
            ),
            2000,
            // Hidden by the private /tmp (the test data dir is there) or refused by permissions.
            "Permission|FileNotFoundError",
        )
        .await;
        breaks(&app, &org, "php", &format!("<?php\n$x = file_get_contents({:?});\nif ($x === false) {{ exit(3); }}\necho json_encode(strlen($x));\n", path.display().to_string()), 2000, "status 3").await;
    }
    // No network of its own: the only way out is the SDK.
    breaks(
        &app,
        &org,
        "python",
        "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=1)\nprint('{}')\n",
        3000,
        "exited",
    )
    .await;
    // The hub is still fine.
    let ok = run_ok(&app, &org).await;
    assert_eq!(ok["output"], json!({"ok": true}));
    app.stop().await;
}

async fn run_ok(app: &TestApp, org: &Org) -> Value {
    put_executor(
        app,
        org,
        "fine",
        code("python", "def main(input, sdk):\n    return {'ok': True}\n"),
    )
    .await;
    run(app, org, "fine", json!({})).await
}

/// The data dir of an in-process app: where its database lives.
async fn app_data_dir(app: &TestApp) -> std::path::PathBuf {
    app.data_dir.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udf_cycles_and_depth_are_refused() {
    let app = spawn_app().await;
    let org = app.org("udf").await;
    put_executor(
        &app,
        &org,
        "a",
        code(
            "python",
            "def main(input, sdk):\n    return sdk.call('b', input)\n",
        ),
    )
    .await;
    put_executor(
        &app,
        &org,
        "b",
        code(
            "python",
            "def main(input, sdk):\n    return sdk.call('a', input)\n",
        ),
    )
    .await;
    let r = run(&app, &org, "a", json!({})).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .expect("e")
            .contains("call cycle: a → b → a"),
        "{r:#}"
    );
    for (name, next) in [
        ("l1", "l2"),
        ("l2", "l3"),
        ("l3", "l4"),
        ("l4", "l5"),
        ("l5", "l6"),
    ] {
        put_executor(
            &app,
            &org,
            name,
            code(
                "python",
                &format!("def main(input, sdk):\n    return sdk.call('{next}', input)\n"),
            ),
        )
        .await;
    }
    put_executor(
        &app,
        &org,
        "l6",
        code("python", "def main(input, sdk):\n    return {}\n"),
    )
    .await;
    let r = run(&app, &org, "l1", json!({})).await;
    assert!(
        r["error"].as_str().expect("e").contains("depth limit (5)"),
        "{r:#}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_place_input_by_method_and_inject_secrets() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("apicall").await;
    secret(&app, &org, "ERP_KEY", "k-123456").await;
    for method in ["GET", "DELETE", "POST", "PUT", "PATCH"] {
        let name = format!("call-{}", method.to_lowercase());
        put_executor(&app, &org, &name, json!({"type": "api_call", "method": method,
            "url": rx.url("/contracts/{{input.contractId}}"), "headers": {"X-Api-Key": "{{secret.ERP_KEY}}"}})).await;
    }
    rx.always(Reply::status(200).header("content-type", "application/json"));
    for (i, method) in ["GET", "DELETE", "POST", "PUT", "PATCH"].iter().enumerate() {
        let r = run(
            &app,
            &org,
            &format!("call-{}", method.to_lowercase()),
            json!({"contractId": "VN 1", "limit": 5}),
        )
        .await;
        // The test receiver answers a text body: a non-JSON answer is a failed run showing it.
        assert_eq!(r["status"], "failed");
        assert!(
            r["error"].as_str().expect("e").contains("not JSON"),
            "{r:#}"
        );
        assert!(r["error"].as_str().expect("e").contains("receiver says hi"));
        let got = rx.wait_for(i + 1, Duration::from_secs(5)).await;
        let req = &got[i];
        assert_eq!(req.path, "/contracts/VN+1");
        assert_eq!(req.header("x-api-key").as_deref(), Some("k-123456"));
        match *method {
            "GET" | "DELETE" => assert!(req.body.is_empty(), "{method} sends no body"),
            _ => assert_eq!(
                req.json(),
                json!({"contractId": "VN 1", "limit": 5}),
                "{method} sends JSON"
            ),
        }
    }
    // A missing secret fails the run and nothing is sent.
    put_executor(&app, &org, "nokey", json!({"type": "api_call", "method": "GET", "url": rx.url("/x"), "headers": {"X-Api-Key": "{{secret.MISSING}}"}})).await;
    let before = rx.received().len();
    let r = run(&app, &org, "nokey", json!({})).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .expect("e")
            .contains("secret `MISSING` is not set"),
        "{r:#}"
    );
    assert_eq!(
        rx.received().len(),
        before,
        "nothing was sent without the secret"
    );
    // A JSON answer is the output; a non-2xx fails with its status.
    let json_rx = JsonReceiver::start().await;
    put_executor(
        &app,
        &org,
        "json",
        json!({"type": "api_call", "method": "GET", "url": json_rx.url("/ok")}),
    )
    .await;
    let r = run(&app, &org, "json", json!({"q": "x"})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["output"], json!({"path": "/ok", "query": "q=x"}));
    put_executor(
        &app,
        &org,
        "missing",
        json!({"type": "api_call", "method": "GET", "url": json_rx.url("/404")}),
    )
    .await;
    let r = run(&app, &org, "missing", json!({})).await;
    assert!(
        r["error"].as_str().expect("e").contains("answered 404"),
        "{r:#}"
    );
    // A 2xx with no body at all succeeds with no output.
    put_executor(
        &app,
        &org,
        "empty",
        json!({"type": "api_call", "method": "POST", "url": json_rx.url("/204")}),
    )
    .await;
    let r = run(&app, &org, "empty", json!({"a": 1})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["output"], Value::Null, "{r:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_definitions_are_validated_and_versioned() {
    let app = spawn_app().await;
    let org = app.org("defs").await;
    let path = format!("/v1/orgs/{}/executors/x", org.id);
    for (body, what) in [
        (
            json!({"type": "code", "language": "cobol", "source": "x"}),
            "language",
        ),
        (json!({"type": "code", "language": "python"}), "source"),
        (
            json!({"type": "code", "language": "python", "source": "x", "timeout_ms": 120000}),
            "timeout_ms",
        ),
        (
            json!({"type": "api_call", "method": "TRACE", "url": "https://example.com"}),
            "method",
        ),
        (json!({"type": "api_call", "method": "GET"}), "url"),
        (json!({"type": "script", "source": "x"}), "type"),
        (
            json!({"type": "code", "language": "ruby", "source": "x"}),
            "language",
        ),
    ] {
        let (s, v) = app.call(Method::PUT, &path, &org.admin, Some(body)).await;
        assert_eq!(s, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().expect("m").contains(what),
            "{what}: {v}"
        );
    }
    put_executor(
        &app,
        &org,
        "x",
        code("python", "def main(i, s):\n    return 1\n"),
    )
    .await;
    put_executor(
        &app,
        &org,
        "x",
        code("python", "def main(i, s):\n    return 2\n"),
    )
    .await;
    let (_, v) = app.get(&path, &org.viewer).await;
    assert_eq!(v["version"], 2);
    let r = run(&app, &org, "x", json!({})).await;
    assert_eq!(
        (r["output"].clone(), r["version"].clone()),
        (json!(2), json!(2))
    );
    let other = app.org("defs-other").await;
    let (s, _) = app.get(&path, &other.admin).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&format!("{path}/run"), &other.admin, json!({}))
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_hooks_run_executors_and_their_runs_are_in_the_trace() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("hooks").await;
    put_executor(&app, &org, "export", json!({"type": "code", "language": "python",
        "source": "def main(input, sdk):\n    sdk.log('exporting', input['ticketId'])\n    return {'exported': input['ticketId'], 'event': input['event']}\n",
        "parameters": {"ticketId": "data.ticketId", "event": "type"}})).await;
    put_executor(
        &app,
        &org,
        "broken",
        json!({"type": "code", "language": "python",
        "source": "def main(input, sdk):\n    raise RuntimeError('ERP is down')\n", "retries": 0}),
    )
    .await;
    put_executor(
        &app,
        &org,
        "stuck",
        json!({"type": "code", "language": "python",
        "source": "import time\ndef main(input, sdk):\n    time.sleep(60)\n", "timeout_ms": 30000}),
    )
    .await;
    for (types, ex) in [
        (json!(["TicketCreated"]), "export"),
        (json!(["TicketCreated"]), "broken"),
        (json!(["Stuck*"]), "stuck"),
    ] {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/subscriptions", org.id),
                &org.admin,
                json!({"event_types": types, "executor": ex}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["executor"], ex);
    }
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", org.id),
            &org.admin,
            json!({"event_types": ["*"], "executor": "nope"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    app.endpoint(&org, json!({"url": rx.url("/")}), &["*"])
        .await;

    let p = app
        .publish(
            &org,
            json!({"id": "t1", "type": "TicketCreated", "data": {"ticketId": 456, "other": "x"}}),
        )
        .await;
    assert_eq!(p["deliveries"], 3, "two hooks and one webhook");
    let trace = app
        .wait_trace(&org, "t1", Duration::from_secs(15), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|x| x["status"] != "pending"))
        })
        .await;
    let runs = trace["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{trace:#}");
    let ok = runs
        .iter()
        .find(|r| r["executor"] == "export")
        .expect("export run");
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(
        ok["input"],
        json!({"ticketId": 456, "event": "TicketCreated"}),
        "the parameter definition shaped the input"
    );
    assert_eq!(
        ok["output"],
        json!({"exported": 456, "event": "TicketCreated"})
    );
    assert_eq!(ok["logs"], json!(["exporting 456"]));
    assert_eq!(ok["version"], 1);
    let bad = runs
        .iter()
        .find(|r| r["executor"] == "broken")
        .expect("broken run");
    assert_eq!(bad["status"], "failed");
    assert!(bad["error"].as_str().expect("e").contains("ERP is down"));
    let hook_delivery = trace["deliveries"]
        .as_array()
        .expect("d")
        .iter()
        .find(|d| d["executor"] == "broken")
        .expect("delivery")
        .clone();
    assert_eq!(
        hook_delivery["status"], "failed",
        "retries: 0 means one attempt"
    );
    assert_eq!(hook_delivery["attempt_count"], 1);

    // A stuck executor (30 s a run) does not hold back webhooks: they arrive long before it
    // could have let them.
    for i in 0..10 {
        app.publish(
            &org,
            json!({"id": format!("s{i}"), "type": "StuckThing", "data": {}}),
        )
        .await;
    }
    let started = Instant::now();
    rx.wait_until(Duration::from_secs(15), |g| {
        g.iter()
            .filter(|r| r.header("webhook-id").is_some_and(|id| id.starts_with('s')))
            .count()
            == 10
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    app.stop().await;
}

/// Runs a program using the whole SDK in `lang` (with a `double` UDF in the same language) and
/// checks what it did: an HTTP request with the secret injected by the hub, storage, the UDF,
/// a log line.
async fn check_full_sdk(app: &TestApp, rx: &TestReceiver, org: &Org, lang: &str, source: &str) {
    secret(app, org, "ERP_TOKEN", "erp-s3cret-token").await;
    put_executor(
        app,
        org,
        "double",
        code(lang, "function main(input) { return { n: input.n * 2 }; }"),
    )
    .await;
    put_executor(app, org, "full", code(lang, source)).await;
    let r = run(app, org, "full", json!({"n": 21, "url": rx.url("/erp")})).await;
    assert_eq!(r["status"], "succeeded", "{lang}: {r:#}");
    assert_eq!(
        r["output"],
        json!({"status": 200, "count": 1, "doubled": 42})
    );
    assert_eq!(r["logs"], json!(["token length 16"]));
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].header("authorization").as_deref(),
        Some("Bearer erp-s3cret-token")
    );
    assert_eq!(got[0].json(), json!({"q": 21}));
}

const JS_FULL: &str = r#"
async function main(input, sdk) {
  const r = await sdk.http("POST", input.url, { headers: { Authorization: "Bearer {{secret.ERP_TOKEN}}" }, json: { q: input.n } });
  const count = ((await sdk.storage.get("count")) || 0) + 1;
  await sdk.storage.set("count", count);
  const doubled = await sdk.call("double", { n: input.n });
  console.log("token length", sdk.secret("ERP_TOKEN").length);
  return { status: r.status, count, doubled: doubled.n };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_runs_in_the_embedded_engine_with_the_same_sdk() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("js").await;
    check_full_sdk(&app, &rx, &org, "javascript", JS_FULL).await;
    // Errors of the code are failed runs with the JavaScript message.
    put_executor(
        &app,
        &org,
        "throws",
        code(
            "javascript",
            "function main() { throw new TypeError('bad ticket'); }",
        ),
    )
    .await;
    let r = run(&app, &org, "throws", json!({})).await;
    assert_eq!(r["error"], "TypeError: bad ticket");
    // A syntax error is refused when the executor is saved (the interpreter's message).
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/executors/syntax", org.id),
            &org.admin,
            Some(code("javascript", "function main( { return 1 }")),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("SyntaxError"), "{v}");
    put_executor(&app, &org, "nomain", code("javascript", "const x = 1;")).await;
    let r = run(&app, &org, "nomain", json!({})).await;
    assert!(
        r["error"].as_str().expect("e").contains("define main"),
        "{r:#}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_breakage_ends_as_clean_failed_runs_and_the_hub_keeps_serving() {
    let app = spawn_app().await;
    let org = app.org("jsbreak").await;
    let js = "javascript";
    breaks(
        &app,
        &org,
        js,
        "function main() { while (true) {} }",
        1000,
        "timeout",
    )
    .await;
    // Expensive built-ins: the engine's interrupt is polled too rarely; the hub kills the worker.
    breaks(
        &app,
        &org,
        js,
        "function main() { for (;;) { 'ab'.repeat(2e6).indexOf('c'); } }",
        1000,
        "timeout",
    )
    .await;
    // Out-of-memory is catchable in JavaScript; the deadline still holds.
    breaks(&app, &org, js, "function main() { const keep = []; for (;;) { try { keep.push(new Array(1e6).fill(1)); } catch (e) { keep.length = 0; } } }", 1500, "").await;
    breaks(
        &app,
        &org,
        js,
        "function main() { const a = []; for (;;) a.push('x'.repeat(1e6) + a.length); }",
        3000,
        "memory",
    )
    .await;
    breaks(
        &app,
        &org,
        js,
        "function f(n) { return f(n + 1) + 1; } function main() { return f(0); }",
        3000,
        "",
    )
    .await;
    breaks(
        &app,
        &org,
        js,
        "async function main() { await new Promise(() => {}); }",
        1000,
        "never finished",
    )
    .await;
    let ok = {
        put_executor(
            &app,
            &org,
            "fine-js",
            code(js, "function main(i) { return { ok: true }; }"),
        )
        .await;
        run(&app, &org, "fine-js", json!({})).await
    };
    assert_eq!(ok["output"], json!({"ok": true}), "{ok:#}");
    app.stop().await;
}

const NODE_FULL: &str = r#"
async function main(input, sdk) {
  const r = await sdk.http("POST", input.url, { headers: { Authorization: "Bearer {{secret.ERP_TOKEN}}" }, json: { q: input.n } });
  const count = ((await sdk.storage.get("count")) || 0) + 1;
  await sdk.storage.set("count", count);
  const doubled = await sdk.call("double", { n: input.n });
  await sdk.log("token length", (await sdk.secret("ERP_TOKEN")).length);
  return { status: r.status, count, doubled: doubled.n };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_as_a_child_process_with_the_same_sdk_and_limits() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("node").await;
    check_full_sdk(&app, &rx, &org, "node", NODE_FULL).await;
    put_executor(&app, &org, "enneo", code("node", "const x = JSON.parse(require('fs').readFileSync(0, 'utf8'));\nconsole.log(JSON.stringify({ ticket: x.ticketId }));\n")).await;
    let r = run(&app, &org, "enneo", json!({"ticketId": 9})).await;
    assert_eq!(r["output"], json!({"ticket": 9}), "{r:#}");
    breaks(
        &app,
        &org,
        "node",
        "function main() { for (;;) {} }",
        1500,
        "timeout",
    )
    .await;
    breaks(
        &app,
        &org,
        "node",
        "function main() { const a = []; for (;;) a.push('x'.repeat(1e6) + a.length); }",
        10000,
        "memory",
    )
    .await;
    breaks(
        &app,
        &org,
        "node",
        "async function main() { throw new Error('nope'); }",
        3000,
        "nope",
    )
    .await;
    let db = app.data_dir.join("switchyard.db").display().to_string();
    breaks(
        &app,
        &org,
        "node",
        &format!("require('fs').readFileSync({db:?});\nconsole.log('{{}}');\n"),
        3000,
        "EACCES|ENOENT",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_runs_as_an_event_hook_with_the_full_sdk() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("hooklangs").await;
    secret(&app, &org, "ERP_TOKEN", "erp-s3cret-token").await;
    put_executor(
        &app,
        &org,
        "double",
        code(
            "python",
            "def main(input, sdk):\n    return {\"n\": input[\"n\"] * 2}\n",
        ),
    )
    .await;
    let params = json!({"n": "data.n", "url": "data.url"});
    for (name, lang, src) in [
        ("h-js", "javascript", JS_FULL),
        ("h-node", "node", NODE_FULL),
        ("h-py", "python", PY_FULL),
        ("h-php", "php", PHP_FULL),
    ] {
        put_executor(&app, &org, name, json!({"type": "code", "language": lang, "source": src, "timeout_ms": 5000, "parameters": params})).await;
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/subscriptions", org.id),
                &org.admin,
                json!({"event_types": ["TicketCreated"], "executor": name}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // A script that logs a secret: the trace shows it redacted.
    put_executor(&app, &org, "leaky", code("python", "def main(input, sdk):\n    sdk.log('token is', sdk.secret('ERP_TOKEN'))\n    return {'t': sdk.secret('ERP_TOKEN')}\n")).await;
    app.post(
        &format!("/v1/orgs/{}/subscriptions", org.id),
        &org.admin,
        json!({"event_types": ["TicketCreated"], "executor": "leaky"}),
    )
    .await;

    app.publish(
        &org,
        json!({"id": "h1", "type": "TicketCreated", "data": {"n": 4, "url": rx.url("/erp")}}),
    )
    .await;
    let trace = app
        .wait_trace(&org, "h1", Duration::from_secs(20), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 5 && d.iter().all(|x| x["status"] != "pending"))
        })
        .await;
    let runs = trace["runs"].as_array().expect("runs");
    for name in ["h-js", "h-node", "h-py", "h-php"] {
        let r = runs
            .iter()
            .find(|r| r["executor"] == name)
            .unwrap_or_else(|| panic!("no run of {name}: {trace:#}"));
        assert_eq!(r["status"], "succeeded", "{r:#}");
        assert_eq!(r["input"], json!({"n": 4, "url": rx.url("/erp")}));
        assert_eq!(r["output"]["doubled"], 8, "{r:#}");
        assert_eq!(r["output"]["status"], 200);
    }
    let leaky = runs
        .iter()
        .find(|r| r["executor"] == "leaky")
        .expect("leaky run");
    assert_eq!(leaky["logs"], json!(["token is [redacted]"]));
    assert_eq!(leaky["output"], json!({"t": "[redacted]"}));
    assert!(
        !trace.to_string().contains("erp-s3cret-token"),
        "the secret appears nowhere in the trace"
    );
    let got = rx.wait_for(4, Duration::from_secs(5)).await;
    assert!(
        got.iter()
            .all(|r| r.header("authorization").as_deref() == Some("Bearer erp-s3cret-token"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landlock_and_seccomp_confine_code_beyond_file_permissions() {
    let app = spawn_app().await;
    let org = app.org("confine").await;
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    for layer in [
        "namespaces",
        "root",
        "cgroups",
        "uid",
        "rlimits",
        "landlock",
        "seccomp",
    ] {
        assert!(
            ready["sandbox"].as_str().expect("level").contains(layer),
            "this host supports {layer}: {ready}"
        );
    }
    // A world-readable file outside the run directory (and outside /tmp, which is the run's
    // own): file permissions allow it; it has no name in the run's root, and Landlock would
    // refuse it if it had.
    let outside = tempfile::NamedTempFile::new_in("/var/tmp").expect("tmp");
    std::fs::write(outside.path(), "{}").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::set_permissions(
            outside.path().parent().expect("dir"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .expect("chmod");
    }
    let path = outside.path().display().to_string();
    breaks(
        &app,
        &org,
        "python",
        &format!("print(open({path:?}).read())\n"),
        2000,
        "No such file|Permission",
    )
    .await;
    breaks(
        &app,
        &org,
        "node",
        &format!("console.log(require('fs').readFileSync({path:?}, 'utf8'))\n"),
        3000,
        "ENOENT|EACCES",
    )
    .await;
    // Writing is confined to the run directory, which is the run's private /tmp.
    breaks(
        &app,
        &org,
        "python",
        "open('/var/tmp/escaped-by-user-code', 'w').write('x')\n",
        2000,
        "No such file|Permission|Read-only",
    )
    .await;
    assert!(!std::path::Path::new("/var/tmp/escaped-by-user-code").exists());
    put_executor(&app, &org, "tmpwrite", code("python", "import os, json\nopen('/tmp/escaped-by-user-code', 'w').write('x')\nprint(json.dumps(os.getcwd() == '/tmp'))\n")).await;
    let r = run(&app, &org, "tmpwrite", json!({})).await;
    assert_eq!(r["output"], json!(true), "{r:#}");
    assert!(!std::path::Path::new("/tmp/escaped-by-user-code").exists());
    // ptrace is filtered: PTRACE_TRACEME, allowed to any process otherwise, fails with EPERM.
    put_executor(&app, &org, "ptrace", code("python", "import ctypes, json\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.syscall(101, 0, 0, 0, 0)\nprint(json.dumps([r, ctypes.get_errno()]))\n")).await;
    let r = run(&app, &org, "ptrace", json!({})).await;
    assert_eq!(r["output"], json!([-1, 1]), "{r:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_does_not_compile_is_refused_when_saved_naming_the_line() {
    let app = spawn_app().await;
    let org = app.org("syntax").await;
    for (language, source, line) in [
        (
            "python",
            "def main(input, sdk):\n    return {'a': 1\n",
            "line 2",
        ),
        (
            "php",
            "<?php\nfunction main($in, $sdk) { return [1, 2; }\n",
            "line 2",
        ),
        (
            "node",
            "function main(input) {\n  return (1 + ;\n}\n",
            "line 2",
        ),
        (
            "node",
            "export async function main(input) {\n  return {;\n}\n",
            "line 2",
        ),
        (
            "javascript",
            "function main(input) {\n  return (1 + ;\n}\n",
            "main.js:2",
        ),
    ] {
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/v1/orgs/{}/executors/broken-{language}", org.id),
                &org.admin,
                Some(code(language, source)),
            )
            .await;
        assert_eq!(s, 422, "{language}: {v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(
            msg.contains("does not compile") && msg.contains(line),
            "{language}: the interpreter's message and {line}: {msg}"
        );
        // Nothing of it was stored.
        let (s, _) = app
            .get(
                &format!("/v1/orgs/{}/executors/broken-{language}", org.id),
                &org.admin,
            )
            .await;
        assert_eq!(s, 404);
    }
    // Compiling runs nothing: code whose top level would write a marker is only compiled.
    put_executor(
        &app,
        &org,
        "quiet",
        code(
            "python",
            "import sys\nsys.stderr.write('ran at save')\ndef main(input, sdk):\n    return 1\n",
        ),
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_executors_are_written_as_node_programmers_write_them() {
    let app = spawn_app().await;
    let org = app.org("idiomatic").await;
    for (name, source) in [
        (
            "exports-object",
            "async function main(input, sdk) { return { n: input.n + 1 }; }\nmodule.exports = { main };\n",
        ),
        (
            "exports-main",
            "exports.main = async (input, sdk) => ({ n: input.n + 1 });\n",
        ),
        (
            "exports-function",
            "module.exports = function (input) { return { n: input.n + 1 }; };\n",
        ),
        (
            "es-module",
            "import { strict as assert } from 'node:assert';\nexport async function main(input, sdk) {\n  assert.ok(input.n >= 0);\n  return { n: input.n + 1 };\n}\n",
        ),
        (
            "plain",
            "const path = require('path');\nfunction main(input) { return { n: input.n + 1, sep: path.sep.length - 1 + 0 }; }\n",
        ),
    ] {
        put_executor(&app, &org, name, code("node", source)).await;
        let r = run(&app, &org, name, json!({"n": 41})).await;
        assert_eq!(r["status"], "succeeded", "{name}: {r:#}");
        assert_eq!(r["output"]["n"], 42, "{name}: {r:#}");
    }
    app.stop().await;
}
