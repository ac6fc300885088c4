//! The command line (`switchyard send|tail|replay|listen|executors`), the real binary against a real hub: what
//! it prints, and the exit codes scripts rely on.

use crate::helpers::*;
use serde_json::{Value, json};
use std::process::Output;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn switchyard(app: &TestApp, org: &str, key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.env("SWITCHYARD_URL", format!("http://{}", app.addr))
        .env("SWITCHYARD_KEY", key)
        .env("SWITCHYARD_ORG", org)
        .kill_on_drop(true);
    c
}

async fn run(app: &TestApp, org: &str, key: &str, args: &[&str]) -> Output {
    switchyard(app, org, key)
        .args(args)
        .output()
        .await
        .expect("run the switchyard binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[tokio::test]
async fn send_publishes_and_its_exit_code_says_how_it_went() {
    let app = spawn_app().await;
    let org = app.org("cli-send").await;
    let o = &org.id;

    let out = run(
        &app,
        o,
        &org.publisher,
        &[
            "send",
            "TicketCreated",
            "--entity",
            "Ticket:7",
            "--id",
            "t-7",
            "--data",
            r#"{"ticketId": 7}"#,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "published t-7 (0 deliveries)");
    let trace = app.trace(&org, "t-7").await;
    assert_eq!(trace["entity"], json!({"type": "Ticket", "id": "7"}));
    assert_eq!(trace["data"], json!({"ticketId": 7}));

    // The same id again: said so; --json prints the hub's answer.
    let out = run(
        &app,
        o,
        &org.publisher,
        &[
            "send",
            "TicketCreated",
            "--entity",
            "Ticket:7",
            "--id",
            "t-7",
            "--data",
            r#"{"ticketId": 7}"#,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["duplicate"], true);
    // The same id with other data: the hub refuses, naming what differs.
    let out = run(
        &app,
        o,
        &org.publisher,
        &["send", "TicketCreated", "--id", "t-7"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));

    // Data from a file.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("ticket.json");
    std::fs::write(&file, r#"{"ticketId": 8, "subject": "Zähler"}"#).expect("write");
    let data = format!("@{}", file.display());
    let out = run(
        &app,
        o,
        &org.publisher,
        &["send", "TicketCreated", "--id", "t-8", "--data", &data],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(app.trace(&org, "t-8").await["data"]["subject"], "Zähler");

    // 1: the hub refused (a viewer may not publish; a schema violation).
    let out = run(&app, o, &org.viewer, &["send", "TicketCreated"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    // 2: the command line is wrong.
    for args in [
        &["send", "TicketCreated", "--entity", "Ticket"][..],
        &["send", "TicketCreated", "--data", "{not json"][..],
        &["send", "TicketCreated", "--data", "@/no/such/file.json"][..],
        &["send"][..],
    ] {
        let out = run(&app, o, &org.publisher, args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // 3: no hub there.
    let out = switchyard(&app, o, &org.publisher)
        .env("SWITCHYARD_URL", "http://127.0.0.1:9")
        .args(["send", "TicketCreated"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("cannot reach the hub"),
        "{}",
        text(&out.stderr)
    );
    // Every command has help with an example.
    let out = run(&app, o, &org.publisher, &["send", "--help"]).await;
    assert!(text(&out.stdout).contains("Example:"));
    app.stop().await;
}

#[tokio::test]
async fn tail_prints_matching_events_as_they_arrive() {
    let app = spawn_app().await;
    let org = app.org("cli-tail").await;
    app.publish(&org, json!({"id": "before", "type": "TicketCreated"}))
        .await;
    let mut tail = switchyard(&app, &org.id, &org.viewer)
        .args(["tail", "--type", "Ticket*", "--count", "2", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tail");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut errors = BufReader::new(tail.stderr.take().expect("stderr")).lines();
    // Publish once it says it follows the stream.
    let said = tokio::time::timeout(Duration::from_secs(10), errors.next_line())
        .await
        .expect("tail connected in time")
        .expect("read")
        .expect("a line");
    assert!(said.contains("following"), "{said}");
    app.publish(
        &org,
        json!({"id": "a", "type": "TicketCreated", "timestamp": "2018-01-01T00:00:00Z"}),
    )
    .await;
    app.publish(&org, json!({"id": "b", "type": "ProfileCreated"}))
        .await;
    app.publish(
        &org,
        json!({"id": "c", "type": "TicketUpdated", "data": {"z": 1, "a": 2}}),
    )
    .await;
    let mut got = vec![];
    while got.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("tail printed in time")
            .expect("read")
            .expect("a line");
        got.push(serde_json::from_str::<Value>(&line).expect("json line"));
    }
    // Not the one before it started; not the one of another type; in arrival order, even the
    // one that says it happened in 2018.
    assert_eq!(got[0]["id"], "a");
    assert_eq!(got[1]["id"], "c");
    let status = tokio::time::timeout(Duration::from_secs(10), tail.wait())
        .await
        .expect("tail ends after --count")
        .expect("status");
    assert!(status.success());

    // Resuming after the first one's stream id gives what followed it, and with an entity
    // filter only that entity's events.
    app.publish(
        &org,
        json!({"id": "d", "type": "TicketUpdated", "entity": {"type": "Ticket", "id": "9"}}),
    )
    .await;
    let after = got[0]["stream_id"].as_str().expect("stream id").to_string();
    let out = run(
        &app,
        &org.id,
        &org.viewer,
        &["tail", "--after", &after, "--count", "2", "--json"],
    )
    .await;
    let resumed: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        resumed.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        vec![json!("b"), json!("c")],
        "after `a`, in order, without a type filter"
    );
    let out = run(
        &app,
        &org.id,
        &org.viewer,
        &[
            "tail", "--after", "0", "--entity", "Ticket:9", "--count", "1",
        ],
    )
    .await;
    let line = text(&out.stdout);
    assert!(line.contains("TicketUpdated Ticket:9 d"), "{line}");
    let out = run(&app, &org.id, &org.viewer, &["tail", "--type", "bad type!"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad pattern is the hub's refusal"
    );
    app.stop().await;
}

#[tokio::test]
async fn replay_sends_again_and_waits_until_done() {
    let app = spawn_app().await;
    let org = app.org("cli-replay").await;
    let rx = TestReceiver::start().await;
    let ep = app
        .endpoint(&org, json!({"url": rx.url("/r")}), &["*"])
        .await;
    for id in ["r1", "r2", "r3"] {
        app.publish(&org, json!({"id": id, "type": "T"})).await;
    }
    rx.wait_for(3, Duration::from_secs(10)).await;
    let ep = ep["id"].as_str().expect("id");
    let out = run(
        &app,
        &org.id,
        &org.admin,
        &["replay", "--endpoint", ep, "--since", "1h"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("replaying 3 events"),
        "{}",
        text(&out.stdout)
    );
    // It returned when the replayed deliveries were done.
    assert_eq!(rx.received().len(), 6);
    assert!(text(&out.stderr).contains("3/3"), "{}", text(&out.stderr));
    let out = run(
        &app,
        &org.id,
        &org.admin,
        &["replay", "--endpoint", ep, "--since", "yesterday"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &app,
        &org.id,
        &org.admin,
        &["replay", "--endpoint", "ep_nope", "--since", "1h"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    app.stop().await;
}

#[tokio::test]
async fn executors_go_to_a_folder_and_back() {
    let app = spawn_app().await;
    let org = app.org("cli-executors").await;
    let o = &org.id;
    for (name, body) in [
        (
            "greet",
            json!({"type": "code", "language": "python", "source": "def main(input, sdk):\n    return {'hi': input.get('name')}\n", "parameters": {"name": "data.name"},
                "tool": {"description": "Greets by name"}}),
        ),
        (
            "erp",
            json!({"type": "api_call", "method": "GET", "url": "https://erp.example.com/c/{{input.id}}", "headers": {"Authorization": "Bearer {{secret.ERP}}"}}),
        ),
    ] {
        let (s, v) = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{o}/executors/{name}"),
                &org.admin,
                Some(body),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let dir = tempfile::tempdir().expect("dir");
    let folder = dir.path().join("executors");
    let folder_arg = folder.display().to_string();
    let out = run(&app, o, &org.admin, &["executors", "pull", &folder_arg]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("executors.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["greet"]["source_file"], "greet.py");
    assert!(manifest["greet"].get("source").is_none());
    assert_eq!(
        manifest["greet"]["parameters"],
        json!({"name": "data.name"})
    );
    assert_eq!(
        manifest["greet"]["tool"],
        json!({"name": "greet", "description": "Greets by name", "input_schema": {"type": "object"}})
    );
    assert_eq!(manifest["erp"]["type"], "api_call");
    assert!(
        std::fs::read_to_string(folder.join("greet.py"))
            .expect("source")
            .contains("def main")
    );

    // Pushed back unchanged: no new version.
    let out = run(&app, o, &org.admin, &["executors", "push", &folder_arg]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("greet: unchanged (v1)"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("erp: unchanged (v1)"));

    // An edited source and a new executor: a new version, a first one.
    std::fs::write(
        folder.join("greet.py"),
        "def main(input, sdk):\n    return {'hello': input.get('name')}\n",
    )
    .expect("edit");
    std::fs::write(
        folder.join("twice.js"),
        "function main(input) { return {n: input.n * 2}; }",
    )
    .expect("new");
    let mut m = manifest.clone();
    m["twice"] = json!({"type": "code", "language": "javascript", "source_file": "twice.js",
        "tool": {"name": "twice_it", "description": "Doubles n"}});
    std::fs::write(folder.join("executors.json"), m.to_string()).expect("manifest");
    let out = run(&app, o, &org.admin, &["executors", "push", &folder_arg]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("greet: updated (v2)"), "{said}");
    assert!(said.contains("erp: unchanged (v1)"), "{said}");
    assert!(said.contains("twice: created (v1)"), "{said}");
    // A tool's settings left out in the folder are the hub's defaults, not a change.
    let out = run(&app, o, &org.admin, &["executors", "push", &folder_arg]).await;
    assert!(
        text(&out.stdout).contains("twice: unchanged (v1)"),
        "{}",
        text(&out.stdout)
    );
    let (_, run_out) = app
        .post(
            &format!("/v1/orgs/{o}/executors/twice/run"),
            &org.admin,
            json!({"input": {"n": 21}}),
        )
        .await;
    assert_eq!(run_out["output"], json!({"n": 42}), "{run_out}");

    // A file outside the folder is refused (2); a definition the hub refuses names itself (1).
    m["twice"]["source_file"] = json!("../../etc/passwd");
    std::fs::write(folder.join("executors.json"), m.to_string()).expect("manifest");
    let out = run(&app, o, &org.admin, &["executors", "push", &folder_arg]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    m["twice"] = json!({"type": "code", "language": "cobol", "source_file": "twice.js"});
    std::fs::write(folder.join("executors.json"), m.to_string()).expect("manifest");
    let out = run(&app, o, &org.admin, &["executors", "push", &folder_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("twice"), "{}", text(&out.stderr));
    app.stop().await;
}

/// Starts `switchyard listen` with `args`; answers the child and the endpoint id its ready line
/// names.
async fn start_listen(
    app: &TestApp,
    org: &Org,
    args: &[&str],
) -> (
    tokio::process::Child,
    String,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = switchyard(app, &org.id, &org.admin)
        .arg("listen")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("listen");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(15), errors.next_line())
        .await
        .expect("listen got ready in time")
        .expect("read")
        .expect("a line");
    assert!(ready.starts_with("Ready:"), "{ready}");
    let endpoint = ready
        .split("(endpoint ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the endpoint id in the ready line")
        .to_string();
    // The rest of its standard error (the removal) is kept, for the assertions to show.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = said.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            kept.lock().expect("stderr lines").push(line);
        }
    });
    (child, endpoint, lines, said)
}

async fn endpoint_ids(app: &TestApp, org: &Org) -> Vec<String> {
    let (_, eps) = app
        .get(&format!("/v1/orgs/{}/endpoints", org.id), &org.admin)
        .await;
    eps["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn listen_receives_verifies_forwards_and_removes_its_endpoint() {
    let app = spawn_app().await;
    let org = app.org("cli-listen").await;
    let local = TestReceiver::start().await;
    local.script([Reply::status(200), Reply::status(500), Reply::status(200)]);
    let forward = local.url("/webhooks");
    let (mut child, endpoint, mut lines, said) = start_listen(
        &app,
        &org,
        &[
            "--type",
            "Ticket*",
            "--forward",
            &forward,
            "--count",
            "3",
            "--json",
        ],
    )
    .await;
    let (_, ep) = app
        .get(
            &format!("/v1/orgs/{}/endpoints/{endpoint}", org.id),
            &org.admin,
        )
        .await;
    assert!(
        ep["description"]
            .as_str()
            .is_some_and(|d| d.contains("switchyard listen")),
        "{ep}"
    );
    app.publish(&org, json!({"id": "p1", "type": "ProfileCreated"}))
        .await;
    for id in ["l1", "l2", "l3"] {
        app.publish(
            &org,
            json!({"id": id, "type": "TicketCreated", "data": {"n": id}}),
        )
        .await;
    }
    let mut got = vec![];
    while got.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("listen printed in time")
            .expect("read")
            .expect("a line");
        got.push(serde_json::from_str::<Value>(&line).expect("json line"));
    }
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("listen ends after --count")
        .expect("status");
    assert!(status.success());

    // Every delivery verified with the endpoint's secret, none of another type, each
    // forwarded with its signature headers and body as received.
    let mut ids: Vec<String> = got
        .iter()
        .map(|l| l["event"]["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["l1", "l2", "l3"]);
    assert!(got.iter().all(|l| l["verified"] == true), "{got:?}");
    let forwarded = local.received();
    assert_eq!(forwarded.len(), 3);
    for f in &forwarded {
        assert_eq!(f.path, "/webhooks");
        assert!(
            f.header("webhook-signature")
                .is_some_and(|s| s.starts_with("v1,"))
        );
        assert_eq!(f.json()["type"], "TicketCreated");
    }
    // The forward target's 500 is the hub's answer: the trace shows it.
    let failed = got
        .iter()
        .find(|l| l["forward"]["status"] == 500)
        .expect("one forward answered 500");
    assert_eq!(failed["status"], 500);
    // The hub records an attempt after its answer came back: wait for the record.
    let event = failed["event"]["id"].as_str().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let trace = loop {
        let trace = app.trace(&org, event).await;
        if trace["deliveries"][0]["attempts"][0] != Value::Null
            || std::time::Instant::now() > deadline
        {
            break trace;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        trace["deliveries"][0]["attempts"][0]["status_code"], 500,
        "{trace}"
    );

    // Gone from the hub once it stopped.
    assert!(
        !endpoint_ids(&app, &org).await.contains(&endpoint),
        "the temporary endpoint is removed; listen said: {:?}",
        said.lock().expect("stderr lines")
    );
    app.stop().await;
}

#[tokio::test]
async fn listen_cleans_up_on_sigterm_and_says_when_the_hub_may_not_reach_it() {
    let app = spawn_app().await;
    let org = app.org("cli-listen-term").await;
    let (mut child, endpoint, _lines, _said) = start_listen(&app, &org, &[]).await;
    assert!(endpoint_ids(&app, &org).await.contains(&endpoint));
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill -TERM");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("listen stops on SIGTERM")
        .expect("status");
    assert!(status.success(), "{status:?}");
    assert!(!endpoint_ids(&app, &org).await.contains(&endpoint));
    app.stop().await;

    // A hub that may not deliver to this machine: refused (1), with what to do about it.
    let dir = tempfile::tempdir().expect("dir");
    let guarded = spawn_app_in(dir.path(), |s| s.allow_destinations.clear()).await;
    let org = guarded.org("cli-listen-guarded").await;
    let out = run(&guarded, &org.id, &org.admin, &["listen"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--allow-destination"),
        "{}",
        text(&out.stderr)
    );
    assert!(endpoint_ids(&guarded, &org).await.is_empty());
    guarded.stop().await;
}

#[tokio::test]
async fn executors_are_tested_against_fixtures_on_a_hub_of_their_own() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(
        d.join("executors.json"),
        json!({
            "double": {"type": "code", "language": "javascript", "source_file": "double.js"},
            "greet": {"type": "code", "language": "python", "source_file": "greet.py"},
            // No cases, and a destination the local hub may not reach: skipped, and said.
            "erp": {"type": "api_call", "method": "GET", "url": "http://127.0.0.1:9/erp"},
        })
        .to_string(),
    )
    .expect("manifest");
    std::fs::write(
        d.join("double.js"),
        "function main(input, sdk) { sdk.log('doubling', input.n); if (input.n < 0) throw new Error('negative'); return {n: input.n * 2}; }",
    )
    .expect("source");
    std::fs::write(
        d.join("greet.py"),
        "def main(input, sdk):\n    token = sdk.secret('GREETING')\n    d = sdk.call('double', {'n': input['n']})\n    return {'text': 'hello ' + input['name'], 'signed': token == 'sesame', 'n': d['n']}\n",
    )
    .expect("source");
    let case = |ex: &str, name: &str, v: Value| {
        let dir = d.join("tests").join(ex);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.json")), v.to_string()).expect("fixture");
    };
    case(
        "double",
        "positive",
        json!({"input": {"n": 21}, "expect": {"output": {"n": 42}, "logs": ["doubling 21"]}}),
    );
    case(
        "double",
        "negative",
        json!({"input": {"n": -1}, "expect": {"error": "negative"}}),
    );
    case(
        "greet",
        "hello",
        json!({"input": {"n": 2, "name": "Ada"}, "secrets": {"GREETING": "sesame"},
               "expect": {"output": {"text": "hello Ada", "signed": true, "n": 4}}}),
    );
    let test = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        c.args(["executors", "test"]).arg(d).args(args);
        c
    };
    let out = test(&[]).output().await.expect("run");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("PASS double/positive"), "{said}");
    assert!(said.contains("PASS double/negative"), "{said}");
    assert!(said.contains("PASS greet/hello"), "{said}");
    assert!(said.contains("3 passed, 0 failed"), "{said}");
    assert!(
        text(&out.stderr).contains("skipped executor erp (it has no cases)"),
        "{}",
        text(&out.stderr)
    );

    // A wrong expectation fails (1) and says what the run did.
    case(
        "double",
        "wrong",
        json!({"input": {"n": 2}, "expect": {"output": {"n": 5}}}),
    );
    let out = test(&["--json"]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let results: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let wrong = results
        .iter()
        .find(|r| r["case"] == "wrong")
        .expect("the wrong case");
    assert_eq!(wrong["pass"], false);
    assert!(
        wrong["why"]
            .as_str()
            .is_some_and(|w| w.contains("{\"n\":4}")),
        "{wrong}"
    );
    // Only one executor's cases; a fixture of an executor the manifest lacks is a usage error.
    let out = test(&["--executor", "greet"]).output().await.expect("run");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("double/"));
    case("missing", "x", json!({"input": {}}));
    let out = test(&[]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn every_command_says_how_to_use_it_with_an_example() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        text(&out.stdout)
    };
    // The subcommands each `--help` lists, down to the leaves.
    let commands = |h: &str| -> Vec<String> {
        h.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|c| c != "help")
            .collect()
    };
    let top = commands(&help(&[]));
    assert!(top.len() >= 10, "{top:?}");
    let mut checked = 0;
    for c in &top {
        let h = help(&[c]);
        assert!(
            h.contains("Example"),
            "`switchyard {c} --help` shows no example"
        );
        for sub in commands(&h) {
            let h = help(&[c, &sub]);
            assert!(
                h.contains("Example"),
                "`switchyard {c} {sub} --help` shows no example"
            );
            checked += 1;
        }
        checked += 1;
    }
    assert!(checked >= 14, "{checked}");
}

/// `switchyard bench ARGS --no-ceiling --json`, which must succeed: its report.
async fn bench_report(args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("bench")
        .args(args)
        .args(["--no-ceiling", "--json"])
        .output()
        .await
        .expect("bench");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON")
}

/// The benchmark the performance figures come from runs end to end on a small load: a hub of
/// its own, its receiver, subscriptions that match nothing beside one that matches everything;
/// every event arrives once and the report says what was measured.
#[tokio::test]
async fn bench_delivers_every_event_once_and_reports_it() {
    let args = ["--events", "200", "--concurrency", "4"];
    let report = bench_report(&[&args[..], &["--unmatched-subscriptions", "30"]].concat()).await;
    assert_eq!(report["events"], 200, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["unmatched_subscriptions"], 30, "{report}");
    for figure in ["delivered_per_s", "hub_peak_rss_mb", "hub_peak_wal_mb"] {
        assert!(
            report[figure].as_f64().is_some_and(|r| r > 0.0),
            "{figure}: {report}"
        );
    }
}

/// `bench --drain`: the receiver is away (503) while the events are published, then back;
/// every event still arrives once, and the drain rate is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_a_backlog_draining_after_its_receiver_returns() {
    let args = ["--events", "300", "--concurrency", "4", "--batch", "20"];
    let report = bench_report(&[&args[..], &["--drain"]].concat()).await;
    assert_eq!(report["drain"], true, "{report}");
    assert_eq!(report["events"], 300, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(
        report["drain_deliveries_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{report}"
    );
}
